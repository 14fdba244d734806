"""Evaluation: metrics against clean labels, bootstrap confidence intervals, and ranking comparison of two models.

Metrics (the paper's, on the predicted preference ``sigma(z)`` against the clean binary label ``r*``): MSE, MAE,
R² (``sklearn.metrics.r2_score`` of the probability against the 0/1 label), AUROC and Pearson's r. Clean labels are
``true_label`` on the test split of a simulated log (clean and fully observed by construction) or the audited
``gold_label`` of a real log. Intervals are percentile bootstraps over rows (or over seeds in the bench).

Audited gold labels (``causalrm.evaluation.audit``) come with their design: each labelled row's ``inclusion_probability`` pi
and ``audit_stratum``. There every metric is the weighted (Hajek) estimate for the whole impression population,
weights w = 1 / pi (``sample_weight``), and the bootstrap resamples rows within each stratum (``strata``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.atomic_io import jsonable
from causalrm.errors import InputError

METRICS = ("mse", "mae", "r2", "auroc", "pearson")
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


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


# --------------------------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------------------------
def metrics(
    y_true: Sequence[float] | np.ndarray, prob: Sequence[float] | np.ndarray, *,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float]:
    """MSE, MAE, R², AUROC and Pearson r of predicted probabilities ``prob`` against labels ``y_true`` in [0, 1].

    mse = mean((prob - y)²) (the Brier score); mae = mean(|prob - y|); r2 = 1 - SSE / SST, as
    ``sklearn.metrics.r2_score(y, prob)`` (0 for the constant base rate, negative for worse; NaN for constant y);
    auroc = the share of (positive, negative) pairs ranked right, ties 1/2, as ``roc_auc_score`` (NaN unless y is
    binary with both classes); pearson = Pearson's r (NaN for constant inputs). ``sample_weight`` (w >= 0, e.g.
    1 / inclusion probability): weighted means, SST around the weighted mean of y, pair weights w_i w_j, the
    weighted correlation (sklearn's definitions with ``sample_weight``). Plain numpy: bootstraps call it thousands
    of times.
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise InputError(f"labels ({y.size}) and predictions ({p.size}) differ in length")
    if y.size == 0:
        raise InputError("no labelled rows to evaluate on")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise InputError("labels or predictions contain NaN; drop unlabelled rows first")
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape != y.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"sample weights must be {y.size} finite non-negative numbers, not all 0")
    total = w.sum()
    dy = y - np.sum(w * y) / total
    dp = p - np.sum(w * p) / total
    sst, sxx = float(np.sum(w * dy**2)), float(np.sum(w * dp**2))
    out = {"mse": float(np.sum(w * (p - y) ** 2) / total), "mae": float(np.sum(w * np.abs(p - y)) / total)}
    out["r2"] = 1.0 - out["mse"] * total / sst if y.size > 1 and np.ptp(y) > 0 and sst > 0 else float("nan")
    binary = np.isin(y, (0.0, 1.0)).all() and 0 < y.sum() < y.size
    out["auroc"] = _auroc(y, p, w) if binary else float("nan")
    varying = y.size > 2 and np.ptp(y) > 0 and np.ptp(p) > 0 and sst > 0 and sxx > 0
    out["pearson"] = float(np.sum(w * dy * dp) / math.sqrt(sst * sxx)) if varying else float("nan")
    return out


