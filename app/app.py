"""Entry point of the CausalRM Workbench: ``python app/app.py [--host 127.0.0.1] [--port 7860] [--share]``.

Also the Hugging Face Space's ``app_file``. On a Space (``SPACE_ID`` set) it listens on 0.0.0.0:7860 as Spaces
require; everywhere else on 127.0.0.1 unless ``--host`` says otherwise. Same options as ``causalrm app``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python app/app.py` puts app/ itself first on sys.path, where `import app` would find this file instead of the
# package: drop that entry and put the repository root (holding the `app` and `causalrm` packages) first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "app"]
if str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    on_space = bool(os.environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(prog="app/app.py", description="Launch the CausalRM Workbench (Gradio).")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if on_space else "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--max-upload-mb", type=float, default=float(os.environ.get("CAUSALRM_APP_MAX_UPLOAD_MB", 200)),
                   help="largest accepted upload in MB (default 200)")
    p.add_argument("--train-concurrency", type=int, default=None,
                   help="training jobs at once across all users (default 2; others wait in line)")
    p.add_argument("--job-memory-gb", type=float, default=None,
                   help="memory of one training job in GB (default 4); a job past it is stopped, a LoRA job that "
                        "cannot fit is refused")
    p.add_argument("--job-time-limit-min", type=float, default=None,
                   help="minutes a training job may run (default 60; 0 = no limit); then it stops, keeping what it "
                        "trained")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from causalrm.cli.app import check_limits
    from causalrm.errors import InputError

    try:
        check_limits(args)
        from app.ui import launch

        launch(host=args.host, port=args.port, share=args.share, max_upload_mb=args.max_upload_mb,
               train_concurrency=args.train_concurrency, job_memory_gb=args.job_memory_gb,
               job_time_limit_min=args.job_time_limit_min)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
