"""An exported CausalRM reward drives a few GRPO steps of TRL (tiny random policy, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

trl = pytest.importorskip("trl")

from helpers_tiny_models import single_thread, tiny_llama, tiny_log  # noqa: E402

from causalrm.config import FitConfig
from causalrm.export.folder import export_run
from causalrm.export.loading import load_reward_model, reward_function  # noqa: E402
from causalrm.workflows.orchestrate import fit_log  # noqa: E402
from causalrm.workflows.runs import save_run  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def exported_rm(tmp_path_factory) -> str:
    """A LoRA reward model on a tiny decoder: fitted (naive, one epoch), saved as a run and exported merged."""
    root = tmp_path_factory.mktemp("trl")
    model = tiny_llama(root / "rm-base", seed=1)
    log = tiny_log(16, seed=3)
    config = FitConfig(method="naive", backbone="lora", backbone_options={"model": model, "r": 2}, max_epochs=1,
                       patience=None, batch_size=8, eval_batch_size=16, lr=1e-2, device="cpu")
    run = save_run(fit_log(log, None, config), log, None, root / "run")
    export_run(run, root / "rm", verify=False)
    return str(root / "rm")


@pytest.mark.parametrize("conversational", [True, False])
def test_grpo_steps_with_causalrm_reward(exported_rm, tmp_path, conversational):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    policy_dir = tiny_llama(tmp_path / "policy", seed=2)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir, padding_side="left")
    tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    questions = ["how do i sort a list", "explain why the code is wrong"]
    if conversational:
        prompts = [[{"role": "user", "content": q}] for q in questions]
    else:
        prompts = questions
    dataset = Dataset.from_dict({"prompt": prompts})

    rm = load_reward_model(exported_rm, device="cpu")
    reward = reward_function(rm)
    calls: list[tuple[list, list, list[float]]] = []

    def causalrm_reward(prompts, completions, **kwargs):
        values = reward(prompts, completions, **kwargs)
        calls.append((prompts, completions, values))
        return values

    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), max_steps=2, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=8, learning_rate=1e-4, logging_steps=1, report_to="none", save_strategy="no",
        use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=policy, reward_funcs=[causalrm_reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    assert trainer.state.global_step == 2
    assert calls, "the reward function was never called"
    for prompts_seen, completions, values in calls:
        assert len(values) == len(completions) == len(prompts_seen)
        assert all(isinstance(v, float) and np.isfinite(v) for v in values)
        if conversational:
            assert isinstance(completions[0], list) and completions[0][0]["role"] == "assistant"
        else:
            assert isinstance(completions[0], str)
        np.testing.assert_allclose(values, rm.score(prompts_seen, completions), atol=1e-5)
    logged = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    assert logged and all(np.isfinite(logged))
    # GRPO updated the policy (unless every group had identical rewards, which random completions make unlikely)
    assert any(not np.allclose(p.detach().numpy(), before[n].numpy()) for n, p in trainer.model.named_parameters())
