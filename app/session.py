"""Per-session state and per-session temporary folders.

Every browser tab (or ``gradio_client.Client``) gets its own :class:`Session`, held in a ``gr.State``: one user's log,
embeddings, fitted models and run folders are never visible to another. Files a session writes (uploads it converts,
run folders, downloads) live in its own folder under :func:`tmp_root`; the folder is removed when the tab closes
(``Blocks.unload``), when gradio drops the state (``gr.State(delete_callback=...)``), and, for folders a crashed server
left behind, at start-up once they are older than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import logging
import os
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
_LOCK = threading.Lock()
_FOLDERS: dict[str, set[Path]] = {}  # session_hash -> folders created for it
_CANCEL: dict[str, threading.Event] = {}  # session_hash -> "stop training" flag


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
    that results of an older log are never mixed with a newer one.
    """

    session_hash: str
    workdir: Path
    log: Any = None  # pl.DataFrame in the causalrm.schema
    source: dict[str, Any] = field(default_factory=dict)
    summary: Any = None  # causalrm.validate.LogSummary
    X: Any = None  # np.ndarray (n, d) float32, rows aligned with log
    embed_model: str | None = None
    propensity: Any = None  # causalrm.propensity.PropensityModel (fitted)
    propensity_settings: dict[str, Any] = field(default_factory=dict)
    flip: Any = None  # causalrm.pipeline.Nuisances of the anchor estimate (gold cross-check in its diagnostics)
    rho: tuple[float, float] | None = None  # (rho01, rho10) used for training
    rho_origin: str = ""
    noise_settings: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # method -> causalrm.pipeline.FitResult
    run_dirs: dict[str, Path] = field(default_factory=dict)  # method -> run folder
    train_settings: dict[str, Any] = field(default_factory=dict)
    audit: Any = None  # app.audit_tab.AuditState of the Audit tab
    stage: int = 0

    # ------------------------------------------------------------------------------------------------------------
    def folder(self, *parts: str) -> Path:
        """A folder inside this session's workdir (created, and the workdir recreated if it was cleaned)."""
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        os.utime(self.workdir)
        return path

    def reset_data(self) -> None:
        """Forget everything derived from the previous log (called when a new log is loaded)."""
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
        """Delete this session's folder."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        with _LOCK:
            folders = _FOLDERS.get(self.session_hash)
            if folders is not None:
                folders.discard(self.workdir)
                if not folders:
                    _FOLDERS.pop(self.session_hash, None)
                    _CANCEL.pop(self.session_hash, None)


def new_session(session_hash: str | None = None) -> Session:
    """Create a session with a fresh private folder ``<tmp_root>/s-<random>``."""
    session_hash = session_hash or f"local-{uuid.uuid4().hex[:12]}"
    workdir = Path(tempfile.mkdtemp(prefix="s-", dir=tmp_root()))
    with _LOCK:
        _FOLDERS.setdefault(session_hash, set()).add(workdir)
    return Session(session_hash=session_hash, workdir=workdir)


def ensure_session(state: Session | None, request: Any = None) -> Session:
    """Return ``state`` if it is a session, else a new one bound to the request's ``session_hash``."""
    if isinstance(state, Session):
        if not state.workdir.exists():
            state.workdir.mkdir(parents=True, exist_ok=True)
            with _LOCK:
                _FOLDERS.setdefault(state.session_hash, set()).add(state.workdir)
        return state
    return new_session(getattr(request, "session_hash", None))


def delete_state(state: Any) -> None:
    """``gr.State(delete_callback=...)``: remove the folder of a session gradio forgets."""
    if isinstance(state, Session):
        state.close()


def close_session_hash(session_hash: str | None) -> None:
    """Remove every folder created for ``session_hash`` (``Blocks.unload``); set its cancel flag."""
    if not session_hash:
        return
    with _LOCK:
        folders = _FOLDERS.pop(session_hash, set())
        flag = _CANCEL.pop(session_hash, None)
    if flag is not None:
        flag.set()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    if folders:
        logger.info("session %s closed: removed %d folder(s)", session_hash[:8], len(folders))


def cancel_flag(session_hash: str) -> threading.Event:
    """The "stop training" flag of a session (created cleared)."""
    with _LOCK:
        return _CANCEL.setdefault(session_hash, threading.Event())


def live_folders() -> dict[str, set[Path]]:
    """A copy of the session -> folders registry (tests, diagnostics)."""
    with _LOCK:
        return {key: set(value) for key, value in _FOLDERS.items()}
