"""Implicit (positive-only) feedback measured against the truth: docs/RESULTS.md, "Implicit feedback".

Per seed, a simulated copy log (``causalrm simulate --feedback-kind implicit``: a good response copied with
probability C, a bad one with EPS, on every impression, no examination model), read as impressions
(``causalrm.data.feedback_kinds``); an audit of N rows proposed by the audit design and labelled with the clean label
(``teaching.simulated_audit``); then, on shared nuisances (rates from the audit), every method fitted; metrics of
sigma(z) on the clean test split (R², AUROC, and ECE: the calibration of sigma(z) over ten equal-count bins).

``run``: one cell, methods naive (the uncorrected reading: no copy = thumbs-down), denoise (= uPU with the audited
rates), nnpu, auto (the default method, given the audit) and oracle (clean labels of every train row: the ceiling).
``curve``: the audit-size curve: for N in --audits (prefixes of one design), the audited rates, the test R² of
denoise and of auto's kept model, and the audited R² interval of auto's kept model (``audit.audited_evaluation``, the
interval the user sees). ``report``: markdown tables with paired differences over seeds.

    python benchmarks/implicit_feedback.py run --dataset wildbench --rating teacher --seeds 0-9 \\
        --out docs/results/implicit/wildbench_teacher.json
    python benchmarks/implicit_feedback.py run --dataset synthetic:20000x32 --seeds 0-9 \\
        --out docs/results/implicit/synthetic.json
    python benchmarks/implicit_feedback.py curve --dataset wildbench --rating teacher --seeds 0-4 \\
        --audits 100,300,1000 --out docs/results/implicit/audit_curve.json
    python benchmarks/implicit_feedback.py mixed --dataset wildbench --rating teacher --seeds 0-9 \\
        --out docs/results/implicit/mixed_wildbench_teacher.json
    python benchmarks/implicit_feedback.py report docs/results/implicit/*.json
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
import polars as pl  # noqa: E402

from causalrm.atomic_io import write_json_atomic  # noqa: E402
from causalrm.config import FitConfig  # noqa: E402
from causalrm.data import schema  # noqa: E402
from causalrm.data.feedback_kinds import FEEDBACK_KIND, as_impressions  # noqa: E402
from causalrm.evaluation import audit
from causalrm.evaluation.metrics import bootstrap_ci, metrics, sigmoid  # noqa: E402
from causalrm.simulation.feedback import COPIED  # noqa: E402
from causalrm.simulation.simulate import simulate_with_config  # noqa: E402
from causalrm.workflows.bench import BenchConfig, _load_rated  # noqa: E402
from causalrm.workflows.orchestrate import fit_methods  # noqa: E402
from causalrm.workflows.teaching import simulated_audit  # noqa: E402

METHODS = ("naive", "denoise", "nnpu", "auto", "oracle")
N_BINS = 10


def ece(y: np.ndarray, prob: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error of ``prob`` over ``n_bins`` equal-count bins: sum_b (n_b / n) |mean y - mean p|."""
    order = np.argsort(prob, kind="stable")
    return float(sum(len(b) / len(y) * abs(y[b].mean() - prob[b].mean()) for b in np.array_split(order, n_bins)))


