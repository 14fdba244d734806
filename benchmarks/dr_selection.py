"""Step 3 of the pre-registered DR protocol (docs/METHOD.md, "The DR variants and how they are validated"): which
``causalrm-`` DR variant has the lowest mean best validation estimate of the shared criterion (``causalrm-snips``,
the self-normalised IPS estimate of the corrected loss on the val rows), over the seeds of the given cells. Reads no
clean label; the test-split columns beside it (R², gap closed against oracle-observed) are printed for the report,
never used to choose.

    python benchmarks/dr_selection.py docs/results/dr/*.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

CRITERION = "causalrm-snips"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="causalrm bench JSON files")
    args = ap.parse_args()
    val: dict[str, list[float]] = defaultdict(list)
    r2: dict[str, list[float]] = defaultdict(list)
    for path in sorted(args.files):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        for row in data["results"]:
            if row.get("val_method") == CRITERION and row["method"].startswith("causalrm-"):
                v = row.get("best_val_estimate")
                if v is not None and math.isfinite(v):
                    val[row["method"]].append(v)
                    r2[row["method"]].append(row["r2"])
    if not val:
        raise SystemExit(f"no rows validated on {CRITERION}")
    print(f"| variant | fits | mean best val {CRITERION} (chooses) | mean test R² (reported only) |")
    print("|---|---|---|---|")
    ranked = sorted(val, key=lambda m: sum(val[m]) / len(val[m]))
    for m in ranked:
        print(f"| {m} | {len(val[m])} | {sum(val[m]) / len(val[m]):.5f} | {sum(r2[m]) / len(r2[m]):.3f} |")
    print(f"\nChosen by the protocol (lowest mean validation criterion): {ranked[0]}.")


if __name__ == "__main__":
    main()
