"""The on-disk embedding cache: text digests, cache locations and :class:`EmbeddingCache`.

Cache
-----
A cache *namespace* is one model + representation setting (pooling, max length, text format, normalisation).
Inside it, a row is identified by the SHA-256 of ``json.dumps([prompt, response], ensure_ascii=False)`` (UTF-8), so
any log that reuses the same texts (every simulated log built from a bundled dataset) hits the cache. A decoder row
with a chat ``context`` hashes ``[prompt, response, context]`` instead, so its vector is cached apart. Layout::

    <root>/<model-slug>-<hash10>/meta.json               # model id, key, dim, settings
    <root>/<model-slug>-<hash10>/<name>.safetensors      # tensors digest uint8 (n, 32), embedding float16/32 (n, d)

Roots consulted, in order: the repository's read-only ``data/embeddings/`` (shipped embeddings of the bundled
datasets for the default model; also ``$CAUSALRM_DATA_DIR/embeddings`` when that variable is set), then the user
cache ``$CAUSALRM_CACHE/embeddings`` (default ``~/.cache/causalrm/embeddings``), which receives new rows. Writes are
atomic (temporary file + ``os.replace``); nothing is pickled. The compute dtype (fp32 / bf16 / fp16) is *not* part
of the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from causalrm.atomic_io import atomic_path
from causalrm.errors import InputError

__all__ = ["CACHE_ENV", "CACHE_FORMAT", "SHIPPED_DIR", "EmbeddingCache", "default_cache_dir", "text_digests"]

CACHE_ENV = "CAUSALRM_CACHE"
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "embeddings"
CACHE_FORMAT = "causalrm-embeddings-cache/1"
_COMPACT_SHARDS = 32  # the user cache merges a namespace's shards once it holds more than this many


def text_digests(prompts: Sequence[str], responses: Sequence[str],
                 contexts: Sequence[str | None] | None = None) -> np.ndarray:
    """SHA-256 of ``json.dumps([prompt, response])`` for each row, as uint8 ``(n, 32)``.

    ``contexts`` (canonical context JSON per row, ``None``/"" for none; chat-format logs embedded through a chat
    template): a row with a context hashes ``[prompt, response, context]``, so its cached vector is kept apart from
    the same prompt and response without (or with another) context; rows without one keep their old key."""
    out = np.empty((len(prompts), 32), dtype=np.uint8)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ctx = contexts[i] if contexts is not None else None
        payload = json.dumps([p, r] if not ctx else [p, r, ctx], ensure_ascii=False).encode("utf-8")
        out[i] = np.frombuffer(hashlib.sha256(payload).digest(), dtype=np.uint8)
    return out


def default_cache_dir() -> Path:
    """``$CAUSALRM_CACHE/embeddings`` if the variable is set, else ``$XDG_CACHE_HOME/causalrm/embeddings``
    (``~/.cache/causalrm/embeddings``)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "causalrm" / "embeddings"


def _shipped_roots() -> list[Path]:
    """Read-only caches shipped with the data: ``<repo>/data/embeddings`` and ``$CAUSALRM_DATA_DIR/embeddings``."""
    roots = [SHIPPED_DIR]
    env = os.environ.get("CAUSALRM_DATA_DIR")
    if env and (Path(env) / "embeddings").resolve() != SHIPPED_DIR:
        roots.append(Path(env) / "embeddings")
    return roots


