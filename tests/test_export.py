"""Exports round-trip: LoRA (merged and adapter-only) and MLP runs score the same after export, nothing new is
initialised, and the reward function / best-of-N helpers agree with the model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from helpers_tiny_models import single_thread, tiny_llama, tiny_log

from causalrm.cli.main import main
from causalrm.config import FitConfig
from causalrm.export.folder import export_run
from causalrm.export.loading import best_of_n, load_reward_model, reward_function
from causalrm.export.reward_models import MANIFEST
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.runs import save_run

PROMPTS = ["what is a good answer", "explain the code please", "why"]
RESPONSES = ["a clear short answer", "because the list is sorted by the model", "no"]


def _fit_run(log, path, X=None, **config):
    base = dict(max_epochs=1, patience=None, batch_size=8, eval_batch_size=16, device="cpu", propensity_folds=2,
                propensity_model="logistic", flip_bootstrap=20, force_noise_correction=True)
    result = fit_log(log, X, FitConfig(**{**base, **config}))
    return save_run(result, log, X, path, source="tiny")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def log():
    return tiny_log(24, seed=2)


@pytest.fixture(scope="module")
def features(log):
    rng = np.random.default_rng(0)
    return rng.normal(size=(log.height, 8)).astype(np.float32)  # for the nuisance models only


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, log, features):
    model = tiny_llama(tmp_path_factory.mktemp("llama"))
    return _fit_run(log, tmp_path_factory.mktemp("runs") / "llama", features, method="causalrm-ips", backbone="lora",
                    backbone_options={"model": model, "r": 4}, lr=5e-3, rho01=0.2, rho10=0.1)


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory, log, features):
    return _fit_run(log, tmp_path_factory.mktemp("runs") / "minilm", features, method="causalrm-dr",
                    backbone="lora", backbone_options={"max_length": 32, "r": 4}, lr=5e-3, rho01=0.2, rho10=0.1)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, log):
    from causalrm.embeddings.embedder import Embedder

    X = Embedder(progress=False, cache=False, device="cpu").embed(log["prompt"].to_list(), log["response"].to_list())
    return _fit_run(log, tmp_path_factory.mktemp("runs") / "mlp", X, method="causalrm-dr", hidden=(16,), lr=1e-2,
                    max_epochs=3)


def run_scores(run_dir, n: int = 6) -> tuple[list[str], list[str], np.ndarray]:
    """(prompts, responses, rewards) of the first ``n`` rows the run scored when it was saved."""
    scored = pl.read_parquet(run_dir / "scored.parquet").head(n)
    return scored["prompt"].to_list(), scored["response"].to_list(), scored["reward"].to_numpy()


def hf_scores(out, prompts, responses, *, chat: bool) -> np.ndarray:
    """Scores with transformers alone, the way the model card says to use the export."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"] and not info["unexpected_keys"], info
    tok = AutoTokenizer.from_pretrained(out)
    model.eval()
    scores = []
    for p, r in zip(prompts, responses):
        if chat:
            text = tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                           tokenize=False)
            inputs = tok(text, add_special_tokens=False, return_tensors="pt")
        else:
            inputs = tok(p, r, return_tensors="pt")
        with torch.no_grad():
            scores.append(model(**inputs).logits[0, 0].item())
    return np.array(scores)


def test_lora_decoder_merged_export(llama_run, tmp_path):
    out = tmp_path / "rm"
    manifest = export_run(llama_run, out)
    assert manifest["kind"] == "hf-merged" and manifest["input_format"] == "chat"
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["num_labels"] == 1 if "num_labels" in config else len(config["id2label"]) == 1
    assert config["pad_token_id"] == 102  # eos fallback of the tiny tokenizer
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    assert not [f for f in out.iterdir() if f.suffix in (".bin", ".pt", ".pkl")]
    prompts, responses, expected = run_scores(llama_run)
    np.testing.assert_allclose(hf_scores(out, prompts, responses, chat=True), expected, atol=1e-4)
    rm = load_reward_model(out, device="cpu")
    assert rm.kind == "hf-merged" and not rm.loading_info["missing_keys"]
    np.testing.assert_allclose(rm.score(prompts, responses), expected, atol=1e-4)
    card = (out / "README.md").read_text()
    nuis = json.loads((llama_run / "nuisances.json").read_text())
    assert "causalrm-ips" in card and "CausalRM-IPS" in card
    assert f"{nuis['rho01']:.3f}" in card and f"{nuis['rho10']:.3f}" in card
    assert "Propensity diagnostics" in card and "share of rows clipped" in card


