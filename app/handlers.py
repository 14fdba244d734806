"""The workbench's actions, one plain function per button, wired to components in :mod:`app.ui`.

Each handler takes the session (``gr.State`` value, possibly ``None``) first and returns the new session first, then
what its tab displays. They call :mod:`causalrm` only; nothing here estimates anything. Failures never escape as
stack traces: :func:`guarded` turns :class:`causalrm.errors.InputError` into ``gr.Error`` with the same one-line
message, and any other exception into a short ``gr.Error`` with a reference that is logged server-side with the
traceback.

The functions work without a server too (tests call them directly): ``gr.Progress`` and ``gr.Warning`` are no-ops
outside an event.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import os
import queue
import shlex
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import polars as pl

from app import plots
from app.session import Session, cancel_flag, ensure_session
from causalrm import schema
from causalrm.errors import InputError

logger = logging.getLogger("causalrm.app")

# ---- choices shown in the UI -----------------------------------------------------------------------------------------
SAMPLE_SIMULATED = "UltraFeedback (simulated)"
SAMPLE_OASST1 = "oasst1 (real feedback)"
SAMPLES = (SAMPLE_SIMULATED, SAMPLE_OASST1)
RATING_MODES = {"real GPT-4 ratings": "real", "teacher (semi-synthetic, known score)": "teacher"}
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
TRAIN_METHODS = ("naive", "ips", "dr", "denoise", "causalrm-ips", "causalrm-dr")
ORACLE = "oracle"
DEFAULT_METHODS = ("naive", "causalrm-dr")
FLIP_METHODS = {"anchor quantile (default)": "anchor-quantile", "anchor min/max": "anchor-minmax",
                "gold labels": "gold"}
DEVICES = ("auto", "cuda", "cpu")
MAPPABLE = (schema.PROMPT, schema.RESPONSE, schema.FEEDBACK, schema.OBSERVED, schema.GOLD_LABEL,
            schema.LOGGED_PROPENSITY, schema.PAIR_ID, schema.SPLIT, schema.RESPONSE_ID)
AUTO = "(same name)"
PREVIEW_ROWS = 50
PREVIEW_CHARS = 140
UPLOAD_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".gz")


@dataclasses.dataclass
class AppSettings:
    """Server-wide limits, set once by :func:`app.ui.build_app` / ``launch``."""

    max_upload_mb: float = float(os.environ.get("CAUSALRM_APP_MAX_UPLOAD_MB", 200))
    max_epochs: int = int(os.environ.get("CAUSALRM_APP_MAX_EPOCHS", 600))


SETTINGS = AppSettings()


# ---- error handling --------------------------------------------------------------------------------------------------
class _Cancelled(Exception):
    """Raised inside a training callback when the user pressed Cancel (fallback when ``should_stop`` is ignored)."""


def _user_error(message: str) -> gr.Error:
    return gr.Error(" ".join(str(message).split()), print_exception=False)


def _unexpected(fn_name: str, err: BaseException) -> gr.Error:
    ref = uuid.uuid4().hex[:8]
    logger.error("unexpected error in %s [ref %s]", fn_name, ref, exc_info=(type(err), err, err.__traceback__))
    action = fn_name.replace("_", " ")
    return gr.Error(f"Unexpected error during '{action}' ({type(err).__name__}). The server log has the details under "
                    f"reference {ref}. The app is still running: check the inputs and try again.",
                    print_exception=False)


def _translate(fn_name: str, err: BaseException) -> BaseException:
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, InputError):
        return _user_error(str(err))
    if isinstance(err, MemoryError):
        return _user_error("out of memory: use a smaller log, fewer epochs or the CPU device")
    return _unexpected(fn_name, err)


def guarded(fn: Callable) -> Callable:
    """Wrap a handler (function or generator) so every failure becomes a readable ``gr.Error``."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - translated, logged
                raise _translate(fn.__name__, err) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - translated, logged
            raise _translate(fn.__name__, err) from None

    return wrapper


def _warn(message: str) -> None:
    """A toast in the browser (a log line elsewhere)."""
    try:
        gr.Warning(message)
    except Exception:  # noqa: BLE001 - a toast must never break a handler
        logger.warning(message)


def _require(session: Session | None, *, embeddings: bool = False) -> Session:
    if not isinstance(session, Session) or session.log is None:
        raise InputError("no log loaded yet: load a sample or upload a log on the Data tab first")
    if embeddings and session.X is None:
        raise InputError("no embeddings yet: press 'Compute embeddings' on the Data tab first")
    return session


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, (float, np.floating)):
        return "–" if not math.isfinite(float(x)) else f"{float(x):.{digits}f}"
    return str(x)


