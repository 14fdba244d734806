"""Atomic writes and the JSON they write: the one place for both.

* :func:`atomic_path` yields a temporary file in the destination folder, renamed onto the destination on success
  (``os.replace``) and removed on any exception, so a reader sees the old file or the new one, never a part.
  :func:`atomic_dir` does the same for a folder (run directories, exports). The results get the modes a plain
  ``open`` / ``mkdir`` would give (or the replaced file's mode), not the private ones of temporary files.
* :func:`write_text_atomic`, :func:`write_json_atomic` and :func:`write_table_atomic` (``.parquet`` / ``.csv`` /
  ``.jsonl`` by suffix) are built on it.
* :func:`jsonable` is the one JSON sanitiser: dataclasses and objects with ``to_dict``, numpy scalars and arrays,
  tuples become JSON types, non-finite floats (NaN, inf) become null; :func:`write_json_atomic` applies it, so what
  it writes is strict JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from causalrm.errors import InputError

__all__ = [
    "atomic_dir",
    "atomic_path",
    "json_text",
    "jsonable",
    "write_json_atomic",
    "write_table_atomic",
    "write_text_atomic",
]


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, so no thread sees umask 0 later
    os.umask(umask)
    return umask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed onto ``path`` (``os.replace``).

    On any exception the temporary file is removed and ``path`` is left untouched. The folder must exist.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{folder}: output folder does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file 0600: give it the mode a plain open() would (or the replaced file's mode).
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` (a folder) in one rename.

    An existing ``path`` is moved aside first and removed only after the rename succeeded, so a failure at any point
    leaves the old folder in place and no partial output. Callers check whether replacing ``path`` is allowed.
    The result gets the modes a plain ``mkdir`` / ``open`` would give (0755 / 0644 under umask 022), not the
    private ones of temporary folders and of files some writers create (safetensors: 0600).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: output folder does not exist; create it first")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _default_modes(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "previous")
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old / "previous", path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default_modes(folder: Path) -> None:
    """Give ``folder`` and everything in it the umask's default modes (executable files stay executable)."""
    os.chmod(folder, 0o777 & ~_UMASK)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~_UMASK)
        for name in files:
            file = os.path.join(root, name)
            executable = os.stat(file).st_mode & 0o100
            os.chmod(file, (0o777 if executable else 0o666) & ~_UMASK)


def write_table_atomic(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` to ``path`` atomically; the format follows the suffix (``.parquet``, ``.csv`` or ``.jsonl``)."""
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


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(obj: Any) -> str:
    """``obj`` made JSON-able (:func:`jsonable`) as indented UTF-8 JSON text with a final newline; strict JSON."""
    return json.dumps(jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically, sanitised by :func:`jsonable`."""
    write_text_atomic(json_text(obj), path)


def jsonable(obj: Any) -> Any:
    """Recursively convert dataclasses, numpy values and tuples to JSON types; non-finite floats to None."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict) and not isinstance(obj, type):
        return jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.size > 64:
            return {"mean": float(np.mean(obj)), "min": float(np.min(obj)), "max": float(np.max(obj)),
                    "n": int(obj.size)}
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, (int, str)):
        return obj
    return str(obj)