def test_lora_decoder_adapter_export(llama_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "adapter"
    manifest = export_run(llama_run, out, adapter_only=True, verify=False)  # compared below
    assert manifest["kind"] == "hf-adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", MANIFEST, "README.md"} <= {f.name for f in
                                                                                          out.iterdir()}
    prompts, responses, expected = run_scores(llama_run)
    np.testing.assert_allclose(load_reward_model(out, device="cpu").score(prompts, responses), expected, atol=1e-5)
    # plain peft, as the model card shows
    tok = AutoTokenizer.from_pretrained(out)
    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, pad_token_id=tok.pad_token_id)
    model = PeftModel.from_pretrained(base, out).eval()
    text = tok.apply_chat_template([{"role": "user", "content": prompts[0]},
                                    {"role": "assistant", "content": responses[0]}], tokenize=False)
    with torch.no_grad():
        z = model(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item()
    assert z == pytest.approx(float(expected[0]), abs=1e-5)


def test_lora_encoder_merged_and_adapter_export(minilm_run, tmp_path):
    from helpers_tiny_models import minilm_path
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    prompts, responses, expected = run_scores(minilm_run)
    merged = tmp_path / "merged"
    export_run(minilm_run, merged, verify=False)  # compared below
    assert json.loads((merged / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    np.testing.assert_allclose(hf_scores(merged, prompts, responses, chat=False), expected, atol=1e-4)
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(merged), device="cpu")  # the score is z (regression)
    got = [o["score"] for o in pipe([{"text": p, "text_pair": r} for p, r in zip(prompts, responses)])]
    np.testing.assert_allclose(got, expected, atol=1e-4)

    adapter = tmp_path / "adapter"
    export_run(minilm_run, adapter, adapter_only=True)  # verify on: reloads through the bundled alias
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert json.loads((adapter / MANIFEST).read_text())["base_model"] == "all-MiniLM-L6-v2"
    base = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
    model = PeftModel.from_pretrained(base, adapter).eval()
    tok = AutoTokenizer.from_pretrained(adapter)
    with torch.no_grad():
        z = model(**tok(prompts, responses, padding=True, truncation=True, max_length=32,
                        return_tensors="pt")).logits[:, 0].numpy()
    np.testing.assert_allclose(z, expected, atol=1e-5)


@pytest.fixture(scope="module")
def mlp_export(mlp_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "mlp-rm"
    manifest = export_run(mlp_run, out)
    assert manifest["kind"] == "mlp" and manifest["embedder"] == "all-MiniLM-L6-v2"
    return out


# transformers alone, in a fresh interpreter without causalrm: the folder's own modeling_causalrm.py (remote code)
HF_ALONE = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

path, pairs = sys.argv[1], json.loads(sys.stdin.read())
model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
with torch.no_grad():  # the pairs with a prompt, padded to one batch
    batch = model(**tok([p for p, r in pairs if p], [r for p, r in pairs if p], truncation=True, padding=True,
                        return_tensors="pt")).logits[:, 0].tolist()
pipe = pipeline("text-classification", model=path, trust_remote_code=True, device="cpu")
inputs = [{"text": p, "text_pair": r} if p else {"text": r} for p, r in pairs]  # an empty prompt: the response alone
default = [o["score"] for o in pipe(inputs, truncation=True)]
plain = [o["score"] for o in pipe(inputs, truncation=True, batch_size=4, function_to_apply="none")]
print(json.dumps({"batch": batch, "pipeline": default, "plain": plain}))
"""


def test_mlp_export_scores_identically_through_transformers(mlp_export, mlp_run, tmp_path):
    """An MLP export loads with AutoModelForSequenceClassification and pipeline (trust_remote_code) and gives the
    scores `causalrm score` gives, padding, truncation (the long pair exceeds the 256-token limit) and an empty prompt
    included."""
    import os
    import subprocess
    import sys

    prompts, responses, expected = run_scores(mlp_run, n=12)
    rng = np.random.default_rng(3)
    extra = [(" ".join(rng.choice(["tokens", "of", "a", "long", "prompt"], 300)), "and a long answer " * 40),
             ("", responses[0])]
    run_model = load_reward_model(mlp_run, device="cpu")
    expected = np.append(expected, run_model.score([p for p, _ in extra], [r for _, r in extra]))
    pairs = [*zip(prompts, responses), *extra]
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", HF_ALONE, str(mlp_export)], input=json.dumps(pairs), text=True,
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["batch"], expected[:-1], atol=1e-5, rtol=1e-5)
    for key in ("pipeline", "plain"):  # problem_type regression: the pipeline's score is z itself
        np.testing.assert_allclose(got[key], expected, atol=1e-5, rtol=1e-5, err_msg=key)
    assert abs(expected[-1] - expected[0]) > 1e-4  # the empty prompt changes the score: the case is a real one


def test_mlp_export_round_trip(mlp_export, mlp_run, tmp_path):
    out = mlp_export
    assert {f.name for f in out.iterdir()} == {"config.json", "model.safetensors", "modeling_causalrm.py",
                                               "tokenizer.json", "tokenizer_config.json", MANIFEST, "README.md"}
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"] == "modeling_causalrm.CausalRMRewardModel"
    assert "_name_or_path" not in config["encoder"] and config["problem_type"] == "regression"
    rm = load_reward_model(out, device="cpu")
    prompts, responses, expected = run_scores(mlp_run, n=24)
    scores = rm.score(prompts, responses)
    assert scores.dtype == np.float32 and scores.shape == (24,)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    # a version 1 export (backbone.json + the head, no encoder) still loads
    from causalrm.workflows.runs import load_run

    old = tmp_path / "v1"
    old.mkdir()
    load_run(mlp_run).backbone.save(old)
    (old / MANIFEST).write_text(json.dumps({**json.loads((out / MANIFEST).read_text()), "version": 1}))
    np.testing.assert_allclose(load_reward_model(old, device="cpu").score(prompts, responses), expected, atol=1e-4)
    import causalrm.export.reward_models

    assert causalrm.export.loading.load_reward_model is load_reward_model


def test_runs_and_exports_get_the_usual_modes(mlp_run, mlp_export, minilm_run, tmp_path):
    """Folders and files like mkdir / open make them under the umask (not 0700 / 0600 of temporary files)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    export_run(minilm_run, tmp_path / "lora-rm")
    for folder in (mlp_run, mlp_export, tmp_path / "lora-rm"):
        paths = [folder, *folder.rglob("*")]
        assert any(p.name.endswith(".safetensors") for p in paths)
        for path in paths:
            expected = (0o777 if path.is_dir() else 0o666) & ~umask
            assert oct(path.stat().st_mode & 0o777) == oct(expected), path


def test_reward_function_and_best_of_n(llama_run, mlp_run):
    for source in (llama_run, mlp_run):
        rm = load_reward_model(source, device="cpu")  # a run directory works too
        assert rm.kind == "run"
        prompts, responses, stored = run_scores(source)
        np.testing.assert_allclose(rm.score(prompts, responses), stored, atol=1e-4)
        expected = rm.score(PROMPTS, RESPONSES)
        reward = reward_function(rm)
        plain = reward(prompts=PROMPTS, completions=RESPONSES, completion_ids=None, trainer_state=None)
        assert isinstance(plain, list) and all(isinstance(v, float) for v in plain)
        np.testing.assert_allclose(plain, expected, atol=1e-5)
        conversational = reward(
            prompts=[[{"role": "user", "content": p}] for p in PROMPTS],
            completions=[[{"role": "assistant", "content": r}] for r in RESPONSES],
        )
        np.testing.assert_allclose(conversational, expected, atol=1e-5)
        best, scores = best_of_n(rm, PROMPTS[0], RESPONSES)
        assert best == RESPONSES[int(np.argmax(scores))]
        np.testing.assert_allclose(scores, rm.score([PROMPTS[0]] * 3, RESPONSES), atol=1e-6)
        assert best_of_n(reward, PROMPTS[0], RESPONSES)[0] == best


def test_cli_export_and_errors(mlp_run, llama_run, tmp_path, capsys):
    out = tmp_path / "cli-rm"
    assert main(["export", str(mlp_run), str(out)]) == 0
    assert "exported causalrm-dr reward model" in capsys.readouterr().out
    assert main(["export", str(mlp_run), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(mlp_run), str(out), "--overwrite", "--no-verify"]) == 0
    decoder = tiny_llama(tmp_path / "decoder")
    assert main(["export", str(mlp_run), str(tmp_path / "z"), "--embedder", decoder]) == 2
    assert "sentence encoders" in capsys.readouterr().err and not (tmp_path / "z").exists()
    assert main(["export", str(out), str(tmp_path / "w")]) == 2  # an export is not a run
    assert "an export of a run" in capsys.readouterr().err
    assert main(["export", str(mlp_run), str(tmp_path / "x"), "--adapter-only"]) == 2
    assert "LoRA runs" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "y")]) == 2
    with pytest.raises(Exception, match="not a reward model folder"):
        load_reward_model(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_cli_fit_lora_then_export(tmp_path, monkeypatch, capsys):
    """`causalrm fit --backbone lora --model PATH --method causalrm-dr`, then `causalrm export` (end to end)."""
    monkeypatch.setenv("CAUSALRM_CACHE", str(tmp_path / "cache"))  # nuisance embeddings stay in tmp
    model = tiny_llama(tmp_path / "base")
    log_path = tmp_path / "log.parquet"
    tiny_log(24, seed=5).write_parquet(log_path)
    run = tmp_path / "run"
    code = main(["fit", str(log_path), "--backbone", "lora", "--model", model, "--method", "causalrm-dr",
                 "--out", str(run), "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--lora-r", "4",
                 "--max-length", "64", "--device", "cpu", "--quiet", "--rho01", "0.2", "--rho10", "0.1"])
    assert code == 0, capsys.readouterr().err
    backbone = json.loads((run / "backbone.json").read_text())
    assert backbone["name"] == "lora" and backbone["config"]["model"] == model
    assert backbone["config"]["r"] == 4 and backbone["config"]["max_length"] == 64
    assert json.loads((run / "config.json").read_text())["embedder"] == "all-MiniLM-L6-v2"  # nuisances
    assert main(["export", str(run), str(tmp_path / "rm")]) == 0
    prompts, responses, expected = run_scores(run)
    np.testing.assert_allclose(load_reward_model(tmp_path / "rm", device="cpu").score(prompts, responses), expected,
                               atol=1e-4)


def test_score_cli_accepts_exports(mlp_run, mlp_export, minilm_run, log, tmp_path, monkeypatch, capsys):
    """`causalrm score EXPORT LOG` gives the scores `causalrm score RUN LOG` gives, for MLP and LoRA exports (merged
    and adapter-only); rows with an empty prompt included."""
    monkeypatch.setenv("CAUSALRM_CACHE", str(tmp_path / "cache"))
    log_path = tmp_path / "log.parquet"
    log.with_columns(pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("")).otherwise(pl.col("prompt")).alias("prompt")
                     ).write_parquet(log_path)
    assert main(["export", str(minilm_run), str(tmp_path / "merged"), "--no-verify"]) == 0
    assert main(["export", str(minilm_run), str(tmp_path / "adapter"), "--adapter-only", "--no-verify"]) == 0

    def scores(model, name):
        out = tmp_path / f"{name}.parquet"
        assert main(["score", str(model), str(log_path), "--out", str(out)]) == 0, capsys.readouterr().err
        return pl.read_parquet(out)["reward"].to_numpy()

    np.testing.assert_allclose(scores(mlp_export, "mlp-export"), scores(mlp_run, "mlp-run"), atol=1e-5)
    lora = scores(minilm_run, "lora-run")
    np.testing.assert_allclose(scores(tmp_path / "merged", "merged"), lora, atol=1e-4)
    np.testing.assert_allclose(scores(tmp_path / "adapter", "adapter"), lora, atol=1e-5)
    assert main(["score", str(tmp_path / "merged"), str(log_path), "--out", str(tmp_path / "x.parquet"),
                 "--model", "all-MiniLM-L6-v2"]) == 2
    assert "embeds nothing" in capsys.readouterr().err
    assert main(["score", str(tmp_path), str(log_path), "--out", str(tmp_path / "y.parquet")]) == 2
    assert "not a reward model folder" in capsys.readouterr().err
