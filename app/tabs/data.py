"""Tab 1, Data: a bundled sample (simulated with chosen α, ρ01, ρ10, observation rate) or an uploaded log (column
mapping, rating threshold), its summary, warnings and preview, and the embeddings every later tab needs.

Layout: :func:`build`; events: :func:`wire`. A data load also resets the Train tab's methods and the Noise tab's
estimate choices, and marks the results of the later tabs as out of date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import gradio as gr
import polars as pl

from app.common import (
    CLEAR_ERRORS,
    DEFAULT_EMBEDDER,
    DEVICES,
    SETTINGS,
    UPLOAD_SUFFIXES,
    flip_choices,
    fmt,
    guarded,
    methods_update,
    notify,
    require,
    ui_message,
    upload_path,
    warm_up,
)
from app import pairwise
from app.session import Session, ensure_session
from app.upload import AUTO, MAPPABLE, _named_as_uploaded, build_mapping, inspect_upload, parse_threshold
from causalrm.data import schema
from causalrm.data.feedback_kinds import AUTO as AUTO_KIND
from causalrm.data.feedback_kinds import IMPLICIT, KINDS
from causalrm.data.pairwise import is_pair_log
from causalrm.errors import InputError
from causalrm.workflows.demo import DEMO

logger = logging.getLogger("causalrm.app")

SAMPLE_DEMO = "WildBench (semi-synthetic demo)"
SAMPLE_SIMULATED = "UltraFeedback (simulated)"
SAMPLE_OASST1 = "oasst1 (real feedback)"
SAMPLES = (SAMPLE_DEMO, SAMPLE_SIMULATED, SAMPLE_OASST1, *pairwise.SAMPLES)
SIMULATED_DATASETS = {SAMPLE_DEMO: "wildbench", SAMPLE_SIMULATED: "ultrafeedback"}
RATING_MODES = {"teacher (semi-synthetic, known score)": "teacher", "real GPT-4 ratings": "real"}
DEFAULT_RATING_MODE = "teacher (semi-synthetic, known score)"
FEEDBACK_KINDS = (AUTO_KIND, *KINDS)  # the Data tab's feedback-kind choices (causalrm.data.feedback_kinds)
PREVIEW_ROWS = 50
PREVIEW_CHARS = 140


class DataView(NamedTuple):
    """What every data-loading handler returns (order = the outputs in :func:`wire`)."""

    state: Session
    summary: str
    warnings: str
    preview: pl.DataFrame
    embed_status: str
    methods: Any  # gr.update for the Train tab's method checkboxes
    flip_method: Any  # gr.update for the Noise tab's method radio
    stale: str  # status line shown in the model tabs after new data


def _preview(log: pl.DataFrame) -> pl.DataFrame:
    """The first rows, short columns first and the texts cut (prompt 80, response PREVIEW_CHARS characters); an A/B
    log's both responses (``app.pairwise.preview``)."""
    if is_pair_log(log):
        return pairwise.preview(log, PREVIEW_ROWS)
    order = (schema.RESPONSE_ID, schema.FEEDBACK, schema.OBSERVED, schema.SPLIT, schema.GOLD_LABEL, schema.TRUE_LABEL,
             schema.LOGGED_PROPENSITY, schema.PROMPT, schema.RESPONSE)
    cols = [c for c in order if c in log.columns]
    head = log.head(PREVIEW_ROWS).select(cols)
    limits = {schema.PROMPT: 80, schema.RESPONSE: PREVIEW_CHARS}
    return head.with_columns([pl.col(c).str.slice(0, n).alias(c) for c, n in limits.items() if c in cols])


