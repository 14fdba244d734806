"""Summaries of an impression log: sizes, observation and label rates, columns and warnings.

``summarize_log(read_log(path))`` is what ``causalrm validate`` prints; ``causalrm.data.scan.summarize_file(path)`` gives the
same summary from streaming aggregates without loading the texts (Parquet / JSON Lines logs). Warnings flag logs that load fine but that the
method cannot use well: a feedback-only log without ``logged_propensity`` (no unobserved impressions, so propensities
cannot be learned), tiny samples, extreme class imbalance or observation rates, empty prompts, simulation-only
columns, and feedback recorded on unobserved rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import (
    AUTO,
    EXPLICIT,
    IMPLICIT,
    MIXED,
    PAIRWISE,
    as_impressions,
    describe,
    describe_mixed,
    describe_pairwise,
    kind_of,
    mixed_signal,
    positive_only_warning,
    unused_signals,
)
from causalrm.data.pairwise import RESPONSE_A, RESPONSE_B, SHOWN_FIRST, is_pair_log, position_summary

#: fewer observed rows than this gives a "tiny sample" warning
MIN_OBSERVED = 500
#: positive rate among observed rows outside [IMBALANCE, 1 - IMBALANCE] gives a class-imbalance warning
IMBALANCE = 0.05
#: observation rate below this gives a warning (propensity weights 1/p become extreme, most get clipped)
MIN_OBSERVED_RATE = 0.01


@dataclass
class LogSummary:
    """What :func:`summarize_log` found in a log.

    Attributes:
        n_rows: impressions (rows).
        n_observed: rows with ``observed == 1``.
        observed_rate: ``n_observed / n_rows``.
        n_positive: observed rows with ``feedback == 1``.
        positive_rate: ``n_positive / n_observed`` (None when nothing is observed).
        columns: every column, in order.
        canonical_columns / extra_columns: the columns of ``causalrm.data.schema`` / the others.
        has_logged_propensity, has_gold_label: whether these optional columns hold values.
        n_gold: rows with a non-null ``gold_label``.
        feedback_only: True when every row is observed (no impressions without feedback).
        n_empty_prompts: rows whose prompt is empty or whitespace only.
        splits: rows per ``split`` value (empty when there is no split column; ``null`` counts missing values).
        simulation_columns: simulation-only columns present (``true_label``, ``true_score``, ``true_propensity``).
        chat: chat-format logs (a ``context`` column, ``causalrm.data.chat``): ``conversations``, ``multi_turn`` (context
            of more than one message) and ``system_prompt`` row counts; empty for flat logs.
        warnings: one line each.
        source: the file the log came from, when known.
        feedback_kind: ``explicit`` or ``implicit`` (:mod:`causalrm.data.feedback_kinds`); for implicit logs every row
            counts as observed and ``n_positive`` counts the events.
        n_swapped: an A/B log's swapped-order duplicate pairs voted in both orders
            (``causalrm.data.pairwise.count_swapped``); None for other logs.
    """

    n_rows: int
    n_observed: int
    observed_rate: float
    n_positive: int
    positive_rate: float | None
    columns: list[str]
    canonical_columns: list[str]
    extra_columns: list[str]
    has_logged_propensity: bool
    has_gold_label: bool
    n_gold: int
    feedback_only: bool
    n_empty_prompts: int
    splits: dict[str, int] = field(default_factory=dict)
    simulation_columns: list[str] = field(default_factory=list)
    chat: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source: str | None = None
    feedback_kind: str = "explicit"
    n_events: int | None = None
    n_swapped: int | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return asdict(self)

    def describe_kind(self) -> str:
        """One line: what kind of feedback the log holds and what it needs (``feedback_kinds.describe``)."""
        if self.feedback_kind == PAIRWISE:
            return describe_pairwise(self.n_rows, self.n_observed, self.n_positive,
                                     first_shown=SHOWN_FIRST in self.columns)
        if self.feedback_kind == MIXED:
            return describe_mixed(mixed_signal(self.columns) or "event", self.n_rows, self.n_observed,
                                  self.n_events or 0)
        return describe(self.feedback_kind, self.n_rows, self.n_positive)

    def format(self) -> str:
        """Human-readable multi-line report (what ``causalrm validate`` prints)."""
        lines = []
        if self.source:
            lines.append(f"log: {self.source}")
        lines.append(f"rows (pairs):         {self.n_rows:,}" if self.feedback_kind == PAIRWISE
                     else f"rows (impressions):   {self.n_rows:,}")
        lines.append(f"feedback kind:        {self.describe_kind()}")
        if self.feedback_kind == IMPLICIT:
            lines.append(f"events:               {self.n_positive:,} ({_pct(self.positive_rate or 0.0)} of impressions)")
        elif self.feedback_kind == PAIRWISE:
            lines.append(f"votes:                {self.n_observed:,} ({_pct(self.observed_rate)} of pairs)")
            if self.positive_rate is not None:
                lines.append(f"votes for a:          {self.n_positive:,} ({_pct(self.positive_rate)} of votes)")
            if self.n_swapped:
                lines.append(f"swapped order:        {self.n_swapped:,} swapped-order duplicate "
                             f"pair{'' if self.n_swapped == 1 else 's'}: flip rates can be read from them "
                             "(--flip-method duplicates)")
        elif self.positive_rate is None:
            lines.append(f"observed (feedback):  {self.n_observed:,} ({_pct(self.observed_rate)})")
            lines.append("positive feedback:    - (no feedback)")
        else:
            lines.append(f"observed (feedback):  {self.n_observed:,} ({_pct(self.observed_rate)})")
            lines.append(f"positive feedback:    {self.n_positive:,} ({_pct(self.positive_rate)} of observed)")
        if self.feedback_kind != IMPLICIT:
            lines.append(f"feedback-only log:    {'yes' if self.feedback_only else 'no'}")
        lines.append(f"logged propensity:    {'yes' if self.has_logged_propensity else 'no'}")
        lines.append(f"gold labels:          {self.n_gold:,}" if self.has_gold_label else "gold labels:          no")
        if self.chat:
            lines.append(f"chat format:          {self.chat['conversations']:,} conversations, "
                         f"{self.chat['multi_turn']:,} multi-turn, {self.chat['system_prompt']:,} with a system prompt")
        if self.splits:
            lines.append("splits:               " + ", ".join(f"{k} {v:,}" for k, v in self.splits.items()))
        lines.append("columns:              " + ", ".join(self.canonical_columns))
        if self.extra_columns:
            lines.append("extra columns:        " + ", ".join(self.extra_columns))
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)}):")
            lines.extend(f"  - {w}" for w in self.warnings)
        else:
            lines.append("warnings:             none")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _rows(k: int) -> str:
    return f"{k:,} row{'' if k == 1 else 's'}"


def summarize_log(df: pl.DataFrame, *, source: str | None = None, feedback_kind: str = AUTO) -> LogSummary:
    """Summarise a canonical log (as returned by :func:`causalrm.data.io.readers.read_log`), read as ``feedback_kind``
    (:func:`causalrm.data.feedback_kinds.as_impressions`: a log already read keeps its kind).

    Preconditions: ``prompt``, ``response``, ``feedback`` and ``observed`` columns exist (``read_log`` guarantees
    them); ``observed`` is 0/1.
    """
    if is_pair_log(df):
        return _pair_summary(df, source)
    for col in (schema.PROMPT, schema.RESPONSE, schema.FEEDBACK, schema.OBSERVED):
        if col not in df.columns:
            raise ValueError(f"summarize_log: column {col!r} is missing; read the file with causalrm.data.io.readers.read_log")
    df = as_impressions(df, feedback_kind)
    n = df.height
    observed = df[schema.OBSERVED].fill_null(0).cast(pl.Int64)
    feedback = df[schema.FEEDBACK]
    obs_mask = observed == 1
    n_observed = int(observed.sum())
    n_positive = int(((feedback == 1) & obs_mask).fill_null(False).sum())
    columns = list(df.columns)
    has_lp = schema.LOGGED_PROPENSITY in columns and df[schema.LOGGED_PROPENSITY].null_count() < n
    n_gold = int(df[schema.GOLD_LABEL].is_not_null().sum()) if schema.GOLD_LABEL in columns else 0
    n_empty_prompts = int((df[schema.PROMPT].fill_null("").str.strip_chars() == "").sum())
    splits: dict[str, int] = {}
    if schema.SPLIT in columns and df[schema.SPLIT].null_count() < n:
        counts = df[schema.SPLIT].value_counts(sort=True)
        splits = {("null" if k is None else str(k)): int(v) for k, v in counts.iter_rows()}
    chat_counts: dict[str, int] = {}
    if schema.CONTEXT in columns and df[schema.CONTEXT].dtype == pl.String:
        from causalrm.data.chat import MalformedConversation, parse_context

        try:
            contexts = [parse_context(c) for c in df[schema.CONTEXT]]
        except MalformedConversation:  # a flat log's own "context" column: not chat format
            contexts = None
        if contexts is not None:
            chat_counts = {"conversations": n, "multi_turn": sum(len(c) > 1 for c in contexts),
                           "system_prompt": sum(any(m["role"] == "system" for m in c) for c in contexts)}

    n_fb_unobserved = int((feedback.is_not_null() & ~obs_mask).fill_null(False).sum())
    n_dup = n - df.select(schema.PROMPT, schema.RESPONSE).unique().height if n else 0
    n_split_null = df[schema.SPLIT].null_count() if schema.SPLIT in columns else None
    return build_summary(n=n, n_observed=n_observed, n_positive=n_positive, columns=columns, has_lp=bool(has_lp),
                         n_gold=n_gold, n_empty_prompts=n_empty_prompts, splits=splits,
                         n_fb_unobserved=n_fb_unobserved, n_dup=n_dup, n_split_null=n_split_null,
                         chat_counts=chat_counts, source=source, feedback_kind=kind_of(df),
                         n_events=int(df[event].sum()) if (event := mixed_signal(columns)) and kind_of(df) == MIXED
                         else None)


def _pair_summary(df: pl.DataFrame, source: str | None) -> LogSummary:
    """An A/B log's summary (``causalrm.data.pairwise``): rows are pairs, observed rows votes, positive ones votes
    for a."""
    n, columns, votes = df.height, list(df.columns), position_summary(df)
    splits = ({("null" if k is None else str(k)): int(v) for k, v in df[schema.SPLIT].value_counts(sort=True).iter_rows()}
              if schema.SPLIT in columns and df[schema.SPLIT].null_count() < n else {})
    return build_summary(
        n=n, n_observed=votes["votes"], n_positive=votes["n_for_a"],
        columns=columns, has_lp=schema.LOGGED_PROPENSITY in columns and df[schema.LOGGED_PROPENSITY].null_count() < n,
        n_gold=int(df[schema.GOLD_LABEL].is_not_null().sum()) if schema.GOLD_LABEL in columns else 0,
        n_empty_prompts=0, splits=splits, n_fb_unobserved=0,
        n_dup=n - df.select(schema.PROMPT, RESPONSE_A, RESPONSE_B).unique().height,
        n_split_null=df[schema.SPLIT].null_count() if schema.SPLIT in columns else None, chat_counts={}, source=source,
        feedback_kind=PAIRWISE, n_swapped=votes["swapped"])


def build_summary(*, n: int, n_observed: int, n_positive: int, columns: list[str], has_lp: bool, n_gold: int,
                  n_empty_prompts: int, splits: dict[str, int], n_fb_unobserved: int, n_dup: int,
                  n_split_null: int | None, chat_counts: dict[str, int], source: str | None,
                  feedback_kind: str = EXPLICIT, n_events: int | None = None,
                  n_swapped: int | None = None) -> LogSummary:
    """The :class:`LogSummary` (and its warnings) from counts: shared by :func:`summarize_log` (an eager frame)
    and :func:`causalrm.data.scan.summarize_file` (streaming aggregates). ``n_split_null``: rows without a split value,
    None when there is no split column. Counts are of the log as read: an implicit log (``feedback_kind``) has every
    row observed and ``n_positive`` events."""
    positive_rate = n_positive / n_observed if n_observed else None
    observed_rate = n_observed / n if n else 0.0
    canonical = [c for c in columns if c in schema.DTYPES]
    extra = [c for c in columns if c not in schema.DTYPES]
    feedback_only = n > 0 and n_observed == n
    sim = [c for c in schema.SIMULATION_ONLY if c in columns]
    implicit = feedback_kind == IMPLICIT
    warnings: list[str] = []
    if not implicit:
        small = positive_only_warning(n, n_observed, n_observed - n_positive)
        if small:
            warnings.append(small)
    if implicit and n_positive == 0:
        warnings.append("no event on any impression: nothing to learn from")
    elif n_observed == 0:
        warnings.append("no row has feedback: this log can be scored but not used to train a reward model (map "
                        "thumbs with --map feedback=COLUMN, or implicit events such as copies with --map "
                        "copied=COLUMN)")
    elif feedback_only and not has_lp and not implicit:
        warnings.append("every row has feedback and there is no logged_propensity column: propensities cannot be "
                        "learned; include the impressions that got no feedback, or log the propensity")
    if 0 < n_observed < MIN_OBSERVED:
        warnings.append(f"tiny sample: only {n_observed:,} rows with feedback; estimates will be very noisy "
                        f"(aim for at least {MIN_OBSERVED:,})")
    if not implicit and positive_rate is not None and n_observed and not IMBALANCE <= positive_rate <= 1 - IMBALANCE:
        warnings.append(f"class imbalance: {_pct(positive_rate)} of the feedback is positive; flip-rate and "
                        "propensity estimates will be unstable")
    if 0 < observed_rate < MIN_OBSERVED_RATE:
        warnings.append(f"only {_pct(observed_rate)} of impressions have feedback: inverse-propensity weights will be "
                        "extreme and many will be clipped")
    if n_empty_prompts:
        share = _pct(n_empty_prompts / n)
        warnings.append(f"empty prompts: {_rows(n_empty_prompts)} ({share}); the reward model will see the response "
                        "alone there")
    if sim:
        warnings.append(f"simulation-only columns present ({', '.join(sim)}): used for evaluation only, never for "
                        "training")
    if n_fb_unobserved:
        warnings.append(f"feedback on unobserved rows: {_rows(n_fb_unobserved)} with observed = 0 hold a feedback "
                        "value; it is ignored")
    if n and n_dup:
        what = "(prompt, response_a, response_b) triple" if feedback_kind == PAIRWISE else "(prompt, response) pair"
        warnings.append(f"duplicates: {_rows(n_dup)} repeat an earlier {what}")
    if n_split_null is not None and n_split_null not in (0, n):
        warnings.append(f"missing split: {_rows(n_split_null)} without a split value")
    for signal in unused_signals(columns, feedback_kind):
        warnings.append(f"column {signal!r} is an implicit signal beside the thumbs in 'feedback' that is not read "
                        f"(a mixed log reads one positive event, copied or clicked, beside the thumbs; read "
                        f"{signal!r} alone with --map feedback={signal} and no thumbs column)")
    if schema.GOLD_LABEL in columns and n_gold == 0:
        warnings.append("the gold_label column is empty")

    return LogSummary(
        n_rows=n,
        n_observed=n_observed,
        observed_rate=observed_rate,
        n_positive=n_positive,
        positive_rate=positive_rate,
        columns=columns,
        canonical_columns=canonical,
        extra_columns=extra,
        has_logged_propensity=bool(has_lp),
        has_gold_label=n_gold > 0,
        n_gold=n_gold,
        feedback_only=feedback_only,
        n_empty_prompts=n_empty_prompts,
        splits=splits,
        simulation_columns=sim,
        chat=chat_counts,
        warnings=warnings,
        source=source,
        feedback_kind=feedback_kind,
        n_events=n_events,
        n_swapped=n_swapped,
    )
