"""Packaging: environment.yml names the same dependencies as pyproject.toml; the CLI entry point resolves."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in extras:
        names |= {_name(r) for r in project["optional-dependencies"][extra]}
    return names


def _environment_names() -> set[str]:
    names: set[str] = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^\s+- (?!pip:)(\S.*)$", line)
        if not match or match.group(1).startswith("-e"):
            continue
        name = _name(match.group(1))
        if name not in {"python", "pip"}:
            names.add(CONDA_TO_PYPI.get(name, name))
    return names


def test_environment_yml_matches_pyproject() -> None:
    assert _environment_names() == _pyproject_names("notebooks")


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "causalrm.cli.main", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("validate", "simulate", "embed", "audit", "fit", "score", "compare", "bench", "export", "app"):
        assert command in out.stdout


def test_core_never_imports_ui() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "causalrm").rglob("*.py")
        if re.search(r"^\s*(import|from)\s+(gradio|app)\b", path.read_text(), flags=re.M)
        and path.name != "app.py"
    ]
    assert offenders == []


def test_space_requirements_match_pyproject() -> None:
    """The Space's requirements.txt lists the core dependencies (gradio comes from the README's sdk_version)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    names = {_name(line) for line in lines if line.strip() and not line.startswith(("#", "-"))}
    assert names == _pyproject_names() - {"gradio"}