# ======================================================================================================================
# 1. Data
# ======================================================================================================================
class DataView(NamedTuple):
    """What every data-loading handler returns (order = the components in app.ui)."""

    state: Session
    summary: str
    warnings: str
    preview: pl.DataFrame
    embed_status: str
    methods: Any  # gr.update for the Train tab's method checkboxes
    flip_method: Any  # gr.update for the Noise tab's method radio
    stale: str  # status line shown in the model tabs after new data


def _preview(log: pl.DataFrame) -> pl.DataFrame:
    cols = [c for c in (schema.RESPONSE_ID, schema.PROMPT, schema.RESPONSE, schema.FEEDBACK, schema.OBSERVED,
                        schema.SPLIT, schema.GOLD_LABEL, schema.TRUE_LABEL, schema.LOGGED_PROPENSITY)
            if c in log.columns]
    head = log.head(PREVIEW_ROWS).select(cols)
    short = [pl.col(c).str.slice(0, PREVIEW_CHARS).alias(c) for c in (schema.PROMPT, schema.RESPONSE) if c in cols]
    return head.with_columns(short) if short else head


def _summary_md(session: Session) -> str:
    s = session.summary
    src = session.source
    lines = [f"**{src.get('label', 'log')}**: {s.n_rows:,} impressions, {s.n_observed:,} with feedback "
             f"({s.observed_rate:.1%}); positive rate among observed {_fmt(s.positive_rate)}"]
    if s.splits:
        lines.append("splits: " + ", ".join(f"{k} {v:,}" for k, v in s.splits.items()))
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
            f"{src['observation_rate']:g}, seed {src['seed']} ({src['rating']} ratings); realised flip rates on "
            f"observed train/val rows: ρ01 {_fmt(real.get('rho01_hat'))}, ρ10 {_fmt(real.get('rho10_hat'))}")
    lines.append("columns: `" + "`, `".join(s.columns) + "`")
    return "\n\n".join(lines)


def _warnings_md(warnings: Sequence[str]) -> str:
    if not warnings:
        return "No warnings."
    return "**Warnings**\n\n" + "\n".join(f"- ⚠️ {w}" for w in warnings)


def _embed_md(session: Session) -> str:
    if session.X is None:
        return ("Embeddings: **not computed**. Press *Compute embeddings* (MiniLM on CPU: about a minute per few "
                "thousand rows).")
    n, d = session.X.shape
    return f"Embeddings: **{session.embed_model}**, {n:,} × {d} ready."


def _methods_update(log: pl.DataFrame) -> Any:
    choices = list(TRAIN_METHODS)
    if schema.TRUE_LABEL in log.columns and log[schema.TRUE_LABEL].null_count() < log.height:
        choices.append(ORACLE)
    return gr.update(choices=choices, value=[m for m in DEFAULT_METHODS if m in choices])


def _flip_update(log: pl.DataFrame) -> Any:
    choices = [k for k, v in FLIP_METHODS.items() if v != "gold" or _has_gold(log)]
    return gr.update(choices=choices, value=choices[0])


def _has_gold(log: pl.DataFrame) -> bool:
    return schema.GOLD_LABEL in log.columns and log[schema.GOLD_LABEL].null_count() < log.height


def _data_view(session: Session) -> DataView:
    from causalrm.validate import summarize_log

    session.summary = summarize_log(session.log, source=session.source.get("label"))
    warnings = list(session.summary.warnings)
    for w in warnings:
        _warn(w)
    return DataView(session, _summary_md(session), _warnings_md(warnings), _preview(session.log), _embed_md(session),
                    _methods_update(session.log), _flip_update(session.log),
                    "New data loaded: fit the propensity and estimate the noise again.")


def _embedder(session: Session, model: str, device: str = "auto", progress: Any = None):
    from causalrm.embeddings import Embedder

    callback = None
    if progress is not None:
        def callback(done: int, total: int) -> None:
            progress((done, max(total, 1)), desc="embedding", unit="rows")
    # A private user cache per session: one user's texts never land in a cache another session reads.
    return Embedder(model=model or DEFAULT_EMBEDDER, device=device or "auto", progress=False,
                    progress_callback=callback, cache_dir=session.folder("cache"))


def _embed_now(session: Session, model: str, device: str, progress: Any = None) -> None:
    from causalrm.embeddings import embed_log

    t0 = time.perf_counter()
    emb = _embedder(session, model, device, progress)
    session.X = embed_log(session.log, emb)
    session.embed_model = emb.model_id
    stats = getattr(emb, "last_stats", {}) or {}
    logger.info("session %s: embedded %d rows with %s in %.1fs (%s)", session.session_hash[:8], len(session.X),
                emb.model_id, time.perf_counter() - t0, stats)


