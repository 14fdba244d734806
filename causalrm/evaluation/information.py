"""The information limit of noisy labels (issue 25): how many clean labels a noisy log is worth.

Under class-conditional flips the noisy label's signal is scaled by ``1 - rho01 - rho10``, so its variance-weighted
information is that of ``n (1 - rho01 - rho10)^2`` clean labels (the effective sample size). The clean-label
learning curve at that size is the ranking a noise-efficient estimator could approach: the bench's
``oracle-effective`` row trains ``oracle-observed`` on the clean labels of a random subset of that many observed rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError

INFORMATION_LIMIT = "oracle-effective"  # the bench row of the clean-label curve at the effective sample size


def effective_fraction(rho01: float, rho10: float) -> float:
    """``(1 - rho01 - rho10)^2``: the share of clean labels the noisy ones are worth (0 when the rates reach 1)."""
    if not (0.0 <= rho01 <= 1.0 and 0.0 <= rho10 <= 1.0):
        raise InputError(f"flip rates must lie in [0, 1]; got rho01 {rho01}, rho10 {rho10}")
    return float(max(0.0, 1.0 - rho01 - rho10) ** 2)


def effective_sample_size(n: int, rho01: float, rho10: float) -> int:
    """``round(n (1 - rho01 - rho10)^2)``: about as many clean labels as ``n`` noisy ones carry."""
    return int(round(int(n) * effective_fraction(rho01, rho10)))


def realised_flip_rates(log: pl.DataFrame) -> tuple[float, float]:
    """The flips a simulated log holds on its observed train / val rows: (P(r = 0 | r* = 1), P(r = 1 | r* = 0))."""
    if schema.TRUE_LABEL not in log.columns:
        raise InputError("realised flip rates need true_label (simulated logs only)")
    rows = log.filter((pl.col(schema.OBSERVED) == 1) & (pl.col(schema.SPLIT) != schema.TEST))
    r, t = rows[schema.FEEDBACK].to_numpy(), rows[schema.TRUE_LABEL].to_numpy()
    if not ((t == 1).any() and (t == 0).any()):
        raise InputError("realised flip rates: the observed train/val rows need both true labels")
    return float(np.mean(r[t == 1] == 0)), float(np.mean(r[t == 0] == 1))


def clean_subset(log: pl.DataFrame, size: int, seed: int) -> pl.DataFrame:
    """``log`` with only ``size`` of its observed train / val rows kept observed (a seeded uniform draw); the others
    become unobserved (feedback null). Test rows are untouched."""
    fitting = ((log[schema.OBSERVED] == 1) & (log[schema.SPLIT] != schema.TEST)).to_numpy()
    idx = np.flatnonzero(fitting)
    if not 0 < size <= idx.size:
        raise InputError(f"clean subset of {size} rows: the log has {idx.size} observed train/val rows")
    keep = np.zeros(log.height, dtype=bool)
    keep[np.random.default_rng(seed).choice(idx, size=size, replace=False)] = True
    drop = pl.Series(fitting & ~keep)
    return log.with_columns(
        pl.when(drop).then(0).otherwise(pl.col(schema.OBSERVED)).cast(pl.Int8).alias(schema.OBSERVED),
        pl.when(drop).then(None).otherwise(pl.col(schema.FEEDBACK)).alias(schema.FEEDBACK))

