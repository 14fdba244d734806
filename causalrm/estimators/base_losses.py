"""The per-example base losses l(z, t) ("mse": the Brier score, "bce") and their noise corrections: the surrogate
l~(z, r) (unbiased for l(z, r*) under class-conditional flips, and its bounds) and the forward correction; the checks
on a base and on flip rates. Notation: :mod:`causalrm.estimators.losses`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from causalrm.errors import InputError

BASES: tuple[str, ...] = ("mse", "bce")


# --------------------------------------------------------------------------------------------------- base losses
def _pos_neg(logits: torch.Tensor, base: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(l(z, 1), l(z, 0)) pointwise; "bce" computed stably from the logit."""
    if base == "mse":
        s = torch.sigmoid(logits)
        return (1.0 - s) ** 2, s**2
    return F.softplus(-logits), F.softplus(logits)


def base_loss(logits: torch.Tensor, target: Any, base: str = "mse") -> torch.Tensor:
    """Pointwise base loss for a (possibly soft) target t in [0, 1].

    "mse": (sigma(z) - t)^2 (the Brier score, in [0, 1]).
    "bce": -t log sigma(z) - (1 - t) log(1 - sigma(z)) (computed from the logit, stable for any z).
    """
    _check_base(base)
    t = _as_tensor(target, logits, "target")
    if base == "mse":
        return (torch.sigmoid(logits) - t) ** 2
    return F.binary_cross_entropy_with_logits(logits, t, reduction="none")


def expected_loss(logits: torch.Tensor, q: Any, base: str = "mse") -> torch.Tensor:
    """e(z, q) = q l(z, 1) + (1 - q) l(z, 0) = E_{y ~ Bernoulli(q)} l(z, y): the imputed error of the DR methods.

    For "bce" this equals ``base_loss(z, q)``. For "mse" it equals (sigma(z) - q)^2 + q (1 - q): the same gradient in
    z, and when q = P(r* = 1 | x) it is exactly E[l(z, r*) | x], the regression of the error the DR estimator needs
    for its "imputation correct" arm (with (sigma(z) - q)^2 alone the value would be low by q (1 - q)).
    """
    _check_base(base)
    t = _as_tensor(q, logits, "pseudo_label")
    l1, l0 = _pos_neg(logits, base)
    return t * l1 + (1.0 - t) * l0


def _surrogate_coefficients(r: torch.Tensor, rho01: float | torch.Tensor, rho10: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_r, b_r) with l~(z, r) = a_r l(z, 1) + b_r l(z, 0); E[a_r | r*] = r*, E[b_r | r*] = 1 - r*."""
    d = 1.0 - rho01 - rho10
    a = (r * (1.0 - rho10) - (1.0 - r) * rho10) / d
    b = ((1.0 - r) * (1.0 - rho01) - r * rho01) / d
    return a, b


def surrogate_loss(
    logits: torch.Tensor, feedback: Any, rho01: float, rho10: float, base: str = "mse"
) -> torch.Tensor:
    """Noise-corrected surrogate l~(z, r) of Natarajan et al. (2013), pointwise.

    l~(z, 1) = [(1 - rho10) l(z, 1) - rho01 l(z, 0)] / (1 - rho01 - rho10)
    l~(z, 0) = [(1 - rho01) l(z, 0) - rho10 l(z, 1)] / (1 - rho01 - rho10)

    E[l~(z, r) | r*] = l(z, r*) for P(r = 0 | r* = 1) = rho01, P(r = 1 | r* = 0) = rho10. Bounded for "mse"
    (``surrogate_bounds``), unbounded below for "bce".
    """
    _check_base(base)
    rho01, rho10 = check_rates(rho01, rho10)
    r = _as_tensor(feedback, logits, "feedback")
    a, b = _surrogate_coefficients(r, rho01, rho10)
    l1, l0 = _pos_neg(logits, base)
    return a * l1 + b * l0


def surrogate_bounds(rho01: float, rho10: float) -> tuple[float, float]:
    """Exact range of the "mse" surrogate over all logits and both labels: [-max(rho)/D, max(1 - rho)/D].

    Per label: l~(z, 1) in [-rho01/D, (1 - rho10)/D], l~(z, 0) in [-rho10/D, (1 - rho01)/D], D = 1 - rho01 - rho10;
    the end points are reached as sigma(z) -> 1 and -> 0 (l~ is monotone in sigma(z)).
    """
    rho01, rho10 = check_rates(rho01, rho10)
    d = 1.0 - rho01 - rho10
    return -max(rho01, rho10) / d, max(1.0 - rho10, 1.0 - rho01) / d


def forward_loss(
    logits: torch.Tensor, feedback: Any, rho01: float, rho10: float, base: str = "mse"
) -> torch.Tensor:
    """Forward correction (Patrini et al. 2017): the base loss applied to the noisy-label probability.

    pi(z) = (1 - rho01) sigma(z) + rho10 (1 - sigma(z)) = P(r = 1 | x) implied by the model; term = l(pi(z), r).
    "mse": (pi - r)^2; "bce": -r log pi - (1 - r) log(1 - pi), stable (log-sum-exp) and bounded for rho > 0.
    """
    _check_base(base)
    rho01, rho10 = check_rates(rho01, rho10)
    r = _as_tensor(feedback, logits, "feedback")
    f1, f0 = _forward_pos_neg(logits, rho01, rho10, base)
    return r * f1 + (1.0 - r) * f0


def _forward_pos_neg(
    logits: torch.Tensor, rho01: float | torch.Tensor, rho10: float | torch.Tensor, base: str
) -> tuple[torch.Tensor, torch.Tensor]:
    d = 1.0 - rho01 - rho10
    if base == "mse":
        pi = rho10 + d * torch.sigmoid(logits)
        return (1.0 - pi) ** 2, pi**2

    def _log(c: float | torch.Tensor) -> torch.Tensor:  # a scalar rate or one per row
        return torch.log(torch.as_tensor(c, dtype=logits.dtype, device=logits.device)).expand_as(logits)

    log_d = _log(d)

    log_pi = torch.logaddexp(_log(rho10), log_d + F.logsigmoid(logits))  # log(rho10 + D s)
    log_1mpi = torch.logaddexp(_log(rho01), log_d + F.logsigmoid(-logits))  # log(rho01 + D (1 - s))
    return -log_pi, -log_1mpi


def _check_base(base: str) -> None:
    if base not in BASES:
        raise InputError(f"unknown base loss {base!r}: choose 'mse' (default, bounded) or 'bce'")


def check_rates(rho01: float, rho10: float) -> tuple[float, float]:
    """Validate flip rates: finite, each in [0, 1), and rho01 + rho10 < 1 (else the noise is not identifiable)."""
    try:
        a, b = float(rho01), float(rho10)
    except (TypeError, ValueError):
        raise InputError(f"flip rates must be numbers, got rho01={rho01!r}, rho10={rho10!r}") from None
    if not (0.0 <= a < 1.0 and 0.0 <= b < 1.0):
        raise InputError(f"flip rates must lie in [0, 1): got rho01={rho01!r}, rho10={rho10!r}")
    if a + b >= 1.0:
        raise InputError(
            f"rho01 + rho10 = {a + b:.3g} >= 1: feedback would carry no (or inverted) information about the true "
            "label; check the flip-rate estimates or set them by hand"
        )
    return a, b


def _as_tensor(value: Any, like: torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.shape != like.shape:
        raise InputError(f"{name} has shape {tuple(t.shape)} but logits have shape {tuple(like.shape)}")
    return t
