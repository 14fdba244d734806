"""scikit-learn's contract of causalrm.CausalRM on a simulated impression log (polars): clone, predict (one reward per
row), score (minus the method's debiased estimate, or the audited one with gold labels: checked against NumPy
formulas), GridSearchCV with GroupKFold over prompts and cross_val_score (each fold's score checked against a fit
on that fold's rows)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from helpers_tiny_models import single_thread
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score

from causalrm import CausalRM
from causalrm.errors import InputError

FAST = dict(hidden=(16,), patience=None, batch_size=16, eval_batch_size=64, device="cpu", propensity_folds=2,
            propensity_model="logistic", lr=1e-2, seed=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def sim() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """80 rows of UltraFeedback (40 prompts) simulated with selection and flips (split train / val / test), their
    embeddings (the shipped MiniLM vectors) and the prompt of each row (the CV groups)."""
    from causalrm.data.datasets import load_rated
    from causalrm.embeddings.embedder import Embedder, embed_log
    from causalrm.simulation.simulate import simulate

    rated = load_rated("ultrafeedback")
    prompts = rated["prompt"].unique(maintain_order=True)[:40]
    rated = rated.filter(pl.col("prompt").is_in(prompts.implode()))
    log = simulate(rated, alpha=0.5, rho01=0.2, rho10=0.1, observation_rate=0.4, seed=0)
    X = embed_log(log, Embedder(progress=False, device="cpu"))
    return log, X, log["prompt"].to_numpy()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def test_clone_round_trip_and_predict(sim):
    log, X, _ = sim
    est = CausalRM(method="naive", max_epochs=3, **FAST).fit(log, X=X)
    twin = clone(est)
    assert not hasattr(twin, "result_") and twin.get_params() == est.get_params()
    z = est.predict(log, X)
    assert z.shape == (log.height,) and np.isfinite(z).all()
    np.testing.assert_array_equal(twin.fit(log, X=X).predict(log, X), z)  # the clone refits to the same model
    np.testing.assert_array_equal(est.predict(log), z)  # X None: the shipped vectors of the same texts
    np.testing.assert_allclose(est.score_texts(log["prompt"].to_list()[:4], log["response"].to_list()[:4]), z[:4],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="takes no y"):
        est.score(log, np.zeros(log.height))


def test_score_is_minus_the_debiased_estimate_and_ranks_models(sim):
    """IPS with the MSE base: score = -(1/N) sum o/p (sigma(z) - r)^2 over the non-test rows, p the cross-fitted
    propensity floored at clip; the better model on that estimate scores higher; test rows are not read."""
    from causalrm.nuisances.propensity import PropensityModel

    log, X, _ = sim
    rows = np.flatnonzero(log["split"].to_numpy() != "test")
    o = log["observed"].to_numpy()[rows].astype(np.float64)
    r = np.nan_to_num(log["feedback"].cast(pl.Float64).to_numpy()[rows])
    params = dict(method="ips", base_loss="mse", **FAST)
    p = PropensityModel(model="logistic", n_folds=2, clip=CausalRM(**params).clip, random_state=0).fit(
        X[rows], o.astype(int)).weights_

    def reference(est: CausalRM) -> float:
        z = est.predict(log, X)[rows]
        return float(np.mean(o / p * (_sigmoid(z) - r) ** 2))

    short = CausalRM(**{**params, "lr": 1e-4}, max_epochs=1).fit(log, X=X)
    trained = CausalRM(**params, max_epochs=30).fit(log, X=X)
    ref = {"short": reference(short), "trained": reference(trained)}
    assert abs(ref["short"] - ref["trained"]) > 1e-3  # the two models differ on the estimate
    scores = {"short": short.score(log, X=X), "trained": trained.score(log, X=X)}
    for name in ref:
        assert scores[name] == pytest.approx(-ref[name], rel=1e-5)
    assert (scores["trained"] > scores["short"]) == (ref["trained"] < ref["short"])
    assert trained.score(log.filter(pl.col("split") != "test"), X=X[rows]) == pytest.approx(scores["trained"],
                                                                                           rel=1e-6)


def test_score_with_gold_labels_is_the_audited_estimate(sim):
    """Audited rows: score = -sum w (sigma(z) - gold)^2 / sum w, w = 1 / inclusion_probability."""
    log, X, _ = sim
    est = CausalRM(method="naive", max_epochs=3, **FAST).fit(log, X=X)
    n = log.height
    labelled = (np.arange(n) % 3 == 0) & (log["split"].to_numpy() != "test")
    pi = np.where(np.arange(n) % 2 == 0, 0.25, 0.5)
    gold = log["true_label"].to_numpy().astype(np.float64)
    audited = log.with_columns(
        pl.Series("gold_label", np.where(labelled, gold, np.nan)).fill_nan(None),
        pl.Series("inclusion_probability", np.where(labelled, pi, np.nan)).fill_nan(None))
    z = est.predict(log, X)
    w = 1.0 / pi[labelled]
    expected = -np.sum(w * (_sigmoid(z[labelled]) - gold[labelled]) ** 2) / np.sum(w)
    assert est.score(audited, X=X) == pytest.approx(expected, rel=1e-6)


def test_grid_search_and_cross_val_score_over_prompt_groups(sim):
    log, X, groups = sim
    cv = GroupKFold(n_splits=2)
    search = GridSearchCV(CausalRM(method="naive", max_epochs=5, **FAST), {"max_epochs": [2, 5]}, cv=cv)
    search.fit(log, groups=groups)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["max_epochs"] in (2, 5)
    z = search.best_estimator_.predict(log)
    assert z.shape == (log.height,) and np.isfinite(z).all()

    est = CausalRM(method="ips", max_epochs=3, **FAST)
    scores = cross_val_score(est, log, groups=groups, cv=cv)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    for (train, test), got in zip(cv.split(log, groups=groups), scores):
        assert not set(groups[train]) & set(groups[test])
        fold = clone(est).fit(log[train.tolist()], X=X[train])
        assert got == pytest.approx(fold.score(log[test.tolist()], X=X[test]), rel=1e-5)
