"""The doubly robust variants of the method registry: their kernels and the learned-imputation step.

Notation as in ``causalrm.estimators.losses`` (``z`` logit, ``o`` observed, ``r`` feedback, ``p`` the clipped propensity,
``w = o / p``, ``q`` a pseudo-label, ``l1 = l(z, 1)``, ``l0 = l(z, 0)``). Every DR variant scores the same two
per-row errors:

* the observed error ``e = a_r l1 + b_r l0``: the surrogate ``l~(z, r)`` of Natarajan et al. (2013) for the
  ``causalrm-`` forms (``a_r, b_r`` its coefficients, ``E[l~ | r*] = l(z, r*)``), the plain ``l(z, r)``
  (``a = r, b = 1 - r``) for the debias-only forms;
* the imputed error ``e^ = q l1 + (1 - q) l0 = l(z, q)`` (``base_losses.expected_loss``), ``q = P(r* = 1 | x)`` for the
  ``causalrm-`` forms and ``P(r = 1 | x)`` for the debias-only ones, cross-fitted within the train rows
  (``noise.split_cross_fitted_proxy``).

=================== ===================================================================== ===========================
method               estimate over the N rows of a batch                                   reference
=================== ===================================================================== ===========================
(causalrm-)dr-cf     (1/N) sum [e^ + w (e - e^)], stopped on the SNIPS estimate of l~      DR + cross-fitting
(causalrm-)dr-jl     same, q from an imputation model refitted each step on                Wang et al. ICML 2019
                     sum_O (e - e^)^2 / p
(causalrm-)mrdr      same, imputation step weighted (1 - p) / p^2                          Guo et al. SIGIR 2021
(causalrm-)tdr       (1/N) sum [e^* + w (e - e^*)],  e^* = e^ + eps (1/p - 1),             Li et al. ICLR 2023
                     eps = sum_O (1/p - 1)(e - e^) / sum_O (1/p - 1)^2
(causalrm-)sdr       (1/N) sum e^ + sum v (e - e^) / sum v, v = w balanced on e^           Li, Zheng & Wu ICLR 2023
=================== ===================================================================== ===========================

Every one of them early-stops on the self-normalised IPS estimate of its observed error (``causalrm-snips``, or
``snips`` for the debias-only forms) on the val rows, never on its own DR estimate: the pre-registered protocol of
docs/METHOD.md ("Validating the DR variants"). That criterion reads no pseudo-label, so a head that memorises its
training rows' imputations cannot lower it, and it is self-normalised, so the clipped weights' scale cannot move it.

* **TDR** (targeted DR): ``eps`` is the least-squares fit of the residual ``e - e^`` on the clever covariate
  ``h = 1/p - 1`` over the observed rows of the batch, so ``sum_O h (e - e^*) = 0``: the in-sample bias term that the
  imputation error leaves in DR, ``sum_i (o_i / p_i - 1)(e_i - e^_i)``, has its observed part removed. The kernel
  keeps ``eps`` a function of ``z`` (exact gradient); the term is still linear in ``l1`` and ``l0`` row by row, with
  the batch constant ``kappa = sum_i (1 - w_i) h_i / sum_O h^2`` (``tdr_components``).
* **SDR** (stabilised DR): self-normalised weights ``v~ = N v / sum v`` replace ``w`` (Swaminathan & Joachims
  2015), so the correction term is a weighted mean of the observed residuals whatever the propensities' scale, and
  ``v`` are the clipped inverse propensities after the balancing step (``balanced_weights``): tilted so that the
  observed rows' imputed errors have the same weighted mean as all rows'. Under that balance the estimate equals the
  self-normalised IPS of the observed errors, the form the paper trains its prediction model on.
* **DR-JL / MRDR** (joint learning): the trainer keeps an imputation model ``q(x) = sigmoid(logit q0(x) + s g(x))``
  (``ImputationModel``: ``g`` a copy of the reward backbone, ``s`` a scalar starting at 0, so it starts at the
  cross-fitted ``q0``) and alternates, per batch, the prediction step on the DR estimate with ``q(x)`` frozen and the
  imputation step ``(1/N) sum_O v (e - e^)^2`` with ``z`` frozen, ``v = 1/p`` (JL) or ``(1 - p)/p^2`` (MRDR, the
  weight that minimises the DR estimate's variance). The imputed term is summed over every row of the batch (all
  impressions, observed or not).

References
----------
* X. Wang, R. Zhang, Y. Sun, J. Qi. Doubly Robust Joint Learning for Recommendation on Data Missing Not at Random.
  ICML 2019.
* S. Guo, L. Zou, Y. Liu, W. Ye, S. Cheng, S. Wang, H. Chen, D. Yin, Y. Chang. Enhanced Doubly Robust Learning for
  Debiasing Post-Click Conversion Rate Estimation. SIGIR 2021 (MRDR).
* H. Li, Y. Lyu, C. Zheng, P. Wu. TDR-CL: Targeted Doubly Robust Collaborative Learning for Debiased
  Recommendations. ICLR 2023.
* H. Li, C. Zheng, P. Wu. StableDR: Stabilized Doubly Robust Learning for Recommendation on Data Missing Not at
  Random. ICLR 2023.
* V. Chernozhukov et al. Double/Debiased Machine Learning for Treatment and Structural Parameters. Econometrics
  Journal 2018 (cross-fitting).
* A. Swaminathan, T. Joachims. The Self-Normalized Estimator for Counterfactual Learning. NeurIPS 2015.
* J. Hainmueller. Entropy Balancing for Causal Effects. Political Analysis 2012 (the exponential tilt).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from causalrm.estimators.base_losses import _pos_neg, _surrogate_coefficients

#: the imputation-step weights v(p) of the joint-learning variants
IMPUTATION_WEIGHTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jl": lambda p: 1.0 / p,
    "mrdr": lambda p: (1.0 - p) / p**2,
}


def _coefficients(t: dict[str, Any], surrogate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of the observed error e = a l1 + b l0 (zero on unobserved rows is not applied here)."""
    r = t["feedback"]
    if surrogate:
        return _surrogate_coefficients(r, t["rho01"], t["rho10"])
    return r, 1.0 - r


