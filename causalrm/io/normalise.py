"""Column values to canonical dtypes: feedback words and ratings, 0/1 flags, probabilities, text, ids.

Each converter raises :class:`~causalrm.errors.InputError` naming the first bad row and the user's column
(``_Ctx``: mapped columns are named as the user wrote them).
"""

from __future__ import annotations

import polars as pl

from causalrm import schema
from causalrm.errors import InputError
from causalrm.io.formats import _Raw
from causalrm.io.formatting import _fmt


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


def _null_where(s: pl.Series, mask: pl.Series) -> pl.Series:
    """``s`` with nulls where ``mask`` is True."""
    frame = pl.DataFrame({"v": s, "m": mask.fill_null(False)})
    return frame.select(pl.when(pl.col("m")).then(None).otherwise(pl.col("v")).alias(s.name)).to_series()


def _drop_nan(f: pl.Series) -> pl.Series:
    """Float series with NaN turned into null."""
    return _null_where(f, f.is_nan())


def _norm_tokens(s: pl.Series) -> pl.Series:
    """Lower-cased, stripped text with null tokens (``""``, NA, null, none, nan) as null."""
    t = s.str.strip_chars().str.to_lowercase()
    return _null_where(t, t.is_in(list(_NULL_TOKENS)))


def _to_float(ctx: _Ctx, name: str, s: pl.Series, what: str) -> pl.Series:
    """Float64 from numeric / boolean / numeric-text columns; non-numeric text raises with its row."""
    if s.dtype == pl.Null:
        return s.cast(pl.Float64)
    if s.dtype == pl.Boolean or s.dtype.is_numeric():
        return s.cast(pl.Float64)
    if s.dtype == pl.String:
        t = _norm_tokens(s)
        t = t.replace({"true": "1", "false": "0"})
        f = t.cast(pl.Float64, strict=False)
        i = _first_bad(f.is_null() & t.is_not_null())
        if i is not None:
            raise ctx.fail(i, name, f"value {s[i]!r} is not a number", f"{what} must be numeric")
        return f
    raise ctx.fail(None, name, f"has type {s.dtype}", f"{what} must be numeric")


def _feedback(ctx: _Ctx, s: pl.Series, threshold: float | None) -> pl.Series:
    name = schema.FEEDBACK
    how = "use 0/1, true/false, up/down, +1/-1 or thumbs_up/thumbs_down, or pass --threshold T for ratings"
    if s.dtype == pl.Null:
        return s.cast(pl.Int8)
    if s.dtype == pl.Boolean:
        return s.cast(pl.Int8)
    if s.dtype == pl.String:
        t = _norm_tokens(s)
        num = t.cast(pl.Float64, strict=False)
        if threshold is None and _first_bad(num.is_null() & t.is_not_null()) is not None:
            mapped = t.replace_strict(_FEEDBACK_WORDS, default=None, return_dtype=pl.Int8)
            i = _first_bad(mapped.is_null() & t.is_not_null())
            if i is not None:
                raise ctx.fail(i, name, f"value {s[i]!r} is not a recognised feedback value", how)
            return mapped.rename(name)
        i = _first_bad(num.is_null() & t.is_not_null())
        if i is not None:
            raise ctx.fail(i, name, f"value {s[i]!r} is not numeric but --threshold was given",
                           "--threshold binarises numeric ratings; drop it for thumbs or true/false feedback")
        s = num
    elif not s.dtype.is_numeric():
        raise ctx.fail(None, name, f"has type {s.dtype}", how)
    f = _drop_nan(s.cast(pl.Float64)).rename(name)
    if threshold is not None:
        return (f >= threshold).cast(pl.Int8).rename(name)
    values = set(f.drop_nulls().unique().to_list())
    if values <= {0.0, 1.0}:
        return f.cast(pl.Int8).rename(name)
    if values <= {-1.0, 1.0}:
        return (f > 0).cast(pl.Int8).rename(name)
    bad = _first_bad(~f.is_in([0.0, 1.0]) & f.is_not_null())
    assert bad is not None
    raise ctx.fail(bad, name, f"holds numeric ratings (value {_fmt(f[bad])}), not binary feedback",
                   "pass --threshold T to binarise them (rating >= T is positive)")


