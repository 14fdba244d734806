"""GPU check of the trainable reward models: throughput, peak memory, dtype and device placement.

Trains, through ``causalrm.trainer.train`` with the ``causalrm-dr`` loss, for a fixed number of optimiser steps:

1. ``lora-minilm``: LoRA on the bundled all-MiniLM-L6-v2 (encoder, text pairs);
2. ``lora-llama``: LoRA on a randomly initialised Llama-style decoder built from a config (8 layers, hidden 1024 by
   default; chat template; nothing is downloaded) -- a stand-in for a real LLM's shapes;
3. ``mlp``: the paper's MLP head on 4096-d feature vectors.

For each it prints examples/s (training; timed on the second epoch so CUDA start-up is excluded) and scoring
examples/s, peak memory (``torch.cuda.max_memory_allocated``), the device name, the compute dtype (bf16 autocast on
CUDA), and checks that every parameter and the logits live on the device and that the matmuls ran in bf16.

Run on a CUDA machine (needs the project's environment; no network)::

    python benchmarks/gpu_check.py                 # full sizes, cuda
    python benchmarks/gpu_check.py --dry-run       # tiny sizes on CPU (a smoke test of this script)
    python benchmarks/gpu_check.py --json $OUT/gpu_check.json

Exit status 1 if a placement / dtype check fails.
"""

from __future__ import annotations

import argparse
import json
import os
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

from causalrm import losses  # noqa: E402
from causalrm.trainer import TrainConfig, predict_logits, train  # noqa: E402

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


