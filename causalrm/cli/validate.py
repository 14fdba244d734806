"""`causalrm validate` (not yet implemented)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return subparsers.add_parser("validate", help="(not yet implemented)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("causalrm validate is not implemented yet")
