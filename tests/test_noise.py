"""causalrm.nuisances.flip_rates: anchor estimates on synthetic logs with known flip rates, gold, pseudo-labels, input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from causalrm.errors import InputError
from causalrm.nuisances.flip_rates import SWEEP_QUANTILES, FlipRateEstimator
from causalrm.nuisances.pseudo_labels import fit_pseudo_labels

TOL = 0.06  # stated tolerance of the anchor-quantile estimates at 3,000 observed rows with anchor points


def make_log(n=6000, rho01=0.2, rho10=0.1, slope=6.0, d=5, seed=0):
    """x ~ N(0, I); eta(x) = sigmoid(slope x_1) (steep: rows with eta ~ 0 and ~ 1 exist); o ~ Bernoulli(0.5)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    eta = 1 / (1 + np.exp(-slope * X[:, 0]))
    rstar = (rng.random(n) < eta).astype(float)
    flip = np.where(rstar == 1, rng.random(n) < rho01, rng.random(n) < rho10)
    r = np.where(flip, 1 - rstar, rstar)
    o = (rng.random(n) < 0.5).astype(float)
    return X, np.where(o == 1, r, np.nan), o, rstar, eta


@pytest.mark.parametrize("rho01,rho10", [(0.2, 0.1), (0.1, 0.2), (0.3, 0.05)])
def test_anchor_quantile_recovers_known_rates(rho01, rho10):
    X, r, o, _, _ = make_log(rho01=rho01, rho10=rho10, seed=int(rho01 * 100))
    fe = FlipRateEstimator(n_bootstrap=30).fit(X, r, o)
    assert abs(fe.rho01_ - rho01) < TOL and abs(fe.rho10_ - rho10) < TOL
    # the bootstrap interval is an interval around the estimate
    for name, est in (("rho01", fe.rho01_), ("rho10", fe.rho10_)):
        lo, hi = fe.ci_[name]
        assert lo <= hi and lo - 0.02 <= est <= hi + 0.02
    # the quantile sweep: reported, both rates non-increasing in q (exact: quantiles are monotone)
    sweep = fe.diagnostics_["sweep"]
    assert sweep["q"] == list(SWEEP_QUANTILES)
    assert np.all(np.diff(sweep["rho01"]) <= 1e-12) and np.all(np.diff(sweep["rho10"]) <= 1e-12)
    assert fe.proxy_scores_.shape == (len(o),)
    json.dumps(fe.diagnostics_)


def test_quantile_and_minmax_match_the_proxy_scores():
    X, r, o, _, _ = make_log(3000, seed=5)
    fq = FlipRateEstimator(quantile=0.95, n_bootstrap=0).fit(X, r, o)
    s = fq.proxy_scores_
    assert fq.rho10_ == pytest.approx(np.quantile(s, 0.05)) and fq.rho01_ == pytest.approx(1 - np.quantile(s, 0.95))
    fm = FlipRateEstimator(method="anchor-minmax", n_bootstrap=0).fit(X, r, o)
    assert fm.rho10_ == pytest.approx(fm.proxy_scores_.min()) and fm.rho01_ == pytest.approx(1 - fm.proxy_scores_.max())


def test_uncalibrated_proxy_collapses_the_estimates():
    """Pitfall 2: logistic probabilities run to 0 and 1 in the tails, the default calibration does not."""
    X, r, o, _, _ = make_log(seed=7)
    raw = FlipRateEstimator(calibration="none", n_bootstrap=0).fit(X, r, o)
    good = FlipRateEstimator(n_bootstrap=0).fit(X, r, o)
    assert raw.rho01_ < 0.12 and abs(good.rho01_ - 0.2) < TOL


