"""A simulation's parameters: ``SimulationConfig`` (what one simulated log was made with, and what the simulation
derived from the data), ``validate_parameters`` (their checks, one line each), the seeds' independent random
streams. The protocol itself: :mod:`causalrm.simulation.simulate`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from causalrm.errors import InputError
from causalrm.simulation.feedback import FeedbackProtocol, finite_number, resolve_protocol

SIMULATION_VERSION = 1
# Independent random streams spawned from SeedSequence(seed); new streams go at the end (older logs reproduce).
_STREAM_SPLIT, _STREAM_TEACHER, _STREAM_NOISE, _STREAM_OBSERVE, _STREAM_FLIP = range(5)
_STREAM_POSITION, _STREAM_EVENT, _STREAM_REGENERATE = range(5, 8)
_N_STREAMS = 8
RATINGS = ("real", "teacher")
TEACHERS = ("linear", "mlp")
TEACHER_HIDDEN = 32
DEFAULT_TEACHER_RANGE = (1.0, 10.0)


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of one simulated log and what the simulation derived from the data (JSON-able via ``to_dict``).

    Parameters (as passed): ``alpha`` (selection strength, smaller = stronger), ``rho01`` / ``rho10`` (flip rates),
    ``observation_rate`` (expected share of observed train + val rows), ``val_fraction``, ``test_fraction``,
    ``rating`` ("real" / "teacher"), ``teacher``, ``snr``, ``teacher_range``, ``teacher_seed``, ``threshold``,
    ``seed``, ``dataset`` (name or path, informational); the feedback protocol (:mod:`causalrm.simulation.feedback`):
    ``feedback_kind`` ("explicit" / "implicit" / "mixed"), ``event_rate_good`` / ``event_rate_bad`` (c / epsilon),
    ``examination`` (eta of the position model, ``None`` = every row examined), ``regenerate_rate_good`` /
    ``regenerate_rate_bad``; the parameters that do not apply to the kind are ``None`` (implicit: ``alpha``,
    ``rho01``, ``rho10``, ``observation_rate``, ``propensity_scale``, ``n_capped``; explicit: the event parameters).

    Derived: ``rating_min`` / ``rating_max`` (range of the rating used, mapped to s = 1 / 5), ``label_threshold``
    (the ``m`` of ``true_label = 1[rating > m]``), ``propensity_scale`` (``c``), ``n_capped`` (train + val rows with
    ``p = 1`` after scaling), ``test_source`` ("source" = the dataset's own test split, "group-split" = held out
    here), ``n_moved_to_test`` (non-test rows sharing a group with the source's test split), ``n_train``, ``n_val``,
    ``n_test``, ``n_groups``, ``rating_source`` ("real" or "teacher:<kind>"), ``version``.
    """

    alpha: float | None
    rho01: float | None
    rho10: float | None
    observation_rate: float | None
    val_fraction: float
    test_fraction: float
    rating: str
    teacher: str
    snr: float | None
    teacher_range: tuple[float, float] | None
    teacher_seed: int
    threshold: str | float
    seed: int
    dataset: str | None
    rating_source: str
    rating_min: float
    rating_max: float
    label_threshold: float
    propensity_scale: float | None
    n_capped: int | None
    test_source: str
    n_moved_to_test: int
    n_train: int
    n_val: int
    n_test: int
    n_groups: int
    feedback_kind: str = "explicit"
    event_rate_good: float | None = None
    event_rate_bad: float | None = None
    examination: float | None = None
    regenerate_rate_good: float | None = None
    regenerate_rate_bad: float | None = None
    version: int = SIMULATION_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        if out["teacher_range"] is not None:
            out["teacher_range"] = list(out["teacher_range"])
        return out


# --------------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------------
def validate_parameters(
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
    teacher_range: Sequence[float] | None = None,
    threshold: str | float = "levels",
    **feedback: Any,
) -> FeedbackProtocol:
    """Raise :class:`InputError` (one line naming the parameter) for any invalid simulation parameter.

    ``feedback``: the protocol's keywords (``feedback_kind``, ``event_rate_good``, ...); returns the resolved
    :class:`~causalrm.simulation.feedback.FeedbackProtocol` (``causalrm.simulation.feedback.resolve_protocol``).
    """

    protocol = resolve_protocol(alpha=alpha, rho01=rho01, rho10=rho10, observation_rate=observation_rate, **feedback)
    if protocol.explicit:
        a, r01, r10, rate = protocol.alpha, protocol.rho01, protocol.rho10, protocol.observation_rate
        if not 0.0 < a <= 1.0:
            raise InputError(f"alpha={a}: must be in (0, 1] (smaller = stronger selection bias; "
                             "the paper's grid is 0.005 to 0.5)")
        for name, v in (("rho01", r01), ("rho10", r10)):
            if not 0.0 <= v < 1.0:
                raise InputError(f"{name}={v}: flip rates must be in [0, 1)")
        if r01 + r10 >= 1.0:
            raise InputError(f"rho01 + rho10 = {r01 + r10:g}: must be < 1 for the noise to be correctable; "
                             "lower one of them")
        if not 0.0 < rate <= 1.0:
            raise InputError(f"observation_rate={rate}: must be in (0, 1] (the paper uses 0.2)")
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        f = finite_number(name, v)
        if not 0.0 < f < 1.0:
            raise InputError(f"{name}={v}: must be in (0, 1)")
    if rating not in RATINGS:
        raise InputError(f"rating={rating!r}: must be one of {', '.join(RATINGS)}")
    if teacher not in TEACHERS:
        raise InputError(f"teacher={teacher!r}: must be one of {', '.join(TEACHERS)}")
    if snr is not None:
        s = finite_number("snr", snr)
        if s <= 0.0:
            raise InputError(f"snr={snr}: the signal-to-noise variance ratio must be > 0 "
                             "(omit it for a noiseless teacher)")
    if teacher_range is not None:
        if len(teacher_range) != 2:
            raise InputError(f"teacher_range={teacher_range!r}: give (low, high)")
        lo = finite_number("teacher_range low", teacher_range[0])
        hi = finite_number("teacher_range high", teacher_range[1])
        if not lo < hi:
            raise InputError(f"teacher_range={tuple(teacher_range)}: low must be < high")
    if rating != "teacher" and (snr is not None or teacher_range is not None):
        raise InputError("snr / teacher_range only apply to rating='teacher'; drop them or set rating='teacher'")
    if isinstance(threshold, str):
        if threshold not in ("levels", "ratings"):
            raise InputError(f"threshold={threshold!r}: use 'levels', 'ratings' or a number")
    else:
        finite_number("threshold", threshold)
    return protocol


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
def _streams(seed: int) -> list[np.random.Generator]:
    return [np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(_N_STREAMS)]


def _check_seed(seed: Any, name: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise InputError(f"{name}={seed!r}: must be a non-negative integer")
    return int(seed)


def _check_embeddings(embeddings: Any, n: int | None) -> np.ndarray:
    X = np.asarray(embeddings, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] == 0:
        raise InputError(f"embeddings: expected a 2-D (n, d) array, got shape {X.shape}")
    if n is not None and X.shape[0] != n:
        raise InputError(f"embeddings: {X.shape[0]} rows but the rated data has {n}; they must be aligned row by row")
    if not np.isfinite(X).all():
        raise InputError("embeddings: contain NaN or infinite values; re-embed the rows")
    return X
