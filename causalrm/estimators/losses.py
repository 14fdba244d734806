"""The functional kernel: per-example loss terms of every estimator, then a reduction.

Notation (docs/ARCHITECTURE.md)
-------------------------------
``z`` = ``logits``           reward-model output; predicted preference ``s = sigma(z)``.
``o`` = ``observed``         1 if the impression received feedback, else 0.
``r`` = ``feedback``         observed, possibly noisy binary label; ignored where ``o == 0`` (NaN allowed there).
``r*`` = ``true_label``      clean binary preference (simulation only; used by ``oracle`` alone).
``p`` = ``propensity``       the *clipped* estimate ``max(p_hat, clip)`` of P(o = 1 | x); ``w = o / p``.
``q`` = ``pseudo_label``     imputed P(r* = 1 | x) (for ``dr``, ``fcorr-dr``: P(r = 1 | x), the noisy label's).
``rho01`` = P(r = 0 | r* = 1), ``rho10`` = P(r = 1 | r* = 0); ``D = 1 - rho01 - rho10 > 0``.
``l(z, y)``                  the pointwise base loss ("mse": (sigma(z) - y)^2, the Brier score; "bce": cross-entropy).
``l1 = l(z, 1)``, ``l0 = l(z, 0)``.
``l(z, q)`` for a soft target q means the *expected* loss ``q l1 + (1 - q) l0`` = E_{y ~ Bernoulli(q)} l(z, y)
(identical to cross-entropy with a soft label for "bce"; for "mse" it is ``(sigma(z) - q)^2 + q (1 - q)``: the same
gradient in z, and the value is the expected clean loss when q is right; see ``expected_loss``).

Every estimator is a mean over all N rows of a batch (the paper's (1/N) sum over impressions D) of a per-example
term written in this notation. The estimators are the specs of the method registry (``causalrm.estimators.methods``: each one's
traits select its branch of the kernel in ``loss_components``; a registered method may bring its own kernel); their
table (method, per-example term, what it needs, traits, reference) is generated from the registry by
``causalrm.estimators.methods.markdown_table()``: docs/METHOD.md carries it ("The losses"), tests/test_methods.py checks it.
The terms use ``w = o / p``, ``e = l(z, q)``, the forward-corrected probability ``pi(z) = (1 - rho01) s + rho10 (1 -
s)`` (Patrini et al. 2017) and the noise-corrected surrogate of Natarajan et al. (2013)

    l~(z, 1) = [(1 - rho10) l(z, 1) - rho01 l(z, 0)] / D,     l~(z, 0) = [(1 - rho01) l(z, 0) - rho10 l(z, 1)] / D,

which satisfies E[l~(z, r) | r*] = l(z, r*) exactly under class-conditional noise.

Implicit (positive-only) feedback and PU learning (``causalrm.estimators.pu``). An event log read with every impression
observed and r = 1 where the event happened is class-conditional noise with rho01 = 1 - c (c = P(event | r* = 1)) and
rho10 = eps; with eps = 0, ``denoise`` is exactly the unbiased PU risk (uPU, du Plessis et al. 2015) with class prior
P(event) / c and ``causalrm-ips`` its weighted form, so uPU is no separate method. ``nnpu`` / ``causalrm-nnpu`` keep
those terms and reduce them by Kiryo et al.'s non-negative risk whatever the base loss (R1, R0: the batch means of
the two columns of ``loss_components``; ``reduce_components``).

Boundedness (METHOD.md, pitfall 1). With "mse", l1 = (1 - s)^2 and l0 = s^2 lie in [0, 1] and l~(z, r) is monotone
in s, so exactly

    l~(z, 1) in [-rho01 / D, (1 - rho10) / D],     l~(z, 0) in [-rho10 / D, (1 - rho01) / D]

(``surrogate_bounds``); every estimator is bounded for a bounded weight. With "bce", l~ is unbounded below (for an
observed positive the term -rho01 l(z, 0) / D falls linearly in z), and so is the DR term (1 - o/p) e whenever
o/p > 1. Therefore "bce" is offered only with the non-negative guard of ``reduce_components`` (Kiryo et al. 2017).

Misspecified weights (squared error; ``tests/test_losses.py`` enumerates it). Write kappa = p_true / p at one x
(kappa < 1 where p overestimates, e.g. wherever clipping raised it). CausalRM-IPS's expected term is kappa times the
clean expected loss, so a wrong weight moves only how much each x counts, never its pointwise minimiser eta =
P(r* = 1 | x). CausalRM-DR's expected term is (1 - kappa) l(z, q) + kappa E[l(z, r*)], whose minimiser moves to
eta + (1 - kappa)(q - eta), towards the imputation: with neither p nor q right, DR is pulled to q, both as a training
loss and as a validation estimate. Per row, an observed impression carries the weight 1 - 1/p < 0 on e, so a
flexible model is also rewarded for moving away from q on the observed rows it can memorise.

References
----------
* N. Natarajan, I. Dhillon, P. Ravikumar, A. Tewari. Learning with Noisy Labels. NeurIPS 2013.
* H. Li et al. Debiased Recommendation with Noisy Feedback. KDD 2024 (the OME-IPS / OME-DR estimators).
* G. Patrini, A. Rozza, A. K. Menon, R. Nock, L. Qu. Making Deep Neural Networks Robust to Label Noise: a Loss
  Correction Approach. CVPR 2017.
* M. C. du Plessis, G. Niu, M. Sugiyama. Convex Formulation for Learning from Positive and Unlabeled Data. ICML 2015.
* R. Kiryo, G. Niu, M. C. du Plessis, M. Sugiyama. Positive-Unlabeled Learning with Non-Negative Risk Estimator.
  NeurIPS 2017.
* A. Swaminathan, T. Joachims. The Self-Normalized Estimator for Counterfactual Learning. NeurIPS 2015.
* H. Wang et al. CausalRM: Causal-Theoretic Reward Modeling for RLHF from Observational User Feedbacks.
  arXiv 2603.18736 (2026).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from causalrm.errors import InputError
from causalrm.estimators import methods, pu
from causalrm.estimators.base_losses import (
    BASES,
    _as_tensor,
    _check_base,
    _forward_pos_neg,
    _pos_neg,
    _surrogate_coefficients,
    check_rates,
)

#: views of the method registry (``causalrm.estimators.methods``), read when accessed so that a registered method appears in
#: them: ``METHODS`` every name; ``WEIGHTED`` methods whose terms use the weight o / p (need ``propensity``);
#: ``DOUBLY_ROBUST`` methods that impute an error e = l(z, q) (need a pseudo-label); ``NOISE_AWARE`` methods that
#: use the flip rates rho01, rho10; ``SURROGATE`` methods whose per-example term is the surrogate l~.
_VIEWS = {
    "METHODS": lambda: methods.names(),
    "WEIGHTED": lambda: frozenset(methods.where(weighted=True)),
    "DOUBLY_ROBUST": lambda: frozenset(methods.where(doubly_robust=True)),
    "NOISE_AWARE": lambda: frozenset(methods.where(noise_aware=True)),
    "SURROGATE": lambda: frozenset(methods.where(correction="surrogate")),
}


def __getattr__(name: str) -> Any:
    if name in _VIEWS:
        return _VIEWS[name]()
    raise AttributeError(f"module 'causalrm.estimators.losses' has no attribute {name!r}")


@dataclass
class LossInputs:
    """Per-row inputs of the estimators (torch tensors or arrays of one shape, usually ``(n,)``).

    Attributes
    ----------
    feedback : r, 0/1 on observed rows; any value (NaN included) where ``observed == 0``.
    observed : o in {0, 1}.
    propensity : the clipped estimate max(p_hat, clip) in (0, 1]; may be None for methods without weights.
    pseudo_label : q in [0, 1] on every row; needed by ``dr`` and ``causalrm-dr``.
    true_label : r* in {0, 1} on every row; simulation only, needed by ``oracle``.
    rho01, rho10 : per-row flip rates, where rows carry different signals (a mixed log's thumbs and copies,
        ``causalrm.data.mixed_feedback``); when present they replace the scalar rates of the noise-aware methods.
    """

    feedback: Any
    observed: Any
    propensity: Any = None
    pseudo_label: Any = None
    true_label: Any = None
    rho01: Any = None
    rho10: Any = None

    def index(self, idx: Any) -> LossInputs:
        """The rows ``idx`` (a minibatch) of every tensor that is present."""
        return replace(self, **{f.name: _take(getattr(self, f.name), idx) for f in fields(self)})

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> LossInputs:
        """Every present field as a tensor on ``device`` with ``dtype`` (default float32)."""
        dtype = dtype or torch.float32
        return replace(
            self,
            **{
                f.name: None if getattr(self, f.name) is None
                else torch.as_tensor(getattr(self, f.name), dtype=dtype, device=device)
                for f in fields(self)
            },
        )

    def __len__(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return len(value)
        return 0


def _take(value: Any, idx: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and not isinstance(idx, torch.Tensor):
        idx = torch.as_tensor(idx, dtype=torch.long)
    if isinstance(value, torch.Tensor):
        return value[idx.to(value.device)]
    return value[idx.cpu().numpy() if isinstance(idx, torch.Tensor) else idx]


# --------------------------------------------------------------------------------------------------- validation
def _check_method(method: str) -> methods.MethodSpec:
    return methods.get(method)


def _row_rates(inputs: LossInputs, logits: torch.Tensor, check: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row flip rates (``LossInputs.rho01`` / ``rho10``) as tensors; ``check``: each row's pair obeys
    :func:`check_rates`."""
    if inputs.rho10 is None:
        raise InputError("per-row flip rates need both rho01 and rho10")
    a = _as_tensor(inputs.rho01, logits, "rho01")
    b = _as_tensor(inputs.rho10, logits, "rho10")
    if check and not bool(((a >= 0) & (a < 1) & (b >= 0) & (b < 1) & (a + b < 1)).all()):
        raise InputError("per-row flip rates must lie in [0, 1) with rho01 + rho10 < 1 on every row")
    return a, b


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _prepare(
    method: str, logits: torch.Tensor, inputs: LossInputs, rho01: float, rho10: float, base: str, check: bool = True
) -> dict[str, Any]:
    """Validate and convert the inputs a method needs; returns a dict of tensors (missing ones absent).

    ``check=False`` skips the data-dependent range checks (each one a device synchronisation on a GPU) but keeps
    the method / base / rate / presence / shape checks.
    """
    spec = _check_method(method)
    _check_base(base)
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise InputError("logits must be a floating-point torch tensor")
    if logits.numel() == 0:
        raise InputError("empty batch: logits have no elements")
    if check and not bool(torch.isfinite(logits).all()):
        raise InputError("logits contain NaN or infinite values (diverged training?)")
    if spec.noise_aware and inputs.rho01 is not None:
        rho01, rho10 = _row_rates(inputs, logits, check)
    elif spec.noise_aware:
        rho01, rho10 = check_rates(rho01, rho10)
    out: dict[str, Any] = {"rho01": rho01 if isinstance(rho01, torch.Tensor) else float(rho01),
                           "rho10": rho10 if isinstance(rho10, torch.Tensor) else float(rho10)}
    if spec.clean_labels:
        if inputs.true_label is None:
            raise InputError(f"method {method!r} needs true_label (simulation only): it is absent from this log")
        rstar = _as_tensor(inputs.true_label, logits, "true_label")
        if check and not _is_binary(rstar):
            raise InputError("true_label must be 0/1 on every row")
        out["true_label"] = rstar
        if spec.weighted:  # oracle-observed: o / p_true, the simulation's true propensity
            if inputs.observed is None or inputs.propensity is None:
                raise InputError(f"method {method!r} needs observed and the true propensity (simulation only)")
            o = _as_tensor(inputs.observed, logits, "observed")
            p = _as_tensor(inputs.propensity, logits, "propensity")
            if check and not bool(((p > 0) & (p <= 1)).all()):
                raise InputError("true propensity must lie in (0, 1] on every row")
            out.update(observed=o, propensity=p, weight=o / p)
        return out
    if inputs.observed is None or inputs.feedback is None:
        raise InputError(f"method {method!r} needs feedback and observed")
    o = _as_tensor(inputs.observed, logits, "observed")
    if check and not _is_binary(o):
        raise InputError("observed must be 0/1 on every row")
    r = _as_tensor(inputs.feedback, logits, "feedback")
    r = torch.where(o > 0, r, torch.zeros_like(r))  # feedback is meaningless (may be NaN) where unobserved
    if check and not _is_binary(r):
        raise InputError("feedback must be 0/1 on every observed row")
    out.update(observed=o, feedback=r)
    if spec.weighted:
        if inputs.propensity is None:
            raise InputError(f"method {method!r} needs propensity (the clipped p-hat); fit a PropensityModel")
        p = _as_tensor(inputs.propensity, logits, "propensity")
        if check and not bool(((p > 0) & (p <= 1)).all()):
            raise InputError("propensity must lie in (0, 1] on every row (use PropensityModel.weights_)")
        out["weight"] = o / p
        out["propensity"] = p
    if spec.doubly_robust:
        if inputs.pseudo_label is None:
            raise InputError(f"method {method!r} needs pseudo_label q on every row; use noise.fit_pseudo_labels")
        q = _as_tensor(inputs.pseudo_label, logits, "pseudo_label")
        if check and not bool(((q >= 0) & (q <= 1)).all()):
            raise InputError("pseudo_label must lie in [0, 1] on every row")
        out["pseudo_label"] = q
    return out


