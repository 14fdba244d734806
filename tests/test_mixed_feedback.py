"""Mixed feedback (thumbs + copies on the same impressions): reading, stacking, the per-row kernel, nuisances, fit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch

from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.feedback_kinds import FEEDBACK_KIND, MIXED, as_impressions, kind_of, resolve_kind
from causalrm.data.io.readers import read_log
from causalrm.data.mixed_feedback import IMPRESSION, SIGNAL, THUMBS, event_reading, impressions, stack
from causalrm.data.validate import summarize_log
from causalrm.errors import InputError
from causalrm.estimators import losses
from causalrm.simulation.simulate import simulate_with_config
from causalrm.workflows.orchestrate import fit_methods


def _mixed(n: int = 1200, d: int = 8, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """A simulated mixed log on a synthetic rated set: thumbs under selection and flips, copies on every row."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    rated = pl.DataFrame({"prompt": [f"p{i // 4}" for i in range(n)], "response": [f"r{i}" for i in range(n)],
                          "rating": (X @ rng.normal(size=d) > 0).astype(np.float64)})
    log, _ = simulate_with_config(rated, feedback_kind="mixed", alpha=0.5, rho01=0.1, rho10=0.1,
                                  observation_rate=0.4, event_rate_good=0.5, event_rate_bad=0.05, rating="real",
                                  embeddings=X, seed=seed)
    return log, X


