"""Shared pytest fixtures (keep this file small; module-specific helpers live in the test modules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"


@pytest.fixture
def one_torch_thread():
    """Small tensors: run torch on one intra-op thread (more only add contention on a shared CPU); restored after."""
    from helpers_tiny_models import single_thread

    with single_thread():
        yield


@pytest.fixture
def cpu_one_thread():
    """The package's own thread limit (``devices.cpu_threads(1)``): nuisance fits and training in CLI tests."""
    from causalrm.devices import cpu_threads

    with cpu_threads(1):
        yield


@pytest.fixture
def write_file(tmp_path):
    """``write_file(name, content)`` writes text (UTF-8) or bytes to ``tmp_path / name`` and returns the path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def tiny_log_csv(write_file) -> Path:
    """A valid 4-row CSV log: two observed rows (one positive), two unobserved, one with an empty prompt."""
    return write_file(
        "tiny_log.csv",
        'prompt,response,feedback\nWhat is 2+2?,4,1\nWhat is 2+2?,"5, surely",0\nHi,Hello!,\n,Plain answer,\n',
    )
