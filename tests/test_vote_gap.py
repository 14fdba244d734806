"""The vote model on the reward gap (``fcorr-gap``): the profile against scipy, the kernel against a NumPy reference
and its envelope gradient, the slope test, A/B logs only, and ``auto``'s step 7."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from scipy.optimize import minimize

from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.pairwise import pair_features
from causalrm.errors import InputError
from causalrm.estimators import losses, methods
from causalrm.estimators.vote_gap import gap_slope_test, profile_vote_model
from causalrm.simulation.pairwise import INDEX_A, INDEX_B, simulate_pairs
from causalrm.workflows.orchestrate import fit_methods
from causalrm.workflows.selection import pick


def _votes(n: int, c: float, beta: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gap = np.abs(rng.normal(size=n))
    return gap, (rng.random(n) < 1 / (1 + np.exp(-(c + beta * gap)))).astype(np.float64)


def _scipy_profile(gap: np.ndarray, o: np.ndarray) -> np.ndarray:
    def nll(th: np.ndarray) -> float:
        eta = th[0] + th[1] * gap
        return float(np.sum(np.logaddexp(0, eta) - o * eta))

    return minimize(nll, np.zeros(2), bounds=[(None, None), (0, None)], method="L-BFGS-B",
                    options={"ftol": 1e-15, "gtol": 1e-10}).x


@pytest.mark.parametrize("beta", [1.5, -1.0])
def test_the_profile_is_the_constrained_maximum_likelihood_of_the_vote_model(beta):
    gap, o = _votes(4000, -1.0, beta)
    c_hat, beta_hat = profile_vote_model(torch.as_tensor(gap), torch.as_tensor(o))
    np.testing.assert_allclose([c_hat, beta_hat], _scipy_profile(gap, o), atol=1e-4)
    assert (beta_hat > 1.0) if beta > 0 else beta_hat == 0.0  # votes on close calls read as no gap selection
    with pytest.raises(InputError, match="voted and unvoted"):
        profile_vote_model(torch.as_tensor(gap), torch.ones(gap.size))


def test_the_slope_test_finds_gap_selection_and_not_its_absence():
    found = gap_slope_test(*_votes(3000, -1.0, 1.0, seed=1))
    assert found["z"] > 5 and found["beta"] > 0
    rng = np.random.default_rng(2)
    none = gap_slope_test(np.abs(rng.normal(size=3000)), (rng.random(3000) < 0.3).astype(float))
    assert abs(none["z"]) < 3
    assert gap_slope_test(np.ones(10), np.r_[np.ones(5), np.zeros(5)])["z"] == 0.0  # a constant gap: no evidence


def test_the_kernel_is_the_joint_likelihood_and_its_gradient_the_profile_ones():
    rng = np.random.default_rng(4)
    n, rho01, rho10 = 300, 0.1, 0.3
    d = rng.normal(scale=2.0, size=n)
    o = (rng.random(n) < 1 / (1 + np.exp(1.0 - np.abs(d)))).astype(np.float64)
    r = np.where(o == 1, (rng.random(n) < 0.6), 0).astype(np.float64)
    z = torch.tensor(d, dtype=torch.float64, requires_grad=True)
    inputs = losses.LossInputs(feedback=torch.as_tensor(r), observed=torch.as_tensor(o))
    terms = losses.loss_terms("fcorr-gap", z, inputs, rho01=rho01, rho10=rho10, base="bce")
    c, beta = _scipy_profile(np.abs(d), o)
    s = 1 / (1 + np.exp(-d))
    pi = (1 - rho01) * s + rho10 * (1 - s)
    eta = c + beta * np.abs(d)
    reference = (-o * (r * np.log(pi) + (1 - r) * np.log(1 - pi)) + np.logaddexp(0, eta) - o * eta)
    np.testing.assert_allclose(terms.detach().numpy(), reference, atol=1e-5)
    # the envelope theorem: the gradient in d is that of the joint likelihood at the profiled (c, beta)
    terms.sum().backward()
    dpi = (1 - rho01 - rho10) * s * (1 - s)
    grad = -o * (r / pi - (1 - r) / (1 - pi)) * dpi + (1 / (1 + np.exp(-eta)) - o) * beta * np.sign(d)
    np.testing.assert_allclose(z.grad.numpy(), grad, atol=1e-4)
    # every pair voted: no vote model, fcorr's terms
    all_voted = losses.LossInputs(feedback=torch.as_tensor(r), observed=torch.ones(n, dtype=torch.float64))
    np.testing.assert_allclose(losses.loss_terms("fcorr-gap", z, all_voted, rho01=rho01, rho10=rho10,
                                                 base="bce").detach().numpy(),
                               losses.loss_terms("fcorr", z, all_voted, rho01=rho01, rho10=rho10,
                                                 base="bce").detach().numpy(), atol=1e-12)


def test_the_vote_model_is_an_ab_log_estimator_only():
    spec = methods.get("fcorr-gap")
    assert spec.pairwise and not spec.pointwise and spec.models_votes and spec.head == "ranking"
    assert methods.applies("fcorr-gap", pairs=True) and not methods.applies("fcorr-gap", pairs=False)
    assert "fcorr-gap" in methods.auto_candidates()


def _pick_record(gap_candidate: dict) -> dict:
    base = {"fitted": True, "learned": True, "beats_baseline": False, "central": 0.10, "ranks_below_baseline": False}
    return {"naive": {**base, "val_auroc": 0.80},
            "causalrm-ips": {**base, "beats_baseline": True, "central": 0.09, "val_auroc": 0.79},
            "fcorr-gap": {**base, "central": 0.15, **gap_candidate}}


def test_auto_keeps_the_vote_model_only_where_the_votes_follow_the_gap_and_it_ranks_best():
    assert pick(_pick_record({"val_auroc": 0.83, "votes_on_gap": True}), "central") == "fcorr-gap"
    assert pick(_pick_record({"val_auroc": 0.83, "votes_on_gap": False}), "central") == "causalrm-ips"
    assert pick(_pick_record({"val_auroc": 0.78, "votes_on_gap": True}), "central") == "causalrm-ips"
    assert pick(_pick_record({"val_auroc": 0.83, "votes_on_gap": True, "ranks_below_baseline": True}),
                "central") == "causalrm-ips"
    assert pick(_pick_record({"val_auroc": 0.83, "votes_on_gap": True, "learned": False}),  # its own gate failed
                "central") == "causalrm-ips"


def _rated(n_prompts: int = 250, per_prompt: int = 8, d: int = 6, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_prompts * per_prompt
    X = rng.normal(size=(n, d)).astype(np.float32)
    return pl.DataFrame({"prompt": [f"p{i // per_prompt}" for i in range(n)], "response": [f"r{i}" for i in range(n)],
                         "rating": X @ rng.normal(size=d)}), X


@pytest.mark.parametrize("selection, prompt_selection, expected", [(2.0, 0.0, True), (0.0, 2.0, False)])
def test_auto_on_an_ab_log_records_whether_the_votes_follow_the_gap(selection, prompt_selection, expected):
    rated, X = _rated()
    log, _ = simulate_pairs(rated, rho01=0.1, rho10=0.3, vote_rate=0.3, selection=selection,
                            prompt_selection=prompt_selection, seed=0)
    XP = pair_features(X[log[INDEX_A].to_numpy()], X[log[INDEX_B].to_numpy()])
    cfg = FitConfig(seed=0, flip_method="fixed", rho01=0.1, rho10=0.3, max_epochs=40, patience=10,
                    auto_candidates=("fcorr-gap",))
    auto = fit_methods(log, XP, cfg, ["auto"])["auto"]
    choice = auto.choice
    assert choice["vote_gap"]["passed"] is expected
    assert choice["candidates"]["fcorr-gap"]["votes_on_gap"] is expected
    # the vote model's own learning gate: do the val pairs' votes (never trained on) follow its gaps?
    gate = auto.candidates["fcorr-gap"].learned
    assert gate.passed is expected and "vote_gap" in gate.evidence
    assert ("likelier on its larger reward gaps" if expected else "did not learn what it models") in gate.verdict
    if choice["method"] == "fcorr-gap":
        assert "likelier on larger reward gaps" in choice["reason"]


def test_a_pointwise_log_neither_fits_nor_offers_the_vote_model():
    rng = np.random.default_rng(0)
    n = 400
    X = rng.normal(size=(n, 4)).astype(np.float32)
    observed = (rng.random(n) < 0.5).astype(np.int8)
    log = pl.DataFrame({schema.PROMPT: [f"p{i}" for i in range(n)], schema.RESPONSE: [f"r{i}" for i in range(n)],
                        schema.FEEDBACK: np.where(observed == 1, (X[:, 0] > 0).astype(np.int8), None).tolist(),
                        schema.OBSERVED: observed})
    cfg = FitConfig(seed=0, max_epochs=5, patience=5, flip_method="fixed", rho01=0.1, rho10=0.1)
    with pytest.raises(InputError, match="fcorr-gap.*no pointwise form"):
        fit_methods(log, X, cfg.replace(method="fcorr-gap"), ["fcorr-gap"])
    auto = fit_methods(log, X, cfg.replace(auto_candidates=("denoise", "fcorr-gap")), ["auto"])["auto"]
    assert set(auto.choice["candidates"]) == {"naive", "denoise"} and "vote_gap" not in auto.choice


def test_fit_prints_the_ranking_heads_decays_and_their_val_auroc(tmp_path, capsys):
    from causalrm.cli.main import main

    log = tmp_path / "uf.parquet"
    assert main(["simulate", "--pairwise", "--dataset", "ultrafeedback", "--seed", "0", "--out", str(log)]) == 0
    assert main(["fit", str(log), "--method", "fcorr-gap", "--rho01", "0.1", "--rho10", "0.3", "--epochs", "20",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.strip().startswith("head ("))
    assert "highest IPS-weighted AUROC" in head and head.count("weight decay") == 5 and head.count("*") == 1
