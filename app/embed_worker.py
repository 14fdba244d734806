"""What an embedding job runs in its worker process (:mod:`app.jobs`): ``causalrm.embeddings.embedder.embed_log`` with the
model the user named, under the pool's memory and time limits, so that a model too large for the server ends that job
only. The vectors go to a ``.npy`` file in the session's folder (written atomically) that the server reads back.

Messages to the server (``emit(kind, name, payload)``): ``("stage", text)``, ``("progress", rows done, rows)`` after
the cache lookup and after each batch, and ``("done", model_id, {"path", "stats"})``.

The core modules are imported at module level so that the fork server loads them once (``JobPool(preload=...)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
from transformers import AutoModel, AutoTokenizer  # noqa: F401 - imported once, in the fork server

from causalrm.atomic_io import atomic_path
from causalrm.embeddings.embedder import Embedder, embed_log


class _Stopped(Exception):
    """Cancel asked for between two batches."""


def embed(emit: Callable[..., None], should_stop: Callable[[], bool], *, log: pl.DataFrame, model: str, device: str,
          cache_dir: str, out: str) -> None:
    """Embed every row of ``log`` with ``model`` on ``device`` (cached texts from ``cache_dir`` and the shipped
    cache) and write the float32 ``(n, d)`` array to ``out``; stops between batches once ``should_stop()``."""

    def on_progress(done: int, total: int) -> None:
        emit("progress", done, total)
        if should_stop():
            raise _Stopped

    emit("stage", "loading the model")
    embedder = Embedder(model=model, device=device, progress=False, progress_callback=on_progress,
                        cache_dir=cache_dir)
    try:
        X = embed_log(log, embedder)
    except _Stopped:
        emit("stage", "stopped")
        return
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(X, dtype=np.float32))
    emit("done", embedder.model_id, {"path": out, "stats": embedder.last_stats})
