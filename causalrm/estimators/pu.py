"""Positive-unlabelled (PU) learning as a batch reduction of the surrogate's class-split risks.

Implicit logs (copies, clicks: an event or nothing per impression) read as every impression observed, ``r = 1`` where
the event happened, ``r = 0`` elsewhere: a class-conditionally noisy label with ``rho01 = 1 - c`` (``c`` =
P(event | r* = 1), the label frequency) and ``rho10 = eps`` (accidental events).

uPU is the surrogate. With ``rho10 = 0``, ``rho01 = 1 - c`` (``D = c``) the surrogate's coefficients are
``a_1 = 1/c``, ``b_1 = -(1 - c)/c``, ``a_0 = 0``, ``b_0 = 1``, so the mean of ``o l~(z, r)`` (method ``denoise``) is

    (1/n) sum_events l(z, 1)/c + (1/n) sum_all l(z, 0) - (1/n) sum_events l(z, 0)/c
    = pi E_P[l(z, 1)] + E_U[l(z, 0)] - pi E_P[l(z, 0)],     pi = P(event) / c,

the unbiased PU risk of du Plessis et al. (2015) in the censoring (single training set) setting, with P the events
and U all impressions. ``causalrm-ips`` is its inverse-propensity weighted form. So uPU is no separate method.

nnPU is the reduction. Write the class-1 risk ``R1 = (1/N) sum_i w_i a(r_i) l(z_i, 1)`` and the class-0 risk
``R0 = (1/N) sum_i w_i b(r_i) l(z_i, 0)`` (``losses.loss_components``' columns, ``w = o`` or ``o / p``); each
estimates a non-negative risk, yet either can fall below zero on a batch a flexible model overfits. The
non-negative risk (Kiryo et al. 2017) reports ``max(0, R1) + max(0, R0)`` and, following their Algorithm 1, steps
on ``R1 + R0`` while every part is at least ``-beta``, else on ``-gamma`` times the sum of the parts below
``-beta`` alone (it "defies" the overfitted part and drops the other's gradient for that step). With ``rho10 = 0``
the class-1 part ``pi E_P[l(z, 1)]`` is never negative and this is exactly Kiryo et al.'s nnPU.

References
----------
* M. C. du Plessis, G. Niu, M. Sugiyama. Convex Formulation for Learning from Positive and Unlabeled Data.
  ICML 2015 (uPU).
* R. Kiryo, G. Niu, M. C. du Plessis, M. Sugiyama. Positive-Unlabeled Learning with Non-Negative Risk Estimator.
  NeurIPS 2017 (nnPU, Algorithm 1).
* C. Elkan, K. Noto. Learning Classifiers from Only Positive and Unlabeled Data. KDD 2008 (the label frequency c).
"""

from __future__ import annotations

import math

import torch

from causalrm.errors import InputError


def check_step(beta: float, gamma: float) -> tuple[float, float]:
    """Validate Kiryo et al.'s step parameters: ``beta >= 0`` (the tolerated negative risk), ``0 < gamma <= 1``."""
    b, g = float(beta), float(gamma)
    if not (math.isfinite(b) and b >= 0.0):
        raise InputError(f"beta must be a finite number >= 0 (the negative risk tolerated), got {beta!r}")
    if not 0.0 < g <= 1.0:
        raise InputError(f"gamma must lie in (0, 1] (the discount of the defying step), got {gamma!r}")
    return b, g


def nonnegative_risk(risks: torch.Tensor, *, beta: float = 0.0, gamma: float = 1.0) -> torch.Tensor:
    """The non-negative risk of the class risks ``risks[..., k]`` (``(R1, R0)``, trailing axis of size 2).

    Value ``max(0, R1) + max(0, R0)``. Gradient (Kiryo et al. 2017, Algorithm 1): that of ``R1 + R0`` when
    ``R_k >= -beta`` for both parts, else that of ``-gamma * sum_{k: R_k < -beta} R_k``. The value is not the
    function whose gradient is taken: minimising it with any optimiser performs their step.
    """
    beta, gamma = check_step(beta, gamma)
    if risks.shape[-1] != 2:
        raise InputError("risks must have a trailing axis of size 2: the class-1 and class-0 risks")
    value = risks.clamp_min(0.0).sum(dim=-1)
    defy = (risks.detach() < -beta).to(risks.dtype)
    step = torch.where(defy.sum(dim=-1) > 0, -gamma * (risks * defy).sum(dim=-1), risks.sum(dim=-1))
    return value.detach() + (step - step.detach())


__all__ = ["check_step", "nonnegative_risk"]
