"""Training speed targets (run by hand; never part of the timed tests).

(a) Wall time of the full ``causalrm-dr`` pipeline (propensity, flip rates and pseudo-labels included) over ``naive``
    on a synthetic log of ``--rows`` x ``--dim`` (default 100,000 x 768), both trained a fixed ``--epochs``
    (no early stopping). Target: <= 3x.
(b) Per-epoch time of ``causalrm.training.trainer.train`` vs a bare PyTorch loop over the same MLP and the same minibatches
    (index batches from the same seeded ``torch.randperm``; the bare loop also does the per-epoch no-grad validation
    pass that early stopping needs, with a plain squared-error loss). Rounds are interleaved and the fastest epoch of
    each is compared (robust to other load on a shared machine). Target: <= 1.2x.

    python benchmarks/bench_training.py                      # the full targets (minutes on a CPU)
    python benchmarks/bench_training.py --rows 20000 --epochs 5 --threads 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import polars as pl
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.config import FitConfig
from causalrm.devices import cpu_threads  # noqa: E402
from causalrm.estimators.losses import LossInputs  # noqa: E402
from causalrm.training.backbones.mlp import MLPBackbone, TensorFeatures  # noqa: E402
from causalrm.training.options import TrainConfig
from causalrm.training.trainer import epoch_batches, train
from causalrm.workflows.orchestrate import fit_log  # noqa: E402


def synthetic_log(n: int, d: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """A log with train/val splits, ~20% observed (selection on the true score), flips 0.2 / 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal(d).astype(np.float32) / np.sqrt(d)
    score = X @ w
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * score))).astype(np.int8)
    p = np.clip(0.05 + 0.3 * y + 0.1 * (score > 0), 0, 1)
    obs = (rng.random(n) < p).astype(np.int8)
    flip = np.where(y == 1, rng.random(n) < 0.2, rng.random(n) < 0.1)
    fb = np.where(flip, 1 - y, y).astype(np.int8)
    split = np.where(rng.random(n) < 0.2, "val", "train")
    log = pl.DataFrame({
        "prompt": [""] * n, "response": ["x"] * n, "response_id": [f"r{i}" for i in range(n)],
        "pair_id": [f"g{i}" for i in range(n)], "feedback": pl.Series(np.where(obs == 1, fb, 0), dtype=pl.Int8),
        "observed": pl.Series(obs, dtype=pl.Int8), "split": split.tolist(), "true_label": pl.Series(y, dtype=pl.Int8),
    })
    return log, X


def bench_pipeline(log: pl.DataFrame, X: np.ndarray, epochs: int, device: str) -> dict:
    out = {}
    for method in ("naive", "causalrm-dr"):
        cfg = FitConfig(method=method, max_epochs=epochs, patience=0, device=device, flip_bootstrap=200)
        t0 = time.perf_counter()
        result = fit_log(log, X, cfg)
        out[method] = {"seconds": time.perf_counter() - t0, "nuisance_seconds": result.seconds["nuisances"],
                       "training_seconds": result.seconds["training"],
                       "nuisance_breakdown": result.nuisances.diagnostics.get("seconds", {})}
    out["ratio"] = out["causalrm-dr"]["seconds"] / out["naive"]["seconds"]
    return out


def bare_loop(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, epochs: int, device: torch.device,
              batch_size: int = 512, seed: int = 0) -> list[float]:
    """The same MLP, Adam, minibatches and validation pass as the trainer, with nothing else."""
    model = MLPBackbone.build(X, {}, seed=seed).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    Xvt, yvt = torch.as_tensor(Xv, device=device), torch.as_tensor(yv, device=device)
    g = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for idx in epoch_batches(len(X), batch_size, g):
            idx = idx.to(device)
            opt.zero_grad(set_to_none=True)
            loss = (torch.sigmoid(model(Xt[idx])) - yt[idx]).pow(2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            model.eval()
            val = float((torch.sigmoid(model(Xvt)) - yvt).pow(2).mean())
            model.train()
        assert np.isfinite(val)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def bench_epoch(log: pl.DataFrame, X: np.ndarray, epochs: int, device: str, rounds: int = 2) -> dict:
    from causalrm.devices import resolve_device

    dev = resolve_device(device)
    split = log["split"].to_numpy()
    tr, va = split == "train", split == "val"
    obs = log["observed"].to_numpy().astype(np.float32)
    fb = log["feedback"].to_numpy().astype(np.float32)
    rng = np.random.default_rng(0)
    p = np.clip(rng.random(len(obs)), 0.1, 1).astype(np.float32)
    q = rng.random(len(obs)).astype(np.float32)

    def inputs(m):
        return LossInputs(feedback=fb[m], observed=obs[m], propensity=p[m], pseudo_label=q[m])

    # interleaved rounds, minimum per-epoch time: robust to other processes on a shared machine
    times: dict[str, list[float]] = {"bare_loop": [], "naive": [], "causalrm-dr": []}
    for _ in range(rounds):
        times["bare_loop"] += bare_loop(X[tr], fb[tr], X[va], fb[va], epochs, dev)
        for method in ("naive", "causalrm-dr"):
            model = MLPBackbone.build(X, {}, seed=0)
            h = train(model, TensorFeatures(X[tr]), inputs(tr), TensorFeatures(X[va]), inputs(va),
                      TrainConfig(method=method, rho01=0.2, rho10=0.1, max_epochs=epochs, patience=None,
                                  device=device))
            times[method] += h.epoch_seconds
    out: dict = {"bare_loop": min(times["bare_loop"]), "median": {k: float(np.median(v)) for k, v in times.items()}}
    for method in ("naive", "causalrm-dr"):
        out[f"trainer_{method}"] = min(times[method])
        out[f"ratio_{method}"] = out[f"trainer_{method}"] / out["bare_loop"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--epochs", type=int, default=30, help="fixed epochs for (a)")
    ap.add_argument("--epoch-repeats", type=int, default=3, help="epochs per round timed for (b)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds for (b); the minimum epoch is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch/BLAS (default: torch's)")
    ap.add_argument("--skip-pipeline", action="store_true", help="only (b)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    log, X = synthetic_log(args.rows, args.dim)
    report: dict = {"rows": args.rows, "dim": args.dim, "device": args.device, "threads": args.threads,
                    "torch_threads": torch.get_num_threads() if not args.threads else args.threads}
    with cpu_threads(args.threads):
        report["epoch"] = bench_epoch(log, X, args.epoch_repeats, args.device, args.rounds)
        e = report["epoch"]
        print(f"(b) per-epoch, fastest of {args.rounds * args.epoch_repeats} ({args.rows} x {args.dim}, batch 512): bare loop {e['bare_loop']:.3f}s, trainer naive "
              f"{e['trainer_naive']:.3f}s ({e['ratio_naive']:.2f}x), trainer causalrm-dr {e['trainer_causalrm-dr']:.3f}s "
              f"({e['ratio_causalrm-dr']:.2f}x); target <= 1.2x", flush=True)
        if not args.skip_pipeline:
            report["pipeline"] = bench_pipeline(log, X, args.epochs, args.device)
            r = report["pipeline"]
            print(f"(a) full pipeline, {args.epochs} fixed epochs: naive {r['naive']['seconds']:.1f}s, causalrm-dr "
                  f"{r['causalrm-dr']['seconds']:.1f}s (nuisances {r['causalrm-dr']['nuisance_seconds']:.1f}s: "
                  f"{ {k: round(v, 1) for k, v in r['causalrm-dr']['nuisance_breakdown'].items()} }) -> "
                  f"{r['ratio']:.2f}x; target <= 3x", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
