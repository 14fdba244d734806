"""`causalrm score MODEL LOG --out SCORED.parquet|csv`: score a log with a fitted run or an export of one.

MODEL is a run directory (`causalrm fit --out`) or a folder written by `causalrm export` (LoRA merged or adapter-only,
or MLP); an export scores every row as its run does.

Writes ``response_id, prompt, response, pair_id, split, reward`` (logit z) and ``preference`` (sigma(z)), plus
observed / feedback / true_label / gold_label when the log has them. An MLP model embeds with its run's embedder
unless ``--embeddings`` is given. Prints test metrics when the log has clean labels.

Example::

    causalrm score runs/dr new_log.parquet --out scored.parquet
    causalrm score exports/dr-rm new_log.parquet --out scored.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.cli.fit import add_log_arguments

    p = subparsers.add_parser("score", help="score a log with a fitted run or export -> SCORED.parquet|csv|jsonl",
                              description="Score every row of LOG with the reward model in MODEL.")
    p.add_argument("run_dir", metavar="MODEL",
                   help="run directory written by `causalrm fit`, or a folder written by `causalrm export`")
    p.add_argument("log", metavar="LOG", help="log to score (.parquet, .csv, .tsv, .jsonl, .json)")
    p.add_argument("--out", required=True, metavar="SCORED", help="output table (.parquet, .csv or .jsonl)")
    add_log_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from causalrm.atomic_io import write_table_atomic
    from causalrm.cli.fit import read_log_arg
    from causalrm.embeddings.files import read_embeddings
    from causalrm.errors import InputError
    from causalrm.evaluation.metrics import evaluate_scores
    from causalrm.workflows.runs import is_run_dir, load_run, scored_table

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv", ".jsonl"):
        raise InputError(f"{out}: unsupported output extension {out.suffix!r}; use .parquet, .csv or .jsonl")
    if is_run_dir(args.run_dir):
        run_ = load_run(args.run_dir)
        score, embedder = run_.score, run_.config.embedder
    else:  # an export: scored as its run scores (causalrm.export.reward_models.RewardModel.score_log)
        from causalrm.export.loading import load_reward_model

        model = load_reward_model(args.run_dir)
        score, embedder = model.score_log, model.manifest.get("embedder")
    log = read_log_arg(args)
    from causalrm.data.pairwise import describe, is_pair_log

    if is_pair_log(log):
        print(f"{describe(log)}; each pair's reward is z_a - z_b, preference P(a better); score single responses "
              "with a log of prompt and response", file=sys.stderr)
    X = None
    if args.embeddings:
        X, file_model = read_embeddings(args.embeddings, log)
        if embedder and file_model and file_model != embedder and not file_model.endswith(embedder):
            print(f"note: {args.embeddings} was embedded with {file_model}; the run used {embedder}",
                  file=sys.stderr)
    elif args.embedder and args.embedder != embedder:
        raise InputError(f"--model {args.embedder}: " + (f"the run was fitted on {embedder} embeddings; "
                         if embedder else f"{args.run_dir} reads the texts, it embeds nothing; ") + "omit --model")
    rewards = score(log, X)
    write_table_atomic(scored_table(log, rewards), out)
    ev = evaluate_scores(log, rewards)
    if ev:
        m = ev["metrics"]
        print(f"{ev['rows']} (n={ev['n']}): " + ", ".join(
            f"{k.upper() if k != 'r2' else 'R2'} {'n/a' if v != v else f'{v:.4f}'}" for k, v in m.items()))
    print(f"scored {log.height} rows -> {out}")
    return 0
