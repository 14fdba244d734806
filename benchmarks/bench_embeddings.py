"""Throughput of causalrm's Embedder vs sentence-transformers on the same bundled texts.

Both embed the same (prompt, response) pairs with the bundled all-MiniLM-L6-v2 (same local folder, same batch size,
same device, same torch threads); the Embedder runs with every cache disabled. The rows are split into chunks and the
two alternate chunk by chunk (ST, ours, ours, ST, ...) so background load hits both alike; wall-clock and process CPU
throughput are printed with their ratio and the agreement between the two outputs.

    HF_HUB_OFFLINE=1 python benchmarks/bench_embeddings.py [--n 1000] [--batch-size 64] [--chunks 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def bundled_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str], str]:
    """A seeded sample of ``n`` rows: half UltraFeedback (prompt + response), half WildBench (response only)."""
    import numpy as np
    import polars as pl

    from causalrm.data.datasets import bundled_path

    frames = []
    for name, share in (("ultrafeedback", n - n // 2), ("wildbench", n // 2)):
        df = pl.read_parquet(bundled_path(name), columns=["prompt", "response"])
        idx = np.random.default_rng(seed).choice(df.height, size=min(share, df.height), replace=False)
        frames.append(df[np.sort(idx)])
    df = pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=seed)  # mixed lengths in every chunk
    return (df["prompt"].fill_null("").to_list(), df["response"].to_list(),
            f"{frames[0].height} UltraFeedback + {frames[1].height} WildBench rows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="rows (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="passes over the rows (default 1)")
    parser.add_argument("--chunks", type=int, default=4, help="alternating chunks per pass (default 4)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from causalrm.embeddings.embedder import Embedder
    from causalrm.embeddings.models import _bundled_minilm_path

    prompts, responses, what = bundled_pairs(args.n)
    inputs = [(p, r) if p else r for p, r in zip(prompts, responses)]  # the text pair Embedder encodes
    path = str(_bundled_minilm_path())
    ours = Embedder(model="all-MiniLM-L6-v2", cache=False, progress=False, device=args.device,
                    batch_size=args.batch_size)  # resolves to the same bundled folder as ``path``
    st = SentenceTransformer(path, device=args.device)

    # warm-up (model load, first-call allocations) on a few rows, untimed
    ours.embed(prompts[:8], responses[:8])
    st.encode(inputs[:8], batch_size=args.batch_size, show_progress_bar=False)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    # Alternate the two in chunks (ST, ours, ours, ST, ...) so drifting background load hits both alike; report wall
    # time and this process's CPU time (less sensitive to other processes on a shared machine).
    chunks = np.array_split(np.arange(len(prompts)), args.chunks)
    wall = {"sentence-transformers": 0.0, "causalrm": 0.0}
    cpu = dict(wall)
    X_st = np.zeros((len(prompts), 384), dtype=np.float32)
    X_ours = np.zeros_like(X_st)

    def run_st(idx: np.ndarray) -> None:
        X_st[idx] = st.encode([inputs[i] for i in idx], batch_size=args.batch_size, show_progress_bar=False,
                              convert_to_numpy=True)

    def run_ours(idx: np.ndarray) -> None:
        X_ours[idx] = ours.embed([prompts[i] for i in idx], [responses[i] for i in idx])

    runners = {"sentence-transformers": run_st, "causalrm": run_ours}
    k = 0
    for _ in range(args.repeats):
        for idx in chunks:
            names = list(runners) if k % 2 == 0 else list(runners)[::-1]
            k += 1
            for name in names:
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                runners[name](idx)
                sync()
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0

    rows = len(prompts) * args.repeats
    cos = (X_ours * X_st).sum(1) / (np.linalg.norm(X_ours, axis=1) * np.linalg.norm(X_st, axis=1))
    print(f"all-MiniLM-L6-v2, {what}, batch {args.batch_size}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}, {args.repeats} pass(es) in {args.chunks} alternating chunks, load average "
          f"{os.getloadavg()[0]:.1f}")
    for name in runners:
        print(f"  {name:22s} {rows / wall[name]:8.1f} rows/s wall ({wall[name]:.1f}s)   "
              f"{rows / cpu[name]:8.1f} rows/CPU-s ({cpu[name]:.1f} CPU-s)")
    ratio_wall = wall["sentence-transformers"] / wall["causalrm"]
    ratio_cpu = cpu["sentence-transformers"] / cpu["causalrm"]
    print(f"  ratio causalrm / sentence-transformers throughput: wall {ratio_wall:.2f}x, CPU {ratio_cpu:.2f}x")
    print(f"  agreement: min cosine {cos.min():.6f}, max |diff| {np.abs(X_ours - X_st).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
