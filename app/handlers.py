"""The workbench's actions, one plain function per button, wired to components in :mod:`app.ui`.

Handlers that use the session take it (the ``gr.State`` value, possibly ``None``) first and, when they change it,
return it first, then what their tab displays. They call :mod:`causalrm` only; nothing here estimates anything.
Failures never escape as stack traces: :func:`guarded` turns :class:`causalrm.errors.InputError` into ``gr.Error``
with the same one-line message, and any other exception into a short ``gr.Error`` with a reference that is logged
server-side with the traceback.

The functions work without a server too (tests call them directly): ``gr.Progress`` and ``gr.Warning`` are no-ops
outside an event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import math
import os
import re
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
from app.session import Session, ensure_session
from causalrm import schema
from causalrm.demo import DEMO
from causalrm.propensity import MODELS as PROPENSITY_MODELS
from causalrm.errors import InputError

logger = logging.getLogger("causalrm.app")

# ---- choices shown in the UI -----------------------------------------------------------------------------------------
SAMPLE_DEMO = "WildBench (semi-synthetic demo)"
SAMPLE_SIMULATED = "UltraFeedback (simulated)"
SAMPLE_OASST1 = "oasst1 (real feedback)"
SAMPLES = (SAMPLE_DEMO, SAMPLE_SIMULATED, SAMPLE_OASST1)
SIMULATED_DATASETS = {SAMPLE_DEMO: "wildbench", SAMPLE_SIMULATED: "ultrafeedback"}
RATING_MODES = {"teacher (semi-synthetic, known score)": "teacher", "real GPT-4 ratings": "real"}
DEFAULT_RATING_MODE = "teacher (semi-synthetic, known score)"
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
TRAIN_METHODS = ("auto", "naive", "ips", "dr", "denoise", "causalrm-ips", "causalrm-dr")
ORACLE = "oracle"
DEFAULT_METHODS = ("naive", "auto")  # what the app compares unless told otherwise
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
_WARM_LOCK = threading.Lock()
_WARM = False


def warm_up() -> None:
    """Import the core and the lazy parts of ``transformers`` once, before serving.

    Two first requests importing ``transformers`` at the same time can see a half-initialised lazy module
    ("cannot import name 'AutoConfig'"); doing it once up front (and under a lock) avoids that race.
    """
    global _WARM
    with _WARM_LOCK:
        if _WARM:
            return
        import causalrm.datasets  # noqa: F401
        import causalrm.evaluation  # noqa: F401
        import causalrm.io  # noqa: F401
        import causalrm.noise  # noqa: F401
        import causalrm.pipeline  # noqa: F401
        import causalrm.propensity  # noqa: F401
        import causalrm.runs  # noqa: F401
        import causalrm.simulate  # noqa: F401
        import causalrm.validate  # noqa: F401
        from causalrm.embeddings import Embedder

        try:
            from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: F401

            Embedder(model=DEFAULT_EMBEDDER, progress=False, cache=False)  # resolves the bundled model's config
        except Exception as err:  # noqa: BLE001 - the first real request reports it properly
            logger.warning("warm-up could not prepare the default embedder: %s", err)
        _WARM = True


# ---- error handling --------------------------------------------------------------------------------------------------
def _user_error(message: str) -> gr.Error:
    return gr.Error(" ".join(str(message).split()), print_exception=False)


def _unexpected(fn_name: str, err: BaseException) -> gr.Error:
    ref = uuid.uuid4().hex[:8]
    logger.error("unexpected error in %s [ref %s]", fn_name, ref, exc_info=(type(err), err, err.__traceback__))
    action = fn_name.replace("_", " ")
    return gr.Error(f"Unexpected error during '{action}' ({type(err).__name__}). The server log has the details under "
                    f"reference {ref}. The app is still running: check the inputs and try again.",
                    print_exception=False)


def ui_message(message: str) -> str:
    """An InputError message in the app's words: CLI flags become the matching form fields."""
    if "--map" in message:
        message = re.sub(r"--map\s+", "", message).rstrip(". ") + " (use the Column mapping fields on the Data tab)"
    return re.sub(r"--threshold\b", "the feedback threshold", message)


def _translate(fn_name: str, err: BaseException) -> BaseException:
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, InputError):
        return _user_error(ui_message(str(err)))
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return _user_error("out of memory: use a smaller log, a smaller batch or backbone, or the CPU device")
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
    """The first rows, short columns first and the texts cut (prompt 80, response PREVIEW_CHARS characters)."""
    order = (schema.RESPONSE_ID, schema.FEEDBACK, schema.OBSERVED, schema.SPLIT, schema.GOLD_LABEL, schema.TRUE_LABEL,
             schema.LOGGED_PROPENSITY, schema.PROMPT, schema.RESPONSE)
    cols = [c for c in order if c in log.columns]
    head = log.head(PREVIEW_ROWS).select(cols)
    limits = {schema.PROMPT: 80, schema.RESPONSE: PREVIEW_CHARS}
    return head.with_columns([pl.col(c).str.slice(0, n).alias(c) for c, n in limits.items() if c in cols])


