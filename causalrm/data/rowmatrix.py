"""Embedding matrices too large to copy: memory-mapped files, lazy row subsets, chunked passes, subsamples.

A 10^6 x 384 float32 embedding file is 1.5 GB. ``read_embeddings`` maps it (``np.load(mmap_mode="r")`` for ``.npy``,
an ``np.memmap`` at the tensor's byte offset for ``.safetensors``): its pages are file-backed (the page cache), not
anonymous memory. Everything downstream must then *gather rows by index* and never call ``np.asarray`` on the whole
matrix (or ``X[rows]`` with all the rows): that would copy it into anonymous memory.

- :class:`RowView` is a lazy row subset ``base[rows]`` of a 2-D array (a memmap, or any ndarray): ``view[mask]`` and
  ``view[idx]`` compose indices (no data copied), ``view.take(idx)`` gathers those rows as one float32 block.
- :class:`ShardedRows` is the row-wise concatenation of memory-mapped shards (``causalrm embed LOG OUT
  --shard-rows N`` writes fixed-size ``.npy`` shards and an ``index.json``): ``X[idx]`` gathers rows across shards
  without ever concatenating them; a ``RowView`` over it behaves as over one memmap.
- :func:`is_lazy` says whether a matrix is one of these (memmap or RowView): the paths that would copy it switch to
  chunked passes (:func:`iter_blocks`, :func:`check_finite`) or fit on a subsample (:func:`fit_subsample`).
- Nuisance models (``causalrm.nuisances.propensity``, ``causalrm.nuisances.flip_rates``) on more than ``max_rows`` rows are fitted on a
  seeded subsample of ``max_rows`` rows gathered by index (a float32 copy of ``max_rows x d`` only); their per-row
  outputs for the remaining rows are predictions in chunks (out of sample for every fold model, so still honest).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from causalrm.errors import InputError

#: rows per chunk of a chunked pass (16384 x 384 float32 = 25 MB)
CHUNK_ROWS = 16384


class RowView:
    """Rows ``rows`` of a 2-D array ``base`` (e.g. a read-only memmap), without copying them.

    ``len``, ``shape``, ``dtype`` and ``ndim`` behave like the selected array's; indexing by a boolean mask or an
    integer array returns another ``RowView``; ``take(idx)`` returns the rows ``idx`` as a new float32 array.
    ``np.asarray(view)`` materialises the whole selection (what large-matrix code paths must avoid).
    """

    def __init__(self, base: Any, rows: np.ndarray | None = None) -> None:
        if isinstance(base, RowView):
            rows = base.rows if rows is None else base.rows[np.asarray(rows)]
            base = base.base
        if np.ndim(base) != 2:
            raise InputError(f"embeddings must be a 2-D matrix (rows, dims); got shape {np.shape(base)}")
        self.base = base
        self.rows = np.arange(base.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.rows.shape[0]), int(self.base.shape[1]))

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    ndim = 2

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, key: Any) -> RowView:
        if isinstance(key, tuple):
            raise InputError("RowView selects rows only; gather them with take()")
        if isinstance(key, slice):
            return RowView(self.base, self.rows[key])
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != self.rows.shape:
                raise InputError(f"boolean row mask of {key.shape[0]} rows for {len(self)} rows")
            return RowView(self.base, self.rows[key])
        return RowView(self.base, self.rows[key.astype(np.int64)])

    def take(self, idx: Any = None) -> np.ndarray:
        """Rows ``idx`` (positions in this view; None = all) as a new C-contiguous float32 array."""
        rows = self.rows if idx is None else self.rows[np.asarray(idx, dtype=np.int64)]
        return gather(self.base, rows)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.take()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"RowView({self.shape[0]} of {self.base.shape[0]} rows x {self.shape[1]}, {type(self.base).__name__})"


def gather(base: Any, rows: np.ndarray) -> np.ndarray:
    """``base[rows]`` as a C-contiguous float32 array. On a memmap the rows are read in ascending order (sequential
    page access) and put back in the order asked for."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(base, np.memmap) and rows.size > 1:
        order = np.argsort(rows, kind="stable")
        block = np.asarray(base[rows[order]], dtype=np.float32)
        out = np.empty_like(block)
        out[order] = block
        return out
    return np.ascontiguousarray(base[rows], dtype=np.float32)


def is_lazy(X: Any) -> bool:
    """True for matrices that must not be copied whole: a ``RowView``, a :class:`ShardedRows` or a ``np.memmap`` (or
    a view of one)."""
    if isinstance(X, (RowView, ShardedRows)):
        return True
    while isinstance(X, np.ndarray):
        if isinstance(X, np.memmap):
            return True
        X = X.base
    return False


def n_rows(X: Any) -> int:
    return int(np.shape(X)[0]) if not isinstance(X, RowView) else len(X)


def take_rows(X: Any, idx: Any = None) -> np.ndarray:
    """Rows ``idx`` of ``X`` (an array, memmap or RowView; None = all) as a float32 array."""
    if isinstance(X, RowView):
        return X.take(idx)
    if idx is None:
        return np.asarray(X, dtype=np.float32)
    return gather(X, np.asarray(idx, dtype=np.int64))


