"""The workbench's handlers (app/tabs/, app/restore.py), called as plain Python functions, one tab after another.

One module-scoped session walks the bundled simulated sample through every tab (logistic propensity and few epochs
keep it cheap); the other tests check errors, uploads, cancellation, session folders and the `causalrm app` CLI.
Numbers shown by the app are checked against the core functions / SciPy computed independently.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import common  # noqa: E402
from app import restore as R  # noqa: E402
from app import session as S  # noqa: E402
from app import upload as U  # noqa: E402
from app.tabs import compare as C  # noqa: E402
from app.tabs import data as D  # noqa: E402
from app.tabs import noise as N  # noqa: E402
from app.tabs import propensity as P  # noqa: E402
from app.tabs import train as T  # noqa: E402
from causalrm.errors import InputError  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_handlers"), pytest.mark.filterwarnings("ignore::UserWarning")]
NO_MAP = [D.AUTO] * len(D.MAPPABLE)


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.getbasetemp() / "app-sessions"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A session taken through Data -> Propensity -> Noise -> Train (naive + causalrm-dr, 2 epochs).

    Session-scoped so that it is built once per worker even when xdist interleaves other modules' tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.mktemp("app-sessions")))
    view = D.load_sample(None, D.SAMPLE_SIMULATED, D.DEFAULT_RATING_MODE, 0.5, 0.2, 0.1, 0.2, 0)
    session = view.state
    prop = P.fit_propensity(session, "logistic", 0.1, 0)
    noise = N.estimate_noise(session, "anchor quantile (default)", 0.97, False, 0.2, 0.1, 0)
    views = list(T.train_models(session, ["naive", "causalrm-dr"], "mlp", "cpu", 2, 30, 0, False, True))
    yield {"session": session, "data": view, "prop": prop, "noise": noise, "train": views}
    session.close()
    mp.undo()


# ---------------------------------------------------------------------------------------------------------- Data
def test_load_sample_shows_summary_preview_and_embeddings(trained):
    view, session = trained["data"], trained["session"]
    log = session.log
    assert view.state is session
    assert f"{log.height:,} impressions" in view.summary
    n_obs = int(log["observed"].sum())
    assert f"{n_obs:,} with feedback" in view.summary
    assert "α = 0.5" in view.summary and "seed 0" in view.summary
    assert isinstance(view.preview, pl.DataFrame) and 0 < view.preview.height <= D.PREVIEW_ROWS
    assert view.preview["response"].str.len_chars().max() <= D.PREVIEW_CHARS
    assert session.X.shape == (log.height, 384) and session.X.dtype == np.float32
    assert "ready" in view.embed_status
    assert "oracle" in view.methods["choices"]  # simulated log: clean labels exist
    assert view.flip_method["choices"] == ["anchor quantile (default)", "anchor min/max"]  # no gold labels


def test_load_oasst1_offers_gold_and_no_oracle():
    """Real feedback with an audited subset: the noise tab shows the gold-label estimate beside the anchor one, and
    the gold row equals P(r = 0 | gold = 1), P(r = 1 | gold = 0) counted by hand on the observed train/val rows."""
    view = D.load_sample(None, D.SAMPLE_OASST1)
    try:
        assert "oracle" not in view.methods["choices"]
        assert "gold labels" in view.flip_method["choices"]
        assert "gold labels on" in view.summary
        noise = N.estimate_noise(view.state, "anchor quantile (default)", 0.97, False, 0.2, 0.1, 0)
        names = noise.estimates["estimate"].to_list()
        assert names[0].startswith("anchor") and any(n.startswith("gold labels (n = ") for n in names)
        gold_row = noise.estimates.filter(pl.col("estimate").str.starts_with("gold"))
        log = view.state.log
        split = log["split"].to_numpy() if "split" in log.columns else np.full(log.height, None)
        use = (split != "test") & (log["observed"] == 1).to_numpy() & log["gold_label"].is_not_null().to_numpy()
        g = log["gold_label"].to_numpy()[use]
        r = log["feedback"].to_numpy()[use]
        keep = g != 0.5
        g, r = (g[keep] > 0.5).astype(int), r[keep]
        assert gold_row["rho01"][0] == pytest.approx(np.mean(r[g == 1] == 0), abs=1e-4)
        assert gold_row["rho10"][0] == pytest.approx(np.mean(r[g == 0] == 1), abs=1e-4)
    finally:
        view.state.close()


def test_rates_shown_match_their_counts_and_stale_notes_follow_what_ran():
    """The overall observed share and the train/val share (the one the observation-rate slider sets) each equal the
    count beside them; "run this step again" appears only on tabs that had run on the previous log."""
    view = D.load_sample(None, D.SAMPLE_SIMULATED, D.DEFAULT_RATING_MODE, 0.5, 0.2, 0.1, 0.2, 5)
    session = view.state
    try:
        log = session.log
        total = int(log["observed"].sum())
        assert f"{total:,} with feedback ({total / log.height:.1%})" in view.summary
        fit = log.filter(pl.col("split") != "test")
        n_obs = int(fit["observed"].sum())
        assert f"{n_obs:,} of {fit.height:,} have feedback ({n_obs / fit.height:.1%})" in view.summary
        assert abs(n_obs / fit.height - 0.2) < 0.05 < total / log.height - 0.2  # the slider sets the train/val rate
        assert view.stale == "" and D.stale_notes(session) == ("", "")  # nothing ran yet: nothing to run again
        P.fit_propensity(session, "logistic", 0.1, 0)
        again = D.load_sample(session, D.SAMPLE_SIMULATED, D.DEFAULT_RATING_MODE, 0.5, 0.2, 0.1, 0.2, 6)
        assert again.stale == D.STALE and D.stale_notes(session) == ("", "")  # only the propensity had run
    finally:
        session.close()


def test_upload_with_mapping_threshold_and_gzip(tmp_path):
    rows = ["question,answer,stars"] + [f"q{i},answer number {i},{(i % 5) + 1 if i % 3 else ''}" for i in range(60)]
    path = tmp_path / "my log.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    cols = D.inspect_upload(str(path))
    assert "question" in cols[0] and len(cols) == 1 + len(D.MAPPABLE)
    assert cols[1]["choices"] == [D.AUTO, "question", "answer", "stars"]
    picks = dict.fromkeys(D.MAPPABLE, D.AUTO) | {"prompt": "question", "response": "answer", "feedback": "stars"}
    view = D.load_upload(None, str(path), *[picks[c] for c in D.MAPPABLE], "", "4")
    try:
        log = view.state.log
        assert log.height == 60
        stars = np.array([(i % 5) + 1 if i % 3 else np.nan for i in range(60)])
        expected = np.where(np.isnan(stars), np.nan, (stars >= 4).astype(float))
        got = log["feedback"].cast(pl.Float64).to_numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])
        assert view.state.X is None and "not computed" in view.embed_status
        assert "tiny" in view.warnings.lower() or "observed" in view.warnings.lower()
        cli = C.cli_command(view.state)
        assert "causalrm validate" in cli and "--map" in cli and "prompt=question" in cli and "--threshold 4" in cli
    finally:
        view.state.close()


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("bad.csv", "question,answer\nhi,there\n", "Column mapping"),
        ("notes.txt", "prompt,response\na,b\n", "unsupported file type"),
    ],
)
def test_bad_uploads_give_readable_errors(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(gr.Error) as info:
        D.load_upload(None, str(path), *NO_MAP, "", "")
    message = info.value.message
    assert needle in message and name in message
    assert str(tmp_path) not in message and "Traceback" not in message


def test_threshold_field():
    assert U.parse_threshold("") is None and U.parse_threshold(None) is None and U.parse_threshold(" 4 ") == 4.0
    with pytest.raises(InputError, match="enter a number"):
        U.parse_threshold("four")


def test_upload_size_cap_and_missing_file(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("prompt,response,feedback\n" + "p,r,1\n" * 50_000)
    monkeypatch.setattr(common.SETTINGS, "max_upload_mb", 0.1)
    with pytest.raises(gr.Error, match="upload limit of 0.1 MB"):
        D.load_upload(None, str(path), *NO_MAP, "", None)
    with pytest.raises(gr.Error, match="no file uploaded"):
        D.load_upload(None, None, *NO_MAP, "", None)


def test_every_tab_refuses_to_run_without_data():
    for call in (lambda: P.fit_propensity(None, "mlp", 0.1, 0), lambda: N.estimate_noise(None),
                 lambda: list(T.train_models(None, ["naive"])), lambda: C.compare_models(None),
                 lambda: D.compute_embeddings(None)):
        with pytest.raises(gr.Error, match="no log loaded yet"):
            call()


def test_unexpected_exception_becomes_short_logged_message(trained, monkeypatch, caplog):
    import causalrm.nuisances.fit

    def boom(*args, **kwargs):
        raise RuntimeError("internal detail /secret/path")

    monkeypatch.setattr(causalrm.nuisances.fit, "fit_nuisances", boom)
    with caplog.at_level(logging.ERROR, logger="causalrm.app"), pytest.raises(gr.Error) as info:
        P.fit_propensity(trained["session"], "logistic", 0.1, 0)
    message = info.value.message
    assert "RuntimeError" in message and "reference" in message and "secret" not in message
    assert any("internal detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)


# ---------------------------------------------------------------------------------------------------- Propensity
def test_propensity_plots_diagnostics_and_clip(trained):
    from sklearn.metrics import roc_auc_score

    from causalrm.nuisances.propensity import clip_report

    session, view = trained["session"], trained["prop"]
    nuis = session.propensity
    p = np.asarray(nuis.propensity)
    o = session.log["observed"].cast(pl.Float64).to_numpy()[nuis.rows]
    assert isinstance(view.histogram, go.Figure) and len(view.histogram.data) == 2
    assert isinstance(view.calibration, go.Figure) and len(view.calibration.data) == 2
    assert f"{roc_auc_score(o, p):.3f}" in view.diagnostics  # AUC shown = AUC of the cross-fitted p-hat
    assert clip_report(p, 0.1, observed=o)["message"] in view.clip_text
    state, text, fig = P.clip_preview(session, 0.3)
    assert clip_report(p, 0.3, observed=o)["message"] in text
    assert fig.layout.shapes[0].x0 == pytest.approx(0.3)
    P.clip_preview(session, 0.1)  # restore for the other tests
    assert session.propensity_settings["clip"] == 0.1


# --------------------------------------------------------------------------------------------------------- Noise
def test_the_noise_tab_reuses_the_propensity_tabs_fit(trained):
    """Same rows, split and settings (logistic, clip 0.1, seed 0): the Noise tab's anchor proxy is weighted with the
    Propensity tab's p-hat itself, not with a second cross-fit of it."""
    session = trained["session"]
    assert session.flip.propensity_clipped is session.propensity.propensity_clipped
    assert session.flip.diagnostics["propensity"]["settings"]["model"] == "logistic"


