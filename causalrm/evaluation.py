"""Evaluation: metrics against clean labels, bootstrap confidence intervals, and ranking comparison of two models.

Metrics (the paper's, on the predicted preference ``sigma(z)`` against the clean binary label ``r*``): MSE, MAE,
R² (``sklearn.metrics.r2_score`` of the probability against the 0/1 label), AUROC and Pearson's r. Clean labels are
``true_label`` on the test split of a simulated log (clean and fully observed by construction) or the audited
``gold_label`` of a real log. Intervals are percentile bootstraps over rows (or over seeds in the bench).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm import schema
from causalrm.errors import InputError

METRICS = ("mse", "mae", "r2", "auroc", "pearson")
#: fewest held-out gold rows a verdict uses before it falls back to every gold row
MIN_VERDICT_ROWS = 30


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


# --------------------------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------------------------
def metrics(y_true: Sequence[float] | np.ndarray, prob: Sequence[float] | np.ndarray) -> dict[str, float]:
    """MSE, MAE, R², AUROC and Pearson r of predicted probabilities ``prob`` against labels ``y_true`` in [0, 1].

    mse = mean((prob - y)²) (the Brier score); mae = mean(|prob - y|); r2 = ``sklearn.metrics.r2_score(y, prob)``
    (1 - SSE / SST: 0 for the constant base rate, negative for worse); auroc = ``roc_auc_score`` (NaN unless y is
    binary with both classes); pearson = ``scipy.stats.pearsonr`` (NaN for constant inputs).
    """
    from scipy.stats import pearsonr
    from sklearn.metrics import r2_score, roc_auc_score

    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise InputError(f"labels ({y.size}) and predictions ({p.size}) differ in length")
    if y.size == 0:
        raise InputError("no labelled rows to evaluate on")
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise InputError("labels or predictions contain NaN; drop unlabelled rows first")
    out = {"mse": float(np.mean((p - y) ** 2)), "mae": float(np.mean(np.abs(p - y)))}
    out["r2"] = float(r2_score(y, p)) if y.size > 1 and np.ptp(y) > 0 else float("nan")
    binary = np.isin(y, (0.0, 1.0)).all() and 0 < y.sum() < y.size
    out["auroc"] = float(roc_auc_score(y, p)) if binary else float("nan")
    out["pearson"] = float(pearsonr(y, p).statistic) if y.size > 2 and np.ptp(y) > 0 and np.ptp(p) > 0 else float("nan")
    return out


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows of all arrays jointly.

    ``n_boot`` resamples with replacement drawn by ``numpy.random.default_rng(seed)``; the interval is the
    ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the finite replicate values (NaN, NaN if none).
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("bootstrap_ci: arrays differ in length")
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            values[b] = float(statistic(*(a[idx] for a in arrs)))
        except (ValueError, ZeroDivisionError, InputError):
            values[b] = np.nan
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    return (float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha)))


def metrics_ci(
    y_true: np.ndarray, prob: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric of :func:`metrics` (one set of resamples for all)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    rng = np.random.default_rng(seed)
    reps = {m: [] for m in METRICS}
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        for k, v in metrics(y[idx], p[idx]).items():
            reps[k].append(v)
    alpha = (1.0 - level) / 2.0
    out = {}
    for k, vals in reps.items():
        v = np.asarray(vals)
        v = v[np.isfinite(v)]
        out[k] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if v.size else (math.nan, math.nan)
    return out


def evaluation_rows(log: pl.DataFrame) -> tuple[np.ndarray, str, str] | None:
    """(row positions, label column, description) of the clean-labelled rows of ``log``, or None.

    A simulated log: the ``test`` split, against ``true_label``. Otherwise rows with a ``gold_label``.
    """
    if schema.TRUE_LABEL in log.columns and schema.SPLIT in log.columns:
        is_test = (log[schema.SPLIT] == schema.TEST).fill_null(False).to_numpy()
        has = log[schema.TRUE_LABEL].is_not_null().to_numpy()
        rows = np.flatnonzero(is_test & has)
        if rows.size:
            return rows, schema.TRUE_LABEL, "clean test split (true_label)"
    if schema.GOLD_LABEL in log.columns:
        gold = log[schema.GOLD_LABEL].cast(pl.Float64).to_numpy()
        rows = np.flatnonzero(np.isfinite(gold))
        if rows.size:
            return rows, schema.GOLD_LABEL, "all rows with an audited gold_label"
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
    out: dict[str, Any] = {"label": column, "rows": description, "n": int(rows.size), "metrics": metrics(y, prob)}
    if n_boot:
        out["ci"] = metrics_ci(y, prob, n_boot=n_boot, seed=seed)
    if split is not None and column == schema.GOLD_LABEL:
        roles = np.asarray(split, dtype=object)[rows]
        out["by_split"] = {}
        for role in (schema.TRAIN, schema.VAL, schema.TEST):
            m = roles == role
            if m.sum() >= 3:
                out["by_split"][role] = {"n": int(m.sum()), "metrics": metrics(y[m], prob[m])}
        held = roles != schema.TRAIN
        if held.sum() >= 3:
            out["by_split"]["held_out"] = {"n": int(held.sum()), "metrics": metrics(y[held], prob[held])}
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
    seed: int = 0,
) -> dict[str, Any]:
    """``metric(b) - metric(a)`` on the same labelled rows with a paired percentile bootstrap 95% interval (both
    models scored on each resample of rows). Returns {"metric", "a", "b", "difference", "ci95", "n"}."""
    y = np.asarray(y_true, dtype=np.float64)
    a = np.asarray(prob_a, dtype=np.float64)
    b = np.asarray(prob_b, dtype=np.float64)
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    lo, hi = bootstrap_ci(lambda yy, aa, bb: metrics(yy, bb)[metric] - metrics(yy, aa)[metric], y, a, b,
                          n_boot=n_boot, seed=seed)
    ma, mb = metrics(y, a)[metric], metrics(y, b)[metric]
    return {"metric": metric, "a": ma, "b": mb, "difference": mb - ma, "ci95": [lo, hi], "n": int(y.size)}


def verdict(difference: dict[str, Any], *, baseline: str, debiased: str, labels: str,
            reasons: Sequence[str] = ()) -> str:
    """One sentence: is ``debiased`` better, level or worse than ``baseline`` on ``labels``, with the interval of
    :func:`paired_difference` (higher is better for r2/auroc/pearson, lower for mse/mae), and why (``reasons``:
    the diagnostics that explain it, e.g. a failed gate)."""
    metric = difference["metric"]
    d, (lo, hi) = difference["difference"], difference["ci95"]
    gain = (lo, hi) if metric in ("r2", "auroc", "pearson") else (-hi, -lo)  # interval of the improvement
    if not (math.isfinite(lo) and math.isfinite(hi)):
        outcome = "cannot be compared with"
    elif gain[0] > 0:
        outcome = "is better than"
    elif gain[1] < 0:
        outcome = "is worse than"
    else:
        outcome = "is level with"
    text = (f"{debiased} {outcome} {baseline} on {labels}: {metric.upper() if metric != 'r2' else 'R²'} "
            f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] (paired bootstrap over {difference['n']} rows)")
    if reasons:
        text += "; " + "; ".join(reasons)
    return text + "."


def labelled_verdict(
    log: pl.DataFrame, prob_a: np.ndarray, prob_b: np.ndarray, *, baseline: str, debiased: str,
    split: np.ndarray | None = None, reasons: Sequence[str] = (), n_boot: int = 1000, seed: int = 0,
) -> dict[str, Any] | None:
    """The verdict of ``debiased`` (``prob_b``, one per row of ``log``) against ``baseline`` (``prob_a``) on the
    log's clean labels (:func:`evaluation_rows`): the :func:`paired_difference` in R² and its sentence. With gold
    labels and the fitting roles (``split``, or the log's ``split`` column), rows the models were trained on are left
    out when at least ``MIN_VERDICT_ROWS`` held-out gold rows remain. None when the log has no clean labels."""
    found = evaluation_rows(log)
    if found is None:
        return None
    rows, column, description = found
    roles = split if split is not None else (log[schema.SPLIT].cast(pl.String).to_numpy()
                                             if schema.SPLIT in log.columns else None)
    if column == schema.GOLD_LABEL and roles is not None:
        held = rows[np.asarray(roles, dtype=object)[rows] != schema.TRAIN]
        if held.size >= MIN_VERDICT_ROWS:
            rows, description = held, "held-out rows with an audited gold_label"
    y = log[column].cast(pl.Float64).to_numpy()[rows]
    diff = paired_difference(y, np.asarray(prob_a)[rows], np.asarray(prob_b)[rows], n_boot=n_boot, seed=seed)
    return {**diff, "labels": description,
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
        return _finite(out)

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


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


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

    from causalrm.losses import LossInputs, estimate

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
