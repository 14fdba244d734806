"""The server's view of a running job (app/training.py): step messages give progress within an epoch and a duration
estimate before the first epoch ends (a LoRA epoch on a CPU takes minutes)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.training import TrainingRun, step_progress  # noqa: E402


def _run(messages: list, max_epochs: int = 3) -> TrainingRun:
    job = SimpleNamespace(wait=lambda seen, timeout: messages[seen:])
    run = TrainingRun(job=job, methods=["naive", "auto"], backbone="lora", stage=0, max_epochs=max_epochs)
    run.update(SimpleNamespace(stage=0, results={}, run_dirs={}), timeout=0)
    return run


def test_steps_give_progress_and_an_estimate_before_the_first_epoch_ends():
    assert step_progress(_run([("start", "naive", None)])) is None  # nothing timed yet
    run = _run([("start", "naive", None), ("step", "naive", (1, 1, 100, 3.0)), ("step", "naive", (1, 10, 100, 20.0))])
    assert run.current == "naive" and run.last_step == (1, 10, 100, 20.0) and run.last_epoch is None
    per_step = 20.0 / 10
    per_epoch = per_step * 100  # 200 s
    left = per_epoch * (3 - 1) + per_step * (100 - 10)  # 580 s: the two epochs to come and the rest of this one
    text = step_progress(run)
    assert text.startswith("epoch 1/3, step 10 of 100 (2 s a step")
    assert f"about {per_epoch / 60:.0f} min an epoch" in text and f"at most {left / 60:.0f} min more" in text
    assert "⚠️" not in text
    assert "⚠️" in step_progress(run, elapsed_s=100.0, limit_s=600.0)  # 100 + 580 s passes a 10-minute limit
    assert "⚠️" not in step_progress(run, elapsed_s=10.0, limit_s=600.0)


@pytest.mark.parametrize("kind", ["start", "epoch"])
def test_a_new_method_or_epoch_keeps_the_latest_position(kind):
    msgs = [("start", "naive", None), ("step", "naive", (1, 5, 10, 1.0))]
    if kind == "start":  # the next method starts: its steps are not timed yet
        run = _run(msgs + [("start", "auto", None)])
        assert run.current == "auto" and run.last_step is None
    else:  # the epoch ended: its step stays the latest until the next epoch's first step
        run = _run(msgs + [("epoch", "naive", (1, 3, 0.5, 0.4))])
        assert run.last_epoch[0] == 1 and run.last_step == (1, 5, 10, 1.0)


def test_the_status_shows_steps_in_a_first_or_slow_epoch_and_losses_otherwise():
    from app.training import SLOW_EPOCH_S, shows_steps

    start = [("start", "naive", None)]
    assert not shows_steps(_run(start))
    assert shows_steps(_run(start + [("step", "naive", (1, 2, 20, 0.02))]))  # first epoch: steps, however fast
    fast = [("step", "naive", (1, 20, 20, 0.2)), ("epoch", "naive", (1, 40, 0.5, 0.4)),
            ("step", "naive", (2, 3, 20, 0.03))]
    assert not shows_steps(_run(start + fast))  # 0.2 s epochs: the losses of the last one
    slow = [("step", "naive", (1, 20, 20, 2 * SLOW_EPOCH_S)), ("epoch", "naive", (1, 3, 0.5, 0.4)),
            ("step", "naive", (2, 3, 20, 0.3 * SLOW_EPOCH_S))]
    assert shows_steps(_run(start + slow))


def test_a_lora_job_reports_its_first_steps_before_its_first_epoch_ends(tmp_path):
    """The worker's messages for a tiny LoRA model: the first steps, timed, come before the first epoch's end, and
    give the server an estimate of the epoch (what the Train tab shows while a CPU LoRA epoch runs for minutes)."""
    import numpy as np
    from helpers_tiny_models import single_thread, tiny_llama, tiny_log

    from app import train_worker
    from causalrm.config import FitConfig

    log = tiny_log(40, seed=1)
    n_train = int((log["split"] == "train").sum())
    config = FitConfig(method="naive", backbone="lora", backbone_options={"model": tiny_llama(tmp_path / "llama"),
                                                                          "r": 4, "max_length": 32},
                       batch_size=4, max_epochs=1, patience=1, device="cpu", seed=0)
    messages = []
    with single_thread():
        train_worker.train(lambda kind, name=None, payload=None: messages.append((kind, name, payload)),
                           lambda: False, log=log, X=np.zeros((log.height, 4), np.float32), config=config,
                           methods=["naive"], runs_root=str(tmp_path / "runs"), source="tiny")
    kinds = [k for k, _, _ in messages]
    steps = [p for k, _, p in messages if k == "step"]
    per_epoch = -(-n_train // 4)
    assert [s[:3] for s in steps[:train_worker.TIMED_STEPS]] == [(1, k, per_epoch) for k in (1, 2, 3)]
    assert kinds.index("start") < kinds.index("step") < kinds.index("epoch") < kinds.index("done")
    run = _run(messages, max_epochs=1)
    assert run.last_step == tuple(steps[-1]) and f"of {per_epoch} (" in step_progress(run)