def iter_blocks(X: Any, chunk: int = CHUNK_ROWS) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, float32 rows start:stop)`` over ``X`` in chunks (a memmap is read, never copied whole)."""
    n = n_rows(X)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        if isinstance(X, RowView):
            yield start, stop, X.take(np.arange(start, stop))
        else:
            yield start, stop, np.asarray(X[start:stop], dtype=np.float32)


def check_finite(X: Any, name: str = "embeddings") -> None:
    """InputError when a row of ``X`` holds NaN or inf, checked chunk by chunk."""
    for start, _, block in iter_blocks(X):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise InputError(f"{name} row {start + int(np.argmax(bad))} contains NaN or infinite values; re-embed "
                             "or drop it")


def predict_blocks(fn: Any, X: Any, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """``fn(block)`` over ``X`` chunk by chunk, concatenated (float64)."""
    out = np.empty(n_rows(X), dtype=np.float64)
    for start, stop, block in iter_blocks(X, chunk):
        out[start:stop] = np.asarray(fn(block), dtype=np.float64).reshape(-1)
    return out


def subsample(n: int, max_rows: int | None, seed: int, stratify: np.ndarray | None = None) -> np.ndarray | None:
    """Sorted positions of a seeded subsample of ``max_rows`` of ``n`` rows, or None when ``n <= max_rows``.

    With ``stratify`` (a 0/1 array) each class keeps its share (rounded), at least 2 rows of each class present.
    """
    if max_rows is None or max_rows <= 0 or n <= max_rows:
        return None
    rng = np.random.default_rng(seed)
    if stratify is None:
        return np.sort(rng.choice(n, size=int(max_rows), replace=False))
    y = np.asarray(stratify).reshape(-1)
    parts = []
    for value in np.unique(y):
        members = np.flatnonzero(y == value)
        k = min(len(members), max(2, int(round(max_rows * len(members) / n))))
        parts.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(parts))


class ShardedRows:
    """Row-wise concatenation of 2-D shards (memory-mapped ``.npy`` files from ``causalrm embed --shard-rows``),
    never concatenated in memory.

    ``shape``, ``dtype``, ``ndim`` and ``len`` are those of the concatenated matrix. ``X[idx]`` (an integer array or
    a boolean mask) gathers those rows across shards into a new float32 array: each shard is read in ascending row
    order (sequential page access) and the rows put back in the order asked for. ``X[i]`` is one row, ``X[a:b]`` the
    rows ``a:b`` (a view of the shard when they lie in one shard, else a gathered copy). :meth:`iter_chunks` passes
    over the rows chunk by chunk. ``np.asarray(X)`` concatenates every shard: what large-matrix code must avoid
    (:func:`is_lazy` is true for this type, so the fitting code wraps it in a :class:`RowView` instead).
    """

    ndim = 2

    def __init__(self, shards: Any) -> None:
        self.shards = list(shards)
        if not self.shards:
            raise InputError("a sharded embedding matrix needs at least one shard")
        for s in self.shards:
            if np.ndim(s) != 2:
                raise InputError(f"embedding shards must be 2-D matrices (rows, dims); got shape {np.shape(s)}")
        dims = {int(s.shape[1]) for s in self.shards}
        dtypes = {np.dtype(s.dtype) for s in self.shards}
        if len(dims) != 1 or len(dtypes) != 1:
            raise InputError(f"embedding shards differ in width or dtype: dims {sorted(dims)}, dtypes "
                             f"{sorted(map(str, dtypes))}")
        #: first row of each shard, and the row count as the last entry
        self.offsets = np.cumsum([0] + [int(s.shape[0]) for s in self.shards]).astype(np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.offsets[-1]), int(self.shards[0].shape[1]))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.shards[0].dtype)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def take(self, rows: Any) -> np.ndarray:
        """Rows ``rows`` (global positions, any order, repeats allowed) as a new C-contiguous float32 array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        rows = np.where(rows < 0, rows + n, rows)
        out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
        if rows.size == 0:
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        which = np.searchsorted(self.offsets, srt, side="right") - 1
        bounds = np.flatnonzero(np.diff(which)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, srt.size]):
            k = int(which[lo])
            out[order[lo:hi]] = self.shards[k][srt[lo:hi] - self.offsets[k]]
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            raise InputError("a sharded matrix selects rows only (X[rows]); take columns from the gathered rows")
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([int(key)]))[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1 and stop > start:
                k = int(np.searchsorted(self.offsets, start, side="right") - 1)
                if stop <= self.offsets[k + 1]:
                    return self.shards[k][start - self.offsets[k]:stop - self.offsets[k]]
            return self.take(np.arange(start, stop, step))
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise InputError(f"boolean row mask of {key.shape[0] if key.ndim else 0} rows for {len(self)} rows")
            return self.take(np.flatnonzero(key))
        return self.take(key.astype(np.int64))

    def iter_chunks(self, chunk: int = CHUNK_ROWS) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, float32 rows start:stop)`` chunk by chunk (at most ``chunk`` rows, never across shards)."""
        for k, s in enumerate(self.shards):
            base = int(self.offsets[k])
            for a in range(0, int(s.shape[0]), chunk):
                b = min(a + chunk, int(s.shape[0]))
                yield base + a, base + b, np.asarray(s[a:b], dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(s) for s in self.shards])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ShardedRows({self.shape[0]} rows x {self.shape[1]} in {len(self.shards)} shards)"
