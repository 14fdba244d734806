"""bench: the experiment loop on tiny data, the gap-closed summary against a NumPy reference, the CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from causalrm.cli.main import main
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.workflows.bench import BenchConfig, gap_closed, run_bench, summarize

FAST = {"hidden": [16, 8], "max_epochs": 3, "patience": 2, "propensity_model": "logistic", "flip_bootstrap": 10,
        "device": "cpu"}


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


def tiny_rated(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    rating = np.clip(np.round(5.5 + 2 * X[:, 0] + X[:, 1] + rng.standard_normal(n)), 1, 10)
    rated = pl.DataFrame({
        "prompt": [f"q{i // 2}" for i in range(n)], "response": [f"a{i}" for i in range(n)],
        "response_id": [f"r{i}" for i in range(n)], "pair_id": [f"q{i // 2}" for i in range(n)], "rating": rating,
    })
    return rated, X


def test_run_bench_on_tiny_data():
    rated, X = tiny_rated()
    cfg = BenchConfig(dataset="tiny", seeds=(0, 1), methods=("naive", "causalrm-ips", "oracle"), fit=FAST,
                      observation_rate=0.4, n_boot=50)
    res = run_bench(cfg, data=(rated, X))
    assert [(r["method"], r["seed"]) for r in res.results] == [
        (m, s) for s in (0, 1) for m in ("naive", "causalrm-ips", "oracle")]
    for r in res.results:
        assert {"r2", "mae", "mse", "auroc", "pearson", "seconds"} <= set(r) and r["n_test"] > 0
    assert len(res.nuisances) == 2 and res.nuisances[0]["rho01_hat"] is not None
    s = res.summary
    assert s["naive"]["gap_closed"]["value"] == pytest.approx(0.0)
    assert s["oracle"]["gap_closed"]["value"] == pytest.approx(1.0)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["config"]["mode"] == "semi-synthetic" and len(d["results"]) == 6
    md = res.to_markdown(command="causalrm bench ...")
    assert "| causalrm-ips |" in md and "gap closed" in md and "causalrm bench ..." in md


def test_summary_gap_closed_matches_numpy():
    rng = np.random.default_rng(0)
    results = []
    r2 = {"naive": rng.random(4) * 0.1, "oracle": 0.5 + rng.random(4) * 0.1, "x": 0.2 + rng.random(4) * 0.1}
    for m, vals in r2.items():
        for s, v in enumerate(vals):
            results.append({"method": m, "seed": s, "r2": v, "mse": 0.2, "mae": 0.4, "auroc": 0.7, "pearson": 0.3,
                            "seconds": 1.0, "best_epoch": 5})
    out = summarize(results, n_boot=500)
    expect = (r2["x"].mean() - r2["naive"].mean()) / (r2["oracle"].mean() - r2["naive"].mean())
    assert out["x"]["gap_closed"]["value"] == pytest.approx(expect)
    lo, hi = out["x"]["gap_closed"]["ci"]
    assert lo <= expect <= hi
    assert out["x"]["r2"]["mean"] == pytest.approx(r2["x"].mean())
    assert out["x"]["r2"]["std"] == pytest.approx(r2["x"].std(ddof=1))
    assert np.isnan(gap_closed(np.array([0.3]), np.array([0.5]), np.array([0.4])))


def test_bench_config_validation():
    with pytest.raises(InputError):
        BenchConfig(methods=("naive", "nope")).validate()
    with pytest.raises(InputError):
        BenchConfig(seeds=()).validate()
    with pytest.raises(InputError):
        BenchConfig(fit={"colour": 1}).validate()


def test_true_propensity_ablation_hands_the_estimators_the_simulation_s_propensity():
    rated, X = tiny_rated()
    runs = {}
    for true_p in (False, True):
        cfg = BenchConfig(dataset="tiny", seeds=(0,), methods=("causalrm-ips",), fit=FAST, observation_rate=0.4,
                          n_boot=50, true_propensity=true_p)
        runs[true_p] = run_bench(cfg, data=(rated, X))
    assert "logistic" in runs[False].nuisances[0]["propensity_source"]
    assert runs[True].nuisances[0]["propensity_source"] == "logged"
    assert runs[True].to_dict()["config"]["true_propensity"] is True
    assert runs[True].results[0]["r2"] != runs[False].results[0]["r2"]
    with pytest.raises(InputError, match="true propensity"):
        BenchConfig(dataset="oasst1", true_propensity=True).validate()


def test_auto_rows_record_the_evidence_for_replay():
    """bench's auto row keeps each candidate's evidence (benchmarks/auto_candidates.py replays it) and honours
    --auto-candidates."""
    from causalrm.workflows.selection import pick

    rated, X = tiny_rated()
    cfg = BenchConfig(dataset="tiny", seeds=(0,), methods=("naive", "causalrm-ips", "auto"), n_boot=50,
                      fit={**FAST, "auto_candidates": ["causalrm-ips"]}, observation_rate=0.4)
    row = next(r for r in run_bench(cfg, data=(rated, X)).results if r["method"] == "auto")
    assert set(row["choice"]["candidates"]) == {"naive", "causalrm-ips"}
    assert pick(row["choice"]["candidates"], row["choice"]["central"]) == row["chosen"]


def test_cli_bench_on_bundled_helpsteer2(tmp_path, capsys):
    out, md = tmp_path / "b.json", tmp_path / "b.md"
    code = main(["bench", "--dataset", "helpsteer2", "--seeds", "0", "--methods", "naive,oracle", "--epochs", "2",
                 "--observation-rate", "0.5", "--device", "cpu", "--json", str(out), "--markdown", str(md),
                 "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert {r["method"] for r in data["results"]} == {"naive", "oracle"}
    assert "| oracle |" in md.read_text() and "| naive |" in capsys.readouterr().out


def test_oasst1_real_feedback_mode():
    res = run_bench(BenchConfig(dataset="oasst1", seeds=(0,), methods=("naive", "oracle"), fit=FAST))
    assert res.config.real_feedback
    for r in res.results:
        assert 100 < r["n_test"] < r["all_gold"]["n"]  # held-out prompt groups, evaluated apart
    assert "held-out" in res.to_markdown()


def test_cli_bench_head_options_become_fit_overrides(tmp_path):
    """--hidden '' --lr --select-head become fit overrides, and every method's FitConfig carries them."""
    from causalrm.workflows.bench import BenchConfig

    out = tmp_path / "b.json"
    code = main(["bench", "--dataset", "helpsteer2", "--seeds", "0", "--methods", "naive", "--epochs", "2",
                 "--observation-rate", "0.5", "--device", "cpu", "--hidden", "", "--lr", "0.005", "--select-head",
                 "--json", str(out), "--quiet"])
    assert code == 0
    fit = json.loads(out.read_text())["config"]["fit"]
    assert fit["hidden"] == "" and fit["lr"] == 0.005 and fit["select_head"] is True
    cfg = BenchConfig(dataset="helpsteer2", fit=fit).fit_config("causalrm-ips", 0)
    assert cfg.hidden == () and cfg.lr == 0.005 and cfg.select_head


