"""The vote model on the reward gap: on an A/B log, who votes is evidence of the reward too.

Notation as in ``causalrm.estimators.losses``, per pair: ``d = z_a - z_b`` the Bradley-Terry logit, ``o`` = 1 if the
pair got a vote, ``r`` = 1 for a vote for a, ``rho01``, ``rho10`` the flip rates, ``pi(d) = (1 - rho01) s +
rho10 (1 - s)`` with ``s = sigma(d)`` (the forward-corrected probability of a vote for a), ``l`` the base loss.
``g = |d|``: the reward gap the model sees; ``(c, beta)``: the vote model's intercept and slope.

People vote mostly when the difference is clear. The vote model says so with the reward model's own parameters:

    P(o = 1 | pair) = sigma(c + beta |d|),    beta >= 0,

and the estimate is the negative joint log-likelihood of the log, who voted and how (a selection model, Heckman
1979; a shared-parameter model, Wu & Carroll 1988; Little & Rubin 2019, ch. 15), per pair

    o l(pi(d), r) + l(sigma(c + beta |d|), o)          (the first term: ``fcorr``, Patrini et al. 2017).

The IPS estimators treat P(o = 1 | pair) as a nuisance and spend it on weights; here it shares the reward's
parameters, so the ~4 unvoted pairs to every voted one say which pairs are close calls. ``(c, beta)`` are profiled
out: on each batch they maximise the vote model's likelihood at the current gaps (:func:`profile_vote_model`,
Newton steps without gradient), so the gradient in ``d`` is the profile likelihood's (the envelope theorem).
A batch in which every pair was voted, or none, has no vote model: the term is ``fcorr``'s alone.

What it assumes, and what it cannot do. Votes must depend on the pair through the reward gap, more votes on larger
gaps; ``beta < 0`` (votes on close calls) is read as no gap selection (``beta = 0``). Where selection runs through
something else, the prompt above all, the term pulls apart the gaps of pairs that happened to be voted and ranks
worse than plain ``fcorr``: docs/RESULTS.md, "A/B preference logs", measures both. ``auto`` therefore admits the
estimator only where the votes of the val pairs are likelier on the gaps of a model trained without this term
(:func:`votes_follow_gaps`, ``causalrm.workflows.selection.vote_gap_evidence``). The class split of
``loss_components`` puts half of the vote model's term in each column (it scores no class).

References
----------
* J. J. Heckman. Sample Selection Bias as a Specification Error. Econometrica 47 (1979).
* M. C. Wu, R. J. Carroll. Estimation and Comparison of Changes in the Presence of Informative Right Censoring by
  Modeling the Censoring Process. Biometrics 44 (1988).
* R. J. A. Little, D. B. Rubin. Statistical Analysis with Missing Data, 3rd ed., ch. 15. Wiley 2019.
* G. Patrini et al. Making Deep Neural Networks Robust to Label Noise: a Loss Correction Approach. CVPR 2017.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from causalrm.errors import InputError
from causalrm.estimators.base_losses import _forward_pos_neg, base_loss

#: Newton steps of the profile (the likelihood is concave in (c, beta): a handful converge)
NEWTON_STEPS = 25
#: the one-sided 95% Wald threshold of :func:`gap_slope_test`: votes likelier on larger gaps on evidence
VOTE_GAP_Z = 1.645


def _newton(A: torch.Tensor, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression of ``o`` on the columns of ``A`` (Newton from 0): the coefficients and the Hessian of the
    negative log-likelihood there."""
    theta = torch.zeros(A.shape[1], dtype=A.dtype, device=A.device)
    ridge = 1e-9 * torch.eye(A.shape[1], dtype=A.dtype, device=A.device)
    for _ in range(NEWTON_STEPS):
        p = torch.sigmoid(A @ theta)
        hessian = (A * (p * (1.0 - p)).unsqueeze(1)).T @ A + ridge
        theta = theta + torch.linalg.solve(hessian, A.T @ (o - p))
    return theta, hessian


def _as_pair(gap: Any, observed: Any) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.as_tensor(gap).detach().to(torch.float64).reshape(-1)
    o = torch.as_tensor(observed).detach().to(torch.float64).reshape(-1)
    if g.shape != o.shape:
        raise InputError(f"gap has {g.numel()} values but observed {o.numel()}")
    return g, o