@guarded
def load_sample(state: Session | None, sample: str = SAMPLE_SIMULATED, rating: str = "real GPT-4 ratings",
                alpha: float = 0.5, rho01: float = 0.2, rho10: float = 0.1, observation_rate: float = 0.2,
                seed: float = 0, request: gr.Request = None, progress=gr.Progress()) -> DataView:
    """Load a bundled sample: the simulated UltraFeedback log (α, ρ01, ρ10, observation rate, seed) or oasst1."""
    session = ensure_session(state, request)
    progress(0.1, desc="loading sample")
    if sample == SAMPLE_OASST1:
        from causalrm.datasets import load_oasst1_log

        log = load_oasst1_log()
        source = {"kind": "oasst1", "label": "oasst1 (real emoji feedback)"}
    elif sample == SAMPLE_SIMULATED:
        from causalrm.simulate import simulate_dataset, simulation_summary

        mode = RATING_MODES.get(rating, rating)
        if mode not in RATING_MODES.values():
            raise InputError(f"rating mode {rating!r}: choose one of {', '.join(RATING_MODES)}")
        if seed is None or float(seed) != int(seed) or int(seed) < 0:
            raise InputError(f"seed {seed!r}: use a non-negative whole number")
        embedder = _embedder(session, DEFAULT_EMBEDDER) if mode == "teacher" else None
        log, config = simulate_dataset("ultrafeedback", alpha=float(alpha), rho01=float(rho01), rho10=float(rho10),
                                       observation_rate=float(observation_rate), rating=mode, seed=int(seed),
                                       embedder=embedder)
        source = {"kind": "simulated", "label": "UltraFeedback (simulated)", "dataset": "ultrafeedback",
                  "alpha": float(alpha), "rho01": float(rho01), "rho10": float(rho10),
                  "observation_rate": float(observation_rate), "seed": int(seed), "rating": mode,
                  "realised": simulation_summary(log)}
    else:
        raise InputError(f"unknown sample {sample!r}; choose one of: {', '.join(SAMPLES)}")
    session.reset_data()
    session.log, session.source = log, source
    progress(0.5, desc="embedding (shipped cache)")
    _embed_now(session, DEFAULT_EMBEDDER, "auto")
    return _data_view(session)


def _upload_path(file: Any) -> Path:
    if file is None:
        raise InputError("no file uploaded: drop a CSV, TSV, JSONL or Parquet log (optionally .gz) first")
    path = Path(file if isinstance(file, (str, os.PathLike)) else getattr(file, "name", file))
    if not path.is_file():
        raise InputError(f"{path.name}: the uploaded file is gone; upload it again")
    size_mb = path.stat().st_size / 2**20
    if size_mb > SETTINGS.max_upload_mb:
        raise InputError(f"{path.name}: {size_mb:.1f} MB is over this server's upload limit of "
                         f"{SETTINGS.max_upload_mb:g} MB; upload a smaller log or a sample of it")
    name = path.name.lower()
    if not name.endswith(UPLOAD_SUFFIXES):
        raise InputError(f"{path.name}: unsupported file type; upload .csv, .tsv, .jsonl, .json or .parquet "
                         "(text formats may be .gz)")
    return path


@guarded
def inspect_upload(file: Any) -> tuple:
    """Columns of an uploaded file, offered in the mapping dropdowns (a column named like the target is preselected).

    Returns ``(columns_md, *dropdown updates for MAPPABLE)``.
    """
    if file is None:
        return ("", *[gr.update(choices=[AUTO], value=AUTO) for _ in MAPPABLE])
    from causalrm.io import read_table

    path = _upload_path(file)
    columns = [str(c) for c in read_table(path).columns]
    updates = [gr.update(choices=[AUTO, *columns], value=AUTO) for _ in MAPPABLE]
    return (f"`{path.name}`: {len(columns)} columns: `" + "`, `".join(columns) + "`", *updates)


def build_mapping(picks: dict[str, str | None], extra: str | None) -> dict[str, str]:
    """``{user column: canonical}`` from the dropdown picks (canonical -> user column) and free-text ``a=b`` specs."""
    from causalrm.io import parse_mapping

    specs = [f"{canonical}={column}" for canonical, column in picks.items()
             if column and column != AUTO and column != canonical]
    if extra and extra.strip():
        specs += [s for s in extra.replace("\n", ",").split(",") if s.strip()]
    return parse_mapping(specs) if specs else {}


