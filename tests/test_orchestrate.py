"""causalrm.workflows.orchestrate: the one orchestration. Every entry point (``CausalRM``, ``causalrm fit``, the bench's
fitting function, the app's training worker) runs ``fit_methods``, so a feedback-only log (every row has feedback:
no propensity can be learned) gives the same choice and the same test predictions through each of them; the
registry's method decisions (baseline, fallbacks, the model set against naive)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from causalrm.config import FitConfig
from causalrm.devices import cpu_threads
from causalrm.estimators import methods as registry

TINY = dict(hidden=(16,), max_epochs=4, patience=None, batch_size=64, propensity_model="logistic",
            propensity_folds=2, flip_bootstrap=20, device="cpu", seed=0, num_threads=1)


def feedback_only_log(n: int = 240, d: int = 8, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Every row observed (a feedback-only log) with noisy feedback, prompt groups split train / val / test."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(np.int8)
    flip = rng.random(n) < np.where(y == 1, 0.2, 0.1)
    group = np.arange(n) // 2
    u = np.random.default_rng(seed + 1).random(group.max() + 1)[group]
    split = np.where(u < 0.2, "test", np.where(u < 0.36, "val", "train"))
    log = pl.DataFrame({
        "prompt": [f"prompt {g}" for g in group], "response": [f"response {i}" for i in range(n)],
        "response_id": [f"r{i}" for i in range(n)], "pair_id": [f"p{g}" for g in group],
        "observed": np.ones(n, dtype=np.int8), "feedback": np.where(flip, 1 - y, y).astype(np.int8),
        "split": split,
    })
    return log, X


@pytest.fixture(scope="module")
def data():
    return feedback_only_log()


def test_feedback_only_log_gives_the_same_fit_everywhere(data, tmp_path):
    from app.train_worker import train as worker_train
    from causalrm import CausalRM
    from causalrm.cli.main import main
    from causalrm.workflows.bench import BenchConfig, fit_cell
    from causalrm.workflows.orchestrate import fit_methods
    from causalrm.workflows.runs import load_run

    log, X = data
    test = (log["split"] == "test").to_numpy()
    config = FitConfig(**TINY)
    assert config.method == registry.DEFAULT_METHOD == "auto"
    with cpu_threads(1):
        est = CausalRM(**TINY).fit(log, X=X)
        named = fit_methods(log, X, config, [registry.BASELINE, "auto"])["auto"]  # used to raise here
        _, _, bench_fits, _ = fit_cell(BenchConfig(methods=("auto",), seeds=(0,), fit=TINY), log, X, 0)
        done = []
        worker_train(lambda kind, *rest: done.append(rest) if kind == "done" else None, lambda: False, log=log, X=X,
                     config=config, methods=["auto"], runs_root=str(tmp_path / "app"), source=None)
    log.write_parquet(tmp_path / "log.parquet")
    np.save(tmp_path / "X.npy", X)
    assert main(["fit", str(tmp_path / "log.parquet"), "--embeddings", str(tmp_path / "X.npy"),
                 "--out", str(tmp_path / "cli"), "--quiet", *config.to_cli()]) in (0, None)

    (_, app_done), = done
    cli_run, app_run = load_run(tmp_path / "cli"), load_run(app_done["run_dir"])
    reference = est.score_log(log, X)[test]
    chosen = {"CausalRM": est.method_, "fit_methods": named.config.method, "bench": bench_fits["auto"].config.method,
              "app worker": app_done["result"].config.method, "causalrm fit": cli_run.config.method}
    assert set(chosen.values()) == {est.choice_["method"]}, chosen
    for name, scores in {"fit_methods": named.score(log, X), "bench": bench_fits["auto"].score(log, X),
                         "app worker": app_run.score(log, X), "causalrm fit": cli_run.score(log, X)}.items():
        np.testing.assert_allclose(scores[test], reference, rtol=1e-5, atol=1e-6, err_msg=name)
    # the weighted candidates were left out for want of a propensity, and why is recorded on every path
    weighted = [m for m in registry.auto_candidates() if registry.get(m).weighted]
    for choice in (est.choice_, named.choice, bench_fits["auto"].choice, app_done["result"].choice):
        assert all(not choice["candidates"][m]["fitted"] and "propensity" in choice["candidates"][m]["reason"]
                   for m in weighted)
        assert any("feedback-only" in err for err in choice["nuisance_errors"].values())
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["method"] == est.method_


def test_select_head_and_auto_share_the_one_loop(data):
    """select_head's heads are fitted on the orchestration's nuisances and the lower validation estimate is kept;
    a plain fit of that head on the same nuisances gives the same model."""
    from causalrm.workflows.orchestrate import fit_methods
    from causalrm.workflows.pipeline import fit_one

    log, X = data
    config = FitConfig(**{**TINY, "method": "naive", "select_head": True})
    with cpu_threads(1):
        result = fit_methods(log, X, config, ["naive"])["naive"]
        heads = [fit_one(log, X, c, result.nuisances)
                 for c in (config.replace(select_head=False),
                           config.replace(select_head=False, hidden=(), lr=result.selection["candidates"][1]["lr"]))]
    estimates = [h.history.best_val_estimate for h in heads]
    assert result.selection["chosen"] == int(np.argmin(estimates))
    assert [c["best_val_estimate"] for c in result.selection["candidates"]] == estimates
    np.testing.assert_array_equal(result.score(log, X), heads[result.selection["chosen"]].score(log, X))


def test_registry_decisions():
    assert registry.auto_candidates()[0] == registry.BASELINE
    # the plain estimator per trait: what auto's reference estimate and its nuisance fallbacks use
    for weighted in (False, True):
        for noise in (False, True):
            spec = registry.get(registry.plain(weighted=weighted, noise_aware=noise))
            assert (spec.weighted, spec.noise_aware, spec.doubly_robust, spec.self_normalized) == (weighted, noise,
                                                                                                   False, False)
    assert registry.nuisance_fallbacks()[-1] == ()
    assert [registry.needs_of(list(f)) for f in registry.nuisance_fallbacks()] == [{"propensity"}, {"flip_rates"},
                                                                                    set()]
    assert registry.lacking(["causalrm-dr", "oracle"], {"propensity"}) == {"flip_rates", "pseudo_label"}
    # the model set against naive: auto when trained, else the most debiased (weighted, noise-aware, DR first)
    assert registry.against_baseline(["naive", "ips", "auto", "oracle"]) == "auto"
    assert registry.against_baseline(["naive", "denoise", "ips", "causalrm-ips"]) == "causalrm-ips"
    assert registry.against_baseline(["naive", "causalrm-ips", "causalrm-dr"]) == "causalrm-dr"
    assert registry.against_baseline(["naive", "oracle"]) is None
    choice = {"method": "naive", "candidates": {"naive": {"fitted": True, "central": 1.0},
                                                "ips": {"fitted": True, "central": 0.5},
                                                "denoise": {"fitted": True, "central": 0.4},
                                                "causalrm-ips": {"fitted": False}}}
    assert registry.against_baseline(list(choice["candidates"]), choice) == "denoise"
    assert registry.against_baseline([], {**choice, "method": "ips"}) == "ips"
