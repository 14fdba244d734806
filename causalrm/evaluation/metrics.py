"""Metrics against clean labels and their bootstrap confidence intervals (weighted and stratified for audits).

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
from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError

METRICS = ("mse", "mae", "r2", "auroc", "pearson")


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
    out["auroc"] = auroc(y, p, w) if binary else float("nan")
    varying = y.size > 2 and np.ptp(y) > 0 and np.ptp(p) > 0 and sst > 0 and sxx > 0
    out["pearson"] = float(np.sum(w * dy * dp) / math.sqrt(sst * sxx)) if varying else float("nan")
    return out


def auroc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Weighted AUROC of binary ``y`` (NaN unless both classes have weight): Σ_pos w_i Σ_neg w_j (1[p_j < p_i] +
    1/2 1[p_j = p_i]) / (W_pos W_neg), as ``sklearn.metrics.roc_auc_score(y, p, sample_weight=w)``."""
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


