"""Implicit (positive-only) feedback: detection, reading as impressions, the event rates' sources, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from causalrm.data import feedback_kinds as fk
from causalrm.data.io.readers import read_log
from causalrm.data.validate import summarize_log
from causalrm.errors import InputError

C, EPS = 0.5, 0.02


def implicit_log(n: int = 1200, d: int = 6, seed: int = 0, n_gold: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Copies of good responses with probability C, of bad ones EPS; ``copied`` is 1 or empty on every row."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    good = (X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.standard_normal(n) > 0).astype(np.int8)
    event = rng.random(n) < np.where(good == 1, C, EPS)
    split = np.array(["train", "val", "test"])[rng.choice(3, size=n, p=[0.6, 0.2, 0.2])]
    gold = np.full(n, np.nan)
    if n_gold:
        pick = rng.choice(np.flatnonzero(split != "test"), size=n_gold, replace=False)
        gold[pick] = good[pick]
    log = pl.DataFrame({
        "prompt": [f"q{i // 4}" for i in range(n)], "response": [f"a{i}" for i in range(n)],
        "response_id": [f"r{i}" for i in range(n)], "copied": [1 if e else None for e in event],
        "split": split, "true_label": good,
        **({"gold_label": [None if np.isnan(g) else float(g) for g in gold]} if n_gold else {}),
    }, schema_overrides={"copied": pl.Int8})
    return log, X


def test_detect_kind_from_counts():
    assert fk.detect_kind(100, fk.MIN_EVENTS, 0) == fk.IMPLICIT
    assert fk.detect_kind(100, fk.MIN_EVENTS - 1, 0) == fk.EXPLICIT  # too few to tell: warned, not guessed
    assert fk.detect_kind(100, 50, 1) == fk.EXPLICIT  # one thumbs-down: thumbs
    assert fk.detect_kind(50, 50, 0) == fk.EXPLICIT  # no impression without feedback: nothing says "no event"
    with pytest.raises(ValueError):
        fk.detect_kind(10, 20, 0)
    assert fk.positive_only_warning(100, 5, 0) is not None
    assert fk.positive_only_warning(100, 5, 1) is None


def test_as_impressions_reads_every_row_as_observed():
    log, _ = implicit_log()
    raw = log.rename({"copied": "feedback"})
    read = fk.as_impressions(raw)
    assert fk.kind_of(read) == fk.IMPLICIT
    assert read["observed"].to_list() == [1] * read.height
    np.testing.assert_array_equal(read["feedback"].to_numpy(), raw["feedback"].fill_null(0).to_numpy())
    assert fk.as_impressions(read).equals(read)  # idempotent
    with pytest.raises(InputError, match="marked implicit"):
        fk.as_impressions(read, "explicit")
    forced = fk.as_impressions(raw, "explicit")  # the user's word overrides, and is remembered
    assert fk.kind_of(forced) == fk.EXPLICIT and fk.FEEDBACK_KIND in forced.columns
    thumbs = raw.with_columns(pl.when(pl.col("true_label") == 0).then(0).otherwise(1).cast(pl.Int8).alias("feedback"))
    assert fk.as_impressions(thumbs).equals(thumbs)  # explicit thumbs are left as they are


def test_read_log_and_validate_agree_on_the_kind(tmp_path):
    log, _ = implicit_log()
    for name in ("copies.parquet", "copies.csv"):
        path = tmp_path / name
        log.write_parquet(path) if name.endswith("parquet") else log.write_csv(path)
        read = read_log(path, mapping={"copied": "feedback"})
        assert fk.kind_of(read) == fk.IMPLICIT
        summary = summarize_log(read)
        assert summary.feedback_kind == fk.IMPLICIT and summary.n_observed == log.height
        assert summary.n_positive == log["copied"].is_not_null().sum()
        out = subprocess.run([sys.executable, "-m", "causalrm.cli.main", "validate", str(path), "--map",
                              "feedback=copied", "--json"], capture_output=True, text=True, check=True).stdout
        assert '"feedback_kind": "implicit"' in out
        text = subprocess.run([sys.executable, "-m", "causalrm.cli.main", "validate", str(path), "--map",
                               "feedback=copied"], capture_output=True, text=True, check=True).stdout
        assert "implicit (positive-only) feedback" in text and "--event-rate" in text


def test_an_unread_implicit_log_is_never_fitted_as_thumbs():
    from causalrm.config import FitConfig
    from causalrm.nuisances.fit import fit_nuisances

    log, X = implicit_log()
    raw = log.rename({"copied": "feedback"})
    with pytest.raises(InputError, match="not read as implicit"):
        fit_nuisances(raw, X, FitConfig(method="naive"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "causalrm.cli.main", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def implicit_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("implicit")
    log, X = implicit_log()
    log.write_parquet(folder / "log.parquet")
    np.save(folder / "X.npy", X)
    return folder


def test_noise_aware_fit_without_rates_is_refused_in_one_line(implicit_files):
    f = implicit_files
    done = _cli("fit", str(f / "log.parquet"), "--map", "feedback=copied", "--embeddings", str(f / "X.npy"),
                "--method", "denoise", "--out", str(f / "run"), "--quiet")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: implicit") and "--event-rate" in lines[0]
    assert not (f / "run").exists()


def test_auto_without_rates_keeps_the_uncorrected_reading_and_says_so(implicit_files):
    f = implicit_files
    done = _cli("fit", str(f / "log.parquet"), "--map", "feedback=copied", "--embeddings", str(f / "X.npy"),
                "--out", str(f / "auto"), "--quiet", "--epochs", "3")
    assert done.returncode == 0, done.stderr
    assert "auto kept naive" in done.stdout and "P(event | x)" in done.stdout


def test_event_rates_given_set_the_flip_rates(implicit_files):
    f = implicit_files
    bad = _cli("fit", str(f / "log.parquet"), "--map", "feedback=copied", "--embeddings", str(f / "X.npy"),
               "--event-rate", "0.01", "--accidental-rate", "0.02", "--out", str(f / "bad"), "--quiet")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --event-rate")
    done = _cli("fit", str(f / "log.parquet"), "--map", "feedback=copied", "--embeddings", str(f / "X.npy"),
                "--event-rate", str(C), "--accidental-rate", str(EPS), "--method", "denoise",
                "--out", str(f / "fixed"), "--quiet", "--epochs", "3")
    assert done.returncode == 0, done.stderr
    assert f"rho01 {1 - C:.3f}" in done.stdout and f"rho10 {EPS:.3f}" in done.stdout


def test_gold_labels_identify_the_event_rates():
    from causalrm import CausalRM

    log, X = implicit_log(n=3000, n_gold=600, seed=1)
    est = CausalRM(method="denoise", max_epochs=2).fit(log.rename({"copied": "feedback"}), X=X)
    n = est.nuisances_
    assert n.diagnostics["flip_rates"]["method"] == "gold"
    assert abs(n.rho01 - (1 - C)) < 0.08 and abs(n.rho10 - EPS) < 0.05
    assert n.rho_ci["rho01"][0] <= 1 - C <= n.rho_ci["rho01"][1]


def test_an_event_column_without_thumbs_is_the_implicit_feedback(tmp_path):
    log, _ = implicit_log()
    log.write_csv(tmp_path / "copied.csv")
    log.rename({"copied": "copy_flag"}).write_parquet(tmp_path / "flag.parquet")
    for path, mapping in ((tmp_path / "copied.csv", None), (tmp_path / "flag.parquet", {"copy_flag": "copied"})):
        read = read_log(path, mapping=mapping)
        assert fk.kind_of(read) == fk.IMPLICIT
        assert int(read["feedback"].sum()) == log["copied"].is_not_null().sum()
        args = [str(path)] + (["--map", "copied=copy_flag"] if mapping else [])
        out = _cli("validate", *args, "--json")
        assert out.returncode == 0 and '"feedback_kind": "implicit"' in out.stdout
    with pytest.raises(InputError, match="--feedback-kind explicit"):
        read_log(tmp_path / "copied.csv", feedback_kind="explicit")
    both = log.with_columns(pl.col("copied").alias("clicked"))
    both.write_csv(tmp_path / "both.csv")
    done = _cli("validate", str(tmp_path / "both.csv"))
    assert done.returncode == 2 and "mix signals" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    mixed = log.with_columns(pl.when(pl.col("true_label") == 1).then(1).otherwise(0).alias("feedback"))
    summary = summarize_log(read_log(_write(mixed, tmp_path / "mixed.parquet")))
    assert summary.feedback_kind == fk.MIXED  # thumbs + copies: both read (causalrm.data.mixed_feedback)
    assert not any("'copied'" in w for w in summary.warnings)
    thumbs_only = summarize_log(read_log(tmp_path / "mixed.parquet", feedback_kind="explicit"))
    assert thumbs_only.feedback_kind == fk.EXPLICIT
    assert any("'copied' is an implicit signal beside the thumbs" in w for w in thumbs_only.warnings)


def _write(df: pl.DataFrame, path: Path) -> Path:
    df.write_parquet(path)
    return path


def test_auto_with_an_audit_keeps_the_corrected_model_on_corner_evidence():
    from causalrm import CausalRM

    log, X = implicit_log(n=3000, n_gold=300, seed=2)
    est = CausalRM(max_epochs=15).fit(log.rename({"copied": "feedback"}), X=X)
    choice = est.choice_
    assert choice["method"] != "naive", choice["reason"]
    assert "implicit feedback" in choice["evidence"] and "audited val rows" in choice["evidence"]
    assert all("gold" in c for c in choice["candidates"].values() if c.get("fitted"))
