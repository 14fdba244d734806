"""causalrm.data.scan: streaming validate/summary agrees with read_log + summarize_log, errors included."""

from __future__ import annotations

import polars as pl
import pytest

from causalrm.data.io.readers import read_log
from causalrm.data.scan import collect_streaming, scan_log, summarize_file
from causalrm.data.validate import summarize_log
from causalrm.errors import InputError

CASES = {
    "basic": ({"prompt": ["a", "b", " ", "a"] * 50, "response": ["x", "y", "z", "x"] * 50,
               "feedback": [1, None, 0, 1] * 50, "split": ["train", "val", None, "test"] * 50, "extra": [1, 2, 3, 4] * 50},
              None, None),
    "mapped_words": ({"q": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": ["up", "down", None],
                      "logged_propensity": [0.5, 0.2, 1.0]}, {"q": "prompt"}, None),
    "thumbs_pm1": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": [1, -1, None],
                    "observed": [1, 1, 0], "gold_label": [None, 1.0, 0.0]}, None, None),
    "threshold": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": [5, 2, None]}, None, 4.0),
    "simulation": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": [True, False, None],
                    "true_label": [1, 0, 1], "true_score": [0.1, 0.2, 0.3]}, None, None),
    "bad_observed": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": [1, 0, None],
                      "observed": [1, 1, 1]}, None, None),
    "bad_feedback_numbers": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": [1, 0, -1]},
                             None, None),
    "bad_feedback_word": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "feedback": ["up", "2", None]},
                          None, None),
    "duplicate_id": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "response_id": ["1", "2", "1"]},
                     None, None),
    "empty_response": ({"prompt": ["a", "b", "c"], "response": ["x", " ", "z"]}, None, None),
    "null_prompt": ({"prompt": ["a", None, "c"], "response": ["x", "y", "z"]}, None, None),
    "bad_split": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "split": ["train", "foo", None]}, None, None),
    "bad_propensity": ({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "logged_propensity": [0.5, 0.0, 1.0]},
                       None, None),
    "split_tokens": ({"prompt": ["a", "b", "c", "d"], "response": ["x", "y", "z", "w"], "feedback": [1, 0, 1, None],
                      "split": ["Train", " VAL ", "NA", "testing"], "user_id": [1, 2, 3, 4],
                      "response_id": ["i1", "i2", "i3", "i4"]}, None, None),
    "chat": ({"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]] * 3,
              "feedback": [1, 0, None]}, None, None),
}
STREAMED = {"basic", "mapped_words", "thumbs_pm1", "threshold", "simulation", "split_tokens"}  # as Parquet; JSONL: eager


def _write(tmp_path, name, data, ext):
    path = tmp_path / f"{name}.{ext}"
    df = pl.DataFrame(data)
    df.write_parquet(path) if ext == "parquet" else df.write_ndjson(path)
    return path


def _outcome(fn):
    try:
        return fn().to_dict()
    except InputError as err:
        return f"InputError: {err}"


@pytest.mark.parametrize("ext", ["parquet", "jsonl"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_summarize_file_matches_eager(tmp_path, name, ext):
    data, mapping, threshold = CASES[name]
    path = _write(tmp_path, name, data, ext)
    fallbacks: list[str] = []
    lazy = _outcome(lambda: summarize_file(path, mapping=mapping, threshold=threshold, on_fallback=fallbacks.append))
    eager = _outcome(lambda: summarize_log(read_log(path, mapping=mapping, threshold=threshold), source=str(path)))
    assert lazy == eager
    assert (not fallbacks) == (name in STREAMED and ext == "parquet"), fallbacks
    if name not in STREAMED and name != "chat":
        assert lazy.startswith("InputError: ") and "row" in lazy  # the row is named, as read_log names it


def test_summarize_file_counts(tmp_path):
    path = _write(tmp_path, "basic", CASES["basic"][0], "parquet")
    s = summarize_file(path)
    assert (s.n_rows, s.n_observed, s.n_positive, s.n_empty_prompts) == (200, 150, 100, 50)
    assert s.splits == {"train": 50, "val": 50, "test": 50, "null": 50}
    assert any(w.startswith("duplicates: 197 rows") for w in s.warnings)
    assert s.extra_columns == ["extra"]


def test_csv_and_gzip_fall_back_to_read_log(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("prompt,response,feedback\na,x,1\nb,y,\n")
    assert scan_log(path) is None
    reasons: list[str] = []
    assert summarize_file(path, on_fallback=reasons.append).n_rows == 2
    assert reasons


def test_missing_file_error_is_the_same(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        summarize_file(tmp_path / "nope.parquet")


def test_collect_streaming():
    assert collect_streaming(pl.LazyFrame({"a": [1, 2]}).select(pl.col("a").sum())).item() == 3


def test_validate_cli_json_uses_the_stream(tmp_path, capsys):
    import json

    from causalrm.cli.main import main

    path = _write(tmp_path, "basic", CASES["basic"][0], "parquet")
    assert main(["validate", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == summarize_log(read_log(path), source=str(path)).to_dict()
