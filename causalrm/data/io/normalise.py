"""Column values to canonical dtypes: feedback words and ratings, 0/1 flags, probabilities, text, ids.

The one definition of the column checks. Each canonical column has a :class:`Rule`: its canonical value and its
:class:`Check` s, as polars expressions over the raw (mapped) column, with the message a failing row gets.
:func:`log_rules` gives a log's rules; ``read_log`` (:mod:`causalrm.data.io.canonical`) evaluates them on the table and
raises at the first failing row (:func:`_evaluate`), and ``causalrm validate``'s streaming path
(:mod:`causalrm.data.scan`) evaluates the same checks as one aggregate each (:meth:`Check.any`) and reads the file
with ``read_log`` when one fires, so both refuse with the same line. A column whose dtype cannot hold the value
raises :class:`ColumnProblem` while its rule is built (no row to name).

The Series converters (``_text``, ``_to_float``, ``_binary``, ``_probability``, ...) evaluate one rule and raise
:class:`~causalrm.errors.InputError` naming the first bad row and the user's column (``_Ctx``: mapped columns are
named as the user wrote them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from causalrm.data import schema
from causalrm.data.io.formats import _Raw
from causalrm.data.io.formatting import _fmt
from causalrm.errors import InputError

_NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
_POSITIVE = ("1", "true", "t", "yes", "y", "up", "+1", "+", "thumbs_up", "thumbsup", "thumbs-up", "thumbs up",
             "like", "liked", "positive", "pos", "good", "👍", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "1.0")
_NEGATIVE = ("0", "false", "f", "no", "n", "down", "-1", "-", "thumbs_down", "thumbsdown", "thumbs-down",
             "thumbs down", "dislike", "disliked", "negative", "neg", "bad", "👎", "👎🏻", "👎🏼", "👎🏽", "👎🏾", "👎🏿",
             "0.0", "-1.0")
_FEEDBACK_WORDS = {**{w: 1 for w in _POSITIVE}, **{w: 0 for w in _NEGATIVE}}
_BINARY_WORDS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0, "t": 1, "f": 0, "yes": 1, "no": 0,
                 "y": 1, "n": 0}
_SPLIT_NAMES = {"train": schema.TRAIN, "training": schema.TRAIN, "val": schema.VAL, "valid": schema.VAL,
                "validation": schema.VAL, "dev": schema.VAL, "test": schema.TEST, "testing": schema.TEST}


class _Ctx:
    """Error-message helpers for one file: names the user's column where it was mapped."""

    def __init__(self, raw: _Raw, origin: dict[str, str]) -> None:
        self.raw = raw
        self.origin = origin  # canonical -> user column name

    def col(self, name: str) -> str:
        src = self.origin.get(name)
        return f"column {src!r} (mapped to {name})" if src and src != name else f"column {name!r}"

    def fail(self, i: int | None, column: str, problem: str, todo: str) -> InputError:
        where = f"{self.raw.where(i)}, " if i is not None else ""
        return InputError(f"{self.raw.path}: {where}{self.col(column)}: {problem}; {todo}")


def _first_bad(mask: pl.Series) -> int | None:
    """Index of the first True in a boolean mask (nulls count as False)."""
    idx = mask.fill_null(False).arg_true()
    return int(idx[0]) if idx.len() else None


# --------------------------------------------------------------------------------------------------------------------
# The checks, as expressions (one definition for read_log and the streaming validate)
# --------------------------------------------------------------------------------------------------------------------
class ColumnProblem(Exception):
    """A column whose dtype cannot hold its canonical value (a list, a struct, ...): the whole column fails."""

    def __init__(self, problem: str, todo: str) -> None:
        super().__init__(f"{problem}; {todo}")
        self.problem = problem
        self.todo = todo


