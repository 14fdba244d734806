"""Mixed feedback: thumbs and an implicit event (copies, clicks) on the same impressions, one model from both.

Notation as in docs/ARCHITECTURE.md and :mod:`causalrm.data.feedback_kinds`. A mixed log carries two signals of the same
clean label r* on each impression i = 1..N:

    thumbs   o_i, r_i    given on a selected subset (propensity p(x)), flipped with rates (rho01_t, rho10_t)
    event    e_i         on every impression; a noisy label with rho01_e = 1 - c, rho10_e = eps

Each signal alone gives an unbiased estimate of the clean risk R(f) = E[l(f(x), r*)]: the weighted surrogate
(o/p) l~_t(z, r) on the thumbs (CausalRM-IPS) and l~_e(z, e) on the events (the surrogate of an implicit log; uPU
when eps = 0). So does their average, which is what training on the **stacked rows** minimises:

    R_mixed(f) = 1/(2N) sum_i [ (o_i / p_i) l~_t(z_i, r_i) + l~_e(z_i, e_i) ]

with one row per (impression, signal) (:func:`stack`): the thumbs rows as they are, the event rows with o = 1,
r = e and p = 1, and each row carrying its signal's flip rates (``LossInputs.rho01`` / ``rho10``). Every estimator
of the kernel whose terms are per row reads the stacked rows this way (``naive``: both signals as plain labels,
biased by selection and by the events' noise; ``ips``: the thumbs reweighted; ``denoise``: both corrected, unweighted;
``causalrm-ips``: both corrected, thumbs reweighted). The doubly robust methods would need a pseudo-label per signal
and are refused; so are the nnPU methods, whose class-wise reduction mixes the two signals' parts.

What identifies the rates (:func:`causalrm.nuisances.mixed.fit_nuisances`): each signal's own evidence, as if it were alone. The thumbs: the
configured flip-rate method (anchors, gold labels or fixed ``rho01`` / ``rho10``) with the propensity fitted on which
impressions got a thumb. The event: ``event_rate`` / ``accidental_rate`` when given, else gold labels; never anchors
(``feedback_kinds``). One audit of a few hundred rows identifies both. Both gates must pass for a noise-aware fit.

The stacked rows of one impression share its split (train / val / test), resolved on the impressions before
stacking, so no impression is both trained on and validated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import EXPLICIT, FEEDBACK_KIND, IMPLICIT, MIXED, kind_of, mixed_signal
from causalrm.errors import InputError

#: columns of the stacked rows: which signal a row carries, and the impression (row of the mixed log) it came from
SIGNAL = "signal"
IMPRESSION = "impression"
#: the value of ``SIGNAL`` on the thumbs rows (the event rows carry the event column's name, e.g. ``copied``)
THUMBS = schema.FEEDBACK


def _unstacked_mixed(log: pl.DataFrame) -> bool:
    """Whether ``log`` is a mixed log as read (marked mixed, not yet stacked): what the readings below transform."""
    return SIGNAL not in log.columns and FEEDBACK_KIND in log.columns and kind_of(log) == MIXED


def stack(log: pl.DataFrame, X: np.ndarray | None = None, *, split: np.ndarray | None = None
          ) -> tuple[pl.DataFrame, np.ndarray | None]:
    """The stacked rows of a mixed log (module docstring) and ``X`` aligned with them; any other log and ``X`` as
    they are. ``split``: each impression's role (``splits.resolve_split`` of the mixed log), written to both of its
    rows; None keeps the log's ``split`` column. Idempotent."""
    if not _unstacked_mixed(log):
        return log, X
    event = mixed_signal(log.columns)
    if event is None:
        raise InputError("a log marked mixed needs thumbs in 'feedback' and an event column (copied, clicked)")
    base = log.with_columns(pl.arange(0, log.height, dtype=pl.Int64).alias(IMPRESSION))
    if split is not None:
        if len(split) != log.height:
            raise ValueError(f"split has {len(split)} values for {log.height} impressions")
        base = base.with_columns(pl.Series(schema.SPLIT, [str(s) for s in split], dtype=pl.String))
    thumbs = base.with_columns(pl.lit(THUMBS).alias(SIGNAL))
    events = base.with_columns(
        pl.col(event).cast(thumbs[schema.FEEDBACK].dtype).alias(schema.FEEDBACK),
        pl.lit(1, dtype=thumbs[schema.OBSERVED].dtype).alias(schema.OBSERVED),
        pl.lit(event).alias(SIGNAL),
        *([pl.lit(None, dtype=thumbs[schema.LOGGED_PROPENSITY].dtype).alias(schema.LOGGED_PROPENSITY)]
          if schema.LOGGED_PROPENSITY in thumbs.columns else []))
    stacked = pl.concat([thumbs, events], how="vertical")
    if X is None:
        return stacked, None
    if np.shape(X)[0] != log.height:
        raise InputError(f"embeddings have {np.shape(X)[0]} rows but the mixed log has {log.height}; embed this log")
    index = stacked[IMPRESSION].to_numpy()
    return stacked, np.ascontiguousarray(np.asarray(X)[index], dtype=np.float32)


def signal_views(log: pl.DataFrame) -> dict[str, np.ndarray]:
    """``{signal: positions of its stacked rows}``, the thumbs first."""
    signals = log[SIGNAL].to_numpy()
    names = [THUMBS] + sorted(set(signals.tolist()) - {THUMBS})
    return {name: np.flatnonzero(signals == name) for name in names}


def as_training_rows(log: pl.DataFrame, X: np.ndarray | None, config: Any) -> tuple[pl.DataFrame, np.ndarray | None]:
    """What a fit trains on: a mixed log's stacked rows, split by impression with ``config``'s seed and val share
    (and ``X`` stacked alike); any other log as it is."""
    if not _unstacked_mixed(log):
        return log, X
    from causalrm.data.splits import resolve_split

    return stack(log, X, split=resolve_split(log, val_fraction=config.val_fraction, seed=config.seed))


def event_reading(log: pl.DataFrame) -> pl.DataFrame:
    """A mixed log's event signal read alone, as an implicit log (every impression observed, ``feedback`` = the
    event): what the audit designs on, since it covers every impression and its strata then separate the events'
    rates; any other log as it is."""
    if not _unstacked_mixed(log):
        return log
    event = mixed_signal(log.columns)
    return log.with_columns(pl.col(event).cast(pl.Int8).alias(schema.FEEDBACK), pl.lit(1, dtype=pl.Int8).alias(
        schema.OBSERVED), pl.lit(IMPLICIT, dtype=pl.String).alias(FEEDBACK_KIND)).drop(event)


def thumbs_reading(log: pl.DataFrame) -> pl.DataFrame:
    """A mixed log's thumbs read alone, as an explicit log (its event column dropped): what the app's Propensity and
    Noise tabs inspect, on the same rows; any other log as it is."""
    if not _unstacked_mixed(log):
        return log
    return log.drop(mixed_signal(log.columns)).with_columns(pl.lit(EXPLICIT, dtype=pl.String).alias(FEEDBACK_KIND))


def impressions(log: pl.DataFrame) -> pl.DataFrame:
    """The mixed log's impressions back from its stacked rows (the thumbs rows), e.g. to score or evaluate each
    impression once; any other log as it is."""
    if SIGNAL not in log.columns:
        return log
    return log.filter(pl.col(SIGNAL) == THUMBS).drop(SIGNAL, IMPRESSION)


__all__ = ["IMPRESSION", "SIGNAL", "THUMBS", "as_training_rows", "event_reading", "impressions", "signal_views",
           "stack", "thumbs_reading"]
