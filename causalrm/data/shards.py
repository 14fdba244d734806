"""Sharded embeddings: fixed-size ``.npy`` shards plus a small JSON index (``causalrm embed LOG OUT --shard-rows N``).

Layout of the output folder ``OUT/``::

    OUT/index.json          {"format": "causalrm-embedding-shards", "version": 1, "shape": [n, d], "dtype": "float32",
                             "model": ..., "cache_key": ..., "shard_rows": N, "response_ids_sha256": ... | null,
                             "shards": [{"path": "shard-00000.npy", "start": 0, "stop": N}, ...]}
    OUT/shard-00000.npy     rows 0:N (float32, ``np.save``, no pickle)
    OUT/shard-00001.npy     rows N:2N ... (the last one holds the remainder)

Every file is written atomically (``causalrm.atomic_io.atomic_path``) and the index last, so a reader never sees an
index that names a shard not yet written. Under ``accelerate launch`` each rank embeds and writes a contiguous block
of whole shards (:func:`rank_shards`): no rank ever holds the full matrix, and rank 0 writes the index after a barrier.

:func:`read_sharded` maps every shard (``np.load(mmap_mode="r")``) and returns a :class:`causalrm.data.rowmatrix.ShardedRows`
over them: minibatches gather their rows by index across shards, the matrix is never concatenated.
``read_embeddings`` (and ``causalrm fit/score/audit --embeddings``) accept the folder or its ``index.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from causalrm.errors import InputError

FORMAT = "causalrm-embedding-shards"
VERSION = 1
INDEX_NAME = "index.json"
#: default rows per shard when OUT is a folder and --shard-rows is not given (131072 x 384 float32 = 192 MiB)
DEFAULT_SHARD_ROWS = 131072
_SHARD_RE = re.compile(r"^shard-\d{5,}\.npy$")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.npy"


def plan(n: int, shard_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each shard: ``shard_rows`` rows each, the last one the remainder (one empty shard for 0)."""
    if shard_rows < 1:
        raise InputError(f"--shard-rows must be >= 1, got {shard_rows}")
    if n == 0:
        return [(0, 0)]
    return [(a, min(a + shard_rows, n)) for a in range(0, n, shard_rows)]


def rank_shards(n_shards: int, world: int, rank: int) -> range:
    """The contiguous block of shard numbers rank ``rank`` of ``world`` writes (sizes differ by at most one)."""
    base, extra = divmod(n_shards, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def ids_sha256(response_ids: list[str] | None) -> str | None:
    """SHA-256 of the response ids in row order (JSON list), or None without ids."""
    if response_ids is None:
        return None
    return hashlib.sha256(json.dumps(list(map(str, response_ids)), ensure_ascii=False).encode("utf-8")).hexdigest()


def write_shard(folder: Path, k: int, X: np.ndarray) -> Path:
    """Shard ``k`` (float32) as ``folder/shard-0000k.npy``, atomically."""
    from causalrm.atomic_io import atomic_path

    path = Path(folder) / shard_name(k)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(X, dtype=np.float32), allow_pickle=False)
    return path


def write_index(folder: Path, *, ranges: list[tuple[int, int]], dim: int, shard_rows: int, model: str | None,
                cache_key: str | None, response_ids: list[str] | None) -> Path:
    """``folder/index.json`` for shards ``ranges`` (checked: each shard exists with its row count and width), then
    removes shard files of an earlier, larger layout that the new index does not name."""
    from causalrm.atomic_io import write_json_atomic

    folder = Path(folder)
    shards = []
    for k, (a, b) in enumerate(ranges):
        path = folder / shard_name(k)
        try:
            arr = np.load(path, mmap_mode="r" if b > a else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: shard missing or unreadable ({err})") from None
        if arr.shape != (b - a, dim) or arr.dtype != np.float32:
            raise InputError(f"{path}: shard is {arr.shape} {arr.dtype}, expected ({b - a}, {dim}) float32")
        shards.append({"path": path.name, "start": int(a), "stop": int(b)})
    index = {"format": FORMAT, "version": VERSION, "shape": [int(ranges[-1][1]), int(dim)], "dtype": "float32",
             "model": model, "cache_key": cache_key, "shard_rows": int(shard_rows),
             "response_ids_sha256": ids_sha256(response_ids), "shards": shards}
    out = folder / INDEX_NAME
    write_json_atomic(index, out)
    named = {s["path"] for s in shards}
    for f in folder.iterdir():
        if _SHARD_RE.match(f.name) and f.name not in named:
            f.unlink(missing_ok=True)
    return out


def index_path(path: str | os.PathLike) -> Path | None:
    """The index of a sharded output given its folder or its ``index.json``; None for other paths."""
    path = Path(path)
    if path.is_dir():
        return path / INDEX_NAME
    if path.suffix.lower() == ".json":
        return path
    return None


def read_index(path: str | os.PathLike) -> dict[str, Any]:
    ipath = index_path(path)
    if ipath is None or not ipath.is_file():
        raise InputError(f"{path}: no {INDEX_NAME}; write sharded embeddings with `causalrm embed LOG OUT "
                         "--shard-rows N`")
    try:
        index = json.loads(ipath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{ipath}: cannot read the shard index ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise InputError(f"{ipath}: not a causalrm embedding-shard index (format {FORMAT!r})")
    if int(index.get("version", 0)) > VERSION:
        raise InputError(f"{ipath}: shard index version {index.get('version')} is newer than this causalrm reads "
                         f"({VERSION}); upgrade causalrm")
    return index


def read_sharded(path: str | os.PathLike, *, mmap: bool = True) -> tuple[Any, dict[str, Any]]:
    """``(X, index)``: ``X`` a :class:`~causalrm.data.rowmatrix.ShardedRows` over the memory-mapped shards (one shard: its
    memmap itself; ``mmap=False``: one in-memory array), ``index`` the parsed ``index.json``."""
    from causalrm.data.rowmatrix import ShardedRows

    ipath = index_path(path)
    index = read_index(path)
    folder = ipath.parent
    n, d = (int(v) for v in index["shape"])
    arrays = []
    expect = 0
    for s in index["shards"]:
        shard = folder / s["path"]
        if Path(s["path"]).name != s["path"]:
            raise InputError(f"{ipath}: shard path {s['path']!r} must be a file name in the index's folder")
        if int(s["start"]) != expect:
            raise InputError(f"{ipath}: shard {s['path']} starts at row {s['start']}, expected {expect}")
        try:
            rows = int(s["stop"]) - int(s["start"])
            arr = np.load(shard, mmap_mode="r" if mmap and rows > 0 else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"{shard}: cannot read the embedding shard ({type(err).__name__}: {err}); re-run "
                             "`causalrm embed`") from None
        rows = int(s["stop"]) - int(s["start"])
        if arr.ndim != 2 or arr.shape != (rows, d) or arr.dtype != np.float32:
            raise InputError(f"{shard}: shard is {arr.shape} {arr.dtype}, the index says ({rows}, {d}) float32; "
                             "re-run `causalrm embed`")
        arrays.append(arr)
        expect = int(s["stop"])
    if expect != n or not arrays:
        raise InputError(f"{ipath}: shards cover {expect} rows, the index says {n}")
    if not mmap:
        return np.concatenate(arrays), index
    return (arrays[0] if len(arrays) == 1 else ShardedRows(arrays)), index
