"""Reward models outside causalrm: the classes behind ``load_reward_model`` (:mod:`causalrm.export.loading`) and the
exports of :mod:`causalrm.export.folder`.

Exports (``causalrm export RUN_DIR OUT``, :func:`export_run`)
----------------------------------------------------------------
- **LoRA runs** become a Hugging Face folder that ``AutoModelForSequenceClassification.from_pretrained(OUT)`` loads
  with no newly initialised weight: the adapters merged into the base weights (peft's ``merge_and_unload``) and the
  trained one-logit head, ``config.json`` with ``num_labels=1``, ``architectures`` and ``pad_token_id``, the tokenizer
  with its pad token and chat template. ``adapter_only=True`` writes the peft adapter instead (``adapter_config.json``
  + ``adapter_model.safetensors``, head included as ``modules_to_save``), loadable with
  ``PeftModel.from_pretrained(base, OUT)``.
- **MLP runs** become a transformers folder too (:mod:`causalrm.training.backbones.mlp_export`): the frozen sentence encoder and the MLP
  head in one ``model.safetensors``, ``config.json`` whose ``auto_map`` names ``modeling_causalrm.py``
  (:mod:`causalrm.export.modeling_causalrm`, shipped in the folder) and the encoder's tokenizer, so
  ``AutoModelForSequenceClassification.from_pretrained(OUT, trust_remote_code=True)`` and
  ``pipeline("text-classification", model=OUT, trust_remote_code=True)`` load it. ``load_reward_model(OUT)`` reads
  the head from the same weights and embeds with the run's embedder (its cache included), as the run scores.

Every export holds ``causalrm_reward_model.json`` (kind, input format, training method, flip rates, propensity
summary) and a ``README.md`` model card. Exports are checked before they are moved into place: the folder is reloaded
and must reproduce the run's scores on probe texts (``verify=True``). Weights are safetensors, configs JSON.

Scoring
-------
:func:`load_reward_model` takes an export, a run directory or any Hugging Face sequence-classification reward model
(id or folder) and returns a :class:`RewardModel` with ``.score(prompts, responses) -> np.ndarray`` (reward logits z;
the predicted preference is sigma(z)). Prompts and responses are strings or, as TRL passes them for conversational
data, lists of ``{"role", "content"}`` messages. :func:`reward_function` wraps a model as a TRL ``reward_funcs``
entry; :func:`best_of_n` picks the best of several candidate responses.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalrm.devices import resolve_device
from causalrm.errors import InputError

EXPORT_FORMAT = "causalrm-reward-model"
EXPORT_VERSION = 2  # 2: MLP exports hold the encoder (transformers folder); 1: backbone.json + the head only
MANIFEST = "causalrm_reward_model.json"
PROBE_PROMPTS = ("How do I sort a list in Python?", "Write a haiku about the sea.", "What is 2 + 2?")
PROBE_RESPONSES = ("Use sorted(xs) for a new list or xs.sort() in place.", "Waves fold into foam", "5")


# --------------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------------
def _is_messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(m, dict) and "content" in m for m in value)


def _check_texts(prompts: Any, responses: Any) -> tuple[list[Any], list[Any]]:
    if isinstance(prompts, str) or _is_messages(prompts) and prompts and isinstance(prompts[0], dict):
        prompts = [prompts]
    if isinstance(responses, str) or _is_messages(responses) and responses and isinstance(responses[0], dict):
        responses = [responses]
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise InputError(f"got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")
    for name, values in (("prompt", prompts), ("response", responses)):
        for i, v in enumerate(values):
            if v is None:
                values[i] = ""
            elif not isinstance(v, str) and not _is_messages(v):
                raise InputError(f"{name} {i} is a {type(v).__name__}; pass a string or a list of "
                                 "{'role', 'content'} messages")
    return prompts, responses


# --------------------------------------------------------------------------------------------------------------------
# reward models
# --------------------------------------------------------------------------------------------------------------------
class RewardModel:
    """A loaded reward model: ``score(prompts, responses) -> np.ndarray`` of reward logits z (float32).

    Attributes: ``kind`` (an export's manifest kind, ``causalrm.training.backbones.base.export_format``; "hf" a third-party model,
    "run" a run directory or fitted estimator), ``path``, ``manifest`` (export metadata,
    empty for third-party models), ``loading_info`` (transformers' missing / unexpected keys, HF kinds only).
    """

    kind: str = ""

    def __init__(self, *, path: str | None = None, manifest: dict[str, Any] | None = None,
                 batch_size: int = 16) -> None:
        self.path = path
        self.manifest = dict(manifest or {})
        self.batch_size = int(batch_size)
        self.loading_info: dict[str, Any] = {}

    def score(self, prompts: Sequence[Any], responses: Sequence[Any], *, batch_size: int | None = None) -> np.ndarray:
        """Reward logits of each (prompt, response), in input order; strings or message lists."""
        prompts, responses = _check_texts(prompts, responses)
        if not prompts:
            return np.zeros(0, dtype=np.float32)
        return self._score(prompts, responses, int(batch_size or self.batch_size))

    def score_log(self, log: Any, X: np.ndarray | None = None) -> np.ndarray:
        """Reward logits of every row of an impression log (``prompt``, ``response``; nulls read as ""), as a
        LoRA run's ``Run.score`` gives them. ``X``: not used (the model reads the texts)."""
        prompts = log.get_column("prompt").fill_null("").to_list() if "prompt" in log.columns else [""] * log.height
        return self.score(prompts, log.get_column("response").fill_null("").to_list())

    def preference(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """Predicted preference sigma(z) in (0, 1)."""
        return (1.0 / (1.0 + np.exp(-self.score(prompts, responses).astype(np.float64)))).astype(np.float32)

    def _score(self, prompts: list[Any], responses: list[Any], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, path={self.path!r})"


class TransformerRewardModel(RewardModel):
    """A sequence-classification transformer (one logit) with its tokenizer and input format.

    ``chat``: conversations through the tokenizer's chat template (decoders); otherwise (prompt, response) text pairs.
    """

    def __init__(self, model: Any, tokenizer: Any, *, chat: bool, max_length: int, kind: str = "hf",
                 device: str | torch.device | None = "auto", **kw: Any) -> None:
        super().__init__(**kw)
        from causalrm.training.backbones.hf_models import prepare_tokenizer

        self.kind = kind
        self.tokenizer = prepare_tokenizer(tokenizer, chat=chat)
        self.chat = bool(chat)
        self.max_length = int(max_length)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        config = getattr(model, "config", None)
        if config is not None and getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = self.tokenizer.pad_token_id

    def _score(self, prompts: list[Any], responses: list[Any], batch_size: int) -> np.ndarray:
        from causalrm.training.backbones.hf_models import TokenFeatures, encode_texts
        from causalrm.training.scoring import predict_logits

        ids, types = encode_texts(self.tokenizer, prompts, responses, chat=self.chat, max_length=self.max_length)
        feats = TokenFeatures(ids, self.tokenizer.pad_token_id, types)
        return predict_logits(_FirstLogit(self.model), feats, batch_size=batch_size, device=self.device)


class _FirstLogit(torch.nn.Module):
    """A sequence-classification model as the scoring kernel sees a backbone: ``(**batch) -> logits (n,)``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.model(**batch).logits[:, 0].float()


class BackboneRewardModel(RewardModel):
    """A causalrm backbone as a reward model: a fitted ``causalrm.CausalRM``, a run directory, an exported MLP head.

    Texts become the backbone's features (``Backbone.featurize_texts``: the embedder's vectors for an embedding
    head, tokens for LoRA), scored by :func:`causalrm.training.scoring.predict_logits`: the one kernel that
    ``FitResult.score`` and ``Run.score`` (``causalrm.workflows.pipeline.score_with``) run too, so a run scores the same
    texts the same way whichever entry is used.
    """

    kind = "run"

    def __init__(self, backbone: Any, *, embedder: Any = None, device: str | torch.device | None = "auto",
                 autocast_dtype: str | None = None, **kw: Any):
        super().__init__(**kw)
        self.backbone = backbone
        self.embedder = embedder
        self.autocast_dtype = autocast_dtype
        self.device = resolve_device(device)
        self.backbone.to(self.device).eval()

    def score_log(self, log: Any, X: np.ndarray | None = None) -> np.ndarray:
        """Reward logits of every row of ``log``: ``causalrm.workflows.pipeline.score_with``'s path (``embed_log`` with this
        model's embedding model and the embedding caches, contexts included, unless ``X`` is given), so an export
        scores a log as its run does."""
        from causalrm.training.scoring import predict_logits

        if X is None and self.backbone.needs_embeddings:
            from causalrm.embeddings.embedder import Embedder, embed_log

            X = embed_log(log, Embedder(model=self.embedder.model, device=self.embedder.device, progress=False))
        return predict_logits(self.backbone, self.backbone.featurize(log, X), batch_size=self.batch_size,
                              device=self.device, autocast_dtype=self.autocast_dtype)

    def _score(self, prompts: list[Any], responses: list[Any], batch_size: int) -> np.ndarray:
        from causalrm.training.scoring import predict_logits

        features = self.backbone.featurize_texts(prompts, responses, embedder=self.embedder)
        return predict_logits(self.backbone, features, batch_size=batch_size, device=self.device,
                              autocast_dtype=self.autocast_dtype)


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{file}: unreadable export manifest ({err}); export the run again") from err
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InputError(f"{file}: not a causalrm reward-model manifest; export the run again")
    if int(data.get("version", 0)) > EXPORT_VERSION:
        raise InputError(f"{file}: written by a newer causalrm (export format {data.get('version')}); upgrade")
    return data


def _make_embedder(model: str, device: str | torch.device | None) -> Any:
    from causalrm.embeddings.embedder import Embedder

    dev = str(resolve_device(device))
    return Embedder(model=model, device=dev, progress=False, cache=False)


def _load_transformer(source: str, manifest: dict[str, Any], *, device: Any, batch_size: int,
                      trust_remote_code: bool = False) -> TransformerRewardModel:
    from causalrm.training.backbones.hf_models import no_progress_bars

    path = Path(source)
    adapter = path.is_dir() and (path / "adapter_config.json").is_file()
    with no_progress_bars(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls deprecated transformers aliases
        return _load_transformer_quietly(source, path, adapter, manifest, device=device, batch_size=batch_size,
                                         trust_remote_code=trust_remote_code)


def _load_transformer_quietly(source: str, path: Path, adapter: bool, manifest: dict[str, Any], *, device: Any,
                              batch_size: int, trust_remote_code: bool) -> TransformerRewardModel:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from causalrm.training.backbones.hf_models import is_encoder, quiet_transformers, resolve_model_path

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        if adapter:
            from peft import PeftModel

            cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
            base_id = manifest.get("base_model") or cfg.get("base_model_name_or_path")
            if not base_id:
                raise InputError(f"{path}/adapter_config.json names no base model; export the run again")
            with quiet_transformers():  # the base's own head is replaced by the adapter's trained head
                base = AutoModelForSequenceClassification.from_pretrained(
                    resolve_model_path(base_id), num_labels=1, trust_remote_code=trust_remote_code)
            base.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
                tokenizer.eos_token_id
            model = PeftModel.from_pretrained(base, source)
            info: dict[str, Any] = {}
            kind = "hf-adapter"
            model_type = base.config.model_type
        else:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, output_loading_info=True, trust_remote_code=trust_remote_code)
            kind = manifest.get("kind", "hf")
            model_type = model.config.model_type
            if int(getattr(model.config, "num_labels", 1)) != 1:
                raise InputError(f"{source}: a reward model has one output (num_labels=1), this one has "
                                 f"{model.config.num_labels}")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load reward model {source!r} ({str(err).splitlines()[0]}); pass an export folder, "
                         "a run directory or a local Hugging Face reward model") from err
    if "input_format" in manifest:
        chat = manifest["input_format"] == "chat"
    else:
        chat = not is_encoder(model_type)
    max_length = int(manifest.get("max_length") or 0)
    if not max_length:
        limits = [4096]
        conf = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code) if not adapter else base.config
        for v in (getattr(conf, "max_position_embeddings", None), tokenizer.model_max_length):
            if isinstance(v, int) and 0 < v < 10**7:
                limits.append(v)
        max_length = min(limits)
    rm = TransformerRewardModel(model, tokenizer, chat=chat, max_length=max_length, kind=kind, device=device,
                                path=str(source), manifest=manifest, batch_size=batch_size)
    rm.loading_info = {k: sorted(map(str, v)) if isinstance(v, (set, list)) else v for k, v in info.items()}
    return rm


def _run_reward_model(run: Any, *, device: Any, batch_size: int, embedder: str | None = None) -> RewardModel:
    return reward_model_of(run.backbone, run.config, path=str(run.path), device=device, batch_size=batch_size,
                           embedder=embedder)


def reward_model_of(backbone: Any, config: Any, *, path: str | None = None, device: Any = "auto",
                    batch_size: int = 16, embedder: str | None = None) -> RewardModel:
    """A trained backbone (with its ``FitConfig``) as a :class:`RewardModel`: the one scoring path of a run
    directory (:func:`load_reward_model`) and of a fitted ``causalrm.CausalRM``. ``embedder`` overrides the
    configuration's embedding model."""
    manifest = {"method": config.method, "backbone": backbone.name}
    embedder_ = _make_embedder(embedder or config.embedder, device) if backbone.needs_embeddings else None
    return BackboneRewardModel(backbone, embedder=embedder_, device=device, autocast_dtype=config.autocast_dtype,
                               path=path, manifest=manifest, batch_size=batch_size)


__all__ = ["EXPORT_FORMAT", "MANIFEST", "BackboneRewardModel", "RewardModel", "TransformerRewardModel", "reward_model_of"]
