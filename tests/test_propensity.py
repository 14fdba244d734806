"""causalrm.nuisances.propensity: cross-fitting, recovery, diagnostics against NumPy/scikit-learn, input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from causalrm.errors import InputError
from causalrm.nuisances.propensity import FEEDBACK_ONLY_MESSAGE, PropensityModel, clip_report

FAST = dict(hidden=(32, 16), max_epochs=60, patience=5, batch_size=512, lr=1e-2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_log(n=3000, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    beta = np.array([1.5, -1.0] + [0.0] * (d - 2))
    p = 1 / (1 + np.exp(-(X @ beta - 1.0)))
    o = (rng.random(n) < p).astype(float)
    return X, o, p


def test_logistic_cross_fitting_matches_manual_sklearn():
    X, o, _ = make_log(800)
    pm = PropensityModel(model="logistic", n_folds=4, random_state=3).fit(X, o)
    ref = np.empty(len(o))
    for tr, te in StratifiedKFold(4, shuffle=True, random_state=3).split(X, o):
        est = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X[tr], o[tr])
        ref[te] = est.predict_proba(X[te])[:, 1]
    np.testing.assert_allclose(pm.propensity_, np.clip(ref, 1e-6, 1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pm.weights_, np.maximum(pm.propensity_, 0.1))


@pytest.mark.parametrize("model", ["logistic", "mlp"])
def test_recovers_true_propensity(model):
    X, o, p = make_log(3000)
    pm = PropensityModel(model=model, n_folds=3, **FAST).fit(X, o)
    assert np.mean(np.abs(pm.propensity_ - p)) < (0.03 if model == "logistic" else 0.07)
    new = make_log(200, seed=9)
    assert np.mean(np.abs(pm.predict_proba(new[0]) - new[2])) < 0.06


def test_out_of_fold_is_honest_on_pure_noise():
    """Fold models that memorise give in-sample AUC >> 0.5 on noise; cross-fitted p_hat stays near chance."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 80)).astype(np.float32)
    o = (rng.random(400) < 0.3).astype(float)
    pm = PropensityModel(model="logistic", n_folds=4, C=1e4).fit(X, o)
    in_sample = np.mean([roc_auc_score(o, pm._predict_one(m, X)) for m in pm.models_])
    assert in_sample > 0.65  # the fold models did overfit ...
    assert abs(pm.diagnostics_.auc - 0.5) < 0.1  # ... but no row is scored by a model that saw it


def test_diagnostics_against_numpy():
    X, o, _ = make_log(1500, seed=2)
    pm = PropensityModel(model="logistic", n_folds=3, clip=0.15).fit(X, o)
    p = pm.propensity_
    d = pm.diagnostics_
    w = 1 / np.maximum(p[o == 1], 0.15)
    assert d.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert d.ess_fraction == pytest.approx(d.ess / o.sum())
    assert d.auc == pytest.approx(roc_auc_score(o, p))
    assert d.brier == pytest.approx(np.mean((p - o) ** 2))
    assert d.fraction_clipped == pytest.approx(np.mean(p < 0.15))
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(np.mean(bins == b) * abs(p[bins == b].mean() - o[bins == b].mean()) for b in np.unique(bins))
    assert d.ece == pytest.approx(ece)
    assert sum(d.hist_observed) == o.sum() and sum(d.hist_unobserved) == (1 - o).sum()
    assert sum(d.calibration_count) == len(o)
    json.dumps(d.to_dict())


def test_logged_propensity_is_used_directly_even_feedback_only():
    X, _, p = make_log(300)
    o = np.ones(300)
    pm = PropensityModel(clip=0.2).fit(X, o, logged_propensity=p)
    np.testing.assert_array_equal(pm.propensity_, p)
    np.testing.assert_array_equal(pm.weights_, np.maximum(p, 0.2))
    assert pm.diagnostics_.auc is None and pm.diagnostics_.source == "logged"
    with pytest.raises(InputError, match="logged propensities"):
        pm.predict_proba(X)


def test_feedback_only_log_is_refused():
    X, _, _ = make_log(100)
    with pytest.raises(InputError) as err:
        PropensityModel().fit(X, np.ones(100))
    assert str(err.value) == FEEDBACK_ONLY_MESSAGE


def test_clip_report():
    p = np.array([0.05, 0.08, 0.1, 0.5, 1.0])
    o = np.array([1, 0, 1, 1, 0])
    rep = clip_report(p, 0.1, observed=o)
    assert rep["n_clipped"] == 2 and rep["fraction_clipped"] == pytest.approx(0.4)
    assert rep["n_observed_clipped"] == 1 and rep["max_weight"] == pytest.approx(10.0)
    w = 1 / np.maximum(p[o == 1], 0.1)
    assert rep["ess"] == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert "2 of 5" in rep["message"]
    json.dumps(rep)


def test_sklearn_conventions():
    pm = PropensityModel(model="logistic", clip=0.05)
    assert clone(pm).get_params()["clip"] == 0.05
    assert not hasattr(pm, "propensity_")
    with pytest.raises(NotFittedError):
        pm.predict_proba(np.zeros((2, 5)))
    X, o, _ = make_log(300)
    assert pm.fit(X, o) is pm


X0, O0, P0 = make_log(200)


@pytest.mark.parametrize(
    "kwargs,X,o,logged,match",
    [
        ({"model": "forest"}, X0, O0, None, "unknown"),
        ({"n_folds": 1}, X0, O0, None, "n_folds"),
        ({"clip": 0.0}, X0, O0, None, "clip"),
        ({"clip": 1.5}, X0, O0, None, "clip"),
        ({}, X0, np.where(np.arange(200) == 7, 2, O0), None, "row 7"),
        ({}, X0, np.zeros(200), None, "no row has feedback"),
        ({}, np.where(np.arange(200)[:, None] == 4, np.nan, X0), O0, None, "row 4"),
        ({}, X0[:150], O0, None, "150 rows"),
        ({}, X0[:, 0], O0, None, "2-D"),
        ({}, X0, O0, np.where(np.arange(200) == 3, 0.0, P0), "row 3"),
        ({}, X0, O0, np.where(np.arange(200) == 5, 1.2, P0), "row 5"),
        ({}, X0, O0, P0[:10], "10 rows"),
        ({"n_folds": 5}, X0, np.r_[np.ones(3), np.zeros(197)], None, "n_folds"),
    ],
)
def test_invalid_inputs(kwargs, X, o, logged, match):
    with pytest.raises(InputError, match=match):
        PropensityModel(model=kwargs.pop("model", "logistic"), **kwargs).fit(X, o, logged_propensity=logged)
