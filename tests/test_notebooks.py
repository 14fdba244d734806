"""Teaching notebooks: stored clean, in sync with their Python sources, structured alike, and built on the public
API only.

Each notebook is a jupytext pair (``notebooks/jupytext.toml``): ``NN_name.py`` in percent format is the source,
``NN_name.ipynb`` the same cells stored without outputs (``jupytext --sync notebooks/*.py`` after an edit).
Execution is checked separately in CI with nbmake (``CAUSALRM_FAST=1 pytest --nbmake notebooks/``); these tests
only read the files, so they are instant.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = (
    "01_observational_feedback.ipynb",
    "02_propensity.ipynb",
    "03_noise.ipynb",
    "04_causalrm.ipynb",
    "05_real_feedback.ipynb",
    "06_gold_audit.ipynb",
    "07_implicit_feedback.ipynb",
    "08_ab_feedback.ipynb",
)
# Top-level packages a notebook may import: the library, the array/table/plot stack, and `os` for the
# CAUSALRM_FAST switch. Anything else (torch, sklearn, ...) means logic that belongs in causalrm/.
ALLOWED_IMPORTS = {"causalrm", "numpy", "polars", "plotly", "os"}
# causalrm.estimators.losses takes torch tensors, so the notebook that checks the losses numerically builds them with torch
# (tensor construction only; no model code).
EXTRA_IMPORTS = {"03_noise.ipynb": {"torch"}}


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _code(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _imported_modules(source: str) -> set[str]:
    # IPython magics and shell escapes are not Python; a notebook should not need them, so reject them loudly.
    tree = ast.parse(source)
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: never valid in a notebook
                modules.add("." * node.level + (node.module or ""))
            else:
                modules.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            modules.add("__import__")
    return modules


def test_all_notebooks_present() -> None:
    assert tuple(p.name for p in _notebooks()) == EXPECTED


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_is_valid_and_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.execution_count is None, f"{path.name} cell {i}: execution_count must be null"
            assert cell.outputs == [], f"{path.name} cell {i}: outputs must be empty (clear them before committing)"
        assert "attachments" not in cell or not cell.attachments, f"{path.name} cell {i}: no attachments"
    # the raw file too: no widget state or stray outputs hiding in metadata
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in raw["metadata"]


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_opens_with_goals_and_ends_with_exercises(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "What you will learn" in first.source
    assert last.cell_type == "markdown" and re.search(r"^#+\s*Exercises", last.source, flags=re.M)


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_first_code_cell_reads_the_fast_switch(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first_code = _code(nb)[0]
    assert "CAUSALRM_FAST" in first_code and "os.environ" in first_code


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_imports_only_the_public_stack(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    imported: set[str] = set()
    for source in _code(nb):
        assert not re.search(r"^\s*[%!]", source, flags=re.M), f"{path.name}: no IPython magics or shell escapes"
        imported |= _imported_modules(source)
    allowed = ALLOWED_IMPORTS | EXTRA_IMPORTS.get(path.name, set())
    assert imported <= allowed, f"{path.name} imports {sorted(imported - allowed)}"
    assert "causalrm" in imported
    # public API only: no private names from the library
    private = [
        m.group(0)
        for source in _code(nb)
        for m in re.finditer(r"causalrm(?:\.\w+)*\.(_\w+)|from causalrm\S* import [^\n]*\b_\w+", source)
    ]
    assert private == [], f"{path.name} uses private names {private}"


def test_readme_describes_every_notebook() -> None:
    text = (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    for name in EXPECTED:
        assert name in text
    assert "jupyter lab notebooks/" in text and "CAUSALRM_FAST" in text


def test_every_notebook_has_its_python_source() -> None:
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.py")) == [Path(name).with_suffix(".py").name
                                                                  for name in EXPECTED]


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_matches_its_python_source(path: Path) -> None:
    # Cell types and sources only: outputs, ids and metadata live in the .ipynb alone.
    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    stored = nbformat.read(path, as_version=4)
    expected = [(cell.cell_type, cell.source) for cell in source.cells]
    actual = [(cell.cell_type, cell.source) for cell in stored.cells]
    differ = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    assert actual == expected, (f"{path.name} differs from {path.with_suffix('.py').name} from cell {differ} on "
                                f"({len(actual)} against {len(expected)} cells): run jupytext --sync notebooks/*.py")
