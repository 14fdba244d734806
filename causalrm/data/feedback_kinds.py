"""Feedback kinds: explicit thumbs, or implicit events (copies, clicks) that are recorded only when they happen.

Notation as in docs/ARCHITECTURE.md, plus

    e       an implicit event on an impression (a copy, a click): 1 when it happened, else 0
    c       P(e = 1 | r* = 1), the event rate of good responses
    eps     P(e = 1 | r* = 0), the rate of accidental events on bad ones

Kinds
-----
explicit
    ``feedback`` is a thumbs up (1) or down (0) where the user gave one and empty elsewhere; ``observed`` says which
    impressions received feedback (selection), and the feedback itself may be flipped (rho01, rho10).
implicit
    An event or nothing on every impression: ``feedback`` is 1 where the event happened and empty (or 0) elsewhere.
    An empty cell is *not* missing feedback: every shown impression is observed, and the event is a class-conditional
    noisy label of r* with ``rho01 = 1 - c`` (a good response that nobody copied) and ``rho10 = eps``. Read this way
    (:func:`as_impressions`) the log is an ordinary fully observed log, and every noise-aware estimator applies; with
    eps = 0 the noise-corrected surrogate is the unbiased PU risk (uPU; docs/METHOD.md).

What identifies the rates: c and eps are *not* identifiable from the events alone without anchors of both classes,
and "no event" is never a sure negative, so the anchor estimators are not used on implicit logs. The rates come from
a gold audit (``causalrm audit``, then ``--gold FILE``) or from the user (``--event-rate c``, ``--accidental-rate
eps``, i.e. rho01 = 1 - c, rho10 = eps). Without either, the log still ranks impressions by P(e = 1 | x), which orders
them as P(r* = 1 | x) when c and eps do not depend on x, but its sigma(z) is an event probability, not a calibrated
P(r* = 1 | x). Where c depends on x (selected-at-random events, Bekker & Davis 2018), the ranking is confounded too,
and only gold labels spread over x can tell. An examination propensity (``logged_propensity`` on an implicit log)
is refused for now: it would weight the event label, not the row, and that kernel is not written.

Detection (``kind="auto"``, :func:`detect_kind`): a feedback column that holds no 0 among at least ``MIN_EVENTS``
values, on a log that also has rows without feedback, is positive-only: implicit. Fewer events: explicit with a
warning (``summarize_log``). ``kind`` given by the user overrides the detection.

Reading marks an implicit log with a ``feedback_kind`` column (``"implicit"`` on every row) after setting
``observed = 1`` and ``feedback = e``; :func:`kind_of` reads the mark, and :func:`as_impressions` is idempotent.
"""

from __future__ import annotations

import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError

AUTO = "auto"
EXPLICIT = "explicit"
IMPLICIT = "implicit"
MIXED = "mixed"
#: an A/B log: votes between two responses to one prompt (``causalrm.data.pairwise``, which reads and marks it)
PAIRWISE = "pairwise"
KINDS: tuple[str, ...] = (EXPLICIT, IMPLICIT, MIXED, PAIRWISE)
#: the column that marks a log read as implicit feedback
FEEDBACK_KIND = "feedback_kind"
#: fewest feedback values, all of them 1, for ``auto`` to read a log as implicit
MIN_EVENTS = 30
#: columns that name an implicit positive event; a log without a ``feedback`` column reads one of them as its
#: implicit feedback (``--map copied=COLUMN`` names yours)
EVENT_COLUMNS: tuple[str, ...] = ("copied", "clicked")
#: implicit negative signals (the mirror case): recognised, not read yet
NEGATIVE_EVENT_COLUMNS: tuple[str, ...] = ("regenerated", "edited")
#: what identifies an implicit log's event rates (the remedies in messages)
IMPLICIT_NEEDS = ("label a few hundred rows (causalrm audit LOG --n 300, then --gold FILE) or give the event rates "
                  "(--event-rate C, the share of good responses that get the event, and --accidental-rate EPS)")


def event_flip_rates(event_rate: float | None, accidental_rate: float | None) -> tuple[float, float] | None:
    """The flip rates ``(rho01, rho10) = (1 - c, eps)`` of an implicit log's event rates given by the user
    (``--event-rate C``, ``--accidental-rate EPS``; EPS defaults to 0), None when neither is given; a one-line
    InputError for EPS without C or rates outside ``0 <= EPS < C <= 1``."""
    if event_rate is None and accidental_rate is None:
        return None
    if event_rate is None:
        raise InputError("--accidental-rate needs --event-rate (the share of good responses that get the event)")
    c, eps = float(event_rate), 0.0 if accidental_rate is None else float(accidental_rate)
    if not (0.0 < c <= 1.0 and 0.0 <= eps < c):
        raise InputError(f"--event-rate {c:g} / --accidental-rate {eps:g}: need 0 <= EPS < C <= 1 (events must be "
                         "likelier on good responses than on bad ones)")
    return 1.0 - c, eps


