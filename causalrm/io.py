"""Reading impression logs into the canonical schema (the atomic writers live in :mod:`causalrm.atomic_io`).

``read_log`` accepts CSV, TSV, JSONL (``.jsonl`` / ``.ndjson``), JSON (an array of objects) and Parquet files, and the
gzip variants of the text formats (``.csv.gz``, ``.tsv.gz``, ``.jsonl.gz``, ``.json.gz``). It returns a
``pl.DataFrame`` whose canonical columns (``causalrm.schema``) have their canonical dtypes:

* ``prompt``, ``response``, ``response_id``, ``feedback``, ``observed`` are always present;
* the other canonical columns (``user_id``, ``pair_id``, ``logged_propensity``, ``gold_label``, ``true_label``, ...)
  appear only when the file has them (after ``mapping``), so their presence carries information;
* every other column is kept, after the canonical ones, under its own name (text files: numbers are inferred).

Chat-format logs (``causalrm.chat``) give a ``messages`` column instead of ``prompt`` / ``response``: a list of
``{"role", "content"}`` messages (JSON / JSONL arrays, a Parquet list-of-structs column, or JSON text in a CSV cell).
The final assistant message becomes ``response``, the messages before it ``prompt`` (rendered readable by
``causalrm.chat.render_prompt``) and ``context`` (the same messages as JSON text, first after the canonical columns).
A ``prompt`` or ``response`` that is not text (a JSON object or array, a nested Parquet column) is an error.

Every problem with the input raises :class:`~causalrm.errors.InputError` with one line that names the file, the
1-based data row (and the line for text files) and/or the column, and says what to do. Parser exceptions from
polars / pyarrow / json never escape.

Feedback normalisation (to Int8 0/1, null = no feedback): booleans; 0/1; +1/-1 (thumbs); the words true/false,
yes/no, up/down, thumbs_up/thumbs_down, like/dislike, positive/negative, good/bad, 👍/👎; numeric ratings only
with ``threshold`` (``rating >= threshold`` -> 1). Empty cells and NA/null/none/nan mean "no feedback".
"""

from __future__ import annotations

import csv
import gzip
import io as _stdio
import json
import math
import os
import sys
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from causalrm import chat, schema
from causalrm.errors import InputError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "parse_mapping",
    "read_log",
    "read_rated",
    "read_table",
]

SUPPORTED_SUFFIXES = (
    ".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet",
    ".csv.gz", ".tsv.gz", ".jsonl.gz", ".ndjson.gz", ".json.gz",
)
_SUPPORTED_TEXT = ", ".join(SUPPORTED_SUFFIXES)

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
_STRING_COLUMNS = (schema.USER_ID, schema.TIMESTAMP, schema.PAIR_ID)


# --------------------------------------------------------------------------------------------------------------------
# Mapping
# --------------------------------------------------------------------------------------------------------------------
def parse_mapping(specs: Sequence[str] | None) -> dict[str, str]:
    """Parse ``--map`` specs ``["prompt=question", "response=answer,feedback=thumb"]`` into ``{user: canonical}``.

    Each spec holds one or more comma-separated ``CANONICAL=COLUMN`` items.
    """
    mapping: dict[str, str] = {}
    targets: dict[str, str] = {}
    for spec in specs or ():
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise InputError(f"--map {item!r}: expected CANONICAL=COLUMN, for example --map prompt=question")
            target, _, source = (part.strip() for part in item.partition("="))
            if not target or not source:
                raise InputError(f"--map {item!r}: expected CANONICAL=COLUMN, for example --map prompt=question")
            _check_target(target, f"--map {item!r}")
            if target in targets and targets[target] != source:
                raise InputError(f"--map: {target!r} is mapped twice (from {targets[target]!r} and {source!r}); "
                                 "map each canonical column once")
            if source in mapping and mapping[source] != target:
                raise InputError(f"--map: column {source!r} is mapped to both {mapping[source]!r} and {target!r}; "
                                 "map each column once")
            mapping[source] = target
            targets[target] = source
    return mapping


_TARGETS = (*schema.COLUMNS, schema.MESSAGES)  # what a column may be mapped to (messages: chat format)


def _check_target(target: str, where: str) -> None:
    if target not in _TARGETS:
        raise InputError(f"{where}: unknown canonical column {target!r}; use one of {', '.join(_TARGETS)}")


