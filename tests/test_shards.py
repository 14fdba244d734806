"""Sharded embeddings: `causalrm embed LOG OUT --shard-rows N` writes .npy shards plus index.json; read_embeddings
returns a ShardedRows over the memory-mapped shards, gathered by index and never concatenated (causalrm.data.shards)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from causalrm.data import shards  # noqa: E402
from causalrm.data.rowmatrix import RowView, ShardedRows, check_finite, is_lazy, iter_blocks  # noqa: E402
from causalrm.embeddings.files import read_embeddings  # noqa: E402
from causalrm.errors import InputError  # noqa: E402


def _write_sharded(folder, X, shard_rows, ids=None):
    folder.mkdir()
    ranges = shards.plan(X.shape[0], shard_rows)
    for k, (a, b) in enumerate(ranges):
        shards.write_shard(folder, k, X[a:b])
    return shards.write_index(folder, ranges=ranges, dim=X.shape[1], shard_rows=shard_rows, model="m",
                              cache_key="k", response_ids=ids)


def _no_array(monkeypatch):
    def no_array(self, *a, **k):
        raise AssertionError("np.asarray on the whole (sharded / memory-mapped) matrix")

    monkeypatch.setattr(ShardedRows, "__array__", no_array)
    monkeypatch.setattr(RowView, "__array__", no_array)


def test_sharded_rows_index_like_the_concatenation(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((103, 6)).astype(np.float32)
    index = _write_sharded(tmp_path / "E", X, 25)
    assert sorted(p.name for p in (tmp_path / "E").iterdir()) == [
        "index.json", "shard-00000.npy", "shard-00001.npy", "shard-00002.npy", "shard-00003.npy", "shard-00004.npy"]
    meta = json.loads(index.read_text())
    assert meta["shape"] == [103, 6] and meta["dtype"] == "float32" and meta["shard_rows"] == 25
    assert [(s["start"], s["stop"]) for s in meta["shards"]] == [(0, 25), (25, 50), (50, 75), (75, 100), (100, 103)]

    _no_array(monkeypatch)
    for path in (tmp_path / "E", index):
        Xs, model = read_embeddings(path)
        assert isinstance(Xs, ShardedRows) and is_lazy(Xs) and model == "m"
        assert all(isinstance(s, np.memmap) for s in Xs.shards)
        assert Xs.shape == X.shape and Xs.dtype == np.float32 and len(Xs) == 103 and np.ndim(Xs) == 2
    idx = rng.integers(-103, 103, size=200)  # any order, repeats and negative positions, across shards
    np.testing.assert_array_equal(Xs[idx], X[idx])
    mask = rng.random(103) < 0.3
    np.testing.assert_array_equal(Xs[mask], X[mask])
    np.testing.assert_array_equal(Xs[30:40], X[30:40])
    assert isinstance(Xs[30:40], np.memmap)  # within one shard: a view, no copy
    np.testing.assert_array_equal(Xs[20:80:3], X[20:80:3])
    np.testing.assert_array_equal(Xs[77], X[77])
    assert Xs[np.array([], dtype=np.int64)].shape == (0, 6)
    with pytest.raises(IndexError):
        Xs[np.array([103])]
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in Xs.iter_chunks(10)]), X)
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in iter_blocks(Xs, 16)]), X)
    check_finite(Xs)
    view = RowView(Xs, np.arange(5, 90, 2))
    np.testing.assert_array_equal(view[np.array([3, 0, 30])].take(), X[np.arange(5, 90, 2)][[3, 0, 30]])


def test_read_sharded_checks_log_and_files(tmp_path):
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    log = pl.DataFrame({"response_id": [f"r{i}" for i in range(10)]})
    _write_sharded(tmp_path / "E", X, 4, ids=log["response_id"].to_list())
    Xs, _ = read_embeddings(tmp_path / "E", log)
    assert Xs.shape == (10, 4)
    with pytest.raises(InputError, match="response_ids differ"):
        read_embeddings(tmp_path / "E", log.reverse())
    with pytest.raises(InputError, match="embedding rows but the log has"):
        read_embeddings(tmp_path / "E", log.head(9))
    full, _ = read_embeddings(tmp_path / "E", mmap=False)
    assert type(full) is np.ndarray and np.array_equal(full, X)
    np.save(tmp_path / "E" / "shard-00001.npy", X[:3])  # a shard of the wrong size
    with pytest.raises(InputError, match="the index says"):
        read_embeddings(tmp_path / "E")
    with pytest.raises(InputError, match="index.json"):
        read_embeddings(tmp_path / "missing.json")


def test_rewriting_with_fewer_shards_removes_stale_ones(tmp_path):
    X = np.ones((10, 2), dtype=np.float32)
    _write_sharded(tmp_path / "E", X, 2)
    ranges = shards.plan(10, 5)
    for k, (a, b) in enumerate(ranges):
        shards.write_shard(tmp_path / "E", k, X[a:b])
    shards.write_index(tmp_path / "E", ranges=ranges, dim=2, shard_rows=5, model=None, cache_key=None,
                       response_ids=None)
    assert sorted(p.name for p in (tmp_path / "E").iterdir()) == ["index.json", "shard-00000.npy", "shard-00001.npy"]
    assert list(shards.rank_shards(5, 2, 0)) == [0, 1, 2] and list(shards.rank_shards(5, 2, 1)) == [3, 4]
    assert list(shards.rank_shards(1, 2, 1)) == []


def test_cli_embed_shards_round_trip_bit_identical_to_single_file(tmp_path, capsys):
    from causalrm.cli.main import main

    n = 23
    log = tmp_path / "log.parquet"
    pl.DataFrame({"prompt": [f"question number {i % 7}" for i in range(n)],
                  "response": [f"answer {i} " + "word " * (i % 5) for i in range(n)],
                  "response_id": [f"r{i}" for i in range(n)]}).write_parquet(log)
    common = ["--no-cache", "--quiet", "--device", "cpu", "--batch-size", "1"]
    assert main(["embed", str(log), *common, "--out", str(tmp_path / "X.npy")]) == 0
    assert main(["embed", str(log), str(tmp_path / "E"), *common, "--shard-rows", "5"]) == 0
    printed = capsys.readouterr().out
    assert f"embedded {n} rows x 384 dims" in printed and "5 shards of <= 5 rows" in printed
    single = np.load(tmp_path / "X.npy")
    Xs, model = read_embeddings(tmp_path / "E", pl.read_parquet(log))
    assert isinstance(Xs, ShardedRows) and len(Xs.shards) == 5 and "MiniLM" in model
    np.testing.assert_array_equal(Xs[np.arange(n)], single)  # bit-identical
    meta = json.loads((tmp_path / "E" / "index.json").read_text())
    assert meta["shape"] == [n, 384]
    assert meta["response_ids_sha256"] == shards.ids_sha256([f"r{i}" for i in range(n)])
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert main(["embed", str(log), str(tmp_path / "X2.npy"), *common, "--shard-rows", "5"]) == 2  # shards go to a folder
    assert "folder" in capsys.readouterr().err


def test_fit_on_shards_equals_fit_on_single_file_without_materialising(tmp_path, monkeypatch):
    from causalrm.workflows.orchestrate import fit_log
    from tests.test_pipeline import fast_config, synth_log

    log, X = synth_log(n=500)
    X = np.asarray(X, dtype=np.float32)
    np.save(tmp_path / "X.npy", X)
    _write_sharded(tmp_path / "E", X, 64, ids=log["response_id"].cast(str).to_list())
    Xm, _ = read_embeddings(tmp_path / "X.npy", log)
    Xs, _ = read_embeddings(tmp_path / "E", log)
    assert isinstance(Xs, ShardedRows)
    config = fast_config("causalrm-dr", nuisance_max_rows=300, max_epochs=2)
    single = fit_log(log, Xm, config)
    _no_array(monkeypatch)
    sharded = fit_log(log, Xs, config)
    assert sharded.history.train_loss == single.history.train_loss
    assert sharded.history.val_estimate == single.history.val_estimate
    np.testing.assert_array_equal(sharded.nuisances.propensity, single.nuisances.propensity)
    np.testing.assert_array_equal(sharded.score(log, Xs), single.score(log, Xm))
