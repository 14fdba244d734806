"""The embedder: representations ``x`` of (prompt, response) impressions, through the cache of
:mod:`causalrm.embeddings.cache`.

``Embedder(model=...).embed(prompts, responses)`` returns a float32 array ``X`` of shape ``(n, d)``.

Two kinds of model are supported, detected from the model's config:

* **Encoders** (BERT-style, e.g. the default ``all-MiniLM-L6-v2``): the prompt and the response are encoded as a text
  pair (``[CLS] prompt [SEP] response [SEP]``, truncated ``longest_first``); an empty prompt gives the response alone.
  The vector is the mean of the final hidden states over non-pad tokens, L2-normalised when the model is a
  sentence-transformers model with a ``Normalize`` module (the default is), so it matches
  ``SentenceTransformer.encode([(prompt, response)])``.
* **Decoders** (causal LMs and their reward/classification heads, e.g. Llama, Qwen, FsfairX-LLaMA3-RM): the paper's
  representation, the final hidden state of the last non-pad token of the conversation
  ``[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]`` rendered with the tokenizer's
  chat template (``apply_chat_template(..., tokenize=False)``, tokenised without extra special tokens). Without a
  template the plain fallback ``"User: {prompt}\\n\\nAssistant: {response}"`` is tokenised with the tokenizer's own
  special tokens (BOS). An empty prompt drops the user turn (or, if the template rejects that, keeps it empty).
  A chat-format log (``causalrm.data.chat``: a JSON ``context`` column of earlier turns) is embedded as its whole
  conversation ``chat.conversation(context, response)`` through the template (``embed(..., contexts)``, which
  ``embed_log`` passes); without a template, the rendered ``prompt`` in the plain fallback.
  Long conversations are truncated from the left, so the end of the response (the pooled token) is always kept.
  ``pad_token`` falls back to ``eos_token``; pad positions are masked and ``position_ids`` follow the attention mask,
  so left and right padding give the same vectors.

Batches are formed after sorting by token length (fewer pad tokens); results come back in the input order.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from causalrm.data import schema
from causalrm.data.schema import DEFAULT_EMBEDDER
from causalrm.embeddings.cache import EmbeddingCache, _shipped_roots, default_cache_dir, text_digests
from causalrm.embeddings.models import resolve_model
from causalrm.errors import InputError

__all__ = ["PLAIN_TEMPLATE", "Embedder", "embed_log"]

PLAIN_TEMPLATE = "User: {prompt}\n\nAssistant: {response}"
_FLUSH_ROWS = 4096  # computed rows are written to the cache in shards of at most this many rows


_LOADED: dict[tuple, tuple[Any, Any]] = {}  # the last loaded (tokenizer, model), shared by embedders of that model


def _pick_device(device: str | None) -> str:
    """``device`` resolved by :func:`causalrm.devices.resolve_device`; the embedder's ``"auto"`` may pick mps."""
    from causalrm.devices import resolve_device

    return str(resolve_device(device, auto_mps=True))


_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}