def tdr_components(logits: torch.Tensor, t: dict[str, Any], base: str, *, surrogate: bool) -> torch.Tensor:
    """Class-split terms of the targeted DR estimate (module docstring), shape ``logits.shape + (2,)``.

    Sum over rows / N = (1/N) sum_i [e^*_i + w_i (e_i - e^*_i)] with e^* = e^ + eps h, h = 1/p - 1,
    eps = sum_O h (e - e^) / sum_O h^2 (0 when sum_O h^2 = 0). Since eps h enters only through
    eps sum_i (1 - w_i) h_i, row j carries kappa o_j h_j (e_j - e^_j) on top of the DR term, with
    kappa = sum_i (1 - w_i) h_i / sum_O h^2 (a batch constant: the batch is the last axis).
    """
    o, w, q, p = t["observed"], t["weight"], t["pseudo_label"], t["propensity"]
    a, b = _coefficients(t, surrogate)
    h = 1.0 / p - 1.0
    den = (o * h**2).sum(dim=-1, keepdim=True)
    kappa = torch.where(den > 0, ((1.0 - w) * h).sum(dim=-1, keepdim=True) / torch.where(den > 0, den, 1.0),
                        torch.zeros_like(den))
    k = kappa * o * h
    c1 = (1.0 - w) * q + w * a + k * (a - q)
    c0 = (1.0 - w) * (1.0 - q) + w * b + k * (b - (1.0 - q))
    l1, l0 = _pos_neg(logits, base)
    return torch.stack((c1 * l1, c0 * l0), dim=-1)


#: the balancing step tilts no row's weight by more than this factor either way (exp(|lambda d|) <= it)
MAX_TILT = 10.0


def balanced_weights(w: torch.Tensor, e_hat: torch.Tensor, *, iterations: int = 60) -> torch.Tensor:
    """SDR's balancing step: the weights ``v = w exp(lambda d)``, ``d = e^ - mean(e^)`` over every row of the batch
    (the last axis), with the tilt ``lambda`` solving ``sum_i v_i d_i = 0``.

    The observed rows' imputed errors then have, under ``v``, the same mean as over all rows: the balance that
    Li, Zheng & Wu (2023) reach with a penalty in their propensity step, here reached exactly by a one-parameter
    exponential tilt of the fitted weights (our choice; entropy balancing, Hainmueller 2012). ``sum v d`` increases
    with ``lambda``, so bisection finds the root; ``|lambda|`` is bounded by ``log(MAX_TILT) / max_O |d|`` (the
    balance is then partial). Computed without gradient: the tilt is a nuisance step.
    """
    with torch.no_grad():
        d = e_hat - e_hat.mean(dim=-1, keepdim=True)
        scale = torch.where(w > 0, d.abs(), torch.zeros_like(d)).amax(dim=-1, keepdim=True)
        bound = torch.where(scale > 0, math.log(MAX_TILT) / scale.clamp_min(1e-30), torch.zeros_like(scale))
        lo, hi = -bound, bound
        for _ in range(iterations):
            mid = (lo + hi) / 2
            below = (w * torch.exp(mid * d) * d).sum(dim=-1, keepdim=True) < 0
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return w * torch.exp((lo + hi) / 2 * d)


