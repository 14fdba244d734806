"""causalrm.data.io: read_log normalisation, format parity, mapping, atomic writes, and no leaked parser errors."""

from __future__ import annotations

import gzip
import json
import os
import random

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from causalrm.atomic_io import atomic_path, write_json_atomic, write_table_atomic
from causalrm.data import schema
from causalrm.data.io.mapping import parse_mapping
from causalrm.data.io.readers import read_log, read_rated, read_table
from causalrm.errors import InputError

ROWS = [
    {"prompt": "What is 2+2?", "response": "4", "feedback": 1, "user_id": "u1", "pair_id": "a",
     "logged_propensity": 0.5, "gold_label": 1.0, "score": 7, "weight": 0.25, "note": "first"},
    {"prompt": "What is 2+2?", "response": "5, \"surely\"", "feedback": 0, "user_id": "u2", "pair_id": "a",
     "logged_propensity": 0.25, "gold_label": None, "score": 3, "weight": 1.5, "note": None},
    {"prompt": "Multi\nline, prompt", "response": "tab\there; ünïcödé 👍", "feedback": None, "user_id": "u1",
     "pair_id": "b", "logged_propensity": 1.0, "gold_label": 0.0, "score": 9, "weight": None, "note": "x"},
    {"prompt": "", "response": "no prompt", "feedback": None, "user_id": None, "pair_id": "c",
     "logged_propensity": 0.125, "gold_label": None, "score": None, "weight": 2.0, "note": "y"},
]


def _write(path, rows, fmt):
    df = pl.DataFrame(rows)
    if fmt == "parquet":
        df.write_parquet(path)
        return
    if fmt.startswith("csv"):
        text = df.write_csv()
    elif fmt.startswith("tsv"):
        text = df.write_csv(separator="\t")
    elif fmt.startswith("jsonl"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        text = json.dumps(rows, ensure_ascii=False)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "csv.gz", "tsv.gz", "jsonl.gz", "json.gz"])
def test_every_format_reads_to_the_same_frame(tmp_path, fmt):
    """The same log in every format gives the frame read from Parquet (canonical dtypes, extras inferred)."""
    _write(tmp_path / "ref.parquet", ROWS, "parquet")
    _write(tmp_path / f"log.{fmt}", ROWS, fmt)
    ref = read_log(tmp_path / "ref.parquet")
    got = read_log(tmp_path / f"log.{fmt}")
    # CSV/TSV cannot tell "" from missing in extra text columns; compare those after filling.
    if fmt.startswith(("csv", "tsv")):
        ref = ref.with_columns(pl.col("note").fill_null(""))
        got = got.with_columns(pl.col("note").fill_null(""))
    assert_frame_equal(got, ref)


def test_canonical_columns_and_dtypes(tmp_path):
    _write(tmp_path / "log.parquet", ROWS, "parquet")
    df = read_log(tmp_path / "log.parquet")
    assert df.columns[:5] == ["prompt", "response", "response_id", "feedback", "observed"]
    assert df.columns[-3:] == ["score", "weight", "note"]
    for name in df.columns:
        if name in schema.DTYPES:
            assert df.schema[name] == schema.DTYPES[name], name
    assert df["response_id"].to_list() == ["r1", "r2", "r3", "r4"]
    assert df["feedback"].to_list() == [1, 0, None, None]
    assert df["observed"].to_list() == [1, 1, 0, 0]
    assert df["prompt"][3] == ""
    assert "true_label" not in df.columns  # optional canonical columns appear only when given


def test_optional_columns_absent_by_default(tmp_path, tiny_log_csv):
    df = read_log(tiny_log_csv)
    assert df.columns == ["prompt", "response", "response_id", "feedback", "observed"]
    assert df["observed"].to_list() == [1, 1, 0, 0]
    assert df["response"][1] == "5, surely"


# A reference table written independently of causalrm.data.io's: every word and its meaning.
REFERENCE_FEEDBACK = {
    "1": 1, "0": 0, "true": 1, "false": 0, "True": 1, "FALSE": 0, "yes": 1, "no": 0, "up": 1, "down": 0,
    "+1": 1, "-1": 0, "thumbs_up": 1, "thumbs_down": 0, "Thumbs-Up": 1, "thumbs down": 0, "👍": 1, "👎": 0,
    "like": 1, "dislike": 0, "positive": 1, "negative": 0, " up ": 1, "": None, "NA": None, "null": None,
}


