"""Seconds per step of the workbench on its default sample, calling the tabs' handlers as the server does.

Each repeat walks one fresh session through the default flow: Data (the WildBench demo sample, embeddings from the
shipped cache), Propensity (``auto``: logistic and MLP, cross-fitted), Noise (anchor quantile), Train (the Train
tab's defaults: naive + auto, MLP head, 40 epochs, patience 5, in a worker process of the job pool), Compare,
Audit (propose 300 rows, then one label with the audited verdict after 30 labels). One thread per process
(``OMP_NUM_THREADS=1``, torch set to 1 thread; the job pool's worker uses ``--job-threads`` 1, the app's default);
the server's warm-up and the job pool's fork server start first, as ``causalrm app`` does before serving. Prints
per step the wall seconds (min and median over the repeats) and the CPU seconds (min; this process's and its job
workers'): on a shared machine the wall time grows with the load, the CPU time much less; on an idle one with one
thread per process the two agree.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app_steps.py --repeats 3   # the table in docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 15.0  # docs/RESULTS.md: every step of the app on the default sample, on an idle 2-core machine


def _workers_cpu() -> float:
    """CPU seconds of this process's child processes and of the children they reaped: the job pool's fork server
    and its training workers (a worker's time counts once it ended)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def walk(patience: int, n_labels: int = 30) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """One session through every tab: wall seconds and CPU seconds per step (this process's and its job workers';
    printed to stderr as each ends) and a line per trained model (epochs, best epoch, its validation estimate)."""
    from app.tabs import audit as A
    from app.tabs import compare as C
    from app.tabs import data as D
    from app.tabs import noise as N
    from app.tabs import propensity as P
    from app.tabs import train as T

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), time.process_time() + _workers_cpu()
        out = fn()
        time.sleep(0.5)  # the fork server reaps a finished worker
        seconds[name] = time.perf_counter() - t0 - 0.5
        cpu[name] = time.process_time() + _workers_cpu() - c0
        print(f"  {name}: {seconds[name]:.1f} s ({cpu[name]:.1f} s CPU)", file=sys.stderr, flush=True)
        return out

    session = step("data: load sample", lambda: D.load_sample(None)).state
    try:
        step("propensity: fit", lambda: P.fit_propensity(session))
        step("noise: estimate", lambda: N.estimate_noise(session))
        epochs = T.EPOCHS
        views = step(f"train: naive + auto (mlp, {epochs} epochs, patience {patience})",
                     lambda: list(T.train_models(session, ["naive", "auto"], "mlp", "auto", epochs, patience, 0)))
        if not session.results:
            raise SystemExit(f"training failed: {views[-1].status}")
        trained = list(session.results)
        choice = session.results["auto"].choice  # auto's candidates: naive (reused) and the debiased ones
        models = [f"{m}: best epoch {c['best_epoch']} (validation estimate {c['best_val_estimate']:.6f})"
                  for m, c in choice["candidates"].items() if c.get("fitted")] + [f"auto kept {choice['method']}"]
        step("compare", lambda: C.compare_models(session, trained[0], trained[-1]))
        step("audit: propose 300 rows", lambda: A.propose(session, 300, 0))
        clean = dict(zip(session.log["response_id"].to_list(), session.log["true_label"].to_list()))

        def label_shown() -> Any:  # the row on screen, labelled with its clean label
            current = session.audit
            row_id = current.table["response_id"][current.cursor]
            return A.label(session, A.GOOD if clean[row_id] == 1 else A.BAD)

        for _ in range(n_labels - 1):
            label_shown()
        step(f"audit: label {n_labels} (verdict)", label_shown)
    finally:
        session.close()
    return seconds, cpu, models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="sessions walked through the flow")
    parser.add_argument("--patience", type=int, default=None, help="the Train step's patience (default: the Train "
                                                                   "tab's, app.tabs.train.PATIENCE)")
    parser.add_argument("--server-threads", type=int, default=1,
                        help="torch threads of the server process (default 1; `causalrm app` leaves torch's default, "
                             "one per core: run with OMP_NUM_THREADS=2 --server-threads 2 to measure that)")
    args = parser.parse_args(argv)
    os.environ.setdefault("CAUSALRM_APP_TMPDIR", tempfile.mkdtemp(prefix="causalrm-bench-"))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)  # a handler's unexpected error shows its traceback
    torch.set_num_threads(args.server_threads)
    from app import training
    from app.common import warm_up

    warm_up()
    training.pool().warm_up()  # the fork server and its preloads, as causalrm app starts them before serving
    from app.tabs.train import PATIENCE

    runs = [walk(PATIENCE if args.patience is None else args.patience) for _ in range(args.repeats)]
    width = max(len(k) for k in runs[0][0])
    print(f"{'step':<{width}}  {'min s':>6}  {'median s':>8}  {'min CPU s':>9}  all (wall s)")
    for step in runs[0][0]:
        wall = [r[0][step] for r in runs]
        cpu = min(r[1][step] for r in runs)
        print(f"{step:<{width}}  {min(wall):6.1f}  {statistics.median(wall):8.1f}  {cpu:9.1f}  "
              + " ".join(f"{v:.1f}" for v in wall))
    print(f"budget per step on an idle 2-core machine: {BUDGET_S:g} s")
    print("trained (last repeat): " + "; ".join(runs[-1][2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