def _auroc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Weighted AUROC of binary ``y`` (both classes present): Σ_pos w_i Σ_neg w_j (1[p_j < p_i] + 1/2 1[p_j = p_i])
    / (W_pos W_neg)."""
    values, inverse = np.unique(p, return_inverse=True)
    neg = np.bincount(inverse, weights=w * (y == 0), minlength=values.size)
    pos = np.bincount(inverse, weights=w * (y == 1), minlength=values.size)
    below = np.cumsum(neg) - neg
    denominator = pos.sum() * neg.sum()
    return float(np.sum(pos * (below + 0.5 * neg)) / denominator) if denominator > 0 else float("nan")


def bootstrap_indices(n_boot: int, n: int, rng: np.random.Generator, strata: np.ndarray | None = None) -> np.ndarray:
    """Row positions of ``n_boot`` bootstrap resamples, shape (n_boot, n): n draws with replacement from all rows,
    or, with ``strata`` (one label per row), as many draws within each stratum as it has rows (the stratified
    bootstrap of a stratified sample). Without strata the draws equal ``rng.integers(0, n, n)`` repeated."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    labels = np.asarray(strata).reshape(-1)
    if labels.size != n:
        raise ValueError(f"strata has {labels.size} labels for {n} rows")
    idx = np.empty((n_boot, n), dtype=np.int64)
    for members in group_positions(labels):
        idx[:, members] = members[rng.integers(0, members.size, size=(n_boot, members.size))]
    return idx


def resampling_strata(strata: np.ndarray | None, inclusion_probability: np.ndarray) -> np.ndarray:
    """The strata a bootstrap of audited rows resamples within: the audit's strata (one stratum without them), with
    every row labelled with certainty (pi = 1: its stratum was labelled in full) a stratum of its own, so it adds no
    sampling variance, as in a census. Strata holding a single uncertain row are collapsed into one (a stratum of one
    resamples to itself: it would add no variance although it was sampled, and a few labels would give intervals of
    width 0)."""
    pi = np.asarray(inclusion_probability, dtype=np.float64).reshape(-1)
    labels = np.full(pi.size, "", dtype=object) if strata is None else np.asarray(strata, dtype=object).reshape(-1)
    labels = labels.astype(str).astype(object)
    uncertain = pi < 1.0
    names, counts = np.unique(labels[uncertain], return_counts=True)
    single = set(names[counts == 1].tolist())
    if len(single) > 1:
        labels[uncertain & np.isin(labels, list(single))] = "collapsed:" + "+".join(sorted(single))
    certain = np.flatnonzero(~uncertain)
    labels[certain] = [f"certain:{i}" for i in certain]
    return labels


def is_census(strata: np.ndarray | None) -> bool:
    """Whether every row of a bootstrap's ``strata`` (:func:`resampling_strata`) was labelled with certainty: its
    estimates are exact for the rows they stand for and an interval of width 0 is honest."""
    return strata is not None and len(strata) > 0 and all(str(s).startswith("certain:") for s in strata)