def test_feedback_words_match_reference(tmp_path):
    rng = random.Random(0)
    words = [rng.choice(list(REFERENCE_FEEDBACK)) for _ in range(300)]
    words[0], words[1] = "up", "0"  # make sure the column is not all-numeric
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"prompt": "p", "response": f"r{k}", "feedback": w}) + "\n"
                            for k, w in enumerate(words)), encoding="utf-8")
    df = read_log(path)
    assert df["feedback"].to_list() == [REFERENCE_FEEDBACK[w] for w in words]
    assert df["observed"].to_list() == [int(REFERENCE_FEEDBACK[w] is not None) for w in words]


@pytest.mark.parametrize("threshold", [0.0, 2.5, 3.0, 4.75])
def test_threshold_matches_numpy(tmp_path, threshold):
    rng = np.random.default_rng(1)
    ratings = np.round(rng.uniform(0, 5, size=200) * 4) / 4
    ratings[::7] = np.nan
    df = pl.DataFrame({"prompt": ["p"] * 200, "response": [f"r{k}" for k in range(200)], "stars": ratings})
    df.write_parquet(tmp_path / "log.parquet")
    got = read_log(tmp_path / "log.parquet", mapping={"stars": "feedback"}, threshold=threshold)
    expected = [None if np.isnan(r) else int(r >= threshold) for r in ratings]
    assert got["feedback"].to_list() == expected
    assert "stars" not in got.columns


def test_plus_minus_one_numbers_and_booleans(tmp_path):
    pl.DataFrame({"prompt": ["p"] * 3, "response": ["a", "b", "c"], "feedback": [1, -1, None]}).write_parquet(
        tmp_path / "pm.parquet")
    assert read_log(tmp_path / "pm.parquet")["feedback"].to_list() == [1, 0, None]
    pl.DataFrame({"prompt": ["p"] * 3, "response": ["a", "b", "c"], "feedback": [True, False, None]}).write_parquet(
        tmp_path / "b.parquet")
    assert read_log(tmp_path / "b.parquet")["feedback"].to_list() == [1, 0, None]


def test_mixed_binary_and_minus_one_is_rejected(tmp_path):
    pl.DataFrame({"prompt": ["p"] * 3, "response": ["a", "b", "c"], "feedback": [1, 0, -1]}).write_parquet(
        tmp_path / "m.parquet")
    with pytest.raises(InputError, match=r"row 3, column 'feedback'.*--threshold"):
        read_log(tmp_path / "m.parquet")


def test_observed_given_is_kept_and_checked(write_file):
    path = write_file("log.csv", "prompt,response,feedback,observed\np,a,1,1\np,b,,0\np,c,0,0\n")
    df = read_log(path)
    assert df["observed"].to_list() == [1, 0, 0]
    assert df["feedback"].to_list() == [1, None, 0]  # feedback on an unobserved row is kept (and ignored)
    path = write_file("bad.csv", "prompt,response,feedback,observed\np,a,1,1\np,b,,\n")
    with pytest.raises(InputError, match=r"row 2 \(line 3\), column 'observed': is empty"):
        read_log(path)


def test_response_ids_kept_as_text(write_file):
    df = read_log(write_file("log.jsonl", '{"prompt":"p","response":"a","response_id":7}\n'
                                          '{"prompt":"p","response":"b","response_id":8}\n'))
    assert df["response_id"].to_list() == ["7", "8"]


def test_splits_are_normalised(write_file):
    df = read_log(write_file("log.csv", "prompt,response,split\np,a,Train\np,b,validation\np,c,TEST\np,d,\n"))
    assert df["split"].to_list() == ["train", "val", "test", None]


def test_gold_and_true_labels(write_file):
    df = read_log(write_file("log.csv", "prompt,response,gold_label,true_label,true_score\n"
                                        "p,a,1,1,0.3\np,b,0.25,0,-1.5\np,c,,,\n"))
    assert df["gold_label"].to_list() == [1.0, 0.25, None]
    assert df["true_label"].to_list() == [1, 0, None]
    assert df["true_score"].to_list() == [0.3, -1.5, None]