class EmbeddingCache:
    """Digest -> vector store for one namespace, backed by safetensors shards under one or more roots.

    ``roots`` are read in order (first hit wins); ``write_root`` (or None: read-only) receives new shards.
    """

    def __init__(self, namespace: str, meta: dict[str, Any], *, roots: Sequence[Path], write_root: Path | None,
                 dtype: str = "float32") -> None:
        if dtype not in ("float16", "float32"):
            raise InputError(f"cache dtype {dtype!r} is not supported; use float16 or float32")
        self.namespace = namespace
        self.meta = dict(meta)
        self.roots = [Path(r) for r in roots]
        self.write_root = Path(write_root) if write_root is not None else None
        self.dtype = np.dtype(dtype)
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._blocks: list[np.ndarray] = []

    def _dirs(self) -> list[Path]:
        dirs = [r / self.namespace for r in self.roots]
        if self.write_root is not None and self.write_root / self.namespace not in dirs:
            dirs.append(self.write_root / self.namespace)
        return dirs

    def _valid_dir(self, d: Path) -> bool:
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("format") == CACHE_FORMAT and meta.get("key") == self.meta.get("key")

    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._index is not None:
            return self._index
        from safetensors.numpy import load_file

        index: dict[bytes, tuple[int, int]] = {}
        for d in self._dirs():
            if not d.is_dir() or not self._valid_dir(d):
                continue
            for shard in sorted(d.glob("*.safetensors")):
                try:
                    tensors = load_file(str(shard))
                except (OSError, ValueError, RuntimeError):
                    continue  # removed by a concurrent compaction, or unreadable: treat its rows as misses
                digest, emb = tensors.get("digest"), tensors.get("embedding")
                if digest is None or emb is None or digest.shape[0] != emb.shape[0] or digest.shape[1:] != (32,):
                    continue
                block = len(self._blocks)
                self._blocks.append(emb)
                for row, key in enumerate(map(bytes, digest)):
                    index.setdefault(key, (block, row))
        self._index = index
        return index

    def __len__(self) -> int:
        return len(self._load())

    def lookup(self, digests: np.ndarray, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(found (n,) bool, vectors (n, d) float32)``; rows not found are zero."""
        index = self._load()
        n = digests.shape[0]
        found = np.zeros(n, dtype=bool)
        hits = [(i, index.get(bytes(digests[i]))) for i in range(n)]
        hits = [(i, loc) for i, loc in hits if loc is not None]
        if dim is None:
            dim = self._blocks[hits[0][1][0]].shape[1] if hits else int(self.meta.get("dim") or 0)
        vectors = np.zeros((n, dim), dtype=np.float32)
        for i, (block, row) in hits:
            vec = self._blocks[block][row]
            if vec.shape[0] != dim:
                continue
            vectors[i] = vec
            found[i] = True
        return found, vectors

    def add(self, digests: np.ndarray, vectors: np.ndarray, *, name: str | None = None) -> Path | None:
        """Write a new shard with the rows not already stored; returns its path (None if read-only or nothing new)."""
        if self.write_root is None or digests.shape[0] == 0:
            return None
        from safetensors.numpy import save_file

        index = self._load()
        keys = list(map(bytes, digests))
        keep = [i for i, k in enumerate(keys) if k not in index]
        keep = list({keys[i]: i for i in keep}.values())  # de-duplicate within the batch
        if not keep:
            return None
        d = self.write_root / self.namespace
        d.mkdir(parents=True, exist_ok=True)
        if not self._valid_dir(d):
            with atomic_path(d / "meta.json") as tmp:
                tmp.write_text(json.dumps({"format": CACHE_FORMAT, **self.meta}, indent=2, sort_keys=True) + "\n")
        dig = np.ascontiguousarray(digests[keep], dtype=np.uint8)
        emb = np.ascontiguousarray(vectors[keep].astype(self.dtype))
        path = d / f"{name or 'shard'}-{uuid.uuid4().hex[:12]}.safetensors"
        metadata = {"format": CACHE_FORMAT, "model": str(self.meta.get("model")), "key": str(self.meta.get("key")),
                    "rows": str(len(keep)), "dim": str(emb.shape[1]), "dtype": str(self.dtype)}
        with atomic_path(path) as tmp:
            save_file({"digest": dig, "embedding": emb}, str(tmp), metadata=metadata)
        block = len(self._blocks)
        self._blocks.append(emb)
        for row, i in enumerate(keep):
            index[keys[i]] = (block, row)
        if len(list(d.glob("*.safetensors"))) > _COMPACT_SHARDS:
            self.compact()
        return path

    def compact(self) -> None:
        """Merge the write root's shards of this namespace into one (atomic; concurrent readers treat a vanished
        shard as misses)."""
        if self.write_root is None:
            return
        from safetensors.numpy import load_file, save_file

        d = self.write_root / self.namespace
        shards = sorted(d.glob("*.safetensors"))
        if len(shards) < 2:
            return
        digests, embs, seen = [], [], set()
        for shard in shards:
            try:
                t = load_file(str(shard))
            except (OSError, ValueError, RuntimeError):
                continue
            for row, key in enumerate(map(bytes, t["digest"])):
                if key not in seen:
                    seen.add(key)
                    digests.append(t["digest"][row])
                    embs.append(t["embedding"][row].astype(self.dtype))
        if not digests:
            return
        path = d / f"merged-{uuid.uuid4().hex[:12]}.safetensors"
        metadata = {"format": CACHE_FORMAT, "model": str(self.meta.get("model")), "key": str(self.meta.get("key")),
                    "rows": str(len(digests)), "dim": str(embs[0].shape[0]), "dtype": str(self.dtype)}
        with atomic_path(path) as tmp:
            save_file({"digest": np.stack(digests), "embedding": np.stack(embs)}, str(tmp), metadata=metadata)
        for shard in shards:
            with contextlib.suppress(OSError):
                shard.unlink()