def test_noise_estimates_plots_and_manual_override(trained):
    session, view = trained["session"], trained["noise"]
    labels = view.estimates["estimate"].to_list()
    assert labels[0].startswith("anchor") and "true (simulation setting)" in labels
    assert session.rho == pytest.approx((session.flip.rho01, session.flip.rho10))
    z = np.asarray(view.heatmap.data[0].z)
    np.testing.assert_allclose(z, [[1 - session.rho[1], session.rho[1]], [session.rho[0], 1 - session.rho[0]]])
    assert len(view.sweep.data) == 2 and len(view.proxy.data) == 1
    try:
        manual = N.estimate_noise(session, "anchor quantile (default)", 0.97, True, 0.15, 0.05, 0)
        assert session.rho == (0.15, 0.05) and session.rho_origin == "manual override"
        assert "ρ01 = 0.150, ρ10 = 0.050" in manual.summary
        n_obs = session.flip.diagnostics["n_observed"]  # the information limit, n (1 - rho01 - rho10)^2
        assert f"your {n_obs:,} labels" in manual.summary and f"{round(n_obs * 0.8 ** 2):,} clean ones" in manual.summary
        assert common.fit_config(session).rho01 == 0.15  # training would use the override
        with pytest.raises(gr.Error):
            N.estimate_noise(session, "anchor quantile (default)", 0.97, True, 0.6, 0.5, 0)
    finally:
        session.noise_settings["manual"] = None
        session.rho = (session.flip.rho01, session.flip.rho10)


