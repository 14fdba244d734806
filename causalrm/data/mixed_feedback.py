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

What identifies the rates (:func:`fit_nuisances`): each signal's own evidence, as if it were alone. The thumbs: the
configured flip-rate method (anchors, gold labels or fixed ``rho01`` / ``rho10``) with the propensity fitted on which
impressions got a thumb. The event: ``event_rate`` / ``accidental_rate`` when given, else gold labels; never anchors
(``feedback_kinds``). One audit of a few hundred rows identifies both. Both gates must pass for a noise-aware fit.

The stacked rows of one impression share its split (train / val / test), resolved on the impressions before
stacking, so no impression is both trained on and validated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import polars as pl

from causalrm.estimators import methods as registry
from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.data.feedback_kinds import EXPLICIT, FEEDBACK_KIND, IMPLICIT, MIXED, kind_of, mixed_signal
from causalrm.nuisances.gates import Gate

#: columns of the stacked rows: which signal a row carries, and the impression (row of the mixed log) it came from
SIGNAL = "signal"
IMPRESSION = "impression"
#: the value of ``SIGNAL`` on the thumbs rows (the event rows carry the event column's name, e.g. ``copied``)
THUMBS = schema.FEEDBACK


def stack(log: pl.DataFrame, X: np.ndarray | None = None, *, split: np.ndarray | None = None
          ) -> tuple[pl.DataFrame, np.ndarray | None]:
    """The stacked rows of a mixed log (module docstring) and ``X`` aligned with them; any other log and ``X`` as
    they are. ``split``: each impression's role (``splits.resolve_split`` of the mixed log), written to both of its
    rows; None keeps the log's ``split`` column. Idempotent."""
    if SIGNAL in log.columns or FEEDBACK_KIND not in log.columns or kind_of(log) != MIXED:
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


def _view(log: pl.DataFrame, rows: np.ndarray, signal: str) -> pl.DataFrame:
    """One signal's rows as a log of its own kind (thumbs explicit, events implicit)."""
    kind = EXPLICIT if signal == THUMBS else IMPLICIT
    return log[rows.tolist()].drop(SIGNAL, IMPRESSION).with_columns(pl.lit(kind, dtype=pl.String).alias(FEEDBACK_KIND))


def _view_config(config: Any, signal: str) -> Any:
    """A signal's configuration: the thumbs keep the configured flip rates; the event's come from the event rates
    (rho01 / rho10 are the thumbs' and never reach it) or gold labels."""
    if signal == THUMBS:
        return config.replace(event_rate=None, accidental_rate=None)
    return config.replace(rho01=None, rho10=None)


def _view_X(X: np.ndarray | None, n_rows: int, fit_rows: np.ndarray, rows: np.ndarray, sub_fit: np.ndarray
            ) -> np.ndarray | None:
    """The embeddings of a view's fitting rows from ``X`` over all stacked rows or over their fitting rows."""
    if X is None:
        return None
    if np.shape(X)[0] == n_rows:
        return X[rows[sub_fit]]
    position = np.full(n_rows, -1)
    position[fit_rows] = np.arange(fit_rows.size)
    return X[position[rows[sub_fit]]]


