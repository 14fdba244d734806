"""``causalrm validate FILE``: check an impression log and print its summary. Nothing is ever written."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate",
        help="check a feedback log and print its summary (writes nothing)",
        description="Read a feedback log (CSV, TSV, JSONL, JSON or Parquet, optionally .gz), check it against the "
        "CausalRM log schema and print rows, observation rate, label balance, columns and warnings. Chat "
        "transcripts are read from a 'messages' column (OpenAI / Hugging Face {role, content} lists ending with the "
        "rated assistant message). "
        "Exit status 0 if the log is usable, 2 with one 'error:' line if not.",
    )
    parser.add_argument(
        "file",
        metavar="FILE",
        help="the log file (.csv, .tsv, .jsonl, .json, .parquet; text formats may be .gz) or hf://OWNER/NAME[:SPLIT]",
    )
    parser.add_argument(
        "--map",
        dest="map",
        action="append",
        default=[],
        metavar="CANONICAL=COLUMN[,...]",
        help="use your column names, e.g. --map prompt=question,response=answer,feedback=thumb (repeatable)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="binarise numeric ratings in the feedback column: rating >= T is positive",
    )
    from causalrm.cli.fit import add_kind_argument

    add_kind_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from causalrm.data.io.mapping import parse_mapping
    from causalrm.data.scan import summarize_file

    mapping = parse_mapping(args.map)
    # streaming aggregates (the texts are never held) where the format allows; else read_log + summarize_log
    summary = summarize_file(args.file, mapping=mapping or None, threshold=args.threshold, source=str(args.file),
                             feedback_kind=args.feedback_kind)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(summary.format())
    return 0
