"""Throughput of causalrm's Embedder vs sentence-transformers on the same bundled texts.

Both embed the same (prompt, response) pairs with the bundled all-MiniLM-L6-v2 (same local folder, same batch size,
same device, same torch threads); the Embedder runs with every cache disabled. Runs alternate (ST, ours, ST, ours, ...)
so background load hits both alike; the best run of each is reported, with the agreement between the two outputs.

    HF_HUB_OFFLINE=1 python benchmarks/bench_embeddings.py [--n 1000] [--batch-size 64] [--repeats 2] [--device cpu]
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

    from causalrm.datasets import bundled_path

    frames = []
    for name, share in (("ultrafeedback", n - n // 2), ("wildbench", n // 2)):
        df = pl.read_parquet(bundled_path(name), columns=["prompt", "response"])
        idx = np.random.default_rng(seed).choice(df.height, size=min(share, df.height), replace=False)
        frames.append(df[np.sort(idx)])
    df = pl.concat(frames)
    return (df["prompt"].fill_null("").to_list(), df["response"].to_list(),
            f"{frames[0].height} UltraFeedback + {frames[1].height} WildBench rows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="rows (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (best is reported)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from causalrm.embeddings import Embedder, _bundled_minilm_path

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

    times: dict[str, list[float]] = {"sentence-transformers": [], "causalrm": []}
    X_ours = X_st = None
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        X_st = st.encode(inputs, batch_size=args.batch_size, show_progress_bar=False, convert_to_numpy=True)
        sync()
        times["sentence-transformers"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        X_ours = ours.embed(prompts, responses)
        sync()
        times["causalrm"].append(time.perf_counter() - t0)

    cos = (X_ours * X_st).sum(1) / (np.linalg.norm(X_ours, axis=1) * np.linalg.norm(X_st, axis=1))
    best = {k: min(v) for k, v in times.items()}
    print(f"all-MiniLM-L6-v2, {what}, batch {args.batch_size}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}, best of {args.repeats}")
    for name, t in best.items():
        runs = ", ".join(f"{x:.1f}s" for x in times[name])
        print(f"  {name:22s} {len(prompts) / t:8.1f} rows/s  ({runs})")
    ratio = best["sentence-transformers"] / best["causalrm"]
    print(f"  ratio causalrm / sentence-transformers throughput: {ratio:.2f}x")
    print(f"  agreement: min cosine {cos.min():.6f}, max |diff| {np.abs(X_ours - X_st).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