# --------------------------------------------------------------------------------------------------------- Train
def test_training_streams_curves_and_saves_runs(trained):
    session, views = trained["session"], trained["train"]
    final = views[-1]
    assert "Open the **Compare** tab" in final.status and len(views) >= 3
    unlearned = [m for m, r in session.results.items() if not r.learned.passed]  # 2 epochs: the gate decides
    assert final.status.startswith("⚠️") == bool(unlearned) and all(f"**{m} did not learn" in final.status
                                                                     for m in unlearned)
    assert final.results["method"].to_list() == ["naive", "causalrm-dr"]
    assert final.results["epochs"].to_list() == [2, 2]
    names = {trace.name for trace in final.curves.data}
    assert {"naive train", "naive val", "causalrm-dr train", "causalrm-dr val"} <= names
    assert final.compare_a["value"] == "naive" and final.compare_b["value"] == "causalrm-dr"
    for method in ("naive", "causalrm-dr"):
        run = session.run_dirs[method]
        assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
        assert run.is_relative_to(session.workdir)
    # the nuisances used in training are those shown on the Noise tab (same settings, same seed)
    res = session.results["causalrm-dr"]
    assert (res.nuisances.rho01, res.nuisances.rho10) == pytest.approx((session.flip.rho01, session.flip.rho10))


