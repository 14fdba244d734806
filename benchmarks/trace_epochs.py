"""Per-epoch trace of training on one simulated log: the validation estimate early stopping sees, beside the clean
validation loss it estimates (every val row's true label) and the clean test R², neither of which it can see.

Diagnosis only: it reads the simulation's test labels, so nothing it prints may be used to choose a model or a
setting. Each entry of ``--methods`` is ``METHOD`` or ``METHOD:VAL_METHOD`` (train with one estimator, watch another);
training runs ``--epochs`` epochs without early stopping, with the nuisances fitted once and shared.

    python benchmarks/trace_epochs.py --dataset wildbench --alpha 0.5 --seed 1 --epochs 120 \
        --methods causalrm-dr,causalrm-dr:causalrm-ips,causalrm-ips
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.config import FitConfig  # noqa: E402
from causalrm.data import schema  # noqa: E402
from causalrm.devices import cpu_threads  # noqa: E402
from causalrm.estimators.losses import NOISE_AWARE  # noqa: E402
from causalrm.evaluation.metrics import evaluate_scores, sigmoid  # noqa: E402
from causalrm.nuisances.container import loss_inputs
from causalrm.nuisances.fit import fit_nuisances
from causalrm.simulation.simulate import simulate_with_config  # noqa: E402
from causalrm.training.backbones.base import build_backbone  # noqa: E402
from causalrm.training.trainer import train
from causalrm.workflows.bench import BenchConfig, _load_rated  # noqa: E402
from causalrm.workflows.pipeline import score_with


def trace(log, X, nuis, config: FitConfig, every: int) -> list[dict[str, float]]:
    """Train ``config.method`` for ``config.max_epochs`` epochs; after every ``every``-th epoch (and the first ten)
    record the validation estimate of ``config.validation_method``, the clean loss it estimates (squared error of
    sigma(z) against ``true_label`` over every val row, observed or not) and the clean test R²."""
    rows = nuis.rows
    is_train, is_val = nuis.split == schema.TRAIN, nuis.split == schema.VAL
    noisy = any(m in NOISE_AWARE for m in config.methods_needed())
    tcfg = config.train_config(rho01=nuis.rho01 if noisy else 0.0, rho10=nuis.rho10 if noisy else 0.0)
    backbone = build_backbone(config.backbone, X[rows], config.backbone_kwargs(), seed=config.seed)
    feats = [backbone.featurize(log[rows[m].tolist()], X[rows[m]]) for m in (is_train, is_val)]
    record: list[dict[str, float]] = []
    val_rows, true_label = rows[is_val], log[schema.TRUE_LABEL].to_numpy().astype(np.float64)

    def progress(epoch: int, max_epochs: int, train_loss: float, val_estimate: float) -> None:
        if epoch <= 10 or epoch % every == 0:
            scores = score_with(backbone, config, log, X)
            r2 = evaluate_scores(log, scores)["metrics"]["r2"]
            val_ideal = float(np.mean((sigmoid(scores[val_rows]) - true_label[val_rows]) ** 2))
            record.append({"epoch": epoch, "val_estimate": val_estimate, "val_ideal": val_ideal, "test_r2": r2})

    train(backbone, feats[0], loss_inputs(log, nuis, config.method, is_train), feats[1],
          loss_inputs(log, nuis, (config.method, config.validation_method), is_val), tcfg, progress=progress)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wildbench")
    ap.add_argument("--rating", default="teacher")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--rho01", type=float, default=0.2)
    ap.add_argument("--rho10", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--every", type=int, default=4, help="record every this many epochs after the first ten")
    ap.add_argument("--methods", default="causalrm-dr,causalrm-ips")
    ap.add_argument("--json", default=None, help="also write the traces as JSON")
    args = ap.parse_args()
    specs = [m.partition(":") for m in args.methods.split(",")]
    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    log, _ = simulate_with_config(rated, alpha=args.alpha, rho01=args.rho01, rho10=args.rho10, rating=args.rating,
                                  embeddings=X, seed=args.seed, dataset=args.dataset)
    out = {}
    with cpu_threads(1):
        nuis = fit_nuisances(log, X, FitConfig(seed=args.seed), methods=[m for m, _, _ in specs])
        for method, _, val in specs:
            config = FitConfig(method=method, val_method=val or None, seed=args.seed, max_epochs=args.epochs,
                               patience=None)
            rec = out[f"{method}:{config.validation_method}"] = trace(log, X, nuis, config, args.every)
            best = min(rec, key=lambda r: r["val_estimate"])
            peak = max(rec, key=lambda r: r["test_r2"])
            last = rec[-1]
            print(f"{method} (watching {config.validation_method}): lowest val estimate {best['val_estimate']:.4f} at "
                  f"epoch {best['epoch']} (test R2 {best['test_r2']:.3f}); test R2 peaks at {peak['test_r2']:.3f} "
                  f"(epoch {peak['epoch']}); last epoch: val {last['val_estimate']:.4f}, R2 {last['test_r2']:.3f}")
            print("  epoch:val estimate/clean val loss/test R2  " + " ".join(
                f"{r['epoch']}:{r['val_estimate']:.3f}/{r['val_ideal']:.3f}/{r['test_r2']:.2f}" for r in rec))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "traces": out}, fh, indent=1)


if __name__ == "__main__":
    main()
