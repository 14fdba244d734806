"""A small simulated impression log with its embeddings on disk, for CLI and multi-process tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from causalrm.simulation.simulate import simulate


def write_simulated_log(folder: Path, n: int, d: int = 8) -> Path:
    """Write ``folder/log.parquet`` (``n`` rows, three responses per prompt, a rating linear in x plus noise, then
    selection alpha 0.5 and flips 0.2 / 0.1) and ``folder/X.npy`` (the (n, d) float32 features); return ``folder``."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    rating = np.clip(np.round(5 + 2 * X[:, 0] + X[:, 1] + rng.standard_normal(n)), 1, 10)
    rated = pl.DataFrame({
        "prompt": [f"question {i // 3}" for i in range(n)], "response": [f"answer {i}" for i in range(n)],
        "response_id": [f"r{i}" for i in range(n)], "pair_id": [f"q{i // 3}" for i in range(n)],
        "rating": rating,
    })
    simulate(rated, alpha=0.5, rho01=0.2, rho10=0.1, observation_rate=0.4, seed=0).write_parquet(folder / "log.parquet")
    np.save(folder / "X.npy", X)
    return folder
