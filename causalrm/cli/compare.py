"""`causalrm compare RUN_A RUN_B [--top-k 10]`: how differently two reward models rank the same responses.

Uses each run's ``scored.parquet`` (or scores ``--log`` with both runs), matches rows on ``response_id`` and prints
global and per-prompt Kendall tau / Spearman rho, agreement with gold labels when present, the top-k overlap and the
largest rank shifts with their texts. With clean labels (a simulated log's test split, or gold labels), it first
says in one sentence whether RUN_B is better, level or worse than RUN_A (paired bootstrap interval of the R²
difference); a run whose metrics.json says it did not learn gets a ``warning:`` line. ``--json OUT`` writes the full comparison.

Example::

    causalrm compare runs/naive runs/dr --top-k 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from causalrm.evaluation import READING_GUIDE


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="compare the rankings of two fitted runs",
                              description="Compare how two runs rank the same responses.")
    p.add_argument("run_a", metavar="RUN_A", help="first run directory")
    p.add_argument("run_b", metavar="RUN_B", help="second run directory")
    p.add_argument("--top-k", type=int, default=10, help="size of the top set and of the rank-shift list (default 10)")
    p.add_argument("--log", default=None, help="score this log with both runs instead of their scored.parquet")
    p.add_argument("--map", dest="mapping", nargs="+", action="extend", metavar="CANON=COLUMN", default=None,
                   help="column mapping for --log")
    p.add_argument("--gold", default=None, help="column with clean labels (default gold_label, then true_label)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="also write the comparison as JSON")
    p.add_argument("--width", type=int, default=70, help="characters of text shown per rank shift")
    return p


def _verdict(scored_a, scored_b, names: tuple[str, str], unlearned: list[str]) -> dict | None:
    """RUN_B against RUN_A on the clean labels the scored logs carry (rows matched on response_id)."""
    import polars as pl

    from causalrm.evaluation import labelled_verdict

    both = scored_a.join(scored_b.select("response_id", pl.col("preference").alias("preference_b")),
                         on="response_id", how="inner")
    if both.height == 0:
        return None
    reasons = [f"{name} did not learn" for name in unlearned]
    return labelled_verdict(both, both["preference"].to_numpy(), both["preference_b"].to_numpy(),
                            baseline=names[0], debiased=names[1], reasons=reasons)


def run(args: argparse.Namespace) -> int:
    from causalrm.evaluation import compare_rankings
    from causalrm.io import parse_mapping, read_log, write_json_atomic
    from causalrm.runs import load_run, score_log

    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    if args.log:
        log = read_log(args.log, mapping=parse_mapping(args.mapping) if args.mapping else None)
        scored_a, scored_b = score_log(run_a, log), score_log(run_b, log)
    else:
        scored_a, scored_b = run_a.scored(), run_b.scored()
    names = (f"{Path(args.run_a).name} ({run_a.config.method})", f"{Path(args.run_b).name} ({run_b.config.method})")
    comparison = compare_rankings(scored_a, scored_b, gold=args.gold, top_k=args.top_k, names=names)
    unlearned = [name for name, run in zip(names, (run_a, run_b)) if run.metrics.get("learned") is False]
    for name in unlearned:
        print(f"warning: {name} did not learn (metrics.json); its rank shifts are noise, not findings",
              file=sys.stderr)
    found = _verdict(scored_a, scored_b, names, unlearned)
    if found:
        print(found["verdict"])
        print(f"note: {READING_GUIDE}")
    print(comparison.format(width=args.width))
    if args.json_out:
        write_json_atomic({**comparison.to_dict(), "verdict": found, "did_not_learn": unlearned}, args.json_out)
        print(f"wrote {args.json_out}")
    return 0
