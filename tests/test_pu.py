"""Positive-unlabelled learning (causalrm.estimators.pu): uPU is the surrogate (``denoise`` / ``causalrm-ips`` with rho10 = 0,
rho01 = 1 - c), nnPU (``nnpu`` / ``causalrm-nnpu``) is Kiryo et al.'s non-negative reduction; both against NumPy
references written from the papers' formulas."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from causalrm.errors import InputError
from causalrm.estimators import methods
from causalrm.estimators.base_losses import BASES
from causalrm.estimators.losses import LossInputs, estimate, loss_components, loss_terms, reduce_terms
from causalrm.estimators.pu import nonnegative_risk

pytestmark = pytest.mark.usefixtures("one_torch_thread")

C = 0.6  # label frequency P(event | r* = 1)


# ------------------------------------------------------------------------------------------- NumPy references
def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_losses(z, base):
    """(l(z, 1), l(z, 0)) and their derivatives in z."""
    s = np_sigmoid(z)
    if base == "mse":
        return (1 - s) ** 2, s**2, -2 * (1 - s) ** 2 * s, 2 * s**2 * (1 - s)
    return np.log1p(np.exp(-z)), np.log1p(np.exp(z)), s - 1, s


def np_upu(z, event, w, c, base):
    """du Plessis et al. (2015): pi E_P[l(z, 1)] + E_U[l(z, 0)] - pi E_P[l(z, 0)], censoring setting.

    P: the events, U: all rows; w weights a row (1 / p on observed rows, 0 elsewhere; 1 unweighted), each empirical
    expectation is a w-weighted one and pi = P(event) / c its weighted class prior.
    """
    l1, l0, _, _ = np_losses(z, base)
    n = len(z)
    pos = event == 1
    pi = w[pos].sum() / (n * c)
    e_p = lambda loss: np.sum(w[pos] * loss[pos]) / w[pos].sum()  # noqa: E731
    return pi * e_p(l1) + np.sum(w * l0) / n - pi * e_p(l0)


def np_kiryo_step(risks, beta, gamma):
    """Algorithm 1 of Kiryo et al. (2017) on the parts (R1, R0): value, and d(loss used for the step) / d(R1, R0)."""
    risks = np.asarray(risks, dtype=float)
    value = np.maximum(risks, 0).sum()
    below = risks < -beta
    if below.any():  # defy: step on -gamma * (the parts below -beta), the others' gradient dropped
        return value, np.where(below, -gamma, 0.0)
    return value, np.ones(2)


def np_nnpu(z, r, w, rho01, rho10, base, beta=0.0, gamma=1.0):
    """The non-negative risk of the surrogate's class parts: (value, gradient in z, (R1, R0))."""
    d = 1 - rho01 - rho10
    a = np.where(r == 1, (1 - rho10) / d, -rho10 / d)  # l~(z, r) = a l(z, 1) + b l(z, 0) (Natarajan et al. 2013)
    b = np.where(r == 1, -rho01 / d, (1 - rho01) / d)
    l1, l0, dl1, dl0 = np_losses(z, base)
    n = len(z)
    risks = np.array([np.sum(w * a * l1), np.sum(w * b * l0)]) / n
    value, dstep = np_kiryo_step(risks, beta, gamma)
    grad = (dstep[0] * w * a * dl1 + dstep[1] * w * b * dl0) / n
    return value, grad, risks


def np_kiryo_nnpu(z, event, c, base):
    """Kiryo et al.'s nnPU in its own terms (beta = 0, gamma = 1), unweighted: value and gradient in z."""
    l1, l0, dl1, dl0 = np_losses(z, base)
    n, pos = len(z), event == 1
    pi = pos.sum() / (n * c)
    risk_p = pi * l1[pos].mean()
    risk_n = l0.mean() - pi * l0[pos].mean()
    grad_p = np.where(pos, pi * dl1 / pos.sum(), 0.0)
    grad_n = dl0 / n - np.where(pos, pi * dl0 / pos.sum(), 0.0)
    if risk_n < 0:
        return risk_p, -grad_n
    return risk_p + risk_n, grad_p + grad_n


