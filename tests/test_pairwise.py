"""A/B preference logs: reading (votes, ties, positions, TRL), the pairwise estimators against NumPy, the
simulator, a fit that scores single responses, and the CLI's names for the log."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.io.readers import read_log
from causalrm.data.pairwise import pair_features, position_summary, read_pairs, sides, split_features
from causalrm.data.validate import summarize_log
from causalrm.errors import InputError
from causalrm.estimators import losses, methods
from causalrm.simulation.pairwise import INDEX_A, INDEX_B, simulate_pairs
from causalrm.training.backbones.mlp import MLPBackbone
from causalrm.training.pairs import PairModel, featurize_pairs
from causalrm.workflows.orchestrate import fit_methods


def test_votes_ties_and_positions_are_read_as_documented(tmp_path):
    path = tmp_path / "ab.csv"
    pl.DataFrame({"prompt": ["q1", "q1", "q2", "q3", "q4"], "response_a": ["a1", "a2", "a3", "a4", "a5"],
                  "response_b": ["b1", "b2", "b3", "b4", "b5"], "feedback": ["a", None, "B", "tie", "1"],
                  "gold_label": ["a", None, "a", "b", None],
                  "shown_first": ["a", "b", "b", "a", "a"]}).write_csv(path)
    log = read_log(path)
    assert log[schema.OBSERVED].to_list() == [1, 0, 1, 0, 1]  # empty and tie: no vote
    # row 2 and 3 were shown b first: swapped so that a is the first-shown response
    assert log["response_a"].to_list() == ["a1", "b2", "b3", "a4", "a5"]
    assert log[schema.FEEDBACK].to_list() == [1, None, 1, None, 1]
    assert log[schema.GOLD_LABEL].to_list() == [1.0, None, 0.0, 0.0, None]
    text = summarize_log(log).format()
    assert "pairwise (A/B) log" in text and "votes:                3 (60.0% of pairs)" in text
    assert "votes for a:          3 (100.0% of votes)" in text and "positive feedback" not in text
    with pytest.raises(InputError, match=r"row 2, column 'feedback'.*use a, b"):
        read_pairs(pl.DataFrame({"prompt": ["q", "q"], "response_a": ["x", "y"], "response_b": ["u", "v"],
                                 "feedback": ["a", "maybe"]}), source="f.csv")


def test_a_trl_preference_file_reads_with_every_row_voted_and_the_chosen_response_winning(tmp_path):
    n = 200
    path = tmp_path / "prefs.jsonl"
    pl.DataFrame({"prompt": [f"p{i}" for i in range(n)], "chosen": [f"good {i}" for i in range(n)],
                  "rejected": [f"bad {i}" for i in range(n)]}).write_ndjson(path)
    log = read_log(path)
    assert log[schema.OBSERVED].sum() == n
    winner = np.where(log[schema.FEEDBACK].to_numpy() == 1, log["response_a"].to_numpy(), log["response_b"].to_numpy())
    assert all(w.startswith("good") for w in winner)
    share = log[schema.FEEDBACK].mean()
    assert 0.4 < share < 0.6  # a seeded per-row order, not chosen always in a
    assert read_log(path)[schema.FEEDBACK].to_list() == log[schema.FEEDBACK].to_list()  # the same file, the same reading


def _numpy_terms(method: str, d: np.ndarray, r: np.ndarray, o: np.ndarray, p: np.ndarray, q: np.ndarray,
                 rho01: float, rho10: float) -> np.ndarray:
    """Reference per-pair terms with the squared-error base loss on s = sigma(z_a - z_b)."""
    s = 1 / (1 + np.exp(-d))
    l1, l0 = (1 - s) ** 2, s ** 2
    den = 1 - rho01 - rho10
    sur = np.where(r == 1, ((1 - rho10) * l1 - rho01 * l0) / den, ((1 - rho01) * l0 - rho10 * l1) / den)
    plain = np.where(r == 1, l1, l0)
    e = q * l1 + (1 - q) * l0
    return {"naive": o * plain, "ips": o / p * plain, "denoise": o * sur, "causalrm-ips": o / p * sur,
            "causalrm-dr": e + o / p * (sur - e)}[method]


@pytest.mark.parametrize("method", ["naive", "ips", "denoise", "causalrm-ips", "causalrm-dr"])
def test_each_pairwise_form_matches_a_numpy_reference_on_the_pair_model(method):
    rng = np.random.default_rng(3)
    n, d = 40, 5
    Xa, Xb = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    r = (rng.random(n) < 0.5).astype(np.float32)
    o = (rng.random(n) < 0.6).astype(np.float32)
    p = rng.uniform(0.2, 1.0, n).astype(np.float32)
    q = rng.uniform(0, 1, n).astype(np.float32)
    torch.manual_seed(0)
    backbone = MLPBackbone(d, hidden=(4,))
    log = pl.DataFrame({"prompt": ["p"] * n, "response_a": ["x"] * n, "response_b": ["y"] * n,
                        "response_id": [f"i{i}" for i in range(n)]})
    feats = featurize_pairs(backbone, log, pair_features(Xa, Xb))
    z = PairModel(backbone)(**feats.batch(torch.arange(n), "cpu"))
    inputs = losses.LossInputs(feedback=r, observed=o, propensity=p, pseudo_label=q)
    got = losses.loss_terms(method, z, inputs, rho01=0.1, rho10=0.3).detach().numpy()
    with torch.no_grad():
        d_ref = (backbone(x=torch.as_tensor(Xa)) - backbone(x=torch.as_tensor(Xb))).numpy()
    np.testing.assert_allclose(got, _numpy_terms(method, d_ref, r, o, p, q, 0.1, 0.3), rtol=1e-5, atol=1e-6)
    # the same kernel with explicit pair indices over the stacked responses
    stacked = torch.cat([backbone(x=torch.as_tensor(Xa)), backbone(x=torch.as_tensor(Xb))])
    pairs = np.stack([np.arange(n), n + np.arange(n)], axis=1)
    via_index = losses.pairwise_terms(method, stacked, pairs, inputs, rho01=0.1, rho10=0.3).detach().numpy()
    np.testing.assert_allclose(got, via_index, rtol=1e-5, atol=1e-6)
    assert methods.get(method).pairwise


def _rated(n_prompts: int = 150, per_prompt: int = 6, d: int = 8, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_prompts * per_prompt
    X = rng.normal(size=(n, d)).astype(np.float32)
    rating = X @ rng.normal(size=d)
    return pl.DataFrame({"prompt": [f"p{i // per_prompt}" for i in range(n)], "response": [f"r{i}" for i in range(n)],
                         "rating": rating}), X


def test_simulated_pairs_stay_in_their_prompt_and_split_and_flip_at_the_given_rates():
    rated, X = _rated(n_prompts=1500, per_prompt=4)
    log, info = simulate_pairs(rated, rho01=0.1, rho10=0.3, vote_rate=0.4, selection=1.0, seed=1)
    ia, ib = log[INDEX_A].to_numpy(), log[INDEX_B].to_numpy()
    assert np.all(rated["prompt"].to_numpy()[ia] == rated["prompt"].to_numpy()[ib])
    assert len(set(ia) | set(ib)) == 2 * log.height  # disjoint pairs
    scores = rated["rating"].to_numpy()
    np.testing.assert_array_equal(log[schema.TRUE_LABEL].to_numpy(), (scores[ia] > scores[ib]).astype(np.int8))
    test = log.filter(pl.col(schema.SPLIT) == schema.TEST)
    assert test[schema.OBSERVED].min() == 1 and (test[schema.FEEDBACK] == test[schema.TRUE_LABEL]).all()
    fit = log.filter(pl.col(schema.SPLIT) != schema.TEST)
    assert abs(fit[schema.OBSERVED].mean() - 0.4) < 0.03
    s = position_summary(fit)
    n1, n0 = s["n_a_better"], s["n_b_better"]
    assert abs(s["rho01"] - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n1) and abs(s["rho10"] - 0.3) < 4 * np.sqrt(0.21 / n0)
    # votes likelier on clear differences
    gap = np.abs(fit["true_score_a"].to_numpy() - fit["true_score_b"].to_numpy())
    voted = fit[schema.OBSERVED].to_numpy() == 1
    assert gap[voted].mean() > gap[~voted].mean()


def test_a_fit_on_an_ab_log_scores_single_responses_and_ranks_test_pairs_like_a_reference_bt():
    from sklearn.linear_model import LogisticRegression

    rated, X = _rated(n_prompts=300)
    log, _ = simulate_pairs(rated, rho01=0.1, rho10=0.3, vote_rate=0.6, selection=1.0, seed=0)
    ia, ib = log[INDEX_A].to_numpy(), log[INDEX_B].to_numpy()
    XP = pair_features(X[ia], X[ib])
    np.testing.assert_array_equal(split_features(XP)[1], X[ib])
    cfg = FitConfig(hidden=(), lr=5e-3, max_epochs=60, patience=60, seed=0, flip_method="fixed", rho01=0.1, rho10=0.3)
    results = fit_methods(log, XP, cfg, ["naive", "causalrm-ips"])
    split = log[schema.SPLIT].to_numpy()
    test = split == schema.TEST
    truth = log[schema.TRUE_LABEL].to_numpy()[test] == 1
    # the reference: maximum-likelihood linear Bradley-Terry (logistic regression on x_a - x_b) on the train votes
    voted = (split == schema.TRAIN) & (log[schema.OBSERVED].to_numpy() == 1)
    diff = X[ia] - X[ib]
    bt = LogisticRegression(fit_intercept=False, C=1e4).fit(diff[voted], log[schema.FEEDBACK].to_numpy()[voted])
    reference = np.mean((diff[test] @ bt.coef_[0] > 0) == truth)
    for result in results.values():
        a_side, b_side = sides(log)
        z = result.score(a_side, X[ia])  # single responses: the pointwise reward model
        assert z.shape == (log.height,)
        d = result.score(log, XP)  # a pair log: z_a - z_b
        np.testing.assert_allclose(d, z - result.score(b_side, X[ib]), atol=1e-5)
        assert np.mean((d[test] > 0) == truth) >= reference - 0.05
    with pytest.raises(InputError, match="no pairwise form"):
        fit_methods(log, XP, cfg, ["dr-jl"])


def test_cli_simulates_a_pairwise_log_and_validate_names_it(tmp_path, capsys):
    from causalrm.cli.main import main

    out = tmp_path / "ab.parquet"
    assert main(["simulate", "--pairwise", "--dataset", "helpsteer2", "--seed", "0", "--out", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pairwise (A/B) log" in printed and "first-shown response (a)" in printed
    assert main(["validate", str(out), "--feedback-kind", "explicit"]) == 2
    assert "error: " in capsys.readouterr().err


def test_prompt_selection_acts_on_the_prompt_groups_even_when_the_prompts_are_empty():
    rated, _ = _rated(n_prompts=600, per_prompt=8)
    rated = rated.with_columns(pl.col("prompt").alias("pair_id"), pl.lit("").alias("prompt"))  # WildBench's shape

    def spread(prompt_selection: float) -> float:
        log, _ = simulate_pairs(rated, vote_rate=0.3, selection=0.0, prompt_selection=prompt_selection, seed=0)
        fit = log.filter(pl.col(schema.SPLIT) != schema.TEST)
        return float(fit.group_by("pair_id").agg(pl.col(schema.OBSERVED).mean())[schema.OBSERVED].std())

    assert spread(2.0) > 1.25 * spread(0.0)  # 0.34 against 0.24 (binomial alone); before the fix, equal