# --------------------------------------------------------------------------------------------------- estimators
def loss_components(
    method: str,
    logits: torch.Tensor,
    inputs: LossInputs,
    *,
    rho01: float = 0.0,
    rho10: float = 0.0,
    base: str = "mse",
    check: bool = True,
) -> torch.Tensor:
    """Per-example terms split by the class they score, shape ``logits.shape + (2,)``; ``loss_terms`` = their sum.

    Column 0 is the part of the term multiplying l(z, 1) (an estimate of r* l(z, 1), the risk on true positives),
    column 1 the part multiplying l(z, 0) (an estimate of (1 - r*) l(z, 0)). Each column's expectation is a
    non-negative risk, although single rows may be negative (the surrogate's -rho l terms, the DR term (1 - o/p) e).
    ``reduce_components`` clamps each column's batch mean at zero (the non-negative correction).
    For the forward corrections (``fcorr``, ``fcorr-ips``, ``fcorr-dr``) l(pi, 1) and l(pi, 0) replace l1 and l0
    (pi = pi(z), the noisy-label probability); ``fcorr`` and ``fcorr-ips`` columns are then non-negative.
    """
    spec = methods.get(method)
    t = _prepare(method, logits, inputs, rho01, rho10, base, check)
    rho01, rho10 = t["rho01"], t["rho10"]
    if spec.components is not None:  # a registered estimator with its own kernel (causalrm.estimators.methods)
        return spec.components(logits, t, base)
    if spec.clean_labels:
        l1, l0 = _pos_neg(logits, base)
        rstar, w = t["true_label"], t.get("weight", 1.0)
        return torch.stack((w * rstar * l1, w * (1.0 - rstar) * l0), dim=-1)
    o, r = t["observed"], t["feedback"]
    if spec.correction == "forward":  # the base loss of the noisy-label probability pi(z), plain labels
        l1, l0 = _forward_pos_neg(logits, rho01, rho10, base)
    else:
        l1, l0 = _pos_neg(logits, base)
    if spec.correction == "surrogate":
        a, b = _surrogate_coefficients(r, rho01, rho10)
    else:
        a, b = r, 1.0 - r
    w = t.get("weight", o)  # o / p for weighted methods, o for naive / denoise / fcorr
    c1, c0 = w * a, w * b
    if spec.doubly_robust:
        q = t["pseudo_label"]
        c1 = c1 + (1.0 - w) * q
        c0 = c0 + (1.0 - w) * (1.0 - q)
    return torch.stack((c1 * l1, c0 * l0), dim=-1)


