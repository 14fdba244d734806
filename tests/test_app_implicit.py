"""The workbench on implicit (positive-only) feedback (issue 22 item 6), handler by handler: an uploaded log of copies
is named implicit with its events and what it needs, the Noise tab never proposes anchors and takes event rates or
gold labels, the Train tab offers only the methods that apply (derived from the registry's traits here independently)
and trains them, and Compare and the Audit tab work unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import common  # noqa: E402
from app.tabs import audit as A  # noqa: E402
from app.tabs import compare as C  # noqa: E402
from app import upload as U  # noqa: E402
from app.tabs import data as D  # noqa: E402
from app.tabs import noise as N  # noqa: E402
from app.tabs import train as T  # noqa: E402
from causalrm.estimators import methods as registry  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_handlers"), pytest.mark.filterwarnings("ignore::UserWarning")]
NO_MAP = [U.AUTO] * len(U.MAPPABLE)
C_GOOD, EPS = 0.5, 0.05


def implicit_log(n: int = 900, seed: int = 0) -> pl.DataFrame:
    """Copies simulated on the bundled WildBench rows (real ratings), ``n`` rows drawn at random."""
    from causalrm.simulation.simulate import simulate_dataset

    log, _ = simulate_dataset("wildbench", rating="real", feedback_kind="implicit", event_rate_good=C_GOOD,
                              event_rate_bad=EPS, seed=seed)
    return log.sample(n=n, seed=seed)


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.getbasetemp() / "app-sessions"))


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("implicit") / "copies.parquet"
    implicit_log().write_parquet(path)
    return path


def _loaded(path: Path, kind: str = "auto"):
    from causalrm.embeddings.embedder import Embedder, embed_log

    view = D.load_upload(None, str(path), *NO_MAP, "", "", kind)
    view.state.X = embed_log(view.state.log, Embedder(progress=False))  # the shipped MiniLM cache: instant
    view.state.embed_model = common.DEFAULT_EMBEDDER
    return view


def _expected_methods(*, rates: bool) -> list[str]:
    """What applies on an implicit log with true labels, from the registry's traits: no weighting (every impression
    is observed, p = 1), noise-aware only with rates."""
    return ["auto"] + [s.name for s in registry.specs() if s.app and s.pointwise and not s.weighted
                       and (rates or not s.noise_aware) and s.name in registry.app_methods(clean_labels=True)]


def test_upload_is_named_implicit_with_its_events_and_what_it_needs(copies):
    raw = pl.read_parquet(copies)
    n_events = int((raw["feedback"] == 1).sum())
    view = _loaded(copies)
    assert "implicit (positive-only) feedback" in view.summary
    assert f"{n_events:,} events" in view.summary and f"event rate {n_events / raw.height:.1%}" in view.summary
    assert "Audit tab" in view.summary and "--event-rate" not in view.summary  # what it needs, in the app's words
    assert view.flip_method["choices"] == [common.EVENT_RATES]  # never anchors
    assert sorted(view.methods["choices"]) == sorted(_expected_methods(rates=False))
    assert "event rates" in view.methods["info"]
    inspected = U.inspect_upload(str(copies))[0]
    assert f"implicit feedback with {n_events:,} events" in inspected
    # the override: the same file read as thumbs is an explicit log with every method offered
    forced = D.load_upload(None, str(copies), *NO_MAP, "", "", "explicit")
    assert "explicit feedback" in forced.summary and "implicit" not in forced.summary.split("\n")[0]
    assert forced.methods["choices"] == [m for m in registry.app_methods(clean_labels=True)  # a pointwise log's
                                         if m == "auto" or registry.applies(m, pairs=False)]
    view.state.close()
    forced.state.close()


def test_noise_tab_without_rates_says_they_are_not_identifiable_and_auto_still_trains(copies):
    session = _loaded(copies).state
    out = N.estimate_noise(session, common.EVENT_RATES)
    assert "not identifiable from the events alone" in out.summary and "Audit tab" in out.summary
    assert out.estimates.height == 0 and session.rho is None
    assert N.train_methods(session, ["naive", "auto"])["choices"] == _expected_methods(rates=False)
    with pytest.raises(gr.Error, match="denoise not offered on this log"):
        list(T.train_models(session, ["denoise"], "mlp", "cpu", 2, 30, 0))
    with pytest.raises(gr.Error, match="accidental rate ε needs the event rate c"):
        N.estimate_noise(session, common.EVENT_RATES, 0.97, False, 0.2, 0.1, 0, None, 0.1)
    views = list(T.train_models(session, ["naive", "auto"], "mlp", "cpu", 2, 30, 0))
    assert "auto** kept **naive**" in views[-1].status and "P(event | x)" in views[-1].status
    session.close()


def test_event_rates_set_the_flip_rates_the_methods_and_train(copies):
    session = _loaded(copies).state
    with pytest.raises(gr.Error, match="the event rate c 0.02 / the accidental rate ε 0.05"):
        N.estimate_noise(session, common.EVENT_RATES, 0.97, False, 0.2, 0.1, 0, 0.02, EPS)
    out = N.estimate_noise(session, common.EVENT_RATES, 0.97, False, 0.2, 0.1, 0, C_GOOD, EPS)
    row = out.estimates.row(0, named=True)
    assert row["rho01"] == pytest.approx(1 - C_GOOD) and row["rho10"] == pytest.approx(EPS)
    assert "given by the user" in out.summary and "no selection to reweight" in out.summary
    methods = N.train_methods(session, ["naive", "auto"])
    assert methods["choices"] == _expected_methods(rates=True) and "nnpu" in methods["choices"]
    assert methods["value"] == ["naive", "auto"]
    views = list(T.train_models(session, ["naive", "nnpu"], "mlp", "cpu", 3, 30, 0))
    assert "Open the **Compare** tab" in views[-1].status, views[-1].status
    assert f"ρ01 = {1 - C_GOOD:.3f}, ρ10 = {EPS:.3f}" in views[-1].status
    cmp = C.compare_models(session, "naive", "nnpu")
    assert cmp.metrics["method"].to_list() == ["naive", "nnpu"] and "true_label" in cmp.metrics_note
    assert "causalrm fit copies.parquet" in cmp.cli and "--method nnpu" in cmp.cli
    session.close()


def test_audit_proposes_rows_with_and_without_events_and_its_labels_give_the_rates(copies):
    session = _loaded(copies).state
    view = A.propose(session, 300, 0)
    table = session.audit.table.join(session.log.select("response_id", "feedback", "true_label"), on="response_id")
    assert set(table["feedback"].to_list()) == {0, 1}  # rows with and without an event
    truth = dict(zip(table["response_id"], table["true_label"]))
    for _ in range(table.height):
        rid = session.audit.table["response_id"][session.audit.cursor]
        view = A.label(session, A.GOOD if truth[rid] == 1 else A.BAD)
    assert view.flip_method["choices"] == [common.EVENT_RATES, "gold labels"]
    out = N.estimate_noise(session, "gold labels")
    rho01, rho10 = out.estimates.row(0, named=True)["rho01"], out.estimates.row(0, named=True)["rho10"]
    labelled = session.log.filter(pl.col("gold_label").is_not_null() & (pl.col("split") != "test"))
    good = labelled.filter(pl.col("gold_label") == 1)
    assert rho01 == pytest.approx(1 - good["feedback"].mean(), abs=0.15)  # inclusion-weighted: near the plain share
    assert abs(rho01 - (1 - C_GOOD)) < 0.2 and abs(rho10 - EPS) < 0.1
    assert session.noise_settings["flip_method"] == "gold"
    assert "nnpu" in N.train_methods(session, None)["choices"]
    session.close()


def test_flip_choices_and_messages_in_the_apps_words():
    log = pl.DataFrame({"prompt": ["p"] * 40, "response": [f"r{i}" for i in range(40)],
                        "feedback": [1] * 35 + [None] * 5})
    from causalrm.data.feedback_kinds import IMPLICIT_NEEDS, as_impressions

    read = as_impressions(log)
    assert common.flip_choices(read) == [common.EVENT_RATES]
    assert "anchor" in common.flip_choices(log.with_columns(pl.lit(1).alias("observed")))[0]
    assert common.IMPLICIT_NEEDS_APP in common.ui_message(f"it needs them; {IMPLICIT_NEEDS}, or use --method naive")
    assert np.all(common.featureless(read).shape == (40, 0))
