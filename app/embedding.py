"""The server's side of embedding: a log embedded in a worker of the job pool (:mod:`app.training`'s pool, under the
same memory and time limits as training, with progress and Cancel), and the models a visitor may name.

A model is refused before anything loads when its weights cannot fit one job's memory: its parameter count comes
from its weight files' headers or its config (``causalrm.embeddings.models.model_parameters``), times 4 bytes (float32 on a
CPU) or 2 (a GPU's half precision, loaded through host memory), plus a worker's own memory
(``causalrm.training.backbones.lora_memory.PROCESS_BYTES``). What the estimate misses (activations of long texts) the pool's
monitor still bounds: past the limit the worker is killed and only that job fails.

On a Hugging Face Space (``SPACE_ID`` set) a visitor may name the bundled model, a model of
``CAUSALRM_APP_EMBED_MODELS`` (comma separated), or a Hugging Face id whose weights are at most
``CAUSALRM_APP_EMBED_MAX_MB`` megabytes (default 500); never a folder of the server.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.jobs import GB
from app.session import Session
from causalrm.data.schema import DEFAULT_EMBEDDER
from causalrm.errors import InputError


@dataclasses.dataclass
class EmbedPolicy:
    """The models a visitor may name on a Space (``on_space``: ``SPACE_ID`` set): ``allow`` by name, or any Hugging
    Face id with at most ``max_mb`` megabytes of weights."""

    on_space: bool = bool(os.environ.get("SPACE_ID"))
    allow: tuple[str, ...] = tuple(m.strip() for m in os.environ.get("CAUSALRM_APP_EMBED_MODELS", "").split(",")
                                   if m.strip())
    max_mb: float = float(os.environ.get("CAUSALRM_APP_EMBED_MAX_MB", 500))


POLICY = EmbedPolicy()


def check_model(model: str, device: str) -> str:
    """``model`` (stripped; empty = the bundled default) once this server may embed with it; else InputError naming
    what is allowed. Reads the model's config and weight headers only."""
    from app.training import SETTINGS
    from causalrm.devices import resolve_device
    from causalrm.embeddings.models import model_parameters, resolve_model
    from causalrm.embeddings.models import DEFAULT_MODEL
    from causalrm.training.backbones.lora_memory import PROCESS_BYTES

    name = (model or DEFAULT_EMBEDDER).strip()
    if name in (DEFAULT_EMBEDDER, DEFAULT_MODEL) or name in POLICY.allow:
        allowed_by_name = True
    elif POLICY.on_space and (Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))):
        raise InputError(f"embedding model {name!r}: on this Space name a Hugging Face model id, not a folder")
    else:
        allowed_by_name = False
    spec = resolve_model(name)
    params = model_parameters(spec)
    width = 2 if resolve_device(device).type == "cuda" else 4
    if POLICY.on_space and not allowed_by_name and params * width > POLICY.max_mb * 2**20:
        allowed = ", ".join([DEFAULT_EMBEDDER, *POLICY.allow])
        raise InputError(f"embedding model {name!r}: {params / 1e6:,.0f}M parameters ({params * width / 2**20:,.0f} "
                         f"MB) are over this Space's {POLICY.max_mb:g} MB per model (CAUSALRM_APP_EMBED_MAX_MB); "
                         f"name a smaller model, e.g. {allowed}")
    need = PROCESS_BYTES + params * width
    limit = SETTINGS.memory_gb * GB
    if need > limit:
        raise InputError(f"embedding model {name!r}: {params / 1e6:,.0f}M parameters need about {need / GB:.1f} GB, "
                         f"over this server's {SETTINGS.memory_gb:g} GB per job (--job-memory-gb); name a smaller "
                         "model, e.g. all-MiniLM-L6-v2")
    return name


def embed_in_worker(session: Session, model: str, device: str = "auto",
                    progress: Callable[..., Any] | None = None) -> bool:
    """Embed the session's log with ``model`` in a worker of the job pool, reporting ``progress`` (``gr.Progress``);
    on success set ``session.X`` / ``session.embed_model`` and return True; False when cancelled.

    Raises InputError for a model this server refuses, a failed job (its one-line message) or a log that changed
    while embedding."""
    from app import embed_worker
    from app.training import pool

    name = check_model(model, device)
    stage = session.stage
    out = session.folder("embeddings") / f"X-{stage}.npy"
    job = pool().submit(session.session_hash[:8], embed_worker.embed, what="embedding", log=session.log, model=name,
                        device=device, cache_dir=str(session.folder("cache")), out=str(out))
    session.embedding = job
    seen = 0
    while not job.finished:
        for kind, a, b in job.wait(seen, timeout=0.5):
            seen += 1
            if progress is None:
                continue
            if kind == "progress":
                progress((a, max(b, 1)), desc="embedding", unit="rows")
            elif kind == "stage":
                progress(0, desc=a)
        if progress is not None and job.state == "queued":
            progress(0, desc=f"waiting for a worker: position {job.position} in line")
    if job.state == "failed":
        raise InputError(job.error)
    if job.state == "cancelled":
        out.unlink(missing_ok=True)
        return False
    if session.stage != stage:
        raise InputError("the data changed while embedding; embed the new log")
    done = next(m for m in job.messages if m[0] == "done")
    X = np.load(out, allow_pickle=False)
    out.unlink(missing_ok=True)
    if X.shape[0] != session.log.height:
        raise InputError(f"the embedding job returned {X.shape[0]:,} rows for {session.log.height:,}; embed again")
    session.X, session.embed_model = X, done[1]
    return True


def cancel_embedding(session: Session | None) -> bool:
    """Stop the session's embedding job, if one runs; True when there was one."""
    job = getattr(session, "embedding", None)
    if job is None or job.finished:
        return False
    job.cancel()
    return True