def loss_terms(
    method: str,
    logits: torch.Tensor,
    inputs: LossInputs,
    *,
    rho01: float = 0.0,
    rho10: float = 0.0,
    base: str = "mse",
    check: bool = True,
) -> torch.Tensor:
    """Per-example terms of ``method`` (same shape as ``logits``); ``reduce_terms`` turns them into the estimate.

    Terms (module docstring): naive o l(z, r); ips and snips (o/p) l(z, r); dr e + (o/p)(l(z, r) - e) with
    e = l(z, q); fcorr o l(pi(z), r); denoise o l~(z, r); causalrm-ips (o/p) l~(z, r); causalrm-dr
    e + (o/p)(l~(z, r) - e) with e = l(z, q); oracle l(z, r*).

    On ``q`` for causalrm-dr: E[l~(z, r) | x, r*] = l(z, r*), so the observed-row term estimates the *clean* loss;
    the imputation e must estimate the same quantity, E[l(z, r*) | x] = l(z, q) with q = P(r* = 1 | x), the
    pseudo-label of the clean label (``noise.fit_pseudo_labels``). With e built from the noisy label instead, the
    estimator would lose its "imputation correct" arm of double robustness. For ``dr`` (debias-only) the observed
    term estimates the *noisy* loss, so its faithful imputation is q = P(r = 1 | x) (``fit_pseudo_labels`` with
    rho01 = rho10 = 0); either way the estimator is unbiased for its target whenever p is right (E[o/p | x] = 1).

    Raises InputError when an input the method needs is missing or out of range (propensity in (0, 1],
    rho01 + rho10 < 1, 0/1 labels, q in [0, 1]); ``check=False`` skips the range checks (see ``_prepare``).
    """
    return loss_components(method, logits, inputs, rho01=rho01, rho10=rho10, base=base, check=check).sum(dim=-1)