# ------------------------------------------------------------------------------------------- batches
def implicit_batch(n=300, seed=0, regime="fit"):
    """An implicit log: every row observed, an event on about 30% of them; logits random ("fit") or memorising the
    events ("overfit": +6 on events, -6 elsewhere, which drives the class parts below zero)."""
    rng = np.random.default_rng(seed)
    event = (rng.random(n) < 0.3).astype(float)
    z = rng.normal(0, 1, n) if regime == "fit" else 6.0 * (2 * event - 1) + rng.normal(0, 0.3, n)
    o = np.ones(n)
    p = rng.uniform(0.2, 1.0, n)
    return z, event, o, p


def inputs_of(event, o, p):
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return LossInputs(feedback=t(np.where(o == 1, event, np.nan)), observed=t(o), propensity=t(p))


def weights(method, o, p):
    return o / p if methods.get(method).weighted else o


# ------------------------------------------------------------------------------------------- uPU is the surrogate
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("method", ["denoise", "causalrm-ips"])
def test_the_surrogate_with_rho10_zero_is_the_unbiased_pu_risk(method, base):
    """denoise's terms with rho10 = 0, rho01 = 1 - c, averaged, are uPU; causalrm-ips's are uPU weighted by 1 / p
    (here with unobserved rows too: they carry no weight)."""
    z, event, o, p = implicit_batch(seed=1)
    o = np.where(np.random.default_rng(2).random(len(z)) < 0.7, 1.0, 0.0)
    event = event * o
    zt = torch.tensor(z, dtype=torch.float64)
    terms = loss_terms(method, zt, inputs_of(event, o, p), rho01=1 - C, rho10=0.0, base=base)
    ref = np_upu(z, event, weights(method, o, p), C, base)
    assert float(terms.mean()) == pytest.approx(ref, rel=1e-10)
    nn_method = "causalrm-nnpu" if methods.get(method).weighted else "nnpu"
    unguarded = estimate(nn_method, zt, inputs_of(event, o, p), rho01=1 - C, rho10=0.0, base=base, nonneg=False)
    assert float(unguarded) == pytest.approx(ref, rel=1e-10)  # nnPU without its guard is uPU