def _summary_md(session: Session) -> str:
    s = session.summary
    src = session.source
    lines = [f"**{src.get('label', 'log')}**: {s.n_rows:,} impressions, {s.n_observed:,} with feedback "
             f"({s.observed_rate:.1%}); positive rate among observed {_fmt(s.positive_rate)}"]
    fitting = _fitting_rows_observed(session.log)
    if fitting is not None:
        n_obs, n_rows = fitting
        lines[0] += (f". On the train/val rows, which models are fitted on, {n_obs:,} of {n_rows:,} have feedback "
                     f"({n_obs / max(n_rows, 1):.1%}); the test rows carry clean labels for evaluation")
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
            f"{src['observation_rate']:g} (train/val rows), seed {src['seed']} ({src['rating']} ratings); realised "
            f"flip rates on observed train/val rows: ρ01 {_fmt(real.get('rho01_hat'))}, "
            f"ρ10 {_fmt(real.get('rho10_hat'))}")
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


STALE = "New data loaded: run this step again."


def stale_note(session: Session, step: str) -> str:
    """:data:`STALE` for a tab whose results the last data load discarded, else nothing."""
    return STALE if step in session.stale_steps else ""


def stale_notes(state: Session | None) -> tuple[str, str]:
    """The Noise and Train tabs' status lines after a data load (the Propensity tab's comes with the load)."""
    if not isinstance(state, Session):
        return "", ""
    return stale_note(state, "noise"), stale_note(state, "train")


def _data_view(session: Session, *, notify: bool = True) -> DataView:
    from causalrm.validate import summarize_log

    session.summary = summarize_log(session.log, source=session.source.get("label"))
    warnings = list(session.summary.warnings)
    simulated = session.source.get("kind") == "simulated"
    for w in warnings:
        if notify and not (simulated and w.startswith("simulation-only")):  # expected when simulated: listed only
            _warn(w)
    return DataView(session, _summary_md(session), _warnings_md(warnings), _preview(session.log), _embed_md(session),
                    _methods_update(session.log), _flip_update(session.log), stale_note(session, "propensity"))


def _embedder(session: Session, model: str, device: str = "auto", progress: Any = None):
    from causalrm.embeddings import Embedder

    warm_up()
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
def load_sample(state: Session | None, sample: str = SAMPLE_DEMO, rating: str = DEFAULT_RATING_MODE,
                alpha: float = DEMO.alpha, rho01: float = DEMO.rho01, rho10: float = DEMO.rho10,
                observation_rate: float = 0.2, seed: float = DEMO.seed, request: gr.Request = None,
                progress=gr.Progress()) -> DataView:
    """Load a bundled sample: a simulated log (the WildBench demo setting of ``causalrm.demo`` by default, or
    UltraFeedback; α, ρ01, ρ10, observation rate, seed) or oasst1's real feedback."""
    session = ensure_session(state, request)
    progress(0.1, desc="loading sample")
    if sample == SAMPLE_OASST1:
        from causalrm.datasets import load_oasst1_log

        log = load_oasst1_log()
        source = {"kind": "oasst1", "label": "oasst1 (real emoji feedback)"}
    elif sample in SIMULATED_DATASETS:
        from causalrm.simulate import simulate_dataset, simulation_summary

        dataset = SIMULATED_DATASETS[sample]
        mode = RATING_MODES.get(rating, rating)
        if mode not in RATING_MODES.values():
            raise InputError(f"rating mode {rating!r}: choose one of {', '.join(RATING_MODES)}")
        if seed is None or float(seed) != int(seed) or int(seed) < 0:
            raise InputError(f"seed {seed!r}: use a non-negative whole number")
        embedder = _embedder(session, DEFAULT_EMBEDDER) if mode == "teacher" else None
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


@contextlib.contextmanager
def _named_as_uploaded(path: Path) -> Iterator[None]:
    """Report errors about an uploaded file by its name, not by the server's temporary path."""
    try:
        yield
    except InputError as err:
        raise InputError(str(err).replace(str(path), path.name)) from None


@guarded
def inspect_upload(file: Any) -> tuple:
    """Columns of an uploaded file, offered in the mapping dropdowns (a column named like the target is preselected).

    Returns ``(columns_md, *dropdown updates for MAPPABLE)``.
    """
    if file is None:
        return ("", *[gr.update(choices=[AUTO], value=AUTO) for _ in MAPPABLE])
    from causalrm.io import read_table

    path = _upload_path(file)
    with _named_as_uploaded(path):
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


def parse_threshold(value: Any) -> float | None:
    """The feedback threshold field: empty means none, else a finite number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        thr = float(str(value).strip())
    except ValueError:
        thr = math.nan
    if not math.isfinite(thr):
        raise InputError(f"feedback threshold {value!r}: enter a number (e.g. 4) or leave it empty")
    return thr


@guarded
def load_upload(state: Session | None, file: Any, prompt_col: str = AUTO, response_col: str = AUTO,
                feedback_col: str = AUTO, observed_col: str = AUTO, gold_col: str = AUTO,
                propensity_col: str = AUTO, pair_col: str = AUTO, split_col: str = AUTO, id_col: str = AUTO,
                extra_mapping: str = "", threshold: str | float | None = "", request: gr.Request = None,
                progress=gr.Progress()) -> DataView:
    """Read an uploaded log with ``causalrm.io.read_log`` (column mapping, rating threshold) and summarise it."""
    from causalrm.io import read_log

    session = ensure_session(state, request)
    path = _upload_path(file)
    picks = dict(zip(MAPPABLE, (prompt_col, response_col, feedback_col, observed_col, gold_col, propensity_col,
                                pair_col, split_col, id_col)))
    mapping = build_mapping(picks, extra_mapping)
    thr = parse_threshold(threshold)
    progress(0.2, desc="reading")
    with _named_as_uploaded(path):
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


def _gate_md(gate: Any) -> str:
    """A gate's verdict as one line (✅ passed, ⚠️ failed)."""
    return "" if gate is None else f"{'✅' if gate.passed else '⚠️'} **{gate.verdict[0].upper()}{gate.verdict[1:]}.**"