@dataclass(frozen=True)
class Check:
    """Rows where ``bad`` is True fail with ``problem(shown value)``; ``todo`` says what to do.

    ``shown``: the value the message names (default: the raw column); ``flag``: ``bad.any()`` written as an
    aggregate the streaming engine keeps small (for checks whose ``bad`` broadcasts an aggregate)."""

    bad: pl.Expr
    problem: Callable[[Any], str]
    todo: str
    shown: pl.Expr | None = None
    flag: pl.Expr | None = None

    def any(self) -> pl.Expr:
        """One boolean: does any row fail?"""
        return self.flag if self.flag is not None else self.bad.any()


@dataclass(frozen=True)
class Rule:
    """A column's canonical value and the checks its rows must pass (in the order they are reported)."""

    value: pl.Expr
    checks: tuple[Check, ...] = ()

    def then(self, *checks: Check) -> Rule:
        return Rule(self.value, self.checks + checks)


def _const(text: str) -> Callable[[Any], str]:
    return lambda _value: text


def _nan_null(f: pl.Expr) -> pl.Expr:
    return pl.when(f.is_nan()).then(None).otherwise(f)


def _token_expr(c: pl.Expr) -> pl.Expr:
    """Lower-cased, stripped text with the null tokens (``""``, NA, null, none, nan) as null."""
    t = c.str.strip_chars().str.to_lowercase()
    return pl.when(t.is_in(list(_NULL_TOKENS))).then(None).otherwise(t)


def _is_textlike(dtype: pl.DataType) -> bool:
    return (dtype == pl.String or dtype == pl.Null or dtype == pl.Boolean or dtype.is_numeric()
            or dtype.is_temporal() or dtype == pl.Categorical or isinstance(dtype, pl.Enum))


def text_rule(c: pl.Expr, dtype: pl.DataType) -> Rule:
    """Text (String) from text, numbers, booleans, dates, categoricals and UTF-8 bytes."""
    if _is_textlike(dtype):
        return Rule(c.cast(pl.String))
    if dtype == pl.Binary:
        value = c.cast(pl.String, strict=False)
        return Rule(value, (Check(value.is_null() & c.is_not_null(), _const("holds bytes that are not valid UTF-8"),
                                  "store text as UTF-8 strings"),))
    raise ColumnProblem(f"has type {dtype}", "store it as text (one string per row)")


def float_rule(c: pl.Expr, dtype: pl.DataType, what: str) -> Rule:
    """Float64 (NaN kept) from numbers, booleans and numeric text; other text fails."""
    if dtype == pl.Null or dtype == pl.Boolean or dtype.is_numeric():
        return Rule(c.cast(pl.Float64))
    if dtype == pl.String:
        t = _token_expr(c).replace({"true": "1", "false": "0"})
        f = t.cast(pl.Float64, strict=False)
        return Rule(f, (Check(f.is_null() & t.is_not_null(), lambda v: f"value {v!r} is not a number",
                              f"{what} must be numeric"),))
    raise ColumnProblem(f"has type {dtype}", f"{what} must be numeric")


def binary_rule(c: pl.Expr, dtype: pl.DataType, *, allow_null: bool, todo: str = "use 0/1 or true/false") -> Rule:
    """Int8 0/1 from booleans, 0/1 numbers or true/false/yes/no text."""
    if dtype == pl.Null or dtype == pl.Boolean:
        rule = Rule(c.cast(pl.Int8))
    elif dtype == pl.String:
        t = _token_expr(c)
        out = t.replace_strict(_BINARY_WORDS, default=None, return_dtype=pl.Int8)
        rule = Rule(out, (Check(out.is_null() & t.is_not_null(), lambda v: f"value {v!r} is not 0/1", todo),))
    elif dtype.is_numeric():
        f = c.cast(pl.Float64)
        rule = Rule(_nan_null(f).cast(pl.Int8),
                    (Check(~f.is_in([0.0, 1.0]) & f.is_not_null() & ~f.is_nan(),
                           lambda v: f"value {_fmt(v)} is not 0/1", todo, shown=f),))
    else:
        raise ColumnProblem(f"has type {dtype}", todo)
    if not allow_null:
        rule = rule.then(Check(rule.value.is_null(), _const("is empty"),
                               "give 0 or 1 on every row, or drop the column to derive it"))
    return rule


