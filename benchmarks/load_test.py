"""Load test of the workbench: concurrent API sessions (gradio_client, loopback only) each load the simulated sample
with their own seed and fit the propensity model. Every session must succeed and see only its own data.

Starts ``app/app.py`` on a free 127.0.0.1 port (session folders in a temporary folder), samples the server
process's resident memory every 50 ms, and prints latency percentiles per endpoint, the wall time and the server's
peak memory (``VmHWM`` where the kernel reports it). Exit status 1 when any session failed or saw another's data.

    .venv/bin/python benchmarks/load_test.py --sessions 20     # the table in docs/RESULTS.md ("Load test")
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "UltraFeedback (simulated)"
TEACHER = "teacher (semi-synthetic, known score)"


def session_run(url: str, seed: int, propensity_model: str) -> dict[str, Any]:
    """One user: load the sample with ``seed``, fit the propensity model, read the clip report back."""
    from gradio_client import Client

    out: dict[str, Any] = {"seed": seed}
    t0 = time.perf_counter()
    client = Client(url, verbose=False)
    out["connect"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = client.predict(SAMPLE, TEACHER, 0.5, 0.2, 0.1, 0.2, seed, api_name="/load_sample")[0]
    out["load_sample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    diagnostics, _, _, clip = client.predict(propensity_model, 0.1, 0, api_name="/fit_propensity")
    out["fit_propensity"] = time.perf_counter() - t0
    again = client.predict(0.1, api_name="/clip_report")[0]
    out["isolated"] = f"seed {seed} " in summary and again in clip  # its own log, its own p-hat
    out["diagnostics"] = diagnostics
    return out


def run_load(url: str, sessions: int, propensity_model: str = "mlp") -> list[dict[str, Any]]:
    """``sessions`` users at once; each result holds its latencies, ``isolated`` and ``error`` (None on success)."""

    def one(seed: int) -> dict[str, Any]:
        try:
            return {**session_run(url, seed, propensity_model), "error": None}
        except Exception as err:  # noqa: BLE001 - counted as a failed session
            return {"seed": seed, "isolated": False, "error": f"{type(err).__name__}: {err}"}

    with ThreadPoolExecutor(sessions) as pool:
        return list(pool.map(one, range(100, 100 + sessions)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None



def wait_for_server(url: str, server: subprocess.Popen, log: Path) -> bool:
    """Poll ``url`` until the app answers (True) or its process exits (False, after printing its log's tail)."""
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return True
        except OSError:
            if server.poll() is not None:
                print(log.read_text()[-3000:], file=sys.stderr)
                return False
            time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--propensity-model", default="mlp", choices=("mlp", "logistic"))
    args = ap.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CAUSALRM_APP_TMPDIR": tmp, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "0"}
        with open(Path(tmp) / "server.log", "w") as log:
            server = subprocess.Popen([sys.executable, "app/app.py", "--port", str(port)], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            if not wait_for_server(url, server, Path(tmp) / "server.log"):
                return 1
            proc = psutil.Process(server.pid)
            base = proc.memory_info().rss
            peak = [base]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    peak[0] = max(peak[0], proc.memory_info().rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            results = run_load(url, args.sessions, args.propensity_model)
            wall = time.perf_counter() - t0
            stop.set()
            sampler.join()
            hwm = _peak_hwm(server.pid)
            answers = urllib.request.urlopen(url, timeout=10).status == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    failed = [r for r in results if r["error"] or not r["isolated"]]
    print(f"{args.sessions} concurrent sessions ({args.propensity_model} propensity), {len(failed)} failed or not "
          f"isolated; wall time {wall:.1f} s; server answers afterwards: {answers}")
    print("| step | p50 s | p90 s | p99 s | max s |")
    print("| --- | --- | --- | --- | --- |")
    for step in ("connect", "load_sample", "fit_propensity"):
        x = np.array([r[step] for r in results if step in r])
        if x.size:
            p50, p90, p99 = np.percentile(x, [50, 90, 99])
            print(f"| {step} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {x.max():.2f} |")
    print(f"server resident memory: {base / 2**30:.2f} GB idle, peak {max(peak[0], hwm or 0) / 2**30:.2f} GB")
    for r in failed:
        print(f"seed {r['seed']}: {r['error'] or 'saw another session data'}", file=sys.stderr)
    return 1 if failed or not answers else 0


if __name__ == "__main__":
    sys.exit(main())
