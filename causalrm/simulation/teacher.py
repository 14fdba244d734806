"""Teacher ratings: a seeded random teacher (linear, or an MLP with ``TEACHER_HIDDEN`` units) on the embeddings,
with optional noise of a given signal-to-noise ratio, rescaled to the 1-5 scale of the simulator."""

from __future__ import annotations

import math

import numpy as np

from causalrm.errors import InputError
from causalrm.simulation.config import _STREAM_TEACHER, TEACHER_HIDDEN, TEACHERS, _check_embeddings, _streams


def rescale_to_1_5(y: np.ndarray, y_min: float, y_max: float) -> np.ndarray:
    """``s = 1 + 4 (y - y_min) / (y_max - y_min)``: the rating on the paper's [1, 5] selection scale."""
    if not y_max > y_min:
        raise InputError(f"rating: all rows have the same rating ({y_min:g}); the simulation needs at least two levels")
    return 1.0 + 4.0 * (np.asarray(y, dtype=np.float64) - y_min) / (y_max - y_min)


def teacher_score(
    embeddings: np.ndarray, *, teacher: str = "linear", seed: int = 0, hidden: int = TEACHER_HIDDEN
) -> np.ndarray:
    """Noiseless teacher score of each row, standardised to mean 0 and variance 1 over the rows.

    ``Z`` = the embeddings standardised column-wise over the rows (constant columns left at 0). The weights are drawn
    from ``SeedSequence(seed)``'s teacher stream, so the teacher is a fixed function for a fixed seed and dimension:

    - ``linear``: ``g = Z w``, ``w ~ N(0, I / d)``;
    - ``mlp``: ``g = tanh(Z W1 + b1) w2``, ``W1 ~ N(0, I / d)`` (d x hidden), ``b1 ~ N(0, 0.25)``,
      ``w2 ~ N(0, I / hidden)``: a smooth, mildly non-linear function (a linear fit explains roughly 85-95% of its
      variance on standardised inputs), learnable by the reward head.

    Returns ``(g - mean(g)) / std(g)``, float64 ``(n,)``.
    """
    X = _check_embeddings(embeddings, None)
    if teacher not in TEACHERS:
        raise InputError(f"teacher={teacher!r}: must be one of {', '.join(TEACHERS)}")
    rng = _streams(seed)[_STREAM_TEACHER]
    n, d = X.shape
    mu, sd = X.mean(axis=0), X.std(axis=0)
    Z = np.divide(X - mu, sd, out=np.zeros_like(X), where=sd > 1e-12)
    if teacher == "linear":
        g = Z @ (rng.standard_normal(d) / math.sqrt(d))
    else:
        W1 = rng.standard_normal((d, hidden)) / math.sqrt(d)
        b1 = rng.standard_normal(hidden) * 0.5
        w2 = rng.standard_normal(hidden) / math.sqrt(hidden)
        g = np.tanh(Z @ W1 + b1) @ w2
    std = g.std()
    if not std > 1e-12:
        raise InputError("embeddings: the teacher score is constant over the rows (are all embeddings identical?)")
    return (g - g.mean()) / std
