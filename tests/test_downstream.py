"""Issue 25, part A: best-of-N and acceptance kernels against plain-Python references; the information limit; the
bench's downstream keys, its oracle-effective row and its two-judge feedback on tiny data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from causalrm.data import schema
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.evaluation.downstream import acceptance, best_of_n, best_of_n_win_rate, log_downstream
from causalrm.evaluation.information import (
    clean_subset,
    effective_fraction,
    effective_sample_size,
    realised_flip_rates,
)
from causalrm.workflows.bench import BenchConfig, run_bench

FAST = {"hidden": [8], "max_epochs": 3, "patience": 2, "propensity_model": "logistic", "flip_bootstrap": 10,
        "device": "cpu"}


def _reference(groups, quality, scores, baseline):
    """Plain Python: per group of >= 2 rows, the pick's quality minus the mean, and win/tie/loss against baseline."""
    by: dict = {}
    for g, q, s, b in zip(groups, quality, scores, baseline):
        by.setdefault(g, []).append((q, s, b))
    gains, wins = [], []
    for rows in by.values():
        if len(rows) < 2:
            continue
        mean = sum(q for q, _, _ in rows) / len(rows)
        pick = max(range(len(rows)), key=lambda i: (rows[i][1], -i))
        base = max(range(len(rows)), key=lambda i: (rows[i][2], -i))
        gains.append(rows[pick][0] - mean)
        a, b = rows[pick][0], rows[base][0]
        wins.append(1.0 if a > b else 0.5 if a == b else 0.0)
    return sum(gains) / len(gains), len(gains), sum(wins) / len(wins)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 200
    groups = rng.integers(0, 40, n)
    quality = rng.integers(1, 6, n).astype(float)  # ties in quality, as judge scores have
    scores, baseline = rng.standard_normal(n), rng.standard_normal(n)
    gain, k, win = _reference(groups.tolist(), quality.tolist(), scores.tolist(), baseline.tolist())
    got = best_of_n(groups, quality, scores)
    assert got["best_of_n"] == pytest.approx(gain) and got["best_of_n_groups"] == k
    assert best_of_n_win_rate(groups, quality, scores, baseline) == pytest.approx(win)
    assert best_of_n_win_rate(groups, quality, scores, scores) == 0.5
    oracle = best_of_n(groups, quality, quality + 1e-6 * rng.standard_normal(n))["best_of_n"]
    assert oracle >= got["best_of_n"]  # picking by the quality itself is the best a score can do


def test_best_of_n_edges():
    assert np.isnan(best_of_n([0, 1, 2], [1.0, 2.0, 3.0], [0.1, 0.2, 0.3])["best_of_n"])  # singletons only
    with pytest.raises(InputError, match="differ in length"):
        best_of_n([0, 0], [1.0], [0.1, 0.2])
    with pytest.raises(InputError, match="finite"):
        best_of_n([0, 0], [1.0, np.nan], [0.1, 0.2])


def test_acceptance_matches_reference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = rng.random(300)
    accepted = [yi for yi, pi in zip(y, p) if pi > 0.5]
    got = acceptance(y, p)
    assert got["accept_precision"] == pytest.approx(sum(accepted) / len(accepted))
    assert got["accept_recall"] == pytest.approx(sum(accepted) / sum(y))
    assert np.isnan(acceptance([0, 1], [0.1, 0.2])["accept_precision"])
    with pytest.raises(InputError, match="0/1"):
        acceptance([0, 2], [0.1, 0.9])


def test_effective_sample_size_and_clean_subset():
    assert effective_fraction(0.15, 0.25) == pytest.approx(0.36)
    assert effective_sample_size(2430, 0.15, 0.25) == round(2430 * 0.36)
    assert effective_fraction(0.6, 0.5) == 0.0
    with pytest.raises(InputError, match="flip rates"):
        effective_fraction(-0.1, 0.2)
    log = pl.DataFrame({schema.OBSERVED: [1, 1, 1, 0, 1, 1], schema.FEEDBACK: [1, 0, 1, None, 0, 1],
                        schema.SPLIT: ["train", "val", "train", "train", "test", "test"],
                        schema.TRUE_LABEL: [1, 0, 0, 1, 0, 1]})
    assert realised_flip_rates(log) == (0.0, 0.5)
    sub = clean_subset(log, 2, seed=0)
    assert sub[schema.OBSERVED].to_list()[3:] == [0, 1, 1] and sub[schema.OBSERVED].sum() == 4
    assert (sub[schema.FEEDBACK].is_null() == (sub[schema.OBSERVED] == 0)).all()
    with pytest.raises(InputError, match="clean subset"):
        clean_subset(log, 4, seed=0)


def _rated(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    rating = np.clip(np.round(5.5 + 2 * X[:, 0] + X[:, 1] + rng.standard_normal(n)), 1, 10)
    second = np.clip(rating + rng.integers(-2, 3, n), 1, 10)  # a second judge: instance-dependent disagreement
    rated = pl.DataFrame({"prompt": [""] * n, "response": [f"a{i}" for i in range(n)],
                          "response_id": [f"r{i}" for i in range(n)], "pair_id": [f"t{i // 8}" for i in range(n)],
                          "rating": rating, "second": second})
    return rated, X


def test_bench_reports_downstream_and_the_information_limit():
    rated, X = _rated()
    cfg = BenchConfig(dataset="tiny", seeds=(0,), methods=("naive", "causalrm-ips", "oracle-observed"), fit=FAST,
                      observation_rate=0.5, alpha=0.5, rho01=0.0, rho10=0.0, feedback_column="second",
                      information_limit=True, n_boot=20)
    with cpu_threads(1):
        res = run_bench(cfg, data=(rated, X))
    rows = {r["method"]: r for r in res.results}
    assert set(rows) == {"naive", "causalrm-ips", "oracle-observed", "oracle-effective"}
    assert rows["naive"]["best_of_n_win_rate"] == 0.5 and rows["naive"]["best_of_n_groups"] >= 5
    limit = res.nuisances[0]["simulation"]["information_limit"]
    r01, r10 = limit["realised_rho01"], limit["realised_rho10"]
    assert r01 > 0 and r10 > 0  # the second judge's disagreement is the noise
    assert limit["effective_n"] == effective_sample_size(limit["n_observed"], r01, r10)
    assert res.summary["oracle-effective"]["limit_closed"]["value"] == pytest.approx(1.0)
    md = res.to_markdown()
    assert "best-of-N gain" in md and "oracle-effective" in md and "realised rho01" in md
    # the downstream figures are log_downstream's of the same rewards
    scores: dict = {}
    cfg.methods = ("naive",)
    cfg.information_limit = False
    with cpu_threads(1):
        again = run_bench(cfg, data=(rated, X), on_scores=lambda s, m, log, z: scores.update(log=log, z=z))
    log = scores["log"]
    ref = log_downstream(log, scores["z"], (log[schema.SPLIT] == schema.TEST).to_numpy(), schema.TRUE_LABEL,
                         scores["z"])
    assert again.results[0]["best_of_n"] == pytest.approx(ref["best_of_n"])
    assert again.results[0]["accept_recall"] == pytest.approx(ref["accept_recall"])


def test_feedback_column_needs_real_ratings_and_no_flips():
    with pytest.raises(InputError, match="--feedback-column"):
        BenchConfig(dataset="wildbench", feedback_column="score_gpt4turbo", rho01=0.1, rho10=0.0).validate()
