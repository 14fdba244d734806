"""Transformer + LoRA reward backbone (``--backbone lora``).

A Hugging Face ``AutoModelForSequenceClassification`` with one output (``num_labels=1``: the reward logit z) whose
attention projections carry low-rank adapters (LoRA, Hu et al. 2021, via ``peft``): for a frozen weight ``W`` the
layer computes ``W x + (alpha / r) B A x`` with trainable ``A`` (r x d_in) and ``B`` (d_out x r, initialised to 0).
The classification head (``classifier`` for BERT-like encoders, ``score`` for decoders) is trained in full
(``modules_to_save``); every other base weight stays frozen.

Inputs
------
- Encoders (BERT, RoBERTa, DeBERTa, ...; any model type with a masked-LM head) read ``(prompt, response)`` as a text
  pair: ``[CLS] prompt [SEP] response [SEP]``, truncated longest-first to ``max_length``.
- Decoders (Llama, Qwen, Mistral, ...) read the conversation ``[user: prompt, assistant: response]`` rendered with the
  tokenizer's chat template (``DEFAULT_CHAT_TEMPLATE`` when it has none), tokenised without extra special tokens --
  exactly what TRL does for a conversational reward model -- and truncated on the left so the end of the response
  (where the head pools) is kept. ``pad_token_id`` falls back to the eos token.

Features hold ragged token ids with their ``lengths`` (the trainer batches by length); ``batch`` pads dynamically
to the longest row of the batch. On CUDA the forward pass runs under bf16 autocast where supported (``bf16=True``);
``base_dtype="bfloat16"`` also stores the frozen base in bf16 (the adapters and head stay float32);
``gradient_checkpointing=True`` trades compute for activation memory.

Persistence (through :class:`~causalrm.training.backbones.base.Backbone`): ``backbone.json`` holds the keyword arguments below
(the base model is referenced by id or path, not copied) and ``model.safetensors`` holds only the adapters and the
head. The bundled all-MiniLM-L6-v2 is referenced by its alias, so a run moves between machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.options import as_str_tuple, option
from causalrm.training.backbones import lora_export
from causalrm.training.backbones.base import Backbone, ExportPlan, register_backbone, seeded_init
from causalrm.training.backbones.hf_models import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MODEL,
    TokenFeatures,
    encode_texts,
    is_encoder,
    prepare_tokenizer,
    quiet_transformers,
    resolve_model_path,
)

INPUT_FORMATS = ("auto", "pair", "chat")
BASE_DTYPES = ("float32", "bfloat16")
HEAD_NAMES = ("classifier", "score")


# LoRA target modules by model type (attention projections); other types: detected by module names, then peft's own
# defaults (peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "bert": ("query", "key", "value"),
    "roberta": ("query", "key", "value"),
    "xlm-roberta": ("query", "key", "value"),
    "electra": ("query", "key", "value"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj"),
    "distilbert": ("q_lin", "k_lin", "v_lin"),
    "modernbert": ("Wqkv", "Wo"),
    "gpt2": ("c_attn", "c_proj"),
    "gpt_neox": ("query_key_value", "dense"),
    "phi3": ("qkv_proj", "o_proj"),
}
_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj")
_BERT_LIKE = ("query", "key", "value")


def default_target_modules(model: torch.nn.Module) -> list[str] | None:
    """Attention projections to adapt: by model type, else by module names, else ``None`` (peft's defaults)."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in DEFAULT_TARGET_MODULES:
        return list(DEFAULT_TARGET_MODULES[model_type])
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for candidate in (_LLAMA_LIKE, _BERT_LIKE):
        if set(candidate) <= leaves:
            return list(candidate)
    return None


@dataclass
class LoraOptions:
    """--model names the transformer to fine-tune.

    The keyword arguments of :class:`LoraBackbone`, declared once: those with a flag are ``causalrm fit``'s
    ``--lora-*`` options (``Backbone.add_arguments``), ``model`` comes from ``--model``, the others are set in Python
    or by the app's memory plan (``LoraBackbone.plan_memory``).
    """

    model: str = option(DEFAULT_MODEL, help="Hugging Face model id or local folder (default: the bundled "
                                            "all-MiniLM-L6-v2)", flag=None)
    r: int = option(8, help="LoRA rank", flag="--lora-r")
    alpha: float = option(16.0, help="LoRA alpha; scaling alpha / r", flag="--lora-alpha")
    dropout: float = option(0.05, help="dropout on the adapter input", flag="--lora-dropout")
    target_modules: tuple[str, ...] | None = option(None, help="comma-separated module names to adapt (default: the "
                                                               "attention projections)", flag="--lora-targets",
                                                    metavar="NAMES")
    max_length: int = option(DEFAULT_MAX_LENGTH, help="tokens per (prompt, response), capped by the model's "
                                                      "position limit")
    input_format: str = option("auto", help="pair (encoders), chat (decoders) or auto (by model type)", flag=None,
                               choices=INPUT_FORMATS)
    chat_template: str | None = option(None, help="Jinja template overriding the tokenizer's (decoders only)",
                                       flag=None)
    gradient_checkpointing: bool = option(False, help="recompute activations (less memory, ~30% slower)")
    bf16: bool = option(True, help="autocast the forward pass to bfloat16 on CUDA devices that support it", flag=None)
    base_dtype: str = option("float32", help="storage dtype of the frozen base weights (bfloat16 halves their "
                                             "memory; adapters and head stay float32)", choices=BASE_DTYPES)
    trust_remote_code: bool = option(False, help="passed to from_pretrained", flag=None)
    max_tokens_per_forward: int = option(16384, help="without gradients (evaluation, scoring), batches run in chunks "
                                                     "of at most this many padded tokens", flag=None)

    def __post_init__(self) -> None:
        self.target_modules = as_str_tuple(self.target_modules) or None


@register_backbone
class LoraBackbone(Backbone):
    """A pretrained transformer with LoRA adapters and a trained one-logit head; rows -> reward logits z.

    Keyword arguments: the fields of :class:`LoraOptions` (their defaults and meaning live there).
    """

    name: ClassVar[str] = "lora"
    needs_embeddings: ClassVar[bool] = False
    options: ClassVar[type] = LoraOptions
    model_option: ClassVar[str] = "model"
    label: ClassVar[str] = "transformer + LoRA (slow on CPU)"
    app_epochs: ClassVar[tuple[int, int]] = (3, 2)  # minutes per epoch on a CPU
    export_formats = lora_export.FORMATS

    def __init__(self, **options: Any) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        o = LoraOptions(**options)
        model, r, alpha, dropout, max_length = o.model, o.r, o.alpha, o.dropout, o.max_length
        input_format, chat_template, base_dtype = o.input_format, o.chat_template, o.base_dtype
        if int(r) <= 0 or float(alpha) <= 0 or not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"LoRA needs r > 0, alpha > 0 and 0 <= dropout < 1; got r={r}, alpha={alpha}, "
                             f"dropout={dropout}")
        if int(max_length) < 8:
            raise InputError(f"max_length must be at least 8 tokens; got {max_length}")
        if input_format not in INPUT_FORMATS:
            raise InputError(f"unknown input format {input_format!r}; choose one of: {', '.join(INPUT_FORMATS)}")
        if base_dtype not in BASE_DTYPES:
            raise InputError(f"unknown base dtype {base_dtype!r}; choose one of: {', '.join(BASE_DTYPES)}")
        self.model_id = str(model)
        self.model_path = resolve_model_path(self.model_id)
        self.r, self.alpha, self.dropout = int(r), float(alpha), float(dropout)
        self.input_format = input_format
        self.chat_template = chat_template
        self.gradient_checkpointing = bool(o.gradient_checkpointing)
        self.bf16 = bool(o.bf16)
        self.base_dtype = base_dtype
        self.trust_remote_code = bool(o.trust_remote_code)
        self.max_tokens_per_forward = max(1, int(o.max_tokens_per_forward))

        try:
            with quiet_transformers():
                hf_config = AutoConfig.from_pretrained(self.model_path, trust_remote_code=self.trust_remote_code)
                tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as err:
            raise InputError(
                f"cannot load model {self.model_id!r} ({str(err).splitlines()[0]}); pass a local folder or a model "
                "id in the Hugging Face cache (downloads are off when HF_HUB_OFFLINE=1)"
            ) from err
        self.model_type = str(getattr(hf_config, "model_type", ""))
        self.chat = input_format == "chat" or (input_format == "auto" and not is_encoder(self.model_type))
        self.tokenizer = prepare_tokenizer(tokenizer, chat=self.chat, chat_template=chat_template)

        limits = [int(max_length)]
        for value in (getattr(hf_config, "max_position_embeddings", None), tokenizer.model_max_length):
            if isinstance(value, int) and 0 < value < 10**7:
                limits.append(value)
        self.max_length = min(limits)

        dtype = torch.bfloat16 if base_dtype == "bfloat16" else torch.float32
        with quiet_transformers():
            base = AutoModelForSequenceClassification.from_pretrained(
                self.model_path, num_labels=1, dtype=dtype, trust_remote_code=self.trust_remote_code
            )
        base.config.pad_token_id = self.tokenizer.pad_token_id
        with contextlib.suppress(AttributeError, ValueError):
            base.config.get_text_config().pad_token_id = self.tokenizer.pad_token_id
        if getattr(base, "generation_config", None) is not None:
            base.generation_config.pad_token_id = self.tokenizer.pad_token_id
        base.config.use_cache = False
        if self.gradient_checkpointing:
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5
                base.activation_checkpointing_enable({"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

        targets = list(o.target_modules) if o.target_modules else default_target_modules(base)
        heads = [n for n in HEAD_NAMES if isinstance(getattr(base, n, None), torch.nn.Module)]
        if not heads:
            raise InputError(f"model {self.model_id!r} has no 'classifier' or 'score' head; use another model")
        lora_config = LoraConfig(
            task_type="SEQ_CLS",
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            modules_to_save=heads,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft calls deprecated transformers aliases
                self.model = get_peft_model(base, lora_config)
        except ValueError as err:
            raise InputError(
                f"cannot place LoRA adapters on {self.model_id!r} ({str(err).splitlines()[0]}); pass target modules"
            ) from err
        self.target_modules = sorted(self.model.peft_config["default"].target_modules or targets or [])
        # Trainable weights in float32 even when the frozen base is bf16 (stable Adam updates).
        for p in self.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, X: np.ndarray | None, options: dict[str, Any], *, seed: int = 0) -> LoraBackbone:
        """A fresh LoRA backbone (``X`` is ignored: the model reads the texts); adapters and head seeded by ``seed``."""
        known = {f.name for f in dataclasses.fields(LoraOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown LoRA option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return seeded_init(seed, cls, **{k: v for k, v in options.items() if v is not None})

    @classmethod
    def plan_memory(cls, config: Any, *, budget_bytes: float, budget_name: str, on_gpu: bool, n_rows: int,
                    max_length: int) -> tuple[Any, str]:
        """:func:`causalrm.training.backbones.lora_memory.planned_config`."""
        from causalrm.training.backbones.lora_memory import planned_config

        return planned_config(config, budget_bytes=budget_bytes, budget_name=budget_name, on_gpu=on_gpu,
                              n_rows=n_rows, max_length=max_length)

    def export(self, run: Any, *, adapter_only: bool, embedder: str | None, probes: tuple[list, list],
               atol: float) -> ExportPlan:
        """A Hugging Face folder: merged weights, or the peft adapter (:mod:`causalrm.training.backbones.lora_export`)."""
        return lora_export.export_plan(self, adapter_only=adapter_only, embedder=embedder, probes=probes, atol=atol)

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": list(self.target_modules),
            "max_length": self.max_length,
            "input_format": "chat" if self.chat else "pair",
            "chat_template": self.chat_template,
            "gradient_checkpointing": self.gradient_checkpointing,
            "bf16": self.bf16,
            "base_dtype": self.base_dtype,
            "trust_remote_code": self.trust_remote_code,
            "max_tokens_per_forward": self.max_tokens_per_forward,
        }

    # ------------------------------------------------------------------------------------------------ model inputs
    def encode(self, prompts: Sequence[Any], responses: Sequence[Any]) -> TokenFeatures:
        """Features of (prompt, response) pairs; prompts / responses may be strings or message lists."""
        ids, types = encode_texts(self.tokenizer, prompts, responses, chat=self.chat, max_length=self.max_length)
        return TokenFeatures(ids, self.tokenizer.pad_token_id, types)

    def featurize(self, log: pl.DataFrame, X: np.ndarray | None = None) -> TokenFeatures:
        for col in (schema.PROMPT, schema.RESPONSE):
            if col not in log.columns:
                raise InputError(f"the log has no {col!r} column; map one with --map {col}=YOUR_COLUMN")
        prompts = log.get_column(schema.PROMPT).fill_null("").to_list()
        responses = log.get_column(schema.RESPONSE).fill_null("").to_list()
        return self.encode(prompts, responses)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.base_dtype == "bfloat16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if self.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        """Reward logits ``(n,)`` (float32). Without gradients, big batches run in chunks of at most
        ``max_tokens_per_forward`` padded tokens (the trainer evaluates with large batches)."""
        input_ids = batch["input_ids"]
        n, width = input_ids.shape
        rows = max(1, self.max_tokens_per_forward // max(int(width), 1))
        if torch.is_grad_enabled() or n <= rows:
            with self._autocast(input_ids.device):
                return self.model(**batch).logits[:, 0].float()
        return torch.cat([self.forward(**{k: v[i : i + rows] for k, v in batch.items()}) for i in range(0, n, rows)])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------------------- persistence
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def state_for_save(self) -> dict[str, torch.Tensor]:
        """Adapters and head only: the frozen base is reloaded from ``model``."""
        return {n: p.detach() for n, p in self._trainable_state().items()}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = self._trainable_state()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"adapter weights do not match the model: missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}")
        with torch.no_grad():
            for name, param in expected.items():
                value = state[name]
                if value.shape != param.shape:
                    raise ValueError(f"{name}: saved shape {tuple(value.shape)} != model {tuple(param.shape)}")
                param.copy_(value.to(param.device, param.dtype))

    def featurize_texts(self, prompts: Sequence[Any], responses: Sequence[Any], *, embedder: Any = None
                        ) -> TokenFeatures:
        """The tokens of (prompt, response) texts (:meth:`encode`); ``embedder`` is not used."""
        return self.encode(prompts, responses)

    def score(self, prompts: Sequence[Any], responses: Sequence[Any], *, batch_size: int = 16) -> np.ndarray:
        """Reward logits of (prompt, response) pairs, in input order (eval mode, no gradients): the texts'
        tokens through ``causalrm.training.scoring.predict_logits``, the one scoring kernel."""
        from causalrm.training.scoring import predict_logits

        return predict_logits(self, self.encode(prompts, responses), batch_size=batch_size)

    def merged_model(self) -> Any:
        """The base model with the adapters merged in and the trained head (a plain ``PreTrainedModel``).

        Mutates this backbone's wrapped model (peft's ``merge_and_unload``); call on a freshly loaded copy.
        """
        merged = self.model.merge_and_unload()
        merged.config.pad_token_id = self.tokenizer.pad_token_id
        merged.config.num_labels = 1
        return merged
