"""LoRA backbone: trains through the backbone-agnostic trainer; adapters and head move, the base does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_tiny_models import single_thread, tiny_llama, tiny_log

from causalrm.errors import InputError
from causalrm.estimators import losses
from causalrm.training.backbones.base import Backbone, get_backbone_class
from causalrm.training.backbones.hf_models import DEFAULT_CHAT_TEMPLATE
from causalrm.training.backbones.lora import LoraBackbone
from causalrm.training.options import TrainConfig
from causalrm.training.scoring import predict_logits
from causalrm.training.trainer import train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def log():
    return tiny_log(40, seed=1)


def loss_inputs(log, rows: np.ndarray) -> losses.LossInputs:
    sub = log[rows]
    observed = sub["observed"].to_numpy().astype(np.float32)
    feedback = sub["feedback"].fill_null(0).to_numpy().astype(np.float32)
    rng = np.random.default_rng(len(rows))
    return losses.LossInputs(
        feedback=feedback,
        observed=observed,
        propensity=np.clip(rng.uniform(0.3, 0.9, len(rows)), 0.1, 1.0).astype(np.float32),
        pseudo_label=rng.uniform(0.2, 0.8, len(rows)).astype(np.float32),
        true_label=sub["true_label"].to_numpy().astype(np.float32),
    )


def fit(backbone: LoraBackbone, log, method: str, *, epochs: int = 2, lr: float = 5e-3, **kw):
    train_rows = np.flatnonzero(log["split"].to_numpy() == "train")
    val_rows = np.flatnonzero(log["split"].to_numpy() == "val")
    feats = backbone.featurize(log, None)
    config = TrainConfig(method=method, rho01=0.2, rho10=0.1, lr=lr, batch_size=8, max_epochs=epochs, patience=None,
                         eval_batch_size=16, device="cpu", **kw)
    tr, va = feats_subset(feats, train_rows), feats_subset(feats, val_rows)
    return train(backbone, tr, loss_inputs(log, train_rows), va, loss_inputs(log, val_rows), config)


def feats_subset(feats, rows):
    from causalrm.training.backbones.hf_models import TokenFeatures

    types = None if feats.token_type_ids is None else [feats.token_type_ids[i] for i in rows]
    return TokenFeatures([feats.input_ids[i] for i in rows], feats.pad_token_id, types)


def snapshot(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in backbone.named_parameters()}


def assert_only_adapters_and_head_moved(backbone: LoraBackbone, before: dict[str, torch.Tensor], head: str) -> None:
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable, "no trainable parameters"
    assert all(("lora_" in n) or (f"{head}.modules_to_save" in n) for n in trainable), sorted(trainable)[:5]
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert any(f"{head}.modules_to_save" in n for n in trainable)
    for name, param in backbone.named_parameters():
        moved = not torch.equal(param.detach(), before[name])
        if name in trainable:
            assert moved, f"trainable parameter {name} did not change"
        else:
            assert not moved, f"frozen base weight {name} changed"


def test_registered_and_built_through_registry(llama_dir):
    assert get_backbone_class("lora") is LoraBackbone
    with pytest.raises(InputError, match="unknown LoRA option"):
        LoraBackbone.build(None, {"model": llama_dir, "rank": 4})
    with pytest.raises(InputError, match="cannot load model"):
        LoraBackbone.build(None, {"model": "/nonexistent/model-dir"})


@pytest.mark.parametrize("method", ["naive", "causalrm-dr"])
def test_decoder_trains_adapters_and_head_only(llama_dir, log, method):
    backbone = LoraBackbone.build(None, {"model": llama_dir, "r": 4, "alpha": 8, "dropout": 0.0}, seed=0)
    assert backbone.target_modules == ["k_proj", "o_proj", "q_proj", "v_proj"]
    before = snapshot(backbone)
    history = fit(backbone, log, method)
    assert history.epochs == 2 and np.isfinite(history.train_loss).all()
    assert history.best_epoch >= 1
    assert_only_adapters_and_head_moved(backbone, before, "score")


@pytest.mark.parametrize("method", [m for m in losses.METHODS if m not in ("naive", "causalrm-dr")])
def test_decoder_runs_every_loss(llama_dir, log, method):
    backbone = LoraBackbone.build(None, {"model": llama_dir, "r": 2}, seed=0)
    history = fit(backbone, log, method, epochs=1)
    assert np.isfinite(history.train_loss).all() and np.isfinite(history.val_estimate).all()


def test_encoder_minilm_trains(log):
    backbone = LoraBackbone.build(None, {"max_length": 64}, seed=0)  # the bundled all-MiniLM-L6-v2
    assert backbone.get_config()["model"] == "all-MiniLM-L6-v2" and not backbone.chat
    assert backbone.target_modules == ["key", "query", "value"]
    before = snapshot(backbone)
    history = fit(backbone, log, "causalrm-dr", epochs=1, lr=1e-2)
    assert np.isfinite(history.train_loss).all()
    assert_only_adapters_and_head_moved(backbone, before, "classifier")


def test_decoder_uses_chat_template_and_eos_padding(llama_dir):
    backbone = LoraBackbone.build(None, {"model": llama_dir, "r": 2}, seed=0)
    tok = backbone.tokenizer
    assert backbone.chat
    # the tiny tokenizer has no pad token: eos is the fallback, and the model config knows it
    assert tok.pad_token == tok.eos_token == "[SEP]"
    assert backbone.model.config.pad_token_id == tok.eos_token_id
    feats = backbone.encode(["what is two plus two"], ["four"])
    expected = tok.apply_chat_template(
        [{"role": "user", "content": "what is two plus two"}, {"role": "assistant", "content": "four"}], tokenize=False
    )
    assert tok.decode(feats.input_ids[0]) == tok.decode(tok(expected, add_special_tokens=False)["input_ids"])
    assert tok.decode(feats.input_ids[0]).startswith("[CLS] user : what is two plus two [SEP] [CLS] assistant : four")
    assert feats.token_type_ids is None
    # a message-list prompt renders the same conversation
    same = backbone.encode([[{"role": "user", "content": "what is two plus two"}]], ["four"])
    np.testing.assert_array_equal(same.input_ids[0], feats.input_ids[0])


def test_decoder_without_template_gets_default(tmp_path):
    path = tiny_llama(tmp_path / "plain", chat_template=None, with_pad_token=True)
    backbone = LoraBackbone.build(None, {"model": path, "r": 2}, seed=0)
    assert backbone.tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    assert backbone.tokenizer.pad_token == "[PAD]"
    text = backbone.tokenizer.decode(backbone.encode(["hi"], ["yes"]).input_ids[0])
    assert text.replace(" ", "").lower() == "user:hiassistant:yes"


def test_encoder_reads_a_text_pair():
    backbone = LoraBackbone.build(None, {"max_length": 16}, seed=0)
    feats = backbone.encode(["a short question"], ["an answer " * 20])
    ids, types = feats.input_ids[0], feats.token_type_ids[0]
    assert len(ids) == 16  # truncated to max_length
    tok = backbone.tokenizer
    assert tok.decode(ids[: int((types == 0).sum())]) == "[CLS] a short question [SEP]"
    assert types[-1] == 1 and ids[-1] == tok.sep_token_id


@pytest.mark.parametrize("which", ["decoder", "encoder"])
def test_dynamic_padding_does_not_change_scores(llama_dir, which):
    options = {"model": llama_dir, "r": 2} if which == "decoder" else {"max_length": 64}
    backbone = LoraBackbone.build(None, options, seed=0)
    with torch.no_grad():  # make the head and adapters non-trivial
        for p in backbone.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts, responses = ["short", "a much longer prompt with many words in it"], ["ok", "a long reply " * 6]
    feats = backbone.encode(prompts, responses)
    assert feats.lengths[0] < feats.lengths[1]
    batch = feats.batch(torch.tensor([0, 1]), "cpu")
    assert batch["input_ids"].shape == (2, feats.lengths.max())
    assert batch["attention_mask"][0].sum() == feats.lengths[0]
    backbone.eval()
    with torch.no_grad():
        together = backbone(**batch)
        alone = torch.cat([backbone(**feats.batch(torch.tensor([i]), "cpu")) for i in range(2)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(predict_logits(backbone, feats, batch_size=1), alone.numpy(), atol=1e-5)
    np.testing.assert_allclose(backbone.score(prompts, responses), alone.numpy(), atol=1e-5)


def test_save_load_keeps_only_adapters_and_head(llama_dir, tmp_path):
    from safetensors import safe_open

    backbone = LoraBackbone.build(None, {"model": llama_dir, "r": 4}, seed=3)
    with torch.no_grad():
        for p in backbone.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    backbone.save(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys == {n for n, p in backbone.named_parameters() if p.requires_grad}
    loaded = Backbone.load(tmp_path)
    assert isinstance(loaded, LoraBackbone)
    prompts, responses = ["p one", "p two two"], ["r", "r r r"]
    np.testing.assert_allclose(loaded.score(prompts, responses), backbone.score(prompts, responses), atol=1e-6)
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in tmp_path.iterdir())


def test_gradient_checkpointing_and_accumulation_match(llama_dir, log):
    """Same data and seed: checkpointing + 2 micro-batches give the plain run's weights."""
    plain = LoraBackbone.build(None, {"model": llama_dir, "r": 2, "dropout": 0.0}, seed=0)
    ckpt = LoraBackbone.build(None, {"model": llama_dir, "r": 2, "dropout": 0.0, "gradient_checkpointing": True},
                              seed=0)
    assert ckpt.model.get_base_model().is_activation_checkpointing
    assert not plain.model.get_base_model().is_activation_checkpointing
    fit(plain, log, "causalrm-ips", epochs=1)
    fit(ckpt, log, "causalrm-ips", epochs=1, grad_accum_steps=2)
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
