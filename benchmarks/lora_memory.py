"""Peak memory of LoRA training measured beside ``causalrm.training.backbones.lora_memory``'s estimate.

Each setting runs in a fresh process (peak resident memory is per process): the bundled all-MiniLM-L6-v2 with LoRA,
rows padded to ``max_length``, one epoch of the real trainer (token-budget micro-batches, the validation pass), one
torch thread. Prints one markdown row per setting: measured peak, estimate, seconds and training tokens per second.

    .venv/bin/python benchmarks/lora_memory.py            # the table in docs/RESULTS.md ("Memory-aware LoRA")
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

SETTINGS = [  # (max_length, tokens per micro-batch, gradient checkpointing)
    (128, 2048, False), (128, 4096, False), (256, 4096, False), (256, 4096, True), (512, 4096, False),
    (512, 8192, True),
]
ROWS = 96


def measure(max_length: int, batch_tokens: int, ckpt: bool) -> dict:
    """One epoch in this process; returns the peak resident memory and timings."""
    import numpy as np
    import polars  # noqa: F401 - a worker has these loaded too
    import sklearn  # noqa: F401
    import torch

    from causalrm.estimators.losses import LossInputs
    from causalrm.training.backbones.hf_models import TokenFeatures
    from causalrm.training.backbones.lora import LoraBackbone
    from causalrm.training.backbones.lora_memory import MAX_EVAL_TOKENS
    from causalrm.training.trainer import train

    torch.set_num_threads(1)
    eval_tokens = max(max_length, min(MAX_EVAL_TOKENS, 4 * batch_tokens))
    backbone = LoraBackbone(max_length=max_length, gradient_checkpointing=ckpt, max_tokens_per_forward=eval_tokens)
    rng = np.random.default_rng(0)
    ids = [rng.integers(1000, 20000, size=max_length).astype(np.int32) for _ in range(ROWS)]
    feats = TokenFeatures(ids, backbone.tokenizer.pad_token_id, [np.zeros(max_length, np.int8)] * ROWS)
    inputs = LossInputs(feedback=(rng.random(ROWS) < 0.5).astype(np.float32), observed=np.ones(ROWS, np.float32),
                        propensity=np.ones(ROWS, np.float32))
    t0 = time.perf_counter()
    train(backbone, feats, inputs, feats, inputs, {"method": "naive", "max_epochs": 1, "batch_size": 32,
                                                    "max_batch_tokens": batch_tokens, "device": "cpu"})
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak": peak, "seconds": seconds, "tokens_per_s": ROWS * max_length / seconds, "eval_tokens": eval_tokens}


def main() -> None:
    from causalrm.training.backbones.lora_memory import GB, estimate_peak, model_shape

    if len(sys.argv) == 4:
        print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")))
        return
    shape = model_shape()
    print("| max length | tokens / micro-batch | checkpointing | measured peak | estimate | epoch s | train+val tok/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for length, tokens, ckpt in SETTINGS:
        out = subprocess.run([sys.executable, __file__, str(length), str(tokens), str(int(ckpt))], check=True,
                             capture_output=True, text=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        est = estimate_peak(shape, max_length=length, batch_tokens=tokens, eval_tokens=got["eval_tokens"],
                            gradient_checkpointing=ckpt, n_rows=ROWS)
        print(f"| {length} | {tokens:,} | {'yes' if ckpt else 'no'} | {got['peak'] / GB:.2f} GB | {est / GB:.2f} GB "
              f"| {got['seconds']:.0f} | {got['tokens_per_s']:.0f} |")


if __name__ == "__main__":
    main()