def _fit_on_standardized(g: torch.Tensor, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float] | None:
    """The unconstrained logistic fit of ``o`` on ``(g - mean g) / sd(g)``: ``(theta, hessian, mean, sd)`` of
    :func:`_newton`, None when ``g`` is constant."""
    sd = float(g.std()) if g.numel() > 1 else 0.0
    if not sd > 0.0:
        return None
    mean = float(g.mean())
    theta, hessian = _newton(torch.stack((torch.ones_like(g), (g - mean) / sd), dim=1), o)
    return theta, hessian, mean, sd


def profile_vote_model(gap: torch.Tensor, observed: torch.Tensor) -> tuple[float, float]:
    """``(c, beta)`` maximising ``sum o log sigma(c + beta g) + (1 - o) log(1 - sigma(c + beta g))`` with
    ``beta >= 0``: the unconstrained maximum (Newton; the likelihood is concave) when its slope is non-negative,
    else the boundary's ``(logit(mean o), 0)``. No gradient. ``observed`` must hold both values."""
    g, o = _as_pair(gap, observed)
    rate = float(o.mean())
    if not 0.0 < rate < 1.0:
        raise InputError("the vote model needs voted and unvoted pairs in the batch")
    fit = _fit_on_standardized(g, o)
    beta = -1.0 if fit is None else float(fit[0][1]) / fit[3]
    if beta < 0.0:  # a constant gap, or votes likelier on close calls: no gap selection
        return math.log(rate / (1.0 - rate)), 0.0
    theta, _, mean, _ = fit
    return float(theta[0]) - beta * mean, beta


def gap_slope_test(gap: Any, observed: Any) -> dict[str, float]:
    """Are votes likelier on larger gaps? The unconstrained logistic fit of ``o`` on ``g / sd(g)`` (Newton) and its
    Wald statistic: ``{"beta", "se", "z"}`` (``beta`` per sd of the gap; ``z = beta / se``, one-sided evidence of
    ``beta > 0`` above 1.645). Zeros when ``o`` or ``g`` is constant."""
    g, o = _as_pair(gap, observed)
    fit = _fit_on_standardized(g, o) if 0.0 < float(o.mean()) < 1.0 else None
    if fit is None:
        return {"beta": 0.0, "se": float("inf"), "z": 0.0}
    theta, hessian, _, _ = fit
    se = float(torch.linalg.inv(hessian)[1, 1].sqrt())
    return {"beta": float(theta[1]), "se": se, "z": float(theta[1]) / se}


def votes_follow_gaps(logits: Any, observed: Any) -> dict[str, Any] | None:
    """The evidence ``auto`` (step 7) and the vote model's learning gate read: :func:`gap_slope_test` of the pairs'
    votes on the gaps ``|logits|`` of some model, with ``passed`` = z above ``VOTE_GAP_Z``; None when the pairs are
    all voted, or none (nothing to test)."""
    o = torch.as_tensor(observed).detach().to(torch.float64).reshape(-1)
    if not 0.0 < float(o.mean()) < 1.0:
        return None
    test = gap_slope_test(torch.as_tensor(logits).detach().to(torch.float64).abs(), o)
    return {**test, "passed": bool(test["z"] > VOTE_GAP_Z)}


def vote_terms(logits: torch.Tensor, observed: torch.Tensor, base: str) -> torch.Tensor:
    """Per-pair ``l(sigma(c + beta |d|), o)`` at the profiled ``(c, beta)`` (zeros when ``o`` is constant)."""
    if bool(observed.min() == observed.max()):
        return torch.zeros_like(logits)
    gap = logits.abs()
    c, beta = profile_vote_model(gap, observed)
    return base_loss(c + beta * gap, observed, base)


def components(logits: torch.Tensor, t: dict[str, Any], base: str) -> torch.Tensor:
    """``loss_components`` of ``fcorr-gap`` (module docstring): ``(o r l(pi, 1) + v / 2, o (1 - r) l(pi, 0) + v / 2)``
    with ``v`` the vote model's term."""
    o, r = t["observed"], t["feedback"]
    l1, l0 = _forward_pos_neg(logits, t["rho01"], t["rho10"], base)
    v = vote_terms(logits, o, base) / 2.0
    return torch.stack((o * r * l1 + v, o * (1.0 - r) * l0 + v), dim=-1)


__all__ = ["NEWTON_STEPS", "VOTE_GAP_Z", "components", "gap_slope_test", "profile_vote_model", "vote_terms",
           "votes_follow_gaps"]
