"""`causalrm fit`, `score` and `compare` end to end on a tiny simulated log (few epochs, precomputed embeddings)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest
from helpers_logs import write_simulated_log

from causalrm.cli.main import main
from causalrm.devices import cpu_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_simulated_log(tmp_path_factory.mktemp("cli"), 240)


def _fit(files, method, out, *extra):
    args = ["fit", str(files / "log.parquet"), "--method", method, "--out", str(out), "--embeddings",
            str(files / "X.npy"), "--epochs", "4", "--patience", "2", "--hidden", "16,8", "--propensity-model",
            "logistic", "--device", "cpu", "--quiet", "--force-noise-correction", *extra]
    return main(args)  # a 240-row log: the flip-rate gate fails, these tests check the mechanics


def test_fit_score_compare(files, tmp_path, capsys):
    assert _fit(files, "naive", tmp_path / "naive") == 0
    assert _fit(files, "causalrm-dr", tmp_path / "dr") == 0
    out = capsys.readouterr().out
    assert "fitted causalrm-dr" in out and "flip rates" in out and "R2" in out
    metrics = json.loads((tmp_path / "dr" / "metrics.json").read_text())
    assert metrics["method"] == "causalrm-dr" and metrics["test"]["label"] == "true_label"

    scored = tmp_path / "scored.csv"
    assert main(["score", str(tmp_path / "dr"), str(files / "log.parquet"), "--out", str(scored), "--embeddings",
                 str(files / "X.npy")]) == 0
    table = pl.read_csv(scored)
    saved = pl.read_parquet(tmp_path / "dr" / "scored.parquet")
    assert table.height == saved.height
    np.testing.assert_allclose(table["reward"].to_numpy(), saved["reward"].to_numpy(), rtol=1e-5)

    capsys.readouterr()
    report = tmp_path / "cmp.json"
    assert main(["compare", str(tmp_path / "naive"), str(tmp_path / "dr"), "--top-k", "5", "--json",
                 str(report)]) == 0
    text = capsys.readouterr().out
    assert "Kendall tau" in text and "top-5" in text and "true_label" in text
    data = json.loads(report.read_text())
    assert data["n"] == saved.height and data["top_k"] == 5
    verdict = data["verdict"]
    assert verdict["verdict"] in text and verdict["n"] == int((saved["split"] == "test").sum())
    # a 240-row log's test split is below verdicts.MIN_DECISION_LABELS: no verdict yet
    assert verdict["n"] < 100 and verdict["outcome"] is None and verdict["verdict"].startswith("not enough labels yet")


def test_cli_errors_are_one_line(files, tmp_path, capsys):
    assert _fit(files, "no-such-method", tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-method" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert _fit(files, "causalrm-ips", tmp_path / "y", "--rho01", "0.2") == 2
    assert "--rho10" in capsys.readouterr().err
    assert main(["score", str(tmp_path), str(files / "log.parquet"), "--out", str(tmp_path / "s.parquet")]) == 2
    assert "not a reward model folder" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", np.zeros((3, 8), dtype=np.float32))
    assert main(["fit", str(files / "log.parquet"), "--out", str(tmp_path / "z"), "--embeddings",
                 str(tmp_path / "short.npy"), "--quiet"]) == 2
    assert "embedding rows" in capsys.readouterr().err


def test_fit_prints_the_gold_estimate_beside_the_anchor_estimate(files, tmp_path, capsys):
    """A log with an audited subset: the anchor estimate is used, and the gold-label estimate (computed here by hand
    from the same rows) is printed beside it."""
    log = pl.read_parquet(files / "log.parquet")
    rng = np.random.default_rng(3)
    audited = (rng.random(log.height) < 0.6) & (log["split"] != "test").to_numpy()
    log = log.with_columns(pl.Series("gold_label", np.where(audited, log["true_label"].to_numpy(), np.nan)))
    log.write_parquet(tmp_path / "gold.parquet")
    args = ["fit", str(tmp_path / "gold.parquet"), "--method", "denoise", "--out", str(tmp_path / "run"),
            "--embeddings", str(files / "X.npy"), "--epochs", "2", "--hidden", "8", "--device", "cpu", "--quiet",
            "--force-noise-correction"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "flip rates (anchor-quantile)" in out and "gold-label estimate" in out
    use = audited & (log["observed"] == 1).to_numpy()
    g, r = log["gold_label"].to_numpy()[use], log["feedback"].to_numpy()[use]
    rho01, rho10 = np.mean(r[g == 1] == 0), np.mean(r[g == 0] == 1)
    assert f"rho01 {rho01:.3f}" in out.split("gold-label estimate")[1]
    assert f"rho10 {rho10:.3f}" in out.split("gold-label estimate")[1]
    saved = json.loads((tmp_path / "run" / "nuisances.json").read_text())["flip_rates"]["gold_check"]
    assert saved["rho01"] == pytest.approx(rho01) and saved["rho10"] == pytest.approx(rho10)


def test_untrustworthy_flip_rates_are_one_warning_line(files, tmp_path, capsys):
    """Embeddings that carry no signal: the fit still runs, and stderr says why the anchor rates cannot be trusted in
    one ``warning:`` line (no Python warning source lines)."""
    noise = np.random.default_rng(7).standard_normal(np.load(files / "X.npy").shape).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    args = ["fit", str(files / "log.parquet"), "--method", "denoise", "--out", str(tmp_path / "run"),
            "--embeddings", str(tmp_path / "noise.npy"), "--epochs", "2", "--hidden", "8", "--device", "cpu",
            "--quiet", "--force-noise-correction"]
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # whatever filters the test run was started with
        assert main(args) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "proxy" in line]
    assert lines and all(line.startswith("warning: ") for line in lines)
    assert "UserWarning" not in err and "warnings.warn" not in err


def test_fit_select_head_records_both_heads(files, tmp_path, capsys):
    assert _fit(files, "causalrm-ips", tmp_path / "sel", "--select-head") == 0
    out = capsys.readouterr().out
    assert "head (lowest best" in out and "16,8 (lr 0.0005)" in out and "linear (lr 0.005)" in out
    metrics = json.loads((tmp_path / "sel" / "metrics.json").read_text())
    sel = metrics["selection"]
    chosen = sel["candidates"][sel["chosen"]]
    assert metrics["validation"]["best_val_estimate"] == pytest.approx(chosen["best_val_estimate"])
    fit = json.loads((tmp_path / "sel" / "config.json").read_text())["fit"]
    assert fit["hidden"] == chosen["hidden"] and fit["lr"] == chosen["lr"] and fit["select_head"] is False


def test_fit_progress_without_a_terminal_is_plain_lines(files, tmp_path, capsys):
    """stderr captured (not a terminal): stage and epoch lines, no carriage-return redraws."""
    args = ["fit", str(files / "log.parquet"), "--method", "naive", "--out", str(tmp_path / "naive"), "--embeddings",
            str(files / "X.npy"), "--epochs", "3", "--hidden", "8", "--propensity-model", "logistic", "--device",
            "cpu"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "fit naive: epoch 3/3, train loss" in err
