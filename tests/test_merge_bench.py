"""benchmarks/merge_bench.py: merging one cell run in parts (disjoint seed sets, or methods added later on the same
seeds) gives the rows and the summary of a single run, and refuses cells that differ in more than the seeds and
methods, a shared (method, seed) row or seed nuisances that differ, and a method missing a seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from causalrm.workflows.bench import summarize

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["naive", "causalrm-ips", "oracle-observed"]
CONFIG = {"dataset": "wildbench", "alpha": 0.2, "rho01": 0.15, "rho10": 0.25, "observation_rate": 0.2,
          "rating": "teacher", "teacher": "linear", "snr": None, "rating_column": None, "methods": METHODS,
          "fit": {"num_threads": 1}, "embedder": "all-MiniLM-L6-v2", "n_boot": 200, "mode": "semi-synthetic"}


def _rows(seeds, methods=METHODS, shift=0.0):
    return [{"method": m, "seed": s, "r2": 0.2 + 0.1 * METHODS_ALL.index(m) + 0.01 * s + shift, "mse": 0.1,
             "mae": 0.3, "auroc": 0.8, "pearson": 0.5, "prompt_kendall": 0.4, "seconds": 1.0 + shift + s,
             "best_epoch": 5}
            for s in seeds for m in methods]


METHODS_ALL = METHODS + ["causalrm-sdr"]


def _cell(path: Path, seeds, methods=METHODS, shift=0.0, **config) -> str:
    rows = _rows(seeds, methods, shift)
    path.write_text(json.dumps({"config": {**CONFIG, **config, "seeds": list(seeds), "methods": methods},
                                "results": rows,
                                "summary": summarize(rows, n_boot=200), "nuisances": [{"seed": s} for s in seeds],
                                "seconds": 10.0}))
    return str(path)


def _merge(tmp_path: Path, *files: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "merge_bench.py"), *files,
                           "--json", str(tmp_path / "m.json"), "--markdown", str(tmp_path / "m.md")],
                          capture_output=True, text=True, check=check)


def test_merge_equals_one_run(tmp_path):
    _merge(tmp_path, _cell(tmp_path / "b.json", [3, 4]), _cell(tmp_path / "a.json", [1, 2]))
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["config"]["seeds"] == [1, 2, 3, 4]
    assert merged["results"] == _rows([1, 2, 3, 4])
    assert merged["summary"] == json.loads(json.dumps(summarize(_rows([1, 2, 3, 4]), n_boot=200)))
    assert [n["seed"] for n in merged["nuisances"]] == [1, 2, 3, 4]
    assert merged["seconds"] == 20.0
    assert "Seeds 1, 2, 3, 4" in (tmp_path / "m.md").read_text()


def test_merge_adds_methods_run_later_on_the_same_seeds(tmp_path):
    """A later run of one new method and a reference (naive, reproduced to the digit but for its seconds); an
    override equal to its default (train-only imputation) is the same setting as none."""
    later = _cell(tmp_path / "b.json", [1, 2], methods=["naive", "causalrm-sdr"], true_propensity=False,
                  fit={"num_threads": 1, "imputation_fit": "train-only"})
    _merge(tmp_path, _cell(tmp_path / "a.json", [1, 2]), later)
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["config"]["methods"] == METHODS_ALL
    assert merged["results"] == _rows([1, 2], METHODS_ALL)
    assert set(merged["summary"]) == set(METHODS_ALL)


@pytest.mark.parametrize("second", [
    {"seeds": [2, 3], "shift": 0.001},  # seed 2 shared, its rows differ
    {"seeds": [3], "alpha": 0.5},  # another cell
    {"seeds": [3], "fit": {"num_threads": 1, "imputation_fit": "pooled"}},  # another fit
    {"seeds": [1, 2], "methods": ["causalrm-sdr"], "rows_for": [1]},  # the new method misses seed 2
])
def test_merge_refuses_other_rows_other_cell_or_a_hole(tmp_path, second):
    seeds = second.pop("seeds")
    rows_for = second.pop("rows_for", None)
    path = _cell(tmp_path / "b.json", seeds, **second)
    if rows_for is not None:
        doc = json.loads(Path(path).read_text())
        doc["results"] = [r for r in doc["results"] if r["seed"] in rows_for]
        Path(path).write_text(json.dumps(doc))
    proc = _merge(tmp_path, _cell(tmp_path / "a.json", [1, 2]), path, check=False)
    assert proc.returncode != 0 and "error:" in proc.stderr