def event_column(columns: list[str], kind: str = AUTO) -> str | None:
    """The implicit event column a log without ``feedback`` reads as its feedback (one of :data:`EVENT_COLUMNS`),
    None when the log has a ``feedback`` column or no event column; a one-line InputError where the columns cannot be
    read as one signal (several events, a negative signal alone, ``kind`` explicit)."""
    if schema.FEEDBACK in columns:
        return None
    events = [c for c in EVENT_COLUMNS if c in columns]
    negative = [c for c in NEGATIVE_EVENT_COLUMNS if c in columns]
    if len(events) > 1:
        raise InputError(f"columns {', '.join(map(repr, events))} are each an implicit signal; logs that mix signals "
                         f"are not supported yet: read one of them with --map feedback={events[0]}")
    if not events and negative:
        raise InputError(f"column {negative[0]!r} is an implicit negative signal (the mirror of a copy), which is not "
                         "supported yet; give thumbs or a positive event (--map feedback=COLUMN)")
    if events and kind == EXPLICIT:
        raise InputError(f"column {events[0]!r} holds implicit events, but --feedback-kind explicit was given; map "
                         "a thumbs column with --map feedback=COLUMN, or drop --feedback-kind")
    return events[0] if events else None


def mixed_signal(columns: list[str], kind: str = AUTO) -> str | None:
    """The implicit event column read beside the thumbs in ``feedback`` (a mixed log), None when there is none or
    ``kind`` is explicit (the events are then not used); a one-line InputError for several event columns or
    ``kind`` implicit on a log with thumbs and events."""
    events = [c for c in EVENT_COLUMNS if c in columns]
    if schema.FEEDBACK not in columns or not events or kind == EXPLICIT:
        return None
    if kind == IMPLICIT:
        raise InputError(f"the log has thumbs in 'feedback' and events in {events[0]!r}: drop --feedback-kind to read "
                         "both (mixed), or use --feedback-kind explicit to read the thumbs alone")
    if len(events) > 1:
        raise InputError(f"columns {', '.join(map(repr, events))} are each an implicit signal; a mixed log reads one "
                         f"beside the thumbs: drop or rename the others")
    return events[0]


def unused_signals(columns: list[str], kind: str = AUTO) -> list[str]:
    """Implicit signal columns beside the ``feedback`` that is read and not used: negative events (regenerations,
    edits), and positive ones where the log is read as explicit."""
    if schema.FEEDBACK not in columns:
        return []
    used = {mixed_signal(columns, kind)} if kind in (AUTO, MIXED) else set()
    return [c for c in (*EVENT_COLUMNS, *NEGATIVE_EVENT_COLUMNS) if c in columns and c not in used]


def check_kind(kind: str) -> str:
    """``kind`` if it is ``auto`` or one of :data:`KINDS`, else a one-line InputError."""
    if kind not in (AUTO, *KINDS):
        raise InputError(f"feedback kind {kind!r}: use auto, {' or '.join(KINDS)}")
    return kind


def detect_kind(n_rows: int, n_feedback: int, n_negative: int) -> str:
    """The kind ``auto`` reads from counts: ``n_rows`` impressions, ``n_feedback`` of them with a feedback value,
    ``n_negative`` of those equal to 0 (module docstring, Detection)."""
    if min(n_rows, n_feedback, n_negative) < 0 or n_feedback > n_rows or n_negative > n_feedback:
        raise ValueError(f"inconsistent counts: rows {n_rows}, feedback {n_feedback}, negative {n_negative}")
    positive_only = n_negative == 0 and n_feedback >= MIN_EVENTS
    return IMPLICIT if positive_only and n_feedback < n_rows else EXPLICIT


def positive_only_warning(n_rows: int, n_feedback: int, n_negative: int) -> str | None:
    """A warning for a positive-only feedback column too small for ``auto`` to call it implicit, else None."""
    if n_negative == 0 and 0 < n_feedback < MIN_EVENTS and n_feedback < n_rows:
        return (f"every feedback value is positive ({n_feedback} of them): if they are events (copies, clicks), "
                "pass --feedback-kind implicit; thumbs need some thumbs-down to learn from")
    return None


def kind_of(log: pl.DataFrame) -> str:
    """The kind a log was read as: ``implicit`` when it carries the mark of :func:`as_impressions`, else explicit."""
    if FEEDBACK_KIND not in log.columns:
        return EXPLICIT
    values = log[FEEDBACK_KIND].cast(pl.String).unique().to_list()
    if len(values) == 1 and values[0] in KINDS:
        return values[0]
    raise InputError(f"column {FEEDBACK_KIND!r} holds {sorted(map(str, values))}; it must be one of "
                     f"{', '.join(KINDS)} on every row (drop the column to let the reader detect the kind)")


def _counts(log: pl.DataFrame) -> tuple[int, int, int]:
    """(rows, rows with feedback, of them negative), as :func:`detect_kind` takes them."""
    fb = log[schema.FEEDBACK]
    has = fb.is_not_null()
    if schema.OBSERVED in log.columns:
        has = has & (log[schema.OBSERVED] == 1).fill_null(False)
    return log.height, int(has.sum()), int((has & (fb == 0)).fill_null(False).sum())