def fit_nuisances(log: pl.DataFrame, X: np.ndarray | None, config: Any, *, methods: list[str], split: np.ndarray,
                  on_stage: Any = None) -> Any:
    """The nuisances of a stacked mixed log (module docstring): each signal's fitted on its own rows, then put
    together per stacked row: the propensity (1 on the event rows), the flip rates per row (``row_rates``), both
    signals' diagnostics and the gates (flip rates: both must pass)."""
    from causalrm.nuisances.fit import Nuisances, _fit_nuisances

    refused = [m for m in methods if registry.get(m).doubly_robust or registry.get(m).components is not None]
    if refused:
        raise InputError(f"method {'/'.join(refused)!r} is not available on mixed logs (thumbs + events) yet; use "
                         "causalrm-ips, denoise, ips or naive")
    rows = np.flatnonzero(split != schema.TEST)
    nuis = Nuisances(rows=rows, split=split[rows])
    position = np.full(log.height, -1)
    position[rows] = np.arange(rows.size)
    fields = ("propensity", "propensity_clipped")
    arrays: dict[str, np.ndarray] = {}
    rates = np.zeros((2, rows.size))
    views: dict[str, Any] = {}
    for signal, view_rows in signal_views(log).items():
        sub_split = split[view_rows]
        sub_fit = np.flatnonzero(sub_split != schema.TEST)
        sub = _fit_nuisances(_view(log, view_rows, signal), _view_X(X, log.height, rows, view_rows, sub_fit),
                             _view_config(config, signal), methods=methods, split=sub_split, on_stage=on_stage)
        at = position[view_rows[sub.rows]]
        for name in fields:
            value = getattr(sub, name)
            if value is not None:
                arrays.setdefault(name, np.ones(rows.size))[at] = value
        if sub.rho01 is not None:
            rates[:, at] = [[sub.rho01], [sub.rho10]]
        views[signal] = sub
    thumbs = views[THUMBS]
    for name, value in arrays.items():
        setattr(nuis, name, value)
    nuis.propensity_model = thumbs.propensity_model
    nuis.rho01, nuis.rho10, nuis.rho_ci = thumbs.rho01, thumbs.rho10, thumbs.rho_ci
    if thumbs.rho01 is not None:
        nuis.row_rates = (rates[0], rates[1])
    nuis.gates = dict(thumbs.gates)
    flip = {s: v.gates["flip_rates"] for s, v in views.items() if "flip_rates" in v.gates}
    if flip:
        nuis.gates["flip_rates"] = Gate("flip_rates", all(g.passed for g in flip.values()),
                                        "; ".join(f"{s}: {g.verdict}" for s, g in flip.items()),
                                        {s: g.evidence for s, g in flip.items()})
    nuis.diagnostics = {**thumbs.diagnostics, "feedback_kind": MIXED, "n_train": int(np.sum(split == schema.TRAIN)),
                        "n_val": int(np.sum(split == schema.VAL)),
                        "signals": {s: v.to_dict() for s, v in views.items()}}
    return nuis


def as_training_rows(log: pl.DataFrame, X: np.ndarray | None, config: Any) -> tuple[pl.DataFrame, np.ndarray | None]:
    """What a fit trains on: a mixed log's stacked rows, split by impression with ``config``'s seed and val share
    (and ``X`` stacked alike); any other log as it is."""
    if SIGNAL in log.columns or FEEDBACK_KIND not in log.columns or kind_of(log) != MIXED:
        return log, X
    from causalrm.data.splits import resolve_split

    return stack(log, X, split=resolve_split(log, val_fraction=config.val_fraction, seed=config.seed))


def event_reading(log: pl.DataFrame) -> pl.DataFrame:
    """A mixed log's event signal read alone, as an implicit log (every impression observed, ``feedback`` = the
    event): what the audit designs on, since it covers every impression and its strata then separate the events'
    rates; any other log as it is."""
    if SIGNAL in log.columns or FEEDBACK_KIND not in log.columns or kind_of(log) != MIXED:
        return log
    event = mixed_signal(log.columns)
    return log.with_columns(pl.col(event).cast(pl.Int8).alias(schema.FEEDBACK), pl.lit(1, dtype=pl.Int8).alias(
        schema.OBSERVED), pl.lit(IMPLICIT, dtype=pl.String).alias(FEEDBACK_KIND)).drop(event)


def impressions(log: pl.DataFrame) -> pl.DataFrame:
    """The mixed log's impressions back from its stacked rows (the thumbs rows), e.g. to score or evaluate each
    impression once; any other log as it is."""
    if SIGNAL not in log.columns:
        return log
    return log.filter(pl.col(SIGNAL) == THUMBS).drop(SIGNAL, IMPRESSION)


__all__ = ["IMPRESSION", "SIGNAL", "THUMBS", "as_training_rows", "event_reading", "fit_nuisances", "impressions", "signal_views",
           "stack"]
