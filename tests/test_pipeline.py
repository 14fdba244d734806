"""fit_log end to end for every method, test rows never touched, splits, configs, and run directories."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from causalrm.config import FitConfig
from causalrm.data.splits import resolve_split
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.estimators.losses import METHODS
from causalrm.nuisances.fit import fit_nuisances
from causalrm.workflows import runs
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.runs import is_run_dir, load_run, save_run, score_log


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):  # shared CPUs: one thread is much faster than contended threads
        yield


def synth_log(n=500, d=12, seed=0, rho01=0.2, rho10=0.1):
    """A small simulated log (train/val/test, test clean) with embeddings X; true score linear in X."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    w = np.random.default_rng(99).standard_normal(d)
    eta = 1 / (1 + np.exp(-4 * X @ w / np.sqrt(d)))
    y = (rng.random(n) < eta).astype(np.int8)
    group = np.arange(n) // 2
    u = np.random.default_rng(seed + 1).random(group.max() + 1)[group]
    split = np.where(u < 0.2, "test", np.where(u < 0.36, "val", "train"))
    p = np.clip(0.1 + 0.5 * y + 0.1 * (X[:, 0] > 0), 0, 1)
    obs = np.where(split == "test", 1, rng.random(n) < p).astype(np.int8)
    flip = (split != "test") & np.where(y == 1, rng.random(n) < rho01, rng.random(n) < rho10)
    fb = np.where(flip, 1 - y, y).astype(np.int8)
    log = pl.DataFrame({
        "prompt": [f"prompt {g}" for g in group], "response": [f"response {i}" for i in range(n)],
        "response_id": [f"r{i}" for i in range(n)], "pair_id": [f"g{g}" for g in group],
        "feedback": pl.Series(np.where(obs == 1, fb, 0), dtype=pl.Int8), "observed": pl.Series(obs, dtype=pl.Int8),
        "split": split.tolist(), "true_label": pl.Series(y, dtype=pl.Int8),
    })
    log = log.with_columns(pl.when(pl.col("observed") == 1).then(pl.col("feedback")).alias("feedback"))
    return log, X


def fast_config(method="causalrm-dr", **kw):
    base = dict(method=method, hidden=(16, 8), max_epochs=6, patience=3, propensity_model="logistic",
                flip_bootstrap=20, device="cpu", force_noise_correction=True)  # mechanics, not the gates
    base.update(kw)
    return FitConfig(**base)


@pytest.fixture(scope="module")
def data():
    log, X = synth_log()
    with cpu_threads(1):
        nuis = fit_nuisances(log, X, fast_config(), methods=list(METHODS))
    return log, X, nuis


@pytest.mark.parametrize("method", registry.where(pointwise=True))  # A/B-log methods: tests/test_vote_gap.py
def test_every_method_end_to_end(data, method):
    log, X, nuis = data
    if method == "oracle-observed" and "true_propensity" not in log.columns:  # a simulation column; any p in (0, 1]
        log = log.with_columns(pl.lit(0.5).alias("true_propensity"))
    result = fit_log(log, X, fast_config(method), nuisances=nuis)
    z = result.score(log, X)
    assert z.shape == (log.height,) and np.isfinite(z).all()
    h = result.history
    assert 1 <= h.best_epoch <= h.epochs <= 6 and len(h.val_estimate) == h.epochs
    assert h.n_train == int(np.sum(result.split == "train")) and h.n_val == int(np.sum(result.split == "val"))
    assert set(result.diagnostics()) == {"nuisances", "history", "seconds", "selection", "learned", "learning",
                                         "choice"}
    assert (result.selection is None) == (registry.get(method).head is None) and result.choice is None
    assert result.learned is not None and result.learned.evidence["n_val"] == h.n_val