def bench(name: str, backbone: Any, train_feats: Any, val_feats: Any, n_train: int, *, batch_size: int,
          device: torch.device, autocast: str | None, lr: float, rng: np.random.Generator) -> dict[str, Any]:
    cfg = TrainConfig(method="causalrm-dr", rho01=0.2, rho10=0.1, lr=lr, batch_size=batch_size, max_epochs=2,
                      patience=None, eval_batch_size=max(batch_size, 64), device=str(device), autocast_dtype=autocast,
                      sort_by_length=True, seed=0)
    train_in, val_in = loss_inputs(n_train, rng), loss_inputs(len(val_feats), rng)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainable = [p for p in backbone.trainable_parameters()]
    before = [p.detach().clone() for p in trainable]
    history = train(backbone, train_feats, train_in, val_feats, val_in, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak_train = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    moved = sum(not torch.equal(p.detach(), b) for p, b in zip(trainable, before))

    probe = DtypeProbe(backbone)
    t0 = time.perf_counter()
    z = predict_logits(backbone, train_feats, batch_size=max(batch_size, 64), device=None, autocast_dtype=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    score_s = time.perf_counter() - t0
    probe.close()
    logits_device = str(next(backbone.parameters()).device)
    result = {
        "name": name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "n_train_rows": n_train,
        "batch_size": batch_size,
        "steps_per_epoch": int(np.ceil(n_train / batch_size)),
        "train_examples_per_s": n_train / history.epoch_seconds[-1],
        "first_epoch_s": history.epoch_seconds[0],
        "score_examples_per_s": n_train / score_s,
        "peak_memory_mib": peak_train,
        "trainable_params": int(sum(p.numel() for p in trainable)),
        "all_params": int(sum(p.numel() for p in backbone.parameters())),
        "trainable_tensors_changed": f"{moved}/{len(trainable)}",
        "linear_output_dtypes": sorted(probe.dtypes),
        "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in backbone.parameters()}),
        "misplaced": check_placement(backbone, device),
        "logits_finite": bool(np.isfinite(z).all()),
        "params_device": logits_device,
    }
    bf16_expected = device.type == "cuda" and torch.cuda.is_bf16_supported()
    result["ok"] = (not result["misplaced"] and result["logits_finite"] and moved == len(trainable)
                    and (not bf16_expected or "bfloat16" in result["linear_output_dtypes"]))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (tests this script)")
    ap.add_argument("--device", default=None, help="cuda (default) or cpu; --dry-run implies cpu")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per epoch (default 40; dry run 3)")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default 8; dry run 2)")
    ap.add_argument("--hidden", type=int, default=None, help="decoder hidden size (default 1024; dry run 64)")
    ap.add_argument("--max-length", type=int, default=None, help="tokens per row (default 512; dry run 32)")
    ap.add_argument("--only", default="lora-minilm,lora-llama,mlp", help="comma-separated subset of the checks")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    dry = args.dry_run
    device = torch.device(args.device or ("cpu" if dry else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available; use --dry-run (or --device cpu)", file=sys.stderr)
        return 2
    steps = args.steps or (3 if dry else 40)
    layers = args.layers or (2 if dry else 8)
    hidden = args.hidden or (64 if dry else 1024)
    max_length = args.max_length or (32 if dry else 512)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)}), bf16 supported: {torch.cuda.is_bf16_supported()}"
             if device.type == "cuda" else ""), flush=True)

    from causalrm.backbones.lora import LoraBackbone
    from causalrm.backbones.mlp import MLPBackbone, TensorFeatures

    results = []
    words = max(4, max_length // 2)
    with tempfile.TemporaryDirectory() as tmp:
        if "lora-minilm" in only:
            batch = 8 if dry else 64
            n = steps * batch
            bb = LoraBackbone.build(None, {"max_length": min(max_length, 256)}, seed=0)
            feats = bb.encode(texts(n, words // 2, rng), texts(n, words, rng))
            val = bb.encode(texts(batch, words // 2, rng), texts(batch, words, rng))
            results.append(bench("lora-minilm", bb, feats, val, n, batch_size=batch, device=device, autocast=None,
                                 lr=2e-4, rng=rng))
            print(json.dumps(results[-1]), flush=True)
        if "lora-llama" in only:
            from helpers_tiny_models import tiny_llama

            path = tiny_llama(Path(tmp) / "llama", layers=layers, hidden=hidden, heads=max(4, hidden // 64),
                              kv_heads=max(2, hidden // 256), intermediate=int(hidden * 2.75))
            batch = 4 if dry else 16
            n = steps * batch
            bb = LoraBackbone.build(None, {"model": path, "max_length": max_length, "r": 16, "alpha": 32}, seed=0)
            feats = bb.encode(texts(n, words // 2, rng), texts(n, words, rng))
            val = bb.encode(texts(batch, words // 2, rng), texts(batch, words, rng))
            name = f"lora-llama-{layers}x{hidden}"
            results.append(bench(name, bb, feats, val, n, batch_size=batch, device=device, autocast=None, lr=2e-4,
                                 rng=rng))
            print(json.dumps(results[-1]), flush=True)
        if "mlp" in only:
            dim = 64 if dry else 4096
            batch = 32 if dry else 512
            n = steps * batch * (1 if dry else 5)
            X = rng.normal(size=(n, dim)).astype(np.float32)
            bb = MLPBackbone.build(X, {}, seed=0)
            autocast = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
            results.append(bench("mlp", bb, TensorFeatures(X), TensorFeatures(X[:batch]), n, batch_size=batch,
                                 device=device, autocast=autocast, lr=5e-4, rng=rng))
            print(json.dumps(results[-1]), flush=True)

    print()
    header = f"{'check':<22} {'train ex/s':>11} {'score ex/s':>11} {'peak MiB':>9} {'dtypes':<18} {'ok':>3}"
    print(header)
    print("-" * len(header))
    for r in results:
        peak = "n/a" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}"
        print(f"{r['name']:<22} {r['train_examples_per_s']:>11.1f} {r['score_examples_per_s']:>11.1f} {peak:>9} "
              f"{','.join(r['linear_output_dtypes']):<18} {'yes' if r['ok'] else 'NO':>3}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    failed = [r["name"] for r in results if not r["ok"]]
    if failed:
        print(f"FAILED checks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
