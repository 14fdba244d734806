"""What a training job runs in its worker process (:mod:`app.jobs`): the nuisances once, then every method with
``causalrm.pipeline.fit_log``, each saved as a run folder (``causalrm.runs.save_run``) in the session's folder.

Messages to the server (``emit(kind, name, payload)``): ``("stage", text)``, ``("start", method)``,
``("epoch", method, (epoch, max_epochs, train_loss, val_estimate))`` and ``("done", method, {"result", "run_dir"})``
where ``result`` is the :class:`~causalrm.pipeline.FitResult` without its weights (the server loads them from the run
folder's safetensors) and without the fitted nuisance models (the app plots those from its own tabs).

The core modules are imported at module level so that the fork server loads them once (``JobPool(preload=...)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from causalrm.pipeline import FitConfig, FitResult, fit_log, fit_nuisances
from causalrm.runs import save_run


def portable(result: FitResult) -> FitResult:
    """``result`` without the backbone and the fitted nuisance models: plain data that travels between processes."""
    nuisances = dataclasses.replace(result.nuisances, propensity_model=None, flip_estimator=None)
    return dataclasses.replace(result, backbone=None, nuisances=nuisances, candidates=None)


def train(emit: Callable[..., None], should_stop: Callable[[], bool], *, log: pl.DataFrame, X: np.ndarray | None,
          config: FitConfig, methods: Sequence[str], runs_root: str, source: str | None) -> None:
    """Fit the nuisances once, then each of ``methods`` (stopping early when ``should_stop()``)."""
    needed = list(dict.fromkeys(n for m in methods for n in config.replace(method=m).methods_needed()))  # auto
    nuisances = fit_nuisances(log, X, config, methods=needed, on_stage=lambda name: emit("stage", name))
    for method in methods:
        if should_stop():
            return
        emit("start", method)

        def on_epoch(epoch: int, max_epochs: int, train_loss: float, val_estimate: float, _m: str = method) -> None:
            emit("epoch", _m, (epoch, max_epochs, train_loss, val_estimate))

        result = fit_log(log, X, config.replace(method=method), nuisances=nuisances, progress=on_epoch,
                         should_stop=should_stop)
        emit("stage", f"saving the {method} run")
        run_dir = save_run(result, log, X, Path(runs_root) / method, source=source)
        emit("done", method, {"result": portable(result), "run_dir": str(run_dir)})
