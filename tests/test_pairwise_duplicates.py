"""Flip rates from swapped-order duplicates of an A/B log: the closed form against a numerical maximum likelihood,
detection after reading, the simulator's duplicates, the estimator through fit_nuisances, and the refusals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize

from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.io.readers import read_log
from causalrm.data.pairwise import count_swapped, pair_features, swapped_duplicates
from causalrm.data.validate import summarize_log
from causalrm.errors import InputError
from causalrm.nuisances.duplicate_votes import group_shares, swapped_vote_rates
from causalrm.nuisances.fit import fit_nuisances
from causalrm.nuisances.flip_rates import FlipRateEstimator
from causalrm.simulation.pairwise import INDEX_A, INDEX_B, simulate_pairs


def _groups(k: int, rho01: float, rho10: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k swapped-order groups, one vote per order: (vote, group, order); P(A better) differs pair by pair."""
    rng = np.random.default_rng(seed)
    a_better = rng.random(k) < rng.beta(2, 5, size=k)
    true = np.stack([a_better, ~a_better], axis=1).astype(int)  # order 0 shows A first, order 1 shows B first
    flip = rng.random((k, 2)) < np.where(true == 1, rho01, rho10)
    vote = np.where(flip, 1 - true, true)
    return vote.reshape(-1), np.repeat(np.arange(k), 2), np.tile([0, 1], k)


