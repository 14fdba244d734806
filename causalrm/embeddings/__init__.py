"""Representations ``x`` of (prompt, response) impressions, with an on-disk cache keyed by model and text.

``Embedder(model=...).embed(prompts, responses)`` returns a float32 array ``X`` of shape ``(n, d)``; ``embed_log(df)``
does so for a log's ``prompt`` / ``response`` (and chat ``context``) columns.

Submodules:

* :mod:`causalrm.embeddings.embedder`: ``Embedder`` and ``embed_log``; the representation (encoders: mean-pooled
  text pairs; decoders: the last token of the chat-template conversation), device and dtype choice, batching.
* :mod:`causalrm.embeddings.models`: ``resolve_model`` -> ``ModelSpec`` (encoder or decoder, pooling,
  normalisation, max length, revision; the cache key), from a model's config files only; ``model_parameters`` (its
  size, from its weight files' headers or config).
* :mod:`causalrm.embeddings.cache`: ``EmbeddingCache`` (safetensors shards keyed by the SHA-256 of the texts,
  ``text_digests``), the shipped ``data/embeddings/`` and the user cache (``default_cache_dir``).
* :mod:`causalrm.embeddings.files`: ``read_embeddings``, embedding files (``.safetensors`` / ``.npy``, memory-mapped)
  and sharded embeddings.

Every name the single module offered is importable from ``causalrm.embeddings`` as before (``X as X``: a
re-export outside ``__all__``).
"""

from __future__ import annotations

from causalrm.data.schema import DEFAULT_EMBEDDER as DEFAULT_EMBEDDER
from causalrm.embeddings.cache import CACHE_ENV as CACHE_ENV
from causalrm.embeddings.cache import CACHE_FORMAT as CACHE_FORMAT
from causalrm.embeddings.cache import SHIPPED_DIR, EmbeddingCache, default_cache_dir, text_digests
from causalrm.embeddings.embedder import PLAIN_TEMPLATE as PLAIN_TEMPLATE
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.embeddings.embedder import _pick_device as _pick_device  # used by tests/test_devices.py
from causalrm.embeddings.files import read_embeddings as read_embeddings
from causalrm.embeddings.models import DECODER_MAX_LENGTH as DECODER_MAX_LENGTH
from causalrm.embeddings.models import DEFAULT_MODEL, model_parameters, resolve_model
from causalrm.embeddings.models import ModelSpec as ModelSpec
from causalrm.embeddings.models import _bundled_minilm_path as _bundled_minilm_path  # benchmarks/bench_embeddings.py

__all__ = [
    "DEFAULT_MODEL",
    "SHIPPED_DIR",
    "Embedder",
    "EmbeddingCache",
    "default_cache_dir",
    "embed_log",
    "model_parameters",
    "resolve_model",
    "text_digests",
]