def _summary_md(session: Session) -> str:
    s = session.summary
    src = session.source
    if is_pair_log(session.log):
        lines = [pairwise.summary_head(session)]
    elif s.feedback_kind == IMPLICIT:
        lines = [f"**{src.get('label', 'log')}**: {s.n_rows:,} impressions, {s.n_positive:,} events "
                 f"(event rate {s.n_positive / max(s.n_rows, 1):.1%})"]
    else:
        lines = [f"**{src.get('label', 'log')}**: {s.n_rows:,} impressions, {s.n_observed:,} with feedback "
                 f"({s.observed_rate:.1%}); positive rate among observed {fmt(s.positive_rate)}"]
    lines.append("feedback kind: " + ui_message(s.describe_kind()))
    pairs = is_pair_log(session.log)  # an A/B log's own line says its train/val votes (app.pairwise)
    fitting = None if s.feedback_kind == IMPLICIT or pairs else _fitting_rows_observed(session.log)
    if fitting is not None:
        n_obs, n_rows = fitting
        lines[0] += (f". On the train/val rows, which models are fitted on, {n_obs:,} of {n_rows:,} have feedback "
                     f"({n_obs / max(n_rows, 1):.1%}); the test rows carry clean labels for evaluation")
    if s.splits:
        lines.append("splits: " + ", ".join(f"{k} {v:,}" for k, v in s.splits.items()))
    if s.chat:
        lines.append(f"chat format: {s.chat['conversations']:,} conversations, {s.chat['multi_turn']:,} multi-turn, "
                     f"{s.chat['system_prompt']:,} with a system prompt (prompt = the turns before the response)")
    extras = []
    if s.has_gold_label:
        extras.append(f"gold labels on {s.n_gold:,} rows")
    if s.has_logged_propensity:
        extras.append("logged propensities")
    if s.simulation_columns:
        extras.append("simulation columns: " + ", ".join(s.simulation_columns))
    if extras:
        lines.append("; ".join(extras))
    if src.get("kind") == "simulated":
        real = src.get("realised") or {}
        lines.append(
            f"simulated with α = {src['alpha']:g}, ρ01 = {src['rho01']:g}, ρ10 = {src['rho10']:g}, observation rate "
            f"{src['observation_rate']:g} (train/val rows), seed {src['seed']} ({src['rating']} ratings); realised "
            f"flip rates on observed train/val rows: ρ01 {fmt(real.get('rho01_hat'))}, "
            f"ρ10 {fmt(real.get('rho10_hat'))}")
    lines.append("columns: `" + "`, `".join(s.columns) + "`")
    return "\n\n".join(lines)


def _fitting_rows_observed(log: pl.DataFrame) -> tuple[int, int] | None:
    """(observed, rows) among the non-test rows when the log has a test split (whose rows are observed with clean
    labels in a simulated log, which lifts the overall rate above the observation rate); else None."""
    if schema.SPLIT not in log.columns or not (log[schema.SPLIT] == schema.TEST).any():
        return None
    fit = log.filter((pl.col(schema.SPLIT) != schema.TEST).fill_null(True))
    return int(fit[schema.OBSERVED].cast(pl.Int64).fill_null(0).sum()), fit.height


def _warnings_md(warnings: Sequence[str]) -> str:
    if not warnings:
        return "No warnings."
    return "**Warnings**\n\n" + "\n".join(f"- ⚠️ {w}" for w in warnings)


def _embed_md(session: Session) -> str:
    if session.X is None:
        if session.embedding is not None and not session.embedding.finished:
            return "Embeddings: **computing** in a worker process…"
        return ("Embeddings: **not computed**. Press *Compute embeddings* (MiniLM on CPU: about a minute per few "
                "thousand rows).")
    n, d = session.X.shape
    return f"Embeddings: **{session.embed_model}**, {n:,} × {d} ready."


def _methods_update(log: pl.DataFrame, nuisances: Any = None) -> Any:
    """The Train tab's methods for ``log`` (``nuisances``: the Noise tab's estimate; ``common.method_choices``)."""
    return methods_update(log, nuisances)


def _flip_update(log: pl.DataFrame) -> Any:
    choices = flip_choices(log)
    return gr.update(choices=choices, value=choices[0])


STALE = "New data loaded: run this step again."


def stale_note(session: Session, step: str) -> str:
    """:data:`STALE` for a tab whose results the last data load discarded, else nothing."""
    return STALE if step in session.stale_steps else ""


def stale_notes(state: Session | None) -> tuple[str, str]:
    """The Noise and Train tabs' status lines after a data load (the Propensity tab's comes with the load)."""
    if not isinstance(state, Session):
        return "", ""
    return stale_note(state, "noise"), stale_note(state, "train")