def resolve_kind(log: pl.DataFrame, kind: str = AUTO) -> str:
    """The kind of a canonical log: its mark, else ``kind``, else the detected one."""
    check_kind(kind)
    if FEEDBACK_KIND in log.columns:
        marked = kind_of(log)
        if kind not in (AUTO, marked):
            raise InputError(f"the log is marked {marked} feedback (column {FEEDBACK_KIND!r}) but "
                             f"--feedback-kind {kind} was given; drop one of them")
        return marked
    if mixed_signal(log.columns, kind) is not None:
        return MIXED
    if kind == PAIRWISE:
        raise InputError("--feedback-kind pairwise needs an A/B log: prompt, response_a, response_b and feedback (a, "
                         "b or empty), or a preference file with prompt, chosen and rejected")
    if kind not in (AUTO, MIXED):
        return kind
    if kind == MIXED:
        raise InputError(f"--feedback-kind mixed needs thumbs in 'feedback' and an event column ({', '.join(EVENT_COLUMNS)}"
                         "; --map copied=COLUMN names yours)")
    if schema.FEEDBACK not in log.columns:
        return EXPLICIT
    return detect_kind(*_counts(log))


def as_impressions(log: pl.DataFrame, kind: str = AUTO) -> pl.DataFrame:
    """``log`` read as its kind (:func:`resolve_kind`): an implicit log gets ``observed = 1`` and ``feedback = e``
    (1 where the event happened, 0 elsewhere) on every row and the ``feedback_kind`` mark; an explicit log is
    returned as it is, marked only where the user forced a positive-only log to be read as thumbs. Idempotent."""
    if FEEDBACK_KIND in log.columns:
        resolve_kind(log, kind)  # the mark holds; a contradicting ``kind`` is refused
        return log
    check_kind(kind)
    if resolve_kind(log, kind) == MIXED:
        event = mixed_signal(log.columns, kind)
        return log.with_columns((pl.col(event) == 1).fill_null(False).cast(pl.Int8).alias(event),
                                pl.lit(MIXED, dtype=pl.String).alias(FEEDBACK_KIND))
    detected = detect_kind(*_counts(log)) if schema.FEEDBACK in log.columns else EXPLICIT
    kind = detected if kind == AUTO else kind
    if kind == EXPLICIT:
        forced = detected == IMPLICIT or mixed_signal(log.columns) is not None  # the mark keeps the reading
        return log.with_columns(pl.lit(EXPLICIT, dtype=pl.String).alias(FEEDBACK_KIND)) if forced else log
    if schema.FEEDBACK not in log.columns:
        raise InputError("an implicit log needs a feedback column: 1 where the event happened, empty elsewhere; "
                         "map it with --map feedback=COLUMN")
    event = (pl.col(schema.FEEDBACK) == 1).fill_null(False).cast(pl.Int8)
    return log.with_columns(event.alias(schema.FEEDBACK), pl.lit(1, dtype=pl.Int8).alias(schema.OBSERVED),
                            pl.lit(IMPLICIT, dtype=pl.String).alias(FEEDBACK_KIND))


def describe(kind: str, n_rows: int, n_events: int) -> str:
    """One line for ``validate`` and the app: what the log is and, for implicit logs, what it needs."""
    if kind == IMPLICIT:
        rate = n_events / n_rows if n_rows else float("nan")
        return (f"implicit (positive-only) feedback: {n_events:,} events on {n_rows:,} impressions ({rate:.1%}); an "
                "empty cell is no event, not missing feedback. Calibrating it needs an event rate or audited "
                f"labels: {IMPLICIT_NEEDS}")
    return "explicit feedback (thumbs up / down where given)"


def describe_mixed(event: str, n_rows: int, n_observed: int, n_events: int) -> str:
    """One line for ``validate`` and the app on a mixed log: thumbs plus an implicit event column."""
    return (f"mixed feedback: thumbs on {n_observed:,} of {n_rows:,} impressions plus {n_events:,} implicit "
            f"{event!r} events on every impression; one model learns from both (causalrm.data.mixed_feedback). The "
            f"events' rates come from audited labels or --event-rate C --accidental-rate EPS")


def describe_pairwise(n_pairs: int, n_votes: int, n_for_a: int, *, first_shown: bool) -> str:
    """One line for ``validate``, ``fit`` and the app on an A/B log (``causalrm.data.pairwise``)."""
    rate = n_votes / n_pairs if n_pairs else float("nan")
    share = n_for_a / n_votes if n_votes else float("nan")
    where = "the first-shown response (a)" if first_shown else "a (no shown_first column: position not logged)"
    return (f"pairwise (A/B) log: {n_pairs:,} pairs, {n_votes:,} votes ({rate:.1%}), {share:.1%} of them for {where}; "
            "one pointwise reward model r(prompt, response) is fitted on z_a - z_b (Bradley-Terry)")
