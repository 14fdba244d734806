"""The public readers: ``read_log``, ``read_rated``, ``read_table``, ``read_labels``.

Each one loads the file (:mod:`causalrm.data.io.formats`), applies the mapping (:mod:`causalrm.data.io.mapping`) and
canonicalises (:mod:`causalrm.data.io.canonical`); ``_guard`` turns any other exception into one ``InputError`` line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path

import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import (
    AUTO,
    EXPLICIT,
    IMPLICIT,
    PAIRWISE,
    as_impressions,
    check_kind,
    event_column,
)
from causalrm.data.io.canonical import _canonicalise
from causalrm.data.io.formats import HF_PREFIX, _load_raw
from causalrm.data.io.formatting import _first_line, _fmt, _list
from causalrm.data.io.mapping import _apply_mapping
from causalrm.data.io.normalise import (
    _binary,
    _Ctx,
    _first_bad,
    _ids,
    _infer_text_column,
    _probability,
    _text,
    _to_float,
)
from causalrm.data.pairwise import is_pairwise, read_pairs
from causalrm.errors import InputError


def _source(path: str | os.PathLike) -> Path | str:
    """``hf://`` specs stay strings (``Path`` would collapse the slashes); everything else becomes a ``Path``."""
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        return path
    return Path(path)


