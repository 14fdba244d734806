"""One reader contract: `causalrm validate` (streaming where it can) and `causalrm fit` / `read_log` (in memory) refuse
every bad log with the same one `error:` line (exit 2) and accept the same good ones.

Each fixture is a list of records written as CSV, JSONL and Parquet (where the format can hold it); ``validate`` runs
through the CLI, ``fit`` through the CLI up to its first read (the log is read before any embedding or training, so a
good log stops at a missing ``--embeddings`` file instead of training: nothing downloads or trains here).
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from causalrm.cli.main import main
from causalrm.data.io.readers import read_log
from causalrm.data.scan import summarize_file
from causalrm.errors import InputError

P, R = "prompt", "response"


def _rows(n: int = 3, **cols) -> list[dict]:
    """``n`` good rows (prompt, response, feedback 1/0/null) with ``cols`` (name -> list of n values) added."""
    rows = [{P: f"p{k}", R: f"r{k}", "feedback": [1, 0, None][k % 3]} for k in range(n)]
    for name, values in cols.items():
        for row, v in zip(rows, values):
            if v is ...:
                row.pop(name, None)
            else:
                row[name] = v
    return rows


USER = {"role": "user", "content": "hi"}
BOT = {"role": "assistant", "content": "hello"}

# name -> (records, extra CLI args); every one must be refused
BAD: dict[str, tuple[list[dict], list[str]]] = {
    # text columns
    "prompt-object": (_rows(prompt=["a", {"role": "user"}, "c"]), []),
    "prompt-object-only": (_rows(prompt=[{"role": "user"}] * 3), []),
    "prompt-array": (_rows(prompt=["a", "b", ["x", "y"]]), []),
    "response-object": (_rows(response=["a", {"text": "b"}, "c"]), []),
    "response-array": (_rows(response=[["a"], ["b"], ["c"]]), []),
    "response-empty": (_rows(response=["a", "", "c"]), []),
    "response-blank": (_rows(response=["a", " \t\n", "c"]), []),
    "response-null": (_rows(response=["a", None, "c"]), []),
    "response-missing-key": (_rows(response=["a", ..., "c"]), []),
    "prompt-null": (_rows(prompt=["a", None, "c"]), []),
    "no-response-column": ([{P: "p", "answer": "a"}], []),
    # feedback
    "feedback-word": (_rows(feedback=[1, "maybe", 0]), []),
    "feedback-ratings": (_rows(feedback=[1, 4, 0]), []),
    "feedback-zero-and-minus-one": (_rows(feedback=[0, -1, 1]), []),
    "feedback-two": (_rows(feedback=[2, 2, 2]), []),
    "feedback-object": (_rows(feedback=[1, {"v": 1}, 0]), []),
    "feedback-text-with-threshold": (_rows(feedback=["up", "down", "3"]), ["--threshold", "3"]),
    "feedback-fraction": (_rows(feedback=[0.5, 1, 0]), []),
    # observed
    "observed-two": (_rows(observed=[1, 2, 0]), []),
    "observed-null": (_rows(observed=[1, None, 0], feedback=[1, None, None]), []),
    "observed-without-feedback": (_rows(observed=[1, 1, 1]), []),
    "observed-word": (_rows(observed=["yes", "seen", "no"]), []),
    # probabilities and labels
    "propensity-zero": (_rows(logged_propensity=[0.5, 0.0, 0.2]), []),
    "propensity-above-one": (_rows(logged_propensity=[0.5, 1.5, 0.2]), []),
    "propensity-negative": (_rows(logged_propensity=[0.5, -0.1, 0.2]), []),
    "propensity-empty": (_rows(logged_propensity=[0.5, None, 0.2]), []),
    "propensity-text": (_rows(logged_propensity=[0.5, "high", 0.2]), []),
    "propensity-object": (_rows(logged_propensity=[0.5, {"p": 0.1}, 0.2]), []),
    "true-propensity-zero": (_rows(true_propensity=[0.5, 0, 0.2]), []),
    "inclusion-probability-above-one": (_rows(inclusion_probability=[0.5, 2, None]), []),
    "gold-label-two": (_rows(gold_label=[1, 2, None]), []),
    "gold-label-negative": (_rows(gold_label=[1, -1, None]), []),
    "gold-label-word": (_rows(gold_label=[1, "good", None]), []),
    "true-label-half": (_rows(true_label=[1, 0.5, 0]), []),
    "true-label-word": (_rows(true_label=[1, "maybe", 0]), []),
    "true-score-word": (_rows(true_score=[0.1, "high", 0.3]), []),
    # ids and splits
    "duplicate-ids": (_rows(response_id=["a", "b", "a"]), []),
    "duplicate-numeric-ids": (_rows(response_id=[1, 2, 1]), []),
    "empty-id": (_rows(response_id=["a", "", "c"]), []),
    "null-id": (_rows(response_id=["a", None, "c"]), []),
    "bad-split": (_rows(split=["train", "holdout", "test"]), []),
    "split-array": (_rows(split=["train", ["val"], "test"]), []),
    # chat format
    "chat-bad-role": ([{"messages": [{"role": "customer", "content": "hi"}, BOT]}] * 2, []),
    "chat-no-role": ([{"messages": [{"content": "hi"}, BOT]}] * 2, []),
    "chat-no-content": ([{"messages": [USER, {"role": "assistant"}]}] * 2, []),
    "chat-null-content": ([{"messages": [USER, {"role": "assistant", "content": None}]}] * 2, []),
    "chat-number-content": ([{"messages": [USER, {"role": "assistant", "content": 7}]}] * 2, []),
    "chat-not-a-list": ([{"messages": {"role": "assistant", "content": "x"}}] * 2, []),
    "chat-text-not-json": ([{"messages": "hello there"}] * 2, []),
    "chat-empty-list": ([{"messages": [USER, BOT]}, {"messages": []}], []),
    "chat-ends-with-user": ([{"messages": [BOT, USER]}] * 2, []),
    "chat-no-assistant": ([{"messages": [USER]}] * 2, []),
    "chat-empty-response": ([{"messages": [USER, {"role": "assistant", "content": "  "}]}] * 2, []),
    "chat-message-not-object": ([{"messages": ["hi", BOT]}] * 2, []),
    "chat-null-row": ([{"messages": [USER, BOT]}, {"messages": None}], []),
    "chat-and-prompt": ([{"messages": [USER, BOT], P: "p"}] * 2, []),
    "chat-image-part": ([{"messages": [USER, {"role": "assistant", "content": [{"type": "image_url"}]}]}] * 2,
                        []),
    # mapping and threshold
    "map-missing-column": (_rows(), ["--map", "prompt=question"]),
    "threshold-without-feedback": ([{P: "p", R: "r"}], ["--threshold", "3"]),
}

GOOD: dict[str, tuple[list[dict], list[str]]] = {
    "plain": (_rows(), []),
    "words": (_rows(feedback=["up", "down", None]), []),
    "thumbs-pm1": (_rows(feedback=[1, -1, None]), []),
    "ratings-threshold": (_rows(feedback=[5, 2, None]), ["--threshold", "4"]),
    "everything": (_rows(response_id=["a", "b", "c"], observed=[1, 1, 0], logged_propensity=[0.5, 1.0, 0.2],
                         gold_label=[1, None, 0.0], split=["train", "VAL", "test"], user_id=["u1", "u2", None],
                         true_label=[1, 0, 1], true_score=[0.1, 0.2, 0.3]), []),
    "empty-prompt": (_rows(prompt=["", "b", "c"]), []),
    "chat": ([{"messages": [USER, BOT], "feedback": f} for f in (1, 0, None)], []),
    "chat-parts": ([{"messages": [USER, {"role": "Assistant", "content": [{"type": "text", "text": "x"}]}]}] * 2,
                   []),
    "mapped": ([{"q": "p", "a": "r", "thumb": "up"}, {"q": "p2", "a": "r2", "thumb": None}],
               ["--map", "prompt=q,response=a,feedback=thumb"]),
}


#: CSV has no null text: an empty prompt cell is the prompt "", a one-column row with an empty cell a blank line
NO_CSV = {"prompt-null", "chat-null-row"}


def _write(tmp_path, name: str, records: list[dict], fmt: str):
    """The records as ``fmt``; None when the format cannot hold them (CSV: nested values; Parquet: mixed types)."""
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv" and name in NO_CSV:
        return None
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path
    if fmt == "csv":
        if any(isinstance(v, dict) or (isinstance(v, list) and k != "messages") for r in records for k, v in r.items()):
            return None
        keys = list(dict.fromkeys(k for r in records for k in r))
        cells = [[json.dumps(r[k]) if isinstance(r.get(k), list) else r.get(k) for k in keys] for r in records]
        pl.DataFrame(cells, schema={k: pl.String for k in keys}, orient="row").write_csv(path)
        return path
    try:
        df = pl.DataFrame(records, strict=True, infer_schema_length=None)
    except Exception:
        return None
    df.write_parquet(path)
    return path


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


CASES = [(n, fmt) for n in sorted(BAD) for fmt in ("csv", "jsonl", "parquet")]


@pytest.mark.parametrize(("name", "fmt"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_bad_input_refused_identically(tmp_path, capsys, name, fmt):
    records, args = BAD[name]
    path = _write(tmp_path, name, records, fmt)
    if path is None:
        pytest.skip(f"{fmt} cannot hold this fixture")
    rc_v, err_v = _cli(["validate", str(path), *args], capsys)
    rc_f, err_f = _cli(["fit", str(path), "--out", str(tmp_path / "run"), "--embeddings",
                        str(tmp_path / "none.npy"), *args], capsys)
    assert rc_v == 2 and len(err_v.splitlines()) == 1 and err_v.startswith("error: "), err_v
    assert (rc_f, err_f) == (rc_v, err_v)
    assert not (tmp_path / "run").exists()
    mapping = {"question": "prompt"} if "--map" in args else None
    threshold = float(args[args.index("--threshold") + 1]) if "--threshold" in args else None
    with pytest.raises(InputError) as eager:
        read_log(path, mapping=mapping, threshold=threshold)
    with pytest.raises(InputError) as streamed:
        summarize_file(path, mapping=mapping, threshold=threshold)
    assert f"error: {eager.value}" == err_v and str(streamed.value) == str(eager.value)


GOOD_CASES = [(n, fmt) for n in sorted(GOOD) for fmt in ("csv", "jsonl", "parquet")]


@pytest.mark.parametrize(("name", "fmt"), GOOD_CASES, ids=[f"{n}-{f}" for n, f in GOOD_CASES])
def test_good_input_accepted_by_both(tmp_path, capsys, name, fmt):
    records, args = GOOD[name]
    path = _write(tmp_path, name, records, fmt)
    if path is None:
        pytest.skip(f"{fmt} cannot hold this fixture")
    rc_v, err_v = _cli(["validate", str(path), "--json", *args], capsys)
    assert rc_v == 0, err_v
    rc_f, err_f = _cli(["fit", str(path), "--out", str(tmp_path / "run"), "--embeddings",
                        str(tmp_path / "none.npy"), *args], capsys)
    assert rc_f == 2 and "none.npy" in err_f, err_f  # the log was read; the fit stops at the missing embeddings


def test_streamed_parquet_checks_match_read_log(tmp_path):
    """The streaming path decides valid Parquet logs itself (no eager read), and refuses the bad ones it scans."""
    for name, (records, args) in {**GOOD, **BAD}.items():
        if args:
            continue
        path = _write(tmp_path, name, records, "parquet")
        if path is None:
            continue
        reasons: list[str] = []
        try:
            summarize_file(path, on_fallback=reasons.append)
        except InputError:
            assert name in BAD and reasons, name
        else:
            assert name in GOOD, name


# ------------------------------------------------------------------------------------------------ the app's Data tab
APP_CASES = sorted(n for n, (_, args) in BAD.items() if not args)


@pytest.mark.parametrize("name", APP_CASES)
def test_app_inspection_shows_the_same_error_before_load(tmp_path, name):
    from app import upload as U

    path = _write(tmp_path, name, BAD[name][0], "jsonl")
    with pytest.raises(InputError) as eager:
        read_log(path)
    note = U.inspect_upload(str(path))[0]
    if name == "no-response-column":
        assert "Checks: map `response`" in note  # a required column under another name: the mapping comes first
    else:
        assert "will not load as named" in note and str(eager.value).replace(str(path), path.name) in note


def test_app_inspection_passes_a_good_log(tmp_path):
    from app import upload as U

    path = _write(tmp_path, "plain", GOOD["plain"][0], "parquet")
    assert "✅ Checks pass as named: 3 rows, 2 with feedback" in U.inspect_upload(str(path))[0]


def test_failed_upload_keeps_the_previous_log_marked(tmp_path):
    from app import upload as U
    from app.tabs import data as D

    no_map = [U.AUTO] * len(U.MAPPABLE)
    good = _write(tmp_path, "good", GOOD["words"][0], "jsonl")
    bad = _write(tmp_path, "bad", BAD["chat-bad-role"][0], "jsonl")
    view = D.load_upload(None, str(good), *no_map, "", "")
    try:
        log = view.state.log
        kept = D.load_upload(view.state, str(bad), *no_map, "", "")
        assert kept.state.log is log
        assert kept.summary.startswith("### Previous log (still loaded): good.jsonl")
        assert "`bad.jsonl` was not loaded" in kept.summary and "unknown role 'customer'" in kept.summary
        assert str(tmp_path) not in kept.summary
    finally:
        view.state.close()