def honest_interval(ci: Sequence[float], *, census: bool = False) -> list[float] | None:
    """``[lo, hi]`` when it is an interval a reader can trust, else None: both ends finite and a positive width
    (width 0 only for a census, :func:`is_census`); a bootstrap of a few rows collapses to one value or to NaN."""
    lo, hi = float(ci[0]), float(ci[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo or (hi == lo and not census):
        return None
    return [lo, hi]


def effective_size(sample_weight: np.ndarray) -> float:
    """Kish's effective sample size (Σ w)² / Σ w² of weighted rows (their count when the weights are equal)."""
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    return float(w.sum() ** 2 / np.sum(w**2)) if w.size and np.sum(w**2) > 0 else 0.0


def wilson_interval(rate: float, n: float, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion ``rate`` observed in ``n`` rows (``n`` may be an effective size, not an
    integer): (p + z²/2n ± z sqrt(p(1 - p)/n + z²/4n²)) / (1 + z²/n). Positive width for every n > 0, also at p = 0
    or 1 (Wilson 1927; as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` for integer counts)."""
    if not n > 0:
        return (0.0, 1.0)
    p = min(max(float(rate), 0.0), 1.0)
    zz = z * z / n
    centre = (p + zz / 2) / (1 + zz)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n)) / (1 + zz)
    return (max(0.0, centre - half), min(1.0, centre + half))


def not_enough_labels(k: int) -> str | None:
    """None once ``k`` labelled rows allow a verdict (``MIN_DECISION_LABELS``), else the sentence that says so:
    "not enough labels yet: k labelled, about N needed for a ±x interval" (``R2_DIFFERENCE_HALF_WIDTH``)."""
    if k >= MIN_DECISION_LABELS:
        return None
    n, half = R2_DIFFERENCE_HALF_WIDTH[0]
    return f"not enough labels yet: {k} labelled, about {n} needed for a ±{half:.2f} interval of the R² difference"


def group_positions(labels: np.ndarray) -> list[np.ndarray]:
    """Row positions of each distinct label, in order of the sorted labels."""
    _, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows of all arrays jointly.

    ``n_boot`` resamples (:func:`bootstrap_indices`, within ``strata`` when given) drawn by
    ``numpy.random.default_rng(seed)``; the interval is the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the
    finite replicate values (NaN, NaN if none).
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("bootstrap_ci: arrays differ in length")
    if n == 0:
        return (float("nan"), float("nan"))
    values = np.empty(n_boot)
    for b, idx in enumerate(bootstrap_indices(n_boot, n, np.random.default_rng(seed), strata)):
        try:
            values[b] = float(statistic(*(a[idx] for a in arrs)))
        except (ValueError, ZeroDivisionError, InputError):
            values[b] = np.nan
    return _percentiles(values, level)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    return (float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha)))


def metrics_ci(
    y_true: np.ndarray, prob: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
    sample_weight: np.ndarray | None = None, strata: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric of :func:`metrics` (one set of resamples for all; weighted by
    ``sample_weight``, resampled within ``strata``)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    reps = {m: [] for m in METRICS}
    for idx in bootstrap_indices(n_boot, y.size, np.random.default_rng(seed), strata):
        for k, v in metrics(y[idx], p[idx], sample_weight=None if w is None else w[idx]).items():
            reps[k].append(v)
    return {k: _percentiles(np.asarray(vals), level) for k, vals in reps.items()}


def audit_design(log: pl.DataFrame, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(weights 1 / inclusion_probability, strata to resample within, :func:`resampling_strata`) of gold-labelled
    ``rows`` of ``log`` when the labels come from an audit (``causalrm.evaluation.audit``: the log carries
    ``inclusion_probability``), else (None, None): every row counts once and resamples ignore strata."""
    if schema.INCLUSION_PROBABILITY not in log.columns:
        return None, None
    pi = log[schema.INCLUSION_PROBABILITY].cast(pl.Float64).to_numpy()[rows]
    if not np.isfinite(pi).all():
        raise InputError("some gold-labelled rows have no inclusion_probability; merge every label from the audit "
                         "file (causalrm audit) or drop the inclusion_probability column")
    strata = (log[schema.AUDIT_STRATUM].cast(pl.String).fill_null("").to_numpy()[rows]
              if schema.AUDIT_STRATUM in log.columns else None)
    return 1.0 / pi, resampling_strata(strata, pi)


def evaluation_rows(log: pl.DataFrame, *, label: str | None = None) -> tuple[np.ndarray, str, str] | None:
    """(row positions, label column, description) of the clean-labelled rows of ``log``, or None.

    A simulated log: the ``test`` split, against ``true_label``. Otherwise rows with a ``gold_label`` (weighted to
    the impression population when they come from an audit, :func:`audit_design`). ``label="gold_label"`` reads
    the gold labels even where a simulated test split exists.
    """
    if label not in (None, schema.GOLD_LABEL):
        raise ValueError(f"label must be None or {schema.GOLD_LABEL!r}, got {label!r}")
    if label is None and schema.TRUE_LABEL in log.columns and schema.SPLIT in log.columns:
        is_test = (log[schema.SPLIT] == schema.TEST).fill_null(False).to_numpy()
        has = log[schema.TRUE_LABEL].is_not_null().to_numpy()
        rows = np.flatnonzero(is_test & has)
        if rows.size:
            return rows, schema.TRUE_LABEL, "clean test split (true_label)"
    if schema.GOLD_LABEL in log.columns:
        gold = log[schema.GOLD_LABEL].cast(pl.Float64).to_numpy()
        rows = np.flatnonzero(np.isfinite(gold))
        if rows.size:
            audited = schema.INCLUSION_PROBABILITY in log.columns
            return rows, schema.GOLD_LABEL, ("audited rows (gold_label, weighted by 1 / inclusion_probability)"
                                             if audited else "all rows with an audited gold_label")
    return None


def evaluate_scores(
    log: pl.DataFrame, rewards: np.ndarray, *, split: np.ndarray | None = None, n_boot: int = 0, seed: int = 0,
) -> dict[str, Any] | None:
    """Metrics of the rewards (logits) of ``log``'s rows against its clean labels (see :func:`evaluation_rows`).

    Returns None when the log has no clean labels; otherwise ``{"label", "rows", "n", "metrics", "ci"?,
    "by_split"?}``. ``split`` (the role of each row in fitting, e.g. ``FitResult.split``) adds metrics per role for
    gold-labelled logs, so held-out rows (val/test) are reported apart from the rows the model was trained on.
    """
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if rewards.size != log.height:
        raise InputError(f"{rewards.size} rewards for a log of {log.height} rows")
    found = evaluation_rows(log)
    if found is None:
        return None
    rows, column, description = found
    y = log[column].cast(pl.Float64).to_numpy()[rows]
    prob = sigmoid(rewards[rows])
    w, strata = audit_design(log, rows) if column == schema.GOLD_LABEL else (None, None)
    out: dict[str, Any] = {"label": column, "rows": description, "n": int(rows.size),
                           "metrics": metrics(y, prob, sample_weight=w)}
    if n_boot:
        out["ci"] = metrics_ci(y, prob, n_boot=n_boot, seed=seed, sample_weight=w, strata=strata)
    if split is not None and column == schema.GOLD_LABEL:
        roles = np.asarray(split, dtype=object)[rows]
        out["by_split"] = {}
        parts = {role: roles == role for role in (schema.TRAIN, schema.VAL, schema.TEST)}
        for role, m in {**parts, "held_out": roles != schema.TRAIN}.items():
            if m.sum() >= 3:
                out["by_split"][role] = {"n": int(m.sum()), "metrics": metrics(
                    y[m], prob[m], sample_weight=None if w is None else w[m])}
    return out


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


# --------------------------------------------------------------------------------------------------------------------
# ranking comparison
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class RankingComparison:
    """Two reward models' rankings of the same responses (``a`` vs ``b``), globally and within each prompt.

    Global: Kendall τ-b and Spearman ρ between the two score vectors (``scipy.stats``); against ``gold`` when given.
    Per prompt (``pair_id``, or the prompt text): mean Kendall τ over prompts with >= 2 responses and non-constant
    scores, and the share of prompts whose top response is the same. ``top_k_overlap``: |top-k(a) ∩ top-k(b)| / k.
    ``shifts``: the responses whose global rank moved most (rank 1 = highest reward), with their texts.
    """

    names: tuple[str, str]
    n: int
    kendall: float
    spearman: float
    top_k: int
    top_k_overlap: float
    n_prompts: int
    prompt_kendall_mean: float
    prompt_top1_agreement: float
    gold_column: str | None = None
    n_gold: int = 0
    gold_kendall: dict[str, float] = field(default_factory=dict)
    gold_spearman: dict[str, float] = field(default_factory=dict)
    shifts: list[dict[str, Any]] = field(default_factory=list)
    prompt_kendall: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["names"] = list(self.names)
        return jsonable(out)

    def format(self, width: int = 60) -> str:
        a, b = self.names
        lines = [
            f"ranking comparison: {a} vs {b} on {self.n} responses",
            f"  global      Kendall tau {self.kendall:+.3f}   Spearman rho {self.spearman:+.3f}",
            f"  top-{self.top_k:<3}      overlap {self.top_k_overlap:.0%}",
            f"  per prompt  {self.n_prompts} prompts with >= 2 responses: mean Kendall tau "
            f"{_fmt(self.prompt_kendall_mean)}, same top response {_fmt_pct(self.prompt_top1_agreement)}",
        ]
        if self.gold_column:
            lines.append(f"  vs {self.gold_column} ({self.n_gold} rows): "
                         + ", ".join(f"{k} tau {_fmt(self.gold_kendall.get(k))} rho {_fmt(self.gold_spearman.get(k))}"
                                     for k in self.names))
        if self.shifts:
            lines.append(f"  largest rank shifts (rank 1 = highest reward, of {self.n}):")
            for s in self.shifts:
                text = _clip(f"{s['prompt']!s} -> {s['response']!s}", width)
                lines.append(f"    {s['rank_a']:>6} -> {s['rank_b']:<6} ({s['shift']:+d})  {text}")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"


def _fmt_pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.0%}"


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _ranks_desc(x: np.ndarray) -> np.ndarray:
    """1-based ranks, highest value first (ties broken by position, stable)."""
    order = np.argsort(-x, kind="stable")
    ranks = np.empty(x.size, dtype=np.int64)
    ranks[order] = np.arange(1, x.size + 1)
    return ranks


def compare_rankings(
    scored_a: pl.DataFrame,
    scored_b: pl.DataFrame,
    *,
    gold: str | np.ndarray | None = None,
    top_k: int = 10,
    score: str = "reward",
    names: tuple[str, str] = ("A", "B"),
    n_shifts: int | None = None,
) -> RankingComparison:
    """Compare two scored logs (columns ``response_id``, ``score``; ``pair_id``/``prompt``/``response`` optional).

    Rows are matched on ``response_id`` (inner join; InputError if none match). ``gold``: a column name of
    ``scored_a``, an array aligned with ``scored_a``'s rows, or None = ``gold_label`` then ``true_label`` of
    ``scored_a`` when present. ``n_shifts`` (default ``top_k``) largest absolute global rank shifts are listed.
    """
    from scipy.stats import kendalltau, spearmanr

    if top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {top_k}")
    for df, name in ((scored_a, names[0]), (scored_b, names[1])):
        for col in (schema.RESPONSE_ID, score):
            if col not in df.columns:
                raise InputError(f"scored log {name} has no column {col!r}; score it with `causalrm score`")
    a = scored_a.with_row_index("_row_a")
    if isinstance(gold, np.ndarray) or isinstance(gold, list):
        g = np.asarray(gold, dtype=np.float64)
        if g.size != scored_a.height:
            raise InputError(f"gold has {g.size} values for {scored_a.height} rows")
        a = a.with_columns(pl.Series("_gold", g))
        gold_column = "gold"
    else:
        if gold is None:
            gold = next((c for c in (schema.GOLD_LABEL, schema.TRUE_LABEL) if c in scored_a.columns
                         and scored_a[c].is_not_null().any()), None)
        elif gold not in scored_a.columns:
            raise InputError(f"gold column {gold!r} not in the scored log; columns: {', '.join(scored_a.columns)}")
        gold_column = gold
        if gold is not None:
            a = a.with_columns(pl.col(gold).cast(pl.Float64).alias("_gold"))
    keep_a = [c for c in ("_row_a", schema.RESPONSE_ID, score, schema.PAIR_ID, schema.PROMPT, schema.RESPONSE, "_gold")
              if c in a.columns]
    b = scored_b.select([schema.RESPONSE_ID, pl.col(score).alias("_score_b")])
    if scored_b[schema.RESPONSE_ID].n_unique() != scored_b.height or scored_a[schema.RESPONSE_ID].n_unique() != scored_a.height:
        raise InputError("response_id is not unique in a scored log; cannot match rows")
    joined = a.select(keep_a).join(b, on=schema.RESPONSE_ID, how="inner").sort("_row_a")
    n = joined.height
    if n < 2:
        raise InputError(f"the two scored logs share {n} response_id(s); compare runs scored on the same log")
    sa = joined[score].cast(pl.Float64).to_numpy()
    sb = joined["_score_b"].cast(pl.Float64).to_numpy()
    tau = float(kendalltau(sa, sb).statistic)
    rho = float(spearmanr(sa, sb).statistic)
    k = min(top_k, n)
    top_a = set(np.argsort(-sa, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-sb, kind="stable")[:k].tolist())
    overlap = len(top_a & top_b) / k

    gold_k: dict[str, float] = {}
    gold_s: dict[str, float] = {}
    n_gold = 0
    if gold_column is not None and "_gold" in joined.columns:
        g = joined["_gold"].to_numpy()
        m = np.isfinite(g)
        n_gold = int(m.sum())
        if n_gold >= 2 and np.ptp(g[m]) > 0:
            for nm, s in zip(names, (sa, sb)):
                gold_k[nm] = float(kendalltau(s[m], g[m]).statistic)
                gold_s[nm] = float(spearmanr(s[m], g[m]).statistic)
        else:
            gold_column = None if n_gold < 2 else gold_column

    # per prompt
    group_col = schema.PAIR_ID if schema.PAIR_ID in joined.columns and joined[schema.PAIR_ID].is_not_null().all() \
        else (schema.PROMPT if schema.PROMPT in joined.columns else None)
    per_prompt: list[dict[str, Any]] = []
    top1 = []
    if group_col is not None:
        keys = joined[group_col].cast(pl.String).to_numpy()
        _, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        for members in np.split(order, bounds):
            if members.size < 2:
                continue
            ga, gb = sa[members], sb[members]
            top1.append(bool(members[np.argmax(ga)] == members[np.argmax(gb)]))
            t = float(kendalltau(ga, gb).statistic) if np.ptp(ga) > 0 and np.ptp(gb) > 0 else float("nan")
            per_prompt.append({"group": str(keys[members[0]]), "n": int(members.size), "kendall": t})
    taus = np.array([p["kendall"] for p in per_prompt], dtype=np.float64)
    taus = taus[np.isfinite(taus)]

    ra, rb = _ranks_desc(sa), _ranks_desc(sb)
    shift = rb - ra
    n_shifts = top_k if n_shifts is None else n_shifts
    biggest = np.argsort(-np.abs(shift), kind="stable")[: min(n_shifts, n)]
    shifts = []
    for i in biggest:
        if shift[i] == 0:
            break
        row = {"response_id": joined[schema.RESPONSE_ID][int(i)], "rank_a": int(ra[i]), "rank_b": int(rb[i]),
               "shift": int(shift[i]), "score_a": float(sa[i]), "score_b": float(sb[i])}
        for col in (schema.PAIR_ID, schema.PROMPT, schema.RESPONSE):
            row[col] = joined[col][int(i)] if col in joined.columns else None
        shifts.append(row)
    return RankingComparison(
        names=(str(names[0]), str(names[1])), n=n, kendall=tau, spearman=rho, top_k=k, top_k_overlap=overlap,
        n_prompts=len(per_prompt), prompt_kendall_mean=float(taus.mean()) if taus.size else float("nan"),
        prompt_top1_agreement=float(np.mean(top1)) if top1 else float("nan"), gold_column=gold_column,
        n_gold=n_gold, gold_kendall=gold_k, gold_spearman=gold_s, shifts=shifts, prompt_kendall=per_prompt,
    )


# --------------------------------------------------------------------------------------------------------------------
# unbiasedness check (the paper's RQ3)
# --------------------------------------------------------------------------------------------------------------------
def unbiasedness_check(
    log: pl.DataFrame,
    predictions: dict[str, np.ndarray],
    *,
    methods: Sequence[str] = ("naive", "ips", "denoise", "causalrm-ips", "causalrm-dr"),
    propensity: np.ndarray | None = None,
    pseudo_label: np.ndarray | None = None,
    rho01: float | None = None,
    rho10: float | None = None,
    base: str = "mse",
    clip: float = 0.1,
) -> list[dict[str, Any]]:
    """Each estimator's value against the ideal loss ``(1/N) Σ ℓ(z_i, r*_i)`` for fixed prediction vectors.

    ``log`` is a simulated log (needs ``true_label``; the train + val rows are used, as in training);
    ``predictions`` maps a name (e.g. ROTATE, SKEW) to probabilities in (0, 1) per row of ``log``. Without
    ``propensity`` / flip rates the simulation's truth (``true_propensity``, the given or 0 rates) is used, and
    ``pseudo_label`` defaults to ``true_label`` (a correct imputation). Returns rows ``{"prediction", "method",
    "estimate", "ideal", "delta"}`` (``delta = estimate - ideal``; the paper reports Δ ≈ 0 for CausalRM).
    """
    import torch

    from causalrm.estimators.losses import LossInputs, estimate

    if schema.TRUE_LABEL not in log.columns:
        raise InputError("the unbiasedness check needs a simulated log with 'true_label'")
    rows = np.arange(log.height)
    if schema.SPLIT in log.columns:
        rows = np.flatnonzero((log[schema.SPLIT] != schema.TEST).fill_null(True).to_numpy())
    sub = log[rows.tolist()]
    obs = sub[schema.OBSERVED].cast(pl.Float64).to_numpy()
    fb = np.nan_to_num(sub[schema.FEEDBACK].cast(pl.Float64).to_numpy())
    rstar = sub[schema.TRUE_LABEL].cast(pl.Float64).to_numpy()
    if propensity is None:
        if schema.TRUE_PROPENSITY not in sub.columns:
            raise InputError("pass propensity= or use a simulated log with 'true_propensity'")
        propensity = sub[schema.TRUE_PROPENSITY].to_numpy()
    elif len(propensity) == log.height:
        propensity = np.asarray(propensity)[rows]
    q = rstar if pseudo_label is None else (np.asarray(pseudo_label)[rows] if len(pseudo_label) == log.height
                                            else np.asarray(pseudo_label))
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(a, dtype=np.float64))

    inputs = LossInputs(feedback=t(fb), observed=t(obs), propensity=t(np.clip(propensity, clip, 1.0)),
                        pseudo_label=t(np.clip(q, 0, 1)), true_label=t(rstar))
    out = []
    for name, pred in predictions.items():
        p = np.clip(np.asarray(pred, dtype=np.float64), 1e-6, 1 - 1e-6)
        p = p[rows] if p.size == log.height else p
        z = t(np.log(p) - np.log1p(-p))
        ideal = float(estimate("oracle", z, inputs, base=base))
        for m in methods:
            val = float(estimate(m, z, inputs, rho01=rho01 or 0.0, rho10=rho10 or 0.0, base=base, nonneg=False))
            out.append({"prediction": name, "method": m, "estimate": val, "ideal": ideal, "delta": val - ideal})
    return out


def within_prompt_kendall(groups: Any, labels: Any, scores: Any) -> dict[str, float]:
    """Mean within-prompt Kendall tau-b between ``scores`` and the clean ``labels``: the ranking a reward model gives
    the responses to one prompt (what GRPO-style group normalisation reads), apart from calibration.

    For each group (``groups``: one key per row, e.g. ``simulate.prompt_groups``) with at least two rows and both
    label values, tau_b(scores, labels) (``scipy.stats.kendalltau``, ties in the binary label handled by tau-b);
    returns ``{"prompt_kendall": mean over those groups (NaN when none), "n_prompts": their number}``.
    """
    from scipy.stats import kendalltau

    g = np.asarray(groups).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (g.size == y.size == s.size):
        raise InputError(f"groups ({g.size}), labels ({y.size}) and scores ({s.size}) differ in length")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    taus = []
    for members in np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1):
        if members.size < 2 or np.ptp(y[members]) == 0 or np.ptp(s[members]) == 0:
            continue
        taus.append(float(kendalltau(s[members], y[members]).statistic))
    taus_arr = np.asarray([t for t in taus if math.isfinite(t)], dtype=np.float64)
    return {"prompt_kendall": float(taus_arr.mean()) if taus_arr.size else float("nan"),
            "n_prompts": int(taus_arr.size)}


def gap_closed(r2_method: Any, r2_naive: Any, r2_oracle: Any) -> float:
    """The share of the naive -> oracle gap a method closes, ``(mean R²_m - mean R²_naive) / (mean R²_oracle -
    mean R²_naive)`` (arrays paired by seed, or single values); NaN when the gap is not positive. The one
    convention of the bench, the app's Compare tab and the notebooks."""
    gap = float(np.mean(r2_oracle) - np.mean(r2_naive))
    if not gap > 1e-12:
        return float("nan")
    return float((np.mean(r2_method) - np.mean(r2_naive)) / gap)
