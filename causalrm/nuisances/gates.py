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
flip rates      given by the user (``fixed``); anchors: (i) the proxy's out-of-fold    noise-aware methods are refused
                AUC interval above 0.5 (the proxy must rank the feedback), (ii)    unless the user overrides
                each rate's bootstrap interval at most ``MAX_RATE_CI_WIDTH``       (``FitConfig.force_noise_correction``)
                wide, (iii) the margin D = 1 - rho01 - rho10 at least
                ``MIN_MARGIN`` (the surrogate divides by D). Gold labels are
                unbiased, so only precision counts: (iii) read on their
                intervals (D at the lower ends of both rates' 95% intervals at
                least ``MIN_MARGIN``), and D at the upper ends at least D / 2
                (the factor 1 / D of the surrogate moves by at most 2x over
                their intervals)
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
    if method == "gold":
        return _gold_gate(diagnostics, evidence)
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


def _gold_gate(diagnostics: dict[str, Any], evidence: dict[str, Any]) -> Gate:
    """Gold rates: unbiased, so the gate reads their precision and the margin (module docstring)."""
    rho01, rho10, margin, ci = evidence["rho01"], evidence["rho10"], evidence["margin"], evidence["ci"]
    worst = 1.0 - float(ci["rho01"][1]) - float(ci["rho10"][1]) if ci else margin
    best = 1.0 - float(ci["rho01"][0]) - float(ci["rho10"][0]) if ci else margin
    n_gold = int(diagnostics.get("n_gold", 0))
    evidence.update(worst_margin=worst, best_margin=best, n_gold=n_gold)
    rates = f"rho01 {rho01:.2f} {_fmt_ci(ci['rho01'])}, rho10 {rho10:.2f} {_fmt_ci(ci['rho10'])}" if ci else \
        f"rho01 {rho01:.2f}, rho10 {rho10:.2f}"
    failures = []
    if best < MIN_MARGIN:  # unbiased rates: D is too small only when even its interval stays below MIN_MARGIN
        failures.append(f"1 - rho01 - rho10 = {margin:.2f} (at most {best:.2f} within the intervals) is below "
                        f"{MIN_MARGIN}")
    if worst < margin / 2:
        failures.append(f"at the upper ends of the intervals 1 - rho01 - rho10 would be {worst:.2f}, under half of "
                        f"{margin:.2f}")
        evidence["labels_needed"] = _labels_needed(n_gold, evidence)
    evidence["failures"] = failures
    if failures:
        return Gate("flip_rates", False, f"the gold flip rates from {n_gold} labelled rows with feedback are too "
                    f"imprecise or too close to chance to correct with ({rates}): " + "; ".join(failures), evidence)
    return Gate("flip_rates", True, f"flip rates from {n_gold} gold-labelled rows with feedback ({rates}, margin "
                f"{margin:.2f}, at least {worst:.2f} within the intervals)", evidence)


def _labels_needed(n_gold: int, evidence: dict[str, Any]) -> int | None:
    """About how many labelled rows with feedback would bring the margin at the intervals' upper ends to half of D,
    the intervals' upper excesses shrinking as 1 / sqrt(n); None when D itself is too small."""
    excess = sum(float(evidence["ci"][k][1]) - float(evidence[k]) for k in ("rho01", "rho10"))
    allowed = evidence["margin"] / 2
    if n_gold < 1 or allowed <= 0 or evidence.get("best_margin", evidence["margin"]) < MIN_MARGIN:
        return None
    return int(math.ceil(n_gold * (excess / allowed) ** 2))


def remedies(gate: Gate) -> str:
    """What a user can do about a failed flip-rate gate, never asking for what they gave: gold rates too imprecise
    ask for more labels, anchor rates for labels in the first place."""
    others = ("give the rates with --rho01/--rho10, use a method without noise correction (naive, ips), or pass "
              "--force-noise-correction to train anyway")
    if gate.evidence.get("method") == "gold":
        needed = gate.evidence.get("labels_needed")
        more = (f"label more rows (about {needed} labelled rows with feedback would do; `causalrm audit` with a "
                "larger --n and the same seed extends the label file)" if needed else "label more rows")
        return f"{more}, {others}"
    return f"label a few hundred rows (causalrm audit) and use --flip-method gold, {others}"


# ---------------------------------------------------------------------------------------------- learned
def best_constant(method: str, inputs: Any, **loss_kw: Any) -> float:
    """The constant logit c minimising ``losses.estimate(method, c, inputs)`` over a grid of sigma(c) in (0, 1)."""
    from causalrm.estimators import losses

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
    from causalrm.estimators import losses

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


def vote_gap_gate(learned: Gate, val_logits: np.ndarray, observed: Any) -> Gate:
    """The learning gate of a vote model (``MethodSpec.models_votes``, ``causalrm.estimators.vote_gap``): besides
    ``learned``, are the val pairs' votes likelier on its larger gaps |z_a - z_b| (``vote_gap.votes_follow_gaps``,
    one-sided 95%)? The val pairs' votes never enter its training loss, so where votes do not follow the reward gap
    its gaps fitted the train pairs' votes by chance and the test fails. A val split without both voted and unvoted
    pairs has nothing to test (the estimator is then ``fcorr``): ``learned`` stands."""
    from causalrm.estimators.vote_gap import VOTE_GAP_Z, votes_follow_gaps

    test = votes_follow_gaps(val_logits, observed) if learned.passed else None
    if test is None:
        return learned
    evidence = {**learned.evidence, "vote_gap": test}
    if test["passed"]:
        return Gate("learned", True, f"{learned.verdict}; the val pairs' votes are likelier on its larger reward gaps "
                    f"(slope z = {test['z']:.1f})", evidence)
    return Gate("learned", False,
                f"did not learn what it models: the val pairs' votes are not likelier on its larger reward gaps (slope "
                f"z = {test['z']:.1f}, needs > {VOTE_GAP_Z}), so its gaps fit the train pairs' votes by chance; fit "
                "fcorr-rank or auto", evidence)


__all__ = [
    "Gate",
    "MAX_RATE_CI_WIDTH",
    "MIN_MARGIN",
    "MIN_SPREAD",
    "auc_interval",
    "best_constant",
    "flip_rate_gate",
    "learning_gate",
    "propensity_gate",
    "remedies",
    "vote_gap_gate",
]