@guarded
def load_upload(state: Session | None, file: Any, prompt_col: str = AUTO, response_col: str = AUTO,
                feedback_col: str = AUTO, observed_col: str = AUTO, gold_col: str = AUTO,
                propensity_col: str = AUTO, pair_col: str = AUTO, split_col: str = AUTO, id_col: str = AUTO,
                extra_mapping: str = "", threshold: float | None = None, request: gr.Request = None,
                progress=gr.Progress()) -> DataView:
    """Read an uploaded log with ``causalrm.io.read_log`` (column mapping, rating threshold) and summarise it."""
    from causalrm.io import read_log

    session = ensure_session(state, request)
    path = _upload_path(file)
    picks = dict(zip(MAPPABLE, (prompt_col, response_col, feedback_col, observed_col, gold_col, propensity_col,
                                pair_col, split_col, id_col)))
    mapping = build_mapping(picks, extra_mapping)
    thr = None if threshold in (None, "") or (isinstance(threshold, float) and math.isnan(threshold)) else float(
        threshold)
    progress(0.2, desc="reading")
    log = read_log(path, mapping=mapping or None, threshold=thr)
    session.reset_data()
    session.log = log
    session.source = {"kind": "upload", "label": path.name, "file": path.name, "mapping": mapping,
                      "threshold": thr}
    # Bundled texts and earlier uploads of the same texts hit the cache instantly; others wait for the button.
    session.X = None
    return _data_view(session)


@guarded
def compute_embeddings(state: Session | None, model: str = DEFAULT_EMBEDDER, device: str = "auto",
                       request: gr.Request = None, progress=gr.Progress()) -> tuple[Session, str]:
    """Embed every row of the loaded log with ``model`` (cached texts are instant)."""
    session = _require(state)
    if device not in DEVICES:
        raise InputError(f"device {device!r}: choose auto, cuda or cpu")
    model = (model or DEFAULT_EMBEDDER).strip()
    _embed_now(session, model, device, progress)
    session.reset_models()
    return session, _embed_md(session)


# ======================================================================================================================
# 2. Propensity
# ======================================================================================================================
def _fit_config(session: Session, **overrides: Any):
    """The FitConfig implied by the session's choices on the Propensity, Noise and Train tabs."""
    from causalrm.pipeline import FitConfig

    values: dict[str, Any] = {}
    ps = session.propensity_settings
    if ps:
        values.update(propensity_model=ps["model"], clip=ps["clip"])
    ns = session.noise_settings
    if ns:
        values.update(flip_method=ns["flip_method"], quantile=ns["quantile"])
        if ns.get("manual"):
            values.update(rho01=ns["manual"][0], rho10=ns["manual"][1])
    if session.embed_model:
        values["embedder"] = session.embed_model
    values.update(overrides)
    return FitConfig(**values)


def _observed(session: Session, rows: np.ndarray) -> np.ndarray:
    return session.log[schema.OBSERVED].cast(pl.Float64).fill_null(0.0).to_numpy()[rows]


class PropensityView(NamedTuple):
    state: Session
    diagnostics: str
    histogram: Any
    calibration: Any
    clip_text: str


def _propensity_md(diag: Any, note: str = "") -> str:
    rows = [("source", diag.source), ("rows (train + val)", f"{diag.n_rows:,}"),
            ("with feedback", f"{diag.n_observed:,}"), ("AUC (p̂ vs o)", _fmt(diag.auc)),
            ("ECE", _fmt(diag.ece)), ("Brier", _fmt(diag.brier)),
            ("ESS of 1/p̂ weights", f"{diag.ess:,.0f} ({diag.ess_fraction:.0%} of observed)"),
            ("max weight", _fmt(diag.max_weight, 1))]
    md = _md_table(("diagnostic", "value"), rows)
    if diag.warnings:
        md += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in diag.warnings)
    return (note + "\n\n" + md) if note else md


def _clip_md(report: dict[str, Any]) -> str:
    return f"**Clip {report['clip']:g}**: {report['message']}."


@guarded
def fit_propensity(state: Session | None, model: str = "mlp", clip: float = 0.1, seed: float = 0,
                   progress=gr.Progress()) -> PropensityView:
    """Cross-fit p̂(x) = P(o = 1 | x) on the train + val rows (``causalrm.pipeline.fit_nuisances``)."""
    from causalrm.pipeline import fit_nuisances
    from causalrm.propensity import clip_report, propensity_diagnostics

    session = _require(state, embeddings=True)
    session.propensity_settings = {"model": model, "clip": float(clip)}
    config = _fit_config(session, method="ips", seed=int(seed or 0))
    progress(0.1, desc=f"cross-fitting the {model} propensity model")
    nuis = fit_nuisances(session.log, session.X, config, methods=["ips"])
    session.propensity = nuis
    session.propensity_settings["seed"] = int(seed or 0)
    p = np.asarray(nuis.propensity, dtype=float)
    o = _observed(session, nuis.rows)
    note = (nuis.diagnostics.get("propensity") or {}).get("note", "")
    if note:
        _warn(note)
    diag = (nuis.propensity_model.diagnostics_ if nuis.propensity_model is not None
            else propensity_diagnostics(p, o, float(clip), source="none (feedback-only log)"))
    for w in diag.warnings:
        _warn(w)
    report = clip_report(p, float(clip), observed=o)
    return PropensityView(session, _propensity_md(diag, note), plots.propensity_histogram(p, o, clip=float(clip)),
                          plots.calibration_curve(diag.calibration_predicted, diag.calibration_observed,
                                                  diag.calibration_count),
                          _clip_md(report))