def _normaliser(method: str, terms: torch.Tensor, inputs: LossInputs, dim: int | None) -> torch.Tensor | int:
    """N (number of rows) or, for SNIPS, sum(o / p)."""
    if not methods.get(method).self_normalized:
        return terms.numel() if dim is None else terms.shape[dim]
    if inputs.propensity is None:
        raise InputError(f"method {method!r} needs propensity (the clipped p-hat)")
    o = torch.as_tensor(inputs.observed, dtype=terms.dtype, device=terms.device)
    p = torch.as_tensor(inputs.propensity, dtype=terms.dtype, device=terms.device)
    w = o / p
    return w.sum() if dim is None else w.sum(dim=dim)


def _safe_div(num: torch.Tensor, den: torch.Tensor | int) -> torch.Tensor:
    if isinstance(den, int):
        return num / den
    # a batch without observed rows: SNIPS is defined as 0 there (its numerator is 0 as well)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), num * 0.0)


def reduce_terms(method: str, terms: torch.Tensor, inputs: LossInputs, *, dim: int | None = None) -> torch.Tensor:
    """Reduce per-example terms to the estimate: (1/N) sum terms; SNIPS: sum terms / sum(o / p).

    SNIPS (Swaminathan & Joachims 2015): sum_i w_i l_i / sum_i w_i with w = o/p; defined as 0 on a batch without
    observed rows. ``dim=None`` reduces everything to a scalar; ``dim=-1`` reduces the last axis only (used to
    vectorise over simulated replications).
    """
    _check_method(method)
    den = _normaliser(method, terms, inputs, dim)
    num = terms.sum() if dim is None else terms.sum(dim=dim)
    return _safe_div(num, den)