def test_csv_details_bom_crlf_header_spaces_long_fields(write_file):
    long = "x" * 300_000
    path = write_file("log.csv", b"\xef\xbb\xbf prompt , response\r\np,\"" + long.encode() + b"\"\r\n\r\nq,b\r\n")
    df = read_log(path)
    assert df["response"].to_list() == [long, "b"]
    assert df.height == 2


def test_line_numbers_after_multiline_fields(write_file):
    path = write_file("log.csv", 'prompt,response,feedback\n"a\nb\nc",x,1\np,y,bogus\n')
    with pytest.raises(InputError, match=r"row 2 \(line 5\)"):
        read_log(path)


def test_mapping_renames_and_reports_user_names(write_file):
    path = write_file("log.csv", "question,answer,thumb,uid\nq,a,up,u\nq,b,meh,v\n")
    mapping = parse_mapping(["prompt=question,response=answer", "feedback=thumb", "user_id=uid"])
    assert mapping == {"question": "prompt", "answer": "response", "thumb": "feedback", "uid": "user_id"}
    with pytest.raises(InputError, match=r"column 'thumb' \(mapped to feedback\)"):
        read_log(path, mapping=mapping)


def test_mapping_swaps_are_allowed(write_file):
    path = write_file("log.csv", "prompt,response\nreally the response,really the prompt\n")
    df = read_log(path, mapping=parse_mapping(["prompt=response", "response=prompt"]))
    assert df["prompt"][0] == "really the prompt"


@pytest.mark.parametrize(("specs", "message"), [
    (["prompt"], "CANONICAL=COLUMN"),
    (["=question"], "CANONICAL=COLUMN"),
    (["prompt="], "CANONICAL=COLUMN"),
    (["prompts=question"], "unknown canonical column 'prompts'"),
    (["prompt=a", "prompt=b"], "mapped twice"),
    (["prompt=a,response=a"], "mapped to both"),
])
def test_parse_mapping_errors(specs, message):
    with pytest.raises(InputError, match=message):
        parse_mapping(specs)


def test_parse_mapping_whitespace_and_empty():
    assert parse_mapping([" prompt = q , ", ""]) == {"q": "prompt"}
    assert parse_mapping(None) == {}


def test_read_log_rejects_unknown_mapping_target(write_file):
    with pytest.raises(InputError, match="unknown canonical column 'answer'"):
        read_log(write_file("log.csv", "q,a\nx,y\n"), mapping={"q": "answer"})


# ------------------------------------------------------------------------------------------------ never leak errors
FUZZ_EXTENSIONS = ["csv", "tsv", "jsonl", "json", "parquet", "csv.gz", "jsonl.gz"]


@pytest.mark.parametrize("ext", FUZZ_EXTENSIONS)
def test_garbage_always_raises_input_error(tmp_path, ext):
    """Random bytes, truncated valid files and odd JSON raise InputError (one line), never a parser exception."""
    rng = random.Random(hash(ext) % 1000)
    _write(tmp_path / "valid.parquet", ROWS, "parquet")
    valid = {"parquet": (tmp_path / "valid.parquet").read_bytes()}
    for fmt in ("csv", "tsv", "jsonl", "json"):
        _write(tmp_path / f"valid.{fmt}", ROWS, fmt)
        valid[fmt] = (tmp_path / f"valid.{fmt}").read_bytes()
    base = valid[ext.split(".")[0]]
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(15)]
    samples += [base[: rng.randrange(1, len(base))] for _ in range(15)]
    samples += [b'{"prompt": 1, "response": {"a": [1, 2]}, "feedback": [1]}\n', b"[[[[]]]]", b"null\n", b"\xff\xfe"]
    for k, data in enumerate(samples):
        if ext.endswith(".gz"):
            data = gzip.compress(data) if k % 2 else data
        path = tmp_path / f"fuzz{k}.{ext}"
        path.write_bytes(data)
        try:
            read_log(path)
        except InputError as err:
            assert "\n" not in str(err) and str(path) in str(err)
        # a few truncated CSVs remain valid logs: that is fine


