"""Verdicts: is the debiased model better than the baseline on labelled rows?

The R² difference of two models with a paired bootstrap interval (weighted and stratified on audited gold labels,
:mod:`causalrm.evaluation.metrics`), its sentence and outcome; below ``MIN_DECISION_LABELS`` labels no outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.evaluation.metrics import (
    METRICS,
    audit_design,
    bootstrap_ci,
    evaluation_rows,
    honest_interval,
    is_census,
    metrics,
)

#: fewest held-out gold rows a verdict uses before it falls back to every gold row
MIN_VERDICT_ROWS = 30


#: the same for an audit's rows: below it the held-out rows alone leave intervals too wide to decide, while the rows
#: a model was trained on move the audited R² difference little (docs/RESULTS.md, "Gold audits")
MIN_AUDIT_HELD_OUT = 100


#: measured half-widths of the 95% interval of two models' audited R² difference by number of labels (docs/RESULTS.md,
#: "Gold audits": medians over 15 cells and seeds; docs/METHOD.md, "How many labels")
R2_DIFFERENCE_HALF_WIDTH: tuple[tuple[int, float], ...] = ((100, 0.10), (300, 0.06), (1000, 0.03))


#: fewest labelled rows a better / level / worse verdict is given on: the first row of ``R2_DIFFERENCE_HALF_WIDTH``
MIN_DECISION_LABELS = R2_DIFFERENCE_HALF_WIDTH[0][0]


def not_enough_labels(k: int) -> str | None:
    """None once ``k`` labelled rows allow a verdict (``MIN_DECISION_LABELS``), else the sentence that says so:
    "not enough labels yet: k labelled, about N needed for a ±x interval" (``R2_DIFFERENCE_HALF_WIDTH``)."""
    if k >= MIN_DECISION_LABELS:
        return None
    n, half = R2_DIFFERENCE_HALF_WIDTH[0]
    return f"not enough labels yet: {k} labelled, about {n} needed for a ±{half:.2f} interval of the R² difference"


# --------------------------------------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------------------------------------
#: what the corrections can and cannot change (docs/METHOD.md, "What the corrections change"); shown beside verdicts
READING_GUIDE = (
    "Class-conditional flips and selection on x leave the ranking of P(r* = 1 | x) unchanged in the limit, so the "
    "corrections mostly improve calibration (R², MSE), not ranking (AUROC): what matters for PPO-style rewards and "
    "absolute thresholds more than for group-normalised GRPO."
)


def paired_difference(
    y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, *, metric: str = "r2", n_boot: int = 1000,
    seed: int = 0, sample_weight: np.ndarray | None = None, strata: np.ndarray | None = None,
) -> dict[str, Any]:
    """``metric(b) - metric(a)`` on the same labelled rows with a paired percentile bootstrap 95% interval (both
    models scored on each resample of rows; weighted by ``sample_weight``, resampled within ``strata``). Returns
    {"metric", "a", "b", "difference", "ci95", "n"}; ``ci95`` is None when the bootstrap gives no interval of
    positive width (:func:`honest_interval`; width 0 stands for a census or two identical models)."""
    y = np.asarray(y_true, dtype=np.float64)
    a = np.asarray(prob_a, dtype=np.float64)
    b = np.asarray(prob_b, dtype=np.float64)
    weighted = sample_weight is not None
    w = np.asarray(sample_weight, dtype=np.float64) if weighted else np.ones_like(y)
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")

    def value(yy: np.ndarray, pp: np.ndarray, ww: np.ndarray) -> float:
        return metrics(yy, pp, sample_weight=ww if weighted else None)[metric]

    ci = bootstrap_ci(lambda yy, aa, bb, ww: value(yy, bb, ww) - value(yy, aa, ww), y, a, b, w, n_boot=n_boot,
                      seed=seed, strata=strata)
    ma, mb = value(y, a, w), value(y, b, w)
    return {"metric": metric, "a": ma, "b": mb, "difference": mb - ma,
            "ci95": honest_interval(ci, census=is_census(strata) or np.array_equal(a, b)), "n": int(y.size)}


def verdict(difference: dict[str, Any], *, baseline: str, debiased: str, labels: str,
            reasons: Sequence[str] = ()) -> str:
    """One sentence: is ``debiased`` better, level or worse than ``baseline`` on ``labels``, with the interval of
    :func:`paired_difference` (higher is better for r2/auroc/pearson, lower for mse/mae), and why (``reasons``:
    the diagnostics that explain it, e.g. a failed gate). Below ``MIN_DECISION_LABELS`` rows, or without an interval
    (:func:`honest_interval`), no outcome and no number: "not enough labels yet" (:func:`verdict_outcome`)."""
    metric = difference["metric"]
    outcome = verdict_outcome(difference)
    short = not_enough_labels(int(difference["n"]))
    if short is not None or difference["ci95"] is None:
        text = (f"{short or 'no interval from these labels'}: no verdict yet on whether {debiased} beats {baseline} "
                f"on {labels}")
    else:
        d, (lo, hi) = difference["difference"], difference["ci95"]
        text = (f"{debiased} is {outcome} {baseline} on {labels}: {metric.upper() if metric != 'r2' else 'R²'} "
                f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] (paired bootstrap over {difference['n']} rows)")
    if reasons:
        text += "; " + "; ".join(reasons)
    return text + "."


def verdict_outcome(difference: dict[str, Any]) -> str | None:
    """"better than", "level with" or "worse than" for a :func:`paired_difference` record, or None (no decision)
    below ``MIN_DECISION_LABELS`` rows or without an interval."""
    ci = difference.get("ci95")
    if ci is None or not_enough_labels(int(difference["n"])) is not None:
        return None
    lo, hi = ci
    gain = (lo, hi) if difference["metric"] in ("r2", "auroc", "pearson") else (-hi, -lo)  # the improvement
    return "better than" if gain[0] > 0 else "worse than" if gain[1] < 0 else "level with"


def verdict_rows(log: pl.DataFrame, split: np.ndarray | None = None, *, label: str | None = None
                 ) -> tuple[np.ndarray, str, str] | None:
    """The clean-labelled rows a verdict reads (:func:`evaluation_rows`, ``label`` as there), as (rows, column,
    description). With gold labels and the fitting roles (``split``, or the log's ``split`` column), rows the models
    were trained on are left out when at least ``MIN_VERDICT_ROWS`` held-out gold rows remain
    (``MIN_AUDIT_HELD_OUT`` for an audit's rows)."""
    found = evaluation_rows(log, label=label)
    if found is None:
        return None
    rows, column, description = found
    roles = split if split is not None else (log[schema.SPLIT].cast(pl.String).to_numpy()
                                             if schema.SPLIT in log.columns else None)
    if column == schema.GOLD_LABEL and roles is not None:
        held = rows[np.asarray(roles, dtype=object)[rows] != schema.TRAIN]
        audited = schema.INCLUSION_PROBABILITY in log.columns
        if held.size >= (MIN_AUDIT_HELD_OUT if audited else MIN_VERDICT_ROWS):
            rows, description = held, "held-out " + description.removeprefix("all ")
    return rows, column, description


def labelled_verdict(
    log: pl.DataFrame, prob_a: np.ndarray, prob_b: np.ndarray, *, baseline: str, debiased: str,
    split: np.ndarray | None = None, reasons: Sequence[str] = (), n_boot: int = 1000, seed: int = 0,
    label: str | None = None,
) -> dict[str, Any] | None:
    """The verdict of ``debiased`` (``prob_b``, one per row of ``log``) against ``baseline`` (``prob_a``) on the
    log's clean labels (:func:`verdict_rows`, ``label`` as there): the :func:`paired_difference` in R² (weighted and
    stratified for audited labels, :func:`audit_design`) and its sentence. None when the log has no clean labels."""
    found = verdict_rows(log, split, label=label)
    if found is None:
        return None
    rows, column, description = found
    y = log[column].cast(pl.Float64).to_numpy()[rows]
    w, strata = audit_design(log, rows) if column == schema.GOLD_LABEL else (None, None)
    diff = paired_difference(y, np.asarray(prob_a)[rows], np.asarray(prob_b)[rows], n_boot=n_boot, seed=seed,
                             sample_weight=w, strata=strata)
    return {**diff, "labels": description, "outcome": verdict_outcome(diff),
            "verdict": verdict(diff, baseline=baseline, debiased=debiased, labels=f"the {description}",
                               reasons=reasons)}
