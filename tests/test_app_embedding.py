"""Embedding as a job (app/embedding.py, app/embed_worker.py): a model's size read from its files without loading
it, the Space's limits on the models a visitor may name, the job's result and its Cancel."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(Path(__file__).parent)) if p not in sys.path]

from test_app_workers import big_model  # noqa: E402

from app import embedding, training  # noqa: E402
from app.session import new_session  # noqa: E402
from causalrm.embeddings.embedder import Embedder, embed_log  # noqa: E402
from causalrm.embeddings.models import model_parameters  # noqa: E402
from causalrm.errors import InputError  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_jobs")]


def test_model_parameters_match_the_weight_files_and_the_loaded_model():
    from helpers_tiny_models import minilm_path
    from safetensors import safe_open
    from transformers import AutoModel

    with safe_open(str(Path(minilm_path()) / "model.safetensors"), "pt") as fh:
        stored = sum(fh.get_slice(k).get_shape()[0] * int(np.prod(fh.get_slice(k).get_shape()[1:])) for k in fh.keys())
    loaded = sum(p.numel() for p in AutoModel.from_pretrained(minilm_path()).parameters())
    counted = model_parameters("all-MiniLM-L6-v2")
    assert counted == stored and 0 <= counted - loaded < 1e-4 * loaded  # the files also hold a position-id buffer


def test_the_config_estimate_without_safetensors(tmp_path):
    """No safetensors file: embeddings + per layer 4 h² + 2 h i, against the count of a model built from the
    config (biases and layer norms are the small remainder)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    config.save_pretrained(tmp_path)
    exact = sum(p.numel() for p in BertModel(config, add_pooling_layer=False).parameters())
    assert 0.9 * exact < model_parameters(str(tmp_path)) <= exact


def test_space_limits_the_models_a_visitor_may_name(tmp_path, monkeypatch):
    model = big_model(tmp_path / "m", 200_000_000)  # 800 MB of float32 weights
    monkeypatch.setattr(embedding, "POLICY", embedding.EmbedPolicy(on_space=True, allow=(), max_mb=500))
    with pytest.raises(InputError, match="on this Space name a Hugging Face model id, not a folder"):
        embedding.check_model(str(model), "cpu")
    assert embedding.check_model(" all-MiniLM-L6-v2 ", "cpu") == "all-MiniLM-L6-v2"
    monkeypatch.setattr(embedding, "POLICY", embedding.EmbedPolicy(on_space=False))
    monkeypatch.setattr(training.SETTINGS, "memory_gb", 1.0)
    with pytest.raises(InputError, match=r"200M parameters need about 1\.\d GB, over this server's 1 GB per job"):
        embedding.check_model(str(model), "cpu")
    monkeypatch.setattr(training.SETTINGS, "memory_gb", 4.0)
    assert embedding.check_model(str(model), "cpu") == str(model)  # off a Space, a folder that fits


def _session(n: int):
    session = new_session()
    session.log = pl.DataFrame({"prompt": [f"question {i}" for i in range(n)],
                                "response": [f"an answer numbered {i}" for i in range(n)]})
    return session


def test_the_job_embeds_as_the_server_would_and_cancel_stops_it():
    session = _session(40)
    try:
        seen = []
        assert embedding.embed_in_worker(session, "all-MiniLM-L6-v2", "cpu", lambda *a, **k: seen.append(a))
        reference = embed_log(session.log, Embedder(progress=False, cache=False))
        np.testing.assert_allclose(session.X, reference, atol=1e-6)
        assert session.embedding.state == "done" and seen[-1] == ((40, 40),)

        def cancel_at_once(*args, **kwargs):
            session.embedding.cancel()

        session.log, session.X = _session(2000).log, None
        assert not embedding.embed_in_worker(session, "all-MiniLM-L6-v2", "cpu", cancel_at_once)
        assert session.embedding.state == "cancelled" and session.X is None
    finally:
        session.close()
