"""Jobs in worker processes: a crash, an out-of-memory kill or a cancel ends that job only, never the server.

:meth:`JobPool.submit` queues a call ``fn(emit, should_stop, **kwargs)`` (``fn`` a module-level function) that runs
in its own process (multiprocessing's forkserver, spawn where there is none; ``preload`` modules are imported once
in the fork server so a job starts in a fraction of a second). At most ``max_running`` jobs run at once, the others
wait first come, first served (:attr:`Job.position`). The worker reports with ``emit(kind, name, payload)``
through a pipe (sent at once: what a worker said before dying arrives); a collector thread appends each message to
:attr:`Job.messages`, which handlers read with :meth:`Job.wait`.

A monitor thread watches every running worker: one whose resident memory (with its children) passes
``memory_limit`` is killed and its job fails with a one-line message; a cancelled job whose worker has not stopped
``cancel_grace_s`` seconds after the request is killed. One running longer than ``time_limit_s`` is cancelled
(:attr:`Job.timed_out`) with a longer grace, half the limit, to save what it trained (scoring a large log with a
transformer on a CPU takes minutes). Workers run with ``threads`` torch / BLAS threads and the
kernel's highest OOM score, so under memory pressure the kernel kills a worker before the server.

No worker outlives the server. The server holds the only writing end of each worker's control pipe (it carries
Cancel); a thread in the worker reads it and, on end of file (the server exited, was terminated or killed), kills the
worker and its children. Its fork server then sees its last client gone and exits too. Cancel travels through that
pipe rather than a ``multiprocessing.Event``, whose named semaphores a terminated server would leak.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from causalrm.errors import InputError

logger = logging.getLogger("causalrm.app")

GB = 1024**3
Emit = Callable[..., None]
_IDS = itertools.count(1)
#: what to try after a job of each kind (``JobPool.submit(what=...)``) ran out of memory
ADVICE = {"training": "lower the LoRA max length, use the mlp backbone or a smaller log",
          "embedding": "name a smaller embedding model or use a smaller log"}


@dataclasses.dataclass(eq=False)
class Job:
    """One queued or running call; ``state`` is ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.

    ``what``: the kind of work (a key of :data:`ADVICE`), named in its messages. ``messages``: ``(kind, name,
    payload)`` tuples the worker emitted, in order. ``error``: the one-line message of a failed job. ``peak_memory``: the largest resident memory the monitor saw (bytes). ``timed_out``: cancelled by
    the pool's time limit.
    """

    owner: str
    fn: Callable[..., None]
    kwargs: dict[str, Any]
    pool: JobPool
    what: str = "training"
    id: int = dataclasses.field(default_factory=lambda: next(_IDS))
    state: str = "queued"
    messages: list[tuple[str, Any, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None
    peak_memory: int = 0
    started: float | None = None
    cancel_requested: float | None = None
    timed_out: bool = False
    _process: Any = None
    _inbox: Any = None  # the reading end of the worker's pipe
    _control: Any = None  # the writing end of the worker's control pipe (Cancel; its closing ends the worker)
    _ended: bool = False  # the worker's "end" message arrived

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def position(self) -> int:
        """1-based place in the waiting line (0 once running or finished)."""
        return self.pool.position(self)

    def wait(self, seen: int, timeout: float) -> list[tuple[str, Any, Any]]:
        """Messages after the first ``seen``; blocks up to ``timeout`` seconds while there are none and the job is
        not finished."""
        with self.pool.changed:
            if len(self.messages) <= seen and not self.finished:
                self.pool.changed.wait(timeout)
            return self.messages[seen:]

    def cancel(self) -> None:
        """Leave the queue, or ask the worker to stop (killed if it has not within the pool's grace period)."""
        self.pool.cancel(self)


class JobPool:
    """Runs :class:`Job` s in worker processes, at most ``max_running`` at once, each under ``memory_limit`` bytes."""

    def __init__(self, *, max_running: int = 2, memory_limit: float = 4 * GB, time_limit_s: float | None = None,
                 threads: int = 1, cancel_grace_s: float = 5.0, poll_s: float = 0.2,
                 preload: Sequence[str] = ()) -> None:
        if max_running < 1 or memory_limit <= 0 or threads < 1:
            raise InputError("the job pool needs max_running >= 1, a positive memory limit and threads >= 1")
        self.max_running = int(max_running)
        self.memory_limit = int(memory_limit)
        self.time_limit_s = float(time_limit_s) if time_limit_s else None
        self.threads = int(threads)
        self.cancel_grace_s = float(cancel_grace_s)
        self.poll_s = float(poll_s)
        methods = mp.get_all_start_methods()
        self._ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if preload and self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(list(preload))
        self.changed = threading.Condition()
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self._monitor: threading.Thread | None = None
        self._closed = False

    # ---------------------------------------------------------------------------------------------------- public
    def submit(self, owner: str, fn: Callable[..., None], /, *, what: str = "training", **kwargs: Any) -> Job:
        """Queue ``fn(emit, should_stop, **kwargs)`` for ``owner`` (a label for the logs); ``what``: a key of
        :data:`ADVICE`. Returns the job."""
        if what not in ADVICE:
            raise ValueError(f"what={what!r}: one of {sorted(ADVICE)}")
        job = Job(owner=owner, fn=fn, kwargs=kwargs, pool=self, what=what)
        with self.changed:
            if self._closed:
                raise InputError("the server is shutting down; try again in a minute")
            self._waiting.append(job)
            if self._monitor is None:
                self._monitor = threading.Thread(target=self._watch, name="causalrm-jobs", daemon=True)
                self._monitor.start()
            self._start_waiting()
            self.changed.notify_all()
        return job

    def position(self, job: Job) -> int:
        with self.changed:
            return self._waiting.index(job) + 1 if job in self._waiting else 0

    @property
    def running(self) -> int:
        with self.changed:
            return len(self._running)

    def cancel(self, job: Job) -> None:
        with self.changed:
            if job.finished or job.cancel_requested is not None:
                return
            job.cancel_requested = time.monotonic()
            if job in self._waiting:
                self._waiting.remove(job)
                job.state = "cancelled"
            elif job._control is not None:
                with contextlib.suppress(OSError, ValueError):  # the worker is gone already
                    job._control.send("cancel")
            self.changed.notify_all()

    def warm_up(self) -> None:
        """Start the fork server (and its preloads) now rather than on the first job."""
        if self._ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def shutdown(self) -> None:
        """Cancel every queued job and kill every worker (server exit)."""
        with self.changed:
            self._closed = True
            jobs = list(self._waiting) + list(self._running)
        for job in jobs:
            self.cancel(job)
            if job._process is not None and job._process.is_alive():
                job._process.kill()

    # ---------------------------------------------------------------------------------------------------- inside
    def _start_waiting(self) -> None:
        """Start queued jobs while there is room (called holding ``changed``)."""
        while self._waiting and len(self._running) < self.max_running:
            job = self._waiting.pop(0)
            job._inbox, outbox = self._ctx.Pipe(duplex=False)
            control, job._control = self._ctx.Pipe(duplex=False)
            job._process = self._ctx.Process(target=_worker_main, name=f"causalrm-job-{job.id}", daemon=True,
                                             args=(job.fn, job.kwargs, outbox, control, self.threads))
            try:
                job._process.start()
            except Exception as err:  # noqa: BLE001 - reported on the job, the server carries on
                outbox.close()
                control.close()
                job._control.close()
                logger.error("job %d (%s) could not start", job.id, job.owner, exc_info=err)
                job.state = "failed"
                job.error = f"the {job.what} process could not start ({type(err).__name__}); try again in a minute"
                continue
            outbox.close()  # the worker holds the only writing end: reading sees EOF once it is gone
            control.close()  # and the only reading end of its control pipe
            job.state, job.started = "running", time.monotonic()
            self._running.append(job)
            threading.Thread(target=self._collect, args=(job,), name=f"causalrm-job-{job.id}-collect",
                             daemon=True).start()
            logger.info("job %d (%s) started in process %d", job.id, job.owner, job._process.pid)

    def _collect(self, job: Job) -> None:
        """Move the worker's messages into ``job.messages`` until it ends, then settle the job's state."""
        while True:
            try:
                if not job._inbox.poll(self.poll_s):
                    if job._process.is_alive():
                        continue
                    if not job._inbox.poll(0):
                        break  # gone, nothing left to read (a child of the worker may hold the pipe open)
                message = job._inbox.recv()
            except (EOFError, OSError):  # the worker is gone (ended, crashed or killed)
                break
            if self._receive(job, message):
                break
        job._inbox.close()
        job._process.join(timeout=10)
        job._control.close()
        self._settle(job)

    def _receive(self, job: Job, message: tuple[str, Any, Any]) -> bool:
        """Record one message; True on the worker's final ``end``."""
        kind = message[0]
        with self.changed:
            if kind == "end":
                job._ended = True
            elif kind == "error":
                job.error = job.error or _error_line(job, message[1], message[2])
            else:
                job.messages.append(message)
            self.changed.notify_all()
        return kind == "end"

    def _settle(self, job: Job) -> None:
        code = job._process.exitcode
        with self.changed:
            if job in self._running:
                self._running.remove(job)
            if job.cancel_requested is not None and job.error is None:
                job.state = "cancelled"
            elif job.error is not None:
                job.state = "failed"
            elif job._ended and code == 0:
                job.state = "done"
            else:
                job.state, job.error = "failed", _death_line(code, job.what)
            logger.info("job %d (%s) %s (exit code %s, peak memory %.2f GB)", job.id, job.owner, job.state, code,
                        job.peak_memory / GB)
            job.kwargs = {}  # the log and embeddings stay with the session only
            self._start_waiting()
            self.changed.notify_all()

    def _watch(self) -> None:
        """Every ``poll_s``: kill workers over the memory limit, cancel those over the time limit, kill cancelled
        workers past their grace period."""
        while True:
            time.sleep(self.poll_s)
            with self.changed:
                running = list(self._running)
            for job in running:
                rss = _resident(job._process.pid)
                job.peak_memory = max(job.peak_memory, rss)
                if rss > self.memory_limit and job.error is None:
                    job.error = (f"out of memory: the job needed more than this server's "
                                 f"{round(self.memory_limit / GB, 2):g} GB per job and was stopped; "
                                 f"{ADVICE[job.what]} (the server's --job-memory-gb sets the limit)")
                    logger.warning("job %d (%s) killed at %.2f GB resident", job.id, job.owner, rss / GB)
                    _kill(job._process)
                elif job.cancel_requested is None:
                    if self.time_limit_s is not None and time.monotonic() - job.started > self.time_limit_s:
                        logger.info("job %d (%s) reached the time limit", job.id, job.owner)
                        job.timed_out = True
                        self.cancel(job)
                elif time.monotonic() - job.cancel_requested > self._grace(job):
                    _kill(job._process)

    def _grace(self, job: Job) -> float:
        """Seconds a cancelled worker may take to stop: a few, or half the time limit to save its model."""
        if job.timed_out and self.time_limit_s is not None:
            return max(self.cancel_grace_s, self.time_limit_s / 2)
        return self.cancel_grace_s


def _resident(pid: int) -> int:
    """Resident memory of ``pid`` and its children in bytes (0 once it is gone)."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except psutil.Error:
        return 0


def _kill(process: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        if process.is_alive():
            process.kill()


def _error_line(job: Job, kind: str, detail: Any) -> str:
    """The user's one line for an error the worker reported (an unexpected one is logged with its traceback)."""
    if kind == "input":
        return str(detail)
    if kind == "memory":
        return f"out of memory in the {job.what} process: {ADVICE[job.what]}"
    name, trace = detail
    ref = uuid.uuid4().hex[:8]
    logger.error("job %d (%s) failed [ref %s]:\n%s", job.id, job.owner, ref, trace)
    return (f"Unexpected error during {job.what} ({name}). The server log has the details under reference {ref}. "
            "The app is still running: check the inputs and try again.")


def _death_line(code: int | None, what: str = "training") -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", probably out of memory" if -code == signal.SIGKILL else ""
        return f"the {what} process was killed ({name}{hint}); the server and your data are fine: try a smaller job"
    return f"the {what} process stopped unexpectedly (exit code {code}); the server and your data are fine"


# --------------------------------------------------------------------------------------------------------------------
# inside the worker process
# --------------------------------------------------------------------------------------------------------------------
def _worker_main(fn: Callable[..., None], kwargs: dict[str, Any], out: Any, control: Any, threads: int) -> None:
    """Entry point of a worker: limits, then ``fn``; every outcome is reported before the final ``end``."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("1000")  # the kernel's first choice under memory pressure (Linux only)
    cancel = threading.Event()
    threading.Thread(target=_follow_server, args=(control, cancel), name="causalrm-server-watch", daemon=True).start()

    def emit(kind: str, name: Any = None, payload: Any = None) -> None:
        out.send((kind, name, payload))

    try:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            fn(emit, cancel.is_set, **kwargs)
    except InputError as err:
        emit("error", "input", str(err))
    except MemoryError:
        emit("error", "memory", None)
    except BaseException as err:  # noqa: BLE001 - reported to the server, which logs it
        if type(err).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
            emit("error", "memory", None)
        else:
            emit("error", "unexpected", (type(err).__name__, traceback.format_exc()))
    finally:
        emit("end")
        out.close()


def _follow_server(control: Any, cancel: threading.Event) -> None:
    """Set ``cancel`` when the server asks; when the server is gone (end of file on the control pipe: it exited, was
    terminated or killed), kill this worker and its children at once: nobody is left to read their results or to
    enforce their limits."""
    try:
        while True:
            if control.recv() == "cancel":
                cancel.set()
    except (EOFError, OSError):
        pass
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
    os.kill(os.getpid(), signal.SIGKILL)
