"""`causalrm app`: launch the CausalRM Workbench (Gradio UI in ``app/``).

Example::

    causalrm app                      # http://127.0.0.1:7860
    causalrm app --host 0.0.0.0 --port 8080 --max-upload-mb 500
    causalrm app --share              # also a temporary public gradio.live link
    causalrm app --train-concurrency 1 --job-memory-gb 8   # one training job at a time, up to 8 GB

Gradio and the ``app`` package are imported only when the command runs; the core never imports them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from causalrm.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "app",
        help="launch the workbench UI (Gradio) in the browser",
        description="Serve the CausalRM Workbench: upload a log or use a bundled sample, inspect propensities and "
        "flip rates, train debiased reward models, compare them with the naive one.",
    )
    add_app_arguments(p)
    return p


def add_app_arguments(p: argparse.ArgumentParser, *, host: str = "127.0.0.1", port: int = 7860,
                      max_upload_mb: float = 200.0) -> None:
    """The server options, shared by `causalrm app` and `python app/app.py` (which takes its defaults from the
    environment of a Hugging Face Space)."""
    p.add_argument("--host", default=host, help=f"interface to listen on (default {host}; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--max-upload-mb", type=float, default=max_upload_mb,
                   help=f"largest accepted upload in MB (default {max_upload_mb:g})")
    p.add_argument("--train-concurrency", type=int, default=None,
                   help="training jobs at once across all users (default 2; the others wait in line)")
    p.add_argument("--job-memory-gb", type=float, default=None,
                   help="memory of one training job in GB (default 4); a job past it is stopped, a LoRA job that "
                        "cannot fit is refused")
    p.add_argument("--job-time-limit-min", type=float, default=None,
                   help="minutes a training job may run (default 60; 0 = no limit); then it stops, keeping what it "
                        "trained")


def _import_ui():
    """``app.ui`` from the source checkout next to this package (or from sys.path)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "app" / "ui.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module("app.ui")
    except ModuleNotFoundError as err:
        if err.name in ("app", "app.ui"):
            raise InputError("the workbench UI (folder app/) is not installed here; run `causalrm app` from a source "
                             "checkout of the CausalRM Workbench") from None
        raise InputError(f"the workbench needs the missing package {err.name!r}: install the app extra "
                         '(pip install -e ".[app]", or bash scripts/setup.sh app)') from None


def check_limits(args: argparse.Namespace) -> None:
    """Raise InputError on an out-of-range ``--port``, ``--max-upload-mb``, ``--train-concurrency``,
    ``--job-memory-gb`` or ``--job-time-limit-min`` (shared with ``app/app.py``)."""
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: use a port between 0 and 65535")
    if args.max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb {args.max_upload_mb:g}: must be positive")
    if args.train_concurrency is not None and args.train_concurrency < 1:
        raise InputError(f"--train-concurrency {args.train_concurrency}: must be at least 1")
    if args.job_memory_gb is not None and args.job_memory_gb <= 0:
        raise InputError(f"--job-memory-gb {args.job_memory_gb:g}: must be positive")
    if args.job_time_limit_min is not None and args.job_time_limit_min < 0:
        raise InputError(f"--job-time-limit-min {args.job_time_limit_min:g}: must be 0 (no limit) or positive")


def run(args: argparse.Namespace) -> int:
    check_limits(args)
    ui = _import_ui()
    ui.launch(host=args.host, port=args.port, share=args.share, max_upload_mb=args.max_upload_mb,
              train_concurrency=args.train_concurrency, job_memory_gb=args.job_memory_gb,
              job_time_limit_min=args.job_time_limit_min)
    return 0
