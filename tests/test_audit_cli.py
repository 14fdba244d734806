"""`causalrm audit`, `fit --gold FILE` and `compare --gold FILE` end to end on a small simulated log."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from test_audit import log_with

from causalrm.cli.main import main
from causalrm.devices import cpu_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    log, X = log_with(n=900, seed=3)
    log.write_parquet(tmp / "log.parquet")
    np.save(tmp / "X.npy", X)
    return tmp, log


def _label(path, log, *, skip_every=0):
    """Fill a label file's gold_label from the simulation's true_label (every skip_every-th row left empty)."""
    labels = pl.read_csv(path)
    truth = dict(zip(log["response_id"], log["true_label"]))
    gold = [None if skip_every and k % skip_every == 0 else float(truth[i])
            for k, i in enumerate(labels["response_id"])]
    labels.with_columns(pl.Series("gold_label", gold, dtype=pl.Float64)).write_csv(path)


def _fit(tmp, method, out, *extra):
    return main(["fit", str(tmp / "log.parquet"), "--method", method, "--out", str(out), "--embeddings",
                 str(tmp / "X.npy"), "--epochs", "4", "--patience", "2", "--hidden", "8", "--propensity-model",
                 "logistic", "--device", "cpu", "--quiet", *extra])


def test_audit_writes_a_label_file_and_extends_it_keeping_the_labels(files, tmp_path, capsys):
    tmp, log = files
    out = tmp_path / "labels.csv"
    args = ["audit", str(tmp / "log.parquet"), "--embeddings", str(tmp / "X.npy"), "--out", str(out)]
    assert main([*args, "--n", "40"]) == 0
    assert "proposed 40 rows" in capsys.readouterr().out
    first = pl.read_csv(out)
    assert first.columns[:6] == ["response_id", "prompt", "response", "feedback", "gold_label",
                                 "inclusion_probability"]
    assert first["gold_label"].null_count() == 40 and first["inclusion_probability"].is_between(0, 1).all()
    _label(out, log)
    assert main([*args, "--n", "70"]) == 0
    assert "kept the 40 labels" in capsys.readouterr().out
    second = pl.read_csv(out)
    assert second["response_id"][:40].to_list() == first["response_id"].to_list()
    assert second["gold_label"][:40].null_count() == 0 and second["gold_label"][40:].null_count() == 30
    assert main([*args, "--n", "70", "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not in the new proposal" in err and err.count("\n") == 1
    assert pl.read_csv(out)["gold_label"].null_count() == 30  # untouched
    assert main([*args[:-1], str(tmp_path / "other.csv"), "--n", "3"]) == 2
    assert "at least one row per stratum" in capsys.readouterr().err


def test_fit_and_compare_read_the_audit(files, tmp_path, capsys):
    tmp, log = files
    labels = tmp_path / "labels.csv"
    assert main(["audit", str(tmp / "log.parquet"), "--embeddings", str(tmp / "X.npy"), "--out", str(labels),
                 "--n", "300"]) == 0
    _label(labels, log, skip_every=7)
    assert _fit(tmp, "naive", tmp_path / "naive", "--gold", str(labels)) == 0
    assert _fit(tmp, "denoise", tmp_path / "denoise", "--gold", str(labels), "--flip-method", "gold",
                "--force-noise-correction") == 0
    flip = json.loads((tmp_path / "denoise" / "nuisances.json").read_text())["flip_rates"]
    assert flip["method"] == "gold" and flip["weighted"] and flip["n_gold"] > 50
    assert json.loads((tmp_path / "denoise" / "config.json").read_text())["gold"] == str(labels)
    scored = pl.read_parquet(tmp_path / "denoise" / "scored.parquet")
    assert scored["inclusion_probability"].is_not_null().sum() == scored["gold_label"].is_not_null().sum()

    capsys.readouterr()
    report = tmp_path / "cmp.json"
    assert main(["compare", str(tmp_path / "naive"), str(tmp_path / "denoise"), "--gold", str(labels), "--json",
                 str(report)]) == 0
    text = capsys.readouterr().out
    assert "audited evaluation on" in text
    audit = json.loads(report.read_text())["audit"]
    assert set(audit) == {"naive", "denoise"}
    for record in audit.values():
        assert record["n"] > 0 and record["r2_ci"][0] <= record["r2"] <= record["r2_ci"][1]
        assert {"mse", "mse_ci", "auroc", "auroc_ci", "pair_agreement", "n_pairs"} <= set(record)
    data = json.loads(report.read_text())
    assert data["audit_verdict"]["n"] == audit["naive"]["n"] and data["verdict"]["labels"].startswith("clean test")


def test_bad_label_files_are_refused_before_anything_is_written(files, tmp_path, capsys):
    tmp, log = files
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"response_id": [log["response_id"][0], "nope"], "gold_label": [1, 0]}).write_csv(bad)
    assert _fit(tmp, "naive", tmp_path / "run", "--gold", str(bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: row 2 (line 3), column 'response_id': id 'nope' is not in ")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()
    empty = tmp_path / "empty.csv"
    pl.DataFrame({"response_id": [log["response_id"][0]], "gold_label": [None]}).write_csv(empty)
    assert _fit(tmp, "naive", tmp_path / "run", "--gold", str(empty)) == 2
    assert "has no labels yet" in capsys.readouterr().err
