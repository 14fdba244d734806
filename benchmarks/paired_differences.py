"""The paper's ablation as paired differences: per seed, R² of a CausalRM estimator minus R² of naive, IPS alone and
denoise alone on the *same* simulated log, with a percentile bootstrap interval over seeds.

Reads ``causalrm bench`` JSON files (any number of cells); prints one markdown table. Pairing removes the
log-to-log spread that all methods share, so it separates the methods with far fewer seeds than comparing means.

    python benchmarks/paired_differences.py docs/results/ablation/*.json
    # one row per (cell, estimator), any metric of the bench rows (r2, auroc, prompt_kendall, ...)
    python benchmarks/paired_differences.py --long --metric r2 --estimators causalrm-tdr,causalrm-sdr \
        --references naive,ips,denoise,causalrm-ips,causalrm-dr docs/results/dr/*.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.evaluation.metrics import bootstrap_ci  # noqa: E402

ESTIMATORS = ("causalrm-ips", "causalrm-dr")
REFERENCES = ("naive", "ips", "denoise")


def paired(by_seed: dict[int, dict[str, float]], method: str, reference: str) -> str:
    diff = np.array([v[method] - v[reference] for v in by_seed.values() if method in v and reference in v
                     and v[method] is not None and v[reference] is not None])
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return "–"
    lo, hi = bootstrap_ci(np.mean, diff, n_boot=10_000, seed=0)
    return f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] {int((diff > 0).sum())}/{len(diff)}"


def by_seed_of(results: list[dict], metric: str = "r2") -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for row in results:
        out[row["seed"]][row["method"]] = row.get(metric)
    return out


def cell_row(name: str, results: list[dict], estimators=ESTIMATORS, references=REFERENCES) -> str:
    """One table row: for each (estimator, reference), the mean over seeds of R²(estimator) - R²(reference), its
    95% percentile bootstrap interval over seeds, and how many seeds are positive."""
    by_seed: dict[int, dict[str, float]] = defaultdict(dict)
    for row in results:
        by_seed[row["seed"]][row["method"]] = row["r2"]
    cells = []
    for method in estimators:
        for reference in references:
            diff = np.array([v[method] - v[reference] for v in by_seed.values() if method in v and reference in v])
            if len(diff) == 0:
                cells.append("–")
                continue
            lo, hi = bootstrap_ci(np.mean, diff, n_boot=10_000, seed=0)
            cells.append(f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] {int((diff > 0).sum())}/{len(diff)}")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="causalrm bench JSON files")
    ap.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated estimators")
    ap.add_argument("--references", default=",".join(REFERENCES), help="comma-separated references")
    ap.add_argument("--metric", default="r2", help="bench row metric (r2, auroc, prompt_kendall, ...; --long only)")
    ap.add_argument("--long", action="store_true", help="one row per (cell, estimator), one column per reference")
    args = ap.parse_args()
    estimators = tuple(m for m in args.estimators.split(",") if m)
    references = tuple(m for m in args.references.split(",") if m)
    if args.long:
        print("| cell | estimator | " + " | ".join(f"− {r}" for r in references) + " |")
        print("|" + "---|" * (len(references) + 2))
        for path in sorted(args.files):
            with open(path, encoding="utf-8") as fh:
                by_seed = by_seed_of(json.load(fh)["results"], args.metric)
            name = os.path.basename(path).removesuffix(".json")
            for m in estimators:
                print(f"| {name} | {m} | " + " | ".join(paired(by_seed, m, r) for r in references) + " |")
        print(f"\nEach entry: mean over seeds of the paired {args.metric} difference (estimator − reference) on the "
              "clean test split [95% percentile bootstrap CI over seeds], then the number of seeds where it is "
              "positive.")
        return
    ESTIMATORS_, REFERENCES_ = estimators, references
    header = [f"{m} − {r}" for m in ESTIMATORS_ for r in REFERENCES_]
    print("| cell | " + " | ".join(header) + " |")
    print("|" + "---|" * (len(header) + 1))
    for path in sorted(args.files):
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)["results"]
        print(cell_row(os.path.basename(path).removesuffix(".json"), results, ESTIMATORS_, REFERENCES_))
    print("\nEach entry: mean over seeds of the paired R² difference on the clean test split [95% percentile "
          "bootstrap CI over seeds], then the number of seeds where it is positive.")


if __name__ == "__main__":
    main()
