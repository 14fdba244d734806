"""What `auto` chooses with a smaller candidate set: replay its rule on the evidence a bench run recorded.

Run a cell with every candidate of the larger set as a method, plus `auto` with that set:

    causalrm bench ... --methods naive,ips,denoise,causalrm-ips,causalrm-mrdr,auto \\
        --auto-candidates ips,denoise,causalrm-ips,causalrm-mrdr --json OUT.json

`auto` reuses those fits and records, per seed, each candidate's evidence (``row["choice"]``). Restricting that
record to a subset and applying the same rule (``causalrm.workflows.selection.pick``) gives the choice `auto` makes with the
subset on the same fits and nuisances, so each candidate set's R² per seed is the R² of the method it picks (the
bench's row of that method). Prints, per file, the R² of `auto` under each set, their paired difference with a
percentile bootstrap interval over seeds, and what each set chose (``--metric auroc``: the same for the test AUROC).

    python benchmarks/auto_candidates.py --subset naive,ips,denoise,causalrm-ips OUT.json [MORE.json ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.estimators.methods import BASELINE  # noqa: E402
from causalrm.evaluation.metrics import bootstrap_ci  # noqa: E402
from causalrm.options import as_str_tuple  # noqa: E402
from causalrm.workflows.selection import pick  # noqa: E402


def replay(doc: dict, subset: tuple[str, ...], metric: str = "r2") -> list[dict]:
    """Per seed: the recorded choice (the full set) and the subset's, with their ``metric`` (stored as ``r2_full``
    and ``r2_subset`` whatever the metric)."""
    r2 = {(r["method"], r["seed"]): r[metric] for r in doc["results"]}
    out = []
    for row in doc["results"]:
        if row["method"] != "auto":
            continue
        choice = row.get("choice")
        if choice is None:
            raise SystemExit(f"error: seed {row['seed']}: this bench file records no auto evidence; rerun it")
        kept = {m: c for m, c in choice["candidates"].items() if m in subset or m == BASELINE}
        sub = pick(kept, choice["central"])
        full = row["chosen"]
        for m in (sub, full):
            if (m, row["seed"]) not in r2:
                raise SystemExit(f"error: seed {row['seed']}: {m} was chosen but has no row; list every "
                                 "candidate in --methods")
        out.append({"seed": row["seed"], "full": full, "subset": sub, "r2_full": r2[(full, row["seed"])],
                    "r2_subset": r2[(sub, row["seed"])]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="causalrm bench JSON files with auto and every candidate")
    ap.add_argument("--subset", required=True, help="the smaller candidate set, comma-separated")
    ap.add_argument("--metric", default="r2", choices=("r2", "auroc"), help="the bench metric compared")
    args = ap.parse_args()
    subset = as_str_tuple(args.subset)
    label = {"r2": "R²", "auroc": "AUROC"}[args.metric]
    print(f"| cell | auto, full set {label} | auto, subset {label} | full − subset [95% CI] seeds above / below | "
          "full set chose | subset chose |")
    print("|---|---|---|---|---|---|")
    for path in args.files:
        with open(path, encoding="utf-8") as fh:
            rows = replay(json.load(fh), subset, args.metric)
        diff = np.array([r["r2_full"] - r["r2_subset"] for r in rows])
        lo, hi = bootstrap_ci(np.mean, diff, n_boot=10_000, seed=0)
        count = lambda key: ", ".join(f"{m} {n}" for m, n in Counter(r[key] for r in rows).most_common())  # noqa
        name = os.path.basename(path).removesuffix(".json")
        print(f"| {name} | {np.mean([r['r2_full'] for r in rows]):.3f} | "
              f"{np.mean([r['r2_subset'] for r in rows]):.3f} | {diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] "
              f"{int((diff > 0).sum())} / {int((diff < 0).sum())} | {count('full')} | {count('subset')} |")


if __name__ == "__main__":
    main()
