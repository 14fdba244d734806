"""What every tab shares: the choices several tabs offer, server-wide settings, error handling and small views.

Handlers that use the session take it (the ``gr.State`` value, possibly ``None``) first and, when they change it,
return it first, then what their tab displays. They call :mod:`causalrm` only; nothing in the app estimates anything.
Failures never escape as stack traces: :func:`guarded` turns :class:`causalrm.errors.InputError` into ``gr.Error``
with the same one-line message, and any other exception into a short ``gr.Error`` with a reference that is logged
server-side with the traceback.

The handlers work without a server too (tests call them directly): ``gr.Progress`` and ``gr.Warning`` are no-ops
outside an event.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import polars as pl

from app.session import Session
from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.feedback_kinds import IMPLICIT, IMPLICIT_NEEDS, PAIRWISE, kind_of
from causalrm.data.pairwise import count_swapped
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.estimators.methods import AUTO as AUTO_METHOD
from causalrm.estimators.methods import BASELINE, app_methods, plain
from causalrm.options import choice_labels

logger = logging.getLogger("causalrm.app")

# ---- choices shown on more than one tab ------------------------------------------------------------------------------
DEFAULT_EMBEDDER = schema.DEFAULT_EMBEDDER
#: the Train tab's methods: the method registry's ``app`` specs (``causalrm.estimators.methods.app_methods``; those reading
#: clean labels, the oracle, only on logs that have them)
TRAIN_METHODS = app_methods()
ORACLE = "oracle"
DEFAULT_METHODS = (BASELINE, AUTO_METHOD)  # what the app compares unless told otherwise
#: the Noise tab's flip-rate estimates, display label -> FitConfig.flip_method (its choices and labels; "fixed" is the
#: tab's manual override)
FLIP_METHODS = choice_labels(FitConfig, "flip_method", mark_default=True, exclude=("fixed",))
#: the Noise tab's estimate on an implicit log: the event rates given on the tab (rho01 = 1 - c, rho10 = eps)
EVENT_RATES = "event rates c, ε (given below)"
#: what identifies an implicit log's event rates, in the app's words (``feedback_kinds.IMPLICIT_NEEDS``: the CLI's)
IMPLICIT_NEEDS_APP = ("label a few hundred rows on the Audit tab (then choose gold labels on the Noise tab), or give "
                      "the event rates on the Noise tab (c, the share of good responses that get the event, and ε, "
                      "the rate of accidental events on bad ones)")
#: the Propensity tab's models (FitConfig.propensity_model's choices)
PROPENSITY_MODELS = choice_labels(FitConfig, "propensity_model")
DEVICES = ("auto", "cuda", "cpu")
UPLOAD_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".gz")
#: browser code run after a success: error toasts of earlier attempts are out of date
CLEAR_ERRORS = "() => { document.querySelectorAll('button.toast-close.error').forEach((b) => b.click()); }"


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
        import torch._dynamo  # noqa: F401 - the first torch optimiser imports it (1.5 s): not in a user's first fit

        import causalrm.data.datasets  # noqa: F401
        import causalrm.data.io  # noqa: F401
        import causalrm.data.validate  # noqa: F401
        import causalrm.evaluation.metrics  # noqa: F401
        import causalrm.nuisances.flip_rates  # noqa: F401
        import causalrm.nuisances.propensity  # noqa: F401
        import causalrm.simulation.simulate  # noqa: F401
        import causalrm.workflows.pipeline  # noqa: F401
        import causalrm.workflows.runs  # noqa: F401
        from causalrm.embeddings.embedder import Embedder

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
    message = message.replace(IMPLICIT_NEEDS, IMPLICIT_NEEDS_APP).replace("use --method naive", "train naive")
    if "--map" in message:
        message = re.sub(r"--map\s+", "", message).rstrip(". ") + " (use the Column mapping fields on the Data tab)"
    message = re.sub(r"--event-rate\b", "the event rate c", message).replace("0 <= EPS < C <= 1", "0 ≤ ε < c ≤ 1")
    message = re.sub(r"--accidental-rate\b", "the accidental rate ε", message)
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


def notify(message: str) -> None:
    """A toast in the browser (a log line elsewhere)."""
    try:
        gr.Warning(message)
    except Exception:  # noqa: BLE001 - a toast must never break a handler
        logger.warning(message)


def require(session: Session | None, *, embeddings: bool = False) -> Session:
    """The session, once it has a log (and ``embeddings``, when asked); else InputError saying what to do first."""
    if not isinstance(session, Session) or session.log is None:
        raise InputError("no log loaded yet: load a sample or upload a log on the Data tab first")
    if embeddings and session.X is None:
        raise InputError("no embeddings yet: press 'Compute embeddings' on the Data tab first")
    return session


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt(x: Any, digits: int = 3) -> str:
    """A number for display (``digits`` decimals; – for none or not finite)."""
    if x is None:
        return "–"
    if isinstance(x, (float, np.floating)):
        return "–" if not math.isfinite(float(x)) else f"{float(x):.{digits}f}"
    return str(x)


def ci_text(ci: Any, key: str) -> str:
    """``ci[key]`` as ``[lo, hi]`` (– when absent)."""
    if not ci or key not in ci or ci[key] is None:
        return "–"
    lo, hi = ci[key]
    return f"[{lo:.3f}, {hi:.3f}]"


def gate_md(gate: Any) -> str:
    """A gate's verdict as one line (✅ passed, ⚠️ failed)."""
    if gate is None:
        return ""
    return f"{'✅' if gate.passed else '⚠️'} **{gate.verdict[0].upper()}{gate.verdict[1:]}.**"