# --------------------------------------------------------------------------------------------------------------------
# Raw loading: bytes -> (DataFrame, row locator)
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _Raw:
    """A freshly parsed table, before canonicalisation."""

    path: Path
    df: pl.DataFrame
    lines: list[int] | None  # 1-based line number of each data row (text formats), else None
    cells_are_text: bool = False  # CSV/TSV: every cell was read as text (numbers are inferred for extras)
    #: JSON formats: the Python values of each column holding JSON objects or arrays (kept as JSON text in ``df``)
    objects: dict[str, list] = field(default_factory=dict)

    def where(self, i: int) -> str:
        """Human position of 0-based data row ``i``: ``row 3 (line 4)``."""
        if self.lines is not None and 0 <= i < len(self.lines):
            return f"row {i + 1} (line {self.lines[i]})"
        return f"row {i + 1}"


def _kind(path: Path) -> tuple[str, bool]:
    """Return (format, gzipped) from the file name; raise for unsupported extensions."""
    name = path.name.lower()
    gz = name.endswith(".gz")
    base = name[:-3] if gz else name
    for fmt, suffixes in (("csv", (".csv",)), ("tsv", (".tsv",)), ("jsonl", (".jsonl", ".ndjson")),
                          ("json", (".json",)), ("parquet", (".parquet",))):
        if base.endswith(suffixes):
            if gz and fmt == "parquet":
                break
            return fmt, gz
    ext = "".join(path.suffixes[-2:]) if gz else (path.suffix or "(none)")
    raise InputError(f"{path}: unsupported file extension {ext!r}; use one of {_SUPPORTED_TEXT}")


def _check_file(path: Path) -> None:
    if not path.exists():
        hint = ""
        if path.parent.is_dir():
            near = sorted(p.name for p in path.parent.iterdir() if p.stem.split(".")[0] == path.stem.split(".")[0])
            if near:
                hint = f" (did you mean {', '.join(near[:3])}?)"
        raise InputError(f"{path}: file not found{hint}; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass a log file ({_SUPPORTED_TEXT})")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied; make the file readable")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty; expected a header and at least one data row")


def _read_bytes(path: Path, gz: bool) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read file ({err.strerror or err}); check the path and permissions") from None
    if gz:
        if not data.startswith(b"\x1f\x8b"):
            raise InputError(f"{path}: not a gzip file although the name ends in .gz; rename it or compress it")
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{path}: corrupt or truncated gzip data ({err}); re-create the file") from None
        if not data or data.isspace():
            raise InputError(f"{path}: file is empty after decompression; expected a header and data rows")
    return data


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text of ``data`` (BOM stripped); binary or invalid bytes raise with their offset and line."""
    if data.startswith(b"PAR1"):
        raise InputError(f"{path}: this is a Parquet file; give it a .parquet extension")
    if data.startswith(b"\x1f\x8b"):
        raise InputError(f"{path}: this is gzip-compressed data; add .gz to the file name")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(f"{path}: binary data (NUL byte at byte offset {nul}, line {line}); "
                         "expected a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(f"{path}: not valid UTF-8 at byte offset {err.start} (line {line}, byte "
                         f"0x{data[err.start]:02x}); re-save the file as UTF-8") from None


HF_PREFIX = "hf://"


def _load_hf(spec: str) -> _Raw:
    """``hf://owner/name[:split]`` via the optional ``datasets`` package (needs network or a local HF cache)."""
    name, _, split = spec[len(HF_PREFIX):].partition(":")
    label = Path(spec)
    if not name:
        raise InputError(f"{spec}: expected hf://OWNER/NAME or hf://OWNER/NAME:SPLIT")
    try:
        import datasets  # optional dependency (extra "trl")
    except ImportError:
        raise InputError(f"{spec}: reading from the Hugging Face Hub needs the 'datasets' package; "
                         "pip install datasets, or download the data and pass the file") from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
        df = pl.from_arrow(ds.data.table)
    except Exception as err:  # offline, unknown name, unknown split, ...
        raise InputError(f"{spec}: cannot load the dataset ({type(err).__name__}: {_first_line(err)}); check the "
                         "name and split, and that HF_HUB_OFFLINE is unset if it must be downloaded") from None
    if not isinstance(df, pl.DataFrame) or df.height == 0:
        raise InputError(f"{spec}: the dataset split is empty")
    return _Raw(label, df, None)


