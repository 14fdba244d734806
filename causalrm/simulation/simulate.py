"""The paper's semi-synthetic protocol: a rated dataset becomes a biased, noisy impression log.

Given rows with a rating ``y`` (``causalrm.data.datasets.load_rated``), :func:`simulate` produces an impression log in the
schema of :mod:`causalrm.data.schema`, following docs/METHOD.md ("The paper's experiment") step by step:

1. **Splits.** The source's own test split (rows with ``split == "test"``) is kept as the test set when present;
   otherwise ``test_fraction`` of the prompt groups is held out. The remaining groups are split train / val with
   ``val_fraction`` of the groups going to val (80/20 by default). A *group* is a connected component of rows linked
   by a shared ``pair_id`` or a shared non-empty ``prompt`` text, so no prompt and no pair crosses a split. If the
   source's test split shares a group with its other rows, those rows are moved to test (counted in
   ``SimulationConfig.n_moved_to_test``), so the evaluation set never leaks into training.
2. **Selection.** ``s = 1 + 4 (y - y_min) / (y_max - y_min)`` (min-max over the dataset's rating levels, all rows),
   ``p_raw = alpha ** (5 - s)`` (``p_raw = 1`` at ``s = 5``), then ``p = min(1, c * p_raw)`` with the scale ``c``
   solved in closed form so that ``mean(p)`` over the train + val rows equals ``observation_rate`` *exactly*, capping
   included (the mean of ``min(1, c p_raw)`` is piecewise linear and increasing in ``c``); the number of rows at the
   cap is ``SimulationConfig.n_capped``. ``o ~ Bernoulli(p)`` on train / val rows.
3. **Labels.** ``true_label = 1[y > m]``. By default ``m`` is the median of the *distinct* rating levels present in
   the data (our reading of the paper's "median of the rating levels": e.g. 2 on a 0-4 scale whatever the rating
   distribution); ``threshold="ratings"`` uses the median of the row ratings instead, a number uses that value.
   Ties at ``m`` are negative (strict ``>``).
4. **Noise.** On observed train / val rows only: a true positive is flipped to 0 with probability ``rho01``, a true
   negative to 1 with probability ``rho10``. ``feedback`` is null where ``observed == 0``.
5. **Test rows** are clean and fully observed: ``observed = 1``, ``feedback = true_label``.

``rating="teacher"`` is the standard *semi-synthetic* design (real covariates, simulated outcomes): the texts and
their real embeddings are kept, but the rating is replaced by a known function of the embedding, a fixed random
linear (default) or one-hidden-layer tanh MLP "teacher" drawn from ``teacher_seed`` (default ``seed``), standardised to mean 0 /
variance 1 over the rows, plus optional Gaussian noise of variance ``1 / snr`` (``snr`` = signal-to-noise variance
ratio; ``None`` = noiseless), then mapped affinely onto the source rating's range (or ``teacher_range``). These are
**not real ratings**; the log says so in ``rating_source`` (``"teacher:mlp"`` / ``"teacher:linear"``) and in
:class:`SimulationConfig`. Why linear by default: in the paper the embedding is the final hidden state of a
reward model and the reward is a linear head on it, so a linear teacher reproduces that structure at a known
ceiling; the MLP teacher adds a mild non-linearity as a robustness check (docs/RESULTS.md reports both).

Output columns, rows in the input's order (so embeddings aligned with the input stay aligned with the log):
``prompt, response, response_id, pair_id, [user_id, timestamp], feedback, observed, split, true_label, true_score,
true_propensity, rating, rating_source`` and, in teacher mode, ``teacher_score`` (the noiseless teacher on the same
scale) and ``source_rating`` (the dataset's real rating). ``true_score`` and ``rating`` both hold the rating the
simulation used. ``true_propensity`` is ``p`` on every row, test rows included (there it is the probability the row
*would* have had; test rows are observed by construction).

Feedback protocols (``feedback_kind``, :mod:`causalrm.simulation.feedback`): steps 2, 4 and 5 above are the
``"explicit"`` protocol (default). ``"implicit"`` replaces them by positive-only events on every row (``feedback`` 1 or
null, no ``observed`` column, ``true_propensity`` = the examination probability); ``"mixed"`` keeps them and adds the
implicit ``copied`` (and ``regenerated``) columns. ``alpha`` / ``rho01`` / ``rho10`` / ``observation_rate`` default to
0.5 / 0.2 / 0.1 / 0.2 and do not apply to implicit logs.

Randomness: one ``numpy.random.SeedSequence(seed)`` spawns independent streams for the split, the teacher, the teacher
noise, the observation draws and the flip draws, then the implicit protocol's display positions, events and
regenerations; observation and flip draws are uniform variates compared with the row's probability, so logs with
different ``alpha`` or ``rho`` but the same ``seed`` share their random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.splits import prompt_groups
from causalrm.errors import InputError
from causalrm.simulation.config import (
    _STREAM_EVENT,
    _STREAM_FLIP,
    _STREAM_NOISE,
    _STREAM_OBSERVE,
    _STREAM_POSITION,
    _STREAM_REGENERATE,
    _STREAM_SPLIT,
    DEFAULT_TEACHER_RANGE,
    SimulationConfig,
    _check_embeddings,
    _check_seed,
    _streams,
    validate_parameters,
)
from causalrm.simulation.feedback import (
    COPIED,
    REGENERATED,
    TRUE_EXAMINATION,
    event_summary,
    implicit_columns,
)
from causalrm.simulation.teacher import rescale_to_1_5, teacher_score

RATING = "rating"
RATING_SOURCE = "rating_source"
TEACHER_SCORE = "teacher_score"
SOURCE_RATING = "source_rating"
_PASSTHROUGH = (schema.USER_ID, schema.TIMESTAMP)


def scale_to_rate(p_raw: np.ndarray, rate: float) -> float:
    """The scale ``c`` with ``mean(min(1, c * p_raw)) == rate`` (exact; ``p_raw > 0``, ``0 < rate <= 1``).

    With the ``k`` largest ``p_raw`` capped at 1, the mean is ``(k + c * sum of the rest) / n``; the answer is the
    first ``k`` whose ``c`` caps exactly those ``k`` rows.
    """
    p = np.sort(np.asarray(p_raw, dtype=np.float64))[::-1]
    n = p.size
    if n == 0 or not np.all(p > 0):
        raise ValueError("p_raw must be non-empty and positive")
    if not 0.0 < rate <= 1.0:
        raise ValueError("rate must be in (0, 1]")
    target = rate * n
    rest = np.cumsum(p[::-1])[::-1]  # rest[k] = sum(p[k:])
    k = np.arange(n)
    c = (target - k) / rest
    prev = np.concatenate([[np.inf], p[:-1]])  # largest capped value (none for k = 0)
    tol = 1e-12
    ok = (c > 0) & (c * p <= 1.0 + tol) & (c * prev >= 1.0 - tol)
    idx = np.flatnonzero(ok)
    if idx.size == 0:  # numerically at the boundary (rate == 1): every row capped
        return float(1.0 / p[-1])
    return float(c[idx[0]])


def selection_propensity(s: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    """``p = min(1, scale * alpha ** (5 - s))`` (METHOD.md step 3)."""
    return np.minimum(1.0, scale * np.power(float(alpha), 5.0 - np.asarray(s, dtype=np.float64)))


def label_threshold(y: np.ndarray, threshold: str | float = "levels") -> float:
    """The ``m`` of ``true_label = 1[y > m]``: median of distinct levels ("levels"), of rows ("ratings"), or a value."""
    y = np.asarray(y, dtype=np.float64)
    if threshold == "levels":
        return float(np.median(np.unique(y)))
    if threshold == "ratings":
        return float(np.median(y))
    return float(threshold)


# --------------------------------------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------------------------------------
def simulate(rated: pl.DataFrame, **params: Any) -> pl.DataFrame:
    """Simulate a selection-biased, noisy impression log from a rated dataset (METHOD.md, the paper's experiment).

    The log of :func:`simulate_with_config` (same keyword parameters and defaults), without its
    :class:`SimulationConfig`. See the module docstring for the protocol and output columns.
    """
    return simulate_with_config(rated, **params)[0]


def simulate_with_config(
    rated: pl.DataFrame,
    *,
    alpha: float | None = None,
    rho01: float | None = None,
    rho10: float | None = None,
    observation_rate: float | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    rating: str = "real",
    teacher: str = "linear",
    snr: float | None = None,
    embeddings: np.ndarray | None = None,
    teacher_range: Sequence[float] | None = None,
    teacher_seed: int | None = None,
    threshold: str | float = "levels",
    seed: int = 0,
    dataset: str | None = None,
    feedback_kind: str = "explicit",
    event_rate_good: float | None = None,
    event_rate_bad: float | None = None,
    examination: float | None = None,
    regenerate_rate_good: float | None = None,
    regenerate_rate_bad: float | None = None,
) -> tuple[pl.DataFrame, SimulationConfig]:
    """Simulate a log (module docstring) and return ``(log, config)``.

    ``alpha`` / ``rho01`` / ``rho10`` / ``observation_rate``: the explicit protocol's (default 0.5 / 0.2 / 0.1 / 0.2;
    refused for ``feedback_kind="implicit"``). ``feedback_kind`` and the event parameters: the feedback protocol
    (:mod:`causalrm.simulation.feedback`; ``event_rate_good`` / ``event_rate_bad`` default to 0.35 / 0.03).

    ``rated`` needs ``prompt``, ``response`` and ``rating`` (not needed in teacher mode when ``teacher_range`` is
    given); ``response_id``, ``pair_id``, ``split`` are used when present. ``embeddings`` (float ``(n, d)``, rows
    aligned with ``rated``) is required for ``rating="teacher"``.
    """
    protocol = validate_parameters(
        alpha=alpha, rho01=rho01, rho10=rho10, observation_rate=observation_rate, val_fraction=val_fraction,
        test_fraction=test_fraction, rating=rating, teacher=teacher, snr=snr, teacher_range=teacher_range,
        threshold=threshold, feedback_kind=feedback_kind, event_rate_good=event_rate_good,
        event_rate_bad=event_rate_bad, examination=examination, regenerate_rate_good=regenerate_rate_good,
        regenerate_rate_bad=regenerate_rate_bad,
    )
    seed = _check_seed(seed, "seed")
    teacher_seed = seed if teacher_seed is None else _check_seed(teacher_seed, "teacher_seed")
    if not isinstance(rated, pl.DataFrame):
        raise InputError(f"rated: expected a polars DataFrame, got {type(rated).__name__}")
    n = rated.height
    for col in schema.REQUIRED:
        if col not in rated.columns:
            raise InputError(f"rated data: missing column {col!r}; it needs prompt, response and rating")
    if n < 3:
        raise InputError(f"rated data: {n} rows; the simulation needs at least three prompt groups")
    streams = _streams(seed)

    # ---- the rating used ------------------------------------------------------------------------------------------
    source = _source_rating(rated, required=rating == "real")
    teacher_noiseless: np.ndarray | None = None
    if rating == "real":
        y = source
        rating_source = "real"
    else:
        if embeddings is None:
            raise InputError("rating='teacher' needs embeddings: pass embeddings=(n, d) array aligned with the rows "
                             "(causalrm.embeddings.embedder.embed_log(df)) or use simulate_dataset")
        X = _check_embeddings(embeddings, n)
        f = teacher_score(X, teacher=teacher, seed=teacher_seed)
        noisy = f if snr is None else f + streams[_STREAM_NOISE].standard_normal(n) / math.sqrt(float(snr))
        if teacher_range is not None:
            lo, hi = float(teacher_range[0]), float(teacher_range[1])
        elif source is not None and np.nanmax(source) > np.nanmin(source):
            lo, hi = float(np.nanmin(source)), float(np.nanmax(source))
        else:
            lo, hi = DEFAULT_TEACHER_RANGE
        s_lo, s_hi = float(noisy.min()), float(noisy.max())
        y = lo + (hi - lo) * (noisy - s_lo) / (s_hi - s_lo)
        teacher_noiseless = lo + (hi - lo) * (f - s_lo) / (s_hi - s_lo)
        rating_source = f"teacher:{teacher}"
    y_min, y_max = float(y.min()), float(y.max())
    s = rescale_to_1_5(y, y_min, y_max)
    m = label_threshold(y, threshold)
    true_label = (y > m).astype(np.int8)
    if true_label.min() == true_label.max():
        raise InputError(f"threshold: true_label = 1[rating > {m:g}] is {int(true_label[0])} on every row; "
                         "choose a threshold inside the rating range")

    # ---- splits ---------------------------------------------------------------------------------------------------
    prompts = rated[schema.PROMPT].to_list()
    pairs = rated[schema.PAIR_ID].cast(pl.String).to_list() if schema.PAIR_ID in rated.columns else [None] * n
    groups = prompt_groups(prompts, pairs)
    n_groups = int(groups.max()) + 1
    split, test_source, n_moved = _assign_splits(rated, groups, n_groups, val_fraction, test_fraction,
                                                 streams[_STREAM_SPLIT])
    is_test = split == schema.TEST
    trainval = ~is_test

    # ---- selection, labels, noise (explicit); implicit events -----------------------------------------------------
    signals: dict[str, pl.Series] = {}
    c: float | None = None
    n_capped: int | None = None
    if protocol.explicit:
        alpha, rho01, rho10 = protocol.alpha, protocol.rho01, protocol.rho10
        p_raw = np.power(float(alpha), 5.0 - s)
        c = scale_to_rate(p_raw[trainval], float(protocol.observation_rate))
        p = selection_propensity(s, alpha, c)
        n_capped = int(np.sum(p[trainval] >= 1.0))
        u_obs = streams[_STREAM_OBSERVE].random(n)
        u_flip = streams[_STREAM_FLIP].random(n)
        observed = np.where(is_test, True, u_obs < p)
        flip_prob = np.where(true_label == 1, float(rho01), float(rho10))
        flipped = observed & trainval & (u_flip < flip_prob)
        feedback = np.where(flipped, 1 - true_label, true_label).astype(np.int8)
        signals[schema.FEEDBACK] = pl.Series(feedback, dtype=pl.Int8)
        signals[schema.OBSERVED] = pl.Series(observed.astype(np.int8), dtype=pl.Int8)
    if protocol.kind != "explicit":
        events, e = implicit_columns(protocol, true_label, groups, {
            "position": streams[_STREAM_POSITION], "event": streams[_STREAM_EVENT],
            "regenerate": streams[_STREAM_REGENERATE]})
        signals.update(events)
        if protocol.kind == "implicit":
            p = e

    # ---- assemble ---------------------------------------------------------------------------------------------------
    response_id = (
        rated[schema.RESPONSE_ID].cast(pl.String)
        if schema.RESPONSE_ID in rated.columns
        else pl.Series(schema.RESPONSE_ID, [None] * n, dtype=pl.String)
    )
    if response_id.null_count():
        generated = pl.Series([f"sim-{i}" for i in range(n)], dtype=pl.String)
        response_id = response_id.fill_null(generated)
    if response_id.n_unique() != n:
        raise InputError("rated data: column 'response_id' has duplicate values; make it unique or drop it")
    columns: dict[str, pl.Series] = {
        schema.PROMPT: rated[schema.PROMPT].cast(pl.String),
        schema.RESPONSE: rated[schema.RESPONSE].cast(pl.String),
        schema.RESPONSE_ID: response_id,
        schema.PAIR_ID: pl.Series(pairs, dtype=pl.String),
    }
    for col in _PASSTHROUGH:
        if col in rated.columns:
            columns[col] = rated[col].cast(pl.String)
    columns.update(signals)
    columns.update({
        schema.SPLIT: pl.Series(split, dtype=pl.String),
        schema.TRUE_LABEL: pl.Series(true_label, dtype=pl.Int8),
        schema.TRUE_SCORE: pl.Series(y, dtype=pl.Float64),
        schema.TRUE_PROPENSITY: pl.Series(p, dtype=pl.Float64),
    })
    if protocol.kind == "mixed" and protocol.examination is not None:
        columns[TRUE_EXAMINATION] = pl.Series(e, dtype=pl.Float64)
    columns.update({
        RATING: pl.Series(y, dtype=pl.Float64),
        RATING_SOURCE: pl.Series([rating_source] * n, dtype=pl.String),
    })
    if teacher_noiseless is not None:
        columns[TEACHER_SCORE] = pl.Series(teacher_noiseless, dtype=pl.Float64)
        columns[SOURCE_RATING] = pl.Series(source if source is not None else [None] * n, dtype=pl.Float64)
    log = pl.DataFrame({name: series.alias(name) for name, series in columns.items()})
    if protocol.explicit:
        log = log.with_columns(pl.when(pl.col(schema.OBSERVED) == 1).then(pl.col(schema.FEEDBACK)).otherwise(None)
                               .alias(schema.FEEDBACK))

    config = SimulationConfig(
        alpha=protocol.alpha, rho01=protocol.rho01, rho10=protocol.rho10, observation_rate=protocol.observation_rate,
        val_fraction=float(val_fraction), test_fraction=float(test_fraction), rating=rating, teacher=teacher,
        snr=None if snr is None else float(snr),
        teacher_range=None if teacher_range is None else (float(teacher_range[0]), float(teacher_range[1])),
        teacher_seed=teacher_seed, threshold=threshold if isinstance(threshold, str) else float(threshold), seed=seed,
        dataset=None if dataset is None else str(dataset), rating_source=rating_source, rating_min=y_min,
        rating_max=y_max, label_threshold=m, propensity_scale=c, n_capped=n_capped, test_source=test_source,
        n_moved_to_test=n_moved, n_train=int(np.sum(split == schema.TRAIN)), n_val=int(np.sum(split == schema.VAL)),
        n_test=int(np.sum(is_test)), n_groups=n_groups, feedback_kind=protocol.kind,
        event_rate_good=protocol.event_rate_good, event_rate_bad=protocol.event_rate_bad,
        examination=protocol.examination, regenerate_rate_good=protocol.regenerate_rate_good,
        regenerate_rate_bad=protocol.regenerate_rate_bad,
    )
    return log, config


def simulate_dataset(
    name_or_path: str, *, rating_column: str | None = None, embeddings: np.ndarray | None = None, embedder=None,
    **kwargs: Any,
) -> tuple[pl.DataFrame, SimulationConfig]:
    """Load a rated dataset (``causalrm.data.datasets.load_rated``) and :func:`simulate_with_config` it.

    Rows without a rating are dropped first (before embedding, so ``embeddings`` computed here stay aligned); pass
    ``embeddings`` only if they are aligned with the rated rows *after* that drop. Teacher mode embeds the rows with
    ``causalrm.embeddings.embedder.embed_log`` (``embedder`` or the default ``Embedder``) unless ``embeddings`` is given.
    Returns ``(log, config)``.
    """
    rated, embeddings = load_for_simulation(name_or_path, rating_column=rating_column, embeddings=embeddings,
                                            embedder=embedder, teacher=kwargs.get("rating", "real") == "teacher")
    kwargs.setdefault("dataset", str(name_or_path))
    return simulate_with_config(rated, embeddings=embeddings, **kwargs)


def load_for_simulation(name_or_path: str, *, rating_column: str | None = None, embeddings: np.ndarray | None = None,
                        embedder=None, teacher: bool = False) -> tuple[pl.DataFrame, np.ndarray | None]:
    """The rated rows a simulation reads (rows without a rating dropped) and, for a ``teacher``, their embeddings
    (``embeddings`` when given, else ``causalrm.embeddings.embedder.embed_log`` with ``embedder``)."""
    from causalrm.data.datasets import load_rated

    rated = load_rated(name_or_path, rating_column=rating_column)
    if RATING in rated.columns and rated[RATING].null_count():
        rated = rated.filter(pl.col(RATING).is_not_null())
    if rated.height and RATING in rated.columns and rated[RATING].is_nan().any():
        rated = rated.filter(~pl.col(RATING).is_nan())
    if teacher and embeddings is None:
        from causalrm.embeddings.embedder import embed_log

        embeddings = embed_log(rated, embedder)
    return rated, embeddings


def simulation_summary(log: pl.DataFrame) -> dict[str, Any]:
    """Realised statistics of a simulated log (for the CLI summary and checks).

    Keys: ``rows`` (per split), ``positive_rate`` (``true_label`` mean, all rows), ``events`` (implicit and mixed logs:
    ``causalrm.simulation.feedback.event_summary`` of each event column, all rows), and where the log has ``observed``
    (explicit and mixed): ``observation_rate`` (observed share of train + val rows), ``n_observed``, ``rho01_hat`` =
    share of observed train + val true positives with feedback 0, ``rho10_hat`` = share of observed train + val true
    negatives with feedback 1 (None when there are none), ``n_observed_pos``, ``n_observed_neg``, ``test_clean`` (every test row observed with ``feedback == true_label``).
    """
    rows = {name: int((log[schema.SPLIT] == name).sum()) for name in (schema.TRAIN, schema.VAL, schema.TEST)}
    positive_rate = float(log[schema.TRUE_LABEL].mean()) if log.height else None
    if schema.OBSERVED not in log.columns:  # implicit: feedback is the event, examination in true_propensity
        return {"rows": rows, "positive_rate": positive_rate,
                "events": {schema.FEEDBACK: event_summary(log, schema.FEEDBACK, schema.TRUE_PROPENSITY)}}
    examined = TRUE_EXAMINATION if TRUE_EXAMINATION in log.columns else None
    events = {col: event_summary(log, col, examined) for col in (COPIED, REGENERATED) if col in log.columns}
    tv = log.filter(pl.col(schema.SPLIT) != schema.TEST)
    obs = tv.filter(pl.col(schema.OBSERVED) == 1)
    pos = obs.filter(pl.col(schema.TRUE_LABEL) == 1)
    neg = obs.filter(pl.col(schema.TRUE_LABEL) == 0)
    test = log.filter(pl.col(schema.SPLIT) == schema.TEST)
    return {
        "rows": rows,
        "observation_rate": float(tv[schema.OBSERVED].mean()) if tv.height else None,
        "n_observed": obs.height,
        "positive_rate": positive_rate,
        "rho01_hat": float((pos[schema.FEEDBACK] == 0).mean()) if pos.height else None,
        "rho10_hat": float((neg[schema.FEEDBACK] == 1).mean()) if neg.height else None,
        "n_observed_pos": pos.height,
        "n_observed_neg": neg.height,
        "test_clean": bool(
            test.height == 0
            or ((test[schema.OBSERVED] == 1).all() and (test[schema.FEEDBACK] == test[schema.TRUE_LABEL]).all())
        ),
        **({"events": events} if events else {}),
    }


def _source_rating(rated: pl.DataFrame, *, required: bool) -> np.ndarray | None:
    if RATING not in rated.columns:
        if required:
            raise InputError("rated data: missing column 'rating'; "
                             "load it with causalrm.data.datasets.load_rated(..., rating_column=...)")
        return None
    col = rated[RATING]
    if not col.dtype.is_numeric():
        raise InputError(f"rated data: column 'rating' has type {col.dtype}; it must be numeric")
    y = col.cast(pl.Float64).to_numpy()
    bad = int(np.sum(~np.isfinite(y)))
    if bad:
        if required:
            first = int(np.flatnonzero(~np.isfinite(y))[0])
            raise InputError(f"rated data: column 'rating' is missing or not finite in {bad} rows "
                             f"(first: row {first}); drop those rows first")
        return None
    return y


def _assign_splits(
    rated: pl.DataFrame, groups: np.ndarray, n_groups: int, val_fraction: float, test_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, str, int]:
    """Split names per row (train / val / test) by whole groups; returns (split, test_source, n_moved_to_test)."""
    n = groups.size
    source_test = np.zeros(n, dtype=bool)
    if schema.SPLIT in rated.columns:
        source_test = (rated[schema.SPLIT].cast(pl.String) == schema.TEST).fill_null(False).to_numpy()
    test_group = np.zeros(n_groups, dtype=bool)
    if source_test.any():
        test_group[groups[source_test]] = True
        test_source = "source"
        n_moved = int(np.sum(test_group[groups] & ~source_test))
    else:
        if n_groups < 3:
            raise InputError(f"rated data: only {n_groups} prompt groups; the simulation needs at least 3 "
                             "(train, val, test), check pair_id")
        n_test = min(max(1, int(round(test_fraction * n_groups))), n_groups - 2)
        test_group[rng.permutation(n_groups)[:n_test]] = True
        test_source = "group-split"
        n_moved = 0
    rest = np.flatnonzero(~test_group)
    if rest.size < 2:
        raise InputError(f"rated data: {rest.size} prompt group(s) outside the test split; "
                         "need at least 2 for train and val")
    n_val = min(max(1, int(round(val_fraction * rest.size))), rest.size - 1)
    val_group = np.zeros(n_groups, dtype=bool)
    val_group[rng.permutation(rest)[:n_val]] = True
    split = np.full(n, schema.TRAIN, dtype=object)
    split[val_group[groups]] = schema.VAL
    split[test_group[groups]] = schema.TEST
    return split, test_source, n_moved