def fit_config(session: Session, **overrides: Any):
    """The FitConfig implied by the session's choices on the Propensity, Noise and Train tabs."""
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


def run_scored(session: Session, method: str) -> pl.DataFrame:
    """A trained method's scored log: its run folder's copy, or scored again when that is missing or stale."""
    from causalrm.workflows.runs import SCORED

    path = session.run_dirs.get(method)
    if path is not None and (path / SCORED).is_file():
        scored = pl.read_parquet(path / SCORED)
        if scored.height == session.log.height:
            return scored
    from causalrm.workflows.runs import scored_table

    res = session.results[method]
    return scored_table(session.log, res.score(session.log, session.X), split=res.split)


def upload_path(file: Any) -> Path:
    """The uploaded file's path, once it exists, fits the upload limit and has a readable suffix."""
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


def has_gold(log: pl.DataFrame) -> bool:
    """Whether ``log`` has gold labels (its own, or an audit's)."""
    return schema.GOLD_LABEL in log.columns and bool(log[schema.GOLD_LABEL].is_not_null().any())


def flip_choices(log: pl.DataFrame) -> list[str]:
    """The Noise tab's flip-rate estimates for ``log``: *gold labels* only when it has some; on an implicit log the
    event rates given on the tab instead of the anchors (``causalrm.data.feedback_kinds``: no event is never a sure
    negative, so anchors cannot find its rates); *swapped-order duplicates* only on an A/B log that shows some pair
    in both orders (``causalrm.data.pairwise.count_swapped``)."""
    if kind_of(log) == IMPLICIT:
        return [EVENT_RATES] + [k for k, v in FLIP_METHODS.items() if v == "gold" and has_gold(log)]
    available = {"gold": has_gold(log), "duplicates": kind_of(log) == PAIRWISE and count_swapped(log) > 0}
    return [k for k, v in FLIP_METHODS.items() if available.get(v, True)]


def featureless(log: pl.DataFrame) -> np.ndarray:
    """A ``(rows, 0)`` matrix for the nuisances that read no features: an implicit log's propensity (1 on every row)
    and flip rates given or from gold labels."""
    return np.zeros((log.height, 0), dtype=np.float32)


def method_choices(log: pl.DataFrame, nuisances: Any = None) -> tuple[list[str], str]:
    """The Train tab's methods for ``log`` and a note on those left out. On an implicit log only the methods that
    apply (``causalrm.workflows.selection.admissible``: the registry's traits against the gates of ``nuisances``, the Noise
    tab's estimate, else the log's propensity alone: every impression observed, no flip rates yet); the flip-rate
    gate's verdict is the Noise tab's to show (a failed one is overridden on the Train tab)."""
    from causalrm.nuisances.fit import fit_nuisances
    from causalrm.workflows.selection import admissible

    clean = schema.TRUE_LABEL in log.columns and log[schema.TRUE_LABEL].null_count() < log.height
    choices = list(app_methods(clean_labels=clean))
    kind = kind_of(log)  # the methods with a form for the log (pairwise on an A/B log: the registry's trait), and auto
    choices = [m for m in choices if m == AUTO_METHOD or registry.applies(m, pairs=kind == PAIRWISE)]
    if kind != IMPLICIT:
        return choices, ""
    if nuisances is None:
        weighted = plain(weighted=True, noise_aware=False)  # the propensity alone
        try:  # p = 1 on every row: nothing is fitted
            nuisances = fit_nuisances(log, featureless(log), FitConfig(method=weighted), methods=[weighted])
        except InputError as err:
            return [BASELINE], ui_message(str(err))
    # the training job fits pseudo-labels on the rows (q needs the flip rates): count them as there
    fitted_later = {"pseudo_label_noisy": np.zeros(0)}
    if "flip_rates" in nuisances.provides():
        fitted_later["pseudo_label"] = np.zeros(0)
    nuisances = dataclasses.replace(nuisances, **fitted_later)
    left_out: dict[str, list[str]] = {}
    for m in choices:
        why = None if m == AUTO_METHOD else admissible(m, nuisances, force_noise_correction=True)
        if why is not None:
            left_out.setdefault(why, []).append(m)
    note = "Left out on this implicit log: " + "; ".join(f"{', '.join(ms)} {why}" for why, ms in left_out.items())
    if "flip_rates" not in nuisances.provides():
        note += f". Noise-aware methods need the event rates: {IMPLICIT_NEEDS_APP}"
    return [m for m in choices if not any(m in ms for ms in left_out.values())], note


def methods_update(log: pl.DataFrame, nuisances: Any = None, selected: Sequence[str] | None = None) -> Any:
    """A ``gr.update`` of the Train tab's methods (:func:`method_choices`): ``selected`` (default naive and auto)
    where still offered."""
    choices, note = method_choices(log, nuisances)
    keep = [m for m in (DEFAULT_METHODS if selected is None else selected) if m in choices]
    return gr.update(choices=choices, value=keep or [m for m in DEFAULT_METHODS if m in choices], info=note)
