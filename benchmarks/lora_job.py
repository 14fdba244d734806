"""A LoRA training job on the CPU with the app's defaults, through the API, while the server's memory is watched.

Starts ``app/app.py`` (its defaults: 2 jobs at once, 4 GB and 60 minutes per job) on a free 127.0.0.1 port, loads
the default sample, and trains what the Train tab proposes once the lora backbone is picked (the default methods,
device auto, 3 epochs, patience 2, max length 128 on a CPU). Every 0.5 s it samples the resident memory of the
server process and of its training workers, printing a timeline (memory beside the Train tab's status line). When
the job has ended (finished, stopped at the time limit, or failed with a message) it checks that the server still
answers and prints the final status, the peaks and the wall time.

    .venv/bin/python benchmarks/lora_job.py                  # the "LoRA on a CPU" figures in docs/RESULTS.md
    .venv/bin/python benchmarks/lora_job.py --time-limit-min 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import _free_port, _peak_hwm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from app.common import DEFAULT_METHODS
    from app.tabs.data import SAMPLES
    from app.training import default_lora_max_length
    from causalrm.training.backbones.base import get_backbone_class

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit-min", type=float, default=None, help="the server's --job-time-limit-min")
    ap.add_argument("--every-s", type=float, default=60.0, help="seconds between timeline lines")
    args = ap.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    extra = ["--job-time-limit-min", f"{args.time_limit_min:g}"] if args.time_limit_min is not None else []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CAUSALRM_APP_TMPDIR": tmp, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "0"}
        with open(Path(tmp) / "server.log", "w") as log:
            server = psutil.Popen([sys.executable, "app/app.py", "--port", str(port), *extra], cwd=ROOT, env=env,
                                  stdout=log, stderr=log)
        peaks = {"server": 0, "workers": 0}
        now = {"server": 0, "worker": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                try:
                    now["server"] = server.memory_info().rss
                    now["worker"] = 0
                    for child in server.children():
                        if "forkserver" in " ".join(child.cmdline()):  # workers are forked from it
                            now["worker"] = sum(w.memory_info().rss for w in child.children())
                except psutil.Error:
                    continue
                peaks["server"] = max(peaks["server"], now["server"])
                peaks["workers"] = max(peaks["workers"], now["worker"])

        try:
            from gradio_client import Client
            from load_test import wait_for_server  # benchmarks/ is on sys.path when run as a script

            if not wait_for_server(url, server, Path(tmp) / "server.log"):
                return 1
            threading.Thread(target=sample, daemon=True).start()
            client = Client(url, verbose=False)
            client.predict(SAMPLES[0], "teacher (semi-synthetic, known score)", 0.5, 0.2, 0.1, 0.2, 0,
                           api_name="/load_sample")
            epochs, patience = get_backbone_class("lora").app_epochs
            t0 = time.perf_counter()
            job = client.submit(list(DEFAULT_METHODS), "lora", "auto", epochs, patience, 0, False, False,
                                default_lora_max_length(), api_name="/train")
            status, last_print = "", 0.0
            while not job.done():
                time.sleep(1)
                outputs = job.outputs()
                status = outputs[-1][0] if outputs else status
                if time.perf_counter() - last_print >= args.every_s:  # the timeline: memory beside the status
                    last_print = time.perf_counter()
                    print(f"{(last_print - t0) / 60:5.1f} min  server {now['server'] / 2**30:.2f} GB  worker "
                          f"{now['worker'] / 2**30:.2f} GB  {status.splitlines()[0][:90] if status else ''}",
                          flush=True)
            try:
                status = job.result()[0]
            except Exception as err:  # noqa: BLE001 - a job that failed with its message is a valid outcome
                status = f"failed with: {err}"
            wall = time.perf_counter() - t0
            answers = urllib.request.urlopen(url, timeout=10).status == 200
            answers = answers and isinstance(client.predict(0.1, api_name="/clip_report")[0], str)
        finally:
            stop.set()
            hwm = _peak_hwm(server.pid)
            server.terminate()
            server.wait(timeout=30)
    print(f"methods {', '.join(DEFAULT_METHODS)}, lora, {epochs} epochs, patience {patience}, max length "
          f"{default_lora_max_length()}; wall time {wall / 60:.1f} min; server answers afterwards: {answers}")
    print(f"peak resident memory: server {max(peaks['server'], hwm or 0) / 2**30:.2f} GB, training worker "
          f"{peaks['workers'] / 2**30:.2f} GB")
    print("final status:", " ".join(status.split()))
    return 0 if answers else 1


if __name__ == "__main__":
    sys.exit(main())
