"""GPU check: embedding extraction, bf16 training of the trainable reward models, and a 2-process launch.

One command on a CUDA machine measures and checks, in this order (``--only`` picks a subset):

1. ``embed-minilm`` / ``embed-llama``: ``causalrm.embeddings.embedder.Embedder`` (cache off) on the bundled
   all-MiniLM-L6-v2 encoder and on a randomly initialised Llama-style decoder built from a config (chat template,
   last-token pooling; 8 layers, hidden 1024 by default; nothing is downloaded) -- rows/s (after a warm-up
   batch), peak memory, model dtype (bf16 on CUDA: the embedder's ``dtype="auto"``); checks the vectors are finite
   and have the model's width.
2. ``lora-minilm`` / ``lora-llama``: LoRA on the same two models, and ``mlp``: the paper's MLP head on 4096-d
   feature vectors, each trained through ``causalrm.training.trainer.train`` with the ``causalrm-dr`` loss for a fixed number
   of optimiser steps per epoch (2 epochs) -- training examples/s (timed on the second epoch so CUDA start-up is
   excluded), scoring examples/s, peak memory (``torch.cuda.max_memory_allocated``), the dtype the matmuls ran in
   (bf16 autocast on CUDA: the LoRA backbone's own autocast, ``autocast_dtype="bfloat16"`` for the MLP); checks
   every parameter lives on the device, every trainable tensor moved, the training losses and the logits are
   finite, and (on CUDA with bf16 support) that the linear layers really produced bf16.
3. ``launch-2proc``: ``causalrm fit`` on a small simulated log with precomputed embeddings, once as one process and
   once as ``accelerate launch --multi_gpu --num_processes 2 ... -m causalrm.cli.main fit`` (falls back to
   ``python -m torch.distributed.run --nproc_per_node 2`` without Accelerate). With >= 2 visible CUDA GPUs the
   two ranks use ``cuda:0`` / ``cuda:1`` (NCCL); otherwise the CPU gloo form of docs/DISTRIBUTED.md
   (``CUDA_VISIBLE_DEVICES=""``, ``--device cpu``). Checks ``world_size`` 1 and 2 in the runs' ``metrics.json``,
   and the test R^2 of the two runs within 0.03.

It prints one JSON line per check as it goes, a table, and finally one JSON summary line
(``{"ok": ..., "failed": [...], "checks": [...]}``; also written to ``--json PATH``).

Run on a CUDA machine (needs the project's environment; no network)::

    .venv/bin/python benchmarks/gpu_check.py --json docs/results/gpu_check.json     # full sizes, cuda
    .venv/bin/python benchmarks/gpu_check.py --dry-run                             # tiny sizes on CPU (< 90 s)

Exit status 1 if any check fails, 2 if CUDA was asked for and is not available.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from causalrm.estimators import losses  # noqa: E402
from causalrm.training.options import TrainConfig  # noqa: E402
from causalrm.training.scoring import predict_logits
from causalrm.training.trainer import train

CHECKS = ("embed-minilm", "embed-llama", "lora-minilm", "lora-llama", "mlp", "launch-2proc")

WORDS = ("the model answers each question with a clear and helpful explanation of the code data list sort "
         "because users prefer short correct examples over long wrong ones").split()


def texts(n: int, words: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=words)) for _ in range(n)]


def loss_inputs(n: int, rng: np.random.Generator) -> losses.LossInputs:
    observed = (rng.random(n) < 0.3).astype(np.float32)
    return losses.LossInputs(
        feedback=((rng.random(n) < 0.6) & (observed > 0)).astype(np.float32), observed=observed,
        propensity=np.clip(rng.uniform(0.05, 0.9, n), 0.1, 1.0).astype(np.float32),
        pseudo_label=rng.uniform(0.1, 0.9, n).astype(np.float32),
    )


class DtypeProbe:
    """Records the output dtype of every ``torch.nn.Linear`` (did the matmuls run in bf16?)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.dtypes: set[str] = set()
        self.handles = [m.register_forward_hook(self._hook) for m in module.modules()
                        if isinstance(m, torch.nn.Linear)]

    def _hook(self, module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            self.dtypes.add(str(output.dtype).replace("torch.", ""))

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def check_placement(backbone: torch.nn.Module, device: torch.device) -> list[str]:
    wrong = [n for n, p in backbone.named_parameters() if p.device.type != device.type]
    wrong += [n for n, b in backbone.named_buffers() if b.device.type != device.type]
    return wrong[:5]


def _cuda_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench(name: str, backbone: Any, train_feats: Any, val_feats: Any, n_train: int, *, batch_size: int,
          device: torch.device, autocast: str | None, lr: float, rng: np.random.Generator) -> dict[str, Any]:
    cfg = TrainConfig(method="causalrm-dr", rho01=0.2, rho10=0.1, lr=lr, batch_size=batch_size, max_epochs=2,
                      patience=None, eval_batch_size=max(batch_size, 64), device=str(device), autocast_dtype=autocast,
                      sort_by_length=True, seed=0)
    train_in, val_in = loss_inputs(n_train, rng), loss_inputs(len(val_feats), rng)
    _cuda_reset(device)
    trainable = [p for p in backbone.trainable_parameters()]
    before = [p.detach().clone() for p in trainable]
    history = train(backbone, train_feats, train_in, val_feats, val_in, cfg)
    peak_train = _cuda_peak_mib(device)
    moved = sum(not torch.equal(p.detach(), b) for p, b in zip(trainable, before))

    probe = DtypeProbe(backbone)
    t0 = time.perf_counter()
    z = predict_logits(backbone, train_feats, batch_size=max(batch_size, 64), device=None, autocast_dtype=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    score_s = time.perf_counter() - t0
    probe.close()
    bf16_expected = device.type == "cuda" and torch.cuda.is_bf16_supported()
    result = {
        "name": name,
        "kind": "train",
        "device": str(device),
        "device_name": _device_name(device),
        "compute_dtype": "bfloat16" if bf16_expected else "float32",
        "n_train_rows": n_train,
        "batch_size": batch_size,
        "steps_per_epoch": int(np.ceil(n_train / batch_size)),
        "epochs": history.epochs,
        "train_examples_per_s": n_train / history.epoch_seconds[-1],
        "first_epoch_s": history.epoch_seconds[0],
        "score_examples_per_s": n_train / score_s,
        "peak_memory_mib": peak_train,
        "train_loss": [float(v) for v in history.train_loss],
        "losses_finite": bool(history.train_loss) and all(math.isfinite(v) for v in history.train_loss)
        and history.stop_reason != "diverged",
        "stop_reason": history.stop_reason,
        "trainable_params": int(sum(p.numel() for p in trainable)),
        "all_params": int(sum(p.numel() for p in backbone.parameters())),
        "trainable_tensors_changed": f"{moved}/{len(trainable)}",
        "linear_output_dtypes": sorted(probe.dtypes),
        "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in backbone.parameters()}),
        "misplaced": check_placement(backbone, device),
        "logits_finite": bool(np.isfinite(z).all()),
        "params_device": str(next(backbone.parameters()).device),
    }
    result["ok"] = (not result["misplaced"] and result["logits_finite"] and result["losses_finite"]
                    and moved == len(trainable)
                    and (not bf16_expected or "bfloat16" in result["linear_output_dtypes"]))
    return result


def bench_embed(name: str, model: str, n: int, *, batch_size: int, max_length: int, words: int,
                device: torch.device, rng: np.random.Generator) -> dict[str, Any]:
    """Rows/s and peak memory of ``Embedder.embed`` (cache off) on ``n`` fresh (prompt, response) rows."""
    from causalrm.embeddings.embedder import Embedder

    emb = Embedder(model=model, device=str(device), dtype="auto", batch_size=batch_size, max_length=max_length,
                   cache=False, progress=False)
    warm_p, warm_r = texts(batch_size, words // 2, rng), texts(batch_size, words, rng)
    t0 = time.perf_counter()
    emb.embed(warm_p, warm_r)  # loads the model and warms the kernels up
    load_s = time.perf_counter() - t0
    prompts, responses = texts(n, words // 2, rng), texts(n, words, rng)
    _cuda_reset(device)
    t0 = time.perf_counter()
    X = np.asarray(emb.embed(prompts, responses))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    model_obj = emb._model
    result = {
        "name": name,
        "kind": "embed",
        "device": str(device),
        "device_name": _device_name(device),
        "model": emb.model_id,
        "pooling": emb.spec.pooling,
        "model_dtype": str(next(model_obj.parameters()).dtype).replace("torch.", "") if model_obj is not None else None,
        "rows": n,
        "batch_size": batch_size,
        "max_length": max_length,
        "rows_per_s": n / seconds,
        "seconds": seconds,
        "load_and_warmup_s": load_s,
        "peak_memory_mib": _cuda_peak_mib(device),
        "shape": list(X.shape),
        "computed": emb.last_stats.get("computed"),
        "vectors_finite": bool(np.isfinite(X).all()),
    }
    bf16_expected = device.type == "cuda" and torch.cuda.is_bf16_supported()
    result["ok"] = (result["vectors_finite"] and X.shape == (n, emb.dim)
                    and (not bf16_expected or result["model_dtype"] == "bfloat16"))
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_launch(tmp: Path, *, device: torch.device, rows: int, epochs: int, timeout: int) -> dict[str, Any]:
    """``causalrm fit`` as one process and as two (Accelerate's launcher, NCCL on 2 GPUs or gloo on the CPU)."""
    from helpers_logs import write_simulated_log

    (tmp / "launch").mkdir(parents=True, exist_ok=True)
    folder = write_simulated_log(tmp / "launch", rows)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    on_gpu = gpus >= 2
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT",
                                                             "MASTER_ADDR", "LOCAL_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if on_gpu:
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0,1")
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    fit_device = "cuda" if on_gpu else "cpu"
    common = ["fit", "log.parquet", "--embeddings", "X.npy", "--method", "causalrm-snips", "--rho01", "0.2",
              "--rho10", "0.1", "--epochs", str(epochs), "--batch-size", "128", "--threads", "1",
              "--device", fit_device, "--quiet"]
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    port = str(_free_port())
    if accelerate:
        launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    runs = {}
    for n, cmd in ((1, [sys.executable, "-m", "causalrm.cli.main", *common, "--out", "run1"]),
                   (2, [*launcher, "-m", "causalrm.cli.main", *common, "--out", "run2"])):
        t0 = time.perf_counter()
        try:
            out = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
            rc, tail = out.returncode, (out.stdout + out.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            rc, tail = 124, f"timed out after {timeout} s"
        seconds = time.perf_counter() - t0
        metrics_path = folder / f"run{n}" / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if rc == 0 and metrics_path.exists() else {}
        runs[n] = {"rc": rc, "seconds": seconds, "metrics": metrics, "tail": tail if rc else ""}
    m1, m2 = runs[1]["metrics"], runs[2]["metrics"]

    def r2(m: dict) -> float | None:
        try:
            return float(m["test"]["metrics"]["r2"])
        except (KeyError, TypeError, ValueError):
            return None

    r2_1, r2_2 = r2(m1), r2(m2)
    v1, v2 = (np.asarray(m.get("history", {}).get("val_estimate", []), float) for m in (m1, m2))
    val_diff = float(np.max(np.abs(v1 - v2))) if len(v1) and len(v1) == len(v2) else None
    result = {
        "name": "launch-2proc",
        "kind": "launch",
        "mode": "cuda-nccl" if on_gpu else "cpu-gloo",
        "visible_cuda_gpus": gpus,
        "launcher": "accelerate" if accelerate else "torch.distributed.run",
        "command": " ".join(["accelerate" if accelerate else "python", *launcher[1:], "-m", "causalrm.cli.main",
                             *common, "--out", "run2"]),
        "rows": rows,
        "epochs_max": epochs,
        "rc": [runs[1]["rc"], runs[2]["rc"]],
        "seconds": [runs[1]["seconds"], runs[2]["seconds"]],
        "world_size": [m1.get("world_size"), m2.get("world_size")],
        "test_r2": [r2_1, r2_2],
        "r2_abs_diff": None if r2_1 is None or r2_2 is None else abs(r2_1 - r2_2),
        "best_epoch": [m1.get("validation", {}).get("best_epoch"), m2.get("validation", {}).get("best_epoch")],
        "val_estimate_max_abs_diff": val_diff,
        "errors": [runs[n]["tail"] for n in (1, 2) if runs[n]["tail"]],
    }
    result["ok"] = (result["rc"] == [0, 0] and result["world_size"] == [1, 2]
                    and result["r2_abs_diff"] is not None and result["r2_abs_diff"] < 0.03)
    return result


def _row(r: dict[str, Any]) -> str:
    peak = "n/a" if r.get("peak_memory_mib") is None else f"{r['peak_memory_mib']:.0f}"
    if r["kind"] == "train":
        rate, extra = f"{r['train_examples_per_s']:.1f} ex/s", f"score {r['score_examples_per_s']:.0f} ex/s; " \
            f"{','.join(r['linear_output_dtypes'])}"
    elif r["kind"] == "embed":
        rate, extra = f"{r['rows_per_s']:.1f} rows/s", f"{r['model_dtype']}; dim {r['shape'][1] if r['shape'] else '?'}"
    else:
        rate = f"{r['seconds'][1]:.1f} s (2 proc)"
        diff = "n/a" if r["r2_abs_diff"] is None else f"{r['r2_abs_diff']:.2g}"
        extra = f"{r['mode']}; world {r['world_size']}; R2 diff {diff}"
    return f"{r['name']:<22} {rate:>20} {peak:>9}  {extra:<40} {'yes' if r['ok'] else 'NO':>3}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (tests this script; < 90 s)")
    ap.add_argument("--device", default=None, help="cuda (default) or cpu; --dry-run implies cpu")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per epoch (default 40; dry run 3)")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default 8; dry run 2)")
    ap.add_argument("--hidden", type=int, default=None, help="decoder hidden size (default 1024; dry run 64)")
    ap.add_argument("--max-length", type=int, default=None, help="tokens per row (default 512; dry run 32)")
    ap.add_argument("--embed-rows", type=int, default=None, help="rows to embed per model (default 2048; dry run 32)")
    ap.add_argument("--launch-rows", type=int, default=None, help="rows of the 2-process log (default 3000; dry 300)")
    ap.add_argument("--launch-epochs", type=int, default=None, help="max epochs of the 2-process fit (default 25; "
                    "dry run 5)")
    ap.add_argument("--launch-timeout", type=int, default=300, help="seconds per launched fit (default 300)")
    ap.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated subset of: {', '.join(CHECKS)}")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the JSON summary to PATH")
    args = ap.parse_args(argv)

    dry = args.dry_run
    device = torch.device(args.device or ("cpu" if dry else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available; use --dry-run (or --device cpu)", file=sys.stderr)
        return 2
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        print(f"error: unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    steps = args.steps or (3 if dry else 40)
    layers = args.layers or (2 if dry else 8)
    hidden = args.hidden or (64 if dry else 1024)
    max_length = args.max_length or (32 if dry else 512)
    embed_rows = args.embed_rows or (32 if dry else 2048)
    launch_rows = args.launch_rows or (300 if dry else 3000)
    launch_epochs = args.launch_epochs or (5 if dry else 25)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    started = time.perf_counter()
    env_info = {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": _device_name(device),
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "bf16_supported": bool(device.type == "cuda" and torch.cuda.is_bf16_supported()),
        "dry_run": dry,
    }
    try:
        import transformers

        env_info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - a project dependency
        pass
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({env_info['device_name']}, {env_info['cuda_device_count']} visible), bf16 supported: "
             f"{env_info['bf16_supported']}" if device.type == "cuda" else ""), flush=True)

    from causalrm.training.backbones.lora import LoraBackbone
    from causalrm.training.backbones.mlp import MLPBackbone, TensorFeatures

    results: list[dict[str, Any]] = []

    def run_check(name: str, fn) -> None:
        try:
            results.append(fn())
        except Exception as exc:  # one failing check must not hide the others' figures
            results.append({"name": name, "kind": "error", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(results[-1]), flush=True)

    words = max(4, max_length // 2)
    with tempfile.TemporaryDirectory() as tmp:
        llama_path: str | None = None

        def llama() -> str:
            nonlocal llama_path
            if llama_path is None:
                from helpers_tiny_models import tiny_llama

                llama_path = tiny_llama(Path(tmp) / "llama", layers=layers, hidden=hidden,
                                        heads=max(4, hidden // 64), kv_heads=max(2, hidden // 256),
                                        intermediate=int(hidden * 2.75))
            return llama_path

        if "embed-minilm" in only:
            run_check("embed-minilm", lambda: bench_embed(
                "embed-minilm", "all-MiniLM-L6-v2", embed_rows, batch_size=16 if dry else 256,
                max_length=min(max_length, 256), words=words, device=device, rng=rng))
        if "embed-llama" in only:
            run_check("embed-llama", lambda: bench_embed(
                f"embed-llama-{layers}x{hidden}", llama(), embed_rows, batch_size=8 if dry else 64,
                max_length=max_length, words=words, device=device, rng=rng))
        if "lora-minilm" in only:
            def lora_minilm() -> dict[str, Any]:
                batch = 8 if dry else 64
                n = steps * batch
                bb = LoraBackbone.build(None, {"max_length": min(max_length, 256)}, seed=0)
                feats = bb.encode(texts(n, words // 2, rng), texts(n, words, rng))
                val = bb.encode(texts(batch, words // 2, rng), texts(batch, words, rng))
                return bench("lora-minilm", bb, feats, val, n, batch_size=batch, device=device, autocast=None,
                             lr=2e-4, rng=rng)

            run_check("lora-minilm", lora_minilm)
        if "lora-llama" in only:
            def lora_llama() -> dict[str, Any]:
                batch = 4 if dry else 16
                n = steps * batch
                bb = LoraBackbone.build(None, {"model": llama(), "max_length": max_length, "r": 16, "alpha": 32},
                                        seed=0)
                feats = bb.encode(texts(n, words // 2, rng), texts(n, words, rng))
                val = bb.encode(texts(batch, words // 2, rng), texts(batch, words, rng))
                return bench(f"lora-llama-{layers}x{hidden}", bb, feats, val, n, batch_size=batch, device=device,
                             autocast=None, lr=2e-4, rng=rng)

            run_check("lora-llama", lora_llama)
        if "mlp" in only:
            def mlp() -> dict[str, Any]:
                dim = 64 if dry else 4096
                batch = 32 if dry else 512
                n = steps * batch * (1 if dry else 5)
                X = rng.normal(size=(n, dim)).astype(np.float32)
                bb = MLPBackbone.build(X, {}, seed=0)
                autocast = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
                return bench("mlp", bb, TensorFeatures(X), TensorFeatures(X[:batch]), n, batch_size=batch,
                             device=device, autocast=autocast, lr=5e-4, rng=rng)

            run_check("mlp", mlp)
        if "launch-2proc" in only:
            run_check("launch-2proc", lambda: check_launch(Path(tmp), device=device, rows=launch_rows,
                                                           epochs=launch_epochs, timeout=args.launch_timeout))

    print()
    header = f"{'check':<22} {'throughput':>20} {'peak MiB':>9}  {'notes':<40} {'ok':>3}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(_row(r) if r["kind"] != "error" else f"{r['name']:<22} error: {r['error'][:100]}  NO")
    failed = [r["name"] for r in results if not r["ok"]]
    summary = {"ok": not failed, "failed": failed, "seconds": time.perf_counter() - started, **env_info,
               "checks": results}
    print(json.dumps(summary), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if failed:
        print(f"FAILED checks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