# ------------------------------------------------------------------------------------------- nnPU
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("method", ["nnpu", "causalrm-nnpu"])
@pytest.mark.parametrize("rates", [(1 - C, 0.0), (0.2, 0.1)])
@pytest.mark.parametrize("regime", ["fit", "overfit"])
def test_nnpu_value_and_gradient_match_numpy(regime, rates, method, base):
    z, event, o, p = implicit_batch(seed=3, regime=regime)
    rho01, rho10 = rates
    value_ref, grad_ref, risks = np_nnpu(z, event, weights(method, o, p), rho01, rho10, base)
    assert (risks.min() < 0) == (regime == "overfit")  # both regimes are the ones meant
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    value = estimate(method, zt, inputs_of(event, o, p), rho01=rho01, rho10=rho10, base=base)  # guarded: a trait
    value.backward()
    assert float(value.detach()) == pytest.approx(value_ref, rel=1e-10)
    np.testing.assert_allclose(zt.grad.numpy(), grad_ref, rtol=1e-9, atol=1e-15)
    if regime == "overfit":  # a step down the gradient pushes the negative parts back up towards zero
        _, _, after = np_nnpu(z - 0.5 * grad_ref / np.abs(grad_ref).max(), event, weights(method, o, p), rho01,
                              rho10, base)
        assert np.all(after[risks < 0] > risks[risks < 0])


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("regime", ["fit", "overfit"])
def test_nnpu_with_rho10_zero_is_kiryo_s_nnpu(regime, base):
    z, event, o, p = implicit_batch(seed=4, regime=regime)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    value = estimate("nnpu", zt, inputs_of(event, o, p), rho01=1 - C, rho10=0.0, base=base)
    value.backward()
    value_ref, grad_ref = np_kiryo_nnpu(z, event, C, base)
    assert float(value.detach()) == pytest.approx(value_ref, rel=1e-10)
    np.testing.assert_allclose(zt.grad.numpy(), grad_ref, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("beta", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("gamma", [1.0, 0.3])
def test_nonnegative_risk_is_algorithm_1(beta, gamma):
    rng = np.random.default_rng(5)
    for risks in [rng.normal(0, 0.3, 2) for _ in range(20)] + [np.array([0.2, -0.05]), np.array([-0.6, -0.01])]:
        r = torch.tensor(risks, dtype=torch.float64, requires_grad=True)
        value = nonnegative_risk(r, beta=beta, gamma=gamma)
        value.backward()
        value_ref, grad_ref = np_kiryo_step(risks, beta, gamma)
        assert float(value.detach()) == pytest.approx(value_ref, abs=1e-15)
        np.testing.assert_array_equal(r.grad.numpy(), grad_ref)


def test_nonnegative_risk_refuses_bad_parameters():
    r = torch.zeros(2)
    with pytest.raises(InputError, match="beta"):
        nonnegative_risk(r, beta=-0.1)
    with pytest.raises(InputError, match="gamma"):
        nonnegative_risk(r, gamma=0.0)
    with pytest.raises(InputError, match="trailing axis of size 2"):
        nonnegative_risk(torch.zeros(3))


def test_nnpu_reduces_over_the_last_axis_like_a_batch_at_a_time():
    batches = [implicit_batch(40, seed=s, regime=g) for s, g in enumerate(["fit", "overfit", "fit"])]
    z = torch.tensor(np.stack([b[0] for b in batches]))
    inputs = inputs_of(*(np.stack([b[k] for b in batches]) for k in (1, 2, 3)))
    from causalrm.estimators.losses import reduce_components

    comps = loss_components("causalrm-nnpu", z, inputs, rho01=0.2, rho10=0.1)
    rows = reduce_components("causalrm-nnpu", comps, inputs, dim=-1)
    for i, (zi, event, o, p) in enumerate(batches):
        one = estimate("causalrm-nnpu", torch.tensor(zi), inputs_of(event, o, p), rho01=0.2, rho10=0.1)
        assert float(rows[i]) == pytest.approx(float(one), rel=1e-12)
    plain = reduce_terms("causalrm-nnpu", comps.sum(-1), inputs, dim=-1)
    assert bool((rows >= plain - 1e-12).all())  # clamping only ever raises the estimate


def test_free_logits_trained_with_nnpu_do_not_overfit_the_events():
    """Per-row logits trained with Adam on an implicit log (bce): uPU runs off below zero, nnPU stays a risk."""
    z0, event, o, p = implicit_batch(400, seed=6)
    inputs = inputs_of(event, o, p)
    out = {}
    for nonneg in (True, False):
        z = torch.zeros(len(z0), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.2)
        for _ in range(150):
            opt.zero_grad()
            loss = estimate("nnpu", z, inputs, rho01=1 - C, rho10=0.0, base="bce", nonneg=nonneg)
            loss.backward()
            opt.step()
        out[nonneg] = (float(loss.detach()), float(z.detach().abs().max()))
    assert out[False][0] < -1.0 and out[False][1] > 20.0
    assert out[True][0] >= 0.0 and out[True][1] < out[False][1] / 2


# ------------------------------------------------------------------------------------------- end to end
def test_fit_with_method_nnpu_trains_and_scores(tmp_path):
    from helpers_logs import write_simulated_log

    from causalrm.cli.main import main
    from causalrm.devices import cpu_threads

    files = write_simulated_log(tmp_path, 240)
    with cpu_threads(1):
        code = main(["fit", str(files / "log.parquet"), "--method", "nnpu", "--out", str(tmp_path / "run"),
                     "--embeddings", str(files / "X.npy"), "--epochs", "4", "--patience", "2", "--hidden", "8",
                     "--device", "cpu", "--quiet", "--rho01", "0.2", "--rho10", "0.1"])
    assert code == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["method"] == "nnpu"
    reward = pl.read_parquet(tmp_path / "run" / "scored.parquet")["reward"].to_numpy()
    assert len(reward) == 240 and np.isfinite(reward).all() and reward.std() > 0