def reduce_components(
    method: str, components: torch.Tensor, inputs: LossInputs, *, nonneg: bool = True, dim: int | None = None
) -> torch.Tensor:
    """Reduce ``loss_components`` to the estimate: sum over the two class columns of max(column's reduction, 0).

    R_1 = reduce(c_1 l(z, 1)) estimates (1/N) sum r* l(z, 1) >= 0 and R_0 = reduce(c_0 l(z, 0)) estimates
    (1/N) sum (1 - r*) l(z, 0) >= 0 (each unbiased). The guarded estimate is max(R_1, 0) + max(R_0, 0), the
    non-negative risk of Kiryo et al. (2017): bounded below by 0 for every logit, equal to the unbiased R_1 + R_0
    whenever both are non-negative (the usual case away from overfitting). Its gradient step: Algorithm 1
    (``pu.nonnegative_risk``, beta = 0, gamma = 1) for the ``nonnegative`` specs, ``_guard`` for the "bce" guard of
    the others. Per-example clamping
    max(l~_i, 0) would instead bias every observed row; clamping per class risk keeps the estimate unbiased
    wherever it is not active. ``nonneg=False`` gives R_1 + R_0 = ``reduce_terms(loss_terms)``. ``dim`` as in
    ``reduce_terms`` (over rows; the trailing class axis is always summed).
    """
    if components.shape[-1] != 2:
        raise InputError("components must have a trailing axis of size 2 (from loss_components)")
    r1 = reduce_terms(method, components[..., 0], inputs, dim=dim)
    r0 = reduce_terms(method, components[..., 1], inputs, dim=dim)
    if not nonneg:
        return r1 + r0
    if _check_method(method).nonnegative:  # nnpu, causalrm-nnpu: Kiryo et al.'s Algorithm 1 step
        return pu.nonnegative_risk(torch.stack((r1, r0), dim=-1))
    return _guard(r1) + _guard(r0)