def _numerical_mle(vote: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The multinomial MLE of (rho01, rho10) over the three outcomes of a group, by Nelder-Mead."""
    v = vote.reshape(-1, 2)[np.argsort(order.reshape(-1, 2), axis=1)[:, 0] == 0]
    n11, n00 = int(np.sum(v.sum(1) == 2)), int(np.sum(v.sum(1) == 0))
    nd = len(v) - n11 - n00

    def nll(x: np.ndarray) -> float:
        a, b = np.clip(x, 1e-9, 1 - 1e-9)
        p11, p00 = (1 - a) * b, a * (1 - b)
        return -(n11 * np.log(p11) + n00 * np.log(p00) + nd * np.log(1 - p11 - p00)) + 1e6 * max(a + b - 1, 0)

    return minimize(nll, x0=[0.2, 0.2], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12}).x


@pytest.mark.parametrize("rho01, rho10", [(0.10, 0.30), (0.25, 0.05)])
def test_the_closed_form_is_the_maximum_likelihood_estimate_and_recovers_the_truth(rho01, rho10):
    vote, group, order = _groups(3000, rho01, rho10)
    found = swapped_vote_rates(vote, group, order, n_bootstrap=200)
    np.testing.assert_allclose([found["rho01"], found["rho10"]], _numerical_mle(vote, order), atol=1e-5)
    for name, truth in (("rho01", rho01), ("rho10", rho10)):
        lo, hi = found["ci"][name]
        assert lo < found[name] < hi and abs(found[name] - truth) < 4 * (hi - lo) / 3.92  # 4 bootstrap SEs


def test_a_group_weighs_once_however_many_votes_each_order_got():
    vote, group, order = _groups(400, 0.1, 0.3, seed=1)
    once = swapped_vote_rates(vote, group, order, n_bootstrap=0)
    twice = swapped_vote_rates(np.repeat(vote, 2), np.repeat(group, 2), np.repeat(order, 2), n_bootstrap=0)
    assert (once["rho01"], once["rho10"]) == pytest.approx((twice["rho01"], twice["rho10"]))
    f0, f1, incomplete = group_shares(np.r_[vote, 1], np.r_[group, 10_000], np.r_[order, 0])
    assert f0.size == 400 and incomplete == 1  # a pair voted in one order only is not read
    with pytest.raises(ValueError, match="0/1"):
        group_shares(vote, group, order * 2)
    with pytest.raises(InputError, match="at least 20 are needed"):
        swapped_vote_rates(vote[:10], group[:10], order[:10])


def test_swapped_duplicates_are_found_after_reading_puts_the_first_shown_in_a(tmp_path):
    path = tmp_path / "ab.csv"
    pl.DataFrame({"prompt": ["q1", "q1", "q1", "q2", "q1", "q3", "q3"],
                  "response_a": ["x", "x", "x", "x", "u", "m", "n"], "response_b": ["y", "y", "y", "y", "v", "n", "m"],
                  "shown_first": ["a", "b", "a", "b", "a", "a", "a"],
                  "feedback": ["a", "b", None, "a", "a", "a", None]}).write_csv(path)
    log = read_log(path)
    group, order = swapped_duplicates(log)
    # q1 (x, y) in both orders: rows 0-2; q2 only once; q1 (u, v) once; q3 (m, n) in both orders but one vote
    assert group[:3].tolist() == [0, 0, 0] and group[3:5].tolist() == [-1, -1] and group[5] == group[6] == 1
    assert order[0] == order[2] != order[1]
    assert count_swapped(log) == 1
    text = summarize_log(log).format()
    assert "1 swapped-order duplicate pair: flip rates can be read from them" in text


def _rated(n_prompts: int, per_prompt: int = 4, d: int = 8) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_prompts * per_prompt, d)).astype(np.float32)
    return pl.DataFrame({"prompt": [f"p{i // per_prompt}" for i in range(len(X))],
                         "response": [f"r{i}" for i in range(len(X))], "rating": X @ rng.normal(size=d)}), X


def test_the_simulators_duplicates_give_back_the_true_rates_through_fit_nuisances():
    rated, X = _rated(1000)
    plain, _ = simulate_pairs(rated, rho01=0.1, rho10=0.3, vote_rate=0.6, seed=2)
    log, info = simulate_pairs(rated, rho01=0.1, rho10=0.3, vote_rate=0.6, seed=2, swapped_share=1.0)
    assert log.head(plain.height).equals(plain)  # the duplicates are appended: the rest of the log is unchanged
    dup = log.slice(plain.height)
    assert info["swapped_shown"] == dup.height and set(dup[schema.SPLIT].to_list()) <= {schema.TRAIN, schema.VAL}
    assert (dup[schema.TRUE_LABEL] == 1 - plain.filter(pl.col(schema.SPLIT) != schema.TEST)[schema.TRUE_LABEL]).all()
    assert info["swapped_voted"] == count_swapped(log) > 200
    XP = pair_features(X[log[INDEX_A].to_numpy()], X[log[INDEX_B].to_numpy()])
    nuis = fit_nuisances(log, XP, FitConfig(seed=0, flip_method="duplicates"), methods=["denoise"])
    for name, truth in (("rho01", 0.1), ("rho10", 0.3)):  # unbiased over seeds: benchmarks/pairwise_feedback.py
        lo, hi = nuis.rho_ci[name]
        assert lo < getattr(nuis, name) < hi and abs(getattr(nuis, name) - truth) < 4 * (hi - lo) / 3.92
    assert nuis.gates["flip_rates"].passed
    with pytest.raises(InputError, match="swapped-order duplicate pairs"):
        fit_nuisances(plain, XP[:plain.height], FitConfig(seed=0, flip_method="duplicates"), methods=["denoise"])
    with pytest.raises(InputError, match="use it on an A/B log"):
        FlipRateEstimator(method="duplicates").fit(None, [1, 0], [1, 1])


def test_cli_simulates_swapped_duplicates_and_validate_counts_them(tmp_path, capsys):
    from causalrm.cli.main import main

    out = tmp_path / "ab.parquet"
    assert main(["simulate", "--pairwise", "--dataset", "helpsteer2", "--seed", "0", "--vote-rate", "0.9",
                 "--swapped-share", "1", "--out", str(out)]) == 0
    assert "voted in both orders" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    assert "swapped-order duplicate pair" in capsys.readouterr().out
