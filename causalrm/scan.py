"""Validating and summarising large logs on polars' lazy / streaming engine (``causalrm validate``).

:func:`summarize_file` answers what ``summarize_log(read_log(path))`` answers, but for Parquet and (uncompressed)
JSON Lines logs it builds a ``pl.LazyFrame`` (``pl.scan_parquet`` / ``pl.scan_ndjson``), turns every canonical
column into an expression that mirrors :mod:`causalrm.io`'s normalisation, and collects one row of aggregates with
``collect(engine="streaming")`` (polars >= 1.23; older versions take ``streaming=True``). Only the columns the summary
needs are read, in batches, and texts are reduced to per-row flags and 64-bit hashes on the way (duplicate
``(prompt, response)`` pairs and ``response_id`` uniqueness are counted on the hashes, in a second streaming pass
that keeps 8 bytes a row, so a hash collision -- about
one in 10^7 logs of 10^6 rows -- could only hide a duplicate or route a valid log to the eager path below). Memory
therefore does not grow with the length of the texts.

The one-line error contract is kept by construction: every check that :func:`causalrm.io.read_log` makes has a
lazy counterpart that is a *superset* of it (any doubt counts as a problem), and whenever one fires -- or polars
cannot plan or scan the file -- the file is read again eagerly with ``read_log``, which raises the same
:class:`~causalrm.errors.InputError` it always did, naming the file, the 1-based row (and line for text formats) and
the column. A valid log therefore never loads its texts; an invalid one costs what ``read_log`` costs.

Also read eagerly (documented fallbacks): chat-format logs (a ``messages`` column is parsed message by message in
Python) and logs with a ``context`` column, CSV / TSV / JSON-array files, gzip files and ``hf://`` datasets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from causalrm import schema
from causalrm.io import (_BINARY_WORDS, _FEEDBACK_WORDS, _NULL_TOKENS, _SPLIT_NAMES, _TARGETS, HF_PREFIX,
                         _check_file, _kind, read_log)
from causalrm.validate import LogSummary, build_summary, summarize_log

__all__ = ["collect_streaming", "scan_log", "summarize_file"]


class _Fallback(Exception):
    """The lazy path cannot decide this file: read it eagerly (``read_log`` raises any real problem)."""


def collect_streaming(lf: pl.LazyFrame) -> pl.DataFrame:
    """``lf.collect`` on the streaming engine, whatever the installed polars calls it."""
    try:
        return lf.collect(engine="streaming")
    except TypeError:  # polars < 1.23
        return lf.collect(streaming=True)


def scan_log(path: str | os.PathLike, mapping: dict[str, str] | None = None) -> pl.LazyFrame | None:
    """A LazyFrame of the raw file with ``mapping`` applied, or None when the file needs the eager reader
    (see the module docstring). Raises InputError for files that do not exist, are empty or have an unsupported
    extension (the same messages as ``read_log``)."""
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        return None
    path = Path(path)
    _check_file(path)
    fmt, gz = _kind(path)
    if gz or fmt not in ("parquet", "jsonl"):
        return None
    if fmt == "parquet":
        with open(path, "rb") as fh:
            if fh.read(4) != b"PAR1":
                return None
        lf = pl.scan_parquet(path)
    else:
        lf = pl.scan_ndjson(path, infer_schema_length=None)  # every row's keys, as the eager reader
    try:
        cols = list(lf.collect_schema().names())
    except Exception:
        return None
    mapping = dict(mapping or {})
    if any(t not in _TARGETS for t in mapping.values()) or any(s not in cols for s in mapping):
        return None
    if len(set(mapping.values())) != len(mapping):
        return None
    if any(t in cols and t != s and t not in mapping for s, t in mapping.items()):
        return None
    renames = {s: t for s, t in mapping.items() if s != t}
    return lf.rename(renames) if renames else lf


# ------------------------------------------------------------------------------------------------ expressions
def _tokens(e: pl.Expr) -> pl.Expr:
    t = e.str.strip_chars().str.to_lowercase()
    return pl.when(t.is_in(list(_NULL_TOKENS))).then(None).otherwise(t)


def _nan_null(f: pl.Expr) -> pl.Expr:
    return pl.when(f.is_nan()).then(None).otherwise(f)


def _is_textlike(dtype: pl.DataType) -> bool:
    """Dtypes ``io._text`` turns into text without a problem (Binary may hold invalid UTF-8: eager path)."""
    return (dtype == pl.String or dtype == pl.Null or dtype == pl.Boolean or dtype.is_numeric()
            or dtype.is_temporal() or dtype == pl.Categorical or isinstance(dtype, pl.Enum))


def _text(name: str, dtype: pl.DataType) -> pl.Expr:
    if not _is_textlike(dtype):
        raise _Fallback(name)
    return pl.col(name).cast(pl.String)


def _float(name: str, dtype: pl.DataType, bad: list[pl.Expr]) -> pl.Expr:
    """``io._to_float`` (NaN kept, as there); non-numeric text is a problem."""
    if dtype == pl.Null or dtype == pl.Boolean or dtype.is_numeric():
        return pl.col(name).cast(pl.Float64)
    if dtype != pl.String:
        raise _Fallback(name)
    t = _tokens(pl.col(name)).replace({"true": "1", "false": "0"})
    f = t.cast(pl.Float64, strict=False)
    bad.append((f.is_null() & t.is_not_null()).any())
    return f


def _binary(name: str, dtype: pl.DataType, bad: list[pl.Expr], *, allow_null: bool) -> pl.Expr:
    """``io._binary``: Int8 0/1."""
    if dtype == pl.Null or dtype == pl.Boolean:
        out = pl.col(name).cast(pl.Int8)
    elif dtype == pl.String:
        t = _tokens(pl.col(name))
        out = t.replace_strict(_BINARY_WORDS, default=None, return_dtype=pl.Int8)
        bad.append((out.is_null() & t.is_not_null()).any())
    elif dtype.is_numeric():
        f = pl.col(name).cast(pl.Float64)
        bad.append((~f.is_in([0.0, 1.0]) & f.is_not_null() & ~f.is_nan()).any())
        out = _nan_null(f).cast(pl.Int8)
    else:
        raise _Fallback(name)
    if not allow_null:
        bad.append(out.is_null().any())
    return out


def _feedback(dtype: pl.DataType | None, threshold: float | None, bad: list[pl.Expr]) -> pl.Expr:
    """``io._feedback``: Int8 0/1, null = no feedback."""
    name = schema.FEEDBACK
    if dtype is None:
        if threshold is not None:
            raise _Fallback(name)  # --threshold without a feedback column: read_log explains
        return pl.lit(None, dtype=pl.Int8)
    if dtype == pl.Null or dtype == pl.Boolean:
        return pl.col(name).cast(pl.Int8)
    if dtype == pl.String:
        t = _tokens(pl.col(name))
        num = t.cast(pl.Float64, strict=False)
        nonnum = (num.is_null() & t.is_not_null()).any()
        if threshold is not None:
            bad.append(nonnum)
            return (num >= threshold).cast(pl.Int8)
        mapped = t.replace_strict(_FEEDBACK_WORDS, default=None, return_dtype=pl.Int8)
        unmapped = (mapped.is_null() & t.is_not_null()).any()
        bad.append((nonnum & unmapped) | (~nonnum & _not_binary(num)))
        return (pl.when(t.is_null()).then(None).when(num.is_not_null()).then((num == 1).cast(pl.Int8))
                .otherwise(mapped))
    if not dtype.is_numeric():
        raise _Fallback(name)
    f = _nan_null(pl.col(name).cast(pl.Float64))
    if threshold is not None:
        return (f >= threshold).cast(pl.Int8)
    bad.append(_not_binary(f))
    return (f == 1).cast(pl.Int8)


def _not_binary(f: pl.Expr) -> pl.Expr:
    """True when the numeric values are neither all in {0, 1} nor all in {-1, 1} (``io._feedback`` raises)."""
    other = (f.is_not_null() & ~f.is_in([0.0, 1.0, -1.0])).any()
    return other | ((f == 0).any() & (f == -1).any())


def _summary_query(lf: pl.LazyFrame, threshold: float | None
                   ) -> tuple[pl.LazyFrame, pl.LazyFrame, list[str], list[str]]:
    """(one-row aggregate query, per-row hash query, columns of the canonical frame, names of the problem flags).

    The hashes (``response_id``; the ``(prompt, response)`` pair) are a second pass: collected as UInt64 columns
    (8 bytes a row) and counted by sorting (:func:`_distinct`), which peaks lower than ``n_unique`` on the
    streaming engine."""
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise _Fallback("threshold")
    sch = lf.collect_schema()
    cols = list(sch.names())
    if schema.MESSAGES in cols or schema.CONTEXT in cols:
        raise _Fallback("chat")  # messages are parsed in Python by read_log
    if any(c not in cols for c in schema.REQUIRED):
        raise _Fallback("missing")
    for c in (schema.PROMPT, schema.RESPONSE):
        if sch[c].is_nested():
            raise _Fallback(c)
    bad: list[pl.Expr] = []
    prompt = _text(schema.PROMPT, sch[schema.PROMPT])
    bad.append(prompt.is_null().any())
    response = _text(schema.RESPONSE, sch[schema.RESPONSE])
    bad.append((response.is_null() | (response.str.strip_chars() == "")).any())
    aggs: dict[str, pl.Expr] = {"n": pl.len()}
    hashes: dict[str, pl.Expr] = {}  # per-row 64-bit hashes, counted in a second pass (_distinct)
    if schema.RESPONSE_ID in cols:
        rid = _text(schema.RESPONSE_ID, sch[schema.RESPONSE_ID])
        bad.append((rid.is_null() | (rid.str.strip_chars() == "")).any())
        hashes["rid_unique"] = rid.hash(7)
    feedback = _feedback(sch.get(schema.FEEDBACK), threshold, bad)
    if schema.OBSERVED in cols:
        observed = _binary(schema.OBSERVED, sch[schema.OBSERVED], bad, allow_null=False)
        bad.append(((observed == 1) & feedback.is_null()).any())
    else:
        observed = feedback.is_not_null().cast(pl.Int8)
    for c in (schema.USER_ID, schema.TIMESTAMP, schema.PAIR_ID, schema.AUDIT_STRATUM):
        if c in cols:
            _text(c, sch[c])
    if schema.SPLIT in cols:  # counted per distinct raw value (a streaming group_by), named in _split_counts
        _text(schema.SPLIT, sch[schema.SPLIT])
    for c in (schema.LOGGED_PROPENSITY, schema.TRUE_PROPENSITY, schema.INCLUSION_PROBABILITY):
        if c in cols:
            f = _nan_null(_float(c, sch[c], bad))
            if c != schema.INCLUSION_PROBABILITY:
                bad.append(f.is_null().any())
            bad.append(((f <= 0) | (f > 1)).any())
            if c == schema.LOGGED_PROPENSITY:
                aggs["lp_nonnull"] = f.is_not_null().sum()
    if schema.GOLD_LABEL in cols:
        f = _nan_null(_float(schema.GOLD_LABEL, sch[schema.GOLD_LABEL], bad))
        bad.append(((f < 0) | (f > 1)).any())
        aggs["n_gold"] = f.is_not_null().sum()
    if schema.TRUE_LABEL in cols:
        _binary(schema.TRUE_LABEL, sch[schema.TRUE_LABEL], bad, allow_null=True)
    if schema.TRUE_SCORE in cols:
        _float(schema.TRUE_SCORE, sch[schema.TRUE_SCORE], bad)

    obs = observed.fill_null(0).cast(pl.Int64)
    aggs["n_observed"] = obs.sum()
    aggs["n_positive"] = ((feedback == 1) & (obs == 1)).fill_null(False).sum()
    aggs["n_fb_unobserved"] = (feedback.is_not_null() & (obs != 1)).fill_null(False).sum()
    aggs["n_empty_prompts"] = (prompt.fill_null("").str.strip_chars() == "").sum()
    hashes["pair_unique"] = prompt.hash(11) ^ (response.hash(13) * 0x9E3779B97F4A7C15)
    flags = [f"bad{k}" for k in range(len(bad))]
    query = lf.select([e.alias(k) for k, e in aggs.items()] + [e.alias(k) for k, e in zip(flags, bad)])
    second = lf.select([e.alias(k) for k, e in hashes.items()])
    present = {schema.PROMPT, schema.RESPONSE, schema.RESPONSE_ID, schema.FEEDBACK, schema.OBSERVED} | set(cols)
    canonical = [c for c in schema.COLUMNS if c in present]
    columns = canonical + [c for c in cols if c not in schema.DTYPES]
    return query, second, columns, flags


def _split_counts(lf: pl.LazyFrame, n: int) -> dict:
    """``split=train`` / ``split=val`` / ``split=test`` / ``split=null`` row counts and ``split_bad`` (a value that is
    not a split name), from the counts of each distinct raw value (``io._norm_tokens`` + ``io._SPLIT_NAMES`` applied
    to the few distinct values in Python; a per-row ``replace_strict`` is not streamed by polars and held the column).
    """
    raw = collect_streaming(lf.group_by(pl.col(schema.SPLIT).cast(pl.String).alias("v")).agg(pl.len().alias("k")))
    out = {f"split={name}": 0 for name in dict.fromkeys(_SPLIT_NAMES.values())}
    out["split=null"] = 0
    out["split_bad"] = False
    for value, k in raw.iter_rows():
        token = None if value is None else value.strip().lower()
        if token is None or token in _NULL_TOKENS:
            out["split=null"] += int(k)
        elif token in _SPLIT_NAMES:
            out[f"split={_SPLIT_NAMES[token]}"] += int(k)
        else:
            out["split_bad"] = True
    return out


def _distinct(values: pl.Series) -> int:
    h = values.to_numpy().copy()
    h.sort()
    return int(h.size and (np.count_nonzero(h[1:] != h[:-1]) + 1))


def summarize_file(
    path: str | os.PathLike,
    *,
    mapping: dict[str, str] | None = None,
    threshold: float | None = None,
    source: str | None = None,
    on_fallback: Callable[[str], None] | None = None,
) -> LogSummary:
    """``summarize_log(read_log(path, mapping=..., threshold=...))``, on the streaming engine where it can
    (module docstring). Raises :class:`~causalrm.errors.InputError` exactly where ``read_log`` does.

    ``on_fallback(reason)`` is called when the eager reader is used (tests, benchmarks)."""
    source = str(path) if source is None else source
    reason = "unsupported format"
    lf = scan_log(path, mapping)
    if lf is not None:
        try:
            query, second, columns, flags = _summary_query(lf, threshold)
            row = collect_streaming(query).row(0, named=True)
            if schema.SPLIT in columns:
                row.update(_split_counts(lf, n=int(row["n"])))
            if not any(row[f] for f in flags) and not row.get("split_bad"):
                row.update({k: _distinct(v) for k, v in collect_streaming(second).to_dict().items()})
        except _Fallback as why:
            reason = f"needs the eager reader ({why})"
        except Exception as err:  # polars could not scan or plan it: read_log reports what is wrong
            reason = f"{type(err).__name__}"
        else:
            n = int(row["n"])
            if n == 0:
                reason = "no data rows"
            elif any(row[f] for f in flags) or row.get("split_bad"):
                reason = "a check failed"
            elif "rid_unique" in row and row["rid_unique"] != n:
                reason = "duplicate response_id"
            else:
                splits = {}
                if any(k.startswith("split=") for k in row) and row["split=null"] < n:
                    counts = {k[len("split="):]: int(v) for k, v in row.items() if k.startswith("split=") and v}
                    splits = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
                return build_summary(
                    n=n, n_observed=int(row["n_observed"]), n_positive=int(row["n_positive"]), columns=columns,
                    has_lp=bool(row.get("lp_nonnull", 0)), n_gold=int(row.get("n_gold", 0)),
                    n_empty_prompts=int(row["n_empty_prompts"]), splits=splits,
                    n_fb_unobserved=int(row["n_fb_unobserved"]), n_dup=n - int(row["pair_unique"]),
                    n_split_null=int(row.get("split=null", 0)) if schema.SPLIT in columns else None,
                    chat_counts={}, source=source)
    if on_fallback is not None:
        on_fallback(reason)
    return summarize_log(read_log(path, mapping=mapping, threshold=threshold), source=source)