def _guard(risk: torch.Tensor) -> torch.Tensor:
    """The "bce" guard of every other method: value max(R, 0), gradient that of |R| (a negative part is pushed
    back up while the other part keeps its own gradient). It predates ``pu.nonnegative_risk``, which drops the other
    part's gradient on such a step (Kiryo et al.'s Algorithm 1); it is kept so that every earlier "bce" result
    reproduces."""
    return risk.abs() - (risk.abs() - risk.clamp_min(0.0)).detach()


def estimate(
    method: str,
    logits: torch.Tensor,
    inputs: LossInputs,
    *,
    rho01: float = 0.0,
    rho10: float = 0.0,
    base: str = "mse",
    nonneg: bool | None = None,
    check: bool = True,
) -> torch.Tensor:
    """The estimator's value on a batch (a scalar with gradient): the training loss and the validation estimate.

    ``nonneg=None`` means ``base == "bce"`` or a ``nonnegative`` spec (``nnpu``, ``causalrm-nnpu``): with "bce" the
    non-negative class-wise guard of ``reduce_components`` is on by default (pitfall 1 of METHOD.md); with "mse" the
    plain unbiased mean ``reduce_terms(loss_terms)`` is used (already bounded, see ``surrogate_bounds``) unless the
    spec asks for the guard. Passing ``nonneg=False`` with "bce" is for demonstrations only.
    ``check=False`` skips the data-dependent range checks (validate once, then train without the device syncs).
    """
    if nonneg is None:
        _check_base(base)
        nonneg = base == "bce" or _check_method(method).nonnegative
    if nonneg:
        comps = loss_components(method, logits, inputs, rho01=rho01, rho10=rho10, base=base, check=check)
        return reduce_components(method, comps, inputs, nonneg=True)
    terms = loss_terms(method, logits, inputs, rho01=rho01, rho10=rho10, base=base, check=check)
    return reduce_terms(method, terms, inputs)


def pairwise_terms(
    method: str,
    logits: torch.Tensor,
    pairs: Any,
    inputs: LossInputs,
    *,
    rho01: float = 0.0,
    rho10: float = 0.0,
    base: str = "mse",
    check: bool = True,
) -> torch.Tensor:
    """Per-pair terms of a Bradley-Terry reward model: the pointwise estimators on the logit difference.

    For pairs (a_j, b_j) of rows (``pairs``: integer (m, 2)), P(a preferred to b) = sigma(z_a - z_b) (Bradley &
    Terry 1952), so every estimator of ``loss_terms`` applies to d_j = z_{a_j} - z_{b_j} with ``inputs`` given per
    pair: feedback r_j = 1 if a_j was preferred, observed o_j = 1 if the comparison was logged, propensity p_j =
    P(o_j = 1 | pair), pseudo_label q_j ~ P(a_j truly preferred), true_label the clean preference (simulation).
    Gradients flow to both rows' logits. ``reduce_terms`` / ``reduce_components`` reduce over the pairs.

    Assumptions (documented, not checked): the logged preference is a class-conditional noisy copy of the true one
    with rates rho01 = P(r = 0 | a truly preferred), rho10 = P(r = 1 | b truly preferred), independent of the
    content; with a random order of a and b the two rates coincide (use rho01 = rho10). Whether a pair is logged
    depends on the pair only through what the propensity model sees (no unmeasured confounding), p_j > 0.
    """
    idx = torch.as_tensor(pairs, dtype=torch.long, device=logits.device)
    if idx.ndim != 2 or idx.shape[1] != 2:
        raise InputError(f"pairs must have shape (m, 2), got {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= logits.shape[0]):
        raise InputError(f"pairs index rows outside 0..{logits.shape[0] - 1}")
    diff = logits[idx[:, 0]] - logits[idx[:, 1]]
    return loss_terms(method, diff, inputs, rho01=rho01, rho10=rho10, base=base, check=check)


__all__ = [
    "BASES",
    "METHODS",
    "LossInputs",
    "base_loss",
    "check_rates",
    "estimate",
    "expected_loss",
    "forward_loss",
    "loss_components",
    "loss_terms",
    "pairwise_terms",
    "reduce_components",
    "reduce_terms",
    "surrogate_bounds",
    "surrogate_loss",
]
