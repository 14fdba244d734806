"""`benchmarks/gpu_check.py --dry-run`: every check (embedding, LoRA / MLP training, the 2-process launch) runs on
the CPU with tiny sizes, passes, and the JSON summary has the fields RESULTS.md's GPU section reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    out_json = tmp_path / "gpu_check.json"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--json",
                          str(out_json)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])  # the last line is the JSON summary
    assert summary == json.loads(out_json.read_text())
    assert summary["ok"] and summary["failed"] == [] and summary["dry_run"] and summary["device"] == "cpu"
    checks = {c["name"]: c for c in summary["checks"]}
    assert set(checks) == {"embed-minilm", "embed-llama-2x64", "lora-minilm", "lora-llama-2x64", "mlp",
                           "launch-2proc"}
    assert checks["embed-minilm"]["shape"] == [32, 384] and checks["embed-minilm"]["rows_per_s"] > 0
    assert checks["embed-llama-2x64"]["shape"] == [32, 64] and checks["embed-llama-2x64"]["vectors_finite"]
    for name in ("lora-minilm", "lora-llama-2x64", "mlp"):
        c = checks[name]
        assert c["losses_finite"] and c["logits_finite"] and not c["misplaced"] and c["train_examples_per_s"] > 0
    launch = checks["launch-2proc"]
    assert launch["mode"] == "cpu-gloo" and launch["world_size"] == [1, 2] and launch["r2_abs_diff"] < 0.03
