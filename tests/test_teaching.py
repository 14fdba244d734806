"""causalrm.workflows.teaching: the notebooks' shared helpers, on small inputs (the notebooks themselves run under nbmake)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from causalrm.errors import InputError
from causalrm.evaluation.metrics import evaluate_scores
from causalrm.simulation.simulate import simulate
from causalrm.workflows.bench import gap_closed
from causalrm.workflows.teaching import (
    equal_count_bins,
    error_bars,
    metric_rows,
    reliability_table,
    sweep_summary,
    with_gap_closed,
)


def test_equal_count_bins_hold_equal_counts_in_rank_order() -> None:
    values = np.random.default_rng(0).normal(size=100)
    bins = equal_count_bins(values, 5)
    assert np.bincount(bins).tolist() == [20] * 5
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(bins[order]) >= 0)


def test_metric_rows_match_evaluate_scores_and_refuse_unlabelled_logs() -> None:
    rated = pl.DataFrame({"prompt": [f"p{i // 2}" for i in range(200)], "response": [f"r{i}" for i in range(200)],
                          "rating": np.arange(200) % 10 + 1.0,
                          "split": ["test" if i >= 160 else "train" for i in range(200)]})
    log = simulate(rated, alpha=0.5, seed=0)
    z = np.random.default_rng(1).normal(size=log.height)
    (row,) = metric_rows(log, {"naive": z}, n_boot=20, seed_column=3)
    ev = evaluate_scores(log, z, n_boot=20)
    assert row["seed_column"] == 3 and row["method"] == "naive"
    assert row["R2"] == ev["metrics"]["r2"] and (row["AUROC lo"], row["AUROC hi"]) == tuple(ev["ci"]["auroc"])
    test = (log["split"] == "test").to_numpy()
    assert row["mean P(good)"] == pytest.approx(float(np.mean(1 / (1 + np.exp(-z[test])))))
    with pytest.raises(InputError):
        metric_rows(log.drop("true_label"), {"naive": z}, n_boot=0)


def test_reliability_table_bins_test_rows_by_probability_against_numpy() -> None:
    rated = pl.DataFrame({"prompt": [f"p{i // 2}" for i in range(200)], "response": [f"r{i}" for i in range(200)],
                          "rating": np.arange(200) % 10 + 1.0,
                          "split": ["test" if i >= 160 else "train" for i in range(200)]})
    log = simulate(rated, alpha=0.5, seed=0)
    rng = np.random.default_rng(2)
    scores = {"a": rng.normal(size=log.height), "b": rng.normal(size=log.height)}
    table = reliability_table(log, scores, n_bins=4)
    test = (log["split"] == "test").to_numpy()
    y = log["true_label"].cast(pl.Float64).to_numpy()[test]
    for method, z in scores.items():
        prob = 1 / (1 + np.exp(-z[test]))
        chunks = np.array_split(np.argsort(prob, kind="stable"), 4)  # 40 test rows: 4 bins of 10
        got = table.filter(pl.col("method") == method).sort("bin")
        assert got["rows"].to_list() == [10] * 4
        np.testing.assert_allclose(got["mean P(good)"], [prob[c].mean() for c in chunks])
        np.testing.assert_allclose(got["share good"], [y[c].mean() for c in chunks])
        ece = sum(len(c) / len(y) * abs(y[c].mean() - prob[c].mean()) for c in chunks)
        assert got["ECE"].to_list() == pytest.approx([ece] * 4)
    with pytest.raises(InputError):
        reliability_table(log.drop("true_label"), scores)
    with pytest.raises(InputError):
        reliability_table(log, scores, n_bins=0)


def test_gap_closed_column_summary_and_error_bars() -> None:
    table = pl.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "method": ["naive", "ips", "oracle"] * 2,
                          "R2": [0.1, 0.2, 0.5, 0.0, 0.3, 0.4], "R2 lo": [0.0] * 6, "R2 hi": [1.0] * 6,
                          "AUROC": [0.6] * 6, "mean P(good)": [0.5] * 6})
    first = with_gap_closed(table.filter(pl.col("seed") == 0))
    assert first["gap closed (R2)"].to_list() == pytest.approx(
        [gap_closed(np.array([v]), np.array([0.1]), np.array([0.5])) for v in (0.1, 0.2, 0.5)])
    summary = sweep_summary(table, "seed").filter(pl.col("method") == "ips")
    assert summary["mean R2"].to_list() == pytest.approx([0.2, 0.3])
    assert summary["sd"].to_list() == [0.0, 0.0]  # one row per seed and method: no spread
    bars = error_bars(table, "R2")
    assert (bars["error_y"] + table["R2"]).to_list() == pytest.approx([1.0] * 6)
    assert (table["R2"] - bars["error_y_minus"]).to_list() == pytest.approx([0.0] * 6)