def test_oracle_observed_and_ranking_metrics_in_every_table():
    """oracle-observed (clean labels of the observed train rows, weighted by the true propensity) runs in the bench,
    gap closed is reported against both ceilings, and AUROC and the within-prompt Kendall tau appear per row and in
    the table."""
    rated, X = tiny_rated()
    cfg = BenchConfig(dataset="tiny", seeds=(0, 1), methods=("naive", "causalrm-ips", "oracle", "oracle-observed"),
                      fit=FAST, observation_rate=0.4, n_boot=50)
    res = run_bench(cfg, data=(rated, X))
    for r in res.results:
        assert np.isfinite(r["auroc"]) and "prompt_kendall" in r and r["n_prompts"] > 0
    s = res.summary
    assert s["oracle-observed"]["gap_closed_observed"]["value"] == pytest.approx(1.0)
    assert s["naive"]["gap_closed_observed"]["value"] == pytest.approx(0.0)
    assert np.isfinite(s["causalrm-ips"]["prompt_kendall"]["mean"])
    md = res.to_markdown()
    assert "| oracle-observed |" in md and "prompt Kendall" in md and "vs oracle-observed" in md


def test_within_prompt_kendall_matches_scipy_per_group():
    from scipy.stats import kendalltau

    from causalrm.evaluation.ranking import within_prompt_kendall

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 4)
    y = rng.integers(0, 2, groups.size).astype(float)
    s = y + rng.standard_normal(groups.size)
    expect = [kendalltau(s[groups == g], y[groups == g]).statistic for g in range(20) if np.ptp(y[groups == g]) > 0]
    out = within_prompt_kendall(groups, y, s)
    assert out["n_prompts"] == len(expect) and out["prompt_kendall"] == pytest.approx(np.mean(expect))
