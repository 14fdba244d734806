"""The workbench: one ``gr.Blocks`` assembled from its tabs, and its launcher.

Each tab is a module of :mod:`app.tabs` holding its layout (``build``), its handlers (one plain function per action,
also the API endpoints) and its events (``wire``): :mod:`~app.tabs.data`, :mod:`~app.tabs.propensity`,
:mod:`~app.tabs.noise`, :mod:`~app.tabs.train`, :mod:`~app.tabs.compare`, :mod:`~app.tabs.audit`. What they share
(the per-session state of :mod:`app.session`, error handling and small views) is in :mod:`app.common`.

Concurrency: every event goes through gradio's queue. Training runs in worker processes (:mod:`app.jobs`), at most
``train_concurrency`` jobs at once across all users (default 2, each under ``job_memory_gb``, default 4 GB, and
``job_time_limit_min``, default 60); the others wait in line and the Train tab shows their position. Embedding runs
in its own group (``embed``, 1) and the nuisance fits in ``nuisance`` (2), so a long run never blocks loading data
or looking at plots.

A reload keeps the session: the page stores its session's token in the tab's ``sessionStorage`` and hands it back on
load (:mod:`app.restore`).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from typing import Any

import gradio as gr
from gradio import networking as gr_networking

from app import restore, training
from app.common import SETTINGS, warm_up
from app.session import delete_state, purge_stale, tmp_root
from app.tabs import audit, compare, data, noise, propensity, train
from causalrm.errors import InputError

logger = logging.getLogger("causalrm.app")

TITLE = "CausalRM Workbench"
INTRO = """# ⚖️ CausalRM Workbench
Learn a reward model from **noisy, selection-biased user feedback** (thumbs, copies, upvotes) with CausalRM
(Wang et al., arXiv 2603.18736): a noise-corrected surrogate loss (flip rates ρ01, ρ10) combined with propensity
weighting (IPS) or a doubly robust estimator (DR). Work left to right: **Data → Propensity → Noise → Train → Compare**;
**Audit** a few hundred rows by hand to settle the flip rates and the verdict on a real log.
"""
CSS = """
.crm-note {font-size: 0.9em; color: var(--body-text-color-subdued);}
"""


def build_app(*, max_upload_mb: float | None = None, train_concurrency: int | None = None,
              max_epochs: int | None = None, job_memory_gb: float | None = None,
              job_time_limit_min: float | None = None) -> gr.Blocks:
    """Build the workbench ``gr.Blocks`` (queue configured; call :func:`launch` or ``.launch()`` on it)."""
    if max_upload_mb is not None:
        SETTINGS.max_upload_mb = float(max_upload_mb)
    if max_epochs is not None:
        SETTINGS.max_epochs = int(max_epochs)
    training.configure(max_running=train_concurrency, memory_gb=job_memory_gb, time_limit_min=job_time_limit_min)

    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600 * 6), fill_width=False) as demo:
        state = gr.State(None, delete_callback=delete_state)
        token = gr.Textbox(visible="hidden", elem_id="session-token")
        gr.Markdown(INTRO)
        with gr.Tabs(elem_id="tabs"):
            data_ui = data.build()
            propensity_ui = propensity.build()
            noise_ui = noise.build()
            train_ui = train.build()
            compare_ui = compare.build()
            audit_ui = audit.build()

        data.wire(state, data_ui, propensity=propensity_ui, noise=noise_ui, train=train_ui)
        propensity.wire(state, propensity_ui)
        noise.wire(state, noise_ui, train=train_ui)
        train.wire(state, train_ui, compare=compare_ui)
        compare.wire(state, compare_ui)
        restore.wire(demo, state, token, data=data_ui, propensity=propensity_ui, noise=noise_ui, train=train_ui,
                     compare=compare_ui)
        audit.wire(demo, state, audit_ui, noise_ui.flip_method)

    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo


def _patient_url_ok(url: str, *, wait_s: float = 60.0) -> bool:
    """``gradio.networking.url_ok`` that tolerates a slow first response.

    Gradio checks after start-up that the local URL answers, with a single 3-second HEAD that gives up on the first
    timeout and then refuses to run without ``share=True``; on a busy machine (a shared CPU, a cold Space) the first
    page render can take longer, so this check retries for up to ``wait_s`` seconds.
    """
    import httpx

    deadline = time.monotonic() + wait_s
    while True:
        try:
            status = httpx.head(url, timeout=10, verify=False).status_code
            if status in (200, 401, 301, 302, 303, 307, 308):
                return True
        except (httpx.ConnectError, httpx.TimeoutException, ConnectionError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def check_port(host: str, port: int) -> None:
    """Raise InputError naming ``--port`` when ``host:port`` cannot be listened on (another app holds it?)."""
    if not port:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise InputError(f"--host {host}: unknown host ({err.strerror}); use 127.0.0.1 or 0.0.0.0") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself does
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise InputError(f"--port {port}: {host}:{port} is already in use (is the workbench running "
                                 f"already?); stop that server or pass another --port, e.g. --port {port + 1}"
                                 ) from None
            raise InputError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); pass another "
                             "--port or --host") from None


def launch(*, host: str = "127.0.0.1", port: int = 7860, share: bool = False, max_upload_mb: float = 200,
           train_concurrency: int | None = None, job_memory_gb: float | None = None,
           job_time_limit_min: float | None = None, prevent_thread_lock: bool = False, quiet: bool = False,
           **kwargs: Any):
    """Build and launch the workbench; returns what ``Blocks.launch`` returns.

    Raises InputError (one line naming ``--port``) when the port is taken.
    """
    check_port(host, port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    removed = purge_stale()
    if removed:
        logger.info("removed %d stale session folder(s) under %s", removed, tmp_root())
    warm_up()
    gr_networking.url_ok = _patient_url_ok
    demo = build_app(max_upload_mb=max_upload_mb, train_concurrency=train_concurrency, job_memory_gb=job_memory_gb,
                     job_time_limit_min=job_time_limit_min)
    threading.Thread(target=training.pool().warm_up, name="causalrm-forkserver", daemon=True).start()
    try:
        return demo.launch(server_name=host, server_port=port, share=share, max_file_size=f"{max_upload_mb:g}mb",
                           prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False, css=CSS,
                           theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="emerald"),
                           footer_links=["api"], **kwargs)
    except OSError as err:  # taken between the check and the start
        if "port" not in str(err).lower():
            raise
        raise InputError(f"--port {port}: {host}:{port} is already in use; pass another --port, e.g. "
                         f"--port {port + 1}") from None