# ----------------------------------------------------------------------------------------------------- read_rated
def test_read_rated(write_file):
    df = read_rated(write_file("r.csv", "prompt,response,score,model\np,a,3,m1\np,b,4.5,m2\n"), rating_column="score")
    assert df.columns == ["prompt", "response", "response_id", "rating", "model"]
    assert df["rating"].dtype == pl.Float64 and df["rating"].to_list() == [3.0, 4.5]
    with pytest.raises(InputError, match=r"rating column 'rating' not found; columns found: prompt, response, score"):
        read_rated(write_file("r2.csv", "prompt,response,score\np,a,3\n"))
    with pytest.raises(InputError, match=r"row 2 \(line 3\), column 'score'.*'good' is not a number"):
        read_rated(write_file("r3.csv", "prompt,response,score\np,a,3\np,b,good\n"), rating_column="score")
    with pytest.raises(InputError, match=r"row 1 \(line 2\), column 'score': rating is empty"):
        read_rated(write_file("r4.csv", "prompt,response,score\np,a,\n"), rating_column="score")


# ------------------------------------------------------------------------------------------------------- writing
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_write_table_atomic_round_trip(tmp_path, suffix):
    df = pl.DataFrame({"prompt": ["a", "b"], "response": ["x, y", "z\nw"], "feedback": [1, None],
                       "score": [0.5, 1.25]}).with_columns(pl.col("feedback").cast(pl.Int8))
    path = tmp_path / f"out{suffix}"
    write_table_atomic(df, path)
    back = read_table(path)
    assert back["response"].to_list() == ["x, y", "z\nw"]
    assert back["score"].to_list() == [0.5, 1.25]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    nested = pl.DataFrame({"a": [[1, 2]]})  # CSV cannot hold list columns
    with pytest.raises(Exception):
        write_table_atomic(nested, path)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["out.csv"]


def test_write_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unsupported output extension"):
        write_table_atomic(pl.DataFrame({"a": [1]}), tmp_path / "x.xlsx")
    with pytest.raises(InputError, match="does not exist"):
        write_table_atomic(pl.DataFrame({"a": [1]}), tmp_path / "missing" / "x.csv")
    with pytest.raises(InputError, match="does not exist"):
        write_json_atomic({"x": 1}, tmp_path / "missing" / "x.json")
    assert os.listdir(tmp_path) == []


def test_write_json_atomic(tmp_path):
    write_json_atomic({"method": "causalrm-dr", "rho": [0.2, 0.1], "name": "ünï"}, tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["name"] == "ünï"


def test_read_table_infers_csv_types(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c\n1,0.5,x\n2,,y\n")
    df = read_table(tmp_path / "t.csv")
    assert df.schema == pl.Schema({"a": pl.Int64, "b": pl.Float64, "c": pl.String})


# ------------------------------------------------------------------------------------------- hf:// (no download)
def test_hf_spec_uses_datasets_without_network(monkeypatch):
    import sys
    import types

    import pyarrow as pa

    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        if name == "missing/name":
            raise FileNotFoundError("Couldn't find 'missing/name' on the Hub\nmore detail")
        table = pa.table({"question": ["q1", "q2"], "answer": ["a1", "a2"], "label": [True, False]})
        return types.SimpleNamespace(data=types.SimpleNamespace(table=table))

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    df = read_log("hf://owner/name:test", mapping=parse_mapping(["prompt=question,response=answer,feedback=label"]))
    assert calls == [("owner/name", "test")]
    assert df["feedback"].to_list() == [1, 0] and df["prompt"].to_list() == ["q1", "q2"]
    with pytest.raises(InputError, match=r"hf://missing/name: cannot load the dataset \(FileNotFoundError"):
        read_log("hf://missing/name")
    assert calls[-1] == ("missing/name", "train")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(InputError, match="needs the 'datasets' package"):
        read_log("hf://owner/name")


def test_csv_extras_keep_leading_zero_ids(write_file):
    df = read_log(write_file("log.csv", "prompt,response,account,n\np,a,007,1\np,b,010,2\n"))
    assert df.schema["account"] == pl.String and df["account"].to_list() == ["007", "010"]
    assert df.schema["n"] == pl.Int64


def test_atomic_write_uses_normal_permissions(tmp_path):
    path = tmp_path / "out.parquet"
    write_table_atomic(pl.DataFrame({"a": [1]}), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o640)
    write_table_atomic(pl.DataFrame({"a": [2]}), path)
    assert path.stat().st_mode & 0o777 == 0o640
