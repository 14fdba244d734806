"""`causalrm audit LOG --n N [--seed S] --out FILE`: propose N rows of LOG to label by hand.

The rows come from a stratified design with known inclusion probabilities (``causalrm.evaluation.audit``): rows with feedback
(to estimate the flip rates against the labels) and rows across the propensity and score range (to evaluate models
on the whole impression population). FILE (CSV, or JSONL / Parquet by suffix) lists ``response_id, prompt,
response, feedback, gold_label`` (empty: fill in 1 = good, 0 = bad, from the top; leave a row empty to skip it),
``inclusion_probability, audit_stratum, audit_stratum_rows``. When FILE exists its labels are kept: re-running with
a larger N and the same seed extends the same sample.

Examples::

    causalrm audit my_log.csv --n 300 --out labels.csv
    causalrm audit my_log.csv --n 600 --out labels.csv      # 300 more rows; the first 300 keep their labels
    causalrm fit my_log.csv --gold labels.csv --flip-method gold --out runs/audited
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.cli.fit import add_log_arguments

    p = subparsers.add_parser("audit", help="propose rows of a log to label by hand -> FILE",
                              description="Propose N rows of LOG to label (gold_label), with their inclusion "
                                          "probabilities.")
    p.add_argument("log", metavar="LOG", help="impression log (.parquet, .csv, .tsv, .jsonl, .json; optionally .gz)")
    p.add_argument("--n", type=int, required=True, help="number of rows to propose")
    p.add_argument("--seed", type=int, default=0, help="random seed of the design (default 0; keep it to extend)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="label file to write (.csv, .jsonl or .parquet); labels already in it are kept")
    add_log_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from causalrm.atomic_io import write_table_atomic
    from causalrm.cli.fit import read_log_arg
    from causalrm.data.schema import DEFAULT_EMBEDDER
    from causalrm.data.io.readers import read_labels
    from causalrm.embeddings.embedder import Embedder, embed_log
    from causalrm.embeddings.files import read_embeddings
    from causalrm.errors import InputError
    from causalrm.evaluation.audit import carry_labels, propose

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        raise InputError(f"{out}: unsupported label file extension {out.suffix!r}; use .csv, .jsonl or .parquet")
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    log = read_log_arg(args)
    if args.embeddings:
        X, _ = read_embeddings(args.embeddings, log)
    else:
        print(f"embedding {log.height} rows with {args.embedder or DEFAULT_EMBEDDER} (cached texts are instant)",
              file=sys.stderr)
        X = embed_log(log, Embedder(model=args.embedder or DEFAULT_EMBEDDER, progress=False))
    proposal = propose(log, X, args.n, seed=args.seed)
    kept = 0
    if out.exists():
        previous = read_labels(out, known_ids=log["response_id"].to_list(), log_name=str(args.log))
        proposal = carry_labels(proposal, previous, source=str(out))
        kept = int(proposal["gold_label"].is_not_null().sum())
    write_table_atomic(proposal, out)
    pi = proposal["inclusion_probability"]
    print(f"proposed {proposal.height} rows of {args.log} in {proposal['audit_stratum'].n_unique()} strata "
          f"(inclusion probabilities {pi.min():.3g} to {pi.max():.3g})"
          + (f"; kept the {kept} labels already in {out}" if kept else ""))
    from causalrm.data.pairwise import describe, is_pair_log

    pairs = is_pair_log(log)
    if pairs:
        print(describe(log))
    print(f"next: fill in gold_label ({'1 = a better, 0 = b better' if pairs else '1 good, 0 bad'}; empty = skipped) "
          "from the top, then "
          f"`causalrm fit {args.log} --gold {out} --flip-method gold --out RUN_DIR`")
    print(f"wrote {out}")
    return 0