def _propensity_md(diag: Any, note: str = "", gate: Any = None) -> str:
    rows = [("source", diag.source), ("rows (train + val)", f"{diag.n_rows:,}"),
            ("with feedback", f"{diag.n_observed:,}"), ("AUC (p̂ vs o)", _fmt(diag.auc)),
            ("ECE", _fmt(diag.ece)), ("Brier", _fmt(diag.brier)),
            ("ESS of 1/p̂ weights", f"{diag.ess:,.0f} ({diag.ess_fraction:.0%} of observed)"),
            ("max weight", _fmt(diag.max_weight, 1))]
    md = _md_table(("diagnostic", "value"), rows)
    if gate is not None:
        md = _gate_md(gate) + "\n\n" + md
    if diag.warnings:
        md += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in diag.warnings)
    return (note + "\n\n" + md) if note else md


def _clip_md(report: dict[str, Any]) -> str:
    return f"**Clip {report['clip']:g}**: {report['message']}."


@guarded
def fit_propensity(state: Session | None, model: str = "auto", clip: float = 0.1, seed: float = 0,
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
    return PropensityView(session, _propensity_md(diag, note, nuis.gates.get("propensity")), plots.propensity_histogram(p, o, clip=float(clip)),
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
    gold = (anchor.diagnostics.get("flip_rates") or {}).get("gold_check")  # fitted beside the anchors (pipeline)
    if gold and "error" in gold:
        _warn(f"gold-set estimate unavailable: {gold['error']}")
        gold = None
    elif gold:
        rows.append({"estimate": f"gold labels (n = {gold['n_gold']})", "rho01": gold["rho01"],
                     "rho01 95% CI": _ci_text(gold["ci"], "rho01"), "rho10": gold["rho10"],
                     "rho10 95% CI": _ci_text(gold["ci"], "rho10")})
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
        used, origin = (gold["rho01"], gold["rho10"]), "gold labels"
    elif method == "gold":
        raise InputError("gold-label estimate failed; choose an anchor method")
    else:
        used, origin = (anchor.rho01, anchor.rho10), f"anchor ({anchor_method})"
    session.flip = anchor
    session.rho, session.rho_origin = (float(used[0]), float(used[1])), origin
    session.noise_settings = {"flip_method": "gold" if (method == "gold" and manual is None) else anchor_method,
                              "quantile": float(quantile), "manual": manual, "seed": seed}
    table = pl.DataFrame(rows).with_columns(pl.col("rho01", "rho10").cast(pl.Float64).round(4))

    diag = dict(getattr(est, "diagnostics_", None) or {})
    for w in diag.get("warnings", []):
        _warn(w)
    scores = getattr(est, "proxy_scores_", None)
    q_used = diag.get("quantile", float(quantile))
    # the anchor estimates are the (1 - q) and q quantiles of the proxy scores: rho10 and 1 - rho01
    proxy_fig = (plots.proxy_scores(scores, lower=anchor.rho10, upper=1.0 - anchor.rho01,
                                    quantile=q_used if q_used < 1.0 else None)
                 if scores is not None else plots.empty("no proxy scores"))
    sweep = diag.get("sweep") or {}
    if sweep.get("q"):
        sweep_fig = plots.q_sweep(sweep["q"], sweep["rho01"], sweep["rho10"], chosen=q_used, true=truth)
    else:
        sweep_fig = plots.empty("no q-sweep available")
    from causalrm.gates import flip_rate_gate

    if manual is not None:
        gate = flip_rate_gate({"method": "fixed", "rho01": used[0], "rho10": used[1]})
    elif origin == "gold labels":
        gate = flip_rate_gate({"method": "gold", "rho01": used[0], "rho10": used[1], "ci": gold["ci"]})
    else:
        gate = anchor.gates["flip_rates"]
    summary = _gate_md(gate) + ("" if gate.passed else (
        " Noise-aware methods (denoise, causalrm-*) will not train unless you tick **train noise-aware methods "
        "anyway** on the Train tab; better: audited gold labels or rates set by hand.")) + "\n\n"
    summary += (f"Training will use **ρ01 = {used[0]:.3f}, ρ10 = {used[1]:.3f}** ({origin}). "
                f"Noise-aware losses divide by 1 − ρ01 − ρ10 = {1 - used[0] - used[1]:.3f}.")
    if 1 - used[0] - used[1] < 0.3:
        summary += " ⚠️ This is small: the corrected loss will have high variance."
    proxy_info = diag.get("proxy") or {}
    if proxy_info.get("oof_auc") is not None:
        summary += (f"\n\nProxy out-of-fold AUC {proxy_info['oof_auc']:.3f} on {diag.get('n_observed', '?')} "
                    "observed rows.")
    spread = diag.get("sweep_spread")
    if spread:
        summary += (f" Over q in [0.95, 0.99] the estimates move by {spread['rho01']:.3f} (ρ01) and "
                    f"{spread['rho10']:.3f} (ρ10).")
    if diag.get("warnings"):
        summary += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in diag["warnings"])
    return NoiseView(session, table, plots.transition_heatmap(used[0], used[1]), proxy_fig, sweep_fig, summary)


# ======================================================================================================================
# 4. Train
# ======================================================================================================================
class TrainView(NamedTuple):
    state: Session
    status: str
    curves: Any
    results: pl.DataFrame
    compare_a: Any  # gr.update of the Compare tab's baseline dropdown
    compare_b: Any  # gr.update of the Compare tab's debiased dropdown


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
    from causalrm.backbones.base import hidden_label

    rows = []
    for method, res in session.results.items():
        h = res.history
        best = float(h.best_val_estimate)
        head = hidden_label(res.config.hidden) if res.config.backbone == "mlp" else "–"
        rows.append({"method": method, "head": head, "epochs": h.epochs, "best epoch": h.best_epoch,
                     "best val estimate": round(best, 5) if math.isfinite(best) else None,
                     "stop": h.stop_reason, "device": h.device,
                     "seconds": round(float(res.seconds.get("total", 0.0)), 1)})
    if not rows:
        return pl.DataFrame(schema={"method": pl.String, "head": pl.String, "epochs": pl.Int64,
                                    "best epoch": pl.Int64, "best val estimate": pl.Float64, "stop": pl.String,
                                    "device": pl.String, "seconds": pl.Float64})
    return pl.DataFrame(rows)


def _compare_updates(session: Session) -> tuple[Any, Any]:
    trained = list(session.results)
    if not trained:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
    a = "naive" if "naive" in trained else trained[0]
    b = next((m for m in ("causalrm-dr", "causalrm-ips", "dr", "ips", "denoise") if m in trained and m != a),
             next((m for m in trained if m != a), a))
    return gr.update(choices=trained, value=a), gr.update(choices=trained, value=b)


def available_backbones() -> list[str]:
    """Backbones the core can build here (``lora`` appears once ``causalrm/backbones/lora.py`` imports)."""
    from causalrm.backbones import available_backbones as core_available

    return list(core_available())


@guarded
def train_models(state: Session | None, methods: Sequence[str] | None = DEFAULT_METHODS, backbone: str = "mlp",
                 device: str = "auto", epochs: float = 50, patience: float = 30, seed: float = 0,
                 select_head: bool = False, force_noise_correction: bool = False, max_length: float | None = None,
                 request: gr.Request = None,
                 progress=gr.Progress()) -> Iterator[TrainView]:
    """Train each selected method in a worker process (``app.train_worker``; live loss curves, Cancel, queue).

    The nuisances are fitted once, then each method; each trained model is saved as a run folder
    (``causalrm.runs.save_run``) in the session's folder. ``select_head``: each method also trains a linear head and
    keeps the one its validation estimate prefers (``FitConfig.select_head``); the live curve then restarts for the
    second head. ``max_length``: tokens per (prompt, response) for the lora backbone (default: 128 on a CPU, 256 on
    a GPU); its micro-batches and gradient checkpointing are chosen to fit the server's memory limit per job, and a
    job that cannot fit is refused with the max length that would.
    """
    from app import train_worker
    from app.training import TrainingRun, default_lora_max_length, lora_config, pool

    session = _require(state)
    if isinstance(methods, str):
        methods = [methods]
    methods = list(dict.fromkeys(m for m in (methods or []) if m))
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
    try:
        epochs, patience, seed = int(epochs), int(patience), int(seed or 0)
        max_length = int(max_length or default_lora_max_length())
    except (TypeError, ValueError):
        raise InputError("epochs, patience, seed and max length must be whole numbers") from None
    if not 1 <= epochs <= SETTINGS.max_epochs:
        raise InputError(f"epochs must be between 1 and {SETTINGS.max_epochs}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no CUDA GPU is available here; choose auto or cpu")
    if backbone == "mlp" and session.X is None:
        raise InputError("the mlp backbone needs embeddings: press 'Compute embeddings' on the Data tab first")
    if session.training is not None and not session.training.job.finished:
        raise InputError("this session is already training; wait for it to finish or press Cancel")
    config = _fit_config(session, method=methods[0], backbone=backbone, device=device, max_epochs=epochs,
                         patience=patience, seed=seed, select_head=bool(select_head),
                         force_noise_correction=bool(force_noise_correction))
    plan = None
    if backbone == "lora":
        config, plan = lora_config(config, n_rows=session.log.height, max_length=max_length)
    config.validate()
    session.results, session.run_dirs = {}, {}
    session.train_settings = {"methods": methods, "backbone": backbone, "device": device, "epochs": epochs,
                              "patience": patience, "seed": seed, "select_head": bool(select_head),
                              "config": config.to_dict()}
    job = pool().submit(session.session_hash[:8], train_worker.train, log=session.log, X=session.X, config=config,
                        methods=methods, runs_root=str(session.folder("runs")), source=session.source.get("label"))
    session.training = TrainingRun(job=job, methods=methods, backbone=backbone, stage=session.stage,
                                   plan=f"LoRA: {plan.describe()}." if plan else "")
    yield from follow_training(session, progress)


def _train_status(run: Any) -> str:
    """The Train tab's status line while a job is queued or running."""
    job = run.job
    if job.state == "queued":
        return (f"Queued: position {job.position} in line, {job.pool.running} job(s) running (at most "
                f"{job.pool.max_running} at once). Cancel leaves the queue.")
    n = len(run.methods)
    if run.current is not None:
        i = run.methods.index(run.current) + 1
        if run.last_epoch is None:
            line = f"Training **{run.current}** ({i}/{n})…"
        else:
            epoch, max_epochs, train_loss, val_estimate = run.last_epoch
            line = (f"Training **{run.current}** ({i}/{n}): epoch {epoch}/{max_epochs}, train loss "
                    f"{_fmt(train_loss, 4)}, validation estimate {_fmt(val_estimate, 4)}")
    elif run.stage_text and run.stage_text != "training":
        line = f"{run.stage_text[0].upper()}{run.stage_text[1:]}…"
    else:
        line = "Fitting the nuisances (propensity, flip rates, pseudo-labels)…"
    limit = job.pool.time_limit_s
    if limit and job.started is not None:
        line += f" ({(time.monotonic() - job.started) / 60:.0f} of at most {limit / 60:g} minutes)"
    return line


def follow_training(session: Session, progress: Any = None) -> Iterator[TrainView]:
    """Views of the session's training job until it ends (live curves at most once a second), then the final one.

    Raises InputError with the job's one-line message when it failed (crash, out of memory, bad input).
    """
    run = session.training
    methods, n = run.methods, len(run.methods)

    def view(status: str, compare: tuple[Any, Any] = (gr.update(), gr.update())) -> TrainView:
        text = f"{status}\n\n{run.plan}" if run.plan else status
        return TrainView(session, text, plots.loss_curves(_histories(session, run.live), order=methods),
                         _results_table(session), *compare)

    yield view(_train_status(run))
    last_yield = time.monotonic()
    while not run.job.finished:
        milestone = run.update(session, timeout=0.5)
        if progress is not None and run.current is not None and run.last_epoch is not None:
            epoch, max_epochs = run.last_epoch[:2]
            i = methods.index(run.current)
            progress((i + epoch / max(max_epochs, 1)) / n,
                     desc=f"{run.current} ({i + 1}/{n}): epoch {epoch}/{max_epochs}")
        if milestone or time.monotonic() - last_yield > 1.0:
            last_yield = time.monotonic()
            yield view(_train_status(run))
    run.update(session, timeout=0)
    job = run.job
    if job.state == "failed":
        yield view(f"Stopped: {job.error}")
        raise InputError(job.error)
    if session.stage != run.stage:
        raise InputError("the data changed while training; train again on the new log")
    trained = ", ".join(session.results) or "nothing"
    cancelled = job.state == "cancelled" or len(session.results) < n or any(
        r.history.stop_reason == "cancelled" for r in session.results.values())
    if job.timed_out:
        status = (f"Stopped at this server's limit of {job.pool.time_limit_s / 60:g} minutes per training job "
                  f"(--job-time-limit-min). Trained: {trained}.")
        _warn("training stopped at the time limit")
    elif cancelled:
        status = f"Cancelled. Trained: {trained}."
        _warn("training cancelled")
    else:
        nuis = next(iter(session.results.values())).nuisances
        rho = (f" Flip rates used by the noise-aware methods: ρ01 = {_fmt(nuis.rho01)}, ρ10 = {_fmt(nuis.rho10)}."
               if nuis.rho01 is not None else "")
        status = (f"Done: trained {trained} with the {run.backbone} backbone on {history_device(session)}.{rho} "
                  "Open the **Compare** tab.")
        for res in session.results.values():
            if res.choice:
                status += f"\n\n**auto** kept **{res.config.method}**: {res.choice['reason']}."
        unlearned = {m: r.learned.verdict for m, r in session.results.items()
                     if r.learned is not None and not r.learned.passed}
        if unlearned:  # never "Done" for a model that did not learn (causalrm.gates.learning_gate)
            status = ("⚠️ " + "; ".join(f"**{m} {why}**" for m, why in unlearned.items())
                      + ": its scores are not a usable reward.\n\n" + status.replace("Done: trained", "Trained", 1))
    if job.peak_memory:
        status += f" Peak memory of the job: {job.peak_memory / 2**30:.1f} GB."
    yield view(status, _compare_updates(session))


def history_device(session: Session) -> str:
    devices = sorted({r.history.device for r in session.results.values()})
    return ", ".join(devices) or "–"


def cancel_training(state: Session | None = None) -> str:
    """Stop this session's training job: it leaves the queue, or stops within seconds (the methods already trained
    are kept; the current one keeps its best epoch when it stops cleanly)."""
    run = state.training if isinstance(state, Session) else None
    if run is None or run.job.finished:
        return "Nothing is training."
    run.job.cancel()
    return "Cancelling…"


class RestoreView(NamedTuple):
    """What the page-load handler returns (order = the components in app.ui)."""

    state: Session
    token: str
    summary: Any
    warnings: Any
    preview: Any
    embed_status: Any
    methods: Any
    flip_method: Any
    propensity_status: Any
    noise_status: Any
    train_status: Any
    curves: Any
    results: Any
    compare_a: Any
    compare_b: Any


RESTORED = ("Restored after a reload: fitted earlier with the settings shown (training uses them); press the button "
            "again to redraw the plots.")


@guarded
def restore_session(token: str | None, state: Session | None = None, request: gr.Request = None
                    ) -> Iterator[RestoreView]:
    """Page load: the session this tab showed before a reload (its ``token`` kept in the tab's sessionStorage) with
    its data, nuisances and trained models on screen again, following a training job that is still running; or a
    new session when there is none to restore."""
    from app.session import new_session, reattach

    page = getattr(request, "session_hash", None)
    session = state if isinstance(state, Session) else reattach(token, page or "")
    keep = gr.update()
    if session is None:
        session = new_session(page)
    if session.log is None:
        yield RestoreView(session, session.token, *[keep] * 13)
        return
    data = _data_view(session, notify=False)
    methods = data.methods
    if session.train_settings.get("methods"):
        methods = gr.update(choices=methods["choices"], value=session.train_settings["methods"])
    notes = [RESTORED if done else "" for done in (session.propensity is not None, session.flip is not None)]
    head = (session, session.token, data.summary, data.warnings, data.preview, data.embed_status, methods,
            data.flip_method, *notes)
    run = session.training
    if run is None:
        yield RestoreView(*head, keep, keep, keep, keep, keep)
        return
    if not run.job.finished:
        for view in follow_training(session):
            yield RestoreView(*head, *view[1:])
            head = (session, session.token, *[keep] * 8)
        return
    run.update(session, timeout=0)
    trained = ", ".join(session.results) or "nothing"
    a, b = _compare_updates(session)
    yield RestoreView(*head, f"Restored after a reload: trained {trained} ({run.job.state}).",
                      plots.loss_curves(_histories(session, run.live), order=run.methods), _results_table(session),
                      a, b)


# ======================================================================================================================
# 5. Compare
# ======================================================================================================================
class CompareView(NamedTuple):
    metrics: pl.DataFrame
    metrics_note: str
    metric_plot: Any
    scatter: Any
    rank_summary: str
    movers: pl.DataFrame
    prompt_choices: Any  # gr.update of the prompt dropdown
    ranking: pl.DataFrame
    cli: str
    download_csv: str | None
    download_parquet: str | None
    download_zip: str | None


def _run_scored(session: Session, method: str) -> pl.DataFrame:
    from causalrm.runs import SCORED

    path = session.run_dirs.get(method)
    if path is not None and (path / SCORED).is_file():
        scored = pl.read_parquet(path / SCORED)
        if scored.height == session.log.height:
            return scored
    from causalrm.runs import scored_table

    res = session.results[method]
    return scored_table(session.log, res.score(session.log, session.X), split=res.split)


def _run_evaluation(session: Session, method: str, rewards: np.ndarray) -> dict[str, Any] | None:
    """Clean-label metrics of a run (written by ``save_run``; recomputed with ``evaluate_scores`` if absent)."""
    from causalrm.evaluation import evaluate_scores
    from causalrm.runs import METRICS

    path = session.run_dirs.get(method)
    if path is not None and (path / METRICS).is_file():
        import json

        test = json.loads((path / METRICS).read_text(encoding="utf-8")).get("test")
        if test is not None and test.get("ci"):
            return test
    res = session.results[method]
    return evaluate_scores(session.log, rewards, split=res.split, n_boot=200, seed=res.config.seed)


def _metric_cell(value: Any, ci: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if ci and ci[0] is not None and ci[1] is not None and all(math.isfinite(float(c)) for c in ci):
        return f"{value:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.4f}"


def _group_column(df: pl.DataFrame) -> str | None:
    if schema.PAIR_ID in df.columns and df[schema.PAIR_ID].is_not_null().all():
        return schema.PAIR_ID
    return schema.PROMPT if schema.PROMPT in df.columns else None


def _short(text: Any, n: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _check_pair(session: Session, a: str | None, b: str | None) -> tuple[str, str]:
    trained = list(session.results)
    if not trained:
        raise InputError("no trained models yet: train at least one method on the Train tab")
    a = a or ("naive" if "naive" in trained else trained[0])
    b = b or trained[-1]
    for m in (a, b):
        if m not in trained:
            raise InputError(f"method {m!r} has not been trained in this session; trained: {', '.join(trained)}")
    return a, b


@guarded
def compare_models(state: Session | None, method_a: str | None = None, method_b: str | None = None,
                   progress=gr.Progress()) -> CompareView:
    """Metrics vs clean / gold labels with CIs, reward scatter, ranking comparison (Kendall τ, rank shifts),
    downloads and the equivalent CLI commands."""
    from causalrm.evaluation import compare_rankings
    from causalrm.io import write_table_atomic

    session = _require(state)
    a, b = _check_pair(session, method_a, method_b)
    progress(0.1, desc="collecting scores")
    scored = {m: _run_scored(session, m) for m in session.results}
    rewards = {m: df["reward"].to_numpy().astype(np.float64) for m, df in scored.items()}

    # ---- metrics -------------------------------------------------------------------------------------------------
    progress(0.3, desc="metrics")
    rows, bars, evals = [], [], {}
    for method in session.results:
        ev = _run_evaluation(session, method, rewards[method])
        evals[method] = ev
        if ev is None:
            continue
        m, ci = ev["metrics"], ev.get("ci") or {}
        row = {"method": method}
        for key in ("mse", "mae", "r2", "auroc", "pearson"):
            row[key] = _metric_cell(m.get(key), ci.get(key))
        held = (ev.get("by_split") or {}).get("held_out")
        if held:
            row["r2 held-out"] = _metric_cell(held["metrics"].get("r2"), None)
        rows.append(row)
        r2_ci = ci.get("r2") or (None, None)
        bars.append({"method": method, "value": m.get("r2"), "lo": r2_ci[0], "hi": r2_ci[1]})
    if rows and "naive" in evals and ORACLE in evals and evals["naive"] and evals[ORACLE]:
        r2_naive, r2_oracle = evals["naive"]["metrics"]["r2"], evals[ORACLE]["metrics"]["r2"]
        gap = r2_oracle - r2_naive
        for row in rows:
            r2 = evals[row["method"]]["metrics"]["r2"]
            row["naive→oracle R² gap closed"] = (f"{(r2 - r2_naive) / gap:.0%}" if abs(gap) > 1e-9 else "–")
    if rows:
        metrics_df = pl.DataFrame(rows)
        ev0 = next(e for e in evals.values() if e is not None)
        note = (f"Metrics of σ(z) against **{ev0['label']}** on {ev0['rows']} ({ev0['n']:,} rows), with 95% "
                "bootstrap intervals. Lower MSE/MAE, higher R²/AUROC/Pearson are better.")
        if ev0["label"] == schema.GOLD_LABEL:
            note += (" Gold labels sit on rows the models were also trained on (with noisy feedback); "
                     "'r2 held-out' uses only the validation rows.")
        if ev0["label"] == schema.TRUE_LABEL and ORACLE not in evals:
            note += " Train `oracle` too to see the ceiling of this representation."
        note = _verdict_md(session, a, b, rewards) + "\n\n" + note
        metric_fig = plots.metric_bars([r for r in bars if r["value"] is not None], metric="R²",
                                       order=list(session.results))
    else:
        metrics_df = pl.DataFrame({"method": list(session.results)})
        note = ("This log has no clean labels (no test split with `true_label`, no `gold_label`): only the ranking "
                "comparison is available.")
        metric_fig = plots.empty("no clean labels to evaluate against")

    # ---- scatter -------------------------------------------------------------------------------------------------
    from causalrm.evaluation import evaluation_rows, sigmoid

    found = evaluation_rows(session.log)
    if found is not None:
        idx, label_col, _ = found
        labels = session.log[label_col].cast(pl.Float64).to_numpy()[idx]
    else:
        idx, label_col, labels = np.arange(session.log.height), None, None
    hover = [_short(r, 90) for r in session.log[schema.RESPONSE].gather(idx).to_list()]
    scatter = plots.reward_scatter(sigmoid(rewards[a][idx]), sigmoid(rewards[b][idx]), x_name=a, y_name=b,
                                   labels=labels, label_name=label_col or "label", hover=hover)

    # ---- rankings ------------------------------------------------------------------------------------------------
    progress(0.6, desc="ranking comparison")
    if a == b:
        raise InputError("pick two different methods to compare rankings")
    cmp = compare_rankings(scored[a], scored[b], names=(a, b), top_k=10, n_shifts=15)
    unlearned = [m for m in (a, b) if session.results[m].learned is not None and not session.results[m].learned.passed]
    lines = [f"⚠️ **{' and '.join(unlearned)} did not learn**: the rank shifts below are noise, not findings."
             ] if unlearned else []
    lines += [f"**{a}** vs **{b}** on {cmp.n:,} responses: Kendall τ = **{cmp.kendall:+.3f}**, Spearman ρ = "
             f"{cmp.spearman:+.3f}, top-{cmp.top_k} overlap {cmp.top_k_overlap:.0%}."]
    if cmp.n_prompts:
        lines.append(f"Within prompts ({cmp.n_prompts:,} with ≥ 2 responses): mean Kendall τ "
                     f"{_fmt(cmp.prompt_kendall_mean)}, same top response in "
                     f"{_fmt(100 * cmp.prompt_top1_agreement, 0)}% "
                     "of prompts.")
    if cmp.gold_column:
        lines.append(f"Against `{cmp.gold_column}` ({cmp.n_gold:,} rows): Kendall τ "
                     + ", ".join(f"{k} {_fmt(v)}" for k, v in cmp.gold_kendall.items()) + ".")
    movers = pl.DataFrame([{"rank " + a: s["rank_a"], "rank " + b: s["rank_b"], "shift": s["shift"],
                            "response": _short(s.get(schema.RESPONSE), 300),
                            "prompt": _short(s.get(schema.PROMPT), 160), "response_id": s["response_id"]}
                           for s in cmp.shifts]
                          ) if cmp.shifts else pl.DataFrame({"shift": []})
    choices, default = _prompt_choices(session.log, cmp)
    ranking = prompt_ranking_table(session, a, b, default, rewards=rewards) if default is not None else pl.DataFrame()

    # ---- downloads -----------------------------------------------------------------------------------------------
    progress(0.85, desc="preparing downloads")
    out = session.folder("downloads")
    table = scored_log(session, rewards)
    csv_path, pq_path = out / "scored_log.csv", out / "scored_log.parquet"
    write_table_atomic(table, csv_path)
    write_table_atomic(table, pq_path)
    zip_path = _zip_runs(session, out / "runs.zip")
    return CompareView(metrics_df, note, metric_fig, scatter, "\n\n".join(lines), movers,
                       gr.update(choices=choices, value=default), ranking, cli_command(session),
                       str(csv_path), str(pq_path), str(zip_path) if zip_path else None)


def _verdict_md(session: Session, a: str, b: str, rewards: dict[str, np.ndarray]) -> str:
    """The Compare tab's verdict (``causalrm.evaluation.labelled_verdict``): is the debiased model of the pair
    better, level or worse than the other on the clean / gold labels, why (failed gates, the learning check), and
    what the corrections can change."""
    from causalrm.evaluation import READING_GUIDE, labelled_verdict, sigmoid

    base, deb = (a, b) if a == "naive" or b != "naive" else (b, a)
    res = session.results[deb]
    reasons = [f"{g.verdict} ({'Propensity' if g.name == 'propensity' else 'Noise'} tab)"
               for g in res.nuisances.gates.values() if not g.passed]
    reasons += [f"{m} {session.results[m].learned.verdict} (Train tab)" for m in (base, deb)
                if session.results[m].learned is not None and not session.results[m].learned.passed]
    name = f"{deb} (auto kept {res.config.method})" if res.choice else deb
    out = labelled_verdict(session.log, sigmoid(rewards[base]), sigmoid(rewards[deb]), baseline=base,
                           debiased=name, split=res.split, reasons=reasons, n_boot=500)
    if out is None:
        return "No clean labels: no verdict is possible here; audited gold labels would give one."
    return f"**Verdict.** {out['verdict']}\n\n*Reading guide:* {READING_GUIDE}"


def _prompt_choices(log: pl.DataFrame, cmp: Any) -> tuple[list[tuple[str, str]], str | None]:
    """Dropdown choices (label, group key) of prompts with >= 2 responses, most disputed first."""
    col = _group_column(log)
    if col is None or not cmp.prompt_kendall:
        return [], None
    ranked = sorted(cmp.prompt_kendall, key=lambda p: (p["kendall"] if math.isfinite(p["kendall"]) else 2.0,
                                                       -p["n"]))[:200]
    keys = [p["group"] for p in ranked]
    sub = log.filter(pl.col(col).cast(pl.String).is_in(keys)).group_by(pl.col(col).cast(pl.String).alias("_k")).agg(
        pl.col(schema.PROMPT).first())
    prompt_of = dict(zip(sub["_k"].to_list(), sub[schema.PROMPT].to_list()))
    choices = []
    for p in ranked:
        text = _short(prompt_of.get(p["group"]), 70) or "(no prompt text)"
        tau = f"τ {p['kendall']:+.2f}" if math.isfinite(p["kendall"]) else "τ n/a"
        choices.append((f"{text} · {p['n']} responses · {tau}", p["group"]))
    return choices, (choices[0][1] if choices else None)


def prompt_ranking_table(session: Session, a: str, b: str, key: str | None,
                         rewards: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
    """The responses of one prompt side by side: each method's reward and rank within the prompt, and the shift."""
    log = session.log
    col = _group_column(log)
    if col is None or key is None:
        return pl.DataFrame()
    idx = np.flatnonzero((log[col].cast(pl.String) == str(key)).fill_null(False).to_numpy())
    if idx.size == 0:
        raise InputError(f"prompt {key!r} is not in this log")
    if rewards is None:
        rewards = {m: _run_scored(session, m)["reward"].to_numpy().astype(np.float64) for m in (a, b)}
    za, zb = rewards[a][idx], rewards[b][idx]
    rank_a = np.empty(idx.size, dtype=np.int64)
    rank_a[np.argsort(-za, kind="stable")] = np.arange(1, idx.size + 1)
    rank_b = np.empty(idx.size, dtype=np.int64)
    rank_b[np.argsort(-zb, kind="stable")] = np.arange(1, idx.size + 1)
    sub = log[idx.tolist()]
    data = {f"rank {a}": rank_a, f"rank {b}": rank_b, "shift": rank_b - rank_a, f"reward {a}": np.round(za, 4),
            f"reward {b}": np.round(zb, 4)}
    for c in (schema.TRUE_LABEL, schema.GOLD_LABEL, schema.FEEDBACK):
        if c in sub.columns:
            data[c] = sub[c].to_list()
    data["response"] = [_short(r, 400) for r in sub[schema.RESPONSE].to_list()]
    return pl.DataFrame(data).sort(f"rank {b}")


@guarded
def prompt_ranking(state: Session | None, method_a: str | None, method_b: str | None, key: str | None
                   ) -> pl.DataFrame:
    """Side-by-side ranking of the responses of one prompt (the Compare tab's prompt picker)."""
    session = _require(state)
    a, b = _check_pair(session, method_a, method_b)
    return prompt_ranking_table(session, a, b, key)


def _zip_runs(session: Session, path: Path) -> Path | None:
    if not session.run_dirs:
        return None
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for method, folder in session.run_dirs.items():
            for file in sorted(Path(folder).rglob("*")):
                if file.is_file():
                    zf.write(file, Path("runs") / method / file.relative_to(folder))
        zf.writestr("README.txt", "CausalRM Workbench runs (one folder per method). Reproduce with:\n\n"
                    + cli_command(session) + "\n")
    os.replace(tmp, path)
    return path


def scored_log(session: Session, rewards: dict[str, np.ndarray]) -> pl.DataFrame:
    """The log with ``reward_<method>`` (logit z) and ``preference_<method>`` (σ(z)) per trained method."""
    from causalrm.evaluation import sigmoid

    cols = []
    for method, z in rewards.items():
        name = method.replace("-", "_")
        cols.append(pl.Series(f"reward_{name}", z, dtype=pl.Float64))
        cols.append(pl.Series(f"preference_{name}", sigmoid(z), dtype=pl.Float64))
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
    if cfg.get("propensity_model", "auto") != "auto":
        opts.append(f"--propensity-model {cfg['propensity_model']}")
    if cfg.get("force_noise_correction"):
        opts.append("--force-noise-correction")
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
    if ts.get("select_head"):
        opts.append("--select-head")
    if session.embed_model and session.embed_model.rsplit("/", 1)[-1] != DEFAULT_EMBEDDER:
        opts.append(f"--model {shlex.quote(session.embed_model)}")
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
