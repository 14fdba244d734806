"""benchmarks/merge_bench.py: merging one cell run over disjoint seed sets gives the rows and the summary of a single
run over all the seeds, and refuses cells that differ in more than the seeds or share a seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from causalrm.bench import summarize

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["naive", "causalrm-ips", "oracle-observed"]
CONFIG = {"dataset": "wildbench", "alpha": 0.2, "rho01": 0.15, "rho10": 0.25, "observation_rate": 0.2,
          "rating": "teacher", "teacher": "linear", "snr": None, "rating_column": None, "methods": METHODS,
          "fit": {"num_threads": 1}, "embedder": "all-MiniLM-L6-v2", "n_boot": 200, "mode": "semi-synthetic"}


def _rows(seeds):
    return [{"method": m, "seed": s, "r2": 0.2 + 0.1 * i + 0.01 * s, "mse": 0.1, "mae": 0.3, "auroc": 0.8,
             "pearson": 0.5, "prompt_kendall": 0.4, "seconds": 1.0, "best_epoch": 5}
            for s in seeds for i, m in enumerate(METHODS)]


def _cell(path: Path, seeds, **config) -> str:
    rows = _rows(seeds)
    path.write_text(json.dumps({"config": {**CONFIG, **config, "seeds": list(seeds)}, "results": rows,
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


@pytest.mark.parametrize("second", [{"seeds": [2, 3]}, {"seeds": [3], "alpha": 0.5}])
def test_merge_refuses_overlap_or_other_cell(tmp_path, second):
    seeds = second.pop("seeds")
    proc = _merge(tmp_path, _cell(tmp_path / "a.json", [1, 2]), _cell(tmp_path / "b.json", seeds, **second),
                  check=False)
    assert proc.returncode != 0 and "error:" in proc.stderr