_FEEDBACK_HOW = "use 0/1, true/false, up/down, +1/-1 or thumbs_up/thumbs_down, or pass --threshold T for ratings"


def _not_binary(f: pl.Expr) -> pl.Expr:
    """One boolean: the numbers are neither all in {0, 1} nor all in {-1, +1} (ratings, not feedback)."""
    return (f.is_not_null() & ~f.is_in([0.0, 1.0, -1.0])).any() | ((f == 0).any() & (f == -1).any())


def _ratings_check(f: pl.Expr, applies: pl.Expr) -> Check:
    return Check(applies & _not_binary(f) & ~f.is_in([0.0, 1.0]) & f.is_not_null(),
                 lambda v: f"holds numeric ratings (value {_fmt(v)}), not binary feedback",
                 "pass --threshold T to binarise them (rating >= T is positive)", shown=f,
                 flag=applies.any() & _not_binary(f))


def feedback_rule(c: pl.Expr, dtype: pl.DataType, threshold: float | None) -> Rule:
    """Int8 0/1, null = no feedback: booleans, 0/1, +1/-1, feedback words, or ratings >= ``threshold``."""
    if dtype == pl.Null or dtype == pl.Boolean:
        return Rule(c.cast(pl.Int8))
    if dtype == pl.String:
        t = _token_expr(c)
        num = t.cast(pl.Float64, strict=False)
        nonnum = num.is_null() & t.is_not_null()
        f = _nan_null(num)
        if threshold is not None:
            return Rule((f >= threshold).cast(pl.Int8),
                        (Check(nonnum, lambda v: f"value {v!r} is not numeric but --threshold was given",
                               "--threshold binarises numeric ratings; drop it for thumbs or true/false feedback"),))
        words = nonnum.any()  # one word makes the whole column words (numbers included: "1", "-1", "0.0")
        mapped = t.replace_strict(_FEEDBACK_WORDS, default=None, return_dtype=pl.Int8)
        unknown = mapped.is_null() & t.is_not_null()
        return Rule(pl.when(words).then(mapped).otherwise((f > 0).cast(pl.Int8)),
                    (Check(words & unknown, lambda v: f"value {v!r} is not a recognised feedback value", _FEEDBACK_HOW,
                           flag=words & unknown.any()),
                     _ratings_check(f, ~words)))
    if not dtype.is_numeric():
        raise ColumnProblem(f"has type {dtype}", _FEEDBACK_HOW)
    f = _nan_null(c.cast(pl.Float64))
    if threshold is not None:
        return Rule((f >= threshold).cast(pl.Int8))
    return Rule((f > 0).cast(pl.Int8), (_ratings_check(f, pl.lit(True)),))


def probability_rule(c: pl.Expr, dtype: pl.DataType, *, allow_null: bool = False) -> Rule:
    """Float64 in (0, 1] (NaN = empty)."""
    base = float_rule(c, dtype, "a probability")
    f = _nan_null(base.value)
    checks = list(base.checks)
    if not allow_null:
        checks.append(Check(f.is_null(), _const("is empty"),
                            "give a probability in (0, 1] on every row, or drop the column"))
    checks.append(Check((f <= 0) | (f > 1), lambda v: f"value {_fmt(v)} is outside (0, 1]",
                        "probabilities must be in (0, 1]", shown=f))
    return Rule(f, tuple(checks))


def unit_interval_rule(c: pl.Expr, dtype: pl.DataType) -> Rule:
    """Float64 in [0, 1] or null (NaN = null)."""
    base = float_rule(c, dtype, "a label in [0, 1]")
    f = _nan_null(base.value)
    return Rule(f, base.checks).then(Check((f < 0) | (f > 1), lambda v: f"value {_fmt(v)} is outside [0, 1]",
                                           "use 0/1 or a probability in [0, 1]", shown=f))


