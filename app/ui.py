"""The workbench layout (one ``gr.Blocks``, six tabs) and its launcher. Wiring only: handlers live in
:mod:`app.handlers`.

Concurrency: every event goes through gradio's queue. Training runs in worker processes (:mod:`app.jobs`), at most
``train_concurrency`` jobs at once across all users (default 2, each under ``job_memory_gb``, default 4 GB, and
``job_time_limit_min``, default 60); the others wait in line and the Train tab shows their position. Embedding runs
in its own group (``embed``, 1) and the nuisance fits in ``nuisance`` (2), so a long run never blocks loading data
or looking at plots.

A reload keeps the session: the page stores its session's token in the tab's ``sessionStorage`` and hands it back on
load (:func:`app.handlers.restore_session`).
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

from app import handlers as H
from app import audit_tab, plots, training
from app.session import delete_state, detach_page, purge_stale, tmp_root
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
# max epochs and patience the Train tab proposes per backbone (LoRA on a CPU: minutes per epoch)
EPOCHS = {"mlp": (40, 30), "lora": (3, 2)}
TOKEN_KEY = "causalrm-session"
# the tab's session token: read before the page-load handler, stored whenever the server sends one
READ_TOKEN = f"() => sessionStorage.getItem('{TOKEN_KEY}') || ''"
STORE_TOKEN = f"(token) => {{ if (token) sessionStorage.setItem('{TOKEN_KEY}', token); }}"
# after a success, error toasts of earlier attempts are out of date
CLEAR_ERRORS = "() => { document.querySelectorAll('button.toast-close.error').forEach((b) => b.click()); }"


def _on_unload(request: gr.Request) -> None:
    """The tab closed or reloaded: its session stays restorable for a while (``app.session.detach_page``)."""
    detach_page(getattr(request, "session_hash", None))


def _backbone_fields(backbone: str) -> tuple[Any, Any, Any, Any]:
    """The Train tab's fields that follow the backbone: LoRA max length, max epochs, patience, linear-head option."""
    epochs, patience = EPOCHS.get(backbone, EPOCHS["mlp"])
    lora = backbone == "lora"
    return (gr.update(visible=lora), gr.update(value=epochs), gr.update(value=patience),
            gr.update(visible=not lora, value=False))


