"""Entry point of the ``causalrm`` command.

Each subcommand lives in ``causalrm/cli/<name>.py`` and defines ``add_parser(subparsers)`` (returning its parser) and
``run(args) -> int``. An :class:`~causalrm.errors.InputError` becomes one ``error:`` line on stderr and exit status 2;
a warning (e.g. flip rates that cannot be trusted) becomes one ``warning:`` line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

SUBCOMMANDS = ("validate", "simulate", "embed", "audit", "fit", "score", "compare", "bench", "export", "demo", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="causalrm", description="Debiased reward models from observational feedback.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"causalrm.cli.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from causalrm.errors import InputError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return int(args._run(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if "causalrm.distributed" in sys.modules:  # launched on several processes: close the group before exiting
            sys.modules["causalrm.distributed"].close()


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
    line: str | None = None,
) -> None:
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