def test_per_row_rates_match_the_scalar_kernel_row_by_row():
    rng = np.random.default_rng(1)
    n = 64
    z = torch.tensor(rng.normal(size=n), dtype=torch.float32)
    r = (rng.random(n) < 0.5).astype(np.float32)
    p = rng.uniform(0.2, 1.0, n).astype(np.float32)
    rho01 = np.where(np.arange(n) < n // 2, 0.1, 0.6).astype(np.float32)
    rho10 = np.where(np.arange(n) < n // 2, 0.2, 0.03).astype(np.float32)
    for method in ("denoise", "causalrm-ips", "fcorr", "fcorr-ips"):
        for base in ("mse", "bce"):
            rows = losses.loss_terms(method, z, losses.LossInputs(feedback=r, observed=np.ones(n, np.float32),
                                                                  propensity=p, rho01=rho01, rho10=rho10), base=base)
            reference = torch.stack([losses.loss_terms(
                method, z[i:i + 1], losses.LossInputs(feedback=r[i:i + 1], observed=np.ones(1, np.float32),
                                                      propensity=p[i:i + 1]),
                rho01=float(rho01[i]), rho10=float(rho10[i]), base=base)[0] for i in range(n)])
            torch.testing.assert_close(rows, reference, rtol=1e-5, atol=1e-6)


def test_per_row_rates_out_of_range_are_refused():
    inputs = losses.LossInputs(feedback=np.ones(2, np.float32), observed=np.ones(2, np.float32),
                               rho01=np.array([0.1, 0.7], np.float32), rho10=np.array([0.1, 0.4], np.float32))
    with pytest.raises(InputError, match="per-row flip rates"):
        losses.loss_terms("denoise", torch.zeros(2), inputs)


def test_a_mixed_file_is_read_and_named_mixed(tmp_path):
    log, _ = _mixed()
    path = tmp_path / "mixed.parquet"
    log.drop(schema.SPLIT).write_parquet(path)
    read = read_log(path)
    assert kind_of(read) == MIXED and set(read["copied"].unique().to_list()) == {0, 1}
    assert read[schema.FEEDBACK].null_count() > 0  # the thumbs stay as given
    text = summarize_log(read).format()
    assert "mixed feedback" in text and f"{int(log['copied'].sum()):,} implicit 'copied' events" in text
    assert "not read" not in text  # the copies are used, not warned about
    explicit = read_log(path, feedback_kind="explicit")
    assert kind_of(explicit) != MIXED and "'copied'" in summarize_log(explicit).format()


def test_validate_cli_names_a_mixed_log(tmp_path):
    log, _ = _mixed()
    path = tmp_path / "mixed.csv"
    log.select("prompt", "response", "feedback", "copied").write_csv(path)
    done = subprocess.run([sys.executable, "-m", "causalrm.cli.main", "validate", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "feedback kind:        mixed feedback" in done.stdout


def test_implicit_kind_on_a_log_with_thumbs_and_copies_is_refused_in_one_line():
    log, _ = _mixed()
    with pytest.raises(InputError, match="mixed") as err:
        resolve_kind(log, "implicit")
    assert "\n" not in str(err.value)


def test_stack_gives_one_row_per_impression_and_signal():
    log, X = _mixed(n=40)
    log = as_impressions(log)
    split = np.array(["train", "val", "test", "train"] * 10, dtype=object)
    stacked, Xs = stack(log, X, split=split)
    assert stacked.height == 2 * log.height and Xs.shape == (2 * log.height, X.shape[1])
    thumbs = stacked.filter(pl.col(SIGNAL) == THUMBS)
    events = stacked.filter(pl.col(SIGNAL) == "copied")
    assert thumbs[schema.FEEDBACK].to_list() == log[schema.FEEDBACK].to_list()
    assert events[schema.OBSERVED].to_list() == [1] * log.height
    assert events[schema.FEEDBACK].to_list() == log["copied"].to_list()
    assert events[schema.SPLIT].to_list() == thumbs[schema.SPLIT].to_list() == list(split)
    np.testing.assert_array_equal(Xs[stacked[IMPRESSION].to_numpy()], Xs)
    np.testing.assert_array_equal(Xs[log.height:], X)
    assert stack(stacked, Xs)[0] is stacked  # idempotent
    assert impressions(stacked).drop(schema.SPLIT).equals(log.drop(schema.SPLIT))


def test_event_reading_is_the_implicit_log_of_the_copies():
    log = as_impressions(_mixed(n=40)[0])
    events = event_reading(log)
    assert events[schema.FEEDBACK].to_list() == log["copied"].to_list()
    assert events[schema.OBSERVED].to_list() == [1] * log.height and events[FEEDBACK_KIND][0] == "implicit"


def test_mixed_nuisances_give_each_signal_its_own_rates_and_propensity():
    log, X = _mixed()
    log = as_impressions(log)
    config = FitConfig(method="causalrm-ips", max_epochs=3, event_rate=0.5, accidental_rate=0.05,
                       flip_bootstrap=20)
    fits = fit_methods(log, X, config, ["causalrm-ips"])
    nuis = fits["causalrm-ips"].nuisances
    stacked, _ = stack(log, X, split=np.array(["train"] * log.height))  # the signals of the stacked rows
    signals = np.concatenate([np.full(log.height, THUMBS), np.full(log.height, "copied")])[nuis.rows]
    rho01, rho10 = nuis.row_rates
    np.testing.assert_allclose(rho01[signals == "copied"], 0.5)
    np.testing.assert_allclose(rho10[signals == "copied"], 0.05)
    assert np.all(rho01[signals == THUMBS] == nuis.rho01) and np.all(rho10[signals == THUMBS] == nuis.rho10)
    assert np.all(nuis.propensity_clipped[signals == "copied"] == 1.0)
    assert np.all(nuis.propensity_clipped[signals == THUMBS] < 1.0)
    assert set(nuis.diagnostics["signals"]) == {THUMBS, "copied"}
    assert nuis.diagnostics["signals"]["copied"]["flip_rates"]["method"] == "fixed"
    assert "copied:" in nuis.gates["flip_rates"].verdict


def test_mixed_fit_scores_each_impression_and_refuses_dr_in_one_line():
    log, X = _mixed()
    fits = fit_methods(as_impressions(log), X, FitConfig(method="naive", max_epochs=3), ["naive", "denoise"],
                       config_for=lambda m: FitConfig(method=m, max_epochs=3, event_rate=0.5, accidental_rate=0.05))
    assert fits["naive"].score(log, X).shape == (log.height,)
    with pytest.raises(InputError, match="not available on mixed logs") as err:
        fit_methods(as_impressions(log), X, FitConfig(method="causalrm-dr", max_epochs=2, event_rate=0.5),
                    ["causalrm-dr"])
    assert "\n" not in str(err.value)


def test_mixed_noise_aware_fit_without_event_rates_or_labels_is_refused():
    log, X = _mixed()
    with pytest.raises(InputError, match="event rates"):
        fit_methods(as_impressions(log), X, FitConfig(method="denoise", max_epochs=2), ["denoise"])
