"""A/B preference logs measured against the truth: docs/RESULTS.md, "A/B preference logs".

Per seed, a simulated A/B log (``causalrm simulate --pairwise``, :mod:`causalrm.simulation.pairwise`: disjoint pairs
within prompt groups, votes likelier on clear differences, flips P(vote b | a better) = rho01 and P(vote a | b
better) = rho10 with a always shown first), the pairs' inputs ``[x_a, x_b]`` from the shipped embeddings, then, on
shared nuisances, every method fitted with the default settings (``FitConfig(seed=seed)``: the MLP head, flip rates
from the anchors) and ``oracle`` (clean labels of every train pair: the ceiling). Metrics on the clean test split:

* ``pairwise_accuracy``: share of test pairs with sign(z_a - z_b) equal to the clean preference;
* ``auroc``: AUROC of the pointwise rewards z of the test responses against 1[true score > their median];
* ``r2``: R^2 of the best affine map of z to the true score on the test responses (the squared correlation; a
  Bradley-Terry reward is identified up to shift and scale, so this is the R^2 it can have);
* ``pair_r2``: R^2 of sigma(z_a - z_b) as P(a better) against the clean preference of the test pairs (what
  ``causalrm fit`` reports on an A/B log: the calibration the noise correction is for).

``run``: one cell over seeds (JSON out). ``report``: markdown tables (mean, sd and the paired difference to naive
with a 95% bootstrap interval over seeds) of one or more JSON files. ``flip-sources``: the flip rates of the same
logs from the anchors and from swapped-order duplicates (:func:`flip_sources`). ``linear-bt``: what linear
Bradley-Terry on the votes reaches at each L2 penalty (:func:`linear_bt`). The logs' vote counts are
``causalrm.data.pairwise.position_summary``'s (through ``simulate_pairs``), the one count ``validate`` prints.

    python benchmarks/pairwise_feedback.py run --dataset wildbench --rating teacher --seeds 0-9 \\
        --out docs/results/pairwise/wildbench_teacher.json
    python benchmarks/pairwise_feedback.py run --dataset wildbench --rating teacher --seeds 0-9 --rho01 0 \\
        --rho10 0.3 --selection 0 --out docs/results/pairwise/wildbench_position_only.json
    python benchmarks/pairwise_feedback.py run --dataset wildbench --rating teacher --seeds 0-9 --selection 0 \\
        --prompt-selection 1.5 --methods naive,ips,denoise,causalrm-ips,fcorr-rank,fcorr-gap,auto,oracle \\
        --out docs/results/pairwise/wildbench_prompt_selection.json
    python benchmarks/pairwise_feedback.py run --dataset wildbench --rating teacher --seeds 10-19 \\
        --methods naive,fcorr-rank,fcorr-gap,auto --out docs/results/pairwise/wildbench_teacher_s10-19.json
    python benchmarks/pairwise_feedback.py report docs/results/pairwise/wildbench_teacher.json \\
        docs/results/pairwise/wildbench_position_only.json docs/results/pairwise/wildbench_prompt_selection.json
    python benchmarks/pairwise_feedback.py report --seeds 5-9 docs/results/pairwise/wildbench_teacher.json
    python benchmarks/pairwise_feedback.py flip-sources --dataset wildbench --rating teacher --seeds 0-4 \
        --swapped-shares 0.25,1 --out docs/results/pairwise/flip_sources.json
    python benchmarks/pairwise_feedback.py linear-bt --seeds 0-4 --out docs/results/pairwise/linear_bt.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from scipy.stats import pearsonr  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from causalrm.atomic_io import write_json_atomic  # noqa: E402
from causalrm.config import FitConfig  # noqa: E402
from causalrm.data import schema  # noqa: E402
from causalrm.data.pairwise import pair_features  # noqa: E402
from causalrm.evaluation.metrics import bootstrap_ci, metrics, sigmoid  # noqa: E402
from causalrm.simulation.pairwise import DEFAULTS, INDEX_A, INDEX_B, simulate_pairs  # noqa: E402
from causalrm.workflows.bench import BenchConfig, _load_rated  # noqa: E402
from causalrm.workflows.orchestrate import fit_methods  # noqa: E402

METHODS = ("naive", "ips", "denoise", "causalrm-ips", "causalrm-dr", "naive-rank", "fcorr-rank", "fcorr-gap", "auto",
           "oracle")
METRICS = ("pairwise_accuracy", "auroc", "r2", "pair_r2")
FLIP_SOURCES = ("anchor-quantile", "duplicates")


def _parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def evaluate(result: Any, X: np.ndarray, log: Any, true_score: np.ndarray) -> dict[str, float]:
    """The metrics of the module docstring for one fitted model on the test split."""
    test = log[schema.SPLIT].to_numpy() == schema.TEST
    ia, ib = log[INDEX_A].to_numpy()[test], log[INDEX_B].to_numpy()[test]
    rows = np.unique(np.concatenate([ia, ib]))
    z = np.full(X.shape[0], np.nan)
    z[rows] = result.score(None, X[rows])
    truth = log[schema.TRUE_LABEL].to_numpy()[test] == 1
    s = true_score[rows]
    return {"pairwise_accuracy": float(np.mean((z[ia] > z[ib]) == truth)),
            "auroc": float(roc_auc_score(s > np.median(s), z[rows])),
            "r2": float(pearsonr(z[rows], s)[0] ** 2),
            "pair_r2": float(metrics(truth.astype(float), sigmoid(z[ia] - z[ib]))["r2"])}


def run(args: argparse.Namespace) -> None:
    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    params = {k: getattr(args, k) for k in DEFAULTS}
    cells = []
    for seed in _parse_seeds(args.seeds):
        t0 = time.perf_counter()
        log, info = simulate_pairs(rated, **params, rating=args.rating, embeddings=X, seed=seed, dataset=args.dataset)
        ia, ib = log[INDEX_A].to_numpy(), log[INDEX_B].to_numpy()
        true_score = np.full(X.shape[0], np.nan)
        true_score[ia], true_score[ib] = log["true_score_a"].to_numpy(), log["true_score_b"].to_numpy()
        results = fit_methods(log, pair_features(X[ia], X[ib]), FitConfig(seed=seed), list(args.methods.split(",")))
        nuis = next(iter(results.values())).nuisances
        cell = {"seed": seed, "log": info, "rho01_hat": nuis.rho01, "rho10_hat": nuis.rho10,
                "auto_choice": results["auto"].choice["method"] if "auto" in results else None,
                "methods": {m: evaluate(r, X, log, true_score) for m, r in results.items()},
                "seconds": time.perf_counter() - t0}
        cells.append(cell)
        print(json.dumps({"seed": seed, "votes": info["votes"], "for_first": round(info["votes_for_first"], 3),
                          "rho_hat": [cell["rho01_hat"], cell["rho10_hat"]], "auto": cell["auto_choice"],
                          **{m: round(v["pairwise_accuracy"], 4) for m, v in cell["methods"].items()}}), flush=True)
    command = "python benchmarks/pairwise_feedback.py " + " ".join(sys.argv[1:])
    write_json_atomic({"command": command, "dataset": args.dataset, "rating": args.rating, "params": params,
                       "cells": cells}, args.out)


def flip_sources(args: argparse.Namespace) -> str:
    """Recovery of the true flip rates by the anchors and by swapped-order duplicates on the same simulated logs:
    per share of train/val pairs shown in both orders (``--swapped-shares``) and seed, both estimates through
    ``fit_nuisances`` (``FitConfig(seed=seed, flip_method=...)``); the mean absolute error of each rate, how often
    its 95% interval holds the truth, and the mean interval width. Writes the cells as JSON, returns a markdown
    table.

        python benchmarks/pairwise_feedback.py flip-sources --dataset wildbench --rating teacher --seeds 0-4 \
            --swapped-shares 0.25,1 --out docs/results/pairwise/flip_sources.json
    """
    from causalrm.nuisances.fit import fit_nuisances

    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    params = {k: getattr(args, k) for k in DEFAULTS}
    truth = {"rho01": params["rho01"], "rho10": params["rho10"]}
    cells = []
    for share in (float(v) for v in args.swapped_shares.split(",")):
        for seed in _parse_seeds(args.seeds):
            log, info = simulate_pairs(rated, **params, rating=args.rating, embeddings=X, seed=seed,
                                       dataset=args.dataset, swapped_share=share)
            XP = pair_features(X[log[INDEX_A].to_numpy()], X[log[INDEX_B].to_numpy()])
            for source in FLIP_SOURCES:
                nuis = fit_nuisances(log, XP, FitConfig(seed=seed, flip_method=source), methods=["denoise"])
                cells.append({"share": share, "seed": seed, "source": source, "votes": info["votes"],
                              "swapped_voted": info["swapped_voted"], "rho01": nuis.rho01, "rho10": nuis.rho10,
                              "ci": nuis.rho_ci})
                print(json.dumps(cells[-1]), flush=True)
    command = "python benchmarks/pairwise_feedback.py " + " ".join(sys.argv[1:])
    write_json_atomic({"command": command, "dataset": args.dataset, "rating": args.rating, "params": params,
                       "cells": cells}, args.out)
    out = [f"`{command}`", "", "| share shown in both orders | pairs voted in both orders | source | "
           "rho01 error | rho10 error | 95% CI holds rho01 / rho10 | CI width rho01 / rho10 |", "| --- " * 7 + "|"]
    for share in dict.fromkeys(c["share"] for c in cells):
        for source in FLIP_SOURCES:
            sel = [c for c in cells if c["share"] == share and c["source"] == source]
            err = {k: np.mean([abs(c[k] - truth[k]) for c in sel]) for k in truth}
            held = {k: sum(c["ci"][k][0] <= truth[k] <= c["ci"][k][1] for c in sel) for k in truth}
            width = {k: np.mean([c["ci"][k][1] - c["ci"][k][0] for c in sel]) for k in truth}
            out.append(f"| {share:g} | {np.mean([c['swapped_voted'] for c in sel]):.0f} | {source} | "
                       f"{err['rho01']:.3f} | {err['rho10']:.3f} | {held['rho01']}/{len(sel)} / "
                       f"{held['rho10']}/{len(sel)} | {width['rho01']:.3f} / {width['rho10']:.3f} |")
    return "\n".join(out)


def report(paths: list[str], seeds: str | None = None) -> str:
    """Markdown tables of ``run``'s JSON files; ``seeds`` (e.g. ``5-9``): only those seeds' cells (a held-out subset
    of seeds)."""
    out = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        cells = data["cells"]
        if seeds is not None:
            keep = set(_parse_seeds(seeds))
            cells = [c for c in cells if c["seed"] in keep]
            if not cells:
                raise SystemExit(f"{path}: none of the seeds {seeds}")
        p = data["params"]
        votes = [c["log"]["votes"] for c in cells]
        first = [c["log"]["votes_for_first"] for c in cells]
        out.append(f"**{data['dataset']}, {data['rating']} scores; rho01 {p['rho01']:g} (P(vote b | a better)), "
                   f"rho10 {p['rho10']:g} (P(vote a | b better)), vote rate {p['vote_rate']:g}, selection "
                   f"{p['selection']:g}, prompt selection {p['prompt_selection']:g}** ({len(cells)} seeds; "
                   f"seeds {cells[0]['seed']}-{cells[-1]['seed']}; {cells[0]['log']['pairs']:,} pairs, "
                   f"{np.mean(votes):,.0f} votes on average, "
                   f"{np.mean(first):.0%} for the first-shown; flip rates estimated "
                   f"{np.mean([c['rho01_hat'] or 0 for c in cells]):.3f} / "
                   f"{np.mean([c['rho10_hat'] or 0 for c in cells]):.3f}; auto kept "
                   + ", ".join(f"{m} {n}x" for m, n in _counts([c['auto_choice'] for c in cells]).items())
                   + f")\n\n`{data['command']}`\n")
        methods = list(cells[0]["methods"])
        shown = [m for m in METRICS if all(m in c["methods"]["naive"] for c in cells)]
        out.append("| method | " + " | ".join(f"{m} | {m} - naive [95% CI]" for m in shown) + " |")
        out.append("| --- |" + " --- | --- |" * len(shown))
        for m in methods:
            row = [m]
            for metric in shown:
                vals = np.array([c["methods"][m][metric] for c in cells])
                base = np.array([c["methods"]["naive"][metric] for c in cells])
                row.append(f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}")
                if m == "naive":
                    row.append("")
                else:
                    diff = vals - base
                    lo, hi = bootstrap_ci(np.mean, diff, n_boot=2000, seed=0)
                    row.append(f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


#: the L2 penalties ``linear-bt`` tries
BT_PENALTIES = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 1e-3)


def _linear_bt(D: np.ndarray, r: np.ndarray, rho01: float, rho10: float, penalty: float) -> np.ndarray:
    """w minimising the forward-corrected likelihood of the votes, mean -log P(r | x_a - x_b) with
    P(r = 1) = (1 - rho01) s + rho10 (1 - s), s = sigma(w . d), plus ``penalty`` |w|^2 (rates 0: plain logistic
    Bradley-Terry); L-BFGS from w = 0."""
    from scipy.optimize import minimize

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = sigmoid(D @ w)
        pi = np.clip((1 - rho01) * s + rho10 * (1 - s), 1e-9, 1 - 1e-9)
        nll = -np.mean(r * np.log(pi) + (1 - r) * np.log(1 - pi))
        grad_z = -(r / pi - (1 - r) / (1 - pi)) * (1 - rho01 - rho10) * s * (1 - s) / r.size
        return nll + penalty * w @ w, D.T @ grad_z + 2 * penalty * w

    return minimize(objective, np.zeros(D.shape[1]), jac=True, method="L-BFGS-B").x


def linear_bt(args: argparse.Namespace) -> str:
    """What linear Bradley-Terry on the votes can reach: logistic on the standardised x_a - x_b of every voted
    train/val pair, plain (``naive``) and forward-corrected with the simulation's true rates (``fcorr``), at each
    L2 penalty of ``BT_PENALTIES``; pairwise accuracy on the clean test pairs. Choosing the penalty on the test
    pairs (the "best" row) is an oracle: a bound on what such a model reaches, not a method.

        python benchmarks/pairwise_feedback.py linear-bt --seeds 0-4 --out docs/results/pairwise/linear_bt.json
    """
    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    Xs = (X - X.mean(0)) / np.maximum(X.std(0), 1e-6)
    params = {k: getattr(args, k) for k in DEFAULTS}
    acc: dict[str, dict[float, list[float]]] = {"naive": {}, "fcorr": {}}
    for seed in _parse_seeds(args.seeds):
        log, _ = simulate_pairs(rated, **params, rating=args.rating, embeddings=X, seed=seed, dataset=args.dataset)
        D = Xs[log[INDEX_A].to_numpy()] - Xs[log[INDEX_B].to_numpy()]
        split = log[schema.SPLIT].to_numpy()
        fit = (split != schema.TEST) & (log[schema.OBSERVED].to_numpy() == 1)
        test = split == schema.TEST
        r = log[schema.FEEDBACK].to_numpy()[fit].astype(np.float64)
        truth = log[schema.TRUE_LABEL].to_numpy()[test] == 1
        for name, rates in (("naive", (0.0, 0.0)), ("fcorr", (args.rho01, args.rho10))):
            for penalty in BT_PENALTIES:
                w = _linear_bt(D[fit], r, *rates, penalty)
                acc[name].setdefault(penalty, []).append(float(np.mean((D[test] @ w > 0) == truth)))
    write_json_atomic({"command": " ".join(sys.argv), "params": params, "accuracy": acc}, args.out)
    lines = ["| L2 penalty | naive | fcorr (true rates) |", "|---|---|---|"]
    for penalty in BT_PENALTIES:
        lines.append(f"| {penalty:g} | {np.mean(acc['naive'][penalty]):.3f} | {np.mean(acc['fcorr'][penalty]):.3f} |")
    best = {m: np.mean(np.max([acc[m][k] for k in BT_PENALTIES], axis=0)) for m in acc}
    lines.append(f"| best per seed (oracle) | {best['naive']:.3f} | {best['fcorr']:.3f} |")
    return "\n".join(lines)


def _counts(values: list[Any]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", default="wildbench")
    r.add_argument("--rating", choices=("real", "teacher"), default="teacher")
    r.add_argument("--seeds", default="0-9")
    r.add_argument("--methods", default=",".join(METHODS))
    for name, value in DEFAULTS.items():
        r.add_argument("--" + name.replace("_", "-"), type=float, default=value)
    r.add_argument("--out", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("paths", nargs="+")
    rep.add_argument("--seeds", default=None, help="only these seeds' cells, e.g. 5-9")
    fs = sub.add_parser("flip-sources")
    fs.add_argument("--dataset", default="wildbench")
    fs.add_argument("--rating", choices=("real", "teacher"), default="teacher")
    fs.add_argument("--seeds", default="0-4")
    fs.add_argument("--swapped-shares", default="0.25,1")
    for name, value in DEFAULTS.items():
        fs.add_argument("--" + name.replace("_", "-"), type=float, default=value)
    fs.add_argument("--out", required=True)
    bt = sub.add_parser("linear-bt")
    bt.add_argument("--dataset", default="wildbench")
    bt.add_argument("--rating", choices=("real", "teacher"), default="teacher")
    bt.add_argument("--seeds", default="0-4")
    for name, value in DEFAULTS.items():
        bt.add_argument("--" + name.replace("_", "-"), type=float, default=value)
    bt.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "flip-sources":
        print(flip_sources(args))
    elif args.command == "linear-bt":
        print(linear_bt(args))
    else:
        print(report(args.paths, args.seeds))


if __name__ == "__main__":
    main()