def test_fit_log_fits_only_the_nuisances_a_method_needs():
    log, X = synth_log(n=300)
    r = fit_log(log, X, fast_config("naive"))
    assert r.nuisances.propensity_clipped is None and r.nuisances.rho01 is None
    r = fit_log(log, X, fast_config("causalrm-dr"))
    n = r.nuisances
    assert n.propensity_clipped is not None and n.rho01 is not None and n.pseudo_label is not None
    assert np.all(n.propensity_clipped >= 0.1) and n.propensity_clipped.shape == n.rows.shape
    assert n.rows.size == int(np.sum(log["split"].to_numpy() != "test"))
    d = n.to_dict()
    json.dumps(d)
    assert "logistic" in d["propensity"]["source"] and "flip_rates" in d
    r = fit_log(log, X, fast_config("causalrm-ips", rho01=0.2, rho10=0.1))
    assert (r.nuisances.rho01, r.nuisances.rho10) == (0.2, 0.1)
    assert r.nuisances.diagnostics["flip_rates"]["method"] == "fixed"


def test_the_anchor_proxy_is_propensity_weighted_for_every_method_that_estimates_rates():
    """denoise needs no propensity for its loss, but its anchor proxy is fitted with 1/p-hat weights by default, so
    it gets the same flip rates as causalrm-dr on the same log; proxy_weighting="none" turns the weights off."""
    from causalrm.nuisances.pseudo_labels import clean_posterior

    log, X = synth_log(n=400)
    dn = fit_nuisances(log, X, fast_config("denoise"))
    dr = fit_nuisances(log, X, fast_config("causalrm-dr", imputation_fit="pooled"))  # q from the anchor proxy
    assert dn.propensity_clipped is not None and dn.diagnostics["flip_rates"]["proxy_weighting"] == "propensity"
    assert (dn.rho01, dn.rho10) == (dr.rho01, dr.rho10)
    np.testing.assert_allclose(dr.pseudo_label, clean_posterior(dr.flip_estimator.proxy_scores_, rho01=dr.rho01,
                                                                rho10=dr.rho10))
    plain = fit_nuisances(log, X, fast_config("denoise", proxy_weighting="none"))
    assert plain.propensity_clipped is None and plain.diagnostics["flip_rates"]["proxy_weighting"] == "none"
    assert (plain.rho01, plain.rho10) != (dn.rho01, dn.rho10)


def test_a_propensity_fitted_with_the_same_settings_is_reused_not_refitted(monkeypatch):
    """The app's Noise tab and training job take the Propensity tab's p-hat (``reuse``): the same flip rates as a
    fresh fit, without cross-fitting again; other settings (seed, clip) or other rows fit anew."""
    from causalrm.nuisances.propensity import PropensityModel

    log, X = synth_log(n=400)
    fresh = fit_nuisances(log, X, fast_config("denoise"))
    prop = fit_nuisances(log, X, fast_config("ips"))
    calls = []
    real_fit = PropensityModel.fit
    monkeypatch.setattr(PropensityModel, "fit", lambda self, *a, **k: calls.append(1) or real_fit(self, *a, **k))
    reused = fit_nuisances(log, X, fast_config("denoise"), reuse=prop)
    assert calls == []
    np.testing.assert_array_equal(reused.propensity_clipped, fresh.propensity_clipped)
    assert (reused.rho01, reused.rho10) == (fresh.rho01, fresh.rho10)
    assert reused.gates["propensity"].passed == fresh.gates["propensity"].passed
    if not torch.cuda.is_available():  # "auto" resolves to the cpu the propensity was fitted on
        fit_nuisances(log, X, fast_config("denoise", device="auto"), reuse=prop)
        assert calls == []
    for other in (fast_config("denoise", seed=1), fast_config("denoise", clip=0.2)):
        fit_nuisances(log, X, other, reuse=prop)
    assert len(calls) == 2
    other_log = log.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("test")).otherwise("split")
                                 .alias("split"))
    fit_nuisances(other_log, X, fast_config("denoise"), reuse=prop)
    assert len(calls) == 3


