"""The server's side of training: the worker pool, the settings of a job that fit its memory limit, and what a
running job has reported (:class:`TrainingRun`, kept on the session so that a reloaded page can follow it again).

Training itself runs in :mod:`app.train_worker`, in a worker process of :mod:`app.jobs`; the server only keeps what
the worker sends back: live curves and, per finished method, the ``FitResult`` with its weights loaded from the run
folder's safetensors.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

from app.jobs import GB, Job, JobPool


@dataclasses.dataclass
class JobSettings:
    """Server-wide limits of training jobs (``causalrm app --train-concurrency / --job-memory-gb /
    --job-time-limit-min``; ``time_limit_min`` 0 = none) and the torch threads of each."""

    max_running: int = int(os.environ.get("CAUSALRM_APP_TRAIN_CONCURRENCY", 2))
    memory_gb: float = float(os.environ.get("CAUSALRM_APP_JOB_MEMORY_GB", 4))
    time_limit_min: float = float(os.environ.get("CAUSALRM_APP_JOB_TIME_LIMIT_MIN", 60))
    threads: int = int(os.environ.get("CAUSALRM_APP_JOB_THREADS", 1))


SETTINGS = JobSettings()
_POOL: JobPool | None = None
_POOL_LOCK = threading.Lock()


def configure(*, max_running: int | None = None, memory_gb: float | None = None,
              time_limit_min: float | None = None, threads: int | None = None) -> None:
    """Change the job limits (``None`` keeps one); the next job starts a pool with them."""
    global _POOL
    for name, value in (("max_running", max_running), ("memory_gb", memory_gb), ("time_limit_min", time_limit_min),
                        ("threads", threads)):
        if value is not None:
            setattr(SETTINGS, name, type(getattr(SETTINGS, name))(value))
    with _POOL_LOCK:
        old, _POOL = _POOL, None
    if old is not None and not old.running:
        old.shutdown()


def pool() -> JobPool:
    """The server's job pool (created on first use with :data:`SETTINGS`)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = JobPool(max_running=SETTINGS.max_running, memory_limit=SETTINGS.memory_gb * GB,
                            time_limit_s=SETTINGS.time_limit_min * 60, threads=SETTINGS.threads,
                            preload=["app.train_worker", "app.embed_worker"])
        return _POOL


def default_lora_max_length() -> int:
    """The Train tab's LoRA max length: 256 on a GPU, 128 on a CPU (where LoRA costs about a millisecond a token)."""
    from causalrm.devices import resolve_device

    return 256 if resolve_device("auto").type == "cuda" else 128


def planned_config(config: Any, *, n_rows: int, max_length: int) -> tuple[Any, str]:
    """``config`` (a ``FitConfig``) with the settings that fit this server, and the plan's line ("": no plan).

    The backbone's memory plan (``Backbone.plan_memory``; LoRA: micro-batch tokens, gradient checkpointing and the
    evaluation chunk) against the per-job memory limit (or the GPU's memory); a job that cannot fit raises
    InputError saying which max length would.
    """
    import torch

    from causalrm.devices import resolve_device
    from causalrm.training.backbones.base import get_backbone_class

    on_gpu = resolve_device(config.device).type == "cuda"
    if on_gpu:
        budget, name = torch.cuda.get_device_properties(0).total_memory, "the GPU's memory"
    else:
        budget = SETTINGS.memory_gb * GB
        name = "this server's limit per training job (--job-memory-gb)"
    return get_backbone_class(config.backbone).plan_memory(config, budget_bytes=budget, budget_name=name,
                                                           on_gpu=on_gpu, n_rows=n_rows, max_length=max_length)


