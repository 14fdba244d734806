"""Per-session state, per-session temporary folders, and sessions that survive a page reload.

Every browser tab (or ``gradio_client.Client``) gets its own :class:`Session`, held in a ``gr.State``: one user's log,
embeddings, fitted models and run folders are never visible to another. Files a session writes (uploads it converts,
run folders, downloads) live in its own folder under :func:`tmp_root`.

A reload starts a new gradio session (a new ``gr.State``); the page keeps its session's secret :attr:`Session.token`
in the tab's ``sessionStorage`` and hands it back on load, and :func:`reattach` returns the same session (data,
nuisances, trained models, a running training job). A session no page shows (the tab closed or reloaded,
``Blocks.unload`` -> :func:`detach_page`) stays restorable for :data:`RESTORE_S` seconds, then is closed: its
training job cancelled and its folder removed. Gradio dropping a page's state (``gr.State(delete_callback=...)``,
an hour after the page left) closes the session too unless another page shows it, and folders a crashed server left
behind are removed at start-up once they are older than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("causalrm.app")

STALE_AFTER_S = 24 * 3600
RESTORE_S = float(os.environ.get("CAUSALRM_APP_RESTORE_MIN", 30)) * 60
_LOCK = threading.Lock()
_SESSIONS: dict[str, Session] = {}  # token -> open session


def tmp_root() -> Path:
    """Folder holding every session's folder: ``$CAUSALRM_APP_TMPDIR`` or ``<system temp>/causalrm-app``."""
    root = Path(os.environ.get("CAUSALRM_APP_TMPDIR") or Path(tempfile.gettempdir()) / "causalrm-app")
    root.mkdir(parents=True, exist_ok=True)
    return root


def purge_stale(max_age_s: float = STALE_AFTER_S) -> int:
    """Remove session folders under :func:`tmp_root` not modified for ``max_age_s`` seconds; return how many."""
    now = time.time()
    removed = 0
    for path in tmp_root().glob("s-*"):
        try:
            if path.is_dir() and now - path.stat().st_mtime > max_age_s:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


@dataclass
class Session:
    """Everything one user has loaded and fitted. Attributes are filled in as the tabs are used.

    ``source`` records how the log was obtained (for the equivalent CLI command); ``stage`` counts data loads so
    that results of an older log are never mixed with a newer one; ``stale_steps`` names the tabs whose results the
    last load discarded (they ask to be run again).
    """

    session_hash: str
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    pages: set[str] = field(default_factory=set)  # gradio session hashes of the pages showing this session
    detached_at: float | None = None  # time.monotonic() when the last page left
    training: Any = None  # app.training.TrainingRun of the latest training job
    embedding: Any = None  # app.jobs.Job of the latest embedding job (app.embedding)
    log: Any = None  # pl.DataFrame in the causalrm.data.schema
    source: dict[str, Any] = field(default_factory=dict)
    summary: Any = None  # causalrm.data.validate.LogSummary
    X: Any = None  # np.ndarray (n, d) float32, rows aligned with log
    embed_model: str | None = None
    propensity: Any = None  # causalrm.nuisances.propensity.PropensityModel (fitted)
    propensity_settings: dict[str, Any] = field(default_factory=dict)
    flip: Any = None  # causalrm.nuisances.container.Nuisances of the anchor estimate (gold cross-check in its diagnostics)
    rho: tuple[float, float] | None = None  # (rho01, rho10) used for training
    rho_origin: str = ""
    noise_settings: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # method -> causalrm.workflows.pipeline.FitResult
    run_dirs: dict[str, Path] = field(default_factory=dict)  # method -> run folder
    train_settings: dict[str, Any] = field(default_factory=dict)
    audit: Any = None  # app.tabs.audit.AuditState of the Audit tab
    stage: int = 0
    stale_steps: frozenset[str] = frozenset()

    # ------------------------------------------------------------------------------------------------------------
    def folder(self, *parts: str) -> Path:
        """A folder inside this session's workdir (created, and the workdir recreated if it was cleaned)."""
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        os.utime(self.workdir)
        return path

    def reset_data(self) -> None:
        """Forget everything derived from the previous log (called when a new log is loaded)."""
        ran = {"propensity": self.propensity is not None, "noise": self.flip is not None,
               "train": bool(self.results) or self.training is not None}
        self.stale_steps = frozenset(step for step, done in ran.items() if done)
        if self.embedding is not None:
            self.embedding.cancel()  # it embeds the previous log
        self.log = self.summary = self.X = self.embed_model = self.audit = None
        self.source = {}
        self.reset_models()
        self.stage += 1

    def reset_models(self) -> None:
        """Forget the nuisances and trained models (kept data and embeddings)."""
        self.propensity = self.flip = self.rho = None
        self.rho_origin = ""
        self.propensity_settings = {}
        self.noise_settings = {}
        self.results = {}
        self.run_dirs = {}
        self.train_settings = {}
        if self.workdir.exists():
            shutil.rmtree(self.workdir / "runs", ignore_errors=True)
            shutil.rmtree(self.workdir / "downloads", ignore_errors=True)

    def close(self) -> None:
        """Cancel this session's training and embedding jobs and delete its folder (it can no longer be restored)."""
        with _LOCK:
            _SESSIONS.pop(self.token, None)
        if self.training is not None:
            self.training.job.cancel()
        if self.embedding is not None:
            self.embedding.cancel()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _register(session: Session) -> Session:
    with _LOCK:
        _SESSIONS[session.token] = session
    return session