def data_view(session: Session, *, toasts: bool = True) -> DataView:
    """The Data tab's outputs for the session's log (its warnings also as toasts when ``toasts``)."""
    from causalrm.data.validate import summarize_log

    session.summary = summarize_log(session.log, source=session.source.get("label"))
    warnings = list(session.summary.warnings)
    simulated = session.source.get("kind") == "simulated"
    for w in warnings:
        if toasts and not (simulated and w.startswith("simulation-only")):  # expected when simulated: listed only
            notify(w)
    return DataView(session, _summary_md(session), _warnings_md(warnings), _preview(session.log), _embed_md(session),
                    _methods_update(session.log, session.flip), _flip_update(session.log),
                    stale_note(session, "propensity"))


def _embedder(session: Session):
    """The bundled MiniLM for a bundled sample, in the server: its texts are in the shipped cache (uploads and other
    models embed in a worker process: :mod:`app.embedding`)."""
    from causalrm.embeddings.embedder import Embedder

    warm_up()
    # A private user cache per session: one user's texts never land in a cache another session reads.
    return Embedder(model=DEFAULT_EMBEDDER, device="auto", progress=False, cache_dir=session.folder("cache"))


def _embed_sample(session: Session) -> None:
    from causalrm.embeddings.embedder import embed_log

    t0 = time.perf_counter()
    emb = _embedder(session)
    session.X = embed_log(session.log, emb)
    session.embed_model = emb.model_id
    stats = getattr(emb, "last_stats", {}) or {}
    logger.info("session %s: embedded %d rows with %s in %.1fs (%s)", session.session_hash[:8], len(session.X),
                emb.model_id, time.perf_counter() - t0, stats)


@guarded
def load_sample(state: Session | None, sample: str = SAMPLE_DEMO, rating: str = DEFAULT_RATING_MODE,
                alpha: float = DEMO.alpha, rho01: float = DEMO.rho01, rho10: float = DEMO.rho10,
                observation_rate: float = 0.2, seed: float = DEMO.seed, request: gr.Request = None,
                progress=gr.Progress()) -> DataView:
    """Load a bundled sample: a simulated log (the WildBench demo setting of ``causalrm.workflows.demo`` by default, or
    UltraFeedback; α, ρ01, ρ10, observation rate, seed), oasst1's real feedback, or an A/B sample
    (``app.pairwise.SAMPLES``: real UltraFeedback pairs, or pairs simulated from WildBench with ``seed``)."""
    session = ensure_session(state, request)
    progress(0.1, desc="loading sample")
    X = embedder = None
    if sample in pairwise.SAMPLES:
        embedder = _embedder(session)
        log, source, X = pairwise.load_sample(sample, int(seed or 0), embedder)
    elif sample == SAMPLE_OASST1:
        from causalrm.data.datasets import load_oasst1_log

        log = load_oasst1_log()
        source = {"kind": "oasst1", "label": "oasst1 (real emoji feedback)"}
    elif sample in SIMULATED_DATASETS:
        from causalrm.simulation.simulate import simulate_dataset, simulation_summary

        dataset = SIMULATED_DATASETS[sample]
        mode = RATING_MODES.get(rating, rating)
        if mode not in RATING_MODES.values():
            raise InputError(f"rating mode {rating!r}: choose one of {', '.join(RATING_MODES)}")
        if seed is None or float(seed) != int(seed) or int(seed) < 0:
            raise InputError(f"seed {seed!r}: use a non-negative whole number")
        embedder = _embedder(session) if mode == "teacher" else None
        log, config = simulate_dataset(dataset, alpha=float(alpha), rho01=float(rho01), rho10=float(rho10),
                                       observation_rate=float(observation_rate), rating=mode, seed=int(seed),
                                       embedder=embedder)
        source = {"kind": "simulated", "label": sample, "dataset": dataset,
                  "alpha": float(alpha), "rho01": float(rho01), "rho10": float(rho10),
                  "observation_rate": float(observation_rate), "seed": int(seed), "rating": mode,
                  "realised": simulation_summary(log)}
    else:
        raise InputError(f"unknown sample {sample!r}; choose one of: {', '.join(SAMPLES)}")
    session.reset_data()
    session.log, session.source = log, source
    progress(0.5, desc="embedding (shipped cache)")
    if X is None:
        _embed_sample(session)
    else:  # simulated A/B pairs: the rated responses' vectors, already computed
        session.X, session.embed_model = X, embedder.model_id
    return data_view(session)