def _parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def audited_log(args: argparse.Namespace, rated: pl.DataFrame, X: np.ndarray, seed: int, n_audit: int
                ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The implicit log of ``seed``, read as impressions, with an audit of ``n_audit`` rows merged."""
    log, cfg = simulate_with_config(rated, feedback_kind="implicit", event_rate_good=args.c, event_rate_bad=args.eps,
                                    rating=args.rating, embeddings=X, seed=seed, dataset=args.dataset)
    log = as_impressions(log)
    rows, strata = audit.design_strata(log, X, seed=seed)
    labels = simulated_audit(log, rows, strata, n_audit, seed=seed)
    return audit.merge_labels(log, labels), {"events": int(log[schema.FEEDBACK].sum()), "rows": log.height}


def test_metrics(log: pl.DataFrame, rewards: np.ndarray) -> dict[str, float]:
    test = (log[schema.SPLIT] == schema.TEST).to_numpy()
    y = log[schema.TRUE_LABEL].cast(pl.Float64).to_numpy()[test]
    prob = sigmoid(np.asarray(rewards)[test])
    out = metrics(y, prob)
    return {"r2": out["r2"], "auroc": out["auroc"], "mse": out["mse"], "ece": ece(y, prob)}


def result_row(key: dict[str, Any], result: Any, log: pl.DataFrame, X: np.ndarray, label: str, **extra: Any
               ) -> dict[str, Any]:
    """One result row: ``key``, the test metrics of ``result`` on ``log``, ``extra`` and, for auto, the method it
    kept; printed as one progress line."""
    row = {**key, **test_metrics(log, result.score(log, X)), **extra}
    if result.choice is not None:
        row["chosen"] = result.choice["method"]
    print(f"{label}: R2 {row['r2']:.3f} AUROC {row['auroc']:.3f} ECE {row['ece']:.3f}"
          + (f" (kept {row['chosen']})" if "chosen" in row else ""), file=sys.stderr, flush=True)
    return row


def fit_cell(log: pl.DataFrame, X: np.ndarray, seed: int, methods: tuple[str, ...], **fit: Any) -> dict[str, Any]:
    def config_for(method: str) -> FitConfig:  # every method measured past the gates but auto, as in causalrm bench
        return FitConfig(method=method, seed=seed, force_noise_correction=method != "auto", **fit)

    fits = fit_methods(log, X, config_for(methods[0]), methods, config_for=config_for,
                       reuse=lambda candidate, auto: True)
    return fits


def run(args: argparse.Namespace) -> dict[str, Any]:
    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    rows = []
    for seed in _parse_seeds(args.seeds):
        t0 = time.perf_counter()
        log, info = audited_log(args, rated, X, seed, args.audit)
        fits = fit_cell(log, X, seed, tuple(args.methods.split(",")), max_epochs=args.epochs)
        nuis = next(iter(fits.values())).nuisances
        for method, result in fits.items():
            rows.append(result_row({"seed": seed, "method": method}, result, log, X, f"seed {seed} {method}",
                                   **info, rho01_hat=nuis.rho01, rho10_hat=nuis.rho10, rho_ci=nuis.rho_ci))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return {"kind": "run", "config": vars(args), "results": rows}


def mixed(args: argparse.Namespace) -> dict[str, Any]:
    """Per seed, a mixed log (thumbs under selection and flips, plus copies on every impression), an audit of
    ``args.audit`` rows designed on the copies (``audit.design_strata`` on a mixed log), and the default method on
    each reading: the thumbs alone, the copies alone, both (``causalrm.data.mixed_feedback``), and both with the event
    rates given instead of read from the audit (``--event-rate`` / ``--accidental-rate``); plus the mixed log's
    single methods."""
    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    rows = []
    for seed in _parse_seeds(args.seeds):
        t0 = time.perf_counter()
        log, _ = simulate_with_config(rated, feedback_kind="mixed", alpha=args.alpha, rho01=args.rho01,
                                      rho10=args.rho10, event_rate_good=args.c, event_rate_bad=args.eps,
                                      rating=args.rating, embeddings=X, seed=seed, dataset=args.dataset)
        log = as_impressions(log)
        design, strata = audit.design_strata(log, X, seed=seed)
        log = audit.merge_labels(log, simulated_audit(log, design, strata, args.audit, seed=seed))
        thumbs = as_impressions(log.drop(COPIED, FEEDBACK_KIND), "explicit")
        copies = as_impressions(log.drop(schema.FEEDBACK, FEEDBACK_KIND).rename({COPIED: schema.FEEDBACK}), "implicit")
        rates = {"event_rate": args.c, "accidental_rate": args.eps}
        cells = {"thumbs": (thumbs, ("auto",), {}), "copies": (copies, ("auto",), {}),
                 "mixed": (log, ("naive", "denoise", "causalrm-ips", "auto"), {}),
                 "mixed-rates": (log.drop(schema.GOLD_LABEL), ("auto",), rates)}
        for cell, (cell_log, methods, fit) in cells.items():
            for method, result in fit_cell(cell_log, X, seed, methods, max_epochs=args.epochs, **fit).items():
                rows.append(result_row({"seed": seed, "cell": cell, "method": method}, result, log, X,
                                       f"seed {seed} {cell} {method}"))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return {"kind": "mixed", "config": vars(args), "results": rows}


def curve(args: argparse.Namespace) -> dict[str, Any]:
    rated, X = _load_rated(BenchConfig(dataset=args.dataset, rating=args.rating))
    rows = []
    for seed in _parse_seeds(args.seeds):
        for n in (int(v) for v in args.audits.split(",")):
            log, info = audited_log(args, rated, X, seed, n)
            fits = fit_cell(log, X, seed, ("naive", "denoise", "auto"), max_epochs=args.epochs)
            auto = fits["auto"]
            nuis = auto.nuisances
            probs = {m: sigmoid(fits[m].score(log, X)) for m in ("naive", "auto")}
            audited = audit.audited_evaluation(log, probs, split=None, seed=seed)
            runs = (audited or {}).get("runs", {})
            row = {"seed": seed, "n_audit": n, "rho01_hat": nuis.rho01, "rho10_hat": nuis.rho10,
                   "rho_ci": nuis.rho_ci, "chosen": auto.choice["method"],
                   "denoise_r2": test_metrics(log, fits["denoise"].score(log, X))["r2"],
                   "auto_r2": test_metrics(log, auto.score(log, X))["r2"],
                   "audited_r2": runs.get("auto", {}).get("r2"), "audited_r2_ci": runs.get("auto", {}).get("r2_ci"),
                   "audited_n": (audited or {}).get("n"), **info}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return {"kind": "curve", "config": vars(args), "results": rows}


def _paired(by_seed: dict[int, dict[str, float]], a: str, b: str) -> str:
    d = np.array([v[a] - v[b] for v in by_seed.values() if a in v and b in v])
    if d.size == 0:
        return "–"
    lo, hi = bootstrap_ci(np.mean, d, n_boot=10_000, seed=0)
    return f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] {int((d > 0).sum())}/{d.size}"


def mixed_report(data: dict[str, Any], path: str) -> list[str]:
    """The mixed cell's table: each reading's default method and the mixed log's single methods, with R² and AUROC
    paired against the better single signal of each seed (the one with the higher test R², so the comparison is
    against the best a user could have had by picking a signal after the fact)."""
    cfg, res = data["config"], data["results"]
    seeds = sorted({r["seed"] for r in res})
    at = {(r["seed"], r["cell"], r["method"]): r for r in res}
    best = {s: max((at[(s, c, "auto")] for c in ("thumbs", "copies")), key=lambda r: r["r2"]) for s in seeds}
    rows = list(dict.fromkeys((r["cell"], r["method"]) for r in res))
    out = [f"**Mixed feedback: {cfg['dataset']} ({cfg['rating']} ratings); thumbs α {cfg['alpha']}, ρ01 "
           f"{cfg['rho01']}, ρ10 {cfg['rho10']}; copies C {cfg['c']}, EPS {cfg['eps']}; audit of {cfg['audit']} "
           f"rows; {len(seeds)} seeds** ({path})", "",
           "| reading | method | R² | AUROC | R² − better single signal (paired) | AUROC − better single signal |",
           "|---|---|---|---|---|---|"]
    for cell, method in rows:
        rs = [at[(s, cell, method)] for s in seeds]
        kept = ""
        if method == "auto":
            counts = {c: sum(r.get("chosen") == c for r in rs) for c in {r.get("chosen") for r in rs}}
            kept = " (kept: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
        cells = [f"{np.mean([r[k] for r in rs]):.3f} ± {np.std([r[k] for r in rs]):.3f}" for k in ("r2", "auroc")]
        paired = [_paired({s: {"m": at[(s, cell, method)][k], "best": best[s][k]} for s in seeds}, "m", "best")
                  for k in ("r2", "auroc")] if cell.startswith("mixed") else ["–", "–"]
        out.append(f"| {cell} | {method}{kept} | " + " | ".join(cells + paired) + " |")
    picks = {c: sum(best[s]["cell"] == c for s in seeds) for c in ("thumbs", "copies")}
    out += ["", f"The better single signal by test R²: copies in {picks['copies']}, thumbs in {picks['thumbs']} of "
                f"{len(seeds)} seeds.", ""]
    return out


def report(paths: list[str]) -> str:
    out = []
    for path in paths:
        data = json.loads(open(path, encoding="utf-8").read())
        cfg = data["config"]
        rating = "" if cfg["dataset"].startswith("synthetic") else f" ({cfg['rating']} ratings)"
        title = f"{cfg['dataset']}{rating}, C {cfg['c']}, EPS {cfg['eps']}"
        if data["kind"] == "mixed":
            out += mixed_report(data, path)
        elif data["kind"] == "run":
            res = data["results"]
            methods = list(dict.fromkeys(r["method"] for r in res))
            seeds = sorted({r["seed"] for r in res})
            out += [f"**{title}**, audit of {cfg['audit']} rows, {len(seeds)} seeds ({path})", "",
                    "| method | R² | AUROC | ECE of σ(z) | R² − naive (paired) | AUROC − naive (paired) |",
                    "|---|---|---|---|---|---|"]
            for metric_rows in [[r for r in res if r["method"] == m] for m in methods]:
                m = metric_rows[0]["method"]
                cell = [f"{np.mean([r[k] for r in metric_rows]):.3f} ± {np.std([r[k] for r in metric_rows]):.3f}"
                        for k in ("r2", "auroc", "ece")]
                by = {metric: {r["seed"]: {r["method"]: r[metric]} for r in res if r["method"] == "naive"}
                      for metric in ("r2", "auroc")}
                for metric in ("r2", "auroc"):
                    for r in res:
                        if r["method"] == m:
                            by[metric].setdefault(r["seed"], {})[m] = r[metric]
                label = m + (" (kept: " + ", ".join(f"{k} {v}" for k, v in sorted(
                    {c: sum(r.get("chosen") == c for r in metric_rows) for c in
                     {r.get("chosen") for r in metric_rows}}.items())) + ")" if m == "auto" else "")
                paired = ["–", "–"] if m == "naive" else [_paired(by[k], m, "naive") for k in ("r2", "auroc")]
                out.append(f"| {label} | " + " | ".join(cell + paired) + " |")
            by_seed = {}
            for r in res:
                by_seed.setdefault(r["seed"], {})[r["method"]] = r
            if {"nnpu", "denoise"} <= set(methods):
                pairs = [_paired({s: {m: v[m][k] for m in ("nnpu", "denoise")} for s, v in by_seed.items()}, "nnpu",
                                 "denoise") for k in ("r2", "auroc")]
                out += ["", f"nnpu − denoise (paired): R² {pairs[0]}, AUROC {pairs[1]}."]
            if {"naive", "denoise", "oracle"} <= set(methods):
                gap = np.mean([(v["denoise"]["r2"] - v["naive"]["r2"]) / (v["oracle"]["r2"] - v["naive"]["r2"])
                               for v in by_seed.values()])
                out.append(f"denoise closes {gap:.0%} of the naive → oracle R² gap (mean over seeds).")
            rates = [r for r in res if r["method"] == methods[0]]
            out += ["", f"Audited rates (mean over seeds): rho01 {np.mean([r['rho01_hat'] for r in rates]):.3f} "
                        f"(truth {1 - cfg['c']:.3f}), rho10 {np.mean([r['rho10_hat'] for r in rates]):.3f} "
                        f"(truth {cfg['eps']:.3f}); 95% intervals cover the truth in "
                        f"{sum(r['rho_ci']['rho01'][0] <= 1 - cfg['c'] <= r['rho_ci']['rho01'][1] for r in rates)}"
                        f"/{len(rates)} (rho01) and "
                        f"{sum(r['rho_ci']['rho10'][0] <= cfg['eps'] <= r['rho_ci']['rho10'][1] for r in rates)}"
                        f"/{len(rates)} (rho10) seeds.", ""]
        else:
            res = data["results"]
            out += [f"**Audit-size curve: {title}** ({path})", "",
                    "| audited rows | rho01 (truth " + f"{1 - cfg['c']:.2f}) | rho10 (truth {cfg['eps']:.2f}) | "
                    "denoise test R² | auto test R² (kept) | auto's audited R² interval width |",
                    "|---|---|---|---|---|---|"]
            for n in sorted({r["n_audit"] for r in res}):
                rs = [r for r in res if r["n_audit"] == n]
                width = [r["audited_r2_ci"][1] - r["audited_r2_ci"][0] for r in rs if r.get("audited_r2_ci")]
                kept = {c: sum(r["chosen"] == c for r in rs) for c in {r["chosen"] for r in rs}}
                mean = lambda k: f"{np.mean([r[k] for r in rs]):.3f} ± {np.std([r[k] for r in rs]):.3f}"  # noqa: E731
                out.append(f"| {n} | {mean('rho01_hat')} | {mean('rho10_hat')} | {mean('denoise_r2')} | "
                           f"{mean('auto_r2')} ({', '.join(f'{k} {v}' for k, v in sorted(kept.items()))}) | "
                           + (f"{np.mean(width):.2f} ({len(width)}/{len(rs)} seeds with an interval)" if width
                              else "none: not enough labels") + " |")
            out.append("")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "curve", "mixed"):
        q = sub.add_parser(name)
        q.add_argument("--dataset", default="wildbench")
        q.add_argument("--rating", default="teacher", choices=("real", "teacher"))
        q.add_argument("--seeds", default="0-9")
        q.add_argument("--c", type=float, default=0.35, help="P(event | good)")
        q.add_argument("--eps", type=float, default=0.03, help="P(event | bad)")
        q.add_argument("--epochs", type=int, default=FitConfig.max_epochs)
        q.add_argument("--out", required=True)
        if name in ("run", "mixed"):
            q.add_argument("--audit", type=int, default=300)
        if name == "run":
            q.add_argument("--methods", default=",".join(METHODS))
        if name == "mixed":  # the thumbs' selection and flips (the held-out explicit cell of RESULTS)
            q.add_argument("--alpha", type=float, default=0.2)
            q.add_argument("--rho01", type=float, default=0.15)
            q.add_argument("--rho10", type=float, default=0.25)
        else:
            q.add_argument("--audits", default="100,300,1000")
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+")
    args = p.parse_args()
    if args.cmd == "report":
        print(report(args.files))
        return 0
    data = {"run": run, "curve": curve, "mixed": mixed}[args.cmd](args)
    write_json_atomic(data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