def _load_raw(path: Path | str) -> _Raw:
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        return _load_hf(path)
    path = Path(path)
    _check_file(path)
    fmt, gz = _kind(path)
    if fmt == "parquet":
        return _load_parquet(path)
    text = _decode(path, _read_bytes(path, gz))
    if not text or text.isspace():
        raise InputError(f"{path}: file holds only whitespace; expected a header and at least one data row")
    if fmt in ("csv", "tsv"):
        return _load_delimited(path, text, "," if fmt == "csv" else "\t")
    if fmt == "jsonl":
        return _load_jsonl(path, text)
    return _load_json(path, text)


def _load_parquet(path: Path) -> _Raw:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PAR1":
        hint = " (it looks like gzip data)" if head.startswith(b"\x1f\x8b") else ""
        raise InputError(f"{path}: not a Parquet file{hint}; check the file or its extension")
    try:
        df = pl.read_parquet(path)
    except Exception as err:  # polars / pyarrow / OS errors of every kind
        raise InputError(f"{path}: cannot read Parquet file ({_first_line(err)}); re-create the file") from None
    if df.width == 0:
        raise InputError(f"{path}: Parquet file has no columns")
    if df.height == 0:
        raise InputError(f"{path}: Parquet file has columns ({_list(df.columns)}) but no data rows")
    return _Raw(path, df, None)


def _load_delimited(path: Path, text: str, delimiter: str) -> _Raw:
    kind = "CSV" if delimiter == "," else "TSV"
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(_stdio.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    last = 0
    try:
        for record in reader:
            start = last + 1
            last = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if header is None:
                header, header_line = record, start
                continue
            if len(record) != len(header):
                raise InputError(
                    f"{path}: line {start} (row {len(rows) + 1}) has {len(record)} fields but the header has "
                    f"{len(header)}; quote fields that contain {'commas' if delimiter == ',' else 'tabs'} "
                    "or fix the row")
            rows.append(record)
            lines.append(start)
    except csv.Error as err:
        raise InputError(f"{path}: malformed {kind} in the record starting at line {last + 1} ({err}); "
                         "check the quoting") from None
    assert header is not None  # text is not blank
    names = _clean_header(path, header, header_line)
    if not rows:
        raise InputError(f"{path}: has a header ({_list(names)}) but no data rows")
    columns = list(zip(*rows)) if rows else [() for _ in names]
    df = pl.DataFrame({name: pl.Series(name, list(col), dtype=pl.String) for name, col in zip(names, columns)})
    # Empty cells are missing values, except in the text columns where "" is a value in its own right.
    df = df.with_columns(
        pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c)).alias(c)
        for c in df.columns if c not in (schema.PROMPT, schema.RESPONSE)
    )
    return _Raw(path, df, lines, cells_are_text=True)


def _clean_header(path: Path, header: list[str], line: int) -> list[str]:
    names: list[str] = []
    for j, raw in enumerate(header):
        name = raw.strip()
        if not name:
            name = f"column_{j + 1}"
        if name in names:
            raise InputError(f"{path}: line {line}: column {name!r} appears twice in the header; rename one")
        names.append(name)
    return names


def _load_jsonl(path: Path, text: str) -> _Raw:
    records: list[dict] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {lineno}: invalid JSON ({err.msg} at column {err.colno}); "
                             "each line must be one JSON object") from None
        except RecursionError:
            raise InputError(f"{path}: line {lineno}: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}: line {lineno}: expected a JSON object per line, got a JSON "
                             f"{_json_type(obj)}; write one {{\"prompt\": ..., \"response\": ...}} object per line")
        records.append(obj)
        lines.append(lineno)
    if not records:
        raise InputError(f"{path}: no JSON records; expected one JSON object per line")
    df, objects = _frame_from_records(path, records)
    return _Raw(path, df, lines, objects=objects)