def test_training_input_errors(trained):
    session = trained["session"]
    for kwargs, needle in (({"methods": []}, "at least one method"), ({"methods": ["magic"]}, "unknown method"),
                           ({"epochs": 0}, "epochs must be between"), ({"backbone": "nope"}, "not available")):
        args = {"methods": ["naive"], "backbone": "mlp", "device": "cpu", "epochs": 2, "patience": 5, "seed": 0}
        args.update(kwargs)
        with pytest.raises(gr.Error, match=needle):
            list(T.train_models(session, **args))


def test_cancel_stops_training():
    view = D.load_sample(None, D.SAMPLE_SIMULATED, D.DEFAULT_RATING_MODE, 0.5, 0.2, 0.1, 0.2, 1)
    session = view.state
    try:
        gen = T.train_models(session, ["naive"], "mlp", "cpu", 500, 500, 0)
        first = next(gen)
        assert "nuisances" in first.status.lower()
        assert "Cancelling" in T.cancel_training(session)
        views = list(gen)
        assert views[-1].status.startswith("Cancelled")
        assert all(r.history.epochs < 500 for r in session.results.values())
        assert session.training.job.state == "cancelled" and "Nothing is training" in T.cancel_training(session)
    finally:
        session.close()


def test_a_job_killed_for_memory_ends_with_a_message_and_the_session_carries_on(trained, monkeypatch):
    from app import training

    session = trained["session"]
    results = dict(session.results)
    monkeypatch.setattr(training.SETTINGS, "memory_gb", 0.05)  # below any worker: the monitor kills it
    monkeypatch.setattr(training, "_POOL", None)
    gen = T.train_models(session, ["naive"], "mlp", "cpu", 2, 30, 0)
    views = []
    with pytest.raises(gr.Error) as info:
        for view in gen:
            views.append(view)
    assert info.value.message.startswith("out of memory: the job needed more than this server's 0.05 GB per job")
    assert views[-1].status.startswith("Stopped: out of memory") and session.training.job.state == "failed"
    monkeypatch.setattr(training.SETTINGS, "memory_gb", 4.0)
    monkeypatch.setattr(training, "_POOL", None)
    again = list(T.train_models(session, list(results), "mlp", "cpu", 2, 30, 0, False, True))
    assert "Open the **Compare** tab" in again[-1].status and list(session.results) == list(results)


def test_a_lora_job_that_cannot_fit_is_refused_with_what_would(trained, monkeypatch):
    from app import training

    session = trained["session"]
    before = session.training
    monkeypatch.setattr(training.SETTINGS, "memory_gb", 0.85)
    with pytest.raises(gr.Error) as info:
        list(T.train_models(session, ["naive"], "lora", "cpu", 1, 1, 0, False, False, 512))
    message = info.value.message
    assert "limit per training job (--job-memory-gb) is 0.85 GB" in message and "would fit" in message
    assert "\n" not in message and session.training is before  # refused before anything started