def _guard(path: Path | str, fn: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """Run ``fn``; any exception other than InputError becomes one InputError line naming the file."""
    try:
        return fn()
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: out of memory while reading the file; split it into smaller files") from None
    except RecursionError:
        raise InputError(f"{path}: data nested too deeply to read") from None
    except Exception as err:  # polars, pyarrow, csv, json, OS: never leak a traceback
        raise InputError(f"{path}: cannot read the file ({type(err).__name__}: {_first_line(err)}); "
                         "check its format") from None


# --------------------------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------------------------
def read_log(
    path: str | os.PathLike,
    *,
    mapping: dict[str, str] | None = None,
    threshold: float | None = None,
    feedback_kind: str = "auto",
) -> pl.DataFrame:
    """Read an impression log and return it in the canonical schema (see the module docstring).

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or ``.parquet`` file (text formats may be ``.gz``).
        mapping: ``{user column: canonical column}``, for example from :func:`parse_mapping`.
        threshold: binarise numeric ratings in the feedback column: ``rating >= threshold`` is positive.
        feedback_kind: ``auto`` (detect), ``explicit`` or ``implicit`` (:mod:`causalrm.data.feedback_kinds`); an implicit
            log comes back read as impressions: ``observed = 1``, ``feedback`` 1 where the event happened, else 0,
            and a ``feedback_kind`` column.

    Raises:
        InputError: one line naming the file, row/line and column at fault and what to do.
    """
    source = _source(path)

    def run() -> pl.DataFrame:
        raw = _load_raw(source)
        origin = _apply_mapping(raw, mapping)
        if is_pairwise(raw.df.columns):  # an A/B log (or TRL's chosen / rejected): one row per pair
            if feedback_kind not in (AUTO, PAIRWISE) or threshold is not None:
                raise InputError(f"{source}: an A/B log (response_a / response_b or chosen / rejected) is read as "
                                 "pairwise feedback; drop --feedback-kind and --threshold")
            return read_pairs(raw.df, source=str(source), objects=raw.objects)
        kind = feedback_kind
        event = event_column(raw.df.columns, kind)
        if event is not None:  # a copy / click column and no thumbs: the log's implicit feedback
            raw.df = raw.df.rename({event: schema.FEEDBACK})
            raw.objects = {schema.FEEDBACK if c == event else c: v for c, v in raw.objects.items()}
            origin[schema.FEEDBACK] = origin.pop(event, event)
            kind = IMPLICIT
        log = _canonicalise(raw, origin, threshold, log=True)
        # thresholded ratings are explicit by construction: detection would read "all above" as events
        return as_impressions(log, EXPLICIT if threshold is not None and kind == AUTO else kind)

    check_kind(feedback_kind)
    return _guard(source, run)


def read_rated(
    path: str | os.PathLike,
    *,
    rating_column: str | None = None,
    mapping: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Read a rated dataset (prompt, response and a numeric rating) into ``prompt, response, response_id,
    [canonical optional columns], rating (Float64), extras``; no feedback/observed columns are added.

    ``rating_column`` names the rating (default: a column called ``rating``). Every row needs a finite rating.
    """
    source = _source(path)

    def run() -> pl.DataFrame:
        raw = _load_raw(source)
        path = raw.path
        origin = _apply_mapping(raw, mapping)
        column = rating_column or "rating"
        if column not in raw.df.columns:
            how = "pass rating_column= (the column holding the numeric rating)"
            raise InputError(f"{path}: rating column {column!r} not found; columns found: "
                             f"{_list(raw.df.columns)}; {how}")
        if column in (schema.PROMPT, schema.RESPONSE, schema.RESPONSE_ID):
            raise InputError(f"{path}: column {column!r} holds text, not a rating; pass the rating column")
        ctx = _Ctx(raw, origin)
        rating = _to_float(ctx, column, raw.df[column], "the rating")
        i = _first_bad(rating.is_null() | rating.is_nan() | rating.is_infinite())
        if i is not None:
            raise ctx.fail(i, column, f"rating is {'empty' if rating[i] is None else _fmt(rating[i])}",
                           "every row needs a finite numeric rating; fill or drop those rows")
        raw.df = raw.df.drop([c for c in (column, "rating") if c in raw.df.columns])
        df = _canonicalise(raw, origin, None, log=False)
        n_canon = sum(c in schema.DTYPES for c in df.columns)
        return df.insert_column(n_canon, rating.rename("rating").cast(pl.Float64))

    return _guard(source, run)


def read_table(path: str | os.PathLike) -> pl.DataFrame:
    """Read a table written by :func:`causalrm.atomic_io.write_table_atomic` (or any CSV/TSV/JSONL/JSON/Parquet file) as is.

    No schema checks are made; parse problems raise :class:`InputError`.
    """
    source = _source(path)

    def run() -> pl.DataFrame:
        raw = _load_raw(source)
        if raw.cells_are_text:
            return pl.DataFrame([_infer_text_column(raw.df[c]) for c in raw.df.columns])
        return raw.df

    return _guard(source, run)


def read_labels(path: str | os.PathLike, *, known_ids: Collection[str] | None = None,
                log_name: str = "the log") -> pl.DataFrame:
    """Read an audit label file (``causalrm audit`` writes one; any table with ``response_id`` and ``gold_label``
    will do) and return ``response_id`` (String, unique), ``gold_label`` (Float64: 1 good, 0 bad, null = not labelled
    yet) and, where the file has them, ``inclusion_probability`` (Float64 in (0, 1]), ``audit_stratum`` (String) and
    ``audit_stratum_rows`` (Int64 >= 1, the same on every row of a stratum). Other columns are dropped.

    ``known_ids``: the response_ids of the log the labels belong to (``log_name`` in messages); a row with any other
    id raises. Raises :class:`InputError` naming the file, row and column (unknown ids, labels outside {0, 1},
    duplicated ids, a missing column).
    """
    source = _source(path)

    def run() -> pl.DataFrame:
        raw = _load_raw(source)
        ctx = _Ctx(raw, {})
        df = raw.df
        for column in (schema.RESPONSE_ID, schema.GOLD_LABEL):
            if column not in df.columns:
                raise InputError(f"{raw.path}: no column {column!r} (columns found: {_list(df.columns)}); a label "
                                 "file needs response_id and gold_label (1 good, 0 bad, empty = not labelled); "
                                 "write one with `causalrm audit`")
        out = [_ids(ctx, schema.RESPONSE_ID, df[schema.RESPONSE_ID], remedy="label each response once"),
               _binary(ctx, schema.GOLD_LABEL, df[schema.GOLD_LABEL], allow_null=True,
                       todo="label 1 (good) or 0 (bad), or leave the cell empty to skip the row").cast(pl.Float64)]
        if schema.INCLUSION_PROBABILITY in df.columns:
            out.append(_probability(ctx, schema.INCLUSION_PROBABILITY, df[schema.INCLUSION_PROBABILITY]))
        if schema.AUDIT_STRATUM in df.columns:
            out.append(_text(ctx, schema.AUDIT_STRATUM, df[schema.AUDIT_STRATUM]).fill_null(""))
        if schema.AUDIT_STRATUM_ROWS in df.columns:
            rows = _to_float(ctx, schema.AUDIT_STRATUM_ROWS, df[schema.AUDIT_STRATUM_ROWS], "a row count")
            i = _first_bad(rows.is_null() | rows.is_nan() | (rows < 1) | (rows != rows.round(0)))
            if i is not None:
                raise ctx.fail(i, schema.AUDIT_STRATUM_ROWS, f"value {rows[i]!r} is not a positive whole number",
                               "keep the column as `causalrm audit` wrote it")
            out.append(rows.cast(pl.Int64).rename(schema.AUDIT_STRATUM_ROWS))
        labels = pl.DataFrame(out)
        if schema.AUDIT_STRATUM_ROWS in labels.columns and schema.AUDIT_STRATUM in labels.columns:
            sizes = labels.group_by(schema.AUDIT_STRATUM).agg(pl.col(schema.AUDIT_STRATUM_ROWS).n_unique().alias("k"))
            mixed = sizes.filter(pl.col("k") > 1)
            if mixed.height:
                raise InputError(f"{raw.path}: column {schema.AUDIT_STRATUM_ROWS!r} differs within stratum "
                                 f"{mixed[schema.AUDIT_STRATUM][0]!r}; keep the columns as `causalrm audit` wrote them")
        if known_ids is not None:
            i = _first_bad(~labels[schema.RESPONSE_ID].is_in(list(known_ids)))
            if i is not None:
                raise ctx.fail(i, schema.RESPONSE_ID, f"id {labels[schema.RESPONSE_ID][i]!r} is not in {log_name}",
                               "use the label file proposed for this log (causalrm audit LOG) or drop the row")
        return labels

    return _guard(source, run)
