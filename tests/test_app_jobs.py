"""The worker pool behind training (app/jobs.py): jobs run in their own processes, so a crash, a memory blow-up or
a cancel ends that job with a one-line message while this process (the server) carries on; the queue is first come,
first served and reports positions."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(Path(__file__).parent)) if p not in sys.path]

import job_targets  # noqa: E402

from app.jobs import GB, JobPool  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_jobs")]


def _finish(job, timeout: float = 120.0):
    """Wait until ``job`` ends (a generous bound that only guards against hanging; no timing is asserted)."""
    deadline = time.monotonic() + timeout
    while not job.finished:
        assert time.monotonic() < deadline, f"job still {job.state}: {job.messages}"
        job.wait(len(job.messages), timeout=0.5)
    return job


def _until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def pool():
    p = JobPool(max_running=1, memory_limit=1.0 * GB, cancel_grace_s=1.0, poll_s=0.05)
    yield p
    p.shutdown()


def test_messages_flow_back_and_the_worker_is_another_process(pool):
    job = _finish(pool.submit("t", job_targets.sleeper, seconds=0.1))
    assert job.state == "done" and job.error is None
    kind, name, pid = job.messages[0]
    assert (kind, name) == ("stage", "sleeping") and pid != os.getpid()


@pytest.mark.parametrize(("how", "needle"), [
    ("exit", "stopped unexpectedly (exit code 3)"),
    ("kill", "killed (SIGKILL, probably out of memory)"),
    ("input", "column 'x' is missing; map it on the Data tab"),
])
def test_a_failing_worker_fails_its_job_with_one_line(pool, how, needle):
    job = _finish(pool.submit("t", job_targets.fail, how=how))
    assert job.state == "failed" and needle in job.error and "\n" not in job.error
    assert job.messages == [("stage", "about to fail", None)]  # what it said before dying still arrived
    after = _finish(pool.submit("t", job_targets.sleeper, seconds=0.1))  # the pool carries on
    assert after.state == "done"


def test_an_unexpected_error_is_logged_with_a_reference(pool, caplog):
    with caplog.at_level(logging.ERROR, logger="causalrm.app"):
        job = _finish(pool.submit("t", job_targets.fail, how="bug"))
    assert job.state == "failed" and "RuntimeError" in job.error and "secret" not in job.error
    ref = job.error.split("reference ")[1].split(".")[0]
    assert any(ref in r.getMessage() and "internal detail /secret/path" in r.getMessage() for r in caplog.records)


def test_a_job_over_the_memory_limit_is_killed(pool):
    job = _finish(pool.submit("t", job_targets.hog, step_mb=128, steps=40))  # would reach 5 GB
    assert job.state == "failed" and job.error.startswith("out of memory") and "1 GB per job" in job.error
    assert job.peak_memory > 1.0 * GB
    held = [int(m[1].split()[1]) for m in job.messages]
    assert max(held) < 40 * 128  # stopped on the way up


def test_queue_positions_and_cancel(pool):
    first = pool.submit("a", job_targets.sleeper)
    second = pool.submit("b", job_targets.sleeper)
    third = pool.submit("c", job_targets.sleeper)
    _until(lambda: first.messages)
    assert (first.state, first.position) == ("running", 0)
    assert (second.state, second.position, third.position) == ("queued", 1, 2)
    second.cancel()  # leaves the line at once
    assert second.state == "cancelled" and third.position == 1
    first.cancel()  # obeys should_stop
    assert _finish(first).state == "cancelled" and first.messages[-1] == ("stage", "stopped", None)
    _until(lambda: third.state == "running")
    third.cancel()
    assert _finish(third).state == "cancelled"


def test_a_worker_ignoring_cancel_is_killed_after_the_grace_period(pool):
    job = pool.submit("t", job_targets.sleeper, obey=False)
    _until(lambda: job.messages)
    job.cancel()
    assert _finish(job).state == "cancelled" and job.error is None
    assert job._process.exitcode is not None and job._process.exitcode < 0  # killed, not finished


def test_a_job_over_the_time_limit_is_cancelled():
    pool = JobPool(max_running=1, time_limit_s=0.5, poll_s=0.05)
    try:
        job = _finish(pool.submit("t", job_targets.sleeper))
        assert (job.state, job.timed_out, job.error) == ("cancelled", True, None)
        assert job.messages[-1] == ("stage", "stopped", None)  # stopped cleanly through should_stop
    finally:
        pool.shutdown()


SERVER = """
import sys, time
sys.path[:0] = {paths!r}
import job_targets
from app.jobs import JobPool
job = JobPool(max_running=1, poll_s=0.05).submit("t", job_targets.sleeper, seconds=600)
while not job.messages:
    job.wait(0, 0.5)
print("worker", job.messages[0][2], flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_its_server(sig):
    """A process holding a pool with a running job is terminated or killed: the worker and the fork server go too
    (they would otherwise run on as orphans, no server left to enforce their limits)."""
    paths = [str(ROOT), str(Path(__file__).parent)]
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(paths=paths)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    family = []
    try:
        line = server.stdout.readline()
        assert line.startswith("worker"), server.stderr.read()
        worker = int(line.split()[1])
        family = psutil.Process(server.pid).children(recursive=True)
        assert worker in {p.pid for p in family}
        server.send_signal(sig)
        server.wait(timeout=60)
        _, survivors = psutil.wait_procs(family, timeout=60)
        assert survivors == []
        assert "leaked" not in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
        for proc in family:
            with contextlib.suppress(psutil.Error):
                proc.kill()
