"""``Nuisances``: what a fit's nuisance models produced on the train + val rows (propensity, flip rates,
pseudo-labels, diagnostics, gates), ``needs_of`` (what methods need fitted) and ``loss_inputs`` (what the losses
receive from them on a set of rows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm.atomic_io import jsonable
from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.nuisances.gates import Gate

StageFn = Callable[[str], None]


def _column(log: pl.DataFrame, name: str, rows: np.ndarray) -> np.ndarray | None:
    if name not in log.columns:
        return None
    return log[name].cast(pl.Float64).to_numpy()[rows]


def _observed_feedback(log: pl.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed, feedback) as float arrays over ``rows``; feedback 0 where unobserved."""
    if schema.FEEDBACK not in log.columns:
        raise InputError("the log has no 'feedback' column; map one with --map feedback=<column>")
    fb = log[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows]
    if schema.OBSERVED in log.columns:
        obs = log[schema.OBSERVED].cast(pl.Float64).fill_null(0.0).to_numpy()[rows]
    else:
        obs = (~np.isnan(fb)).astype(np.float64)
    missing = (obs > 0) & np.isnan(fb)
    if missing.any():
        first = int(rows[np.flatnonzero(missing)[0]])
        raise InputError(f"row {first}: observed is 1 but feedback is empty; fix column 'feedback' or 'observed'")
    fb = np.where(obs > 0, fb, 0.0)
    if not np.isin(fb, (0.0, 1.0)).all() or not np.isin(obs, (0.0, 1.0)).all():
        raise InputError("columns 'feedback' and 'observed' must be 0/1; pass --threshold to binarise ratings")
    return obs, fb


# --------------------------------------------------------------------------------------------------------------------
# nuisances
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Nuisances:
    """Nuisance estimates on the fitting rows (train + val), fitted once before training.

    rows: positions in the log of the fitting rows; split: their role (train / val).
    propensity: cross-fitted p_hat (unclipped) or None; propensity_clipped: ``max(p_hat, clip)``, what the losses
    receive (clipped once, by ``PropensityModel``; ``weights`` is its old name); propensity_clipped_alt: the same
    from the runner-up propensity model (``propensity_model="auto"``), else None (old name ``weights_alt``).
    rho01, rho10: flip rates (estimated or fixed; None when no method asked); rho_ci: {"rho01": (lo, hi), ...}.
    pseudo_label: q = P(r* = 1 | x) for causalrm-dr; pseudo_label_noisy: P(r = 1 | x) for dr.
    row_rates: (rho01, rho10) per fitting row where rows carry different signals (a mixed log's stacked rows,
    ``causalrm.data.mixed_feedback``); rho01 / rho10 are then the thumbs' rates.
    diagnostics: JSON-able summary (propensity diagnostics, flip-rate estimates and CIs, sources, seconds).
    gates: the verdicts of ``causalrm.nuisances.gates`` on what was fitted ({"propensity": Gate, "flip_rates": Gate}).
    propensity_model, flip_estimator: the fitted objects (for plots in the app); not saved.
    """

    rows: np.ndarray
    split: np.ndarray
    propensity: np.ndarray | None = None
    propensity_clipped: np.ndarray | None = None
    propensity_clipped_alt: np.ndarray | None = None
    rho01: float | None = None
    rho10: float | None = None
    rho_ci: dict[str, tuple[float, float]] | None = None
    pseudo_label: np.ndarray | None = None
    pseudo_label_noisy: np.ndarray | None = None
    row_rates: tuple[np.ndarray, np.ndarray] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    propensity_model: Any = None
    flip_estimator: Any = None

    def provides(self) -> set[str]:
        out = set()
        if self.propensity_clipped is not None:
            out.add("propensity")
        if self.rho01 is not None:
            out.add("flip_rates")
        if self.pseudo_label is not None:
            out.add("pseudo_label")
        if self.pseudo_label_noisy is not None:
            out.add("pseudo_label_noisy")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able diagnostics (no per-row arrays)."""
        out = dict(self.diagnostics)
        out["rho01"] = self.rho01
        out["rho10"] = self.rho10
        out["rho_ci"] = self.rho_ci
        out["n_rows"] = int(self.rows.size)
        out["gates"] = {name: gate.to_dict() for name, gate in self.gates.items()}
        return jsonable(out)


def needs_of(methods: str | list[str] | tuple[str, ...]) -> set[str]:
    """What ``methods`` need fitted (``causalrm.estimators.methods.needs_of``: the registry's specs)."""
    return registry.needs_of(methods)


def _stage(on_stage: StageFn | None, name: str) -> None:
    if on_stage is not None:
        on_stage(name)


def loss_inputs(
    log: pl.DataFrame, nuis: Nuisances, method: str | tuple[str, ...], mask: np.ndarray
) -> Any:
    """``LossInputs`` for the fitting rows selected by ``mask`` (a boolean array over ``nuis.rows``), holding what
    ``method`` (one name or several, e.g. the training and the validation estimator) needs."""
    from causalrm.estimators.losses import LossInputs

    methods = (method,) if isinstance(method, str) else tuple(method)
    rows = nuis.rows[mask]
    obs, fb = _observed_feedback(log, rows)
    needs = needs_of(methods)
    if "pseudo_label" in needs and "pseudo_label_noisy" in needs:
        raise InputError("dr and causalrm-dr impute different pseudo-labels; do not combine them as train and val "
                         "estimators")
    true_label = None
    if "true_label" in needs:
        true_label = _column(log, schema.TRUE_LABEL, rows)
        if true_label is None or np.isnan(true_label).any():
            raise InputError(f"method {'/'.join(methods)!r} needs 'true_label' on every train/val row")

    def pick(arr: np.ndarray | None, what: str) -> np.ndarray | None:
        if what not in needs:
            return None
        if arr is None:
            raise InputError(f"method {'/'.join(methods)!r} needs {what.replace('_', ' ')} but it was not fitted")
        return arr[mask]

    q = pick(nuis.pseudo_label_noisy, "pseudo_label_noisy") if "pseudo_label_noisy" in needs else \
        pick(nuis.pseudo_label, "pseudo_label")
    propensity = pick(nuis.propensity_clipped, "propensity")
    if any(registry.get(m).clean_labels and registry.get(m).weighted for m in methods):  # oracle-observed
        propensity = _column(log, schema.TRUE_PROPENSITY, rows)
        if propensity is None or np.isnan(propensity).any():
            raise InputError(f"method {'/'.join(methods)!r} needs 'true_propensity' on every train/val row "
                             "(simulated logs only)")
    rates = nuis.row_rates if "flip_rates" in needs and nuis.row_rates is not None else (None, None)
    return LossInputs(
        feedback=fb.astype(np.float32), observed=obs.astype(np.float32),
        propensity=propensity, pseudo_label=q, true_label=true_label,
        rho01=None if rates[0] is None else rates[0][mask], rho10=None if rates[1] is None else rates[1][mask],
    )