def build_app(*, max_upload_mb: float | None = None, train_concurrency: int | None = None,
              max_epochs: int | None = None, job_memory_gb: float | None = None,
              job_time_limit_min: float | None = None) -> gr.Blocks:
    """Build the workbench ``gr.Blocks`` (queue configured; call :func:`launch` or ``.launch()`` on it)."""
    if max_upload_mb is not None:
        H.SETTINGS.max_upload_mb = float(max_upload_mb)
    if max_epochs is not None:
        H.SETTINGS.max_epochs = int(max_epochs)
    training.configure(max_running=train_concurrency, memory_gb=job_memory_gb, time_limit_min=job_time_limit_min)
    backbones = H.available_backbones()

    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600 * 6), fill_width=False) as demo:
        state = gr.State(None, delete_callback=delete_state)
        token = gr.Textbox(visible="hidden", elem_id="session-token")
        gr.Markdown(INTRO)
        with gr.Tabs(elem_id="tabs"):
            # ======================================================================================================
            with gr.Tab("1 · Data", id="data", elem_id="tab-data"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=320):
                        source = gr.Radio(["Bundled sample", "Upload a log"], value="Bundled sample",
                                          label="Data source", elem_id="data-source")
                        with gr.Group(visible=True) as sample_group:
                            sample = gr.Dropdown(list(H.SAMPLES), value=H.SAMPLE_DEMO, label="Sample",
                                                 elem_id="sample")
                            with gr.Column(visible=True) as sim_params:
                                rating = gr.Radio(list(H.RATING_MODES), value=H.DEFAULT_RATING_MODE,
                                                  label="Ratings behind the simulation",
                                                  info="teacher: a known function of the embeddings, so the "
                                                       "effect of the corrections is visible at any signal "
                                                       "strength")
                                alpha = gr.Slider(0.005, 1.0, value=H.DEMO.alpha, step=0.005, label="α (selection strength)",
                                                  info="p = α^(5 − s): smaller α = stronger bias")
                                with gr.Row():
                                    rho01 = gr.Slider(0.0, 0.45, value=0.2, step=0.01, label="ρ01 = P(r=0 | r*=1)")
                                    rho10 = gr.Slider(0.0, 0.45, value=0.1, step=0.01, label="ρ10 = P(r=1 | r*=0)")
                                with gr.Row():
                                    obs_rate = gr.Slider(0.05, 1.0, value=0.2, step=0.01, label="observation rate")
                                    seed = gr.Number(0, precision=0, minimum=0, label="seed")
                            load_sample_btn = gr.Button("Load sample", variant="primary", elem_id="load-sample")
                        with gr.Group(visible=False) as upload_group:
                            upload = gr.File(label=f"Log file (CSV, TSV, JSONL, JSON, Parquet; .gz ok; max "
                                                   f"{H.SETTINGS.max_upload_mb:g} MB)",
                                             file_types=list(H.UPLOAD_SUFFIXES), type="filepath", elem_id="upload")
                            upload_cols = gr.Markdown(elem_classes="crm-note", elem_id="upload-columns")
                            with gr.Accordion("Column mapping (when your names differ)", open=True):
                                mapping_dd = []
                                for i in range(0, len(H.MAPPABLE), 3):
                                    with gr.Row():
                                        for canonical in H.MAPPABLE[i:i + 3]:
                                            mapping_dd.append(gr.Dropdown([H.AUTO], value=H.AUTO, label=canonical,
                                                                          allow_custom_value=True, min_width=120))
                                extra_map = gr.Textbox(label="more mappings (canonical=column, comma separated)",
                                                       placeholder="user_id=uid, timestamp=ts")
                                threshold = gr.Textbox("", placeholder="e.g. 4", label="feedback threshold "
                                                       "(numeric ratings ≥ T → 1; empty = none)")
                            load_upload_btn = gr.Button("Load log", variant="primary", elem_id="load-upload")
                        with gr.Accordion("Embeddings", open=True):
                            embed_model = gr.Dropdown([H.DEFAULT_EMBEDDER], value=H.DEFAULT_EMBEDDER,
                                                      allow_custom_value=True, label="embedding model",
                                                      info="bundled MiniLM (offline), or a Hugging Face id / local "
                                                           "folder available on this server")
                            embed_device = gr.Radio(list(H.DEVICES), value="auto", label="device")
                            embed_btn = gr.Button("Compute embeddings", elem_id="embed")
                    with gr.Column(scale=3, min_width=420):
                        summary = gr.Markdown("Load a sample or upload a log to start.", elem_id="data-summary")
                        warnings_md = gr.Markdown(elem_id="data-warnings")
                        embed_status = gr.Markdown(elem_id="embed-status")
                preview = gr.Dataframe(label=f"Preview (first {H.PREVIEW_ROWS} rows)", interactive=False, wrap=False,
                                       max_height=420, elem_id="preview")

            # ======================================================================================================
            with gr.Tab("2 · Propensity", id="propensity", elem_id="tab-propensity"):
                gr.Markdown("p̂(x) = P(o = 1 | x), cross-fitted on the train + val impressions. IPS/DR weight an "
                            "observed row by 1 / max(p̂, clip).", elem_classes="crm-note")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=260):
                        prop_model = gr.Radio(list(H.PROPENSITY_MODELS), value="auto", label="propensity model",
                                              info="auto: logistic and MLP, the lower out-of-fold log loss")
                        clip = gr.Slider(0.01, 0.5, value=0.1, step=0.01, label="clipping floor",
                                         elem_id="clip")
                        prop_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                        fit_prop_btn = gr.Button("Fit propensity", variant="primary", elem_id="fit-propensity")
                        prop_status = gr.Markdown(elem_classes="crm-note", elem_id="prop-status")
                        clip_md = gr.Markdown(elem_id="clip-report")
                        prop_diag = gr.Markdown(elem_id="prop-diagnostics")
                    with gr.Column(scale=3):
                        prop_hist = gr.Plot(plots.empty("Fit the propensity model"), label="p̂ histogram",
                                            elem_id="prop-hist")
                        prop_calib = gr.Plot(plots.empty("Calibration appears here"), label="calibration",
                                             elem_id="prop-calib")

            # ======================================================================================================
            with gr.Tab("3 · Noise", id="noise", elem_id="tab-noise"):
                gr.Markdown("Flip rates by anchor points: a calibrated, out-of-fold proxy P(r = 1 | x) on observed "
                            "rows; ρ̂10 = its (1 − q) quantile, ρ̂01 = 1 − its q quantile. Gold labels, when the log "
                            "has them, give a direct estimate.", elem_classes="crm-note")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=260):
                        flip_method = gr.Radio(list(H.FLIP_METHODS)[:2], value=list(H.FLIP_METHODS)[0],
                                               label="estimate used for training")
                        quantile = gr.Slider(0.80, 1.0, value=0.97, step=0.005, label="anchor quantile q")
                        with gr.Accordion("Manual override", open=False):
                            use_manual = gr.Checkbox(False, label="use these flip rates instead")
                            rho01_m = gr.Number(0.2, minimum=0, maximum=0.49, label="ρ01")
                            rho10_m = gr.Number(0.1, minimum=0, maximum=0.49, label="ρ10")
                        noise_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                        noise_btn = gr.Button("Estimate noise", variant="primary", elem_id="estimate-noise")
                        noise_status = gr.Markdown(elem_classes="crm-note", elem_id="noise-status")
                        noise_summary = gr.Markdown(elem_id="noise-summary")
                    with gr.Column(scale=3):
                        noise_table = gr.Dataframe(label="flip-rate estimates", interactive=False,
                                                   elem_id="noise-table")
                        with gr.Row():
                            noise_heat = gr.Plot(plots.empty("Transition matrix"), label="transition matrix",
                                                 elem_id="noise-heatmap")
                            noise_sweep = gr.Plot(plots.empty("q-sweep"), label="q sweep", elem_id="noise-sweep")
                        noise_proxy = gr.Plot(plots.empty("Proxy scores"), label="proxy scores",
                                              elem_id="noise-proxy")

            # ======================================================================================================
            with gr.Tab("4 · Train", id="train", elem_id="tab-train"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=280):
                        methods = gr.CheckboxGroup(list(H.TRAIN_METHODS), value=list(H.DEFAULT_METHODS),
                                                   label="methods", elem_id="methods")
                        backbone = gr.Dropdown(backbones, value="mlp", label="backbone", elem_id="backbone",
                                               info="mlp: head on frozen embeddings" +
                                                    ("; lora: transformer + LoRA (slow on CPU)"
                                                     if "lora" in backbones else ""))
                        device = gr.Radio(list(H.DEVICES), value="auto", label="device")
                        with gr.Row():
                            epochs = gr.Number(40, precision=0, minimum=1, maximum=H.SETTINGS.max_epochs,
                                               label="max epochs", elem_id="epochs")
                            patience = gr.Number(30, precision=0, minimum=0, label="patience")
                            train_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                        select_head = gr.Checkbox(False, label="also try a linear head", elem_id="select-head",
                                                  info="mlp only: keep whichever head the method's own "
                                                       "validation estimate prefers (twice the training time)")
                        lora_length = gr.Number(training.default_lora_max_length(), precision=0, minimum=32,
                                                maximum=512, label="LoRA max length (tokens per prompt + response)",
                                                visible=False, elem_id="lora-max-length",
                                                info="micro-batches and gradient checkpointing are chosen to fit "
                                                     "the server's memory per job")
                        force_noise = gr.Checkbox(False, label="train noise-aware methods anyway",
                                                  elem_id="force-noise",
                                                  info="override the flip-rate gate (Noise tab) for denoise and "
                                                       "causalrm-*, and lets auto consider them")
                        with gr.Row():
                            train_btn = gr.Button("Train", variant="primary", elem_id="train")
                            cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                        gr.Markdown("Nuisances are fitted once with the Propensity / Noise tab settings; each method "
                                    "early-stops on its own debiased validation estimate. **auto** trains naive "
                                    "and the debiased candidates and keeps a debiased model only if it beats naive "
                                    "at every corner of the flip-rate and propensity uncertainty (or on audited "
                                    "gold rows). A model that does not beat a constant prediction is flagged "
                                    "*did not learn*.", elem_classes="crm-note")
                    with gr.Column(scale=3):
                        train_status = gr.Markdown(elem_id="train-status")
                        curves = gr.Plot(plots.loss_curves({}), label="loss curves", elem_id="loss-curves")
                        results = gr.Dataframe(label="trained models", interactive=False, elem_id="train-results")

            # ======================================================================================================
            with gr.Tab("5 · Compare", id="compare", elem_id="tab-compare"):
                with gr.Row():
                    method_a = gr.Dropdown([], label="baseline", allow_custom_value=True, elem_id="method-a")
                    method_b = gr.Dropdown([], label="debiased", allow_custom_value=True, elem_id="method-b")
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                metrics_note = gr.Markdown(elem_classes="crm-note", elem_id="metrics-note")
                metrics_table = gr.Dataframe(label="metrics vs clean labels", interactive=False, wrap=False,
                                             elem_id="metrics-table")
                with gr.Row():
                    metric_plot = gr.Plot(plots.empty("Metrics appear here"), label="R² by method",
                                          elem_id="metric-bars")
                    scatter = gr.Plot(plots.empty("Reward scatter appears here"), label="reward scatter",
                                      elem_id="reward-scatter")
                rank_summary = gr.Markdown(elem_id="rank-summary")
                movers = gr.Dataframe(label="responses whose rank moved most (rank 1 = highest reward)",
                                      interactive=False, wrap=False, max_height=380, elem_id="movers")
                prompt_pick = gr.Dropdown([], label="prompt (most disputed first)", allow_custom_value=True,
                                          elem_id="prompt-pick")
                ranking = gr.Dataframe(label="rankings side by side", interactive=False, wrap=False,
                                       elem_id="prompt-ranking")
                with gr.Row():
                    dl_csv = gr.DownloadButton("Scored log (CSV)", visible=True, interactive=False,
                                               elem_id="dl-csv")
                    dl_parquet = gr.DownloadButton("Scored log (Parquet)", interactive=False, elem_id="dl-parquet")
                    dl_zip = gr.DownloadButton("Run folders (zip)", interactive=False, elem_id="dl-zip")
                cli = gr.Code("# train a model first", language="shell", label="equivalent causalrm commands",
                              interactive=False, elem_id="cli")

            # ======================================================================================================
            audit_ui = audit_tab.build()

        # ==============================================================================================================
        # wiring
        # ==============================================================================================================
        source.change(lambda s: (gr.update(visible=s == "Bundled sample"), gr.update(visible=s != "Bundled sample")),
                      source, [sample_group, upload_group], queue=False, api_visibility="private")
        sample.change(lambda s: gr.update(visible=s in H.SIMULATED_DATASETS), sample, sim_params, queue=False,
                      api_visibility="private")

        data_out = [state, summary, warnings_md, preview, embed_status, methods, flip_method, prop_status]
        stale_targets = [noise_status, train_status]
        load_sample_btn.click(
            H.load_sample, [state, sample, rating, alpha, rho01, rho10, obs_rate, seed], data_out,
            api_name="load_sample", concurrency_id="data", concurrency_limit=4, show_progress_on=summary,
        ).success(H.stale_notes, state, stale_targets, queue=False, api_visibility="private", js=CLEAR_ERRORS)
        upload.upload(H.inspect_upload, upload, [upload_cols, *mapping_dd], api_name="inspect_upload",
                      concurrency_id="data", show_progress_on=upload_cols
                      ).success(None, js=CLEAR_ERRORS)
        upload.clear(lambda: ("", *[gr.update(choices=[H.AUTO], value=H.AUTO) for _ in H.MAPPABLE]), None,
                     [upload_cols, *mapping_dd], queue=False, api_visibility="private")
        load_upload_btn.click(
            H.load_upload, [state, upload, *mapping_dd, extra_map, threshold], data_out,
            api_name="upload", concurrency_id="data", show_progress_on=summary,
        ).success(H.stale_notes, state, stale_targets, queue=False, api_visibility="private", js=CLEAR_ERRORS)
        embed_btn.click(H.compute_embeddings, [state, embed_model, embed_device], [state, embed_status],
                        api_name="embed", concurrency_id="embed", concurrency_limit=1)

        fit_prop_btn.click(H.fit_propensity, [state, prop_model, clip, prop_seed],
                           [state, prop_diag, prop_hist, prop_calib, clip_md], api_name="fit_propensity",
                           concurrency_id="nuisance", concurrency_limit=2
                           ).success(lambda: "", None, prop_status, queue=False, api_visibility="private",
                                     js=CLEAR_ERRORS)
        clip.release(H.clip_preview, [state, clip], [state, clip_md, prop_hist], api_name="clip_report",
                     concurrency_id="light", show_progress="hidden")

        noise_btn.click(H.estimate_noise, [state, flip_method, quantile, use_manual, rho01_m, rho10_m, noise_seed],
                        [state, noise_table, noise_heat, noise_proxy, noise_sweep, noise_summary],
                        api_name="estimate_noise", concurrency_id="nuisance"
                        ).success(lambda: "", None, noise_status, queue=False, api_visibility="private",
                                  js=CLEAR_ERRORS)

        backbone.change(_backbone_fields, backbone, [lora_length, epochs, patience, select_head], queue=False,
                        api_visibility="private")
        # Jobs wait in the worker pool's line (their position shown in the status), not in gradio's queue.
        train_btn.click(
            H.train_models,
            [state, methods, backbone, device, epochs, patience, train_seed, select_head, force_noise, lora_length],
            [state, train_status, curves, results, method_a, method_b], api_name="train", concurrency_id="train",
            concurrency_limit=16, show_progress="minimal", show_progress_on=train_status,
        ).success(None, js=CLEAR_ERRORS)
        cancel_btn.click(H.cancel_training, [state], train_status, api_name="cancel", queue=False)

        compare_btn.click(
            H.compare_models, [state, method_a, method_b],
            [metrics_table, metrics_note, metric_plot, scatter, rank_summary, movers, prompt_pick, ranking, cli,
             dl_csv, dl_parquet, dl_zip], api_name="compare", concurrency_id="nuisance",
        ).success(lambda: [gr.update(interactive=True)] * 3, None, [dl_csv, dl_parquet, dl_zip], queue=False,
                  api_visibility="private")
        prompt_pick.input(H.prompt_ranking, [state, method_a, method_b, prompt_pick], ranking,
                          api_name="prompt_ranking", concurrency_id="light", show_progress="hidden")

        demo.load(None, None, token, js=READ_TOKEN).then(
            H.restore_session, [token, state],
            [state, token, summary, warnings_md, preview, embed_status, methods, flip_method, prop_status,
             noise_status, train_status, curves, results, method_a, method_b],
            api_visibility="private", concurrency_id="restore", concurrency_limit=None, show_progress="hidden")
        token.change(None, token, None, js=STORE_TOKEN)
        demo.unload(_on_unload)
        audit_tab.wire(demo, state, audit_ui, flip_method)

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
    H.warm_up()
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