def test_gold_matches_empirical_flip_rates():
    X, r, o, rstar, _ = make_log(4000, rho01=0.25, rho10=0.15, seed=3)
    rng = np.random.default_rng(0)
    gold = np.where(rng.random(len(o)) < 0.3, rstar, np.nan)
    soft = np.where(np.isfinite(gold), np.where(gold == 1, 0.9, 0.2), np.nan)  # soft gold: thresholded at 0.5
    soft[np.flatnonzero(np.isfinite(soft))[:5]] = 0.5  # exactly 0.5: dropped
    fe = FlipRateEstimator(method="gold", n_bootstrap=50).fit(None, r, o, gold_label=soft)
    use = (o == 1) & np.isfinite(soft) & (soft != 0.5)
    g, rr = soft[use] > 0.5, r[use]
    assert fe.rho01_ == pytest.approx(np.mean(rr[g] == 0)) and fe.rho10_ == pytest.approx(np.mean(rr[~g] == 1))
    assert fe.diagnostics_["n_gold"] == use.sum()
    assert abs(fe.rho01_ - 0.25) < 0.05 and abs(fe.rho10_ - 0.15) < 0.05
    assert fe.ci_["rho01"][0] < fe.rho01_ < fe.ci_["rho01"][1]


def test_gold_intervals_are_wilson_at_the_effective_size_with_positive_width():
    from scipy.stats import binomtest

    o = np.ones(12)
    gold = np.array([1.0] * 9 + [0.0] * 3)
    r = np.array([0.0, 0.0] + [1.0] * 7 + [0.0] * 3)  # 2 of 9 positives flipped, none of the 3 negatives
    fe = FlipRateEstimator(method="gold").fit(None, r, o, gold_label=gold)
    for key, (k, n) in {"rho01": (2, 9), "rho10": (0, 3)}.items():
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert fe.ci_[key] == pytest.approx((ref.low, ref.high))
    assert fe.ci_["rho10"][1] > 0.3  # no flip among 3 negatives is no evidence of rho10 = 0
    pi = np.where(gold == 1, 0.5, 1.0)
    pi[0] = 0.1  # unequal weights: fewer effective rows, a wider interval around the weighted rate
    weighted = FlipRateEstimator(method="gold").fit(None, r, o, gold_label=gold, inclusion_probability=pi)
    w = 1 / pi[:9]
    n_eff = w.sum() ** 2 / np.sum(w**2)
    assert weighted.diagnostics_["n_effective"]["rho01"] == pytest.approx(n_eff) and n_eff < 9
    assert np.ptp(weighted.ci_["rho01"]) > np.ptp(fe.ci_["rho01"])


def test_gold_rates_at_chance_ask_for_more_labels_not_for_gold_labels():
    o, gold = np.ones(4), np.array([1.0, 1.0, 0.0, 0.0])
    with pytest.raises(InputError) as err:
        FlipRateEstimator(method="gold").fit(None, np.array([0.0, 0.0, 1.0, 1.0]), o, gold_label=gold)
    assert "label more rows" in str(err.value) and "method='gold'" not in str(err.value)


def test_fixed_rates_warn_and_refuse():
    fe = FlipRateEstimator(method="fixed", rho01=0.2, rho10=0.1).fit(None, None, None)
    assert fe.rates() == (0.2, 0.1) and fe.ci_["rho01"] == (0.2, 0.2)
    with pytest.warns(UserWarning, match="0.8"):
        fe = FlipRateEstimator(method="fixed", rho01=0.5, rho10=0.4).fit(None, None, None)
    assert fe.diagnostics_["warnings"]
    with pytest.raises(InputError, match=">= 1"):
        FlipRateEstimator(method="fixed", rho01=0.6, rho10=0.4).fit(None, None, None)


