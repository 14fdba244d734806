"""`causalrm fit` (not yet implemented)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return subparsers.add_parser("fit", help="(not yet implemented)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("causalrm fit is not implemented yet")
