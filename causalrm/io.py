"""Reading and writing impression logs (placeholder: the writers; ``read_log`` follows)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from causalrm.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed onto ``path`` (``os.replace``).

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{folder}: output folder does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_table_atomic(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` to ``path`` (``.parquet``, ``.csv`` or ``.jsonl`` by suffix) atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise InputError(f"{path}: unsupported output extension {suffix!r}; use .parquet, .csv or .jsonl")
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            df.write_parquet(tmp, compression="zstd", statistics=False)
        elif suffix == ".csv":
            df.write_csv(tmp)
        else:
            df.write_ndjson(tmp)


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