def _load_json(path: Path, text: str) -> _Raw:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            return _load_jsonl(path, text)  # JSON Lines saved as .json (common on the Hugging Face Hub)
        raise InputError(f"{path}: line {err.lineno}: invalid JSON ({err.msg} at column {err.colno}); "
                         "expected an array of objects (or one object per line)") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    if isinstance(obj, dict):
        lists = [k for k, v in obj.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        raise InputError(f"{path}: expected a JSON array of objects, got an object"
                         + (f" (the records may be under {lists[0]!r}; extract them)" if lists else "")
                         + "; or write JSON Lines (.jsonl)")
    if not isinstance(obj, list):
        raise InputError(f"{path}: expected a JSON array of objects, got a JSON {_json_type(obj)}")
    if not obj:
        raise InputError(f"{path}: the JSON array is empty; expected at least one record")
    for i, rec in enumerate(obj):
        if not isinstance(rec, dict):
            raise InputError(f"{path}: row {i + 1}: expected a JSON object, got a JSON {_json_type(rec)}")
    df, objects = _frame_from_records(path, obj)
    return _Raw(path, df, None, objects=objects)


def _json_type(obj) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(obj), "number")


def _frame_from_records(path: Path, records: list[dict]) -> tuple[pl.DataFrame, dict[str, list]]:
    """The records as a frame, and the Python values of the columns that hold JSON objects or arrays."""
    names: dict[str, None] = {}
    for rec in records:
        for key in rec:
            names.setdefault(str(key), None)
    data = {}
    objects: dict[str, list] = {}
    for name in names:
        values = [rec.get(name) for rec in records]
        data[name] = _series_from_values(name, values)
        if any(isinstance(v, (dict, list)) for v in values):
            objects[name] = values
    return pl.DataFrame(data), objects


