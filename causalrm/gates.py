"""Gates: can a nuisance estimate, or a trained model, be trusted? One verdict each, with its evidence.

Notation as in docs/ARCHITECTURE.md (``observed`` o, ``feedback`` r, ``propensity`` p, ``rho01``, ``rho10``,
``logits`` z). A gate never changes an estimate: it reads one and says whether the method that uses it can work.

=============== ================================================================== ===================================
gate            passes when                                                        when it fails
=============== ================================================================== ===================================
propensity      the 95% interval of the propensity AUC (p_hat against o) lies      no selection on x is detectable:
                above 0.5                                                          IPS weights are ~ uniform and the
                                                                                   weighted methods reduce to their
                                                                                   unweighted forms (not an error)
flip rates      given by the user (``fixed``); or estimated with (i) the proxy's   noise-aware methods are refused
                out-of-fold AUC interval above 0.5 (anchors only: the proxy must   unless the user overrides
                rank the feedback), (ii) each rate's bootstrap interval at most    (``FitConfig.force_noise_correction``)
                ``MAX_RATE_CI_WIDTH`` wide, (iii) the margin D = 1 - rho01 - rho10
                at least ``MIN_MARGIN`` (the surrogate divides by D)
learned         the trained model beats the best constant predictor on the         the model is flagged "did not
                method's own validation estimate (paired bootstrap over val rows,  learn"; its rankings are not
                one-sided 95%: the 95th percentile of the difference below 0)       findings
                and its predictions
                spread (std of sigma(z) over val rows >= ``MIN_SPREAD``)
=============== ================================================================== ===================================

The thresholds are conventions, chosen before looking at test results and documented in docs/METHOD.md
("Gates"): an interval of width 0.25 on a flip rate moves the surrogate's weights by more than the rate itself
typically is; below D = 0.3 the correction multiplies the noise of every observed term by more than 3; a spread of
0.01 in sigma(z) is below what any ranking built on it can resolve.

AUC intervals: Hanley & McNeil (1982), SE^2 = [A(1-A) + (n1-1)(Q1-A^2) + (n0-1)(Q2-A^2)] / (n1 n0),
Q1 = A/(2-A), Q2 = 2A^2/(1+A).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

#: widest acceptable 95% bootstrap interval of an estimated flip rate
MAX_RATE_CI_WIDTH = 0.25
#: smallest acceptable margin D = 1 - rho01 - rho10
MIN_MARGIN = 0.3
#: smallest standard deviation of sigma(z) over the val rows for a model that learned
MIN_SPREAD = 0.01
#: resamples of the paired bootstrap of the learning gate
N_BOOT = 200
#: grid of constant predictions sigma(c) searched for the best constant predictor
_CONSTANT_GRID = np.linspace(0.005, 0.995, 199)


@dataclass
class Gate:
    """One gate's outcome: ``passed``, a one-sentence ``verdict`` a person can read, and the ``evidence``."""

    name: str
    passed: bool
    verdict: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auc_interval(auc: float, n_positive: int, n_negative: int, *, z: float = 1.96) -> tuple[float, float]:
    """Approximate 95% interval of an AUC from ``n_positive`` / ``n_negative`` rows (Hanley & McNeil 1982)."""
    if n_positive < 1 or n_negative < 1:
        return (0.0, 1.0)
    a = min(max(float(auc), 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) / (n_positive * n_negative)
    se = math.sqrt(max(var, 0.0))
    return (max(0.0, a - z * se), min(1.0, a + z * se))


def _fmt_ci(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


# ---------------------------------------------------------------------------------------------- propensity
def propensity_gate(diagnostics: dict[str, Any]) -> Gate:
    """Is selection on x detectable? Reads ``PropensityDiagnostics.to_dict()`` (``auc``, ``auc_ci``, ``source``)."""
    source = str(diagnostics.get("source", ""))
    auc, ci = diagnostics.get("auc"), diagnostics.get("auc_ci")
    evidence = {"source": source, "auc": auc, "auc_ci": list(ci) if ci else None,
                "ess_fraction": diagnostics.get("ess_fraction")}
    if source == "logged":
        return Gate("propensity", True, "the log's own propensities are used as they are", evidence)
    if auc is None or ci is None:
        return Gate("propensity", False, "no propensity AUC: every row has the same observation status", evidence)
    if ci[0] <= 0.5:
        return Gate("propensity", False,
                    f"no selection on x is detectable (propensity AUC {auc:.2f} {_fmt_ci(ci)} includes 0.5): the IPS "
                    "weights are nearly uniform, so weighting changes little", evidence)
    return Gate("propensity", True,
                f"selection on x is detectable (propensity AUC {auc:.2f} {_fmt_ci(ci)})", evidence)


# ---------------------------------------------------------------------------------------------- flip rates
def flip_rate_gate(diagnostics: dict[str, Any]) -> Gate:
    """Are the flip rates identified? Reads ``FlipRateEstimator.diagnostics_`` (method, rho01, rho10, ci, proxy).

    The three checks of the module docstring; every failed one is named in the verdict.
    """
    method = str(diagnostics.get("method"))
    rho01, rho10 = float(diagnostics["rho01"]), float(diagnostics["rho10"])
    ci = diagnostics.get("ci") or {}
    margin = 1.0 - rho01 - rho10
    evidence: dict[str, Any] = {"method": method, "rho01": rho01, "rho10": rho10, "ci": ci, "margin": margin}
    if method == "fixed":
        return Gate("flip_rates", True, f"flip rates given by the user (rho01 {rho01:.2f}, rho10 {rho10:.2f})",
                    evidence)
    failures = []
    proxy = diagnostics.get("proxy") or {}
    if method.startswith("anchor"):
        auc = proxy.get("oof_auc")
        n_pos, n_neg = int(diagnostics.get("n_observed_positive", 0)), int(diagnostics.get("n_observed_negative", 0))
        auc_ci = auc_interval(auc, n_pos, n_neg) if auc is not None else (0.0, 1.0)
        evidence.update(proxy_auc=auc, proxy_auc_ci=list(auc_ci))
        if auc is None or auc_ci[0] <= 0.5:
            failures.append(f"the proxy ranks the feedback no better than chance (AUC "
                            f"{0.5 if auc is None else auc:.2f} {_fmt_ci(auc_ci)})")
    widths = {k: float(ci[k][1] - ci[k][0]) for k in ("rho01", "rho10") if k in ci}
    evidence["ci_width"] = widths
    for k, w in widths.items():
        if w > MAX_RATE_CI_WIDTH:
            failures.append(f"{k} {diagnostics[k]:.2f} has a 95% interval {_fmt_ci(ci[k])} wider than "
                            f"{MAX_RATE_CI_WIDTH}")
    if margin < MIN_MARGIN:
        failures.append(f"1 - rho01 - rho10 = {margin:.2f} is below {MIN_MARGIN}")
    evidence["failures"] = failures
    rates = f"rho01 {rho01:.2f}, rho10 {rho10:.2f}"
    if failures:
        return Gate("flip_rates", False, f"flip rates are not identifiable here ({rates}): " + "; ".join(failures),
                    evidence)
    return Gate("flip_rates", True, f"flip rates identified ({method}: {rates}, margin {margin:.2f})", evidence)


REMEDIES = ("label a few hundred rows and use --flip-method gold, give the rates with --rho01/--rho10, use a method "
            "without noise correction (naive, ips), or pass --force-noise-correction to train anyway")


# ---------------------------------------------------------------------------------------------- learned
def best_constant(method: str, inputs: Any, **loss_kw: Any) -> float:
    """The constant logit c minimising ``losses.estimate(method, c, inputs)`` over a grid of sigma(c) in (0, 1)."""
    from causalrm import losses

    inputs = inputs.to()
    n = len(inputs)
    values = []
    for p in _CONSTANT_GRID:
        z = torch.full((n,), float(math.log(p / (1 - p))))
        values.append(float(losses.estimate(method, z, inputs, check=False, **loss_kw)))
    p = _CONSTANT_GRID[int(np.nanargmin(values))]
    return float(math.log(p / (1 - p)))


def learning_gate(
    method: str, val_logits: np.ndarray, val_inputs: Any, constant: float, *, seed: int = 0, **loss_kw: Any,
) -> Gate:
    """Did the model learn? Its validation estimate against the constant predictor ``constant`` (a logit fitted on
    the training rows, ``best_constant``), paired over ``N_BOOT`` bootstrap resamples of the val rows, and the spread
    of its predictions (one-sided 95% bootstrap test; the evidence holds the 90% two-sided interval of the
    improvement). ``loss_kw``: the flip rates, base loss and guard the estimator was trained with.
    """
    from causalrm import losses

    val_inputs = val_inputs.to()
    z = torch.as_tensor(np.asarray(val_logits, dtype=np.float32)).reshape(-1)
    c = torch.full_like(z, float(constant))
    n = z.numel()

    def diff(idx: Any) -> float:
        sub = val_inputs.index(idx) if idx is not None else val_inputs
        zi, ci = (z, c) if idx is None else (z[idx], c[idx])
        return float(losses.estimate(method, zi, sub, check=False, **loss_kw)
                     - losses.estimate(method, ci, sub, check=False, **loss_kw))

    point = diff(None)
    rng = np.random.default_rng(seed)
    reps = np.array([diff(torch.as_tensor(rng.integers(0, n, n))) for _ in range(N_BOOT)])
    reps = reps[np.isfinite(reps)]
    lo, hi = (float(np.quantile(reps, 0.05)), float(np.quantile(reps, 0.95))) if reps.size else (math.nan, math.nan)
    spread = float(torch.sigmoid(z).std()) if n > 1 else 0.0
    evidence = {"method": method, "improvement": -point, "improvement_ci": [-hi, -lo], "spread": spread,
                "constant": 1.0 / (1.0 + math.exp(-constant)), "n_val": int(n)}
    if not (hi < 0):
        return Gate("learned", False,
                    f"did not learn: its {method} validation estimate is no better than a constant prediction of "
                    f"{evidence['constant']:.2f} (improvement {-point:+.4f} [{-hi:+.4f}, {-lo:+.4f}])", evidence)
    if spread < MIN_SPREAD:
        return Gate("learned", False,
                    f"did not learn: its predictions are nearly constant (std of sigma(z) {spread:.4f} < {MIN_SPREAD})",
                    evidence)
    return Gate("learned", True,
                f"learned: beats a constant prediction on its {method} validation estimate by {-point:.4f} "
                f"[{-hi:.4f}, {-lo:.4f}]", evidence)


__all__ = [
    "Gate",
    "MAX_RATE_CI_WIDTH",
    "MIN_MARGIN",
    "MIN_SPREAD",
    "REMEDIES",
    "auc_interval",
    "best_constant",
    "flip_rate_gate",
    "learning_gate",
    "propensity_gate",
]
