"""Data-parallel `causalrm fit` / `causalrm embed` under `accelerate launch` (causalrm.distributed), for real on CPU.

Two processes talk over gloo (Accelerate's launcher starts them through torchrun: `--multi_gpu --num_processes 2`;
with no CUDA GPU, or `--device cpu`, causalrm opens a gloo group). The 2-process run must write one run directory
recording `"world_size": 2` whose test R² is within 0.03 of the single-process run on the same log (the design
makes every optimiser step the single-process step, so in practice the two agree to ~1e-7).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers_logs import write_simulated_log

ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
pytestmark = pytest.mark.skipif(ACCELERATE is None, reason="accelerate is not installed")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(n: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes n -m causalrm.cli.main ARGS` (n > 1) or plain python (n = 1)."""
    if n == 1:
        cmd = [sys.executable, "-m", "causalrm.cli.main", *args]
    else:
        cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "causalrm.cli.main", *args]
    out = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    return write_simulated_log(tmp_path_factory.mktemp("dist"), 900)


def test_single_process_creates_no_accelerate_state():
    """Without WORLD_SIZE nothing imports accelerate and every helper is the identity."""
    code = ("import sys, torch; from causalrm import distributed; import causalrm.training.trainer, causalrm.cli.fit, "
            "causalrm.workflows.runs; assert distributed.init() is None and distributed.world_size() == 1; "
            "assert distributed.is_main() and distributed.rank() == 0; distributed.wait(); "
            "t = torch.arange(5); assert distributed.shard(t)[0] is t and distributed.gather_rows(t, []) is t; "
            "print('accelerate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_two_process_fit_matches_one_process(log_dir):
    common = ["log.parquet", "--embeddings", "X.npy", "--method", "causalrm-snips", "--rho01", "0.2", "--rho10", "0.1",
              "--epochs", "25",
              "--batch-size", "128", "--threads", "1", "--device", "cpu", "--quiet"]
    _launch(1, "fit", *common, "--out", "run1", cwd=log_dir)
    out = _launch(2, "fit", *common, "--out", "run2", cwd=log_dir)
    assert out.stdout.count("wrote run2") == 1  # only rank 0 reports
    runs = sorted(p.name for p in log_dir.iterdir() if p.is_dir())
    assert runs == ["run1", "run2"]  # one run, no temporary folders left by the other rank
    m1, m2 = (json.loads((log_dir / r / "metrics.json").read_text()) for r in ("run1", "run2"))
    assert m1["world_size"] == 1 and m2["world_size"] == 2
    r2_1, r2_2 = m1["test"]["metrics"]["r2"], m2["test"]["metrics"]["r2"]
    print(f"test R2: 1 process {r2_1:.6f}, 2 processes {r2_2:.6f}")
    assert abs(r2_1 - r2_2) < 0.03, (r2_1, r2_2)
    # the same steps: the same early-stopping trajectory
    assert m1["validation"]["best_epoch"] == m2["validation"]["best_epoch"]
    np.testing.assert_allclose(m1["history"]["val_estimate"], m2["history"]["val_estimate"], rtol=1e-4)


def test_two_process_embed_matches_one_process(log_dir):
    small = log_dir / "small.parquet"
    pl.read_parquet(log_dir / "log.parquet").head(21).write_parquet(small)
    common = ["small.parquet", "--no-cache", "--quiet", "--device", "cpu", "--batch-size", "8"]
    _launch(1, "embed", *common, "--out", "e1.npy", cwd=log_dir)
    out = _launch(2, "embed", *common, "--out", "e2.npy", cwd=log_dir)
    assert out.stdout.count("embedded 21 rows") == 1 and "21 computed" in out.stdout
    e1, e2 = np.load(log_dir / "e1.npy"), np.load(log_dir / "e2.npy")
    assert e1.shape == e2.shape == (21, e1.shape[1])
    np.testing.assert_allclose(e1, e2, atol=1e-5)
    # sharded output: each rank writes its own block of shards (no gather), rank 0 writes the one index
    out = _launch(2, "embed", "small.parquet", "E2", *common[1:], "--shard-rows", "5", cwd=log_dir)
    assert out.stdout.count("embedded 21 rows") == 1 and "5 shards" in out.stdout
    names = sorted(p.name for p in (log_dir / "E2").iterdir())
    assert names == ["index.json"] + [f"shard-0000{k}.npy" for k in range(5)]
    from causalrm.data.rowmatrix import ShardedRows
    from causalrm.embeddings.files import read_embeddings

    Xs, _ = read_embeddings(log_dir / "E2" / "index.json", pl.read_parquet(small))
    assert isinstance(Xs, ShardedRows) and Xs.shape == e1.shape
    np.testing.assert_allclose(Xs[np.arange(21)], e1, atol=1e-5)


@pytest.mark.slow
def test_two_process_lora_with_grad_accum_matches_one_process(tmp_path):
    """The LoRA backbone (tiny random Llama, adapters + head trained) with micro-batches: the same epochs."""
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers_tiny_models import tiny_llama, tiny_log

    tiny_llama(tmp_path / "llama")
    tiny_log(96).write_parquet(tmp_path / "log.parquet")
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((96, 8)).astype(np.float32))
    common = ["log.parquet", "--embeddings", "X.npy", "--backbone", "lora", "--model", "llama", "--lora-dropout", "0",
              "--method", "causalrm-snips", "--rho01", "0.1", "--rho10", "0.1", "--epochs", "3", "--patience", "0",
              "--batch-size", "16", "--grad-accum", "2", "--lr", "1e-3", "--threads", "1", "--device", "cpu",
              "--quiet"]
    _launch(1, "fit", *common, "--out", "run1", cwd=tmp_path)
    _launch(2, "fit", *common, "--out", "run2", cwd=tmp_path)
    m1, m2 = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("run1", "run2"))
    assert m2["world_size"] == 2
    np.testing.assert_allclose(m1["history"]["val_estimate"], m2["history"]["val_estimate"], rtol=1e-4)
    np.testing.assert_allclose(m1["history"]["train_loss"], m2["history"]["train_loss"], rtol=1e-4)
