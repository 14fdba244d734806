"""The served workbench and its worker processes: an embedding model too large for one job is refused in the
server before it loads while the server keeps answering, and a server terminated with a job running leaves no
worker behind (nor a leaked semaphore)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

gradio_client = pytest.importorskip("gradio_client")
from app_server import server_process  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_workers"), pytest.mark.filterwarnings("ignore::UserWarning")]
SAMPLE = "UltraFeedback (simulated)"
TEACHER = "teacher (semi-synthetic, known score)"


def big_model(folder: Path, parameters: int) -> Path:
    """A BERT-shaped model folder whose safetensors file declares ``parameters`` float32 weights (a sparse file:
    nothing is written, and nothing could load it)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"],
                                                    "hidden_size": 64, "num_hidden_layers": 2,
                                                    "num_attention_heads": 2, "intermediate_size": 128,
                                                    "vocab_size": 1000}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [parameters], "data_offsets": [0, 4 * parameters]}}).encode()
    with (folder / "model.safetensors").open("wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + 4 * parameters)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sessions = tmp_path_factory.mktemp("worker-sessions")
    with server_process([sys.executable, "app/app.py", "--job-memory-gb", "1.5"], sessions) as (url, proc):
        yield {"url": url, "proc": proc, "log": sessions / "server.log"}


def test_a_model_over_the_job_memory_is_refused_and_the_server_keeps_answering(server, tmp_path):
    client = Client(server["url"], verbose=False)
    client.predict(SAMPLE, TEACHER, 0.5, 0.2, 0.1, 0.2, 0, api_name="/load_sample")
    model = big_model(tmp_path / "big-model", 500_000_000)  # 2 GB of float32 weights
    with pytest.raises(AppError, match=r"500M parameters need about 2\.\d GB, over this server's 1\.5 GB per job"):
        client.predict(str(model), "cpu", api_name="/embed")
    status = client.predict("all-MiniLM-L6-v2", "cpu", api_name="/embed")  # in a worker; the shipped cache
    assert "2,398 × 384 ready" in status


def test_terminating_the_server_stops_its_workers(server):
    """SIGTERM (a service manager, a Space restart) while a training job runs: no worker survives the server."""
    client = Client(server["url"], verbose=False)
    client.predict(SAMPLE, TEACHER, 0.5, 0.2, 0.1, 0.2, 1, api_name="/load_sample")
    client.submit(["naive"], "mlp", "cpu", 600, 600, 0, False, False, api_name="/train")
    proc = psutil.Process(server["proc"].pid)
    deadline = time.monotonic() + 180
    while not any(p.ppid() != proc.pid for p in proc.children(recursive=True)):  # a worker: a fork server's child
        assert time.monotonic() < deadline, "no training worker started"
        time.sleep(0.2)
    family = proc.children(recursive=True)
    try:
        server["proc"].send_signal(signal.SIGTERM)
        server["proc"].wait(timeout=60)
        _, survivors = psutil.wait_procs(family, timeout=60)
        assert survivors == []
        assert "leaked semaphore" not in server["log"].read_text()
    finally:
        for p in family:
            if p.is_running():
                p.kill()