def sdr_components(logits: torch.Tensor, t: dict[str, Any], base: str, *, surrogate: bool) -> torch.Tensor:
    """Class-split terms of the stabilised DR estimate, shape ``logits.shape + (2,)``.

    Sum over rows / N = (1/N) sum_i e^_i + sum_i v_i (e_i - e^_i) / sum_i v_i with the balanced weights
    ``v = balanced_weights(w, e^)``: row i carries e^_i + v~_i (e_i - e^_i), v~ = N v / sum v (the imputation alone
    on a batch without observed rows).
    """
    w, q = t["weight"], t["pseudo_label"]
    a, b = _coefficients(t, surrogate)
    l1, l0 = _pos_neg(logits, base)
    v = balanced_weights(w, (q * l1 + (1.0 - q) * l0).detach())
    n = v.shape[-1]
    total = v.sum(dim=-1, keepdim=True)
    vn = torch.where(total > 0, n * v / torch.where(total > 0, total, 1.0), torch.zeros_like(v))
    c1 = q + vn * (a - q)
    c0 = (1.0 - q) + vn * (b - (1.0 - q))
    return torch.stack((c1 * l1, c0 * l0), dim=-1)


def kernel(kind: str, *, surrogate: bool) -> Callable[..., torch.Tensor]:
    """The ``MethodSpec.components`` of a DR variant (``"tdr"`` or ``"sdr"``)."""
    fn = {"tdr": tdr_components, "sdr": sdr_components}[kind]

    def components(logits: torch.Tensor, t: dict[str, Any], base: str) -> torch.Tensor:
        return fn(logits, t, base, surrogate=surrogate)

    components.__name__ = f"{kind}_components{'_surrogate' if surrogate else ''}"
    return components


# --------------------------------------------------------------------------------------------------------------------
# joint learning (DR-JL, MRDR)
# --------------------------------------------------------------------------------------------------------------------
def imputation_loss(kind: str, logits: torch.Tensor, q: torch.Tensor, inputs: Any, *, surrogate: bool,
                    rho01: float = 0.0, rho10: float = 0.0, base: str = "mse") -> torch.Tensor:
    """The imputation step's loss (1/N) sum_O v(p) (e - e^)^2 with e = l~(z, r) (``surrogate``) or l(z, r),
    e^ = l(z, q); ``logits`` are the prediction model's (detached here), ``q`` the imputation model's output
    (the gradient flows to it). ``kind``: ``"jl"`` (v = 1/p) or ``"mrdr"`` (v = (1 - p)/p^2)."""
    z = logits.detach()
    o = torch.as_tensor(inputs.observed, dtype=z.dtype, device=z.device)
    p = torch.as_tensor(inputs.propensity, dtype=z.dtype, device=z.device)
    r = torch.where(o > 0, torch.as_tensor(inputs.feedback, dtype=z.dtype, device=z.device), torch.zeros_like(z))
    a, b = _coefficients({"feedback": r, "rho01": rho01, "rho10": rho10}, surrogate)
    l1, l0 = _pos_neg(z, base)
    e = a * l1 + b * l0
    e_hat = q * l1 + (1.0 - q) * l0
    return (o * IMPUTATION_WEIGHTS[kind](p) * (e - e_hat) ** 2).mean()


class ImputationModel(torch.nn.Module):
    """q(x) = sigmoid(logit q0(x) + s g(x)): a copy ``g`` of the reward backbone (fresh weights are not needed: the
    scalar ``s`` starts at 0, so q starts at the cross-fitted pseudo-label q0 and learns a correction)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.g = copy.deepcopy(backbone)
        self.scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, torch.Tensor], q0: torch.Tensor) -> torch.Tensor:
        q0 = q0.clamp(1e-4, 1.0 - 1e-4)
        offset = self.g(**batch).float().reshape(-1)
        return torch.sigmoid(torch.log(q0) - torch.log1p(-q0) + self.scale * offset)

    def parameters_to_train(self) -> list[torch.nn.Parameter]:
        return [p for p in self.g.parameters() if p.requires_grad] + [self.scale]


__all__ = ["IMPUTATION_WEIGHTS", "MAX_TILT", "ImputationModel", "balanced_weights", "imputation_loss", "kernel",
           "sdr_components", "tdr_components"]
