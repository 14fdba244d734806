"""Raw loading, one parser per file format: bytes -> (DataFrame, row locator).

``_load_raw`` checks the file (exists, readable, not empty), picks the parser from the extension (CSV, TSV, JSONL,
JSON, Parquet, the gzip variants of the text formats, ``hf://`` datasets) and returns a ``_Raw``: the parsed table
before canonicalisation, with the 1-based line of each data row for the text formats.
"""

from __future__ import annotations

import csv
import gzip
import io as _stdio
import json
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from causalrm.data import schema
from causalrm.data.io.formatting import _first_line, _list
from causalrm.errors import InputError

SUPPORTED_SUFFIXES = (
    ".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet",
    ".csv.gz", ".tsv.gz", ".jsonl.gz", ".ndjson.gz", ".json.gz",
)
_SUPPORTED_TEXT = ", ".join(SUPPORTED_SUFFIXES)


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