def new_session(session_hash: str | None = None) -> Session:
    """The session page ``session_hash`` shows: the open one already bound to it, else a new one with a fresh
    private folder ``<tmp_root>/s-<random>``.

    A page's first events race: the page-load restore and a click made before it answered both arrive without a
    ``gr.State``; binding by page makes them share one session (and so one token), where two sessions would leave
    the page storing the token of the one without the data.
    """
    with _LOCK:
        if session_hash:
            for session in _SESSIONS.values():
                if session_hash in session.pages and session.workdir.exists():
                    return session
        session_hash = session_hash or f"local-{uuid.uuid4().hex[:12]}"
        workdir = Path(tempfile.mkdtemp(prefix="s-", dir=tmp_root()))
        session = Session(session_hash=session_hash, workdir=workdir, pages={session_hash})
        _SESSIONS[session.token] = session
        return session


def ensure_session(state: Session | None, request: Any = None) -> Session:
    """Return ``state`` if it is a session (its folder recreated if it was cleaned), else a new one bound to the
    request's ``session_hash``."""
    if isinstance(state, Session):
        if not state.workdir.exists():
            state.workdir.mkdir(parents=True, exist_ok=True)
            _register(state)
        return state
    return new_session(getattr(request, "session_hash", None))


def reattach(token: str | None, session_hash: str) -> Session | None:
    """The open session holding ``token``, now shown by page ``session_hash`` (a reload); None if there is none."""
    with _LOCK:
        session = _SESSIONS.get(token or "")
        if session is None or not session.workdir.exists():
            return None
        session.pages.add(session_hash)
        session.session_hash, session.detached_at = session_hash, None
    logger.info("session %s restored after a reload", session_hash[:8])
    return session


def detach_page(session_hash: str | None) -> None:
    """``Blocks.unload``: page ``session_hash`` closed or reloaded. Its session stays restorable for
    :data:`RESTORE_S` seconds; sessions detached for longer are closed now."""
    now = time.monotonic()
    with _LOCK:
        for session in _SESSIONS.values():
            if session_hash in session.pages:
                session.pages.discard(session_hash)
                if not session.pages:
                    session.detached_at = now
        expired = [s for s in _SESSIONS.values() if s.detached_at is not None and now - s.detached_at > RESTORE_S]
    for session in expired:
        session.close()
    if expired:
        logger.info("closed %d session(s) no page had shown for %.0f min", len(expired), RESTORE_S / 60)


def delete_state(state: Any) -> None:
    """``gr.State(delete_callback=...)``: gradio forgets a page's state; close its session unless a page shows it."""
    if isinstance(state, Session) and not state.pages:
        state.close()


def open_sessions() -> list[Session]:
    """The sessions that can still be used or restored (tests, diagnostics)."""
    with _LOCK:
        return list(_SESSIONS.values())