@dataclasses.dataclass(eq=False)
class TrainingRun:
    """A training job of one session and what it has reported so far.

    ``stage``: the session's data stage when the job started (results of an older log are dropped); ``plan``: the
    LoRA memory plan line ("" for the MLP); ``max_epochs``: each method's epoch limit; ``live``: per method, the
    epochs, training losses and validation estimates seen so far; ``current`` / ``last_epoch`` / ``last_step``
    (epoch, step, steps per epoch, seconds into the epoch) / ``stage_text``: the latest progress.
    """

    job: Job
    methods: list[str]
    backbone: str
    stage: int
    plan: str = ""
    max_epochs: int = 0
    live: dict[str, dict[str, list]] = dataclasses.field(default_factory=dict)
    current: str | None = None
    last_epoch: tuple[int, int, float, float | None] | None = None
    last_step: tuple[int, int, int, float] | None = None
    stage_text: str | None = None
    seen: int = 0

    def update(self, session: Any, timeout: float) -> bool:
        """Apply the job's new messages to ``session`` (waiting up to ``timeout`` seconds for one); True when a
        method started or finished."""
        milestone = False
        for kind, name, payload in self.job.wait(self.seen, timeout):
            self.seen += 1
            if kind == "stage":
                self.stage_text = name
            elif kind == "start":
                self.current, self.last_epoch, self.last_step, milestone = name, None, None, True
                self.live[name] = {"epoch": [], "train_loss": [], "val_estimate": []}
            elif kind == "step":
                self.last_step = tuple(payload)
            elif kind == "epoch":
                epoch, max_epochs, train_loss, val_estimate = payload
                h = self.live.setdefault(name, {"epoch": [], "train_loss": [], "val_estimate": []})
                if h["epoch"] and epoch <= h["epoch"][-1]:  # select_head: the linear head starts
                    for values in h.values():
                        values.clear()
                h["epoch"].append(int(epoch))
                h["train_loss"].append(float(train_loss))
                h["val_estimate"].append(None if val_estimate is None else float(val_estimate))
                self.last_epoch = (int(epoch), int(max_epochs), float(train_loss), val_estimate)
            elif kind == "done":
                milestone = True
                if session.stage == self.stage:
                    session.results[name] = _with_weights(payload["result"], Path(payload["run_dir"]))
                    session.run_dirs[name] = Path(payload["run_dir"])
        return milestone


#: epochs at least this long (seconds) show progress within them (LoRA on a CPU); shorter ones only their end
SLOW_EPOCH_S = 10.0


def _minutes(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def epoch_estimate(run: TrainingRun) -> float | None:
    """Seconds an epoch of the current method takes, from its steps timed so far (None before the first)."""
    if run.last_step is None:
        return None
    _, step, steps, seconds = run.last_step
    return seconds / max(step, 1) * steps


def shows_steps(run: TrainingRun) -> bool:
    """Whether the status shows progress within an epoch: the current method's first epoch, or a later one when
    epochs are slow (:data:`SLOW_EPOCH_S`); else the last epoch's losses."""
    if run.last_step is None:
        return False
    if run.last_epoch is None:
        return True
    return run.last_step[0] > run.last_epoch[0] and (epoch_estimate(run) or 0.0) >= SLOW_EPOCH_S


def step_progress(run: TrainingRun, *, elapsed_s: float | None = None, limit_s: float | None = None) -> str | None:
    """Progress within the current epoch and the duration it implies, from the steps timed so far: "epoch 1/3,
    step 12 of 310 (4.1 s a step: about 21 min an epoch, at most 63 min for 3 epochs)", with a warning when that
    would pass the job's time limit (``limit_s``, with ``elapsed_s`` already spent); None before the first step."""
    if run.last_step is None:
        return None
    epoch, step, steps, seconds = run.last_step
    per_step, per_epoch = seconds / max(step, 1), epoch_estimate(run)
    left = per_epoch * (max(run.max_epochs, epoch) - epoch) + per_step * (steps - step)
    text = (f"epoch {epoch}/{run.max_epochs or '?'}, step {step} of {steps} ({per_step:.2g} s a step: about "
            f"{_minutes(per_epoch)} an epoch, at most {_minutes(left)} more for this model's training steps)")
    if limit_s and elapsed_s is not None and elapsed_s + left > limit_s:
        text += (f". ⚠️ At this pace it may reach this server's limit of {limit_s / 60:g} minutes per job; the "
                 "best validated epoch so far is kept then. Fewer epochs or a shorter max length finish sooner")
    return text


def _with_weights(result: Any, run_dir: Path) -> Any:
    """The worker's weightless ``FitResult`` with its backbone loaded from ``run_dir`` (safetensors + JSON)."""
    from causalrm.training.backbones.base import load_backbone

    return dataclasses.replace(result, backbone=load_backbone(run_dir))