def id_rule(c: pl.Expr, dtype: pl.DataType, *, remedy: str = "drop the column to generate them") -> Rule:
    """Non-empty text ids (uniqueness needs two rows in its message: :func:`_ids`, and hashes when streaming)."""
    rule = text_rule(c, dtype)
    s = rule.value
    return rule.then(Check(s.is_null() | (s.str.strip_chars() == ""), _const("is empty"),
                           f"give every row a unique id, or {remedy}"))


def split_rule(c: pl.Expr, dtype: pl.DataType) -> Rule:
    """train / val / test from their spellings (``_SPLIT_NAMES``), null for the null tokens."""
    rule = text_rule(c, dtype)
    t = _token_expr(rule.value)
    unknown = t.is_not_null() & ~t.is_in(list(_SPLIT_NAMES))
    return Rule(t.replace_strict(_SPLIT_NAMES, default=None, return_dtype=pl.String),
                rule.checks + (Check(unknown, lambda v: f"value {v!r} is not a split name", "use train, val or test",
                                     shown=rule.value),))


def prompt_rule(c: pl.Expr, dtype: pl.DataType) -> Rule:
    """Text; null fails (an empty string is a prompt)."""
    rule = text_rule(c, dtype)
    return rule.then(Check(rule.value.is_null(), _const("is null"),
                           'use an empty string "" where the log has no prompt text'))


def response_rule(c: pl.Expr, dtype: pl.DataType) -> Rule:
    """Non-blank text."""
    rule = text_rule(c, dtype)
    s = rule.value
    return rule.then(Check(s.is_null() | (s.str.strip_chars() == ""), _const("is empty"),
                           "every row needs response text; drop rows without one"))


def observed_rule(c: pl.Expr, dtype: pl.DataType, feedback: pl.Expr) -> Rule:
    """Int8 0/1 on every row; 1 needs feedback (``feedback``: the feedback rule's value)."""
    rule = binary_rule(c, dtype, allow_null=False)
    return rule.then(Check((rule.value == 1) & feedback.is_null(), _const("is 1 but feedback is empty"),
                           "set observed to 0 there, fill in the feedback, or drop the observed column"))


def log_rules(dtypes: dict[str, pl.DataType], threshold: float | None, *, log: bool = True) -> dict[str, Rule]:
    """The rules of a table's canonical columns (``dtypes``: its columns after mapping), in the order the checks are
    reported. ``log``: also ``feedback`` and ``observed`` (derived when absent: no feedback; observed = feedback
    given). Raises :class:`ColumnProblem` (via :func:`column_problem`: which column) for an unusable dtype."""
    rules: dict[str, Rule] = {}

    def add(name: str, build: Callable[[pl.Expr, pl.DataType], Rule]) -> None:
        if name in dtypes:
            try:
                rules[name] = build(pl.col(name), dtypes[name])
            except ColumnProblem as err:
                err.column = name
                raise

    add(schema.PROMPT, prompt_rule)
    add(schema.RESPONSE, response_rule)
    add(schema.RESPONSE_ID, id_rule)
    if log:
        if schema.FEEDBACK in dtypes:
            add(schema.FEEDBACK, lambda c, d: feedback_rule(c, d, threshold))
        else:
            rules[schema.FEEDBACK] = Rule(pl.lit(None, dtype=pl.Int8))
        feedback = rules[schema.FEEDBACK].value
        if schema.OBSERVED in dtypes:
            add(schema.OBSERVED, lambda c, d: observed_rule(c, d, feedback))
        else:
            rules[schema.OBSERVED] = Rule(feedback.is_not_null().cast(pl.Int8))
    for name in (schema.USER_ID, schema.TIMESTAMP, schema.PAIR_ID):
        add(name, text_rule)
    add(schema.SPLIT, split_rule)
    for name in (schema.LOGGED_PROPENSITY, schema.TRUE_PROPENSITY):
        add(name, probability_rule)
    add(schema.GOLD_LABEL, unit_interval_rule)
    add(schema.INCLUSION_PROBABILITY, lambda c, d: probability_rule(c, d, allow_null=True))
    add(schema.AUDIT_STRATUM, text_rule)
    add(schema.TRUE_LABEL, lambda c, d: binary_rule(c, d, allow_null=True))
    add(schema.TRUE_SCORE, lambda c, d: float_rule(c, d, "true_score"))
    return rules


