"""Feedback protocols of the simulator: explicit thumbs, implicit events, or both (``feedback_kind``).

:func:`causalrm.simulation.simulate.simulate_with_config` draws the splits, the rating and ``true_label`` (r*) as always; this
module decides what the log records about each row.

- ``"explicit"`` (default): the paper's protocol (``causalrm.simulation.simulate``): selection ``p = c * alpha ** (5 - s)``,
  flips ``rho01`` / ``rho10`` on observed train / val rows, ``feedback`` null where ``observed == 0``, clean and
  fully observed test rows. The log is bit for bit the one this package produced before the other protocols existed.
- ``"implicit"``: a positive-only event (a copy, a click), logged when it happens, on *every* row (train, val and
  test alike: evaluation reads ``true_label``). Row ``i`` is examined with probability ``e_i``, then acted on with
  probability ``event_rate_good`` (c) if ``true_label == 1`` and ``event_rate_bad`` (epsilon) otherwise::

      event_i ~ Bernoulli(e_i * (c if r*_i else epsilon))

  ``feedback`` is 1 where the event happened and null elsewhere (its absence is not a thumbs-down); the log has no
  ``observed`` column (the reader derives it). ``alpha``, ``observation_rate``, ``rho01`` and ``rho10`` do not apply
  (passing any of them is an error; :class:`causalrm.simulation.config.SimulationConfig` records them as ``None``).
- ``"mixed"``: the explicit protocol for ``feedback`` / ``observed``, plus an implicit ``copied`` column (1 or null
  on every row) drawn as above from its own random stream, plus, when ``regenerate_rate_good`` and
  ``regenerate_rate_bad`` are given, an implicit *negative* ``regenerated`` column (1 or null)::

      regenerated_i ~ Bernoulli(e_i * (regenerate_rate_good if r*_i else regenerate_rate_bad))

  drawn independently of ``copied`` (a row may have both).

Examination ``e_i`` (``examination``): ``None`` means every row is examined (``e_i = 1``). A number ``eta > 0`` is a
position-based model: the rows of each prompt group (``causalrm.data.splits.prompt_groups``) are shown in a uniformly
random order, row ``i`` at display position ``k_i = 0, 1, ..., m - 1`` of its group of ``m`` rows, and
``e_i = 1 / (1 + k_i) ** eta`` (a group of one row is always examined). With ``examination`` given, ``e_i`` is
written to ``logged_propensity`` and ``true_propensity`` in implicit logs and to ``true_examination`` in mixed logs
(where ``logged_propensity`` would be read as the explicit feedback's). An implicit log without ``examination`` has
``true_propensity = 1`` and no ``logged_propensity``.

Randomness: three streams of ``SeedSequence(seed)`` after the explicit protocol's five (positions, events,
regenerations), so the explicit columns of a log do not depend on the protocol, and logs with the same ``seed``
share their positions and uniform variates (events are variates compared with the row's probability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError

FEEDBACK_KINDS = ("explicit", "implicit", "mixed")
#: the explicit protocol's defaults (``alpha``, ``rho01``, ``rho10``, ``observation_rate``)
EXPLICIT_DEFAULTS: dict[str, float] = {"alpha": 0.5, "rho01": 0.2, "rho10": 0.1, "observation_rate": 0.2}
DEFAULT_EVENT_RATE_GOOD = 0.35
DEFAULT_EVENT_RATE_BAD = 0.03
#: mixed logs: the implicit positive event, the implicit negative event, the examination probability (simulation only)
COPIED = "copied"
REGENERATED = "regenerated"
TRUE_EXAMINATION = "true_examination"


@dataclass(frozen=True)
class FeedbackProtocol:
    """The resolved protocol: ``kind`` and the parameters that apply to it (``None`` where they do not)."""

    kind: str
    alpha: float | None
    rho01: float | None
    rho10: float | None
    observation_rate: float | None
    event_rate_good: float | None
    event_rate_bad: float | None
    examination: float | None
    regenerate_rate_good: float | None
    regenerate_rate_bad: float | None

    @property
    def explicit(self) -> bool:
        """Whether ``feedback`` / ``observed`` follow the explicit protocol (kinds explicit and mixed)."""
        return self.kind != "implicit"


def resolve_protocol(
    *,
    feedback_kind: str = "explicit",
    alpha: float | None = None,
    rho01: float | None = None,
    rho10: float | None = None,
    observation_rate: float | None = None,
    event_rate_good: float | None = None,
    event_rate_bad: float | None = None,
    examination: float | None = None,
    regenerate_rate_good: float | None = None,
    regenerate_rate_bad: float | None = None,
) -> FeedbackProtocol:
    """Check the protocol's parameters (one-line :class:`InputError` naming the parameter) and fill its defaults.

    The explicit parameters default to :data:`EXPLICIT_DEFAULTS` (explicit, mixed) and are refused for implicit; the
    event rates default to 0.35 / 0.03 (implicit, mixed) and are refused for explicit, as is ``examination``; the
    regenerate rates are mixed only and come as a pair. Range checks of the explicit parameters stay with
    ``causalrm.simulation.config.validate_parameters``.
    """
    if feedback_kind not in FEEDBACK_KINDS:
        raise InputError(f"feedback_kind={feedback_kind!r}: must be one of {', '.join(FEEDBACK_KINDS)}")
    given = {"alpha": alpha, "rho01": rho01, "rho10": rho10, "observation_rate": observation_rate}
    implicit_given = {"event_rate_good": event_rate_good, "event_rate_bad": event_rate_bad, "examination": examination}
    regenerate = {"regenerate_rate_good": regenerate_rate_good, "regenerate_rate_bad": regenerate_rate_bad}
    if feedback_kind == "implicit":
        extra = [name for name, v in given.items() if v is not None]
        if extra:
            raise InputError(f"{extra[0]} applies to explicit feedback only (selection and flips); drop it for "
                             "feedback_kind='implicit' or use feedback_kind='mixed'")
        explicit: dict[str, float | None] = dict.fromkeys(given)
    else:
        explicit = {name: finite_number(name, EXPLICIT_DEFAULTS[name] if v is None else v)
                    for name, v in given.items()}
    if feedback_kind == "explicit":
        extra = [name for name, v in {**implicit_given, **regenerate}.items() if v is not None]
        if extra:
            raise InputError(f"{extra[0]} applies to implicit events only; drop it or set feedback_kind to "
                             "implicit or mixed")
        return FeedbackProtocol(feedback_kind, **explicit, event_rate_good=None, event_rate_bad=None,
                                examination=None, regenerate_rate_good=None, regenerate_rate_bad=None)
    good = _probability("event_rate_good", DEFAULT_EVENT_RATE_GOOD if event_rate_good is None else event_rate_good)
    bad = _probability("event_rate_bad", DEFAULT_EVENT_RATE_BAD if event_rate_bad is None else event_rate_bad)
    if not bad < good:
        raise InputError(f"event_rate_bad={bad:g}: must be below event_rate_good={good:g} for the event to signal a "
                         "good response")
    eta = None if examination is None else finite_number("examination", examination)
    if eta is not None and eta <= 0.0:
        raise InputError(f"examination={examination}: the position decay eta must be > 0 (omit it to examine every "
                         "row)")
    given_regen = {name: v for name, v in regenerate.items() if v is not None}
    if given_regen and feedback_kind != "mixed":
        raise InputError(f"{next(iter(given_regen))} applies to feedback_kind='mixed' only (the regenerated column)")
    if len(given_regen) == 1:
        missing = next(name for name in regenerate if name not in given_regen)
        raise InputError(f"{missing}: give both regenerate_rate_good and regenerate_rate_bad, or neither")
    regen_good = regen_bad = None
    if given_regen:
        regen_good = _probability("regenerate_rate_good", regenerate_rate_good)
        regen_bad = _probability("regenerate_rate_bad", regenerate_rate_bad)
        if not regen_good < regen_bad:
            raise InputError(f"regenerate_rate_good={regen_good:g}: must be below regenerate_rate_bad={regen_bad:g} "
                             "for a regeneration to signal a bad response")
    return FeedbackProtocol(feedback_kind, **explicit, event_rate_good=good, event_rate_bad=bad, examination=eta,
                            regenerate_rate_good=regen_good, regenerate_rate_bad=regen_bad)


# --------------------------------------------------------------------------------------------------------------------
# building blocks (pure functions over arrays)
# --------------------------------------------------------------------------------------------------------------------
def display_positions(groups: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Display position ``k = 0 .. m - 1`` of each row within its group: the rank of ``u`` among the group's rows.

    ``groups``: int group index per row; ``u``: distinct uniform variates per row (a random order of each group).
    """
    groups, u = np.asarray(groups), np.asarray(u, dtype=np.float64)
    if groups.shape != u.shape or groups.ndim != 1:
        raise ValueError("groups and u must be 1-D arrays of the same length")
    order = np.lexsort((u, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    counts = np.diff(np.r_[starts, groups.size])
    positions = np.empty(groups.size, dtype=np.int64)
    positions[order] = np.arange(groups.size) - np.repeat(starts, counts)
    return positions


def examination_probability(positions: np.ndarray, eta: float | None) -> np.ndarray:
    """``e = 1 / (1 + k) ** eta`` per row (``eta=None``: 1 on every row), float64."""
    k = np.asarray(positions, dtype=np.float64)
    if eta is None:
        return np.ones_like(k)
    if not eta > 0 or np.any(k < 0):
        raise ValueError("eta must be > 0 and positions >= 0")
    return 1.0 / np.power(1.0 + k, float(eta))


def event_draws(true_label: np.ndarray, examination: np.ndarray, rate_good: float, rate_bad: float,
                u: np.ndarray) -> np.ndarray:
    """Boolean events: ``u < e * (rate_good if true_label else rate_bad)`` (``u`` uniform on [0, 1) per row)."""
    rate = np.where(np.asarray(true_label) == 1, float(rate_good), float(rate_bad))
    return np.asarray(u) < np.asarray(examination, dtype=np.float64) * rate


def event_column(name: str, events: np.ndarray) -> pl.Series:
    """An implicit event column: Int8 1 where the event happened, null elsewhere."""
    return pl.Series(name, np.where(events, 1, 0), dtype=pl.Int8).replace(0, None)


def implicit_columns(
    protocol: FeedbackProtocol, true_label: np.ndarray, groups: np.ndarray, streams: dict[str, np.random.Generator],
) -> tuple[dict[str, pl.Series], np.ndarray]:
    """The implicit protocol's event columns and the examination probability ``e`` per row.

    ``streams``: generators ``"position"``, ``"event"`` and ``"regenerate"`` (independent). Implicit: ``feedback``
    (plus ``logged_propensity`` with ``examination``); mixed: ``copied`` (plus ``regenerated`` with regenerate rates).
    """
    if protocol.kind not in ("implicit", "mixed"):
        raise ValueError(f"implicit_columns: protocol {protocol.kind!r} has no implicit events")
    n = true_label.size
    positions = display_positions(groups, streams["position"].random(n))
    e = examination_probability(positions, protocol.examination)
    events = event_draws(true_label, e, protocol.event_rate_good, protocol.event_rate_bad, streams["event"].random(n))
    if protocol.kind == "implicit":
        columns = {schema.FEEDBACK: event_column(schema.FEEDBACK, events)}
        if protocol.examination is not None:
            columns[schema.LOGGED_PROPENSITY] = pl.Series(schema.LOGGED_PROPENSITY, e, dtype=pl.Float64)
        return columns, e
    columns = {COPIED: event_column(COPIED, events)}
    if protocol.regenerate_rate_good is not None:
        regenerated = event_draws(true_label, e, protocol.regenerate_rate_good, protocol.regenerate_rate_bad,
                                  streams["regenerate"].random(n))
        columns[REGENERATED] = event_column(REGENERATED, regenerated)
    return columns, e


def event_summary(log: pl.DataFrame, column: str, examination: str | None = None) -> dict[str, Any]:
    """Realised rates of an implicit event column: among ``true_label == 1`` / ``0`` rows, and overall.

    Keys: ``rate`` (all rows), ``rate_good``, ``rate_bad`` (None without such rows), ``n_good``, ``n_bad``,
    ``mean_examination`` (mean of the ``examination`` column if given, else 1: every row examined).
    """
    happened = log[column].is_not_null()
    good = (log[schema.TRUE_LABEL] == 1).to_numpy()
    hit = happened.to_numpy()
    n_good, n_bad = int(good.sum()), int((~good).sum())
    return {
        "rate": float(hit.mean()) if hit.size else None,
        "rate_good": float(hit[good].mean()) if n_good else None,
        "rate_bad": float(hit[~good].mean()) if n_bad else None,
        "n_good": n_good,
        "n_bad": n_bad,
        "mean_examination": float(log[examination].mean()) if examination is not None else 1.0,
    }


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
def finite_number(name: str, value: Any) -> float:
    """``float(value)``, or a one-line :class:`InputError` naming ``name`` when it is not a finite number."""
    if isinstance(value, bool):
        raise InputError(f"{name}={value!r}: must be a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: must be a number") from None
    if not math.isfinite(v):
        raise InputError(f"{name}={value!r}: must be a finite number")
    return v


def _probability(name: str, value: Any) -> float:
    v = finite_number(name, value)
    if not 0.0 <= v <= 1.0:
        raise InputError(f"{name}={value!r}: must be a probability in [0, 1]")
    return v
