"""scripts/setup.sh installs the project once per pyproject.toml: later launches skip pip (a stamp in .venv holds
the hash of the pyproject.toml it installed from). Run in a sandbox with stand-ins for python's venv, pip and the
causalrm command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sandbox(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    scripts = {
        # this interpreter (torch imports, no install); `python -m pytest` only logged
        "python": (f'#!/bin/sh\nif [ "$1 $2" = "-m pytest" ]; then echo "pytest" >> "{tmp_path}/calls.log"; exit 0; fi\n'
                   f'exec "{sys.executable}" "$@"\n'),
        "pip": f'#!/bin/sh\necho "pip $*" >> "{tmp_path}/calls.log"\n',
        "causalrm": f'#!/bin/sh\necho "causalrm $*" >> "{tmp_path}/calls.log"\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def _launch(box: Path, mode: str = "app") -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    args = ["--port", "7861"] if mode == "app" else []
    subprocess.run(["bash", "scripts/setup.sh", mode, *args], cwd=box, env=env, check=True, capture_output=True,
                   text=True)
    return (box / "calls.log").read_text().splitlines()


def test_app_launch_runs_pip_only_when_pyproject_changes(tmp_path):
    box = _sandbox(tmp_path)
    assert _launch(box) == ["pip install -q -e .[app,notebooks]", "causalrm app --port 7861"]
    assert _launch(box)[2:] == ["causalrm app --port 7861"]  # installed already: straight to the app
    with (box / "pyproject.toml").open("a") as fh:
        fh.write("\n# a changed dependency list\n")
    assert _launch(box)[3:] == ["pip install -q -e .[app,notebooks]", "causalrm app --port 7861"]


def test_app_after_test_installs_nothing(tmp_path):
    """The test extras include the app's: an app launch after `setup.sh test` goes straight to the app, and a test
    run after an app install installs the extras it lacks."""
    box = _sandbox(tmp_path)
    assert _launch(box, "test") == ["pip install -q -e .[app,notebooks,dev,trl]", "pytest"]
    assert _launch(box)[2:] == ["causalrm app --port 7861"]
    (tmp_path / "other").mkdir()
    other = _sandbox(tmp_path / "other")
    assert _launch(other) == ["pip install -q -e .[app,notebooks]", "causalrm app --port 7861"]
    assert _launch(other, "test")[2:] == ["pip install -q -e .[app,notebooks,dev,trl]", "pytest"]
