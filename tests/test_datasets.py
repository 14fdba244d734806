"""The bundled data in data/ and causalrm.data.datasets."""

from __future__ import annotations

import polars as pl
import pytest

from causalrm.data import schema
from causalrm.data.datasets import BUNDLED, bundled_log, bundled_path, load_oasst1_log, load_rated
from causalrm.data.validate import summarize_log
from causalrm.errors import InputError

EXPECTED_ROWS = {"ultrafeedback": 2398, "wildbench": 15243, "oasst1": 1235, "helpsteer2": 100}
HEAD = ["prompt", "response", "response_id", "pair_id", "rating", "split"]


@pytest.fixture(scope="module")
def rated():
    return {name: load_rated(name) for name in BUNDLED}


def test_bundled_names_and_paths():
    assert BUNDLED == ("ultrafeedback", "wildbench", "oasst1", "helpsteer2")
    for name in BUNDLED:
        path = bundled_path(name)
        assert path.name == f"{name}.parquet" and path.is_file()
        assert path.parent.name == "data" and (path.parent.parent / "causalrm").is_dir()
    with pytest.raises(InputError, match="unknown bundled dataset 'ultra'.*ultrafeedback, wildbench"):
        bundled_path("ultra")


@pytest.mark.parametrize("name", BUNDLED)
def test_rated_columns_counts_and_text(rated, name):
    df = rated[name]
    assert df.columns[:6] == HEAD
    assert df.height == EXPECTED_ROWS[name]
    assert df["rating"].dtype == pl.Float64 and df["rating"].null_count() == 0
    assert df["response"].str.strip_chars().str.len_chars().min() > 0, "empty response"
    assert df["prompt"].null_count() == 0
    assert df["response_id"].n_unique() == df.height
    assert df["pair_id"].null_count() == 0
    assert set(df["split"].drop_nulls().unique()) <= {"train", "test"}
    # every pair (prompt group) sits on one split
    assert (df.group_by("pair_id").agg(pl.col("split").n_unique()).get_column("split") <= 1).all()


def test_rating_ranges(rated):
    assert rated["ultrafeedback"]["rating"].is_between(1, 10).all()
    assert rated["wildbench"]["rating"].is_between(1, 10).all()
    assert rated["helpsteer2"]["rating"].is_between(0, 4).all()
    assert rated["oasst1"]["rating"].is_between(0, 1).all()


def test_ultrafeedback_split_and_pairs(rated):
    uf = rated["ultrafeedback"]
    counts = dict(uf["split"].value_counts().iter_rows())
    assert counts == {"train": 1998, "test": 400}
    assert uf["pair_id"].n_unique() == 1200
    assert set(uf["position"].unique()) == {"chosen", "rejected"}


def test_wildbench_prompt_is_empty_and_rating_prefers_gpt4o(rated):
    wb = rated["wildbench"]
    assert (wb["prompt"] == "").all()
    assert wb["split"].null_count() == wb.height
    assert wb["pair_id"].n_unique() == 1024
    expected = wb.select(pl.coalesce("score_gpt4o", "score_gpt4turbo")).to_series()
    assert (wb["rating"] == expected).all()
    other = load_rated("wildbench", rating_column="score_gpt4turbo")
    assert other.height == wb["score_gpt4turbo"].is_not_null().sum()


def test_helpsteer2_pairs(rated):
    hs = rated["helpsteer2"]
    assert hs["pair_id"].n_unique() == 50
    assert (hs["rating"] == hs["helpfulness"].cast(pl.Float64)).all()
    assert hs.group_by("pair_id").agg(pl.col("prompt").n_unique()).get_column("prompt").max() == 1


def test_oasst1_log():
    log = load_oasst1_log()
    assert log.height == 1241
    assert log.columns[:5] == ["prompt", "response", "response_id", "feedback", "observed"]
    assert log.schema["gold_label"] == schema.DTYPES["gold_label"]
    # feedback from emoji counts, ties to 0
    up, down = log["thumbs_up"], log["thumbs_down"]
    assert (log["observed"] == ((up + down) > 0).cast(pl.Int8)).all()
    observed = log.filter(pl.col("observed") == 1)
    assert (observed["feedback"] == (observed["thumbs_up"] > observed["thumbs_down"]).cast(pl.Int8)).all()
    assert log.filter(pl.col("observed") == 0)["feedback"].null_count() == (log["observed"] == 0).sum()
    s = summarize_log(log)
    assert 0.6 < s.observed_rate < 0.8 and not s.feedback_only
    assert 0.6 < s.positive_rate < 0.85
    # gold: quality above the median of labelled messages
    gold = log.filter(pl.col("gold_score").is_not_null())
    assert gold.height >= 1200 and s.n_gold == gold.height
    median = gold["gold_score"].median()
    assert (gold["gold_label"] == (gold["gold_score"] > median).cast(pl.Float64)).all()
    assert 0.3 < gold["gold_label"].mean() < 0.7
    # siblings share the prompt
    assert (log.group_by("pair_id").agg(pl.col("prompt").n_unique()).get_column("prompt") == 1).all()


@pytest.mark.parametrize("name", ["ultrafeedback", "helpsteer2"])
def test_bundled_rated_files_pass_read_log(name):
    log = bundled_log(name)
    assert log["observed"].sum() == 0 and "rating" in log.columns


def test_load_rated_from_path(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("question,answer,stars\nq1,a,4\nq1,b,2\nq2,c,5\n", encoding="utf-8")
    df = load_rated(path, rating_column="stars", mapping={"question": "prompt", "answer": "response"})
    assert df.columns[:6] == HEAD
    assert df["rating"].to_list() == [4.0, 2.0, 5.0]
    assert df["pair_id"].to_list() == ["p0", "p0", "p1"]
    assert df["split"].null_count() == 3
    with pytest.raises(InputError, match="rating column 'rating' not found"):
        load_rated(path, mapping={"question": "prompt", "answer": "response"})
    with pytest.raises(InputError, match="neither a bundled dataset"):
        load_rated("ultrafeedbak")
    with pytest.raises(InputError, match="has no column 'stars'"):
        load_rated("helpsteer2", rating_column="stars")
