"""Chat-format logs: a ``messages`` column of OpenAI / Hugging Face ``{role, content}`` lists (``causalrm.data.chat``).

Pure functions, reading every input format, one-line errors naming the row for malformed conversations and for
non-text prompts / responses, ``causalrm validate`` / ``fit`` in a real process, and the app's upload handler.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from causalrm.data import chat, schema
from causalrm.data.io.readers import read_log
from causalrm.errors import InputError

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "oasst1_chat.jsonl"

SYSTEM = {"role": "system", "content": "You are terse."}
TURNS = [SYSTEM, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------- pure functions
def test_split_and_render():
    context, response = chat.split_conversation(TURNS)
    assert response == "6" and context == TURNS[:-1]
    assert chat.render_prompt(context) == "System: You are terse.\n\nUser: 2+2?\n\nAssistant: 4\n\nUser: and 3+3?"
    # one user turn renders as its text alone: the same prompt (and embedding) as the flat log
    assert chat.render_prompt([{"role": "user", "content": "Hi"}]) == "Hi"
    assert chat.render_prompt([]) == ""
    assert chat.split_conversation([{"role": "Assistant", "content": "x", "name": "bot"}]) == ([], "x")
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
             {"role": "assistant", "content": "c"}]
    assert chat.split_conversation(parts) == ([{"role": "user", "content": "a\nb"}], "c")
    assert chat.parse_context(chat.context_json(context)) == context
    assert chat.parse_context("") == [] and chat.parse_context("[]") == []
    assert chat.conversation(chat.context_json(context), "6") == TURNS


@pytest.mark.parametrize(("messages", "needle"), [
    ("hello", "is a string, not a list of messages"),
    ([], "empty list"),
    (["hi"], "message 1 is a string"),
    ([{"role": "user", "content": "q"}], "has no assistant message"),
    ([{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}], "message 2 has unknown role 'bot'"),
    ([{"content": "q"}, {"role": "assistant", "content": "a"}], "message 1 has no role"),
    ([{"role": "user"}, {"role": "assistant", "content": "a"}], "message 1 (user) has no content"),
    ([{"role": "user", "content": {"x": 1}}, {"role": "assistant", "content": "a"}], "content of type object"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}], "ends with a user message"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}], "empty final assistant"),
])
def test_malformed_conversations(messages, needle):
    with pytest.raises(chat.MalformedConversation) as info:
        chat.split_conversation(messages)
    assert needle in str(info.value) and info.value.todo and isinstance(info.value, InputError)


# ---------------------------------------------------------------------------------------------------- reading
def _check_chat_log(log: pl.DataFrame) -> None:
    assert log.columns[:5] == [schema.PROMPT, schema.RESPONSE, schema.RESPONSE_ID, schema.FEEDBACK, schema.OBSERVED]
    assert schema.MESSAGES not in log.columns and log[schema.CONTEXT].dtype == pl.String
    assert log[schema.RESPONSE].to_list() == ["Hello!", "6"]
    rendered = "System: You are terse.\n\nUser: 2+2?\n\nAssistant: 4\n\nUser: and 3+3?"
    assert log[schema.PROMPT].to_list() == ["Hi", rendered]
    assert chat.parse_context(log[schema.CONTEXT][1]) == TURNS[:-1]
    assert log[schema.FEEDBACK].to_list() == [1, None]


ROWS = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "feedback": 1},
        {"messages": TURNS, "feedback": None}]


def test_read_jsonl_json_parquet_csv(tmp_path):
    _check_chat_log(read_log(_jsonl(tmp_path / "log.jsonl", ROWS)))
    (tmp_path / "log.json").write_text(json.dumps(ROWS), encoding="utf-8")
    _check_chat_log(read_log(tmp_path / "log.json"))
    pl.DataFrame(ROWS).write_parquet(tmp_path / "log.parquet")  # messages: List(Struct{role, content})
    assert pl.read_parquet(tmp_path / "log.parquet").schema["messages"] == pl.List(
        pl.Struct({"role": pl.String, "content": pl.String}))
    _check_chat_log(read_log(tmp_path / "log.parquet"))
    pl.DataFrame({"conv": [json.dumps(r["messages"]) for r in ROWS], "thumb": ["up", ""]}).write_csv(
        tmp_path / "log.csv")
    _check_chat_log(read_log(tmp_path / "log.csv", mapping={"conv": "messages", "thumb": "feedback"}))


def test_bundled_chat_sample():
    log = read_log(SAMPLE)
    assert log.height == 200 and log[schema.RESPONSE_ID].n_unique() == 200
    contexts = [chat.parse_context(c) for c in log[schema.CONTEXT]]
    assert sum(len(c) == 1 for c in contexts) == 120 and sum(len(c) == 3 for c in contexts) == 80
    for prompt, context in zip(log[schema.PROMPT], contexts):
        assert prompt == chat.render_prompt(context)  # what scoring the messages renders


def test_validate_summary_counts_conversations(tmp_path):
    from causalrm.data.validate import summarize_log

    summary = summarize_log(read_log(_jsonl(tmp_path / "log.jsonl", ROWS)))
    assert summary.chat == {"conversations": 2, "multi_turn": 1, "system_prompt": 1}
    assert "chat format:          2 conversations, 1 multi-turn, 1 with a system prompt" in summary.format()
    flat = pl.DataFrame({"prompt": ["p"], "response": ["r"], "context": ["User: earlier turn"]})
    flat.write_parquet(tmp_path / "flat.parquet")  # a flat log's own context column is not chat format
    assert summarize_log(read_log(tmp_path / "flat.parquet")).chat == {}


def _error(path: Path, **kw) -> str:
    with pytest.raises(InputError) as info:
        read_log(path, **kw)
    message = str(info.value)
    assert "\n" not in message and path.name in message
    return message


@pytest.mark.parametrize(("value", "needle"), [
    ("not a conversation", "is text, not a JSON list of messages"),
    ({"role": "user", "content": "q"}, "is an object, not a list of messages"),
    ([{"role": "user", "content": "q"}], "has no assistant message"),
    ([{"role": "user"}, {"role": "assistant", "content": "a"}], "message 1 (user) has no content"),
    ([{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}], "unknown role 'robot'"),
    (None, "is empty"),
])
def test_malformed_rows_name_the_row(tmp_path, value, needle):
    good = ROWS[0]
    path = _jsonl(tmp_path / "chat.jsonl", [good, good, {"messages": value}])
    message = _error(path)
    assert "row 3 (line 3)" in message and "'messages'" in message and needle in message


def test_non_text_prompt_or_response_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "flat.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": {"role": "user"},
                                                                                "response": "r"}])
    message = _error(path)
    assert "row 2 (line 2)" in message and "'prompt'" in message and "JSON object, not text" in message
    assert "messages" in message
    path = _jsonl(tmp_path / "flat2.jsonl", [{"prompt": "p", "response": ["a", "b"]}])
    assert "row 1 (line 1), column 'response': is a JSON array, not text" in _error(path)
    pl.DataFrame({"prompt": [None, {"role": "user", "content": "q"}], "response": ["a", "b"]}).write_parquet(
        tmp_path / "nested.parquet")
    assert "row 2, column 'prompt': is a struct" in _error(tmp_path / "nested.parquet")
    # mapped columns are named as the user wrote them
    path = _jsonl(tmp_path / "mapped.jsonl", [{"q": ["x"], "a": "r"}])
    assert "column 'q' (mapped to prompt)" in _error(path, mapping={"q": "prompt", "a": "response"})


def test_messages_beside_prompt_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "both.jsonl", [{**ROWS[0], "prompt": "Hi"}])
    assert "drop or rename 'prompt'" in _error(path)


# ------------------------------------------------------------------------------------------------ CLI processes
def _cli() -> list[str]:
    exe = shutil.which("causalrm")
    return [exe] if exe else [sys.executable, "-m", "causalrm.cli.main"]


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CAUSALRM_CACHE": str(cwd / "cache")}
    return subprocess.run([*_cli(), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_cli_validate_fit_and_score_a_chat_log(tmp_path):
    proc = _run(["validate", str(SAMPLE)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rows (impressions):   200" in proc.stdout and "context" in proc.stdout
    proc = _run(["fit", str(SAMPLE), "--method", "naive", "--out", str(tmp_path / "run"), "--epochs", "2",
                 "--hidden", "8", "--device", "cpu", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run").is_dir() and "Traceback" not in proc.stderr
    proc = _run(["score", str(tmp_path / "run"), str(SAMPLE), "--out", str(tmp_path / "scored.jsonl")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pl.read_ndjson(tmp_path / "scored.jsonl").height == 200


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_cli_malformed_chat_log_is_one_error_line(tmp_path, command):
    bad = _jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"messages": [{"role": "user", "content": "q"}], "feedback": 1}])
    args = [command, str(bad)] + (["--out", str(tmp_path / "run")] if command == "fit" else [])
    proc = _run(args, tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "row 2 (line 2)" in lines[0] and "no assistant message" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------------ the app
def test_app_upload_accepts_a_chat_log(tmp_path):
    pytest.importorskip("gradio")
    from app import upload as U
    from app.tabs import data as D

    path = tmp_path / "chat.jsonl"
    shutil.copyfile(SAMPLE, path)
    cols = U.inspect_upload(str(path))
    assert "messages" in cols[0] and "Chat format" in cols[0]
    view = D.load_upload(None, str(path), *[U.AUTO] * len(U.MAPPABLE), "", "")
    try:
        log = view.state.log
        assert log.height == 200 and schema.CONTEXT in log.columns
        assert view.preview[schema.PROMPT].dtype == pl.String and "200 impressions" in view.summary
        assert "chat format: 200 conversations, 80 multi-turn" in view.summary
    finally:
        view.state.close()


def test_app_upload_maps_a_chat_column_with_another_name_from_its_dropdown(tmp_path):
    pytest.importorskip("gradio")
    from app import upload as U
    from app.tabs import data as D

    path = tmp_path / "chat.jsonl"
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({("conversation" if k == "messages" else k): v for k, v in r.items()}) + "\n"
                            for r in rows))
    assert U.MAPPABLE[-1] == schema.MESSAGES
    picks = {c: U.AUTO for c in U.MAPPABLE} | {schema.MESSAGES: "conversation"}
    view = D.load_upload(None, str(path), *[picks[c] for c in U.MAPPABLE], "", "")
    try:
        assert view.state.log.height == 200 and schema.CONTEXT in view.state.log.columns
        assert "chat format: 200 conversations" in view.summary
    finally:
        view.state.close()
