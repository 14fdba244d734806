"""Metrics, bootstrap intervals and ranking comparison against scikit-learn / SciPy references."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import kendalltau, pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score, roc_auc_score

from causalrm.errors import InputError
from causalrm.evaluation.metrics import bootstrap_ci, evaluate_scores, metrics, metrics_ci, sigmoid
from causalrm.evaluation.ranking import compare_rankings


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    prob = np.clip(0.3 * y + 0.35 + 0.2 * rng.standard_normal(n), 0.01, 0.99)
    return y, prob


def test_metrics_match_sklearn_and_scipy():
    y, p = _data()
    m = metrics(y, p)
    assert m["mse"] == pytest.approx(mean_squared_error(y, p))
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(r2_score(y, p))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pearson"] == pytest.approx(pearsonr(y, p).statistic)


def test_metrics_degenerate_and_bad_input():
    m = metrics(np.ones(5), np.linspace(0.1, 0.9, 5))
    assert np.isnan(m["auroc"]) and np.isnan(m["r2"])
    with pytest.raises(InputError):
        metrics([0, 1], [0.5])
    with pytest.raises(InputError):
        metrics([0, np.nan], [0.5, 0.5])


def test_bootstrap_ci_contains_point_estimate_and_is_seeded():
    y, p = _data()
    point = r2_score(y, p)
    lo, hi = bootstrap_ci(r2_score, y, p, n_boot=300, seed=3)
    assert lo < point < hi
    assert (lo, hi) == bootstrap_ci(r2_score, y, p, n_boot=300, seed=3)
    assert (lo, hi) != bootstrap_ci(r2_score, y, p, n_boot=300, seed=4)
    cis = metrics_ci(y, p, n_boot=200, seed=0)
    full = metrics(y, p)
    for name in ("mse", "mae", "r2", "auroc", "pearson"):
        assert cis[name][0] <= full[name] <= cis[name][1]


def test_evaluate_scores_uses_test_split_true_label_or_gold():
    y, p = _data(40)
    z = np.log(p) - np.log1p(-p)
    split = ["train"] * 20 + ["test"] * 20
    log = pl.DataFrame({"split": split, "true_label": pl.Series(y.astype(np.int8))})
    ev = evaluate_scores(log, z)
    assert ev["label"] == "true_label" and ev["n"] == 20
    assert ev["metrics"]["r2"] == pytest.approx(r2_score(y[20:], p[20:]))
    gold = np.where(np.arange(40) % 2 == 0, y, np.nan)
    log2 = pl.DataFrame({"gold_label": gold})
    roles = np.array(["train", "val"] * 20, dtype=object)
    ev2 = evaluate_scores(log2, z, split=roles)
    assert ev2["label"] == "gold_label" and ev2["n"] == 20
    assert ev2["metrics"]["mse"] == pytest.approx(mean_squared_error(y[::2], sigmoid(z[::2])))
    assert evaluate_scores(pl.DataFrame({"x": np.zeros(40)}), z) is None


def _scored(scores, ids, pairs, gold=None):
    d = {"response_id": ids, "pair_id": pairs, "prompt": [f"prompt {p}" for p in pairs],
         "response": [f"response {i}" for i in ids], "reward": scores}
    if gold is not None:
        d["gold_label"] = gold
    return pl.DataFrame(d)


def test_compare_rankings_matches_scipy():
    rng = np.random.default_rng(1)
    n = 60
    ids = [f"r{i}" for i in range(n)]
    pairs = [f"p{i // 3}" for i in range(n)]
    a = rng.standard_normal(n)
    b = a + 0.7 * rng.standard_normal(n)
    gold = (a + rng.standard_normal(n) > 0).astype(float)
    sa = _scored(a, ids, pairs, gold)
    # B in another row order: matching is by response_id
    perm = rng.permutation(n)
    sb = _scored(b[perm], [ids[i] for i in perm], [pairs[i] for i in perm])
    cmp = compare_rankings(sa, sb, top_k=5)
    assert cmp.n == n
    assert cmp.kendall == pytest.approx(kendalltau(a, b).statistic)
    assert cmp.spearman == pytest.approx(spearmanr(a, b).statistic)
    assert cmp.gold_column == "gold_label"
    assert cmp.gold_kendall["A"] == pytest.approx(kendalltau(a, gold).statistic)
    assert cmp.gold_spearman["B"] == pytest.approx(spearmanr(b, gold).statistic)
    taus = [kendalltau(a[i:i + 3], b[i:i + 3]).statistic for i in range(0, n, 3)]
    assert cmp.n_prompts == 20
    assert cmp.prompt_kendall_mean == pytest.approx(np.mean(taus))
    top1 = np.mean([np.argmax(a[i:i + 3]) == np.argmax(b[i:i + 3]) for i in range(0, n, 3)])
    assert cmp.prompt_top1_agreement == pytest.approx(top1)
    top_a, top_b = set(np.argsort(-a)[:5]), set(np.argsort(-b)[:5])
    assert cmp.top_k_overlap == pytest.approx(len(top_a & top_b) / 5)
    ra = np.argsort(np.argsort(-a)) + 1
    rb = np.argsort(np.argsort(-b)) + 1
    assert abs(cmp.shifts[0]["shift"]) == np.max(np.abs(rb - ra))
    assert all(abs(s["shift"]) >= abs(t["shift"]) for s, t in zip(cmp.shifts, cmp.shifts[1:]))
    assert cmp.shifts[0]["response"].startswith("response ")
    d = cmp.to_dict()
    assert d["kendall"] == pytest.approx(cmp.kendall) and isinstance(d["shifts"], list)
    text = cmp.format()
    assert "Kendall" in text and "top-5" in text


def test_compare_rankings_identical_and_errors():
    ids = [f"r{i}" for i in range(10)]
    s = _scored(np.arange(10.0), ids, ["p"] * 10)
    cmp = compare_rankings(s, s, top_k=3)
    assert cmp.kendall == pytest.approx(1.0) and cmp.top_k_overlap == 1.0 and cmp.shifts == []
    other = _scored(np.arange(10.0), [f"x{i}" for i in range(10)], ["p"] * 10)
    with pytest.raises(InputError):
        compare_rankings(s, other)
    with pytest.raises(InputError):
        compare_rankings(s, s.drop("reward"))


def test_unbiasedness_check_causalrm_matches_ideal_loss_naive_does_not():
    """The paper's RQ3 on a large simulated log: with the true propensity and flip rates, CausalRM-IPS/DR estimate
    the ideal loss of fixed predictions (|delta| small); naive is biased by selection and noise."""
    from causalrm.evaluation.unbiasedness import unbiasedness_check
    from causalrm.simulation.simulate import simulate

    rng = np.random.default_rng(0)
    n = 20000
    score = rng.standard_normal(n)
    rated = pl.DataFrame({"prompt": [""] * n, "response": [f"a{i}" for i in range(n)],
                          "response_id": [f"r{i}" for i in range(n)], "pair_id": [f"p{i}" for i in range(n)],
                          "rating": score})
    log = simulate(rated, alpha=0.3, rho01=0.2, rho10=0.1, observation_rate=0.3, seed=0)
    preds = {"ONE": np.full(n, 0.9), "SKEW": 1 / (1 + np.exp(-2 * score)), "ROTATE": 1 / (1 + np.exp(2 * score))}
    rows = unbiasedness_check(log, preds, rho01=0.2, rho10=0.1, clip=1e-3)
    by = {(r["prediction"], r["method"]): r for r in rows}
    for name in preds:
        ideal = by[(name, "naive")]["ideal"]
        assert abs(by[(name, "causalrm-ips")]["delta"]) < 0.05 * ideal + 0.01
        assert abs(by[(name, "causalrm-dr")]["delta"]) < 0.05 * ideal + 0.01
        assert abs(by[(name, "naive")]["delta"]) > 2 * abs(by[(name, "causalrm-ips")]["delta"])


def test_stratified_bootstrap_resamples_within_strata():
    from causalrm.evaluation.metrics import bootstrap_indices

    strata = np.array(["a"] * 3 + ["b"] * 7)
    idx = bootstrap_indices(500, 10, np.random.default_rng(0), strata)
    assert idx.shape == (500, 10)
    assert np.all(np.isin(idx[:, :3], [0, 1, 2])) and np.all(idx[:, 3:] >= 3)  # each stratum keeps its size
    plain = bootstrap_indices(5, 10, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    assert np.array_equal(plain, np.stack([rng.integers(0, 10, 10) for _ in range(5)]))
    # a statistic constant within strata has no bootstrap spread when resampled within them
    x = np.where(strata == "a", 1.0, 0.0)
    assert bootstrap_ci(np.mean, x, n_boot=200, strata=strata) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci(np.mean, x, n_boot=200)[1] > 0.4


# ------------------------------------------------------------------------------------------ few labels
def test_wilson_interval_matches_scipy_and_keeps_a_positive_width():
    from scipy.stats import binomtest

    from causalrm.evaluation.metrics import wilson_interval

    for k, n in ((0, 1), (0, 5), (3, 10), (5, 5), (40, 300)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k / n, n)
        assert (lo, hi) == pytest.approx((ref.low, ref.high)) and hi > lo


def test_single_labelled_rows_of_a_stratum_are_collapsed_so_intervals_cannot_shrink_to_a_point():
    from causalrm.evaluation.metrics import resampling_strata

    pi = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 1.0])
    labels = resampling_strata(np.array(["up:1", "up:2", "down:1", "down:1", "none:1", "none:2"]), pi)
    assert labels[0] == labels[1] == labels[4] != labels[2] == labels[3] and labels[5].startswith("certain:")
    y, x = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0]), np.arange(6.0)
    assert np.ptp(bootstrap_ci(np.mean, x, n_boot=200, strata=labels)) > 0


def test_few_labels_give_no_verdict_no_number_and_no_zero_width_interval():
    from causalrm.evaluation.verdicts import MIN_DECISION_LABELS, labelled_verdict, paired_difference, verdict

    rng = np.random.default_rng(0)
    n = 5
    gold = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    log = pl.DataFrame({"gold_label": gold, "inclusion_probability": [0.01, 0.02, 0.05, 0.1, 0.2],
                        "audit_stratum": ["up:1", "up:2", "down:1", "none:1", "none:2"]})
    a, b = np.full(n, 0.5), np.clip(gold * 0.6 + 0.2 + rng.normal(0, 0.05, n), 0.01, 0.99)
    out = labelled_verdict(log, a, b, baseline="naive", debiased="m", n_boot=200)
    assert out["outcome"] is None and out["verdict"].startswith("not enough labels yet: 5 labelled, about 100 needed")
    assert not any(word in out["verdict"] for word in ("better", "worse", "level", "nan", "["))
    assert out["ci95"] is None or out["ci95"][1] > out["ci95"][0]
    one = pl.DataFrame({"gold_label": [1.0, 1.0, 0.0]})  # two or three labels: R² of one class is NaN
    assert "nan" not in labelled_verdict(one, np.full(3, 0.5), np.full(3, 0.6), baseline="n", debiased="m")["verdict"]
    # a degenerate bootstrap (every row its own stratum) never reads as an interval
    d = paired_difference(gold, a, b, strata=np.array([f"s{i}" for i in range(n)], dtype=object))
    assert d["ci95"] is None
    # from MIN_DECISION_LABELS rows on, the verdict speaks
    y = (rng.random(MIN_DECISION_LABELS) < 0.5).astype(float)
    good = np.clip(0.5 + 0.4 * (y - 0.5) + rng.normal(0, 0.05, y.size), 0.01, 0.99)
    d = paired_difference(y, np.full(y.size, 0.5), good, n_boot=200)
    assert " is better than naive" in verdict(d, baseline="naive", debiased="m", labels="gold")
    d = paired_difference(y[:-1], np.full(y.size - 1, 0.5), good[:-1], n_boot=200)
    assert "not enough labels yet" in verdict(d, baseline="naive", debiased="m", labels="gold")
