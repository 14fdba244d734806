"""How much of a cell's R² gap a calibration fix could close: the ranking ceiling of each method's scores.

Runs one `causalrm bench` cell (the same arguments) and, for every (seed, method), also scores the method's test
predictions after the best monotone recalibration of them: isotonic regression of the clean test label on the
predicted probability, fitted on those same test rows (Barlow et al. 1972; ``sklearn.isotonic``). In-sample, so it is
an upper bound: no correction that keeps a method's ordering of the test rows (a reweighting of a flexible head's
loss, an affine noise correction of its target, any calibration map) can score a higher R² than this. It reads test
labels, so it measures a ceiling and never selects anything.

Reported per method: R², AUROC, the isotonic ceiling R²_iso, and both as a share of the gap between naive's R² and
oracle-observed's (the gap-closed definition of `causalrm bench`), with the mean over seeds.

    python benchmarks/calibration_ceiling.py --dataset wildbench --rating teacher --alpha 0.2 --rho01 0.15 \\
        --rho10 0.25 --seeds 5,6,7 --methods naive,causalrm-ips,causalrm-dr,oracle-observed --threads 1 \\
        --json OUT.json --markdown OUT.md
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.atomic_io import write_json_atomic, write_text_atomic  # noqa: E402
from causalrm.cli import bench as bench_cli  # noqa: E402
from causalrm.evaluation.metrics import METRICS, evaluation_rows, metrics, sigmoid
from causalrm.workflows.bench import gap_closed  # noqa: E402


def isotonic_ceiling(y: np.ndarray, prob: np.ndarray) -> float:
    """R² of the in-sample isotonic recalibration of ``prob`` against the labels ``y`` (an upper bound)."""
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit_transform(prob, y)
    return metrics(y, fitted)["r2"]


def table(rows: list[dict]) -> tuple[list[dict], str]:
    """Per-method means over seeds and gap shares (``causalrm.workflows.bench.gap_closed``: the bench's convention) of R²
    and of the ceiling, against naive's R² and oracle-observed's on the same seeds."""
    by_seed: dict[int, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        by_seed[r["seed"]][r["method"]] = r
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = []
    for m in methods:
        per = [s[m] for s in by_seed.values() if m in s]
        paired = [s for s in by_seed.values() if m in s and "naive" in s and "oracle-observed" in s]
        ends = ([s["naive"]["r2"] for s in paired], [s["oracle-observed"]["r2"] for s in paired])
        summary.append({"method": m, "seeds": len(per), "r2": float(np.mean([p["r2"] for p in per])),
                        "auroc": float(np.mean([p["auroc"] for p in per])),
                        "r2_iso": float(np.mean([p["r2_iso"] for p in per])),
                        "gap": gap_closed([s[m]["r2"] for s in paired], *ends) if paired else None,
                        "gap_iso": gap_closed([s[m]["r2_iso"] for s in paired], *ends) if paired else None})
    pct = lambda v: "–" if v is None else f"{v:.0%}"  # noqa: E731
    lines = ["| method | R² | AUROC | R² after isotonic recalibration on the test labels (ceiling) | gap closed | "
             "gap closed at the ceiling |", "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['method']} | {s['r2']:.3f} | {s['auroc']:.3f} | {s['r2_iso']:.3f} | {pct(s['gap'])} | "
                     f"{pct(s['gap_iso'])} |")
    return summary, "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    bench_cli.add_parser(sub)
    args = ap.parse_args(["bench", *sys.argv[1:]])
    config = bench_cli.config_from_args(args)
    if "naive" not in config.methods or "oracle-observed" not in config.methods:
        raise SystemExit("error: --methods must include naive and oracle-observed (the gap's two ends)")
    from causalrm.workflows.bench import run_bench

    ceiling: dict[tuple[int, str], float] = {}

    def on_scores(seed: int, method: str, log, rewards: np.ndarray) -> None:
        at, column, _ = evaluation_rows(log)  # the bench's evaluation rows: its row holds the raw metrics
        y = log[column].cast(float).to_numpy()[at]
        ceiling[(seed, method)] = isotonic_ceiling(y, sigmoid(np.asarray(rewards, dtype=np.float64)[at]))

    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = run_bench(config, progress=say, on_scores=on_scores)
    rows = [{"seed": r["seed"], "method": r["method"], **{k: r[k] for k in METRICS},
             "r2_iso": ceiling[(r["seed"], r["method"])]} for r in result.results]
    summary, md = table(rows)
    write_json_atomic({"config": config.to_dict(), "rows": rows, "summary": summary}, args.json_out)
    if args.md_out:
        write_text_atomic(md + "\n", args.md_out)
    print(md)


if __name__ == "__main__":
    main()
