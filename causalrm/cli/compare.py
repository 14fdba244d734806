"""`causalrm compare RUN_A RUN_B [--top-k 10] [--gold FILE]`: how differently two reward models rank the same
responses, and which is better where labels exist.

Uses each run's ``scored.parquet`` (or scores ``--log`` with both runs), matches rows on ``response_id`` and prints
global and per-prompt Kendall tau / Spearman rho, agreement with gold labels when present, the top-k overlap and the
largest rank shifts with their texts. With clean labels (a simulated log's test split, or gold labels), it first
says in one sentence whether RUN_B is better, level or worse than RUN_A (paired bootstrap interval of the R²
difference); a run whose metrics.json says it did not learn gets a ``warning:`` line. ``--gold FILE`` merges an
audit's labels (``causalrm audit``) by response_id; with gold labels each run gets an audited evaluation: R², MSE,
AUROC and the within-prompt pair agreement on the audited rows with bootstrap intervals, estimated for the whole
impression population (``causalrm.evaluation.audit.audited_evaluation``). Below ``evaluation.MIN_DECISION_LABELS`` labelled
rows neither says more than "not enough labels yet: k labelled, about N needed for a ±x interval"; an interval the
labels cannot give (a bootstrap of width 0, or NaN) is null. ``--json OUT`` writes the full comparison, with
``{"audit": {RUN_NAME: {"n", "not_enough", "r2", "r2_ci", ...}}, "audit_verdict": {..., "outcome", "verdict"}}``.

Example::

    causalrm compare runs/naive runs/dr --top-k 10
    causalrm compare runs/naive runs/dr --gold labels.csv --json compare.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from causalrm.evaluation.verdicts import READING_GUIDE


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="compare the rankings of two fitted runs",
                              description="Compare how two runs rank the same responses.")
    p.add_argument("run_a", metavar="RUN_A", help="first run directory")
    p.add_argument("run_b", metavar="RUN_B", help="second run directory")
    p.add_argument("--top-k", type=int, default=10, help="size of the top set and of the rank-shift list (default 10)")
    p.add_argument("--log", default=None, help="score this log with both runs instead of their scored.parquet")
    p.add_argument("--map", dest="mapping", nargs="+", action="extend", metavar="CANON=COLUMN", default=None,
                   help="column mapping for --log")
    p.add_argument("--gold", metavar="FILE", default=None,
                   help="audit label file (causalrm audit): evaluate both runs on its labelled rows, weighted to "
                        "the whole impression population")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="also write the comparison as JSON")
    p.add_argument("--width", type=int, default=70, help="characters of text shown per rank shift")
    return p


def _joined(scored_a, scored_b):
    """RUN_A's scored rows with RUN_B's ``preference_b``, matched on response_id; a row is ``train`` when either run
    was trained on it."""
    import polars as pl

    right = [pl.col("preference").alias("preference_b")]
    if "split" in scored_b.columns:
        right.append(pl.col("split").alias("split_b"))
    both = scored_a.join(scored_b.select("response_id", *right), on="response_id", how="inner")
    if "split_b" in both.columns:
        both = both.with_columns(
            pl.when(pl.col("split_b") == "train").then(pl.lit("train")).otherwise(pl.col("split")).alias("split"))
    return both


def _names(args: argparse.Namespace) -> tuple[str, str]:
    """The runs' keys in the audit record: their folder names, or the paths as given when those coincide."""
    a, b = Path(args.run_a).name, Path(args.run_b).name
    return (a, b) if a != b else (str(args.run_a), str(args.run_b))


def _format_audit(audit: dict, names: tuple[str, str]) -> str:
    def fmt(record: dict, key: str) -> str:
        value, ci = record.get(key), record.get(f"{key}_ci") or [None, None]
        if value is None or value != value:
            return "n/a"
        lo, hi = ("?" if v is None or v != v else f"{v:.3f}" for v in ci)
        return f"{value:.3f} [{lo}, {hi}]"

    first = next(iter(audit.values()))
    if first["not_enough"]:
        return f"audited evaluation on {first['labels']}: {first['not_enough']}"
    lines = [f"audited evaluation on {first['n']} {first['labels']} (95% bootstrap intervals):"]
    for name in names:
        r = audit[name]
        lines.append(f"  {name:<24} R2 {fmt(r, 'r2')}  MSE {fmt(r, 'mse')}  AUROC {fmt(r, 'auroc')}  "
                     f"pair agreement {fmt(r, 'pair_agreement')} ({r['n_pairs']} pairs)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from causalrm.atomic_io import write_json_atomic
    from causalrm.data.io.mapping import parse_mapping
    from causalrm.data.io.readers import read_labels, read_log
    from causalrm.evaluation.audit import audited_evaluation, merge_labels
    from causalrm.evaluation.ranking import compare_rankings
    from causalrm.evaluation.verdicts import labelled_verdict
    from causalrm.workflows.runs import load_run, score_log

    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    if args.log:
        log = read_log(args.log, mapping=parse_mapping(args.mapping) if args.mapping else None)
        scored_a, scored_b = score_log(run_a, log), score_log(run_b, log)
    else:
        scored_a, scored_b = run_a.scored(), run_b.scored()
    if args.gold:
        labels = read_labels(args.gold, known_ids=scored_a["response_id"].to_list(),
                             log_name=f"the log scored by {args.run_a}")
        scored_a, scored_b = (merge_labels(s, labels, source=args.gold) for s in (scored_a, scored_b))
    names = (f"{Path(args.run_a).name} ({run_a.config.method})", f"{Path(args.run_b).name} ({run_b.config.method})")
    comparison = compare_rankings(scored_a, scored_b, top_k=args.top_k, names=names)
    unlearned = [name for name, run in zip(names, (run_a, run_b)) if run.metrics.get("learned") is False]
    for name in unlearned:
        print(f"warning: {name} did not learn (metrics.json); its rank shifts are noise, not findings",
              file=sys.stderr)
    both = _joined(scored_a, scored_b)
    probs = (both["preference"].to_numpy(), both["preference_b"].to_numpy())
    reasons = [f"{name} did not learn" for name in unlearned]
    found = labelled_verdict(both, *probs, baseline=names[0], debiased=names[1], reasons=reasons) \
        if both.height else None
    if found:
        print(found["verdict"])
        print(f"note: {READING_GUIDE}")
    keys = _names(args)
    audited = audited_evaluation(both, dict(zip(keys, probs))) if both.height else None
    audit, audit_verdict = None, None
    if audited:
        audit = {name: {"labels": audited["labels"], "not_enough": audited["not_enough"], **record}
                 for name, record in audited["runs"].items()}
        audit_verdict = labelled_verdict(both, *probs, baseline=names[0], debiased=names[1], reasons=reasons,
                                         label="gold_label")
        print(_format_audit(audit, keys))
        if audit_verdict and (found is None or found["labels"] != audit_verdict["labels"]):
            print(audit_verdict["verdict"])
    print(comparison.format(width=args.width))
    if args.json_out:
        write_json_atomic({**comparison.to_dict(), "verdict": found, "did_not_learn": unlearned,
                           "audit": audit, "audit_verdict": audit_verdict}, args.json_out)
        print(f"wrote {args.json_out}")
    return 0
