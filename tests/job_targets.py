"""Functions the job-pool tests run in worker processes (importable by name from the tests folder)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from causalrm.errors import InputError


def sleeper(emit, should_stop, *, seconds: float = 60.0, obey: bool = True) -> None:
    """Report, then idle until ``should_stop()`` (or, with ``obey=False``, ignore it)."""
    emit("stage", "sleeping", os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if obey and should_stop():
            emit("stage", "stopped")
            return
        time.sleep(0.02)


def fail(emit, should_stop, *, how: str) -> None:
    """End the way ``how`` says: a clean exit code, a SIGKILL, bad input or a bug."""
    emit("stage", "about to fail")
    if how == "exit":
        os._exit(3)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "input":
        raise InputError("column 'x' is missing; map it on the Data tab")
    raise RuntimeError("internal detail /secret/path")


def hog(emit, should_stop, *, step_mb: int = 128, steps: int = 40) -> None:
    """Grow resident memory by ``step_mb`` every 50 ms (pages written, so they are resident)."""
    blocks = []
    for i in range(steps):
        blocks.append(np.ones(step_mb * 2**20 // 8))
        emit("stage", f"holding {(i + 1) * step_mb} MB")
        time.sleep(0.05)
