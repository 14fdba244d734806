"""The choices among fitted candidates: ``method="auto"`` keeps a debiased model only on evidence; ``select_head``
keeps the head with the lower validation estimate. The candidates are fitted by the one orchestration
(``causalrm.workflows.orchestrate.fit_methods``); this module only chooses.

Notation as in docs/ARCHITECTURE.md. ``auto``'s candidates (``causalrm.estimators.methods.auto_candidates``, or ``FitConfig.auto_candidates``: the
baseline naive plus the estimators a user names) are fitted on the same split and the same nuisances, fitted once;
each is early-stopped on its own validation estimate as usual. Then:

1. **Admissible candidates.** A noise-aware candidate is dropped when the flip-rate gate fails (unless
   ``force_noise_correction``); a weighted one when no selection on x is detectable (its unweighted form stands for
   it: with uniform weights CausalRM-IPS is denoise and IPS is naive). ``naive`` is the baseline and always fitted.
   A candidate must have learned (``gates.learning_gate``), or beat a naive model that learned at every corner
   below: its own weighted estimate is noisier than the comparison.
2. **Evidence, audited labels first.** When the val rows carry at least ``MIN_GOLD`` audited ``gold_label`` values
   of both classes, each candidate's squared error of sigma(z) against them is compared with naive's, paired over
   ``N_BOOT`` bootstrap resamples of those rows; a candidate qualifies when the 95% interval of its difference lies
   below 0. Labels from an audit (``causalrm.evaluation.audit``: the log carries their inclusion probabilities) weigh
   1 / inclusion probability, so the errors stand for the whole population, and are resampled within strata.
3. **Otherwise, the debiased validation estimate at every corner of the nuisances' uncertainty.** The reference
   estimate is CausalRM-IPS (the unbiased estimate of the clean loss; ``denoise`` without propensities, ``ips``
   without flip rates) on the val rows, evaluated at each corner (rho01, rho10) of the flip rates' 95% bootstrap
   intervals crossed with each plausible propensity model (the one chosen by out-of-fold log loss and the runner-up
   while its log loss is within the 95% interval of the chosen one's, ``PropensityModel(model="auto")``). A candidate qualifies when it beats naive at *every* corner.
4. **Ranking, never worse than naive's.** Each candidate's AUROC of z against the noisy feedback on the observed
   val rows, weighted by 1 / p (uniform where the weights are not used), is compared with naive's over ``N_BOOT``
   paired bootstrap resamples. Under class-conditional noise the noisy AUROC is an increasing affine function of
   the clean one, AUROC(z; r) - 1/2 = (1 - a - b)(AUROC(z; r*) - 1/2) with a = P(r* = 0 | r = 1),
   b = P(r* = 1 | r = 0), and 1 - a - b > 0 whenever rho01 + rho10 < 1 (Menon et al. 2015), so the sign of the
   difference is the clean one's. A candidate whose 95% interval of the
   difference lies below zero ranks worse than naive on evidence and does not qualify.
5. The qualifying candidate with the lowest central value (audited error, or the estimate at the point estimates)
   is the calibration choice; with none, naive is kept. The test split is never read.
6. **A ranking head that ranks better.** A qualifying candidate on the ranking head (``MethodSpec.head``:
   ``naive-rank``, ``fcorr-rank``) whose val AUROC of step 4 is higher than the calibration choice's is kept instead
   (the highest such). The debiased estimate cannot see what these heads are for: each other candidate was
   early-stopped on that very estimate, so it is optimistic for them, and on the development seeds of the WildBench
   teacher cell it preferred CausalRM-IPS to a ranking head that was better on the clean test in R² as well as AUROC
   (docs/RESULTS.md, "Ranking under noise").

7. **Votes likelier on larger gaps** (A/B logs). A candidate that models who votes (``MethodSpec.models_votes``:
   ``fcorr-gap``, ``causalrm.estimators.vote_gap``) needs no calibration win: its gain is on the pairs nobody
   voted, where the val votes cannot show it. It is admitted to step 6 when the val pairs' votes, voted or not, are
   likelier on larger gaps |z_a - z_b| of naive's model (one-sided 95% Wald test of the slope,
   :func:`vote_gap_evidence`), it learned by its own gate (which asks the same of its own gaps,
   ``gates.vote_gap_gate``) and step 4 does not find it ranking below naive. Where
   the slope is not there, the vote model has nothing to read and is not kept.

Calibration qualifies (steps 2 and 3) and ranking vetoes (step 4), so ``auto`` is never kept below naive on either
beyond its interval; among the qualified, calibration decides unless a ranking head ranks better (steps 5 and 6;
docs/METHOD.md, "Choosing with auto").

Reference: A. K. Menon, B. van Rooyen, C. S. Ong, R. C. Williamson. Learning from Corrupted Binary Labels via
Class-Probability Estimation. ICML 2015.

Caveat (docs/METHOD.md, "Choosing with auto"): each candidate was early-stopped on the same val rows, so its own
estimate there is optimistic; the corners (other rates, other weights) and the requirement to win at all of them
are what keep that optimism from deciding alone.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import torch

from causalrm.data import schema
from causalrm.data.feedback_kinds import IMPLICIT, IMPLICIT_NEEDS
from causalrm.estimators import methods as registry
from causalrm.estimators.methods import BASELINE
from causalrm.nuisances.gates import Gate

#: audited val rows (of both classes) needed before they decide
MIN_GOLD = 30
N_BOOT = 1000
#: corners whose margin 1 - rho01 - rho10 falls below this are left out (the surrogate is undefined at 0)
MIN_CORNER_MARGIN = 0.05
#: the ranking evidence (step 4) reads at most this many observed val rows (a seeded subsample on larger logs)
RANK_MAX_ROWS = 20_000


def admissible(method: str, nuisances: Any, force_noise_correction: bool = False, *,
               heads_on_embeddings: bool = True) -> str | None:
    """None if ``method`` may be fitted on these nuisances, else why not (one phrase). ``heads_on_embeddings``:
    whether the backbone is a head on frozen embeddings (``Backbone.selects_head``), which the ranking head needs."""
    spec = registry.get(method)
    if spec.head == "ranking" and not heads_on_embeddings:
        return "not fitted: the ranking head is a head on frozen embeddings, not this backbone"
    missing = registry.lacking(method, nuisances.provides())
    if missing:
        return f"its nuisances could not be fitted ({', '.join(sorted(missing))})"
    flip = nuisances.gates.get("flip_rates")
    if spec.noise_aware and flip is not None and not flip.passed and not force_noise_correction:
        return "refused: " + flip.verdict
    prop = nuisances.gates.get("propensity")
    if spec.weighted and prop is not None and not prop.passed:
        return "not needed: " + prop.verdict
    return None


def _gold_rows(log: pl.DataFrame, nuisances: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None:
    """(positions among the val rows, binary gold labels, weights, strata) of the audited val rows, or None if too
    few (weights 1 and no strata unless the labels come from an audit, ``evaluation.audit_design``)."""
    from causalrm.evaluation.metrics import audit_design

    if schema.GOLD_LABEL not in log.columns:
        return None
    val_rows = nuisances.rows[nuisances.split == schema.VAL]
    gold = log[schema.GOLD_LABEL].cast(pl.Float64).to_numpy()[val_rows]
    at = np.flatnonzero(np.isfinite(gold) & (gold != 0.5))
    y = (gold[at] > 0.5).astype(np.float64)
    if min(y.sum(), y.size - y.sum()) < 1 or y.size < MIN_GOLD:
        return None
    w, strata = audit_design(log, val_rows[at])
    return at, y, w, strata


def _gold_evidence(results: dict[str, Any], at: np.ndarray, y: np.ndarray, w: np.ndarray | None, strata: Any,
                   seed: int) -> dict[str, dict[str, Any]]:
    from causalrm.evaluation.metrics import bootstrap_indices, sigmoid

    w = np.ones(y.size) if w is None else w
    err = {m: (sigmoid(r.val_logits[at]) - y) ** 2 for m, r in results.items()}
    idx = bootstrap_indices(N_BOOT, y.size, np.random.default_rng(seed), strata)
    out = {}
    for m, e in err.items():
        d = e - err[BASELINE]
        reps = (d[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
        lo, hi = np.quantile(reps, [0.025, 0.975])
        out[m] = {"gold_mse": float(np.average(e, weights=w)), "difference": float(np.average(d, weights=w)),
                  "ci95": [float(lo), float(hi)], "beats_baseline": bool(hi < 0) and m != BASELINE}
    return out


def _corners(log: pl.DataFrame, nuisances: Any, config: Any) -> tuple[str, list[dict[str, Any]], Any]:
    """The reference estimator, its corners [{rho01, rho10, weights: name}], and the val rows' LossInputs."""
    from causalrm.nuisances.container import loss_inputs

    is_val = nuisances.split == schema.VAL
    flip = nuisances.gates.get("flip_rates")
    use_rates = nuisances.rho01 is not None and (flip is None or flip.passed or config.force_noise_correction)
    prop = nuisances.gates.get("propensity")
    use_weights = nuisances.propensity_clipped is not None and (prop is None or prop.passed)
    reference = registry.plain(weighted=use_weights, noise_aware=use_rates)
    inputs = loss_inputs(log, nuisances, BASELINE, is_val)
    weights = {"uniform": None}
    if use_weights:
        weights = {"propensity": nuisances.propensity_clipped[is_val]}
        if nuisances.propensity_clipped_alt is not None:
            weights["runner-up propensity"] = nuisances.propensity_clipped_alt[is_val]
    if use_rates:
        ci = nuisances.rho_ci or {"rho01": (nuisances.rho01,) * 2, "rho10": (nuisances.rho10,) * 2}
        rates = sorted({(a, b) for a, b in itertools.product(ci["rho01"], ci["rho10"]) if a + b < 1 - MIN_CORNER_MARGIN})
        rates = [(nuisances.rho01, nuisances.rho10)] + [r for r in rates if r != (nuisances.rho01, nuisances.rho10)]
    else:
        rates = [(0.0, 0.0)]
    corners = [{"rho01": float(a), "rho10": float(b), "weights": w} for (a, b) in rates for w in weights]
    return reference, corners, (inputs, weights)


