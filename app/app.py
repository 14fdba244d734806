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
    from causalrm.cli.app import add_app_arguments

    on_space = bool(os.environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(prog="app/app.py", description="Launch the CausalRM Workbench (Gradio).")
    add_app_arguments(p, host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if on_space else "127.0.0.1"),
                      port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                      max_upload_mb=float(os.environ.get("CAUSALRM_APP_MAX_UPLOAD_MB", 200)))
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