def first_failure(df: pl.DataFrame, rules: dict[str, Rule]) -> tuple[int, str, str, str] | None:
    """``(row, column, problem, todo)`` of the first failing check (rules in order, then rows), or None."""
    for name, rule in rules.items():
        for check in rule.checks:
            i = _first_bad(df.select(check.bad.alias("bad")).to_series())
            if i is not None:
                shown = df.select((check.shown if check.shown is not None else pl.col(name)).alias("v"))["v"][i]
                return i, name, check.problem(shown), check.todo
    return None


def _evaluate(ctx: _Ctx, name: str, s: pl.Series, build: Callable[[pl.Expr, pl.DataType], Rule]) -> pl.Series:
    """One column through its rule: the canonical Series, or InputError at the first failing row."""
    try:
        rule = build(pl.col(name), s.dtype)
    except ColumnProblem as err:
        raise ctx.fail(None, name, err.problem, err.todo) from None
    frame = s.rename(name).to_frame()
    bad = first_failure(frame, {name: rule})
    if bad is not None:
        raise ctx.fail(*bad)
    return frame.select(rule.value.alias(name)).to_series()


def _to_float(ctx: _Ctx, name: str, s: pl.Series, what: str) -> pl.Series:
    """Float64 from numeric / boolean / numeric-text columns; non-numeric text raises with its row."""
    return _evaluate(ctx, name, s, lambda c, d: float_rule(c, d, what))


def _binary(ctx: _Ctx, name: str, s: pl.Series, *, allow_null: bool, todo: str = "use 0/1 or true/false"
            ) -> pl.Series:
    """Int8 0/1 from booleans, 0/1 numbers or true/false/yes/no text."""
    return _evaluate(ctx, name, s, lambda c, d: binary_rule(c, d, allow_null=allow_null, todo=todo))


def _probability(ctx: _Ctx, name: str, s: pl.Series, *, allow_null: bool = False) -> pl.Series:
    return _evaluate(ctx, name, s, lambda c, d: probability_rule(c, d, allow_null=allow_null))


def _text(ctx: _Ctx, name: str, s: pl.Series) -> pl.Series:
    return _evaluate(ctx, name, s, text_rule)


def _ids(ctx: _Ctx, name: str, s: pl.Series, *, remedy: str = "drop the column to generate them") -> pl.Series:
    """Non-empty, unique text ids."""
    s = _evaluate(ctx, name, s, lambda c, d: id_rule(c, d, remedy=remedy))
    _check_unique(ctx, name, s, remedy)
    return s


def _check_unique(ctx: _Ctx, name: str, s: pl.Series, remedy: str = "drop the column to generate them") -> None:
    """Raise naming both rows of the first id that appears twice."""
    i = _first_bad(s.is_duplicated())
    if i is not None:
        j = _first_bad((s == s[i]) & (pl.Series(range(s.len())) > i))
        assert j is not None
        raise InputError(f"{ctx.raw.path}: {ctx.col(name)}: id {s[i]!r} appears twice, at {ctx.raw.where(i)} and "
                         f"{ctx.raw.where(j)}; ids must be unique ({remedy})")


def _infer_text_column(s: pl.Series) -> pl.Series:
    """Integer / float dtype for text columns that hold only numbers (CSV extras), else unchanged."""
    if s.dtype != pl.String:
        return s
    nonnull = s.drop_nulls()
    if nonnull.len() == 0:
        return s
    stripped = s.str.strip_chars()
    if stripped.str.contains(r"^[+-]?0\d").any():
        return s  # leading zeros ("007"): an identifier, not a number
    for dtype in (pl.Int64, pl.Float64):
        cast = stripped.cast(dtype, strict=False)
        if cast.null_count() == s.null_count():
            return cast
    return s