@guarded
def load_upload(state: Session | None, file: Any, prompt_col: str = AUTO, response_col: str = AUTO,
                feedback_col: str = AUTO, observed_col: str = AUTO, gold_col: str = AUTO,
                propensity_col: str = AUTO, pair_col: str = AUTO, split_col: str = AUTO, id_col: str = AUTO,
                messages_col: str = AUTO, extra_mapping: str = "", threshold: str | float | None = "",
                feedback_kind: str = AUTO_KIND, request: gr.Request = None,
                progress=gr.Progress()) -> DataView:
    """Read an uploaded log with ``causalrm.data.io.readers.read_log`` (column mapping, rating threshold) and summarise it.

    The ``*_col`` arguments follow ``MAPPABLE`` (``messages_col``: a chat-format column of ``{role, content}``
    messages under another name; a column called ``messages`` needs no mapping). ``feedback_kind``: auto
    (detected), explicit or implicit (``causalrm.data.feedback_kinds``)."""
    from causalrm.data.io.readers import read_log

    session = ensure_session(state, request)
    path = upload_path(file)
    picks = dict(zip(MAPPABLE, (prompt_col, response_col, feedback_col, observed_col, gold_col, propensity_col,
                                pair_col, split_col, id_col, messages_col)))
    mapping = build_mapping(picks, extra_mapping)
    thr = parse_threshold(threshold)
    progress(0.2, desc="reading")
    try:
        with _named_as_uploaded(path):
            log = read_log(path, mapping=mapping or None, threshold=thr, feedback_kind=feedback_kind or AUTO_KIND)
    except InputError as err:
        if session.log is None:
            raise
        notify(f"{path.name} was not loaded: {err}")
        return _kept_view(session, path.name, str(err))
    session.reset_data()
    session.log = log
    session.source = {"kind": "upload", "label": path.name, "file": path.name, "mapping": mapping,
                      "threshold": thr, "feedback_kind": feedback_kind or AUTO_KIND}
    # embedded next, in a worker process, by the event that follows a load (embed_loaded)
    return data_view(session)


def _kept_view(session: Session, failed: str, error: str) -> DataView:
    """After a failed upload: the loaded log's summary under a heading that says it is the previous one, the error
    above it; the other outputs unchanged."""
    label = session.source.get("label", "log")
    summary = (f"### Previous log (still loaded): {label}\n\n❌ `{failed}` was not loaded: {error}\n\n"
               + _summary_md(session))
    keep = gr.update()
    return DataView(session, summary, keep, keep, keep, keep, keep, keep)


@guarded
def compute_embeddings(state: Session | None, model: str = DEFAULT_EMBEDDER, device: str = "auto",
                       request: gr.Request = None, progress=gr.Progress()) -> tuple[Session, str]:
    """Embed every row of the loaded log with ``model`` in a worker process (``app.embedding``: the training jobs'
    memory and time limits, progress, Cancel; cached texts are instant). A model whose weights cannot fit one job's
    memory is refused before it loads."""
    from app.embedding import embed_in_worker

    session = require(state)
    if device not in DEVICES:
        raise InputError(f"device {device!r}: choose auto, cuda or cpu")
    if session.embedding is not None and not session.embedding.finished:
        raise InputError("this session is already embedding; wait for it to finish or press Cancel")
    if not embed_in_worker(session, model, device, progress):
        return session, "Embedding cancelled: press *Compute embeddings* to start again."
    session.reset_models()
    return session, _embed_md(session)


def embed_loaded(state: Session | None, model: str = DEFAULT_EMBEDDER, device: str = "auto",
                 request: gr.Request = None, progress=gr.Progress()) -> tuple[Session, str]:
    """After a load: embed the new log (an upload) with the chosen model, as a sample comes embedded; nothing when
    the log has its embeddings (a sample, or a failed upload that kept the previous log)."""
    if not isinstance(state, Session) or state.log is None or state.X is not None:
        return state, gr.update()
    return compute_embeddings(state, model, device, request, progress)