def test_a_reload_restores_the_session_and_follows_its_running_job():

    fresh = list(R.restore_session("", None, SimpleNamespace(session_hash="page-0")))
    assert len(fresh) == 1 and fresh[0].state.log is None and fresh[0].token == fresh[0].state.token
    session = fresh[0].state
    try:
        D.load_sample(session, D.SAMPLE_SIMULATED, D.DEFAULT_RATING_MODE, 0.5, 0.2, 0.1, 0.2, 2)
        P.fit_propensity(session, "logistic", 0.1, 0)
        next(T.train_models(session, ["naive"], "mlp", "cpu", 2, 7, 3))  # started; the page then reloads
        S.detach_page("page-0")
        views = list(R.restore_session(session.token, None, SimpleNamespace(session_hash="page-1")))
        first, last = views[0], views[-1]
        assert first.state is session and session.pages == {"page-1"}
        assert "2,398 impressions" in first.summary and "seed 2" in first.summary
        assert first.propensity_status == R.RESTORED and first.noise_status == ""  # the noise tab never ran
        assert first.methods["value"] == ["naive"]
        form = {k: getattr(first, k)["value"] for k in ("backbone", "device", "epochs", "patience", "seed",
                                                         "select_head", "force_noise")}
        assert form == {"backbone": "mlp", "device": "cpu", "epochs": 2, "patience": 7, "seed": 3,
                        "select_head": False, "force_noise": False}  # the form it trained with, not the defaults
        assert first.lora_length["visible"] is False and first.select_head["visible"] is True
        assert all(getattr(v, k) == {"__type__": "update"} for v in views[1:] for k in form)  # set once
        assert "Open the **Compare** tab" in last.train_status and last.results["method"].to_list() == ["naive"]
        assert last.summary["__type__"] == "update"  # the data tab is drawn once, not on every job update
        again = list(R.restore_session(session.token, None, SimpleNamespace(session_hash="page-2")))
        assert len(again) == 1 and again[0].train_status.startswith("Restored after a reload: trained naive")
    finally:
        session.close()


# ------------------------------------------------------------------------------------------------------- Compare
def test_compare_metrics_rankings_downloads_and_cli(trained):
    from scipy.stats import kendalltau

    from causalrm.evaluation.metrics import evaluate_scores

    session = trained["session"]
    view = C.compare_models(session, "naive", "causalrm-dr")
    assert view.metrics["method"].to_list() == ["naive", "causalrm-dr"]
    za = session.results["naive"].score(session.log, session.X)
    zb = session.results["causalrm-dr"].score(session.log, session.X)
    ref = evaluate_scores(session.log, za)
    assert view.metrics["mse"][0].startswith(f"{ref['metrics']['mse']:.4f}")
    from causalrm.evaluation.downstream import log_downstream
    from causalrm.evaluation.metrics import evaluation_rows

    mask = np.zeros(session.log.height, dtype=bool)
    mask[evaluation_rows(session.log)[0]] = True
    down = log_downstream(session.log, zb, mask, evaluation_rows(session.log)[1], za)
    assert view.metrics["best-of-N gain"][1] == C._metric_cell(down["best_of_n"], None)  # the bench's kernel
    assert view.metrics["best-of-N win vs naive"].to_list() == ["0.5000", C._metric_cell(down["best_of_n_win_rate"],
                                                                                         None)]
    assert f"Kendall τ = **{kendalltau(za, zb).statistic:+.3f}**" in view.rank_summary
    assert view.movers.height > 0 and {"shift", "prompt", "response"} <= set(view.movers.columns)
    assert isinstance(view.scatter, go.Figure) and len(view.scatter.data) >= 2
    # per-prompt ranking: ranks are the order of each method's rewards within the prompt
    table = view.ranking
    assert table.height >= 2
    for m in ("naive", "causalrm-dr"):
        order = np.argsort(-table[f"reward {m}"].to_numpy(), kind="stable")
        assert table[f"rank {m}"].to_numpy()[order].tolist() == list(range(1, table.height + 1))
    again = C.prompt_ranking(session, "naive", "causalrm-dr", view.prompt_choices["value"])
    assert again.equals(table)
    # downloads
    scored = pl.read_csv(view.download_csv)
    assert scored.height == session.log.height
    np.testing.assert_allclose(scored["reward_causalrm_dr"].to_numpy(), zb, rtol=1e-5, atol=1e-6)
    assert pl.read_parquet(view.download_parquet).height == session.log.height
    with zipfile.ZipFile(view.download_zip) as zf:
        assert {"runs/naive/config.json", "runs/causalrm-dr/model.safetensors"} <= set(zf.namelist())
    assert "causalrm simulate --dataset ultrafeedback --alpha 0.5" in view.cli
    assert "causalrm fit sim.parquet --method causalrm-dr" in view.cli and "--epochs 2" in view.cli
    with pytest.raises(gr.Error, match="not been trained"):
        C.compare_models(session, "naive", "ips")


