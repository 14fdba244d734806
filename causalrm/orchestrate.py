"""Several estimators on one log: the nuisances once, then each method, with events for progress.

The one orchestration the CLI's estimator (``causalrm.estimator.CausalRM``), the app's training worker
(``app/train_worker.py``), the bench (``causalrm.bench``) and the notebooks share:

1. **Nuisances, once** (:func:`shared_nuisances`): ``pipeline.fit_nuisances`` for the union of what every method
   needs (``causalrm.methods``; ``auto`` stands for its candidates), on one split. Nuisances the caller already has
   (e.g. the ones a user inspected on the app's Propensity and Noise tabs, or one fit per seed in the bench) are
   reused; what they lack is fitted on the same rows and added (:func:`complete_nuisances`).
2. **Each method** with ``pipeline.fit_log`` on those nuisances; ``auto`` last, reusing the candidates already
   fitted with the same settings (``selection.fit_auto(fitted=...)``), so "naive, auto" trains naive once.
3. Optionally each result is **saved** as a run directory (``runs.save_run``) as soon as it is fitted.

Events (``on_event(kind, method, payload)``): ``("stage", None, text)`` (nuisance stages, auto's "training m"),
``("start", method, None)``, ``("epoch", method, (epoch, max_epochs, train_loss, val_estimate))``,
``("done", method, {"result": FitResult, "seconds": s, "run_dir": path or None})``. ``should_stop()`` is polled
between epochs and methods (a cancelled method keeps its best epoch; the remaining ones are not started).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from causalrm.errors import InputError
from causalrm.feedback_kinds import as_impressions
from causalrm.methods import AUTO
from causalrm.config import FitConfig
from causalrm.nuisances import Nuisances, fit_first, fit_nuisances, needs_of
from causalrm.pipeline import FitResult, fit_log

EventFn = Callable[[str, "str | None", Any], None]


def _configs(config: FitConfig, methods: Sequence[str],
             config_for: Callable[[str], FitConfig] | None) -> dict[str, FitConfig]:
    if not methods:
        raise InputError("give at least one method to fit")
    make = config_for or (lambda m: config.replace(method=m))
    return {m: make(m) for m in dict.fromkeys(methods)}


def methods_needed(configs: dict[str, FitConfig]) -> list[str]:
    """Every estimator the configurations train or validate with (``auto``: its candidates), in order."""
    return list(dict.fromkeys(m for c in configs.values() for m in c.methods_needed()))


def complete_nuisances(log: pl.DataFrame, X: np.ndarray | None, config: FitConfig, nuisances: Nuisances,
                       methods: Sequence[str], *, on_stage: Callable[[str], None] | None = None) -> Nuisances:
    """``nuisances`` with whatever ``methods`` need and it lacks fitted on its rows and split (the fields it holds
    are kept as they are); ``nuisances`` itself when nothing is missing."""
    missing = needs_of(list(methods)) - {"true_label"} - nuisances.provides()
    if not missing:
        return nuisances
    split = np.full(log.height, "test", dtype=object)
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
    # auto skips the candidates whose nuisances cannot be fitted (e.g. the flip rates of an implicit log without
    # event rates or gold labels), as fit_auto does; the methods named besides auto still need theirs
    return fit_first(fit, needed, methods_needed({m: c for m, c in configs.items() if m != AUTO}))[0]


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
    order they were fitted (``auto`` last). ``config_for(method)``: each method's configuration (default
    ``config.replace(method=method)``). ``save_to``: write each result to ``save_to / method`` (``source``: where the
    log came from, recorded in the run). ``reuse(candidate_config, auto_config)``: whether ``auto`` may reuse a
    candidate fitted here (default: when the two differ in nothing but the method and
    ``force_noise_correction``, which decides whether a fit is allowed, never how it trains)."""
    configs = _configs(config, methods, config_for)
    log = as_impressions(log)  # implicit feedback (copies, clicks): every impression observed
    if nuisances is None or needs_of(methods_needed(configs)) - {"true_label"} - nuisances.provides():
        nuisances = shared_nuisances(log, X, config, list(configs), config_for=config_for, nuisances=nuisances,
                                     on_event=on_event)
    emit = on_event or (lambda kind, method, payload: None)
    stop = should_stop or (lambda: False)
    reusable = reuse or _same_settings
    results: dict[str, FitResult] = {}
    fitted: dict[str, FitResult] = {}
    for method in sorted(configs, key=lambda m: m == AUTO):  # auto last: it reuses the other fits
        if stop():
            break
        emit("start", method, None)

        def progress(epoch: int, max_epochs: int, train_loss: float, val_estimate: float, _m: str = method) -> None:
            emit("epoch", _m, (epoch, max_epochs, train_loss, val_estimate))

        t0 = time.perf_counter()
        if method == AUTO:
            from causalrm.selection import fit_auto

            result = fit_auto(log, X, configs[AUTO], progress=progress, should_stop=should_stop, nuisances=nuisances,
                              on_stage=lambda text: emit("stage", AUTO, text),
                              fitted={m: r for m, r in fitted.items() if reusable(r.config, configs[AUTO])})
        else:
            result = fitted[method] = fit_log(log, X, configs[method], progress=progress, should_stop=should_stop,
                                              nuisances=nuisances)
        seconds = time.perf_counter() - t0
        results[method] = result
        run_dir = None
        if save_to is not None:
            from causalrm.runs import save_run

            emit("stage", method, f"saving the {method} run")
            run_dir = save_run(result, log, X, Path(save_to) / method, source=source)
        emit("done", method, {"result": result, "seconds": seconds, "run_dir": run_dir})
        if result.history.stop_reason == "cancelled":
            break
    return results


def _same_settings(a: FitConfig, b: FitConfig) -> bool:
    """Whether a fit with ``a`` is the fit ``auto`` (config ``b``) would make of that candidate."""
    return a.replace(force_noise_correction=False) == b.replace(method=a.method, force_noise_correction=False)


__all__ = ["complete_nuisances", "fit_methods", "methods_needed", "shared_nuisances"]
