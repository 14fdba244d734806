"""`causalrm validate`: every bad input exits 2 with one actionable `error:` line and writes nothing."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest

from causalrm.cli.main import main


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


GOOD_PARQUET = _parquet_bytes(pl.DataFrame({"prompt": ["p1", "p2"], "response": ["a", "b"], "feedback": [1, None]}))
H = "prompt,response,feedback\n"

# (id, file name, content, extra CLI args, fragments the one-line message must contain)
BAD_CASES = [
    ("missing-file", None, None, [], ["nope.csv", "not found"]),
    ("directory", "adir.csv/", None, [], ["adir.csv", "directory"]),
    ("empty-file", "log.csv", b"", [], ["log.csv", "empty"]),
    ("whitespace-only", "log.csv", "\n  \n", [], ["log.csv", "whitespace"]),
    ("header-only", "log.csv", H, [], ["log.csv", "no data rows", "prompt, response, feedback"]),
    ("missing-required-column", "log.csv", "question,response\nq,a\n", [],
     ["log.csv", "'prompt'", "columns found: question, response", "--map prompt="]),
    ("unknown-map-target", "log.csv", "question,response\nq,a\n", ["--map", "promt=question"],
     ["promt", "unknown canonical column", "prompt"]),
    ("map-without-equals", "log.csv", "question,response\nq,a\n", ["--map", "question"], ["--map", "CANONICAL=COLUMN"]),
    ("mapped-column-missing", "log.csv", "question,response\nq,a\n", ["--map", "prompt=query"],
     ["log.csv", "'query'", "not found", "question, response"]),
    ("mapped-target-clash", "log.csv", "prompt,question,response\np,q,a\n", ["--map", "prompt=question"],
     ["log.csv", "'question'", "already has a column 'prompt'"]),
    ("uninterpretable-feedback", "log.csv", H + "p,a,1\np,b,maybe\n", [],
     ["log.csv", "row 2 (line 3)", "'feedback'", "'maybe'", "--threshold"]),
    ("ratings-without-threshold", "log.csv", H + "p,a,1\np,b,4\n", [],
     ["log.csv", "row 2 (line 3)", "numeric ratings", "value 4", "--threshold"]),
    ("mapped-ratings-without-threshold", "log.jsonl", '{"prompt":"p","response":"a","stars":5}\n',
     ["--map", "feedback=stars"], ["log.jsonl", "row 1 (line 1)", "'stars' (mapped to feedback)", "--threshold"]),
    ("text-feedback-with-threshold", "log.csv", H + "p,a,up\n", ["--threshold", "3"],
     ["log.csv", "row 1 (line 2)", "'up'", "not numeric"]),
    ("threshold-without-feedback", "log.csv", "prompt,response,stars\np,a,4\n", ["--threshold", "3"],
     ["log.csv", "no feedback column", "--map feedback="]),
    ("threshold-nan", "log.csv", H + "p,a,4\n", ["--threshold", "nan"], ["--threshold", "finite"]),
    ("empty-response", "log.csv", H + "p,a,1\np,,0\n", [], ["log.csv", "row 2 (line 3)", "'response'", "empty"]),
    ("whitespace-response", "log.jsonl", '{"prompt":"p","response":"a"}\n{"prompt":"p","response":"  \\n "}\n', [],
     ["log.jsonl", "row 2 (line 2)", "'response'", "empty"]),
    ("null-response-json", "log.json", '[{"prompt":"p","response":"a"},{"prompt":"p","response":null}]', [],
     ["log.json", "row 2", "'response'"]),
    ("null-prompt", "log.jsonl", '{"prompt":"p","response":"a"}\n\n{"prompt":null,"response":"b"}\n', [],
     ["log.jsonl", "row 2 (line 3)", "'prompt'", "null", '""']),
    ("missing-prompt-key", "log.jsonl", '{"prompt":"p","response":"a"}\n{"response":"b"}\n', [],
     ["log.jsonl", "row 2 (line 2)", "'prompt'"]),
    ("duplicate-response-id", "log.csv", "prompt,response,response_id\np,a,x1\np,b,x2\np,c,x1\n", [],
     ["log.csv", "'x1'", "row 1 (line 2)", "row 3 (line 4)", "unique"]),
    ("empty-response-id", "log.csv", "prompt,response,response_id\np,a,x1\np,b,\n", [],
     ["log.csv", "row 2 (line 3)", "'response_id'", "empty"]),
    ("propensity-zero", "log.csv", "prompt,response,logged_propensity\np,a,0.5\np,b,0\n", [],
     ["log.csv", "row 2 (line 3)", "'logged_propensity'", "outside (0, 1]"]),
    ("propensity-above-one", "log.tsv", "prompt\tresponse\tlogged_propensity\np\ta\t1.5\n", [],
     ["log.tsv", "row 1 (line 2)", "'logged_propensity'", "1.5"]),
    ("propensity-not-numeric", "log.csv", "prompt,response,logged_propensity\np,a,high\n", [],
     ["log.csv", "row 1 (line 2)", "'logged_propensity'", "'high'", "not a number"]),
    ("propensity-empty", "log.csv", "prompt,response,logged_propensity\np,a,0.3\np,b,\n", [],
     ["log.csv", "row 2 (line 3)", "'logged_propensity'", "empty"]),
    ("true-propensity-negative", "log.jsonl", '{"prompt":"p","response":"a","true_propensity":-0.2}\n', [],
     ["log.jsonl", "row 1", "'true_propensity'", "outside (0, 1]"]),
    ("gold-label-out-of-range", "log.csv", "prompt,response,gold_label\np,a,1\np,b,2\n", [],
     ["log.csv", "row 2 (line 3)", "'gold_label'", "outside [0, 1]"]),
    ("observed-without-feedback", "log.csv", "prompt,response,feedback,observed\np,a,1,1\np,b,,1\n", [],
     ["log.csv", "row 2 (line 3)", "'observed'", "feedback is empty"]),
    ("observed-not-binary", "log.csv", "prompt,response,feedback,observed\np,a,1,2\n", [],
     ["log.csv", "row 1 (line 2)", "'observed'", "0/1"]),
    ("bad-split", "log.csv", "prompt,response,split\np,a,train\np,b,holdout\n", [],
     ["log.csv", "row 2 (line 3)", "'split'", "'holdout'", "train, val or test"]),
    ("non-utf8", "log.csv", b"prompt,response\np,caf\xe9\n", [], ["log.csv", "UTF-8", "byte offset 21", "line 2"]),
    ("ragged-row", "log.csv", H + "p,a,1\np,b,0,extra\n", [], ["log.csv", "line 3", "4 fields", "header has 3"]),
    ("short-row", "log.tsv", "prompt\tresponse\tfeedback\np\ta\n", [], ["log.tsv", "line 2", "2 fields"]),
    ("unclosed-quote", "log.csv", H + 'p,"never closed,1\n', [], ["log.csv", "line 2", "quoting"]),
    ("duplicate-header", "log.csv", "prompt,response,prompt\np,a,q\n", [], ["log.csv", "'prompt'", "twice"]),
    ("unsupported-extension", "log.xlsx", "whatever", [], ["log.xlsx", "unsupported", ".csv"]),
    ("binary-as-csv", "log.csv", b"prompt,response\n\x00\x01\x02\x03", [], ["log.csv", "binary", "byte offset 16"]),
    ("parquet-named-csv", "log.csv", GOOD_PARQUET, [], ["log.csv", "Parquet", ".parquet"]),
    ("not-parquet", "log.parquet", "prompt,response\np,a\n", [], ["log.parquet", "not a Parquet file"]),
    ("truncated-parquet", "log.parquet", GOOD_PARQUET[: len(GOOD_PARQUET) // 2], [],
     ["log.parquet", "cannot read Parquet"]),
    ("invalid-jsonl", "log.jsonl", '{"prompt":"p","response":"a"}\n{"prompt": "p", response}\n', [],
     ["log.jsonl", "line 2", "invalid JSON"]),
    ("jsonl-not-object", "log.jsonl", '{"prompt":"p","response":"a"}\n["p","a"]\n', [],
     ["log.jsonl", "line 2", "JSON object", "array"]),
    ("json-object-not-array", "log.json", '{"rows":[{"prompt":"p","response":"a"}]}', [],
     ["log.json", "array of objects", "'rows'"]),
    ("truncated-json-array", "log.json", '[{"prompt":"p","response":"a"},\n{"prompt":"q",', [],
     ["log.json", "line 2", "invalid JSON"]),
    ("corrupt-gzip", "log.csv.gz", b"\x1f\x8b\x08\x00garbage-not-deflate", [], ["log.csv.gz", "gzip"]),
    ("not-gzip", "log.jsonl.gz", '{"prompt":"p","response":"a"}\n', [], ["log.jsonl.gz", "not a gzip file"]),
    ("gzip-header-only", "log.csv.gz", gzip.compress(H.encode()), [], ["log.csv.gz", "no data rows"]),
    ("gzip-as-csv", "log.csv", gzip.compress(b"prompt,response\np,a\n"), [], ["log.csv", "gzip", ".gz"]),
    ("empty-parquet", "log.parquet",
     _parquet_bytes(pl.DataFrame({"prompt": [], "response": []}, schema={"prompt": pl.String, "response": pl.String})),
     [], ["log.parquet", "no data rows"]),
    ("parquet-list-prompt", "log.parquet", _parquet_bytes(pl.DataFrame({"prompt": [["a", "b"]], "response": ["x"]})),
     [], ["log.parquet", "'prompt'", "text"]),
]


def _snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _make(tmp_path, name, content):
    if name is None:
        return tmp_path / "nope.csv"
    if name.endswith("/"):
        path = tmp_path / name.rstrip("/")
        path.mkdir()
        return path
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _check_error(rc, err, fragments):
    lines = err.splitlines()
    assert rc == 2, err
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize(("name", "content", "args", "fragments"),
                         [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, name, content, args, fragments):
    path = _make(tmp_path, name, content)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    rc = main(["validate", str(path), *args])
    out, err = capsys.readouterr()
    _check_error(rc, err, fragments)
    assert out == ""
    assert _snapshot(tmp_path) == before, "validate must not write anything"


# ------------------------------------------------------------------------------------------------------- positives
LOG = [  # prompt, response, feedback (None = no feedback)
    ("What is 2+2?", "4", 1),
    ("What is 2+2?", "5, I think", 0),
    ("Say hi", 'He said "hi"\nand left', None),
    ("", "An answer with no prompt", None),
]


def _write_format(path, rows, fmt):
    """Write ``rows`` (list of dicts) in ``fmt`` by the writers other tools use (polars / json / gzip)."""
    df = pl.DataFrame(rows)
    if fmt == "parquet":
        df.write_parquet(path)
        return
    buf = io.StringIO() if fmt != "parquet" else None
    if fmt.startswith("csv"):
        buf.write(df.write_csv())
    elif fmt.startswith("tsv"):
        buf.write(df.write_csv(separator="\t"))
    elif fmt.startswith(("jsonl", "ndjson")):
        buf.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif fmt.startswith("json"):
        buf.write(json.dumps(rows, ensure_ascii=False, indent=1))
    data = buf.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)


FORMATS = ["csv", "tsv", "jsonl", "ndjson", "json", "parquet", "csv.gz", "tsv.gz", "jsonl.gz", "json.gz"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_validates(tmp_path, monkeypatch, capsys, fmt):
    path = tmp_path / f"log.{fmt}"
    _write_format(path, [{"prompt": p, "response": r, "feedback": f} for p, r, f in LOG], fmt)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    rc = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "rows (impressions):   4" in out
    assert "observed (feedback):  2 (50.0%)" in out
    assert "positive feedback:    1 (50.0% of observed)" in out
    assert "empty prompts: 1 row" in out
    assert _snapshot(tmp_path) == before


# (id, feedback values as written, extra args, expected positives, expected observed)
ENCODINGS = [
    ("binary", ["1", "0", "", "1"], [], 2, 3),
    ("true-false", ["true", "False", "", "TRUE"], [], 2, 3),
    ("yes-no", ["yes", "no", "NA", "no"], [], 1, 3),
    ("up-down", ["up", "down", "", "Up"], [], 2, 3),
    ("plus-minus-one", ["+1", "-1", "", "-1"], [], 1, 3),
    ("thumbs-words", ["thumbs_up", "thumbs_down", "thumbs_up", ""], [], 2, 3),
    ("emoji", ["👍", "👎", "", "👎"], [], 1, 3),
    ("rating-threshold", ["5", "2", "", "4"], ["--threshold", "4"], 2, 3),
    ("float-rating-threshold", ["0.9", "0.2", "0.5", ""], ["--threshold", "0.5"], 2, 3),
]


@pytest.mark.parametrize(("values", "args", "n_pos", "n_obs"),
                         [e[1:] for e in ENCODINGS], ids=[e[0] for e in ENCODINGS])
def test_feedback_encodings(tmp_path, capsys, values, args, n_pos, n_obs):
    rows = "".join(f"prompt {k},response {k},{v}\n" for k, v in enumerate(values))
    path = tmp_path / "log.csv"
    path.write_text("q,a,thumb\n" + rows, encoding="utf-8")
    rc = main(["validate", str(path), "--map", "prompt=q,response=a", "--map", "feedback=thumb", *args, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["n_rows"] == len(values)
    assert summary["n_observed"] == n_obs
    assert summary["n_positive"] == n_pos


def test_json_booleans_and_numbers(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"prompt": "p", "response": f"r{k}", "feedback": v}) + "\n"
                            for k, v in enumerate([True, False, None, -1, 1])), encoding="utf-8")
    # Booleans mixed with numbers become text ("true", "-1", ...), which the word table understands.
    rc = main(["validate", str(path), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["n_positive"] == 2 and json.loads(out)["n_observed"] == 4


def test_feedback_only_log_warns(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text(H + "p,a,1\np,b,0\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "feedback-only log:    yes" in out
    assert "propensities cannot be learned" in out


def _cli() -> list[str]:
    exe = shutil.which("causalrm")
    return [exe] if exe else [sys.executable, "-m", "causalrm.cli.main"]


def test_subprocess_error_is_one_line(tmp_path):
    """The installed command, in a real process: exit 2, one ``error:`` line, no traceback, nothing written."""
    bad = tmp_path / "bad.csv"
    bad.write_text(H + "p,a,1\np,b,sometimes\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    before = _snapshot(tmp_path)
    proc = subprocess.run([*_cli(), "validate", str(bad)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    _check_error(proc.returncode, proc.stderr, ["bad.csv", "row 2 (line 3)", "'feedback'", "'sometimes'"])
    assert proc.stdout == ""
    assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------- summarize_log
def test_summary_numbers_match_numpy():
    import numpy as np

    from causalrm.data.validate import summarize_log

    rng = np.random.default_rng(0)
    n = 3000
    observed = rng.random(n) < 0.3
    feedback = np.where(observed, (rng.random(n) < 0.6).astype(float), np.nan)
    df = pl.DataFrame({
        "prompt": [f"p{k % 50}" if k % 13 else "" for k in range(n)],
        "response": [f"r{k}" for k in range(n)],
        "response_id": [f"id{k}" for k in range(n)],
        "feedback": pl.Series(feedback).fill_nan(None).cast(pl.Int8),
        "observed": observed.astype(np.int8),
        "true_label": rng.integers(0, 2, n).astype(np.int8),
    })
    s = summarize_log(df)
    assert s.n_rows == n and s.n_observed == observed.sum()
    assert s.observed_rate == pytest.approx(observed.mean())
    assert s.positive_rate == pytest.approx(np.nanmean(feedback))
    assert s.n_empty_prompts == sum(1 for k in range(n) if k % 13 == 0)
    assert not s.feedback_only and s.simulation_columns == ["true_label"]
    assert any("simulation-only" in w for w in s.warnings)
    assert any("empty prompts" in w for w in s.warnings)
    assert not any("tiny sample" in w for w in s.warnings)
    json.dumps(s.to_dict())  # serialisable
    assert "rows (impressions):   3,000" in s.format()


@pytest.mark.parametrize(("feedback", "observed", "warning"), [
    ([1, 1, 0], None, "propensities cannot be learned"),
    ([1, None, None], None, "tiny sample"),
    ([None, None, None], None, "no row has feedback"),
    ([1, 1, None], None, "class imbalance"),
    ([1, 0, 0], [1, 1, 0], "feedback on unobserved rows"),
])
def test_summary_warnings(feedback, observed, warning):
    from causalrm.data.validate import summarize_log

    df = pl.DataFrame({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"],
                       "feedback": pl.Series(feedback, dtype=pl.Int8)})
    obs = observed if observed is not None else [int(f is not None) for f in feedback]
    df = df.with_columns(pl.Series("observed", obs, dtype=pl.Int8))
    assert any(warning in w for w in summarize_log(df).warnings)


def test_summary_no_propensity_warning_with_logged_propensity():
    from causalrm.data.validate import summarize_log

    df = pl.DataFrame({"prompt": ["a"] * 3, "response": ["x", "y", "z"], "feedback": [1, 0, 1],
                       "observed": [1, 1, 1], "logged_propensity": [0.5, 0.2, 0.9]})
    s = summarize_log(df)
    assert s.feedback_only and s.has_logged_propensity
    assert not any("propensities cannot be learned" in w for w in s.warnings)