def test_test_rows_never_reach_fitting():
    """Poison every test row (features, labels, feedback, texts): the fitted model is bit-for-bit the same."""
    log, X = synth_log(n=300)
    cfg = fast_config("causalrm-dr")
    clean = fit_log(log, X, cfg)
    test = (log["split"] == "test").to_numpy()
    Xp = X.copy()
    Xp[test] = np.nan
    poisoned = log.with_columns(
        pl.when(pl.col("split") == "test").then(1 - pl.col("true_label")).otherwise(pl.col("true_label"))
        .alias("true_label"),
        pl.when(pl.col("split") == "test").then(pl.lit(1, pl.Int8)).otherwise(pl.col("feedback")).alias("feedback"),
        pl.when(pl.col("split") == "test").then(pl.lit("poison")).otherwise(pl.col("response")).alias("response"),
    )
    dirty = fit_log(poisoned, Xp, cfg)
    for k, v in clean.backbone.state_dict().items():
        assert torch.equal(v, dirty.backbone.state_dict()[k])
    assert clean.history.val_estimate == dirty.history.val_estimate
    assert clean.nuisances.rho01 == dirty.nuisances.rho01
    np.testing.assert_array_equal(clean.nuisances.propensity_clipped, dirty.nuisances.propensity_clipped)


def test_resolve_split_rules():
    log, _ = synth_log(n=200)
    split = resolve_split(log)
    np.testing.assert_array_equal(split, log["split"].to_numpy())
    # no split column: seeded 80/20 group split, no pair crosses
    s = resolve_split(log.drop("split"), seed=3)
    assert set(s) == {"train", "val"}
    assert 0.1 < np.mean(s == "val") < 0.3
    pairs = log["pair_id"].to_numpy()
    assert all(len(set(s[pairs == p])) == 1 for p in np.unique(pairs))
    np.testing.assert_array_equal(s, resolve_split(log.drop("split"), seed=3))
    # train/test only: val carved out of train, test untouched
    tt = log.with_columns(pl.when(pl.col("split") == "val").then(pl.lit("train")).otherwise(pl.col("split"))
                          .alias("split"))
    s2 = resolve_split(tt)
    assert np.all(s2[tt["split"].to_numpy() == "test"] == "test") and np.any(s2 == "val")
    with pytest.raises(InputError):
        resolve_split(log.with_columns(pl.lit("dev").alias("split")))


def test_fit_config_json_roundtrip_and_validation():
    cfg = FitConfig(method="causalrm-ips", hidden="32,8", rho01=0.1, rho10=0.2, backbone_options={"dropout": 0.1})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert FitConfig.from_dict(d) == cfg and cfg.hidden == (32, 8)
    assert cfg.effective_flip_method == "fixed"
    for bad in (dict(method="nope"), dict(rho01=0.1), dict(rho01=0.6, rho10=0.5), dict(flip_method="fixed"),
                dict(backbone="nope"), dict(base_loss="hinge"), dict(clip=0)):
        with pytest.raises(InputError):
            FitConfig(**bad).validate()
    with pytest.raises(InputError):
        FitConfig.from_dict({"method": "naive", "colour": "red"})


def test_input_errors():
    log, X = synth_log(n=200)
    with pytest.raises(InputError, match="true_label"):
        fit_log(log.drop("true_label"), X, fast_config("oracle"))
    with pytest.raises(InputError, match="feedback-only"):
        fit_log(log.with_columns(pl.lit(1, pl.Int8).alias("observed"), pl.col("feedback").fill_null(0)), X,
                fast_config("ips"))
    with pytest.raises(InputError):
        fit_log(log, X[:10], fast_config("naive"))