def test_compare_without_labels_shows_the_scores_not_an_empty_metrics_table(trained):
    """A log with neither clean nor gold labels: no metrics table (not one of method names without columns), no
    verdict; the two models' predicted preferences, their scatter and the ranking comparison."""
    import dataclasses

    from causalrm.evaluation.metrics import sigmoid

    session = trained["session"]
    unlabelled = dataclasses.replace(session, log=session.log.drop("true_label"), run_dirs={})
    view = C.compare_models(unlabelled, "naive", "causalrm-dr")
    assert view.metrics_shown["visible"] is False and view.metrics.width == 0
    assert "no clean or gold labels" in view.metrics_note and "Verdict" not in view.metrics_note
    fig = view.metric_plot["value"]
    assert view.metric_plot["label"] == "predicted preferences" and [t.name for t in fig.data] == ["naive",
                                                                                                   "causalrm-dr"]
    for trace in fig.data:
        z = session.results[trace.name].score(session.log, session.X)
        np.testing.assert_allclose(np.asarray(trace.x, dtype=float), sigmoid(z), rtol=1e-5, atol=1e-6)
    assert "Kendall τ" in view.rank_summary and isinstance(view.scatter, go.Figure)
    labelled = C.compare_models(session, "naive", "causalrm-dr")
    assert labelled.metrics_shown["visible"] is True and labelled.metric_plot["label"] == "R² by method"


# ------------------------------------------------------------------------------------------------ sessions, CLI
def test_session_folders_are_private_and_cleaned(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path))
    a, b = S.new_session("hash-a"), S.new_session("hash-b")
    assert a.workdir != b.workdir and a.workdir.parent == b.workdir.parent == tmp_path
    (a.folder("runs") / "x.txt").write_text("a's data")
    S.detach_page("hash-a")  # what Blocks.unload does when a tab closes or reloads: a's session stays restorable
    assert S.reattach(a.token, "hash-a2") is a and a.pages == {"hash-a2"} and a.workdir.exists()
    assert S.reattach("not-a-token", "hash-x") is None and S.reattach(b.token[:-1], "hash-x") is None
    S.delete_state(a)  # gradio drops the first page's state: a is shown by the reloaded page, so it stays
    assert a.workdir.exists()
    monkeypatch.setattr(S, "RESTORE_S", -1.0)
    S.detach_page("hash-a2")  # closed for good (no page came back within RESTORE_S)
    assert not a.workdir.exists() and b.workdir.exists() and S.reattach(a.token, "hash-a3") is None
    S.delete_state(b)  # what gr.State's delete_callback does to a page's session
    assert b.workdir.exists()  # ... unless the page is still open
    b.pages.clear()
    S.delete_state(b)
    assert not b.workdir.exists()
    c = S.new_session("hash-c")
    assert S.purge_stale(max_age_s=-1) >= 1 and not c.workdir.exists()


def test_a_pages_first_events_share_one_session(tmp_path, monkeypatch):
    """The page-load restore and a click made before it answered both come without a gr.State: they must get one
    session, so that the token the page stores is the one holding the data (else a reload shows nothing)."""
    monkeypatch.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path))
    clicked = S.ensure_session(None, SimpleNamespace(session_hash="page-race"))  # the click won the race
    restored = list(R.restore_session("", None, SimpleNamespace(session_hash="page-race")))[-1]
    assert restored.state is clicked and restored.token == clicked.token
    assert S.ensure_session(None, SimpleNamespace(session_hash="page-other")) is not clicked


def test_cli_app_help_and_lazy_imports():
    code = ("import sys; from causalrm.cli.main import build_parser; build_parser(); "
            "assert 'gradio' not in sys.modules and 'app' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    out = subprocess.run([sys.executable, "-m", "causalrm.cli.main", "app", "--help"], capture_output=True,
                         text=True, check=True)
    for flag in ("--host", "--port", "--share", "--max-upload-mb"):
        assert flag in out.stdout
    bad = subprocess.run([sys.executable, "-m", "causalrm.cli.main", "app", "--max-upload-mb", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --max-upload-mb")


def test_the_train_status_says_when_the_time_limit_stops_a_job():
    pool = SimpleNamespace(time_limit_s=600.0, max_running=2, running=1)
    job = SimpleNamespace(state="running", started=0.0, timed_out=False, pool=pool)
    run = SimpleNamespace(job=job, methods=["naive"], current="naive", last_epoch=None, last_step=None,
                          stage_text="training")
    assert "of at most 10 minutes" in T._train_status(run)
    job.timed_out = True
    status = T._train_status(run)
    assert "limit of 10 minutes per job" in status and "of at most" not in status