def _corner_evidence(results: dict[str, Any], log: pl.DataFrame, nuisances: Any, config: Any
                     ) -> tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]]:
    from causalrm.estimators import losses

    reference, corners, (inputs, weights) = _corners(log, nuisances, config)
    values: dict[str, list[float]] = {m: [] for m in results}
    row_rates = _corner_row_rates(log, nuisances)
    for corner in corners:
        w = weights[corner["weights"]]
        sub = dataclasses.replace(inputs, propensity=w, **row_rates(corner)).to()
        for m, r in results.items():
            z = torch.as_tensor(r.val_logits, dtype=torch.float32)
            values[m].append(float(losses.estimate(reference, z, sub, rho01=corner["rho01"], rho10=corner["rho10"],
                                                   base=config.base_loss, check=False)))
    base = np.asarray(values[BASELINE])
    out = {m: {"estimates": v, "central": v[0], "beats_baseline": m != BASELINE and bool(np.all(np.asarray(v) < base))}
           for m, v in values.items()}
    return reference, corners, out


def _corner_row_rates(log: pl.DataFrame, nuisances: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Per-row rates of a corner on a mixed log's stacked val rows (``causalrm.data.mixed_feedback``): the corner moves
    the thumbs' rates, and the event rows keep theirs; no per-row rates on any other log."""
    if nuisances.row_rates is None:
        return lambda corner: {}
    from causalrm.data.mixed_feedback import SIGNAL, THUMBS

    is_val = nuisances.split == schema.VAL
    thumbs = log[SIGNAL].to_numpy()[nuisances.rows[is_val]] == THUMBS
    r01, r10 = (r[is_val] for r in nuisances.row_rates)
    return lambda corner: {"rho01": np.where(thumbs, corner["rho01"], r01),
                           "rho10": np.where(thumbs, corner["rho10"], r10)}


def ranking_evidence(results: dict[str, Any], log: pl.DataFrame, nuisances: Any, config: Any
                     ) -> dict[str, dict[str, Any]]:
    """Step 4 of the module docstring: per candidate ``{"val_auroc", "auroc_difference", "auroc_ci95",
    "ranks_below_baseline"}`` on the observed val rows (AUROC of z against r, weights 1 / p where ``_corners`` uses
    them, paired bootstrap against naive's, seeded by ``config.seed``; at most ``RANK_MAX_ROWS`` of them, a seeded
    subsample beyond); empty when those rows lack a class."""
    from causalrm.evaluation.metrics import auroc, bootstrap_indices

    _, corners, (inputs, weights) = _corners(log, nuisances, config)
    observed = np.asarray(inputs.observed, dtype=np.float64) == 1
    r = np.asarray(inputs.feedback, dtype=np.float64)[observed]
    p = weights[corners[0]["weights"]]
    w = np.ones(r.size) if p is None else 1.0 / np.asarray(p, dtype=np.float64)[observed]
    if r.size == 0 or not 0 < r.sum() < r.size:
        return {}
    z = {m: np.asarray(res.val_logits, dtype=np.float64)[observed] for m, res in results.items()}
    rng = np.random.default_rng(config.seed)
    if r.size > RANK_MAX_ROWS:
        keep = np.sort(rng.choice(r.size, RANK_MAX_ROWS, replace=False))
        r, w, z = r[keep], w[keep], {m: v[keep] for m, v in z.items()}
        if not 0 < r.sum() < r.size:
            return {}
    idx = bootstrap_indices(N_BOOT, r.size, rng)
    boot = {m: np.array([auroc(r[i], v[i], w[i]) for i in idx]) for m, v in z.items()}
    out = {}
    for m, v in z.items():
        d = boot[m] - boot[BASELINE]
        lo, hi = np.nanquantile(d, [0.025, 0.975])
        value = auroc(r, v, w)
        out[m] = {"val_auroc": value, "auroc_difference": value - auroc(r, z[BASELINE], w),
                  "auroc_ci95": [float(lo), float(hi)], "ranks_below_baseline": m != BASELINE and bool(hi < 0)}
    return out


def vote_gap_evidence(results: dict[str, Any], log: pl.DataFrame, nuisances: Any, config: Any
                      ) -> dict[str, Any] | None:
    """Step 7 of the module docstring: on an A/B log, are the val pairs' votes likelier on larger reward gaps under
    naive's model (trained without a vote model)? ``vote_gap.votes_follow_gaps`` over the val pairs, voted or not:
    ``{"beta", "se", "z", "passed"}``; None on a pointwise log, without naive, or when every val pair was voted (or
    none)."""
    from causalrm.data.pairwise import is_pair_log
    from causalrm.estimators.vote_gap import votes_follow_gaps

    if BASELINE not in results or not is_pair_log(log):
        return None
    _, _, (inputs, _) = _corners(log, nuisances, config)
    return votes_follow_gaps(results[BASELINE].val_logits, inputs.observed)


def pick(candidates: dict[str, dict[str, Any]], central: str) -> str:
    """The rule of ``auto`` over a ``choice["candidates"]`` record: among the fitted candidates that beat naive on
    every corner (``beats_baseline``), do not rank below it on evidence (``ranks_below_baseline``, step 4) and
    learned (or naive learned: a candidate that beats naive everywhere learned if naive did, even when its own
    weighted, noisier estimate cannot tell it from a constant prediction; ``gates.learning_gate`` is one-sided 95%
    per model), the one with the lowest ``central`` value; else naive. Step 6: a qualifying candidate on the ranking
    head (``MethodSpec.head``) whose ``val_auroc`` is higher than that choice's replaces it (the highest such); step
    7: so may a vote-model candidate (``votes_on_gap``) that learned by its own gate (``gates.vote_gap_gate``: the
    val votes follow its gaps too) and does not rank below naive."""
    naive_learned = candidates[BASELINE].get("learned", True)
    sound = [m for m, c in candidates.items() if m != BASELINE and c.get("fitted")
             and not c.get("ranks_below_baseline", False) and (c["learned"] or naive_learned)]
    qualified = [m for m in sound if candidates[m]["beats_baseline"]]
    calibrated = min(qualified, key=lambda m: candidates[m][central]) if qualified else BASELINE
    floor = candidates[calibrated].get("val_auroc", np.nan)
    voting = [m for m in sound if candidates[m].get("votes_on_gap", False) and candidates[m]["learned"]]
    ranked = [m for m in sound if (m in qualified or m in voting)
              and registry.is_method(m) and registry.get(m).head == "ranking"
              and candidates[m].get("val_auroc", np.nan) > floor]
    return max(ranked, key=lambda m: candidates[m]["val_auroc"]) if ranked else calibrated


def choice_record(results: dict[str, Any], log: pl.DataFrame, nuisances: Any, config: Any,
                  skipped: dict[str, str]) -> dict[str, Any]:
    """The ``choice`` record: {"method", "reason", "evidence", "central", "candidates": {name: {...}}} (module
    docstring; ``central`` names the candidates' key that ``pick`` ranks by)."""
    gold = _gold_rows(log, nuisances)
    ranking = ranking_evidence(results, log, nuisances, config)
    gap = vote_gap_evidence(results, log, nuisances, config)
    for m in results:
        if registry.is_method(m) and registry.get(m).models_votes and m in ranking:
            ranking[m] = {**ranking[m], "votes_on_gap": gap is not None and gap["passed"]}
    if nuisances.diagnostics.get("feedback_kind") == IMPLICIT:
        return _select_implicit(results, log, nuisances, config, skipped, gold, ranking)
    if gold is not None:
        weighted = ", weighted by 1 / inclusion probability" if gold[2] is not None else ""
        kind = (f"audited gold labels on {gold[1].size} val rows (squared error of sigma(z){weighted}, paired "
                "bootstrap)")
        evidence = _gold_evidence(results, *gold, seed=config.seed)
        central = "gold_mse"
        corners_info: dict[str, Any] = {}
    else:
        reference, corners, evidence = _corner_evidence(results, log, nuisances, config)
        kind = (f"the {reference} estimate on the val rows at {len(corners)} corner(s) of the flip-rate intervals "
                "and propensity models")
        central = "central"
        corners_info = {"reference": reference, "corners": corners}
    record = _choice(results, nuisances, skipped, evidence, kind, central, corners_info, ranking)
    if gap is not None:
        record["vote_gap"] = gap
        if registry.get(record["method"]).models_votes:
            record["reason"] = (f"{record['method']} ranks the val votes best (AUROC "
                                f"{record['candidates'][record['method']]['val_auroc']:.3f}), and the val pairs' "
                                f"votes are likelier on larger reward gaps (slope {gap['beta']:.2f} per sd, "
                                f"z = {gap['z']:.1f})")
    return record


def _select_implicit(results: dict[str, Any], log: pl.DataFrame, nuisances: Any, config: Any,
                     skipped: dict[str, str], gold: Any, ranking: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``auto`` on implicit feedback: naive's sigma(z) estimates P(event | x), not P(good | x), and an audit puts
    only its val share (about a fifth) where selection may read it, so either evidence may keep a candidate: the
    corner rule (the noise-corrected estimate at every corner of the rates' intervals) or the audited val rows
    (paired interval below zero); the audited rows veto a candidate that is worse than naive there (interval above
    zero)."""
    reference, corners, evidence = _corner_evidence(results, log, nuisances, config)
    kind = (f"the {reference} estimate on the val rows at {len(corners)} corner(s) of the event rates' intervals "
            "(implicit feedback)")
    if gold is not None:
        audited = _gold_evidence(results, *gold, seed=config.seed)
        kind += f" or the {gold[1].size} audited val rows, and not worse on those"
        for m, e in evidence.items():
            e["gold"] = audited[m]
            e["beats_baseline"] = ((e["beats_baseline"] or audited[m]["beats_baseline"])
                                   and not audited[m]["ci95"][0] > 0)
    return _choice(results, nuisances, skipped, evidence, kind, "central",
                   {"reference": reference, "corners": corners}, ranking)


def _choice(results: dict[str, Any], nuisances: Any, skipped: dict[str, str], evidence: dict[str, dict[str, Any]],
            kind: str, central: str, corners_info: dict[str, Any], ranking: dict[str, dict[str, Any]]
            ) -> dict[str, Any]:
    candidates: dict[str, dict[str, Any]] = {m: {"fitted": False, "reason": why} for m, why in skipped.items()}
    for m, r in results.items():
        learned = r.learned.passed if r.learned is not None else True
        candidates[m] = {"fitted": True, "learned": learned, "best_epoch": r.history.best_epoch,
                         "best_val_estimate": r.history.best_val_estimate, **evidence[m], **ranking.get(m, {})}
    method = pick(candidates, central)
    if method != BASELINE:
        reason = f"{method} beats naive on {kind}"
    else:
        beaten = [m for m in results if m != BASELINE]
        by_reason: dict[str, list[str]] = {}
        for m, why in skipped.items():
            by_reason.setdefault(why, []).append(m)
        not_fitted = "; ".join(f"{', '.join(ms)} {why}" for why, ms in by_reason.items())
        worse = [m for m in beaten if candidates[m].get("ranks_below_baseline")]
        reason = "; ".join(part for part in (
            f"{', '.join(beaten)} did not beat naive on {kind}" if beaten else "",
            f"{', '.join(worse)} ranked below naive on the val rows (AUROC against the feedback, 95% interval below 0)"
            if worse else "",
            not_fitted) if part)
    if method == BASELINE and nuisances.diagnostics.get("feedback_kind") == IMPLICIT and nuisances.rho01 is None:
        reason += ("; on implicit feedback naive's sigma(z) is P(event | x): it ranks the impressions but is not a "
                   f"calibrated P(good | x); to calibrate, {IMPLICIT_NEEDS}")
    if method == BASELINE and not candidates[method].get("learned", True):
        reason += f"; {method} did not learn either: its scores are not a usable reward"
    return {"requested": "auto", "method": method, "reason": reason, "evidence": kind, "central": central,
            **corners_info, "candidates": candidates}


def select_method(results: dict[str, Any], log: pl.DataFrame, nuisances: Any, config: Any,
                  skipped: dict[str, str]) -> Any:
    """``auto``'s choice among its fitted candidates: the chosen ``FitResult`` with ``choice`` set (the record of
    :func:`choice_record`; the nuisances' fallback errors as ``nuisance_errors``), ``candidates`` holding every
    fitted candidate's result (the baseline included) and ``seconds["total"]`` their sum. ``skipped``: the
    candidates not fitted, with why (``admissible``)."""
    choice = choice_record(results, log, nuisances, config, skipped)
    errors = nuisances.diagnostics.get("nuisance_errors")
    if errors:
        choice["nuisance_errors"] = errors
    chosen = dataclasses.replace(results[choice["method"]], choice=choice, candidates=results)
    if chosen.learned is not None and not chosen.learned.passed and choice["method"] != BASELINE:
        chosen.learned = Gate("learned", True, f"learned: it beats naive, which learned, on {choice['evidence']} "
                              f"(its own estimate alone was inconclusive: {chosen.learned.verdict})",
                              {**chosen.learned.evidence, "by_comparison_with": BASELINE})
    chosen.seconds = {**chosen.seconds, "total": sum(r.seconds["total"] for r in results.values())}
    return chosen


def selects_heads(config: Any) -> bool:
    """Whether a fit of ``config`` trains several heads and keeps one (:func:`head_candidates`)."""
    return bool(config.select_head) or registry.get(config.method).head == "ranking"


def head_candidates(config: Any) -> list[Any]:
    """The heads a fit trains on the same nuisances and chooses among (:func:`choose_head`): for a method on the
    ranking head (``MethodSpec.head``), that head at each of ``RANKING_DECAYS``; for ``select_head``, the configured
    MLP and a linear head (``hidden=()``, lr ``LINEAR_HEAD_LR``)."""
    from causalrm.config import LINEAR_HEAD_LR, RANKING_DECAYS

    if registry.get(config.method).head == "ranking":
        return [config.ranking_head(decay) for decay in RANKING_DECAYS]
    return [config.replace(select_head=False), config.replace(select_head=False, hidden=(), lr=LINEAR_HEAD_LR)]


def choose_head(results: list[Any]) -> Any:
    """The choice among the fitted heads (:func:`head_candidates`, in order): the highest best validation criterion
    where the heads stopped on it (``stop_on="ranking"``: the IPS-weighted AUROC against the noisy val feedback), else
    the lowest best validation estimate; ties go to the first. ``selection`` (the candidates' values) is set and
    ``seconds["total"]`` is their sum; its ``config`` is the chosen head's, so refitting it reproduces the model."""
    ranking = results[0].config.stop_on == "ranking"

    def value(i: int) -> float:
        h = results[i].history
        v = -h.best_val_ranking if ranking else h.best_val_estimate
        return v if np.isfinite(v) else np.inf

    best = min(range(len(results)), key=value)
    chosen = results[best]
    chosen.seconds = {**chosen.seconds, "total": sum(r.seconds["total"] for r in results)}
    criterion = ("highest IPS-weighted AUROC against the noisy val feedback" if ranking
                 else f"lowest best {chosen.history.val_method} estimate on the val split")
    chosen.selection = {
        "criterion": criterion,
        "chosen": best,
        "candidates": [{"hidden": list(r.config.hidden), "lr": r.config.lr, "weight_decay": r.config.weight_decay,
                        "best_val_estimate": r.history.best_val_estimate,
                        "best_val_ranking": r.history.best_val_ranking, "best_epoch": r.history.best_epoch}
                       for r in results],
    }
    return chosen


__all__ = ["MIN_GOLD", "admissible", "choice_record", "choose_head", "head_candidates",
           "pick", "ranking_evidence", "select_method"]
