"""Memory-aware LoRA (causalrm/training/backbones/lora_memory.py): the estimate moves the way activations do, and the plan
fits the budget, uses gradient checkpointing only when the micro-batches would otherwise shrink below a quarter,
and a refusal names a max length that does fit. Estimate against measured memory: benchmarks/lora_memory.py."""

from __future__ import annotations

import numpy as np
import pytest

from causalrm.errors import InputError
from causalrm.training.backbones.lora_memory import (
    DEFAULT_BATCH_TOKENS,
    GB,
    HEADROOM,
    estimate_peak,
    model_shape,
    plan_lora,
)


@pytest.fixture(scope="module")
def minilm():
    return model_shape()


def test_model_shape_of_the_bundled_minilm(minilm):
    from safetensors.numpy import load_file

    from causalrm.training.backbones.hf_models import resolve_model_path

    weights = load_file(f"{resolve_model_path('all-MiniLM-L6-v2')}/model.safetensors")
    assert minilm.parameters == sum(int(np.prod(w.shape)) for w in weights.values())
    assert (minilm.layers, minilm.hidden, minilm.heads, minilm.encoder) == (6, 384, 12, True)


def test_estimate_grows_with_tokens_and_length_and_checkpointing_saves(minilm):
    def peak(**kw):
        args = dict(max_length=256, batch_tokens=4096, eval_tokens=4096, gradient_checkpointing=False) | kw
        return estimate_peak(minilm, **args)

    assert peak(batch_tokens=2048) < peak() < peak(batch_tokens=8192)
    assert peak(max_length=128) < peak() < peak(max_length=512)  # attention: more per token when longer
    assert peak(gradient_checkpointing=True) < peak() / 2
    assert peak(on_gpu=True) < peak()  # no interpreter on the GPU
    assert peak(n_rows=10_000) - peak() == 4 * 256 * 10_000  # int32 token ids


def test_generous_budget_keeps_the_full_micro_batch_without_checkpointing():
    plan = plan_lora(16 * GB, max_length=256)
    assert (plan.batch_tokens, plan.gradient_checkpointing) == (DEFAULT_BATCH_TOKENS, False)
    assert plan.backbone_options() == {"max_length": 256, "gradient_checkpointing": False,
                                       "max_tokens_per_forward": plan.eval_tokens}
    assert "256" in plan.describe() and "of 16 GB" in plan.describe()


def test_tighter_budgets_shrink_micro_batches_then_checkpoint(minilm):
    previous = None
    for budget_gb in (3.0, 2.0, 1.2):
        plan = plan_lora(budget_gb * GB, max_length=256)
        assert plan.peak_bytes <= HEADROOM * budget_gb * GB
        assert plan.peak_bytes == estimate_peak(minilm, max_length=256, batch_tokens=plan.batch_tokens,
                                                eval_tokens=plan.eval_tokens,
                                                gradient_checkpointing=plan.gradient_checkpointing)
        if previous is not None:
            assert (plan.gradient_checkpointing, -plan.batch_tokens) >= (previous.gradient_checkpointing,
                                                                         -previous.batch_tokens)
        if plan.gradient_checkpointing:  # only when no-checkpointing would need less than a quarter of the tokens
            quarter = estimate_peak(minilm, max_length=256, batch_tokens=DEFAULT_BATCH_TOKENS // 4,
                                    eval_tokens=DEFAULT_BATCH_TOKENS, gradient_checkpointing=False)
            assert quarter > HEADROOM * budget_gb * GB
        previous = plan
    assert previous.gradient_checkpointing


def test_refusal_names_a_max_length_that_fits():
    with pytest.raises(InputError) as info:
        plan_lora(0.85 * GB, max_length=512, budget_name="the test's limit")
    message = str(info.value)
    assert "the test's limit is 0.85 GB" in message and "\n" not in message
    fits = int(message.split("max length ")[2].split(" would fit")[0])
    assert fits < 512 and plan_lora(0.85 * GB, max_length=fits).peak_bytes <= HEADROOM * 0.85 * GB
    with pytest.raises(InputError, match="the model alone does not fit"):
        plan_lora(0.3 * GB)