def test_uninformative_features_are_flagged():
    """No anchors at all (pure-noise X): refused (sum >= 1) or warned as indistinguishable from chance, never silent."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    r = (rng.random(2000) < 0.4).astype(float)
    o = np.ones(2000)
    try:
        with pytest.warns(UserWarning, match="no better than chance"):
            fe = FlipRateEstimator(n_bootstrap=0).fit(X, r, o)
    except InputError as err:
        assert ">= 1" in str(err)
    else:
        assert fe.diagnostics_["proxy"]["oof_auc"] <= fe.diagnostics_["proxy_auc_chance_bound"]
        assert any("no better than chance" in w for w in fe.diagnostics_["warnings"])


def test_chance_auc_bound_matches_the_null_distribution_of_the_auc():
    """The bound is 0.5 + 2 standard errors of a random scorer's AUC: about 2.3% of random scorers exceed it."""
    from sklearn.metrics import roc_auc_score

    from causalrm.nuisances.flip_rates import chance_auc_bound

    rng = np.random.default_rng(1)
    y = np.r_[np.ones(300), np.zeros(100)]
    aucs = np.array([roc_auc_score(y, rng.random(400)) for _ in range(2000)])
    bound = chance_auc_bound(300, 100)
    assert bound == pytest.approx(0.5 + 2 * aucs.std(), abs=0.006)
    assert 0.01 < np.mean(aucs > bound) < 0.04


def test_anchors_come_from_every_row_not_only_the_observed_ones():
    """Selection on the label (observed rows ~98% positive): quantiles over the observed rows alone sit among positives
    and overstate rho10; over every row (the proxy applies to unobserved x too) they find the negatives' plateau."""
    from causalrm.nuisances.flip_rates import anchor_rates

    rng = np.random.default_rng(5)
    n, d, rho01, rho10 = 12000, 8, 0.2, 0.1
    X = rng.standard_normal((n, d))
    y = (X @ np.ones(d) / np.sqrt(d) > 0).astype(int)
    o = (rng.random(n) < np.where(y == 1, 0.5, 0.01)).astype(int)
    flip = np.where(y == 1, rng.random(n) < rho01, rng.random(n) < rho10)
    r = np.where(o == 1, np.where(flip, 1 - y, y), 0)
    fe = FlipRateEstimator(n_bootstrap=0).fit(X, r, o)
    assert fe.proxy_scores_.shape == (n,)
    _, rho10_observed_only = anchor_rates(fe.proxy_scores_[o == 1], 0.97)
    assert abs(fe.rho10_ - rho10) < 0.05 and abs(fe.rho01_ - rho01) < 0.05
    assert rho10_observed_only > fe.rho10_ + 0.03


def test_pseudo_labels_denoise_towards_eta():
    rho01, rho10 = 0.2, 0.1
    X, r, o, _, eta = make_log(4000, rho01=rho01, rho10=rho10, seed=11)
    q = fit_pseudo_labels(X, r, o, rho01=rho01, rho10=rho10)
    noisy = fit_pseudo_labels(X, r, o, rho01=0.0, rho10=0.0)  # the noisy-label proxy P(r = 1 | x)
    assert q.shape == (len(o),) and q.min() >= 0 and q.max() <= 1
    assert np.mean(np.abs(q - eta)) < 0.05
    assert np.mean(np.abs(q - eta)) < 0.5 * np.mean(np.abs(noisy - eta))
    np.testing.assert_allclose(np.clip((noisy - rho10) / (1 - rho01 - rho10), 0, 1), q, atol=1e-12)
    # importance-weighted variant runs and stays close
    p = np.full(len(o), 0.5)
    qw = fit_pseudo_labels(X, r, o, rho01=rho01, rho10=rho10, propensity=p)
    assert np.mean(np.abs(qw - eta)) < 0.05


def test_pseudo_labels_are_cross_fitted():
    """Changing one row's feedback leaves its own pseudo-label unchanged (its model never saw it)."""
    X, r, o, _, _ = make_log(1500, seed=2)
    q = fit_pseudo_labels(X, r, o, rho01=0.2, rho10=0.1)
    i = int(np.flatnonzero(o == 1)[0])
    r2 = r.copy()
    r2[i] = 1 - r2[i]
    q2 = fit_pseudo_labels(X, r2, o, rho01=0.2, rho10=0.1)
    assert q2[i] == q[i]
    assert not np.array_equal(q, q2)  # ... while rows of the other folds did see it


X0, R0, O0, _, _ = make_log(300, seed=1)