def _binary(ctx: _Ctx, name: str, s: pl.Series, *, allow_null: bool, todo: str = "use 0/1 or true/false"
            ) -> pl.Series:
    """Int8 0/1 from booleans, 0/1 numbers or true/false/yes/no text."""
    if s.dtype == pl.Null:
        out = s.cast(pl.Int8)
    elif s.dtype == pl.Boolean:
        out = s.cast(pl.Int8)
    elif s.dtype == pl.String:
        t = _norm_tokens(s)
        out = t.replace_strict(_BINARY_WORDS, default=None, return_dtype=pl.Int8)
        i = _first_bad(out.is_null() & t.is_not_null())
        if i is not None:
            raise ctx.fail(i, name, f"value {s[i]!r} is not 0/1", todo)
    elif s.dtype.is_numeric():
        f = s.cast(pl.Float64)
        i = _first_bad(~f.is_in([0.0, 1.0]) & f.is_not_null() & ~f.is_nan())
        if i is not None:
            raise ctx.fail(i, name, f"value {_fmt(f[i])} is not 0/1", todo)
        out = _drop_nan(f).cast(pl.Int8)
    else:
        raise ctx.fail(None, name, f"has type {s.dtype}", todo)
    out = out.rename(name)
    if not allow_null:
        i = _first_bad(out.is_null())
        if i is not None:
            raise ctx.fail(i, name, "is empty", "give 0 or 1 on every row, or drop the column to derive it")
    return out


def _probability(ctx: _Ctx, name: str, s: pl.Series, *, allow_null: bool = False) -> pl.Series:
    f = _drop_nan(_to_float(ctx, name, s, "a probability"))
    i = None if allow_null else _first_bad(f.is_null())
    if i is not None:
        raise ctx.fail(i, name, "is empty", "give a probability in (0, 1] on every row, or drop the column")
    i = _first_bad((f <= 0) | (f > 1))
    if i is not None:
        raise ctx.fail(i, name, f"value {_fmt(f[i])} is outside (0, 1]", "probabilities must be in (0, 1]")
    return f.rename(name)


def _unit_interval(ctx: _Ctx, name: str, s: pl.Series) -> pl.Series:
    f = _to_float(ctx, name, s, "a label in [0, 1]")
    f = _drop_nan(f).rename(name)
    i = _first_bad((f < 0) | (f > 1))
    if i is not None:
        raise ctx.fail(i, name, f"value {_fmt(f[i])} is outside [0, 1]", "use 0/1 or a probability in [0, 1]")
    return f


def _text(ctx: _Ctx, name: str, s: pl.Series) -> pl.Series:
    if s.dtype == pl.String:
        return s
    if s.dtype == pl.Null or s.dtype == pl.Boolean or s.dtype.is_numeric() or s.dtype.is_temporal():
        return s.cast(pl.String)
    if s.dtype == pl.Categorical or s.dtype == pl.Enum:
        return s.cast(pl.String)
    if s.dtype == pl.Binary:
        try:
            return s.cast(pl.String)
        except Exception:
            raise ctx.fail(None, name, "holds bytes that are not valid UTF-8", "store text as UTF-8 strings") from None
    raise ctx.fail(None, name, f"has type {s.dtype}", "store it as text (one string per row)")


def _ids(ctx: _Ctx, name: str, s: pl.Series, *, remedy: str = "drop the column to generate them") -> pl.Series:
    s = _text(ctx, name, s)
    i = _first_bad(s.is_null() | (s.str.strip_chars() == ""))
    if i is not None:
        raise ctx.fail(i, name, "is empty", f"give every row a unique id, or {remedy}")
    dup = s.is_duplicated()
    i = _first_bad(dup)
    if i is not None:
        j = _first_bad((s == s[i]) & (pl.Series(range(s.len())) > i))
        assert j is not None
        raise InputError(f"{ctx.raw.path}: {ctx.col(name)}: id {s[i]!r} appears twice, at {ctx.raw.where(i)} and "
                         f"{ctx.raw.where(j)}; ids must be unique ({remedy})")
    return s


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
