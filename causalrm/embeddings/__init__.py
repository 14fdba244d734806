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

Import names from the submodule that defines them (this package re-exports nothing).
"""