def _series_from_values(name: str, values: list) -> pl.Series:
    """A Series from JSON values: one scalar type keeps its dtype, mixtures become text, objects become JSON text."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pl.Series(name, values, dtype=pl.Null)
    if kinds == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds <= {int, float}:
        if kinds == {int} and all(v is None or -(2**63) <= v < 2**63 for v in values):
            return pl.Series(name, values, dtype=pl.Int64)
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    if kinds == {str}:
        return pl.Series(name, values, dtype=pl.String)

    def text(v):
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(v, ensure_ascii=False)

    return pl.Series(name, [text(v) for v in values], dtype=pl.String)


# --------------------------------------------------------------------------------------------------------------------
# Canonicalisation
# --------------------------------------------------------------------------------------------------------------------
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


def _apply_mapping(raw: _Raw, mapping: dict[str, str] | None) -> dict[str, str]:
    """Rename mapped columns in place; return ``{canonical: user column}`` for messages."""
    mapping = dict(mapping or {})
    for source, target in mapping.items():
        _check_target(target, f"mapping {source!r} -> {target!r}")
    cols = raw.df.columns
    missing = [s for s in mapping if s not in cols]
    if missing:
        s = missing[0]
        raise InputError(f"{raw.path}: mapped column {s!r} (for {mapping[s]}) not found; columns found: "
                         f"{_list(cols)}; fix --map {mapping[s]}={s}")
    seen: dict[str, str] = {}
    for source, target in mapping.items():
        if target in seen:
            raise InputError(f"{raw.path}: columns {seen[target]!r} and {source!r} are both mapped to {target!r}; "
                             "map one column per canonical name")
        seen[target] = source
    for source, target in mapping.items():
        if target in cols and target != source and target not in mapping:
            raise InputError(f"{raw.path}: column {source!r} is mapped to {target!r}, but the file already has a "
                             f"column {target!r}; rename or drop one of them (or map {target!r} elsewhere)")
    if mapping:
        renames = {s: t for s, t in mapping.items() if s != t}
        raw.df = raw.df.rename(renames)
        raw.objects = {renames.get(c, c): v for c, v in raw.objects.items()}
    return {t: s for s, t in mapping.items()}


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


def _canonicalise(raw: _Raw, origin: dict[str, str], threshold: float | None, *, log: bool) -> pl.DataFrame:
    ctx = _Ctx(raw, origin)
    df = raw.df
    path = raw.path
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise InputError(f"--threshold {threshold!r}: expected a finite number, for example --threshold 4")
    context = None
    if schema.MESSAGES in df.columns:
        prompt_s, response_s, context = _from_messages(ctx)
        df = df.drop(schema.MESSAGES).with_columns(prompt_s, response_s)
    missing = [c for c in schema.REQUIRED if c not in df.columns]
    if missing:
        shown = ", ".join(f"--map {c}=COLUMN" for c in missing)
        raise InputError(f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)}; columns found: {_list(df.columns)}; "
                         f"rename the columns or pass {shown} (chat transcripts: a {schema.MESSAGES!r} column, "
                         f"or --map {schema.MESSAGES}=COLUMN)")
    n = df.height
    out: dict[str, pl.Series] = {}

    for name in (schema.PROMPT, schema.RESPONSE):
        _check_not_nested(ctx, name, df[name])
    prompt = _text(ctx, schema.PROMPT, df[schema.PROMPT])
    i = _first_bad(prompt.is_null())
    if i is not None:
        raise ctx.fail(i, schema.PROMPT, "is null", 'use an empty string "" where the log has no prompt text')
    out[schema.PROMPT] = prompt

    response = _text(ctx, schema.RESPONSE, df[schema.RESPONSE])
    i = _first_bad(response.is_null() | (response.str.strip_chars() == ""))
    if i is not None:
        raise ctx.fail(i, schema.RESPONSE, "is empty", "every row needs response text; drop rows without one")
    out[schema.RESPONSE] = response

    if schema.RESPONSE_ID in df.columns:
        out[schema.RESPONSE_ID] = _ids(ctx, schema.RESPONSE_ID, df[schema.RESPONSE_ID])
    else:
        out[schema.RESPONSE_ID] = pl.Series(schema.RESPONSE_ID, [f"r{k}" for k in range(1, n + 1)], dtype=pl.String)

    if log:
        if schema.FEEDBACK in df.columns:
            feedback = _feedback(ctx, df[schema.FEEDBACK], threshold)
        else:
            if threshold is not None:
                raise InputError(f"{path}: --threshold given but there is no feedback column (columns found: "
                                 f"{_list(df.columns)}); map your rating column with --map feedback=COLUMN")
            feedback = pl.Series(schema.FEEDBACK, [None] * n, dtype=pl.Int8)
        if schema.OBSERVED in df.columns:
            observed = _binary(ctx, schema.OBSERVED, df[schema.OBSERVED], allow_null=False)
            i = _first_bad((observed == 1) & feedback.is_null())
            if i is not None:
                raise ctx.fail(i, schema.OBSERVED, "is 1 but feedback is empty",
                               "set observed to 0 there, fill in the feedback, or drop the observed column")
        else:
            observed = feedback.is_not_null().cast(pl.Int8).rename(schema.OBSERVED)
        out[schema.FEEDBACK] = feedback
        out[schema.OBSERVED] = observed

    for name in _STRING_COLUMNS:
        if name in df.columns:
            out[name] = _text(ctx, name, df[name])
    if schema.SPLIT in df.columns:
        s = _text(ctx, schema.SPLIT, df[schema.SPLIT])
        t = _norm_tokens(s)
        mapped = t.replace_strict(_SPLIT_NAMES, default=None, return_dtype=pl.String)
        i = _first_bad(mapped.is_null() & t.is_not_null())
        if i is not None:
            raise ctx.fail(i, schema.SPLIT, f"value {s[i]!r} is not a split name", "use train, val or test")
        out[schema.SPLIT] = mapped.rename(schema.SPLIT)
    for name in (schema.LOGGED_PROPENSITY, schema.TRUE_PROPENSITY):
        if name in df.columns:
            out[name] = _probability(ctx, name, df[name])
    if schema.GOLD_LABEL in df.columns:
        out[schema.GOLD_LABEL] = _unit_interval(ctx, schema.GOLD_LABEL, df[schema.GOLD_LABEL])
    if schema.INCLUSION_PROBABILITY in df.columns:
        out[schema.INCLUSION_PROBABILITY] = _probability(ctx, schema.INCLUSION_PROBABILITY,
                                                         df[schema.INCLUSION_PROBABILITY], allow_null=True)
    if schema.AUDIT_STRATUM in df.columns:
        out[schema.AUDIT_STRATUM] = _text(ctx, schema.AUDIT_STRATUM, df[schema.AUDIT_STRATUM])
    if schema.TRUE_LABEL in df.columns:
        out[schema.TRUE_LABEL] = _binary(ctx, schema.TRUE_LABEL, df[schema.TRUE_LABEL], allow_null=True)
    if schema.TRUE_SCORE in df.columns:
        f = _to_float(ctx, schema.TRUE_SCORE, df[schema.TRUE_SCORE], "true_score")
        out[schema.TRUE_SCORE] = f.rename(schema.TRUE_SCORE)

    ordered = [c for c in schema.COLUMNS if c in out]
    canon = pl.DataFrame([out[c].cast(schema.DTYPES[c]).rename(c) for c in ordered])
    if context is not None:
        canon = canon.with_columns(context)
        out[schema.CONTEXT] = context
    extras = [c for c in df.columns if c not in out]
    if extras:
        extra_df = df.select(extras)
        if raw.cells_are_text:
            extra_df = pl.DataFrame([_infer_text_column(extra_df[c]) for c in extras])
        canon = pl.concat([canon, extra_df], how="horizontal")
    return canon


_NOT_TEXT_TODO = ("store the text as a string; for chat transcripts give a 'messages' column (a list of "
                  "{role, content} messages ending with the assistant's response) instead of prompt/response")


def _check_not_nested(ctx: _Ctx, name: str, s: pl.Series) -> None:
    """Raise, naming the first row, when a prompt / response column holds JSON objects or arrays (not text)."""
    values = ctx.raw.objects.get(name)
    if values is not None:
        i = next(k for k, v in enumerate(values) if isinstance(v, (dict, list)))
        raise ctx.fail(i, name, f"is a JSON {_json_type(values[i])}, not text", _NOT_TEXT_TODO)
    if s.dtype.is_nested():
        i = _first_bad(s.is_not_null())
        kind = "a list" if isinstance(s.dtype, (pl.List, pl.Array)) else "a struct"
        raise ctx.fail(i if i is not None else 0, name, f"is {kind} ({s.dtype}), not text", _NOT_TEXT_TODO)


def _from_messages(ctx: _Ctx) -> tuple[pl.Series, pl.Series, pl.Series]:
    """``prompt``, ``response`` and ``context`` (JSON text) from a chat-format ``messages`` column."""
    df = ctx.raw.df
    both = [c for c in (schema.PROMPT, schema.RESPONSE, schema.CONTEXT) if c in df.columns]
    if both:
        raise InputError(f"{ctx.raw.path}: has both a {ctx.col(schema.MESSAGES)} and a column {both[0]!r}; the "
                         f"conversation gives the prompt, context and response: drop or rename {both[0]!r} (or "
                         f"map the columns you mean)")
    s = df[schema.MESSAGES]
    values = ctx.raw.objects.get(schema.MESSAGES)
    if values is None:
        if s.dtype != pl.Null and s.dtype != pl.String and not s.dtype.is_nested():
            raise ctx.fail(0, schema.MESSAGES, f"has type {s.dtype}, not a list of messages",
                           'give each row a list of {"role", "content"} messages')
        values = s.to_list()
    prompts: list[str] = []
    responses: list[str] = []
    contexts: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            raise ctx.fail(i, schema.MESSAGES, "is empty",
                           "every row needs a conversation ending with the assistant's response; drop the row")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise ctx.fail(i, schema.MESSAGES, "is text, not a JSON list of messages",
                               'write [{"role": "user", "content": "..."}, {"role": "assistant", '
                               '"content": "..."}]') from None
        try:
            context, response = chat.split_conversation(value)
        except chat.MalformedConversation as err:
            raise ctx.fail(i, schema.MESSAGES, err.problem, err.todo) from None
        prompts.append(chat.render_prompt(context))
        responses.append(response)
        contexts.append(chat.context_json(context))
    return (pl.Series(schema.PROMPT, prompts, dtype=pl.String), pl.Series(schema.RESPONSE, responses, dtype=pl.String),
            pl.Series(schema.CONTEXT, contexts, dtype=pl.String))


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def _list(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return (shown + more) if names else "(none)"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


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
) -> pl.DataFrame:
    """Read an impression log and return it in the canonical schema (see the module docstring).

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or ``.parquet`` file (text formats may be ``.gz``).
        mapping: ``{user column: canonical column}``, for example from :func:`parse_mapping`.
        threshold: binarise numeric ratings in the feedback column: ``rating >= threshold`` is positive.

    Raises:
        InputError: one line naming the file, row/line and column at fault and what to do.
    """
    source = _source(path)

    def run() -> pl.DataFrame:
        raw = _load_raw(source)
        origin = _apply_mapping(raw, mapping)
        return _canonicalise(raw, origin, threshold, log=True)

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