# ----------------------------------------------------------------------------------------------------------- runs
def test_run_dir_roundtrip(tmp_path, data):
    log, X, nuis = data
    result = fit_log(log, X, fast_config("causalrm-dr"), nuisances=nuis)
    out = save_run(result, log, X, tmp_path / "run")
    assert is_run_dir(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["backbone.json", "config.json", "metrics.json", "model.safetensors", "nuisances.json", "scored.parquet"])
    run = load_run(out)
    assert run.config == result.config
    np.testing.assert_array_equal(run.score(log, X), result.score(log, X))
    scored = run.scored()
    np.testing.assert_allclose(scored["reward"].to_numpy(), result.score(log, X), rtol=1e-6)
    assert {"response_id", "prompt", "response", "pair_id", "split", "reward", "preference"} <= set(scored.columns)
    np.testing.assert_allclose(scored["preference"].to_numpy(), 1 / (1 + np.exp(-scored["reward"].to_numpy())))
    again = score_log(out, log, X)
    assert again.equals(score_log(run, log, X))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["label"] == "true_label" and metrics["test"]["n"] == int(np.sum(result.split == "test"))
    assert metrics["validation"]["best_epoch"] == result.history.best_epoch
    # replacing an existing run is allowed and leaves no temporary folders
    save_run(result, log, X, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_run_dir_writes_are_atomic_and_refuse_foreign_folders(tmp_path, data, monkeypatch):
    log, X, nuis = data
    result = fit_log(log, X, fast_config("naive"), nuisances=nuis)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runs, "scored_table", boom)
    with pytest.raises(RuntimeError):
        save_run(result, log, X, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    out = save_run(result, log, X, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(runs, "scored_table", boom)
    with pytest.raises(RuntimeError):
        save_run(result, log, X, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old run intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    monkeypatch.undo()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a causalrm run"):
        save_run(result, log, X, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="not a causalrm run"):
        load_run(foreign)
    with pytest.raises(InputError):
        load_run(tmp_path / "missing")


def test_validation_method_override(data):
    """val_method: causalrm-dr trained, early-stopped on the causalrm-ips estimate of the val rows."""
    from causalrm.estimators.losses import estimate
    from causalrm.nuisances.container import loss_inputs

    log, X, nuis = data
    cfg = fast_config("causalrm-dr", val_method="causalrm-ips")
    r = fit_log(log, X, cfg, nuisances=nuis)
    assert r.history.method == "causalrm-dr" and r.history.val_method == "causalrm-ips"
    is_val = nuis.split == "val"
    z = torch.as_tensor(r.score(log, X)[nuis.rows[is_val]])
    inputs = loss_inputs(log, nuis, "causalrm-ips", is_val)
    val = float(estimate("causalrm-ips", z, inputs.to(), rho01=nuis.rho01, rho10=nuis.rho10))
    assert val == pytest.approx(r.history.best_val_estimate, rel=1e-5)
    with pytest.raises(InputError):
        fast_config("naive", val_method="oracle").validate()


@pytest.mark.parametrize("method", ["naive", "causalrm-ips", "causalrm-dr"])
def test_select_head_keeps_the_head_with_the_lower_validation_estimate(data, method):
    """select_head trains the configured head and a linear one on shared nuisances, keeps the lower best val
    estimate, records both, and returns the chosen candidate's config: refitting it gives the same model."""
    from causalrm.config import LINEAR_HEAD_LR

    log, X, nuis = data
    result = fit_log(log, X, fast_config(method, select_head=True), nuisances=nuis)
    sel = result.selection
    assert [c["hidden"] for c in sel["candidates"]] == [[16, 8], []]
    assert [c["lr"] for c in sel["candidates"]] == [fast_config().lr, LINEAR_HEAD_LR]
    vals = [c["best_val_estimate"] for c in sel["candidates"]]
    assert sel["chosen"] == int(np.argmin(vals))
    assert result.history.best_val_estimate == min(vals)
    assert list(result.config.hidden) == sel["candidates"][sel["chosen"]]["hidden"]
    assert not result.config.select_head
    alone = fit_log(log, X, result.config, nuisances=nuis)
    assert alone.history.best_val_estimate == pytest.approx(result.history.best_val_estimate, rel=1e-6)
    np.testing.assert_allclose(alone.score(log, X), result.score(log, X), rtol=1e-5, atol=1e-6)
    for candidate in sel["candidates"]:  # each candidate's record is what fitting it alone gives
        cfg = fast_config(method, hidden=tuple(candidate["hidden"]), lr=candidate["lr"])
        assert fit_log(log, X, cfg, nuisances=nuis).history.best_val_estimate == pytest.approx(
            candidate["best_val_estimate"], rel=1e-6)


def test_select_head_needs_the_mlp_backbone():
    with pytest.raises(InputError, match="select_head"):
        fast_config("naive", select_head=True, backbone="lora").validate()
