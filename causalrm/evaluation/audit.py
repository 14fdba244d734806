"""Gold audits: which rows to label, reading the labels back, and what they estimate for the whole log.

A few hundred audited labels settle what a real log cannot: the flip rates (anchors fail where the representation is
weak) and whether a debiased model is better than naive. The design below serves both uses and gives every
proposed row a known inclusion probability, so the labelled rows stand for the whole impression population.

Notation as in docs/ARCHITECTURE.md, plus

    U       the auditable rows: every row whose split is not ``test`` (test rows are held out by definition)
    group   a row's feedback: ``up`` (observed, r = 1), ``down`` (observed, r = 0), ``none`` (unobserved)
    f       the cross-fitted proxy of P(r = 1 | x) (``noise.cross_fitted_proxy``, weighted by 1 / p_hat as in
            fitting); p_hat the cross-fitted propensity (logistic; ``logged_propensity`` where the log has it)
    h       a stratum; N_h its rows in U, n_h of them proposed, m_h labelled
    pi      inclusion probability: n_h / N_h for a proposed row, m_h / N_h for a labelled one; w = 1 / pi

The design (:func:`propose`), fixed before any label is seen:

1. **Strata** (:func:`audit_strata`). ``up`` and ``down`` rows are each cut into bins of f at the quantiles
   ``FLIP_EDGES``, the smallest bin where feedback and proxy disagree most (``up``: lowest f, ``down``: highest f):
   flipped labels concentrate there. ``none`` rows are cut at the median of p_hat and at the median of f: the
   population's propensity and score range. Labels ``up:1`` ... ``up:4`` (1 = lowest f), ``down:1`` ...
   ``down:4`` (1 = highest f), ``none:1`` ... ``none:4`` (low / high p_hat, then low / high f).
2. **Allocation** (:func:`allocation_sequence`). Target shares t_h = (1 - FLIP_SHARE) N_h / N_U (the population
   part, proportional) + FLIP_SHARE / H_fb for each of the H_fb feedback strata (the flip-rate part, equal). One
   row per stratum first (so every row of U has pi > 0), then each further row to the stratum with the largest
   t_h / (n_h + 1/2) (Sainte-Laguë's divisor rule), at most N_h. The rule is house-monotone: the proposal of N rows
   is the first N rows of the proposal of any larger N under the same seed.
3. **Rows.** Within a stratum, rows in the order of seeded uniform keys (simple random sampling without
   replacement), so pi = n_h / N_h exactly. The file lists rows in the order they were allocated: labelling from
   the top, any prefix of at least H rows is itself the design of its size.

Reading labels back (:func:`merge_labels`): a proposed row left unlabelled (skipped) counts as missing at random
within its stratum, so a labelled row's pi is m_h / N_h (N_h is the file's ``audit_stratum_rows``).

Estimates, weighted by w = 1 / pi (Hájek ratio estimators):
rho01 = Σ w [gold = 1, r = 0] / Σ w [gold = 1] over labelled observed rows, rho10 likewise
(``FlipRateEstimator(method="gold")`` given ``inclusion_probability``; Wilson score intervals at the Kish effective
size); each model's MSE, R² and AUROC (``evaluation.metrics`` with sample weights) and its within-prompt pair
agreement (:func:`pair_agreement`) for the whole population U (:func:`audited_evaluation`; percentile bootstraps
that resample the labelled rows within strata, ``evaluation.bootstrap_indices``, strata of a single labelled row
collapsed into one, ``metrics.resampling_strata``). Below ``verdicts.MIN_DECISION_LABELS`` labelled rows the
evaluation says so and gives no verdict (``verdicts.not_enough_labels``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.pairwise import RESPONSE_A, RESPONSE_B, is_pair_log, nuisance_features
from causalrm.errors import InputError

GROUPS: tuple[str, ...] = ("up", "down", "none")
#: share of the audit spent on the flip-rate part (equal over the feedback strata); the rest is proportional
FLIP_SHARE = 0.5
#: quantile edges of f cutting each feedback group into four bins, the first (smallest) where flips concentrate
FLIP_EDGES: tuple[float, ...] = (0.1, 0.3, 0.6)
#: fewest rows of each feedback value the proxy needs to stratify the audit
MIN_PER_FEEDBACK = 5
#: the columns of a label file, in order
LABEL_COLUMNS: tuple[str, ...] = (
    schema.RESPONSE_ID, schema.PROMPT, schema.RESPONSE, schema.FEEDBACK, schema.GOLD_LABEL,
    schema.INCLUSION_PROBABILITY, schema.AUDIT_STRATUM, schema.AUDIT_STRATUM_ROWS,
)


# --------------------------------------------------------------------------------------------------------------------
# the design
# --------------------------------------------------------------------------------------------------------------------
def _ranks(v: np.ndarray) -> np.ndarray:
    """Fractional ranks in [0, 1), ties broken by position."""
    v = np.asarray(v, dtype=np.float64)
    ranks = np.empty(v.size)
    ranks[np.argsort(v, kind="stable")] = np.arange(v.size) / max(v.size, 1)
    return ranks


def audit_strata(observed: np.ndarray, feedback: np.ndarray, score: np.ndarray,
                 propensity: np.ndarray | None = None) -> np.ndarray:
    """The stratum label of every row (module docstring, step 1): ``up:k`` / ``down:k`` by bins of ``score`` (f)
    within the feedback group, ``none:k`` by the medians of ``propensity`` (p_hat) and ``score``."""
    o = np.asarray(observed).reshape(-1) == 1
    r = np.asarray(feedback, dtype=np.float64).reshape(-1)
    f = np.asarray(score, dtype=np.float64).reshape(-1)
    labels = np.empty(o.size, dtype=object)
    for group, mask, direction in (("up", o & (r == 1), 1.0), ("down", o & (r == 0), -1.0)):
        bins = np.searchsorted(FLIP_EDGES, _ranks(direction * f[mask]), side="right") + 1
        labels[mask] = [f"{group}:{b}" for b in bins]
    none = ~o
    if none.any():
        if propensity is None:
            raise InputError("the audit needs propensities to stratify the rows without feedback")
        p = np.asarray(propensity, dtype=np.float64).reshape(-1)[none]
        bins = 1 + 2 * (_ranks(p) >= 0.5) + (_ranks(f[none]) >= 0.5)
        labels[none] = [f"none:{b}" for b in bins]
    return labels


def _stratum_order(label: str) -> tuple[int, str]:
    group, _, rest = label.partition(":")
    return GROUPS.index(group) if group in GROUPS else len(GROUPS), rest


def allocation_sequence(targets: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    """The stratum of each of ``n`` proposed rows in order (module docstring, step 2): one per stratum, then
    Sainte-Laguë on ``targets`` (shares) with at most ``sizes`` rows per stratum. Needs len(targets) <= n <=
    sum(sizes)."""
    targets = np.asarray(targets, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.int64)
    if not len(targets) <= n <= sizes.sum():
        raise ValueError(f"n must lie in [{len(targets)}, {sizes.sum()}], got {n}")
    alloc = np.ones(len(targets), dtype=np.int64)
    sequence = list(range(len(targets)))
    while len(sequence) < n:
        h = int(np.argmax(np.where(alloc < sizes, targets / (alloc + 0.5), -np.inf)))
        alloc[h] += 1
        sequence.append(h)
    return np.asarray(sequence, dtype=np.int64)


def draw(strata: np.ndarray, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The design's proposal of ``n`` rows among rows labelled by ``strata`` (:func:`audit_strata`).

    Returns (positions in proposal order, inclusion probability n_h / N_h of each, N_h of each).
    """
    labels = np.asarray(strata, dtype=object)
    names = sorted(set(labels.tolist()), key=_stratum_order)
    if not len(names) <= n <= labels.size:
        raise InputError(f"--n {n}: the audit needs at least one row per stratum ({len(names)}) and at most the "
                         f"{labels.size} auditable rows; choose --n between {len(names)} and {labels.size}")
    index = {name: h for h, name in enumerate(names)}
    code = np.array([index[x] for x in labels], dtype=np.int64)
    sizes = np.bincount(code, minlength=len(names))
    feedback = np.array([not name.startswith("none") for name in names])
    targets = (1 - FLIP_SHARE) * sizes / sizes.sum() + FLIP_SHARE * feedback / feedback.sum()
    sequence = allocation_sequence(targets, sizes, n)
    keys = np.random.default_rng(seed).random(labels.size)
    members = [np.flatnonzero(code == h) for h in range(len(names))]
    members = [m[np.argsort(keys[m], kind="stable")] for m in members]
    taken = np.zeros(len(names), dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    for k, h in enumerate(sequence):
        rows[k] = members[h][taken[h]]
        taken[h] += 1
    return rows, taken[code[rows]] / sizes[code[rows]], sizes[code[rows]]


def auditable_rows(log: pl.DataFrame) -> np.ndarray:
    """Positions of the rows an audit may propose: every row whose split is not ``test``."""
    if schema.SPLIT not in log.columns:
        return np.arange(log.height)
    return np.flatnonzero((log[schema.SPLIT] != schema.TEST).fill_null(True).to_numpy())


def auditable_features(X: Any, n: int, rows: np.ndarray) -> Any:
    """Rows ``rows`` of the embeddings ``X`` (``n`` rows), checked (shape, finite values) without full-size copies:
    a memory-mapped / lazy ``X`` (``causalrm.data.rowmatrix.is_lazy``) is checked chunk by chunk and returned as a
    ``RowView`` (rows gathered by index when a model reads them); an in-memory float32 array is checked in place and
    only copied when ``rows`` is a strict subset."""
    from causalrm.data.rowmatrix import RowView, is_lazy
    from causalrm.nuisances.checks import _shape_checked

    _shape_checked(X, n)  # InputError naming the row with NaN / inf; chunked for lazy matrices
    every = rows.size == n and bool(np.all(rows == np.arange(n)))
    if is_lazy(X):
        return X if every and isinstance(X, RowView) else RowView(X, None if every else rows)
    X = np.asarray(X, dtype=np.float32)  # no copy when X is already float32 (the embedder's and files' dtype)
    return X if every else X[rows]


def design_strata(log: pl.DataFrame, X: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(auditable rows, their strata): p_hat and f fitted on the auditable rows (module docstring, step 1).
    ``X``: embeddings of every row of ``log``."""
    from causalrm.data.mixed_feedback import event_reading
    from causalrm.nuisances.propensity import PropensityModel
    from causalrm.nuisances.proxy import cross_fitted_proxy

    log = event_reading(log)  # a mixed log: the design covers every impression through its events
    if is_pair_log(log):  # an A/B log: strata by the pairs' nuisance features (causalrm.data.pairwise)
        X = nuisance_features(X)
    rows = auditable_rows(log)
    if rows.size == 0:
        raise InputError("every row of the log is a test row; the audit proposes train/val rows only")
    Xu = auditable_features(X, log.height, rows)
    o = log[schema.OBSERVED].cast(pl.Float64).to_numpy()[rows]
    r = np.nan_to_num(log[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows])
    counts = {value: int(np.sum((o == 1) & (r == value))) for value in (1, 0)}
    if min(counts.values()) < MIN_PER_FEEDBACK:
        raise InputError(f"the auditable rows hold {counts[1]} positive and {counts[0]} negative feedback; the "
                         f"audit's strata need at least {MIN_PER_FEEDBACK} of each")
    propensity = None
    if (o == 0).any():
        logged = (log[schema.LOGGED_PROPENSITY].to_numpy()[rows] if schema.LOGGED_PROPENSITY in log.columns
                  else None)
        if logged is not None and np.isfinite(logged).all():
            propensity = logged
        else:
            propensity = PropensityModel(model="logistic", random_state=seed).fit(Xu, o).propensity_
    weight = None if propensity is None else 1.0 / np.clip(propensity, 0.1, 1.0)
    score, _, _ = cross_fitted_proxy(Xu, r, o, sample_weight=weight, random_state=seed)
    return rows, audit_strata(o, r, score, propensity)


def proposal_table(log: pl.DataFrame, rows: np.ndarray, strata: np.ndarray, n: int, *, seed: int = 0
                   ) -> pl.DataFrame:
    """The label file of the design's ``n`` rows among ``rows`` of ``log`` with their ``strata``
    (:func:`design_strata`): columns ``LABEL_COLUMNS``, rows in proposal order, ``gold_label`` empty. An A/B log's
    pairs show ``response_a`` and ``response_b`` for ``response`` (gold_label 1 = a better, 0 = b better)."""
    order, pi, sizes = draw(strata, n, seed=seed)
    picked = log[rows[order].tolist()]
    return pl.DataFrame([
        picked[schema.RESPONSE_ID], picked[schema.PROMPT],
        *([picked[schema.RESPONSE]] if schema.RESPONSE in picked.columns else [picked[RESPONSE_A], picked[RESPONSE_B]]),
        picked[schema.FEEDBACK],
        pl.Series(schema.GOLD_LABEL, [None] * n, dtype=pl.Float64),
        pl.Series(schema.INCLUSION_PROBABILITY, pi, dtype=pl.Float64),
        pl.Series(schema.AUDIT_STRATUM, np.asarray(strata)[order].tolist(), dtype=pl.String),
        pl.Series(schema.AUDIT_STRATUM_ROWS, sizes, dtype=pl.Int64),
    ])


def propose(log: pl.DataFrame, X: np.ndarray, n: int, *, seed: int = 0) -> pl.DataFrame:
    """The label file of an audit of ``n`` rows of ``log`` (:func:`design_strata`, then :func:`proposal_table`).
    ``X``: embeddings of every row of ``log`` (for p_hat and f)."""
    rows, strata = design_strata(log, X, seed=seed)
    return proposal_table(log, rows, strata, n, seed=seed)


def carry_labels(proposal: pl.DataFrame, previous: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """``proposal`` with the labels of an earlier label file (``previous``, from :func:`causalrm.data.io.readers.read_labels`)
    kept; every earlier row must be in the new proposal (same log and seed, an equal or larger N)."""
    ids = proposal[schema.RESPONSE_ID]
    missing = previous.filter(~pl.col(schema.RESPONSE_ID).is_in(ids.to_list()))
    if missing.height:
        raise InputError(f"{source}: {missing.height} of its {previous.height} rows (e.g. "
                         f"{missing[schema.RESPONSE_ID][0]!r}) are not in the new proposal: they were drawn from "
                         "another log, with another seed or for a larger N; propose with that seed and at least that "
                         "N, or start a new label file")
    labels = dict(zip(previous[schema.RESPONSE_ID].to_list(), previous[schema.GOLD_LABEL].to_list()))
    return proposal.with_columns(pl.Series(schema.GOLD_LABEL, [labels.get(i) for i in ids.to_list()],
                                           dtype=pl.Float64))


# --------------------------------------------------------------------------------------------------------------------
# labels back into the log
# --------------------------------------------------------------------------------------------------------------------
def labelled_probability(labels: pl.DataFrame) -> np.ndarray | None:
    """pi of each labelled row of ``labels`` (rows with a gold_label, in order): m_h / N_h where the file has
    strata and their sizes, the file's ``inclusion_probability`` where it has only that, None (every row weighs
    the same) where it has neither."""
    done = labels.filter(pl.col(schema.GOLD_LABEL).is_not_null())
    if schema.AUDIT_STRATUM in done.columns and schema.AUDIT_STRATUM_ROWS in done.columns:
        m = done[schema.AUDIT_STRATUM].value_counts(name="m")
        per_row = done[schema.AUDIT_STRATUM].replace_strict(m[schema.AUDIT_STRATUM], m["m"])
        return (per_row / done[schema.AUDIT_STRATUM_ROWS]).cast(pl.Float64).to_numpy()
    if schema.INCLUSION_PROBABILITY in done.columns:
        return done[schema.INCLUSION_PROBABILITY].to_numpy()
    return None


def merge_labels(log: pl.DataFrame, labels: pl.DataFrame, *, source: str = "the label file") -> pl.DataFrame:
    """``log`` with the audit's labels joined by ``response_id``: ``gold_label`` (1 / 0 on labelled rows, null
    elsewhere), ``inclusion_probability`` (:func:`labelled_probability`) and ``audit_stratum`` on labelled rows.

    ``labels``: a label table (:func:`causalrm.data.io.readers.read_labels`, or :func:`propose` filled in). A ``gold_label`` the
    log already had is replaced, with a warning unless it holds the same labels: labels of unknown provenance would
    bias the weighted estimates.
    """
    done = labels.filter(pl.col(schema.GOLD_LABEL).is_not_null())
    if done.height == 0:
        raise InputError(f"{source} has no labels yet; set gold_label to 1 (good) or 0 (bad) on the rows you "
                         "audited")
    if schema.GOLD_LABEL in log.columns:
        own = log.filter(pl.col(schema.GOLD_LABEL).is_not_null())
        if dict(zip(own[schema.RESPONSE_ID], own[schema.GOLD_LABEL])) != dict(zip(done[schema.RESPONSE_ID],
                                                                                    done[schema.GOLD_LABEL])):
            warnings.warn(f"the log's own gold_label ({own.height} labels) is replaced by the {done.height} "
                          f"audited labels of {source}", UserWarning, stacklevel=2)
    columns = [done[schema.RESPONSE_ID], done[schema.GOLD_LABEL]]
    pi = labelled_probability(labels)
    if pi is not None:
        columns.append(pl.Series(schema.INCLUSION_PROBABILITY, pi, dtype=pl.Float64))
        if schema.AUDIT_STRATUM in done.columns:
            columns.append(done[schema.AUDIT_STRATUM])
    merged = log.drop([c for c in (schema.GOLD_LABEL, schema.INCLUSION_PROBABILITY, schema.AUDIT_STRATUM)
                       if c in log.columns])
    joined = merged.with_row_index("_row").join(pl.DataFrame(columns), on=schema.RESPONSE_ID, how="left")
    return joined.sort("_row").drop("_row")


# --------------------------------------------------------------------------------------------------------------------
# the audited evaluation
# --------------------------------------------------------------------------------------------------------------------
def pair_agreement(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None
                   ) -> tuple[float, int]:
    """Within-prompt ranking agreement with the gold labels: over pairs of rows of one prompt (``groups``) whose
    labels differ, the weighted share (pair weight w_i w_j) where the better-labelled row has the higher ``prob``
    (ties count 1/2). Returns (agreement, number of pairs); NaN without pairs."""
    from causalrm.evaluation.metrics import group_positions

    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    agree = total = 0.0
    n_pairs = 0
    for members in group_positions(np.asarray(groups)):
        if members.size < 2:
            continue
        dy = np.sign(y[members][:, None] - y[members][None, :])
        dp = np.sign(p[members][:, None] - p[members][None, :])
        ww = np.triu(w[members][:, None] * w[members][None, :], k=1) * (dy != 0)
        agree += float(np.sum(ww * (dy * dp + 1) / 2))
        total += float(np.sum(ww))
        n_pairs += int(np.count_nonzero(ww))
    return (agree / total if total > 0 else float("nan")), n_pairs


def audited_evaluation(table: pl.DataFrame, probs: dict[str, np.ndarray], *, split: np.ndarray | None = None,
                       n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """Each model's quality on the audited rows of ``table`` (a log or scored table with merged labels,
    :func:`merge_labels`), estimated for the whole impression population: ``probs`` maps a name to sigma(z) per
    row of ``table``. Rows the models were trained on are left out when enough held-out audited rows remain
    (``verdicts.verdict_rows``; ``split`` = the fitting roles, default the table's ``split`` column).

    Returns None without gold labels, else {"labels": description, "n", "not_enough": None or the sentence of
    ``verdicts.not_enough_labels`` (below ``MIN_DECISION_LABELS`` rows: nothing here is a finding yet), "runs":
    {name: {"n", "r2", "r2_ci", "mse", "mse_ci", "auroc", "auroc_ci", "pair_agreement", "pair_agreement_ci",
    "n_pairs"}}}; an interval is None where the bootstrap gives none of positive width (``evaluation.honest_interval``).
    """
    from causalrm.evaluation.metrics import audit_design, bootstrap_ci, honest_interval, is_census, metrics, metrics_ci
    from causalrm.evaluation.verdicts import not_enough_labels, verdict_rows

    found = verdict_rows(table, split, label=schema.GOLD_LABEL)
    if found is None:
        return None
    rows, _, description = found
    y = table[schema.GOLD_LABEL].cast(pl.Float64).to_numpy()[rows]
    w, strata = audit_design(table, rows)
    group_col = next((c for c in (schema.PAIR_ID, schema.PROMPT) if c in table.columns), None)
    groups = (table[group_col].cast(pl.String).fill_null("").to_numpy()[rows] if group_col is not None
              else np.arange(rows.size))  # no prompts: no within-prompt pairs
    ww = np.ones(rows.size) if w is None else w
    census = is_census(strata)
    out: dict[str, Any] = {"labels": description, "n": int(rows.size), "not_enough": not_enough_labels(int(rows.size)),
                           "runs": {}}
    for name, prob in probs.items():
        p = np.asarray(prob, dtype=np.float64)[rows]
        point = metrics(y, p, sample_weight=w)
        ci = metrics_ci(y, p, n_boot=n_boot, seed=seed, sample_weight=w, strata=strata)
        agreement, n_pairs = pair_agreement(y, p, groups, ww)
        record: dict[str, Any] = {"n": int(rows.size)}
        for metric in ("r2", "mse", "auroc"):
            record[metric], record[f"{metric}_ci"] = point[metric], honest_interval(ci[metric], census=census)
        record["pair_agreement"], record["n_pairs"] = agreement, n_pairs
        record["pair_agreement_ci"] = honest_interval(
            bootstrap_ci(lambda a, b, c, d: pair_agreement(a, b, c, d)[0], y, p, groups, ww, n_boot=n_boot, seed=seed,
                         strata=strata) if n_pairs else (float("nan"), float("nan")), census=census)
        out["runs"][name] = record
    return out


__all__ = ["FLIP_EDGES", "FLIP_SHARE", "LABEL_COLUMNS", "allocation_sequence", "audit_strata", "auditable_rows",
           "audited_evaluation", "carry_labels", "design_strata", "draw", "labelled_probability",
           "merge_labels", "pair_agreement", "proposal_table", "propose"]