def cancel_embedding(state: Session | None = None) -> str:
    """Stop this session's embedding job (it leaves the queue, or stops after its current batch)."""
    from app.embedding import cancel_embedding as cancel

    return "Cancelling…" if cancel(state if isinstance(state, Session) else None) else gr.update()


# ---------------------------------------------------------------------------------------------------------------------
# layout and events
# ---------------------------------------------------------------------------------------------------------------------
class DataUI(NamedTuple):
    source: Any
    sample_group: Any
    sample: Any
    sim_params: Any
    rating: Any
    alpha: Any
    rho01: Any
    rho10: Any
    obs_rate: Any
    seed: Any
    load_sample: Any
    upload_group: Any
    upload: Any
    upload_cols: Any
    mapping: list
    extra_map: Any
    threshold: Any
    feedback_kind: Any
    load_upload: Any
    embed_model: Any
    embed_device: Any
    embed: Any
    summary: Any
    warnings: Any
    embed_status: Any
    preview: Any
    embed_cancel: Any


def build() -> DataUI:
    """The Data tab (call inside the app's ``gr.Tabs``)."""
    with gr.Tab("1 · Data", id="data", elem_id="tab-data"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                source = gr.Radio(["Bundled sample", "Upload a log"], value="Bundled sample",
                                  label="Data source", elem_id="data-source")
                with gr.Group(visible=True) as sample_group:
                    sample = gr.Dropdown(list(SAMPLES), value=SAMPLE_DEMO, label="Sample",
                                         elem_id="sample")
                    with gr.Column(visible=True) as sim_params:
                        rating = gr.Radio(list(RATING_MODES), value=DEFAULT_RATING_MODE,
                                          label="Ratings behind the simulation",
                                          info="teacher: a known function of the embeddings, so the "
                                               "effect of the corrections is visible at any signal "
                                               "strength")
                        alpha = gr.Slider(0.005, 1.0, value=DEMO.alpha, step=0.005, label="α (selection strength)",
                                          info="p = α^(5 − s): smaller α = stronger bias")
                        with gr.Row():
                            rho01 = gr.Slider(0.0, 0.45, value=0.2, step=0.01, label="ρ01 = P(r=0 | r*=1)")
                            rho10 = gr.Slider(0.0, 0.45, value=0.1, step=0.01, label="ρ10 = P(r=1 | r*=0)")
                        with gr.Row():
                            obs_rate = gr.Slider(0.05, 1.0, value=0.2, step=0.01, label="observation rate")
                            seed = gr.Number(0, precision=0, minimum=0, label="seed")
                    load_sample_btn = gr.Button("Load sample", variant="primary", elem_id="load-sample")
                with gr.Group(visible=False) as upload_group:
                    upload = gr.File(label=f"Log file (CSV, TSV, JSONL, JSON, Parquet; .gz ok; chat "
                                           f"transcripts in a `messages` column ok; max "
                                           f"{SETTINGS.max_upload_mb:g} MB)",
                                     file_types=list(UPLOAD_SUFFIXES), type="filepath", elem_id="upload")
                    upload_cols = gr.Markdown(elem_classes="crm-note", elem_id="upload-columns")
                    with gr.Accordion("Column mapping (when your names differ)", open=True):
                        mapping_dd = []
                        for i in range(0, len(MAPPABLE), 3):
                            with gr.Row():
                                for canonical in MAPPABLE[i:i + 3]:
                                    mapping_dd.append(gr.Dropdown([AUTO], value=AUTO, label=canonical,
                                                                  allow_custom_value=True, min_width=120))
                        extra_map = gr.Textbox(label="more mappings (canonical=column, comma separated)",
                                               placeholder="user_id=uid, timestamp=ts")
                        threshold = gr.Textbox("", placeholder="e.g. 4", label="feedback threshold "
                                               "(numeric ratings ≥ T → 1; empty = none)")
                        feedback_kind = gr.Dropdown(list(FEEDBACK_KINDS), value=AUTO_KIND, label="feedback kind",
                                                    elem_id="feedback-kind",
                                                    info="explicit thumbs, or implicit events (copies, clicks: "
                                                         "1 where it happened, empty elsewhere); auto: a feedback "
                                                         "column only ever 1 or empty is implicit")
                    load_upload_btn = gr.Button("Load log", variant="primary", elem_id="load-upload")
                with gr.Accordion("Embeddings", open=True):
                    embed_model = gr.Dropdown([DEFAULT_EMBEDDER], value=DEFAULT_EMBEDDER,
                                              allow_custom_value=True, label="embedding model",
                                              info="bundled MiniLM (offline), or a Hugging Face id / local "
                                                   "folder available on this server")
                    embed_device = gr.Radio(list(DEVICES), value="auto", label="device")
                    with gr.Row():
                        embed_btn = gr.Button("Compute embeddings", elem_id="embed")
                        embed_cancel = gr.Button("Cancel", variant="stop", elem_id="embed-cancel")
            with gr.Column(scale=3, min_width=420):
                summary = gr.Markdown("Load a sample or upload a log to start.", elem_id="data-summary")
                warnings_md = gr.Markdown(elem_id="data-warnings")
                embed_status = gr.Markdown(elem_id="embed-status")
        preview = gr.Dataframe(label=f"Preview (first {PREVIEW_ROWS} rows)", interactive=False, wrap=False,
                               max_height=420, elem_id="preview")
    return DataUI(source, sample_group, sample, sim_params, rating, alpha, rho01, rho10, obs_rate, seed,
                  load_sample_btn, upload_group, upload, upload_cols, mapping_dd, extra_map, threshold, feedback_kind,
                  load_upload_btn, embed_model, embed_device, embed_btn, summary, warnings_md, embed_status, preview,
                  embed_cancel)


def wire(state: Any, ui: DataUI, *, propensity: Any, noise: Any, train: Any) -> None:
    """The Data tab's events. A load also sets the Train tab's methods, the Noise tab's estimate choices and the
    model tabs' status lines (``propensity``, ``noise``, ``train``: those tabs' components)."""
    ui.source.change(lambda s: (gr.update(visible=s == "Bundled sample"), gr.update(visible=s != "Bundled sample")),
                     ui.source, [ui.sample_group, ui.upload_group], queue=False, api_visibility="private")
    ui.sample.change(lambda s: gr.update(visible=s in SIMULATED_DATASETS), ui.sample, ui.sim_params, queue=False,
                     api_visibility="private")

    data_out = [state, ui.summary, ui.warnings, ui.preview, ui.embed_status, train.methods, noise.flip_method,
                propensity.status]
    stale_targets = [noise.status, train.status]
    ui.load_sample.click(
        load_sample, [state, ui.sample, ui.rating, ui.alpha, ui.rho01, ui.rho10, ui.obs_rate, ui.seed], data_out,
        api_name="load_sample", concurrency_id="data", concurrency_limit=4, show_progress_on=ui.summary,
    ).success(stale_notes, state, stale_targets, queue=False, api_visibility="private", js=CLEAR_ERRORS)
    ui.upload.upload(inspect_upload, ui.upload, [ui.upload_cols, *ui.mapping], api_name="inspect_upload",
                     concurrency_id="data", show_progress_on=ui.upload_cols
                     ).success(None, js=CLEAR_ERRORS)
    ui.upload.clear(lambda: ("", *[gr.update(choices=[AUTO], value=AUTO) for _ in MAPPABLE]), None,
                    [ui.upload_cols, *ui.mapping], queue=False, api_visibility="private")
    ui.load_upload.click(
        load_upload, [state, ui.upload, *ui.mapping, ui.extra_map, ui.threshold, ui.feedback_kind], data_out,
        api_name="upload", concurrency_id="data", show_progress_on=ui.summary,
    ).success(stale_notes, state, stale_targets, queue=False, api_visibility="private", js=CLEAR_ERRORS
    ).success(embed_loaded, [state, ui.embed_model, ui.embed_device], [state, ui.embed_status],
              api_visibility="private", concurrency_id="embed", show_progress_on=ui.embed_status)
    # Embedding jobs wait in the worker pool's line (shared with training), not in gradio's queue.
    ui.embed.click(compute_embeddings, [state, ui.embed_model, ui.embed_device], [state, ui.embed_status],
                   api_name="embed", concurrency_id="embed", concurrency_limit=16, show_progress_on=ui.embed_status)
    ui.embed_cancel.click(cancel_embedding, [state], ui.embed_status, api_name="cancel_embedding", queue=False)
