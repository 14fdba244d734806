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
    assert _environment_names() == _pyproject_names("app", "notebooks")


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
    """The Space's requirements.txt lists the core dependencies and the app extra (gradio comes from the README's
    sdk_version)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    names = {_name(line) for line in lines if line.strip() and not line.startswith(("#", "-"))}
    assert names == _pyproject_names("app") - {"gradio"}


def test_the_ui_is_an_extra() -> None:
    """gradio and plotly are the app extra, not core dependencies; the notebooks extra has plotly (their figures)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {name: {_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    assert not core & {"gradio", "plotly"}
    assert {"gradio", "plotly"} <= extras["app"] and "plotly" in extras["notebooks"]
    notebooks = sorted((ROOT / "notebooks").glob("*.py"))
    assert notebooks and not [p.name for p in notebooks
                              if re.search(r"^\s*(import|from)\s+(gradio|app)\b", p.read_text(), flags=re.M)]


def test_library_and_cli_run_without_the_ui() -> None:
    """With gradio and plotly unimportable, the library and the CLI import and `--help` runs; `causalrm app` is one
    error line naming the app extra (exit status 2)."""
    code = (
        "import sys\n"
        "sys.modules['gradio'] = sys.modules['plotly'] = None\n"  # None in sys.modules: the import fails
        "import causalrm, causalrm.cli.main\n"
        "from causalrm.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "sys.exit(main(['app', '--port', '0']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert "usage: causalrm" in out.stdout and "fit" in out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ".[app]" in lines[0], out.stderr
