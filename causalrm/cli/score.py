"""`causalrm score RUN_DIR LOG --out SCORED.parquet|csv`: score a log with a fitted run.

Writes ``response_id, prompt, response, pair_id, split, reward`` (logit z) and ``preference`` (sigma(z)), plus
observed / feedback / true_label / gold_label when the log has them. Embeds with the run's embedder unless
``--embeddings`` is given. Prints test metrics when the log has clean labels.

Example::

    causalrm score runs/dr new_log.parquet --out scored.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.cli.fit import add_log_arguments

    p = subparsers.add_parser("score", help="score a log with a fitted run -> SCORED.parquet|csv|jsonl",
                              description="Score every row of LOG with the reward model in RUN_DIR.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `causalrm fit`")
    p.add_argument("log", metavar="LOG", help="log to score (.parquet, .csv, .tsv, .jsonl, .json)")
    p.add_argument("--out", required=True, metavar="SCORED", help="output table (.parquet, .csv or .jsonl)")
    add_log_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from causalrm.cli.fit import read_log_arg
    from causalrm.embeddings import read_embeddings
    from causalrm.errors import InputError
    from causalrm.evaluation import evaluate_scores
    from causalrm.atomic_io import write_table_atomic
    from causalrm.runs import load_run, scored_table

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv", ".jsonl"):
        raise InputError(f"{out}: unsupported output extension {out.suffix!r}; use .parquet, .csv or .jsonl")
    run_ = load_run(args.run_dir)
    log = read_log_arg(args)
    X = None
    if args.embeddings:
        X, file_model = read_embeddings(args.embeddings, log)
        if file_model and file_model != run_.config.embedder and not file_model.endswith(run_.config.embedder):
            print(f"note: {args.embeddings} was embedded with {file_model}; the run used {run_.config.embedder}",
                  file=sys.stderr)
    elif args.embedder and args.embedder != run_.config.embedder:
        raise InputError(f"--model {args.embedder}: the run was fitted on {run_.config.embedder} embeddings; "
                         "omit --model")
    rewards = run_.score(log, X)
    write_table_atomic(scored_table(log, rewards), out)
    ev = evaluate_scores(log, rewards)
    if ev:
        m = ev["metrics"]
        print(f"{ev['rows']} (n={ev['n']}): " + ", ".join(
            f"{k.upper() if k != 'r2' else 'R2'} {'n/a' if v != v else f'{v:.4f}'}" for k, v in m.items()))
    print(f"scored {log.height} rows -> {out}")
    return 0
