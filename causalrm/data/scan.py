"""Validating and summarising large logs on polars' lazy / streaming engine (``causalrm validate``).

:func:`summarize_file` answers what ``summarize_log(read_log(path))`` answers, but for Parquet logs it builds a
``pl.LazyFrame`` (``pl.scan_parquet``, the mapping applied lazily) and evaluates the column checks of
:func:`causalrm.data.io.normalise.log_rules` -- the one definition ``read_log`` evaluates too -- as one aggregate each,
collected with the canonical values' counts in one row on the streaming engine (``collect(engine="streaming")``,
polars >= 1.23; older versions take ``streaming=True``). Only the columns the summary needs are read, in batches,
and texts are reduced to per-row flags and 64-bit hashes on the way (duplicate ``(prompt, response)`` pairs and
``response_id`` uniqueness are counted on the hashes, in a second streaming pass that keeps 8 bytes a row, so a hash
collision -- about one in 10^7 logs of 10^6 rows -- could only hide a duplicate or route a valid log to the eager
path below). Memory therefore does not grow with the length of the texts.

The one-line error contract is kept by construction: ``scan_parquet`` and ``read_parquet`` give the same table, the
checks are the same expressions, and whenever one fires -- or a column's dtype has no rule, or polars cannot plan or
scan the file -- the file is read again eagerly with ``read_log``, which raises its :class:`~causalrm.errors.InputError`
naming the file, the 1-based row and the column. A valid log therefore never loads its texts; an invalid one costs
what ``read_log`` costs.

Read eagerly (documented fallbacks): every format but Parquet (JSON Lines too: polars' NDJSON parser is not Python's
``json``, e.g. it turns an object in a text column into text and keeps the first of two equal keys, so only
``read_log``'s parser decides a JSON file), chat-format logs (a ``messages`` column is parsed message by message in
Python) and logs with a ``context`` column, gzip files and ``hf://`` datasets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import FEEDBACK_KIND, IMPLICIT, detect_kind, event_column, mixed_signal
from causalrm.data.io.formats import HF_PREFIX, _check_file, _kind
from causalrm.data.io.mapping import _TARGETS
from causalrm.data.io.normalise import _NULL_TOKENS, _SPLIT_NAMES, ColumnProblem, log_rules
from causalrm.data.io.readers import read_log
from causalrm.data.validate import LogSummary, build_summary, summarize_log

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
    if gz or fmt != "parquet":
        return None
    with open(path, "rb") as fh:
        if fh.read(4) != b"PAR1":
            return None
    lf = pl.scan_parquet(path)
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
    named = [renames.get(c, c) for c in cols]
    if event_column(named) is not None or mixed_signal(named) is not None:  # events read as feedback or beside it
        return None
    return lf.rename(renames) if renames else lf


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
    if threshold is not None and schema.FEEDBACK not in cols:
        raise _Fallback("threshold")  # read_log explains
    try:
        rules = log_rules(dict(sch), threshold)
    except ColumnProblem as err:
        raise _Fallback(err.column) from None
    bad = [check.any() for rule in rules.values() for check in rule.checks]
    prompt, response = rules[schema.PROMPT].value, rules[schema.RESPONSE].value
    feedback, observed = rules[schema.FEEDBACK].value, rules[schema.OBSERVED].value
    aggs: dict[str, pl.Expr] = {"n": pl.len()}
    hashes: dict[str, pl.Expr] = {}  # per-row 64-bit hashes, counted in a second pass (_distinct)
    if schema.RESPONSE_ID in rules:
        hashes["rid_unique"] = rules[schema.RESPONSE_ID].value.hash(7)
    if schema.LOGGED_PROPENSITY in rules:
        aggs["lp_nonnull"] = rules[schema.LOGGED_PROPENSITY].value.is_not_null().sum()
    if schema.GOLD_LABEL in rules:
        aggs["n_gold"] = rules[schema.GOLD_LABEL].value.is_not_null().sum()

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
    """``split=train`` / ``split=val`` / ``split=test`` / ``split=null`` row counts from the counts of each distinct
    raw value (the null tokens and ``_SPLIT_NAMES`` applied to the few distinct values in Python; a per-row
    ``replace_strict`` is not streamed by polars and held the column). Unknown names are the split rule's check."""
    raw = collect_streaming(lf.group_by(pl.col(schema.SPLIT).cast(pl.String).alias("v")).agg(pl.len().alias("k")))
    out = {f"split={name}": 0 for name in dict.fromkeys(_SPLIT_NAMES.values())}
    out["split=null"] = 0
    for value, k in raw.iter_rows():
        token = None if value is None else value.strip().lower()
        if token is None or token in _NULL_TOKENS:
            out["split=null"] += int(k)
        elif token in _SPLIT_NAMES:
            out[f"split={_SPLIT_NAMES[token]}"] += int(k)
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
    feedback_kind: str = "auto",
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
            if not any(row[f] for f in flags):
                row.update({k: _distinct(v) for k, v in collect_streaming(second).to_dict().items()})
        except _Fallback as why:
            reason = f"needs the eager reader ({why})"
        except Exception as err:  # polars could not scan or plan it: read_log reports what is wrong
            reason = f"{type(err).__name__}"
        else:
            n = int(row["n"])
            if n == 0:
                reason = "no data rows"
            elif any(row[f] for f in flags):
                reason = "a check failed"
            elif "rid_unique" in row and row["rid_unique"] != n:
                reason = "duplicate response_id"
            elif FEEDBACK_KIND in columns:  # a log read and written back: the reader checks and keeps its mark
                reason = "a feedback_kind column"
            else:
                splits = {}
                if any(k.startswith("split=") for k in row) and row["split=null"] < n:
                    counts = {k[len("split="):]: int(v) for k, v in row.items() if k.startswith("split=") and v}
                    splits = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
                n_observed, n_positive = int(row["n_observed"]), int(row["n_positive"])
                kind = feedback_kind if feedback_kind != "auto" else detect_kind(n, n_observed, n_observed - n_positive)
                implicit = kind == IMPLICIT
                return build_summary(
                    n=n, n_observed=n if implicit else n_observed, n_positive=n_positive, columns=columns,
                    has_lp=bool(row.get("lp_nonnull", 0)), n_gold=int(row.get("n_gold", 0)),
                    n_empty_prompts=int(row["n_empty_prompts"]), splits=splits,
                    n_fb_unobserved=0 if implicit else int(row["n_fb_unobserved"]), n_dup=n - int(row["pair_unique"]),
                    n_split_null=int(row.get("split=null", 0)) if schema.SPLIT in columns else None,
                    chat_counts={}, source=source, feedback_kind=kind)
    if on_fallback is not None:
        on_fallback(reason)
    return summarize_log(read_log(path, mapping=mapping, threshold=threshold, feedback_kind=feedback_kind),
                         source=source)
