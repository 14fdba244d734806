"""Memory-mapped embeddings: gathered per batch by index, never copied whole (causalrm.data.rowmatrix)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from causalrm.data.rowmatrix import RowView, is_lazy, subsample
from causalrm.embeddings.files import read_embeddings
from causalrm.estimators.losses import LossInputs
from causalrm.nuisances.propensity import PropensityModel
from causalrm.training.backbones.mlp import MLPBackbone, TensorFeatures
from causalrm.training.options import TrainConfig
from causalrm.training.scoring import predict_logits
from causalrm.training.trainer import train


def _data(n: int = 600, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    true = (X[:, 0] + 0.3 * rng.normal(size=n)) > 0
    obs = (rng.random(n) < 1 / (1 + np.exp(-X[:, 1]))).astype(np.float64)
    fb = np.where(obs == 1, true, 0).astype(np.float64)
    return X, fb, obs


@pytest.fixture
def mapped(tmp_path):
    X, fb, obs = _data()
    np.save(tmp_path / "X.npy", X)
    Xm, _ = read_embeddings(tmp_path / "X.npy")
    return X, Xm, fb, obs


def test_read_embeddings_maps_npy_and_safetensors(tmp_path, mapped):
    X, Xm, _, _ = mapped
    assert isinstance(Xm, np.memmap) and is_lazy(Xm) and not is_lazy(X)
    np.testing.assert_array_equal(np.asarray(Xm), X)
    from safetensors.numpy import save_file

    save_file({"embeddings": X}, str(tmp_path / "X.safetensors"), metadata={"response_ids": json.dumps(None)})
    Xs, _ = read_embeddings(tmp_path / "X.safetensors")
    assert isinstance(Xs, np.memmap)
    np.testing.assert_array_equal(np.asarray(Xs), X)
    Xc, _ = read_embeddings(tmp_path / "X.safetensors", mmap=False)
    assert not isinstance(Xc, np.memmap)


def test_rowview_composes_indices_without_copying(mapped):
    X, Xm, _, _ = mapped
    rows = np.arange(10, 400, 3)
    view = RowView(Xm, rows)
    mask = np.zeros(len(rows), dtype=bool)
    mask[::2] = True
    sub = view[mask]
    assert isinstance(sub, RowView) and sub.base is Xm and sub.shape == (int(mask.sum()), X.shape[1])
    idx = np.array([5, 0, 7, 2])
    np.testing.assert_array_equal(sub.take(idx), X[rows[mask][idx]])


def _train(feats_tr, feats_va, fb, obs, tr, va):
    bb = MLPBackbone(feats_tr.dim, hidden=(16,))
    inputs = lambda r: LossInputs(feedback=fb[r], observed=obs[r], propensity=np.full(len(r), 0.5))  # noqa: E731
    h = train(bb, feats_tr, inputs(tr), feats_va, inputs(va),
              TrainConfig(method="causalrm-ips", max_epochs=3, patience=0, batch_size=64, seed=1))
    return bb, h


def test_training_on_a_memmap_matches_in_memory_and_never_materialises_it(mapped, monkeypatch):
    X, Xm, fb, obs = mapped
    tr, va = np.arange(0, 480), np.arange(480, 600)
    torch.manual_seed(0)
    bb_mem, h_mem = _train(TensorFeatures(X[tr]), TensorFeatures(X[va]), fb, obs, tr, va)

    gathered = []
    real_take = RowView.take

    def take(self, idx=None):
        assert idx is not None, "the whole matrix was gathered"
        gathered.append(len(np.atleast_1d(idx)))
        return real_take(self, idx)

    def no_array(self, *a, **k):
        raise AssertionError("np.asarray on the memory-mapped rows")

    monkeypatch.setattr(RowView, "take", take)
    monkeypatch.setattr(RowView, "__array__", no_array)
    torch.manual_seed(0)
    bb_map, h_map = _train(TensorFeatures(RowView(Xm, tr)), TensorFeatures(RowView(Xm, va)), fb, obs, tr, va)
    assert h_map.train_loss == h_mem.train_loss and h_map.val_estimate == h_mem.val_estimate
    for a, b in zip(bb_mem.state_dict().values(), bb_map.state_dict().values()):
        assert torch.equal(a, b)
    assert max(gathered) <= 8192  # batches and eval chunks only
    z_map = predict_logits(bb_map, TensorFeatures(Xm))
    np.testing.assert_array_equal(z_map, predict_logits(bb_mem, TensorFeatures(X)))


def test_propensity_subsample_on_a_memmap(mapped):
    X, Xm, _, obs = mapped
    m = PropensityModel(model="logistic", max_rows=300, C=1.0).fit(Xm, obs)
    assert m.fit_rows_ is not None and len(m.fit_rows_) in range(295, 306)
    assert m.propensity_.shape == (len(obs),) and np.all((m.propensity_ > 0) & (m.propensity_ <= 1))
    rest = np.setdiff1d(np.arange(len(obs)), m.fit_rows_)
    np.testing.assert_allclose(m.propensity_[rest], m.predict_proba(X[rest]), rtol=1e-6)
    np.testing.assert_allclose(m.predict_proba(Xm), m.predict_proba(X), rtol=1e-6)
    full = PropensityModel(model="logistic", C=1.0).fit(Xm, obs)  # no cap: exactly the in-memory fit
    np.testing.assert_array_equal(full.propensity_, PropensityModel(model="logistic", C=1.0).fit(X, obs).propensity_)


def test_subsample_is_stratified_and_seeded():
    y = np.r_[np.ones(100), np.zeros(900)]
    a, b = subsample(1000, 200, 3, stratify=y), subsample(1000, 200, 3, stratify=y)
    np.testing.assert_array_equal(a, b)
    assert y[a].sum() == 20 and len(a) == 200
    assert subsample(100, 200, 0) is None and subsample(1000, None, 0) is None


def test_fit_log_on_a_memmap_with_subsampled_nuisances(tmp_path, monkeypatch):
    """The whole pipeline on memory-mapped embeddings with nuisance_max_rows below the row count: every nuisance
    is fitted on a subsample gathered by index, the rest predicted in chunks; the matrix is never copied whole."""
    from causalrm.workflows.orchestrate import fit_log
    from tests.test_pipeline import fast_config, synth_log

    log, X = synth_log(n=800)
    np.save(tmp_path / "X.npy", X)
    Xm, _ = read_embeddings(tmp_path / "X.npy", log)

    def no_array(self, *a, **k):
        raise AssertionError("np.asarray on the memory-mapped rows")

    monkeypatch.setattr(RowView, "__array__", no_array)
    result = fit_log(log, Xm, fast_config("causalrm-dr", nuisance_max_rows=300, max_epochs=2))
    n = result.nuisances
    sub = n.diagnostics["subsample"]
    assert sub["propensity"] <= 310 and sub["flip_rates"] <= 310 and sub["pseudo_label"] <= 310
    assert n.propensity.shape == n.pseudo_label.shape == (len(n.rows),)
    assert np.all(np.isfinite(n.pseudo_label)) and np.all((n.propensity > 0) & (n.propensity <= 1))
    z = result.score(log, Xm)
    assert z.shape == (log.height,) and np.all(np.isfinite(z))
