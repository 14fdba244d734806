"""Serve the workbench for a test: a subprocess on a free 127.0.0.1 port, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args: list[str], sessions: Path, *, timeout: float = 180) -> Iterator[str]:
    """Run ``args`` plus ``--port`` with session folders under ``sessions``; yield its URL once it answers 200.

    The server's output goes to ``sessions / "server.log"``; a server that dies or never answers fails the test
    with the end of that log.
    """
    with server_process(args, sessions, timeout=timeout) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(args: list[str], sessions: Path, *, timeout: float = 180
                   ) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`serving`, yielding the server's process too."""
    port = free_port()
    env = {**os.environ, "CAUSALRM_APP_TMPDIR": str(sessions), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "0"}
    log_path = sessions / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([*args, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + timeout
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the app did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False