def _pick_dtype(dtype: str, device: str):
    import torch

    if dtype in (None, "", "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32
    if str(dtype) not in _DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; use auto, float32, bfloat16 or float16")
    return getattr(torch, _DTYPES[str(dtype)])


class Embedder:
    """(prompt, response) -> float32 vectors ``x`` (see the module docstring for the representation and the cache).

    Parameters
    ----------
    model : "all-MiniLM-L6-v2" (bundled offline copy of sentence-transformers/all-MiniLM-L6-v2), any Hugging Face
        encoder or decoder id, or a local folder saved with ``save_pretrained``.
    device : "auto" (cuda > mps > cpu) or a torch device string.
    dtype : "auto" (bf16 on CUDA when supported, else fp16 on GPUs; fp32 on CPU) or float32 / bfloat16 / float16.
    batch_size : rows per forward pass (batches are formed after sorting by token length).
    max_length : token limit (default: the sentence-transformers max_seq_length, else the model's, capped at 512 for
        encoders and 2048 for decoders). Part of the cache key.
    cache_dir : user cache root (default :func:`default_cache_dir`).
    progress : show a tqdm bar while embedding.
    progress_callback : ``f(done, total)`` called after the cache lookup and after each batch (rows, cache hits
        included), e.g. for ``gr.Progress``.
    cache : False disables every cache (shipped and user): nothing is read or written.
    shipped_dirs : read-only cache roots consulted first (default: the repository's ``data/embeddings/``).
    cache_dtype : "float32" (default) or "float16" for newly written shards.
    pooling : "auto" (mean for encoders, per the sentence-transformers pooling config; last for decoders), "mean",
        "cls" or "last".
    normalize : "auto" (only when the model has a sentence-transformers Normalize module), True or False.
    padding_side : "right" (default) or "left"; the result does not depend on it (tested).
    trust_remote_code : passed to ``from_pretrained``.

    Attributes
    ----------
    spec : :class:`ModelSpec`; ``model_id``; ``dim``; ``last_stats``: {"rows", "unique", "cache_hits", "computed"}
    of the latest :meth:`embed` call.
    """

    def __init__(self, *, model: str = DEFAULT_EMBEDDER, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 64, max_length: int | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = True, progress_callback: Callable[[int, int], None] | None = None,
                 cache: bool = True, shipped_dirs: Sequence[str | os.PathLike] | None = None,
                 cache_dtype: str = "float32", pooling: str = "auto", normalize: bool | str = "auto",
                 padding_side: str = "right", trust_remote_code: bool = False) -> None:
        if int(batch_size) < 1:
            raise InputError(f"batch size {batch_size} must be at least 1")
        if padding_side not in ("left", "right"):
            raise InputError(f"padding_side {padding_side!r} must be left or right")
        if dtype not in (None, "", "auto") and str(dtype) not in _DTYPES:
            raise InputError(f"dtype {dtype!r} is not supported; use auto, float32, bfloat16 or float16")
        if device not in (None, "", "auto"):
            _pick_device(device)  # fail early on a bad or unavailable device ("auto" needs no torch import yet)
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.max_length = max_length
        self.cache_dir = cache_dir
        self.progress = progress
        self.progress_callback = progress_callback
        self.cache = cache
        self.shipped_dirs = shipped_dirs
        self.cache_dtype = cache_dtype
        self.pooling = pooling
        self.normalize = normalize
        self.padding_side = padding_side
        self.trust_remote_code = trust_remote_code
        self.spec = resolve_model(model, max_length=max_length, pooling=pooling, normalize=normalize,
                                  trust_remote_code=trust_remote_code)
        self._cache: EmbeddingCache | None = None
        if cache:
            shipped = _shipped_roots() if shipped_dirs is None else [Path(p) for p in shipped_dirs]
            write_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            meta = {"model": self.spec.model_id, **asdict(self.spec), "key": self.spec.key}
            meta.pop("source", None)
            self._cache = EmbeddingCache(self.spec.namespace, meta, roots=[*shipped, write_root],
                                         write_root=write_root, dtype=cache_dtype)
        self._model = None
        self._tokenizer = None
        self._torch_device: str | None = None
        self._accepts: set[str] = set()
        self.last_stats: dict[str, int] = {}
        self.shard_name = "shard"  # file-name prefix of the cache shards this embedder writes

    # -- properties -----------------------------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def dim(self) -> int:
        if not self.spec.dim:
            self._load()
        return self.spec.dim

    def __repr__(self) -> str:
        return (f"Embedder(model={self.spec.model_id!r}, kind={self.spec.kind}, pooling={self.spec.pooling}, "
                f"max_length={self.spec.max_length}, batch_size={self.batch_size})")

    # -- loading ----------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        if self._model is not None:
            return
        device = _pick_device(self.device)
        torch_dtype = _pick_dtype(self.dtype, device)
        key = (self.spec.key, self.spec.source, device, str(torch_dtype), bool(self.trust_remote_code))
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = self._load_model(device, torch_dtype)
            _LOADED.clear()  # keep at most one model alive: embedders of one model share it, a new model evicts it
            _LOADED[key] = loaded
        tokenizer, model = loaded
        self._accepts = set(inspect.signature(model.forward).parameters)
        self._tokenizer, self._model, self._torch_device = tokenizer, model, device
        if not self.spec.dim:
            object.__setattr__(self.spec, "dim", int(model.config.hidden_size))

    def _load_model(self, device: str, torch_dtype: Any) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        src = self.spec.source
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # a causal LM loaded without its head reports "lm_head UNEXPECTED": expected
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=self.trust_remote_code)
            model = AutoModel.from_pretrained(src, dtype=torch_dtype, trust_remote_code=self.trust_remote_code)
        except Exception as err:  # noqa: BLE001
            first_line = (str(err).splitlines() or [""])[0][:200]
            raise InputError(f"cannot load model {self.model!r}: {type(err).__name__}: {first_line}; check the "
                             "folder or model id") from err
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise InputError(f"model {self.model!r}: its tokenizer has neither a pad nor an eos token; "
                                 "set tokenizer.pad_token and save it")
            tokenizer.pad_token = tokenizer.eos_token
        if self.spec.kind == "decoder":
            tokenizer.truncation_side = "left"  # keep the end of the response: it holds the pooled token
        model.eval().to(device)
        return tokenizer, model

    # -- tokenisation -----------------------------------------------------------------------------------------------

    def _render_chat(self, prompt: str, response: str, context: str | None = None) -> str:
        """The row through the tokenizer's chat template: the whole conversation (``chat.conversation(context,
        response)``) for a chat-format row with a ``context``, else ``[user: prompt, assistant: response]``."""
        tok = self._tokenizer
        if context:
            from causalrm.data.chat import conversation

            try:
                return tok.apply_chat_template(conversation(context, response), tokenize=False,
                                               add_generation_prompt=False)
            except Exception:  # noqa: BLE001 - a template that rejects this turn order: the rendered prompt below
                pass
        turns = [{"role": "assistant", "content": response}]
        if prompt:
            turns.insert(0, {"role": "user", "content": prompt})
        try:
            return tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)
        except Exception:  # noqa: BLE001 - some templates insist on a user turn first
            turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)

    def _tokenize(self, prompts: list[str], responses: list[str],
                  contexts: list[str | None] | None = None) -> list[dict[str, list[int]]]:
        tok, L = self._tokenizer, self.spec.max_length
        n = len(prompts)
        rows: list[dict[str, list[int]] | None] = [None] * n
        if self.spec.text_format == "pair":
            paired = [i for i in range(n) if prompts[i]]
            single = [i for i in range(n) if not prompts[i]]
            groups = []
            if paired:
                groups.append((paired, tok([prompts[i] for i in paired], [responses[i] for i in paired],
                                           truncation="longest_first", max_length=L)))
            if single:
                groups.append((single, tok([responses[i] for i in single], truncation=True, max_length=L)))
        else:
            if getattr(tok, "chat_template", None):
                ctxs = contexts if contexts is not None else [None] * n
                texts = [self._render_chat(p, r, c) for p, r, c in zip(prompts, responses, ctxs)]
                enc = tok(texts, add_special_tokens=False, truncation=True, max_length=L)
            else:
                texts = [PLAIN_TEMPLATE.format(prompt=p, response=r) if p else r for p, r in zip(prompts, responses)]
                enc = tok(texts, add_special_tokens=True, truncation=True, max_length=L)
            groups = [(list(range(n)), enc)]
        for idx, enc in groups:
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
            for j, i in enumerate(idx):
                rows[i] = {k: enc[k][j] for k in keys}
        return rows  # type: ignore[return-value]

    def _collate(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        tok = self._tokenizer
        width = max(len(r["input_ids"]) for r in rows)
        pad_values = {"input_ids": tok.pad_token_id, "attention_mask": 0,
                      "token_type_ids": getattr(tok, "pad_token_type_id", 0) or 0}
        batch = {}
        keys = set(rows[0]) | {"attention_mask"}
        for key in keys:
            arr = np.full((len(rows), width), pad_values[key], dtype=np.int64)
            for j, r in enumerate(rows):
                seq = r[key] if key in r else [1] * len(r["input_ids"])
                if self.padding_side == "right":
                    arr[j, : len(seq)] = seq
                else:
                    arr[j, width - len(seq):] = seq
            batch[key] = torch.from_numpy(arr)
        if "position_ids" in self._accepts and self.spec.kind == "decoder":
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        if "use_cache" in self._accepts:
            batch["use_cache"] = False
        return {k: (v.to(self._torch_device) if hasattr(v, "to") else v) for k, v in batch.items()
                if k in self._accepts or k in ("attention_mask", "input_ids")}

    # -- forward ----------------------------------------------------------------------------------------------------

    def _forward_batch(self, batch: dict[str, Any]):
        """Pooled float32 vectors ``(b, d)`` for one padded batch (a torch tensor on the model's device)."""
        import torch

        out = self._model(**batch)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        mask = batch["attention_mask"]
        if self.spec.pooling == "last":
            positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            last = (positions * mask).argmax(dim=1)
            vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        elif self.spec.pooling == "cls":
            vec = hidden[:, 0].float()
        else:
            m = mask.unsqueeze(-1).to(torch.float32)
            vec = (hidden.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        if self.spec.normalize:
            vec = torch.nn.functional.normalize(vec, p=2, dim=1)
        return vec

    def _compute(self, prompts: list[str], responses: list[str], on_rows: Callable[[np.ndarray, np.ndarray], None],
                 bar: Any, contexts: list[str | None] | None = None) -> None:
        """Embed rows in length-sorted batches; ``on_rows(indices, vectors)`` receives each batch in input indices."""
        import torch

        self._load()
        rows = self._tokenize(prompts, responses, contexts)
        lengths = np.fromiter((len(r["input_ids"]) for r in rows), dtype=np.int64, count=len(rows))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory errors surface at once
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start: start + self.batch_size]
                vec = self._forward_batch(self._collate([rows[i] for i in idx]))
                on_rows(idx, vec.cpu().numpy().astype(np.float32, copy=False))
                bar.update(len(idx))

    def embed(self, prompts: Sequence[str | None], responses: Sequence[str],
              contexts: Sequence[Any] | None = None) -> np.ndarray:
        """Vectors ``X`` float32 ``(n, d)`` for the rows ``(prompts[i], responses[i])`` (None prompt = empty).

        ``contexts`` (a chat-format log's ``context`` column: JSON message lists, None/"" for none): a decoder with a
        chat template embeds each row's whole conversation ``chat.conversation(context, response)`` through the
        template, and the cache key includes the context. Flat encoders (``text_format == "pair"``) ignore it and
        keep the rendered prompt."""
        from tqdm.auto import tqdm

        prompts = ["" if p is None else p for p in prompts]
        responses = list(responses)
        if len(prompts) != len(responses):
            raise InputError(f"{len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")
        for i, (p, r) in enumerate(zip(prompts, responses)):
            if not isinstance(r, str) or not isinstance(p, str):
                raise InputError(f"row {i}: prompt and response must be text (got {type(p).__name__}, "
                                 f"{type(r).__name__}); fill or drop the row")
        n = len(prompts)
        ctxs = None
        if contexts is not None and self.spec.text_format == "chat":
            from causalrm.data.chat import context_json, parse_context

            if len(contexts) != n:
                raise InputError(f"{len(contexts)} contexts but {n} responses; pass one context per row")
            ctxs = []
            for i, c in enumerate(contexts):
                if isinstance(c, float) and np.isnan(c):  # pandas null
                    c = None
                try:
                    msgs = parse_context(c)
                except InputError as err:
                    raise InputError(f"row {i}: context: {err}") from None
                ctxs.append(context_json(msgs) if msgs else None)
            if not any(ctxs):
                ctxs = None
        if not self.spec.dim:
            self._load()  # exotic config without a hidden size: learn d from the model
        digests = text_digests(prompts, responses, ctxs)
        uniq_keys: dict[bytes, int] = {}
        first = np.empty(n, dtype=np.int64)  # first[i]: index of row i's text among the unique texts
        uniq_list: list[int] = []  # uniq_rows[j]: the first input row holding unique text j
        for i in range(n):
            key = bytes(digests[i])
            j = uniq_keys.get(key)
            if j is None:
                j = uniq_keys[key] = len(uniq_list)
                uniq_list.append(i)
            first[i] = j
        uniq_rows = np.asarray(uniq_list, dtype=np.int64)
        u = len(uniq_list)
        d = self.spec.dim
        if self._cache is not None and u:
            found, vectors = self._cache.lookup(digests[uniq_rows], d)
        else:
            found, vectors = np.zeros(u, dtype=bool), np.zeros((u, d), dtype=np.float32)
        missing = np.flatnonzero(~found)
        hits_rows = int(found[first].sum()) if n else 0
        self.last_stats = {"rows": n, "unique": u, "cache_hits": hits_rows, "computed": int(len(missing))}
        done = hits_rows
        if self.progress_callback is not None:
            self.progress_callback(done, n)
        if len(missing):
            count_per_unique = np.bincount(first, minlength=u)
            pending_d: list[np.ndarray] = []
            pending_v: list[np.ndarray] = []
            state = {"done": done, "pending": 0}

            def flush() -> None:
                if self._cache is not None and pending_d:
                    self._cache.add(np.concatenate(pending_d), np.concatenate(pending_v), name=self.shard_name)
                pending_d.clear()
                pending_v.clear()
                state["pending"] = 0

            def on_rows(idx: np.ndarray, vec: np.ndarray) -> None:
                targets = missing[idx]
                if self._cache is not None:
                    vec = vec.astype(self._cache.dtype).astype(np.float32)  # what a re-run will read back
                vectors[targets] = vec
                pending_d.append(digests[uniq_rows[targets]])
                pending_v.append(vec)
                state["pending"] += len(idx)
                if state["pending"] >= _FLUSH_ROWS:
                    flush()
                state["done"] += int(count_per_unique[targets].sum())
                if self.progress_callback is not None:
                    self.progress_callback(state["done"], n)

            sel = uniq_rows[missing]
            short = self.spec.model_id.rsplit("/", 1)[-1]
            # disable=None: no bar when stderr is not a terminal (no carriage-return redraws in log files)
            with tqdm(total=len(missing), desc=f"embed ({short})", unit="row",
                      disable=None if self.progress else True, leave=False) as bar:
                try:
                    self._compute([prompts[i] for i in sel], [responses[i] for i in sel], on_rows, bar,
                                  None if ctxs is None else [ctxs[i] for i in sel])
                finally:
                    flush()  # rows computed before an interruption are kept
        if n == 0:
            return np.zeros((0, d), dtype=np.float32)
        return np.ascontiguousarray(vectors[first], dtype=np.float32)


def embed_log(df: Any, embedder: Embedder | None = None) -> np.ndarray:
    """``X`` float32 ``(n, d)`` for a log's ``prompt`` / ``response`` columns (polars or pandas; null prompt = "");
    for an A/B log (``causalrm.data.pairwise``) ``(n, 2d)``, each pair's ``[x_a, x_b]``.

    ``embedder`` defaults to ``Embedder()`` (all-MiniLM-L6-v2 with the shipped and user caches). A chat-format log
    (a ``context`` column, ``causalrm.data.chat``) passes its contexts on: an LLM embedder with a chat template embeds
    each row's whole conversation; a flat encoder embeds the rendered ``prompt``.
    """
    import polars as pl

    from causalrm.data.pairwise import is_pair_log, pair_features, sides
    from causalrm.data.schema import PROMPT, RESPONSE

    if isinstance(df, pl.DataFrame) and is_pair_log(df):  # an A/B log: each pair's [x_a, x_b]
        embedder = embedder or Embedder()
        return pair_features(*(embed_log(side, embedder) for side in sides(df)))
    columns = list(df.columns)
    if RESPONSE not in columns:
        raise InputError(f"the log has no {RESPONSE!r} column (columns: {', '.join(map(str, columns))}); map one with "
                         f"--map {RESPONSE}=<column>")
    responses = list(df[RESPONSE].to_list() if hasattr(df[RESPONSE], "to_list") else df[RESPONSE])
    if PROMPT in columns:
        prompts = list(df[PROMPT].to_list() if hasattr(df[PROMPT], "to_list") else df[PROMPT])
        prompts = ["" if (p is None or (isinstance(p, float) and np.isnan(p))) else p for p in prompts]
    else:
        prompts = [""] * len(responses)
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise InputError(f"row {i}: column {RESPONSE!r} is empty or not text; fill or drop the row")
    contexts = None
    if schema.CONTEXT in columns:  # chat-format log: decoders embed the whole conversation through their template
        contexts = list(df[schema.CONTEXT].to_list() if hasattr(df[schema.CONTEXT], "to_list") else df[schema.CONTEXT])
    embedder = embedder or Embedder()
    return embedder.embed(prompts, responses) if contexts is None else embedder.embed(prompts, responses, contexts)