@guarded
def clip_preview(state: Session | None, clip: float = 0.1) -> tuple[Session | None, str, Any]:
    """How many rows the floor ``clip`` raises (``causalrm.propensity.clip_report``); updates the histogram line."""
    from causalrm.propensity import clip_report

    if not isinstance(state, Session) or state.propensity is None:
        return state, "Fit the propensity model to see what the clip does.", gr.update()
    nuis = state.propensity
    p = np.asarray(nuis.propensity, dtype=float)
    o = _observed(state, nuis.rows)
    report = clip_report(p, float(clip), observed=o)
    state.propensity_settings["clip"] = float(clip)
    return state, _clip_md(report), plots.propensity_histogram(p, o, clip=float(clip))


# ======================================================================================================================
# 3. Noise
# ======================================================================================================================
class NoiseView(NamedTuple):
    state: Session
    estimates: pl.DataFrame
    heatmap: Any
    proxy: Any
    sweep: Any
    summary: str


def _ci_text(ci: Any, key: str) -> str:
    if not ci or key not in ci or ci[key] is None:
        return "–"
    lo, hi = ci[key]
    return f"[{lo:.3f}, {hi:.3f}]"


@guarded
def estimate_noise(state: Session | None, flip_method: str = "anchor quantile (default)", quantile: float = 0.97,
                   use_manual: bool = False, rho01_manual: float = 0.2, rho10_manual: float = 0.1,
                   seed: float = 0, progress=gr.Progress()) -> NoiseView:
    """Estimate ρ01, ρ10 (anchor points on a calibrated out-of-fold proxy, and gold labels when the log has them)."""
    from causalrm.pipeline import fit_nuisances

    session = _require(state, embeddings=True)
    method = FLIP_METHODS.get(flip_method, flip_method)
    if method not in FLIP_METHODS.values():
        raise InputError(f"flip-rate method {flip_method!r}: choose one of {', '.join(FLIP_METHODS)}")
    seed = int(seed or 0)
    rows: list[dict[str, Any]] = []
    progress(0.1, desc="fitting the anchor proxy")
    anchor_method = method if method != "gold" else "anchor-quantile"
    cfg = _fit_config(session, method="denoise", flip_method=anchor_method, quantile=float(quantile), seed=seed,
                      rho01=None, rho10=None)
    anchor = fit_nuisances(session.log, session.X, cfg, methods=["denoise"])
    est = anchor.flip_estimator
    rows.append({"estimate": f"anchor ({anchor_method}, q = {float(quantile):g})", "rho01": anchor.rho01,
                 "rho01 95% CI": _ci_text(anchor.rho_ci, "rho01"), "rho10": anchor.rho10,
                 "rho10 95% CI": _ci_text(anchor.rho_ci, "rho10")})
    gold = None
    if _has_gold(session.log):
        progress(0.6, desc="gold-set estimate")
        try:
            gold = fit_nuisances(session.log, session.X, cfg.replace(flip_method="gold"), methods=["denoise"])
            n_gold = session.summary.n_gold if session.summary is not None else None
            rows.append({"estimate": f"gold labels (n = {n_gold})", "rho01": gold.rho01,
                         "rho01 95% CI": _ci_text(gold.rho_ci, "rho01"), "rho10": gold.rho10,
                         "rho10 95% CI": _ci_text(gold.rho_ci, "rho10")})
        except InputError as err:
            _warn(f"gold-set estimate unavailable: {err}")
    truth = None
    if session.source.get("kind") == "simulated":
        truth = (session.source["rho01"], session.source["rho10"])
        real = session.source.get("realised") or {}
        rows.append({"estimate": "true (simulation setting)", "rho01": truth[0], "rho01 95% CI": "",
                     "rho10": truth[1], "rho10 95% CI": ""})
        if real.get("rho01_hat") is not None:
            rows.append({"estimate": "realised in this log", "rho01": real["rho01_hat"], "rho01 95% CI": "",
                         "rho10": real["rho10_hat"], "rho10 95% CI": ""})
    manual = None
    if use_manual:
        from causalrm.losses import check_rates

        manual = check_rates(float(rho01_manual), float(rho10_manual))
        rows.append({"estimate": "manual override (used)", "rho01": manual[0], "rho01 95% CI": "",
                     "rho10": manual[1], "rho10 95% CI": ""})
    if manual is not None:
        used, origin = manual, "manual override"
    elif method == "gold" and gold is not None:
        used, origin = (gold.rho01, gold.rho10), "gold labels"
    elif method == "gold":
        raise InputError("gold-label estimate failed; choose an anchor method")
    else:
        used, origin = (anchor.rho01, anchor.rho10), f"anchor ({anchor_method})"
    session.flip, session.flip_gold = anchor, gold
    session.rho, session.rho_origin = (float(used[0]), float(used[1])), origin
    session.noise_settings = {"flip_method": "gold" if (method == "gold" and manual is None) else anchor_method,
                              "quantile": float(quantile), "manual": manual, "seed": seed}
    table = pl.DataFrame(rows).with_columns(pl.col("rho01", "rho10").cast(pl.Float64).round(4))

    diag = dict(getattr(est, "diagnostics_", None) or {})
    scores = getattr(est, "proxy_scores_", None)
    lower, upper = diag.get("lower"), diag.get("upper")
    if lower is None and anchor.rho10 is not None:
        lower, upper = anchor.rho10, 1.0 - anchor.rho01
    proxy_fig = (plots.proxy_scores(scores, lower=lower, upper=upper,
                                    quantile=float(quantile) if anchor_method == "anchor-quantile" else None)
                 if scores is not None else plots.empty("no proxy scores"))
    sweep = diag.get("q_sweep") or diag.get("sweep")
    if sweep:
        qs = [s["quantile"] for s in sweep]
        sweep_fig = plots.q_sweep(qs, [s["rho01"] for s in sweep], [s["rho10"] for s in sweep],
                                  chosen=float(quantile), true=truth)
    else:
        sweep_fig = plots.empty("no q-sweep available")
    summary = (f"Training will use **ρ01 = {used[0]:.3f}, ρ10 = {used[1]:.3f}** ({origin}). "
               f"Noise-aware losses divide by 1 − ρ01 − ρ10 = {1 - used[0] - used[1]:.3f}.")
    if 1 - used[0] - used[1] < 0.3:
        summary += " ⚠️ This is small: the corrected loss will have high variance."
    return NoiseView(session, table, plots.transition_heatmap(used[0], used[1]), proxy_fig, sweep_fig, summary)


