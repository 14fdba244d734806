"""The paper's ablation as paired differences: per seed, R² of a CausalRM estimator minus R² of naive, IPS alone and
denoise alone on the *same* simulated log, with a percentile bootstrap interval over seeds.

Reads ``causalrm bench`` JSON files (any number of cells); prints one markdown table. Pairing removes the
log-to-log spread that all methods share, so it separates the methods with far fewer seeds than comparing means.

    python benchmarks/paired_differences.py docs/results/ablation/*.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.evaluation import bootstrap_ci  # noqa: E402

ESTIMATORS = ("causalrm-ips", "causalrm-dr")
REFERENCES = ("naive", "ips", "denoise")


def cell_row(name: str, results: list[dict]) -> str:
    """One table row: for each (estimator, reference), the mean over seeds of R²(estimator) - R²(reference), its
    95% percentile bootstrap interval over seeds, and how many seeds are positive."""
    by_seed: dict[int, dict[str, float]] = defaultdict(dict)
    for row in results:
        by_seed[row["seed"]][row["method"]] = row["r2"]
    cells = []
    for method in ESTIMATORS:
        for reference in REFERENCES:
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
    args = ap.parse_args()
    header = [f"{m} − {r}" for m in ESTIMATORS for r in REFERENCES]
    print("| cell | " + " | ".join(header) + " |")
    print("|" + "---|" * (len(header) + 1))
    for path in sorted(args.files):
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)["results"]
        print(cell_row(os.path.basename(path).removesuffix(".json"), results))
    print("\nEach entry: mean over seeds of the paired R² difference on the clean test split [95% percentile "
          "bootstrap CI over seeds], then the number of seeds where it is positive.")


if __name__ == "__main__":
    main()
