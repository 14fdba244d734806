"""Every fit on a log: the nuisances once, then each method, with events for progress.

The one orchestration. ``fit_log`` (one method: ``causalrm.CausalRM.fit`` and so ``causalrm fit``), the
app's training worker (``app/train_worker.py``), the bench (``causalrm.workflows.bench``) and the notebooks all run
:func:`fit_methods`:

1. **Nuisances, once** (:func:`shared_nuisances`): ``nuisances.fit_nuisances`` for the union of what every method
   needs (the method registry, ``causalrm.estimators.methods``; ``auto`` stands for its candidates), on one split. When
   ``auto`` is among the methods and its candidates' nuisances cannot all be fitted (a feedback-only log has no
   propensity; an implicit log without event rates no flip rates), the registry's ``nuisance_fallbacks`` are tried
   in turn and each failure is recorded (``diagnostics["nuisance_errors"]``, which ``auto``'s choice reports); the
   methods named besides ``auto`` still need theirs. Nuisances the caller already has (e.g. the ones a user inspected
   on the app's Propensity and Noise tabs, or one fit per seed in the bench) are reused; what they lack is fitted on
   the same rows and added (:func:`complete_nuisances`).
2. **Each method**, ``auto`` last. A method is one or several configurations, each trained by ``pipeline.fit_one``
   on those nuisances, then a choice among them (``causalrm.workflows.selection``): ``auto``'s admissible candidates (a
   candidate fitted here with the same settings is reused, so "naive, auto" trains naive once; ``select_method``),
   ``select_head``'s two heads (``choose_head``).
3. Optionally each result is **saved** as a run directory (``runs.save_run``) as soon as it is fitted.

Events (``on_event(kind, method, payload)``): ``("stage", None, text)`` (nuisance stages), ``("stage", method,
text)`` (``"training"``, auto's ``"training m"``), ``("start", method, None)``, ``("epoch", method, (epoch,
max_epochs, train_loss, val_estimate))``, ``("done", method, {"result": FitResult, "seconds": s, "run_dir": path or
None})``. ``should_stop()`` is polled between epochs and methods (a cancelled method keeps its best epoch; the
remaining ones are not started).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.feedback_kinds import as_impressions
from causalrm.data.mixed_feedback import as_training_rows
from causalrm.data.pairwise import is_pair_log
from causalrm.data.splits import resolve_split
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.estimators.methods import AUTO
from causalrm.nuisances.container import Nuisances, StageFn
from causalrm.nuisances.fit import fit_nuisances
from causalrm.nuisances.signal import _fit_rows_X
from causalrm.training.backbones.base import get_backbone_class
from causalrm.workflows.pipeline import FitResult, fit_one
from causalrm.workflows.selection import admissible, choose_head, head_candidates, select_method, selects_heads

EventFn = Callable[[str, "str | None", Any], None]


def _configs(config: FitConfig, methods: Sequence[str],
             config_for: Callable[[str], FitConfig] | None) -> dict[str, FitConfig]:
    if not methods:
        raise InputError("give at least one method to fit")
    make = config_for or (lambda m: config.replace(method=m))
    return {m: make(m).validate() for m in dict.fromkeys(methods)}


def methods_needed(configs: dict[str, FitConfig]) -> list[str]:
    """Every estimator the configurations train or validate with (``auto``: its candidates), in order."""
    return list(dict.fromkeys(m for c in configs.values() for m in c.methods_needed()))


def complete_nuisances(log: pl.DataFrame, X: np.ndarray | None, config: FitConfig, nuisances: Nuisances,
                       methods: Sequence[str], *, on_stage: Callable[[str], None] | None = None) -> Nuisances:
    """``nuisances`` with whatever ``methods`` need and it lacks fitted on its rows and split (the fields it holds
    are kept as they are); ``nuisances`` itself when nothing is missing."""
    if not registry.lacking(list(methods), nuisances.provides()):
        return nuisances
    split = np.full(log.height, schema.TEST, dtype=object)
    split[nuisances.rows] = nuisances.split
    fresh = fit_nuisances(log, X, config, methods=list(methods), split=split, on_stage=on_stage, reuse=nuisances)
    keep = {f.name: getattr(nuisances, f.name) for f in dataclasses.fields(nuisances)
            if f.name not in ("rows", "split", "diagnostics", "gates") and getattr(nuisances, f.name) is not None}
    if "flip_rates" in nuisances.provides():
        keep.setdefault("rho_ci", nuisances.rho_ci)
    merged = dataclasses.replace(fresh, **keep)
    merged.diagnostics = {**fresh.diagnostics, **nuisances.diagnostics,
                          "seconds": {**fresh.diagnostics.get("seconds", {}),
                                      **nuisances.diagnostics.get("seconds", {})}}
    merged.gates = {**fresh.gates, **nuisances.gates}
    return merged


def _first_that_fits(fit: Callable[[list[str]], Nuisances], first: list[str], required: list[str]) -> Nuisances:
    """``fit(first)``, else ``fit(required + baseline + fallback)`` for each of the registry's
    ``nuisance_fallbacks`` in turn (the last attempt's error propagates); the failed attempts' one-line errors are
    recorded in the result's ``diagnostics["nuisance_errors"]``."""
    attempts = [list(first)] + [list(dict.fromkeys([*required, registry.BASELINE, *extra]))
                                for extra in registry.nuisance_fallbacks()]
    errors: dict[str, str] = {}
    for attempt in attempts[:-1]:
        try:
            nuisances = fit(attempt)
            break
        except InputError as err:
            errors[" + ".join(m for m in attempt if m != registry.BASELINE) or registry.BASELINE] = str(err)
    else:
        nuisances = fit(attempts[-1])
    if errors:
        nuisances.diagnostics["nuisance_errors"] = errors
    return nuisances


def shared_nuisances(log: pl.DataFrame, X: np.ndarray | None, config: FitConfig, methods: Sequence[str], *,
                     config_for: Callable[[str], FitConfig] | None = None, nuisances: Nuisances | None = None,
                     on_event: EventFn | None = None) -> Nuisances:
    """The nuisances every one of ``methods`` needs, fitted once (step 1 of the module docstring) with the first
    method's configuration (``config_for(m)``, default ``config.replace(method=m)``)."""
    configs = _configs(config, methods, config_for)
    needed = methods_needed(configs)
    first = next(iter(configs.values()))
    on_stage = None if on_event is None else (lambda text: on_event("stage", None, text))

    def fit(needs: list[str]) -> Nuisances:
        if nuisances is None:
            return fit_nuisances(log, X, first, methods=needs, on_stage=on_stage)
        return complete_nuisances(log, X, first, nuisances, needs, on_stage=on_stage)

    if AUTO not in configs:
        return fit(needed)
    return _first_that_fits(fit, needed, methods_needed({m: c for m, c in configs.items() if m != AUTO}))


def _fit_rows_embeddings(log: pl.DataFrame, X: np.ndarray | None, configs: dict[str, FitConfig],
                         nuisances: Nuisances | None) -> np.ndarray | None:
    """``X``, or (None given) the fitting rows embedded once with the first configuration's embedder when a
    backbone or a nuisance reads embeddings (the nuisances and every fit then share them)."""
    first = next(iter(configs.values()))
    if X is not None or not (any(get_backbone_class(c.backbone).needs_embeddings for c in configs.values())
                             or registry.lacking(methods_needed(configs), set())):
        return X
    if nuisances is not None:
        rows = nuisances.rows
    else:
        rows = np.flatnonzero(resolve_split(log, val_fraction=first.val_fraction, seed=first.seed) != schema.TEST)
    return _fit_rows_X(log, None, rows, first)


def _fit_each(configs: dict[str, FitConfig], fit: Callable[[str, FitConfig], FitResult],
              stop: Callable[[], bool] = lambda: False) -> dict[str, FitResult]:
    """``fit(name, config)`` for each in order; not started once ``stop()``, none after a cancelled fit."""
    out: dict[str, FitResult] = {}
    for name, cfg in configs.items():
        if stop():
            break
        out[name] = fit(name, cfg)
        if out[name].history.stop_reason == "cancelled":
            break
    return out


def fit_methods(
    log: pl.DataFrame,
    X: np.ndarray | None,
    config: FitConfig,
    methods: Sequence[str],
    *,
    config_for: Callable[[str], FitConfig] | None = None,
    nuisances: Nuisances | None = None,
    on_event: EventFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    save_to: str | Path | None = None,
    source: str | None = None,
    reuse: Callable[[FitConfig, FitConfig], bool] | None = None,
) -> dict[str, FitResult]:
    """Fit every one of ``methods`` on shared nuisances (module docstring); returns ``{method: FitResult}`` in the
    order they were fitted (``auto`` last). ``X``: embeddings aligned with the log's rows (or its train + val rows),
    or None to embed with ``config.embedder``. ``config_for(method)``: each method's configuration (default
    ``config.replace(method=method)``). ``nuisances``: fitted earlier on this log (completed with what the methods
    lack). ``save_to``: write each result to ``save_to / method`` (``source``: where the log came from, recorded in
    the run). ``reuse(candidate_config, auto_config)``: whether ``auto`` may reuse a candidate fitted here (default:
    when the two differ in nothing but the method and ``force_noise_correction``, which decides whether a fit is
    allowed, never how it trains)."""
    if not isinstance(log, pl.DataFrame):
        raise InputError(f"log must be a polars DataFrame, got {type(log).__name__}")
    configs = _configs(config, methods, config_for)
    log = as_impressions(log)  # implicit feedback (copies, clicks): every impression observed
    log, X = as_training_rows(log, X, config)  # a mixed log: one row per (impression, signal)
    emit = on_event or (lambda kind, method, payload: None)
    with cpu_threads(config.num_threads):
        X_fit = _fit_rows_embeddings(log, X, configs, nuisances)
        t_nuisances = 0.0
        if nuisances is None or registry.lacking(methods_needed(configs), nuisances.provides()):
            t0 = time.perf_counter()
            nuisances = shared_nuisances(log, X_fit, config, list(configs), config_for=config_for,
                                         nuisances=nuisances, on_event=on_event)
            t_nuisances = time.perf_counter() - t0
        reusable = reuse or _same_settings
        fitted: dict[str, FitResult] = {}

        def fit_method(method: str, cfg: FitConfig) -> FitResult:
            emit("start", method, None)

            def fit(cfg: FitConfig, announce: bool = True) -> FitResult:  # its heads when select_head, else itself
                def one(_: Any, c: FitConfig) -> FitResult:
                    return fit_one(log, X_fit, c, nuisances, should_stop=should_stop,
                                   on_stage=(lambda text: emit("stage", method, text)) if announce else None,
                                   progress=lambda *epoch: emit("epoch", method, epoch))
                if not selects_heads(cfg):
                    return one(None, cfg)
                return choose_head(list(_fit_each(dict(enumerate(head_candidates(cfg))), one).values()))

            t0 = time.perf_counter()
            if method == AUTO:
                result = _fit_auto(cfg, lambda c: fit(c, announce=False),  # auto announces "training m" itself
                                   {m: r for m, r in fitted.items() if reusable(r.config, cfg)}, log, nuisances,
                                   lambda text: emit("stage", AUTO, text))
            else:
                result = fitted[method] = fit(cfg)
            seconds = time.perf_counter() - t0
            if t_nuisances and len(configs) == 1:  # the one fit: its seconds include the nuisances fitted for it
                result.seconds = {**result.seconds, "nuisances": result.seconds.get("nuisances", 0.0) + t_nuisances,
                                  "total": result.seconds.get("total", 0.0) + t_nuisances}
            run_dir = None
            if save_to is not None:
                from causalrm.workflows.runs import save_run

                emit("stage", method, f"saving the {method} run")
                run_dir = save_run(result, log, X, Path(save_to) / method, source=source)
            emit("done", method, {"result": result, "seconds": seconds, "run_dir": run_dir})
            return result

        ordered = {m: configs[m] for m in sorted(configs, key=lambda m: m == AUTO)}  # auto last: it reuses the fits
        return _fit_each(ordered, fit_method, should_stop or (lambda: False))


def _fit_auto(config: FitConfig, fit: Callable[[FitConfig], FitResult], fitted: dict[str, FitResult],
              log: pl.DataFrame, nuisances: Nuisances, on_stage: Callable[[str], None]) -> FitResult:
    """``auto``: each admissible candidate (``selection.admissible``) fitted, or reused from ``fitted`` (results
    trained on these nuisances with ``config``'s settings), then ``selection.select_method``'s choice."""
    skipped: dict[str, str] = {}
    todo: dict[str, FitConfig] = {}
    pairs = is_pair_log(log)
    candidates = [m for m in config.candidate_methods if registry.applies(m, pairs=pairs)]
    for m in candidates:
        why = admissible(m, nuisances, config.force_noise_correction,
                         heads_on_embeddings=get_backbone_class(config.backbone).selects_head)
        if why is not None:
            skipped[m] = why
        elif m not in fitted:
            todo[m] = config.replace(method=m)

    def fit_candidate(m: str, cfg: FitConfig) -> FitResult:
        on_stage(f"training {m}")
        return fit(cfg)

    new = _fit_each(todo, fit_candidate)
    results = {m: fitted[m] if m in fitted else new[m] for m in candidates
               if m not in skipped and (m in fitted or m in new)}
    return select_method(results, log, nuisances, config, skipped)


def _same_settings(a: FitConfig, b: FitConfig) -> bool:
    """Whether a fit with ``a`` is the fit ``auto`` (config ``b``) would make of that candidate."""
    return a.replace(force_noise_correction=False) == b.replace(method=a.method, force_noise_correction=False)


__all__ = ["complete_nuisances", "fit_methods", "methods_needed", "shared_nuisances"]


def fit_log(
    log: pl.DataFrame,
    X: np.ndarray | None,
    config: FitConfig | None = None,
    *,
    progress: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    nuisances: Nuisances | None = None,
    on_stage: StageFn | None = None,
) -> FitResult:
    """Fit ``config.method`` on ``log`` (module docstring) through the one orchestration
    (``causalrm.workflows.orchestrate.fit_methods`` with this one method): nuisances once on train + val, training on train,
    early stopping on the method's estimate on val. Test rows are never read.

    ``X``: embeddings aligned with the log's rows (or with its train + val rows only), or None to embed with
    ``config.embedder``. ``nuisances``: reuse a :func:`fit_nuisances` result (e.g. one per seed shared by several
    methods in the bench; it must come from the same log and split). ``progress(epoch, max_epochs, train_loss,
    val_estimate)``, ``should_stop()``: see :func:`causalrm.training.trainer.train`. ``on_stage(name)`` announces
    ``"propensity"``, ``"flip rates"``, ``"pseudo-labels"``, ``"training"`` (``auto``: ``"training m"``).
    """
    from causalrm.workflows.orchestrate import fit_methods

    config = (config or FitConfig()).validate()

    def on_event(kind: str, method: str | None, payload: Any) -> None:
        if kind == "stage" and on_stage is not None:
            on_stage(payload)
        elif kind == "epoch" and progress is not None:
            progress(*payload)

    results = fit_methods(log, X, config, [config.method], nuisances=nuisances, on_event=on_event,
                          should_stop=should_stop)
    if config.method not in results:
        raise InputError("the fit was cancelled before it started")
    return results[config.method]