@pytest.mark.parametrize(
    "kwargs,X,r,o,gold,match",
    [
        ({"method": "bayes"}, X0, R0, O0, None, "unknown"),
        ({"quantile": 0.3}, X0, R0, O0, None, "quantile"),
        ({"calibration": "platt"}, X0, R0, O0, None, "calibration"),
        ({"n_folds": 1}, X0, R0, O0, None, "n_folds"),
        ({"method": "fixed"}, None, None, None, None, "needs both"),
        ({"method": "fixed", "rho01": -0.1, "rho10": 0.1}, None, None, None, None, r"\[0, 1\)"),
        ({"method": "gold"}, X0, R0, O0, None, "needs gold_label"),
        ({"method": "gold"}, X0, R0, O0, np.full(300, 1.0), "both classes"),
        ({"method": "gold"}, X0, R0, O0, np.full(300, 2.0), "row 0"),
        ({}, None, R0, O0, None, "needs X"),
        ({}, X0, np.where(O0 == 1, 3.0, np.nan), O0, None, "must be 0 or 1"),
        ({}, X0, R0, np.full(300, 2.0), None, "row 0"),
        ({}, X0[:100], R0, O0, None, "100 rows"),
        ({}, X0[:40], np.r_[np.ones(10), np.zeros(30)], np.r_[np.ones(10), np.zeros(30)], None, "too few"),
    ],
)
def test_invalid_inputs(kwargs, X, r, o, gold, match):
    with pytest.raises(InputError, match=match):
        FlipRateEstimator(n_bootstrap=0, **kwargs).fit(X, r, o, gold_label=gold)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"rho01": 0.7, "rho10": 0.3}, ">= 1"),
        ({"rho01": 0.2, "rho10": 0.1, "propensity": np.zeros(300)}, "propensity"),
    ],
)
def test_pseudo_label_invalid_inputs(kw, match):
    with pytest.raises(InputError, match=match):
        fit_pseudo_labels(X0, R0, O0, **kw)


def test_the_anchor_proxy_and_the_pseudo_labels_are_one_kernel():
    """DR's pseudo-labels from the flip-rate estimator's proxy equal a separate fit_pseudo_labels call (same rows,
    1/p weights and seed), so the pipeline fits the proxy once."""
    from causalrm.nuisances.pseudo_labels import clean_posterior

    X, r, o, _, _ = make_log(3000, seed=4)
    p = np.clip(np.random.default_rng(4).random(len(o)), 0.1, 1.0)
    est = FlipRateEstimator(n_bootstrap=0, random_state=3).fit(X, r, o, propensity=p)
    q = fit_pseudo_labels(X, r, o, rho01=est.rho01_, rho10=est.rho10_, propensity=p, random_state=3)
    np.testing.assert_allclose(clean_posterior(est.proxy_scores_, rho01=est.rho01_, rho10=est.rho10_), q)


def test_split_cross_fitted_proxy_never_reads_val_feedback():
    """The DR pseudo-labels' proxy (imputation_fit="train-only"): flipping every val row's feedback changes no score,
    and the train rows' scores are the within-train cross-fit."""
    from causalrm.nuisances.proxy import cross_fitted_proxy, split_cross_fitted_proxy

    rng = np.random.default_rng(3)
    n, d = 600, 5
    X = rng.standard_normal((n, d))
    obs = (rng.random(n) < 0.5).astype(np.int8)
    fb = np.where(obs == 1, (rng.random(n) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(float), 0.0)
    is_train = rng.random(n) < 0.75
    a, _ = split_cross_fitted_proxy(X, fb, obs, is_train, random_state=0)
    flipped = np.where(is_train | (obs == 0), fb, 1.0 - fb)
    b, _ = split_cross_fitted_proxy(X, flipped, obs, is_train, random_state=0)
    np.testing.assert_allclose(a, b)
    mu, sd = X[is_train].mean(0), X[is_train].std(0)
    ref, _, _ = cross_fitted_proxy((X[is_train] - mu) / sd, fb[is_train], obs[is_train], random_state=0)
    np.testing.assert_allclose(a[is_train], np.clip(ref, 0, 1))
    assert np.corrcoef(a[~is_train], X[~is_train, 0])[0, 1] > 0.5  # the val rows are scored by a useful proxy