# ======================================================================================================================
# 4. Train
# ======================================================================================================================
class TrainView(NamedTuple):
    state: Session
    status: str
    curves: Any
    results: pl.DataFrame


def _histories(session: Session, live: dict[str, dict[str, list]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for method, res in session.results.items():
        h = res.history
        out[method] = {"epoch": list(range(1, h.epochs + 1)), "train_loss": list(h.train_loss),
                       "val_estimate": list(h.val_estimate), "best_epoch": h.best_epoch}
    for method, h in live.items():
        if method not in out:
            out[method] = h
    return out


def _results_table(session: Session) -> pl.DataFrame:
    rows = []
    for method, res in session.results.items():
        h = res.history
        rows.append({"method": method, "epochs": h.epochs, "best epoch": h.best_epoch,
                     "best val estimate": round(float(h.best_val_estimate), 5) if math.isfinite(
                         h.best_val_estimate) else None,
                     "stop": h.stop_reason, "device": h.device, "seconds": round(float(res.seconds.get("total", 0)), 1)})
    return pl.DataFrame(rows) if rows else pl.DataFrame({"method": [], "epochs": []})


def available_backbones() -> list[str]:
    from causalrm.backbones import available_backbones as core_available

    return list(core_available())


@guarded
def train_models(state: Session | None, methods: Sequence[str] | None = DEFAULT_METHODS, backbone: str = "mlp",
                 device: str = "auto", epochs: float = 50, patience: float = 30, seed: float = 0,
                 request: gr.Request = None, progress=gr.Progress()) -> Iterator[TrainView]:
    """Fit the nuisances once, then train each selected method (live loss curves; Cancel stops after the batch)."""
    from causalrm.pipeline import fit_log, fit_nuisances

    session = _require(state)
    methods = [m for m in (methods or []) if m]
    if not methods:
        raise InputError("select at least one method to train")
    allowed = set(TRAIN_METHODS) | {ORACLE}
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise InputError(f"unknown method(s) {bad}; choose from {', '.join(sorted(allowed))}")
    if ORACLE in methods and schema.TRUE_LABEL not in session.log.columns:
        raise InputError("'oracle' needs clean labels: it is available on simulated logs only")
    if device not in DEVICES:
        raise InputError(f"device {device!r}: choose auto, cuda or cpu")
    if backbone not in available_backbones():
        raise InputError(f"backbone {backbone!r} is not available here; choose one of {available_backbones()}")
    epochs, patience, seed = int(epochs), int(patience), int(seed or 0)
    if not 1 <= epochs <= SETTINGS.max_epochs:
        raise InputError(f"epochs must be between 1 and {SETTINGS.max_epochs}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no CUDA GPU is available here; choose auto or cpu")
    if backbone == "mlp" and session.X is None:
        raise InputError("the mlp backbone needs embeddings: press 'Compute embeddings' on the Data tab first")
    flag = cancel_flag(session.session_hash)
    flag.clear()
    config = _fit_config(session, method=methods[0], backbone=backbone, device=device, max_epochs=epochs,
                         patience=patience, seed=seed)
    config.validate()
    session.results, session.run_dirs = {}, {}
    session.train_settings = {"methods": methods, "backbone": backbone, "device": device, "epochs": epochs,
                              "patience": patience, "seed": seed, "config": config.to_dict()}
    stage = session.stage
    events: queue.Queue = queue.Queue()
    live: dict[str, dict[str, list]] = {}
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            events.put(("stage", "nuisances", None))
            nuis = fit_nuisances(session.log, session.X, config, methods=methods,
                                 on_stage=lambda name: events.put(("stage", name, None)))
            for method in methods:
                if flag.is_set():
                    break
                events.put(("start", method, None))

                def on_epoch(epoch, max_epochs, train_loss, val_estimate, _m=method):
                    events.put(("epoch", _m, (epoch, max_epochs, train_loss, val_estimate)))

                res = fit_log(session.log, session.X, config.replace(method=method), nuisances=nuis,
                              progress=on_epoch, should_stop=flag.is_set)
                events.put(("done", method, res))
        except BaseException as err:  # noqa: BLE001 - handed to the generator
            outcome["error"] = err
        finally:
            events.put(("end", None, None))

    thread = threading.Thread(target=worker, name=f"train-{session.session_hash[:8]}", daemon=True)
    thread.start()
    status = "Fitting nuisances…"
    last_yield = 0.0
    n_methods = len(methods)
    try:
        while True:
            try:
                kind, method, payload = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if kind == "end":
                break
            if kind == "stage":
                status = f"Fitting {method}…" if method != "training" else status
                progress(0.02, desc=status)
            elif kind == "start":
                live[method] = {"epoch": [], "train_loss": [], "val_estimate": []}
                status = f"Training **{method}** ({methods.index(method) + 1}/{n_methods})…"
            elif kind == "epoch":
                epoch, max_epochs, train_loss, val_estimate = payload
                h = live.setdefault(method, {"epoch": [], "train_loss": [], "val_estimate": []})
                h["epoch"].append(epoch)
                h["train_loss"].append(float(train_loss))
                h["val_estimate"].append(None if val_estimate is None else float(val_estimate))
                i = methods.index(method)
                progress((i + epoch / max(max_epochs, 1)) / n_methods,
                         desc=f"{method}: epoch {epoch}/{max_epochs}, val {val_estimate:.4f}")
                status = (f"Training **{method}** ({i + 1}/{n_methods}): epoch {epoch}/{max_epochs}, train loss "
                          f"{train_loss:.4f}, validation estimate {val_estimate:.4f}")
            elif kind == "done":
                if session.stage == stage:
                    session.results[method] = payload
            now = time.monotonic()
            if kind in ("start", "done") or now - last_yield > 1.0:
                last_yield = now
                yield TrainView(session, status, plots.loss_curves(_histories(session, live), order=methods),
                                _results_table(session))
    finally:
        if thread.is_alive():  # the client went away or the event was cancelled: stop the worker
            flag.set()
    thread.join(timeout=5)
    err = outcome.get("error")
    if err is not None:
        raise err
    if session.stage != stage:
        raise InputError("the data changed while training; train again on the new log")
    if flag.is_set():
        done = ", ".join(session.results) or "none"
        status = f"Cancelled. Finished methods: {done}."
        _warn("training cancelled")
    else:
        status = (f"Done: trained {', '.join(session.results)} with the {backbone} backbone "
                  f"(ρ01 = {_fmt(next(iter(session.results.values())).nuisances.rho01)}, "
                  f"ρ10 = {_fmt(next(iter(session.results.values())).nuisances.rho10)} where used). "
                  "Open the Compare tab.")
    _save_runs(session)
    yield TrainView(session, status, plots.loss_curves(_histories(session, {}), order=methods), _results_table(session))


def cancel_training(state: Session | None = None, request: gr.Request = None) -> str:
    """Ask the running training of this session to stop after the current batch."""
    key = state.session_hash if isinstance(state, Session) else getattr(request, "session_hash", None)
    if key:
        cancel_flag(key).set()
    return "Cancelling after the current batch…"


def _save_runs(session: Session) -> None:
    """Write each trained model's run folder (``causalrm.runs``) inside the session folder."""
    try:
        from causalrm import runs
    except ImportError:
        return
    save = getattr(runs, "save_run", None)
    if save is None:
        return
    for method, res in session.results.items():
        folder = session.folder("runs") / method
        try:
            save(res, folder, log=session.log, X=session.X)
        except TypeError:
            save(res, folder)
        session.run_dirs[method] = folder


# ======================================================================================================================
# 5. Compare
# ======================================================================================================================
class CompareView(NamedTuple):
    metrics: pl.DataFrame
    metrics_note: str
    scatter: Any
    rank_summary: str
    movers: pl.DataFrame
    prompt_choices: Any
    ranking: pl.DataFrame
    cli: str
    download_csv: str | None
    download_parquet: str | None
    download_zip: str | None


def _scores(session: Session) -> dict[str, np.ndarray]:
    out = {}
    for method, res in session.results.items():
        z = np.asarray(res.score(session.log, session.X), dtype=np.float64)
        out[method] = z
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def scored_log(session: Session, scores: dict[str, np.ndarray]) -> pl.DataFrame:
    """The log with one ``reward_<method>`` (logit z) and ``pref_<method>`` (σ(z)) column per trained method."""
    cols = []
    for method, z in scores.items():
        cols.append(pl.Series(f"reward_{method}", z, dtype=pl.Float64))
        cols.append(pl.Series(f"pref_{method}", _sigmoid(z), dtype=pl.Float64))
    return session.log.with_columns(cols)


def cli_command(session: Session) -> str:
    """The ``causalrm`` commands that reproduce this session's log, models and comparison."""
    src = session.source
    lines = []
    if src.get("kind") == "simulated":
        log_file = "sim.parquet"
        lines.append(f"causalrm simulate --dataset {src['dataset']} --alpha {src['alpha']:g} --rho01 {src['rho01']:g} "
                     f"--rho10 {src['rho10']:g} --observation-rate {src['observation_rate']:g} --rating "
                     f"{src['rating']} --seed {src['seed']} --out {log_file}")
    elif src.get("kind") == "oasst1":
        log_file = "data/oasst1.parquet"
    else:
        log_file = shlex.quote(src.get("file", "LOG"))
        extra = []
        if src.get("mapping"):
            extra.append("--map " + ",".join(f"{canon}={col}" for col, canon in src["mapping"].items()))
        if src.get("threshold") is not None:
            extra.append(f"--threshold {src['threshold']:g}")
        lines.append(" ".join(["causalrm validate", log_file, *extra]))
    ts = session.train_settings
    cfg = ts.get("config", {})
    opts = []
    if ts.get("backbone", "mlp") != "mlp":
        opts.append(f"--backbone {ts['backbone']}")
    if ts.get("epochs"):
        opts.append(f"--epochs {ts['epochs']}")
    if ts.get("patience") is not None:
        opts.append(f"--patience {ts['patience']}")
    if cfg.get("clip") is not None and cfg["clip"] != 0.1:
        opts.append(f"--clip {cfg['clip']:g}")
    if cfg.get("propensity_model", "mlp") != "mlp":
        opts.append(f"--propensity-model {cfg['propensity_model']}")
    if cfg.get("rho01") is not None:
        opts.append(f"--rho01 {cfg['rho01']:g} --rho10 {cfg['rho10']:g}")
    else:
        if cfg.get("flip_method", "anchor-quantile") != "anchor-quantile":
            opts.append(f"--flip-method {cfg['flip_method']}")
        if cfg.get("quantile", 0.97) != 0.97:
            opts.append(f"--quantile {cfg['quantile']:g}")
    if ts.get("device", "auto") != "auto":
        opts.append(f"--device {ts['device']}")
    if ts.get("seed"):
        opts.append(f"--seed {ts['seed']}")
    if session.embed_model and session.embed_model.rsplit("/", 1)[-1] != DEFAULT_EMBEDDER:
        opts.append(f"--embedder {shlex.quote(session.embed_model)}")
    if src.get("kind") == "upload":
        if src.get("mapping"):
            opts.append("--map " + ",".join(f"{canon}={col}" for col, canon in src["mapping"].items()))
        if src.get("threshold") is not None:
            opts.append(f"--threshold {src['threshold']:g}")
    suffix = (" " + " ".join(opts)) if opts else ""
    for method in ts.get("methods", []):
        lines.append(f"causalrm fit {log_file} --method {method} --out runs/{method}{suffix}")
    methods = ts.get("methods", [])
    if len(methods) >= 2:
        lines.append("causalrm compare " + " ".join(f"runs/{m}" for m in methods))
    return "\n".join(lines) if lines else "# load data and train first"
