"""Issue 25, item 2: ranking-aimed losses probed on a linear head over the bench's cached embeddings.

Every probe trains a linear head (standardised features, zero init, full-batch Adam lr 0.01, 300 steps) on the
observed train rows of one simulated log and keeps the step (checked every 5) and the weight decay (0, 1e-3, 1e-2,
3e-2, 1e-1) with the highest **IPS-weighted AUROC against the noisy val feedback** (``causalrm.evaluation.metrics.auroc``;
no clean label is read). Losses (``-ips``: weighted by 1 / p_hat in training too):

* ``bce``: l(z, r); ``fcorr``: l(pi(z), r), pi = (1 - rho01) s + rho10 (1 - s) (Patrini et al. 2017);
* ``surrogate``: the noise-corrected l~(z, r) (Natarajan et al. 2013);
* ``gce``: (1 - s_r^q) / q, q = 0.7 (Zhang & Sabuncu 2018); ``ls``: l(z, r (1 - 0.2) + 0.1) (label smoothing);
* ``elr``: l(z, r) + 3 log(1 - <t, s>), t an EMA (0.7) of the predictions (Liu et al. 2020);
* ``fcorr-ips bag8``: the mean logit of 8 bootstrap replicates of ``fcorr-ips`` at its chosen weight decay.

Test AUROC and R² against the clean labels of the test split (``evaluation.metrics.evaluate_scores``).

    python benchmarks/ranking_probes.py --seeds 0,1,2,3,4 --json runs/ranking_probes.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import polars as pl
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.data import schema  # noqa: E402
from causalrm.evaluation.metrics import auroc, evaluate_scores  # noqa: E402
from causalrm.simulation.simulate import simulate_with_config  # noqa: E402
from causalrm.workflows.bench import BenchConfig, _load_rated  # noqa: E402
from causalrm.workflows.orchestrate import shared_nuisances  # noqa: E402

DECAYS = (0.0, 1e-3, 1e-2, 3e-2, 1e-1)
PROBES = (("bce", True), ("bce", False), ("fcorr", True), ("fcorr", False), ("surrogate", True), ("gce", True),
          ("ls", True), ("elr", True))


def per_example(loss: str, z: torch.Tensor, r: torch.Tensor, a: float, b: float, ema: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if loss == "bce":
        return bce(z, r, reduction="none")
    if loss == "fcorr":
        pi = ((1 - a) * s + b * (1 - s)).clamp(1e-6, 1 - 1e-6)
        return -(r * pi.log() + (1 - r) * (1 - pi).log())
    if loss == "surrogate":
        l1, l0 = torch.nn.functional.softplus(-z), torch.nn.functional.softplus(z)
        return torch.where(r == 1, (1 - b) * l1 - a * l0, (1 - a) * l0 - b * l1) / (1 - a - b)
    if loss == "gce":
        return (1 - torch.where(r == 1, s, 1 - s).clamp_min(1e-6) ** 0.7) / 0.7
    if loss == "ls":
        return bce(z, r * 0.8 + 0.1, reduction="none")
    if loss == "elr":
        return bce(z, r, reduction="none") + 3.0 * torch.log(1 - (ema * s + (1 - ema) * (1 - s)).clamp(max=1 - 1e-4))
    raise ValueError(loss)


def run_seed(base: pl.DataFrame, X: np.ndarray, cfg: BenchConfig, seed: int) -> dict[str, dict[str, float]]:
    log, _ = simulate_with_config(base, alpha=cfg.alpha, rho01=cfg.rho01, rho10=cfg.rho10, observation_rate=0.2,
                                  rating="teacher", teacher="linear", snr=None, embeddings=X, seed=seed,
                                  dataset=cfg.dataset)
    nuis = shared_nuisances(log, X, cfg.fit_config("causalrm-ips", seed), ["causalrm-ips"])
    rows, split = nuis.rows, nuis.split
    o = log[schema.OBSERVED].to_numpy()[rows] == 1
    fb = np.nan_to_num(log[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows])
    p, a, b = nuis.propensity_clipped, nuis.rho01, nuis.rho10
    Xs = torch.tensor((X - X[rows].mean(0)) / (X[rows].std(0) + 1e-6), dtype=torch.float32)
    tr, va = (split == schema.TRAIN) & o, (split == schema.VAL) & o
    Xtr, Xva, rtr = Xs[rows[tr]], Xs[rows[va]], torch.tensor(fb[tr], dtype=torch.float32)
    rva, wva = fb[va], 1 / p[va]

    def fit(loss: str, weighted: bool, decay: float, boot: int | None = None) -> tuple[float, np.ndarray]:
        lin = torch.nn.Linear(Xs.shape[1], 1)
        torch.nn.init.zeros_(lin.weight), torch.nn.init.zeros_(lin.bias)
        opt = torch.optim.Adam(lin.parameters(), lr=0.01, weight_decay=decay)
        w = torch.tensor(1 / p[tr], dtype=torch.float32) if weighted else torch.ones(len(rtr))
        if boot is not None:
            draw = torch.randint(0, len(rtr), (len(rtr),), generator=torch.Generator().manual_seed(boot))
            w = w * torch.bincount(draw, minlength=len(rtr)).float()
        ema, best = torch.full((len(rtr),), 0.5), (-1.0, None)
        for step in range(300):
            z = lin(Xtr).squeeze(1)
            ema = 0.7 * ema + 0.3 * torch.sigmoid(z).detach()
            opt.zero_grad()
            ((w * per_example(loss, z, rtr, a, b, ema)).sum() / len(rtr)).backward()
            opt.step()
            if step % 5 == 4:
                with torch.no_grad():
                    v = auroc(rva, lin(Xva).squeeze(1).numpy().astype(np.float64), wva)
                if v > best[0]:
                    best = (v, {k: t.clone() for k, t in lin.state_dict().items()})
        lin.load_state_dict(best[1])
        with torch.no_grad():
            return best[0], lin(Xs).squeeze(1).numpy().astype(np.float64)

    def test(z: np.ndarray) -> dict[str, float]:
        m = evaluate_scores(log, z)["metrics"]
        return {"auroc": m["auroc"], "r2": m["r2"]}

    out = {}
    for loss, weighted in PROBES:
        fits = {d: fit(loss, weighted, d) for d in DECAYS}
        decay = max(fits, key=lambda d: fits[d][0])
        name = loss + ("-ips" if weighted else "")
        out[name] = {"decay": decay, "val_auroc": fits[decay][0], **test(fits[decay][1])}
    decay = out["fcorr-ips"]["decay"]
    z = np.mean([fit("fcorr", True, decay, boot=1000 + i)[1] for i in range(8)], axis=0)
    out["fcorr-ips bag8"] = {"decay": decay, "val_auroc": auroc(rva, z[rows[va]], wva), **test(z)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wildbench")
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--rho01", type=float, default=0.15)
    ap.add_argument("--rho10", type=float, default=0.25)
    ap.add_argument("--seeds", default="0,1,2,3,4", help="development seeds (never 8-17: the held-out ones)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = BenchConfig(dataset=args.dataset, rating="teacher", alpha=args.alpha, rho01=args.rho01, rho10=args.rho10,
                      seeds=seeds, methods=["causalrm-ips"])
    base, X = _load_rated(cfg)
    per_seed = {}
    for s in seeds:
        torch.manual_seed(s)
        per_seed[s] = run_seed(base, X, cfg, s)
    with open(args.json, "w") as f:
        json.dump({"config": vars(args), "per_seed": per_seed}, f, indent=1)
    print("| probe | test AUROC per seed | mean AUROC | mean R² |\n|---|---|---|---|")
    for name in per_seed[seeds[0]]:
        au = [per_seed[s][name]["auroc"] for s in seeds]
        r2 = [per_seed[s][name]["r2"] for s in seeds]
        print(f"| {name} | {' '.join(f'{x:.3f}' for x in au)} | {np.mean(au):.3f} | {np.mean(r2):.3f} |")


if __name__ == "__main__":
    main()
