"""causalrm.atomic_io: no partial file or folder on failure, and one JSON sanitiser (NaN / inf -> null, numpy types)."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from causalrm import atomic_io
from causalrm.atomic_io import (
    atomic_dir,
    atomic_path,
    json_text,
    jsonable,
    write_json_atomic,
    write_table_atomic,
    write_text_atomic,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic({"v": 1}, path)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"v": 2, "trunc')
        raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_failed_rename_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("rename failed")

    monkeypatch.setattr(atomic_io.os, "replace", boom)
    with pytest.raises(OSError):
        write_text_atomic("new", tmp_path / "a.txt")
    assert os.listdir(tmp_path) == []


def test_a_failed_folder_keeps_the_old_folder(tmp_path):
    out = tmp_path / "run"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["run"]


def test_a_failed_table_write_leaves_nothing(tmp_path):
    import polars as pl

    with pytest.raises(Exception):
        write_table_atomic(pl.DataFrame({"a": [[1, 2]]}), tmp_path / "t.csv")  # CSV cannot hold list columns
    assert os.listdir(tmp_path) == []


@dataclasses.dataclass
class _Point:
    x: float
    n: np.int64


def test_jsonable_sanitises():
    obj = {"nan": float("nan"), "inf": math.inf, "-inf": -np.inf, "f32": np.float32(0.5), "i": np.int64(3),
           "b": np.bool_(True), "t": (1, np.float64("nan")), "a": np.array([1.0, np.inf]), 7: _Point(np.nan, 2),
           "s": "ünï", "none": None}
    assert jsonable(obj) == {"nan": None, "inf": None, "-inf": None, "f32": 0.5, "i": 3, "b": True, "t": [1, None],
                             "a": [1.0, None], "7": {"x": None, "n": 2}, "s": "ünï", "none": None}
    big = jsonable(np.arange(100.0))
    assert big == {"mean": 49.5, "min": 0.0, "max": 99.0, "n": 100}  # large arrays are summarised
    text = json_text(obj)
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    json.loads(text)  # strict JSON


def test_write_json_atomic_writes_strict_json(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic({"r2": np.float64("nan"), "rho": (0.2, np.float32(0.1)), "name": "ünï"}, path)
    back = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert back == {"r2": None, "rho": [0.2, pytest.approx(0.1)], "name": "ünï"}
