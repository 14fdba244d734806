"""Reading embedding files: ``.safetensors`` / ``.npy`` matrices (memory-mapped when float32) and sharded
embeddings (``causalrm embed LOG OUT --shard-rows N``), checked against a log's rows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from causalrm.data import schema
from causalrm.errors import InputError

__all__ = ["read_embeddings"]


def _safetensors_memmap(path: Path, name: str = "embeddings") -> np.ndarray | None:
    """Tensor ``name`` of a safetensors file as a read-only ``np.memmap`` (float32, little-endian), else None.

    The format is an 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets of each tensor
    after the header), then the raw bytes: a float32 tensor maps in place."""
    with open(path, "rb") as fh:
        (size,) = np.frombuffer(fh.read(8), dtype="<u8")
        header = json.loads(fh.read(int(size)))
    info = header.get(name)
    if not info or info.get("dtype") != "F32" or len(info.get("shape", ())) != 2:
        return None
    start, stop = info["data_offsets"]
    shape = tuple(int(s) for s in info["shape"])
    if stop - start != 4 * shape[0] * shape[1]:
        return None
    if shape[0] == 0 or shape[1] == 0:
        return None
    return np.memmap(path, dtype="<f4", mode="r", offset=8 + int(size) + int(start), shape=shape)


def read_embeddings(path: str | os.PathLike, log: Any = None, *, mmap: bool = True) -> tuple[np.ndarray, str | None]:
    """``(X, model id or None)`` from a ``.safetensors`` (tensor ``embeddings``) or ``.npy`` file, or from sharded
    embeddings (``causalrm embed LOG OUT --shard-rows N``: the folder ``OUT`` or ``OUT/index.json``), returned as a
    ``causalrm.data.rowmatrix.ShardedRows`` over the memory-mapped shards (``causalrm.data.shards``).

    With ``log``: the row count must match and, when the file records ``response_ids``, so must their order.
    ``mmap`` (default): a float32 matrix is memory-mapped read-only (``np.load(mmap_mode="r")``, or an ``np.memmap``
    at the safetensors tensor's offset), never read whole into memory; rows are gathered by index downstream
    (``causalrm.data.rowmatrix``). Other dtypes (float16, float64) are read and converted to float32 in memory.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".json":
        return _read_sharded_embeddings(path, log, mmap=mmap)
    if not path.is_file():
        raise InputError(f"{path}: embeddings file not found; create it with `causalrm embed LOG --out {path.name}`")
    model = None
    ids = None
    try:
        if path.suffix.lower() == ".npy":
            X = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
            if mmap and X.dtype != np.float32:
                X = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as fh:
                meta = fh.metadata() or {}
                if "embeddings" not in fh.keys():
                    raise InputError(f"{path}: no tensor 'embeddings'; write it with `causalrm embed`")
                X = _safetensors_memmap(path) if mmap else None
                if X is None:
                    X = fh.get_tensor("embeddings")
            model = meta.get("model")
            if meta.get("response_ids"):
                ids = json.loads(meta["response_ids"])
        else:
            raise InputError(f"{path}: unsupported embeddings file {path.suffix!r}; use .safetensors or .npy")
    except InputError:
        raise
    except Exception as err:  # corrupt file
        raise InputError(f"{path}: cannot read embeddings ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not (isinstance(X, np.memmap) and X.dtype == np.float32):
        X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise InputError(f"{path}: embeddings must be a 2-D matrix, got shape {X.shape}")
    if log is not None:
        if X.shape[0] != log.height:
            raise InputError(f"{path}: {X.shape[0]} embedding rows but the log has {log.height}; embed this log")
        if ids is not None and schema.RESPONSE_ID in log.columns and log[schema.RESPONSE_ID].cast(str).to_list() != ids:
            raise InputError(f"{path}: response_ids differ from the log's (other log or order); embed this log")
    return X, model


def _read_sharded_embeddings(path: Path, log: Any, *, mmap: bool) -> tuple[Any, str | None]:
    """``read_embeddings`` for a shard folder / ``index.json`` (``causalrm.data.shards``)."""
    from causalrm.data import shards

    X, index = shards.read_sharded(path, mmap=mmap)
    if log is not None:
        if X.shape[0] != log.height:
            raise InputError(f"{path}: {X.shape[0]} embedding rows but the log has {log.height}; embed this log")
        want = index.get("response_ids_sha256")
        if want and schema.RESPONSE_ID in log.columns and \
                shards.ids_sha256(log[schema.RESPONSE_ID].cast(str).to_list()) != want:
            raise InputError(f"{path}: response_ids differ from the log's (other log or order); embed this log")
    return X, index.get("model")
