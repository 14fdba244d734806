"""causalrm.CausalRM: the scikit-learn estimator contract (clone, fit returns self, fitted attributes), score_texts
and save -> load_reward_model with the same scores; several methods on shared nuisances (causalrm.workflows.orchestrate)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_tiny_models import single_thread, tiny_log
from sklearn.base import clone

import causalrm
from causalrm.errors import InputError

FAST = dict(hidden=(16,), max_epochs=3, patience=None, batch_size=8, eval_batch_size=16, device="cpu",
            propensity_folds=2, propensity_model="logistic", flip_bootstrap=20, force_noise_correction=True,
            lr=1e-2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def data():
    from causalrm.embeddings.embedder import Embedder

    log = tiny_log(48, seed=3)
    X = Embedder(progress=False, cache=False, device="cpu").embed(log["prompt"].to_list(), log["response"].to_list())
    return log, X


def test_parameters_are_the_fit_config_and_clone_works():
    from causalrm.config import FitConfig

    est = causalrm.CausalRM(method="ips", max_epochs=5, seed=2)
    params = est.get_params()
    assert params["method"] == "ips" and params["max_epochs"] == 5 and params["seed"] == 2
    assert set(params) == {f for f in FitConfig.__dataclass_fields__}
    assert params["lr"] == FitConfig.lr and params["backbone_options"] is None
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(lr=0.01) is est and est.lr == 0.01
    assert "method='ips'" in repr(est)
    with pytest.raises(TypeError):
        causalrm.CausalRM(epochs=3)
    with pytest.raises(InputError, match="unknown method"):
        causalrm.CausalRM(method="nope").fit(tiny_log(8))


def test_fit_returns_self_scores_and_saves(data, tmp_path):
    log, X = data
    est = causalrm.CausalRM(method="causalrm-ips", rho01=0.2, rho10=0.1, **FAST)
    assert est.fit(log, X=X) is est
    for name in ("config_", "method_", "backbone_", "history_", "nuisances_", "split_", "learned_", "seconds_"):
        assert hasattr(est, name), name
    assert est.method_ == "causalrm-ips" and est.nuisances_.rho01 is not None
    assert 1 <= est.history_.best_epoch <= 3
    z_log = est.score_log(log, X)
    assert z_log.shape == (log.height,) and np.isfinite(z_log).all()
    prompts, responses = log["prompt"].to_list()[:5], log["response"].to_list()[:5]
    z = est.score_texts(prompts, responses)
    np.testing.assert_allclose(z, z_log[:5], rtol=1e-5, atol=1e-5)  # same embedder, same head
    run = est.save(tmp_path / "run")
    loaded = causalrm.load_reward_model(run, device="cpu")
    np.testing.assert_array_equal(loaded.score(prompts, responses), z)
    # clone gives an unfitted estimator with the same parameters, which refits to the same model
    twin = clone(est)
    assert not hasattr(twin, "result_")
    np.testing.assert_array_equal(twin.fit(log, X=X).score_texts(prompts, responses), z)


def test_an_unfitted_estimator_refuses_to_score():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        causalrm.CausalRM().score_texts(["p"], ["r"])


def test_fit_methods_shares_the_nuisances_and_reuses_fits_for_auto(data):
    from causalrm.config import FitConfig
    from causalrm.workflows.orchestrate import fit_log, fit_methods

    log, X = data
    events = []
    config = FitConfig(**{**FAST, "force_noise_correction": False})
    results = fit_methods(log, X, config, ["auto", "naive"], on_event=lambda k, m, p: events.append((k, m)))
    assert list(results) == ["naive", "auto"]  # auto last
    assert results["auto"].candidates["naive"] is results["naive"]  # reused, not refitted
    assert results["naive"].nuisances is results["auto"].candidates["naive"].nuisances
    kinds = [k for k, _ in events]
    assert kinds.count("start") == 2 and kinds.count("done") == 2 and "epoch" in kinds and kinds[0] == "stage"
    alone = fit_log(log, X, config.replace(method="naive"))
    np.testing.assert_array_equal(alone.score(log, X), results["naive"].score(log, X))


def test_inspected_nuisances_are_completed_not_refitted(data):
    from causalrm.config import FitConfig
    from causalrm.nuisances.fit import fit_nuisances
    from causalrm.workflows.orchestrate import shared_nuisances

    log, X = data
    config = FitConfig(**FAST, rho01=0.2, rho10=0.1)
    propensity = fit_nuisances(log, X, config, methods=["ips"])
    both = shared_nuisances(log, X, config, ["causalrm-ips"], nuisances=propensity)
    assert both.propensity_clipped is propensity.propensity_clipped and both.rho01 is not None
    assert shared_nuisances(log, X, config, ["ips"], nuisances=propensity) is propensity
