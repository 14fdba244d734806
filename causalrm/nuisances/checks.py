"""Preconditions of the nuisance models' inputs: feature matrices, 0/1 vectors, propensities and the clip floor.

Each check returns the validated array (float64 unless stated) or raises :class:`~causalrm.errors.InputError` with
one line naming the row or shape at fault. Used by ``causalrm.nuisances.propensity`` and ``causalrm.nuisances.flip_rates``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from causalrm.errors import InputError


def check_features(X: Any, n: int | None = None, name: str = "X") -> np.ndarray:
    """X as a finite float32 array (n, d); InputError otherwise."""
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric array of shape (n_rows, n_features)") from None
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_rows, n_features), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} rows but the log has {n}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InputError(f"{name} row {int(np.argmax(bad))} contains NaN or infinite values; re-embed or drop it")
    return arr


def _shape_checked(X: Any, n: int) -> tuple[int, int]:
    """X's shape, checked like ``check_features`` (finite values too) without copying a memory-mapped X."""
    from causalrm.data.rowmatrix import check_finite, is_lazy

    if not is_lazy(X):
        return check_features(X, n).shape
    shape = np.shape(X)
    if len(shape) != 2 or shape[0] != n or shape[1] == 0:
        raise InputError(f"X must be (n_rows={n}, n_features), got shape {shape}")
    check_finite(X, "X")
    return shape


def check_binary(values: Any, name: str, n: int | None = None) -> np.ndarray:
    """A 0/1 vector as float64; InputError naming the first bad row otherwise."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise InputError(f"column {name!r} has {arr.shape[0]} rows but X has {n}")
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"column {name!r} row {i} is {float(arr[i])!r}: it must be 0 or 1")
    return arr


def check_propensity(values: Any, name: str = "logged_propensity", n: int | None = None) -> np.ndarray:
    """A probability vector in (0, 1]; InputError naming the first bad row otherwise."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise InputError(f"column {name!r} has {arr.shape[0]} rows but the log has {n}")
    bad = ~(np.isfinite(arr) & (arr > 0) & (arr <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"column {name!r} row {i} is {float(arr[i])!r}: propensities must lie in (0, 1] on every row")
    return arr


def _check_clip(clip: Any) -> float:
    try:
        c = float(clip)
    except (TypeError, ValueError):
        raise InputError(f"clip must be a number in (0, 1], got {clip!r}") from None
    if not (0.0 < c <= 1.0):
        raise InputError(f"clip must lie in (0, 1], got {clip!r}")
    return c


__all__ = ["check_binary", "check_features", "check_propensity"]
