"""The nuisances of a mixed log (thumbs + events, stacked by :mod:`causalrm.data.mixed_feedback`): each signal's
fitted on its own rows, then put together per stacked row (the propensity, the flip rates per row, both signals'
diagnostics and gates)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import EXPLICIT, FEEDBACK_KIND, IMPLICIT, MIXED
from causalrm.data.mixed_feedback import IMPRESSION, SIGNAL, THUMBS, signal_views
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.nuisances.container import Nuisances
from causalrm.nuisances.gates import Gate
from causalrm.nuisances.signal import fit_signal


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
        sub = fit_signal(_view(log, view_rows, signal), _view_X(X, log.height, rows, view_rows, sub_fit),
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
