"""What a training job runs in its worker process (:mod:`app.jobs`): the core orchestration
(``causalrm.workflows.orchestrate.fit_methods``): the nuisances once, then every method, each saved as a run folder
(``causalrm.workflows.runs.save_run``) in the session's folder.

Messages to the server (``emit(kind, name, payload)``): ``("stage", text)``, ``("start", method)``,
``("step", method, (epoch, step, steps_per_epoch, seconds_into_epoch))`` (the first :data:`TIMED_STEPS` steps of a
method, then at most one every :data:`STEP_EVERY_S` seconds: the duration estimate and progress within an epoch),
``("epoch", method, (epoch, max_epochs, train_loss, val_estimate))`` and ``("done", method, {"result", "run_dir"})``
where ``result`` is the :class:`~causalrm.workflows.pipeline.FitResult` without its weights (the server loads them from the run
folder's safetensors) and without the fitted nuisance models (the app plots those from its own tabs).

The core modules are imported at module level so that the fork server loads them once (``JobPool(preload=...)``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch._dynamo  # noqa: F401 - the first torch optimiser imports it (1.5 s): once, in the fork server

from causalrm.config import FitConfig
from causalrm.nuisances.container import Nuisances
from causalrm.training.trainer import report_steps
from causalrm.workflows.orchestrate import fit_methods
from causalrm.workflows.pipeline import FitResult

#: steps of each method reported one by one (their times give the first duration estimate)
TIMED_STEPS = 3
#: then at most one step message per this many seconds
STEP_EVERY_S = 2.0


def portable(result: FitResult) -> FitResult:
    """``result`` without the backbone and the fitted nuisance models: plain data that travels between processes."""
    nuisances = dataclasses.replace(result.nuisances, propensity_model=None, flip_estimator=None)
    return dataclasses.replace(result, backbone=None, nuisances=nuisances, candidates=None)


def train(emit: Callable[..., None], should_stop: Callable[[], bool], *, log: pl.DataFrame, X: np.ndarray | None,
          config: FitConfig, methods: Sequence[str], runs_root: str, source: str | None,
          nuisances: Nuisances | None = None) -> None:
    """The core orchestration (``causalrm.workflows.orchestrate.fit_methods``): the nuisances once (``nuisances``: the ones
    the user inspected on the Propensity / Noise tabs, completed with what the methods need), then each of
    ``methods`` (stopping early when ``should_stop()``), each saved under ``runs_root``."""

    current: dict[str, Any] = {"method": None, "steps": 0, "last": 0.0}  # the method training and its steps

    def on_event(kind: str, method: str | None, payload: Any) -> None:
        if kind == "stage":
            emit("stage", payload)
        elif kind == "start":
            current["method"] = method
            emit("start", method)
        elif kind == "epoch":
            emit("epoch", method, payload)
        elif kind == "done":
            emit("done", method, {"result": portable(payload["result"]), "run_dir": str(payload["run_dir"])})

    def on_step(epoch: int, step: int, steps: int, seconds: float) -> None:
        if epoch == 1 and step == 1:  # a fit starts (auto trains several under one "start")
            current["steps"] = 0
        current["steps"] += 1
        now = time.monotonic()
        if current["steps"] <= TIMED_STEPS or now - current["last"] >= STEP_EVERY_S:
            current["last"] = now
            emit("step", current["method"], (epoch, step, steps, seconds))

    with report_steps(on_step):
        fit_methods(log, X, config, list(methods), nuisances=nuisances, on_event=on_event, should_stop=should_stop,
                    save_to=Path(runs_root), source=source)
