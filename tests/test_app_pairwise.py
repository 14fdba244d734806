"""The workbench on an A/B preference log (app/pairwise.py and the tabs' A/B branches), handler by handler.

A small synthetic A/B log (a known linear score on 8-dim synthetic embeddings, votes biased toward the first-shown
response) goes through the upload, the Noise tab's position bias, a two-method training run, the Compare tab's
pairwise accuracy and the Audit tab's side-by-side pairs; every number shown is recomputed here from the log or from
the trained pointwise models scoring each side on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import pairwise as PW  # noqa: E402
from app import upload as U  # noqa: E402
from app.common import fmt  # noqa: E402
from app.tabs import audit as A  # noqa: E402
from app.tabs import compare as C  # noqa: E402
from app.tabs import data as D  # noqa: E402
from app.tabs import noise as N  # noqa: E402
from app.tabs import train as T  # noqa: E402
from causalrm.data.pairwise import pair_features, sides  # noqa: E402
from causalrm.estimators import methods as registry  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_handlers"), pytest.mark.filterwarnings("ignore::UserWarning")]
NO_MAP = [U.AUTO] * len(U.MAPPABLE)
N_PAIRS, DIM = 360, 8


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.getbasetemp() / "app-sessions"))


@pytest.fixture(scope="module")
def ab_log(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An A/B CSV (a shown first, 80 prompts, test pairs clean and voted) and the embeddings of its two sides."""
    rng = np.random.default_rng(0)
    Xa, Xb = rng.normal(size=(2, N_PAIRS, DIM)).astype(np.float32)
    w = rng.normal(size=DIM)
    better_a = (Xa @ w > Xb @ w).astype(int)
    split = np.where(np.arange(N_PAIRS) >= 280, "test", "")
    flip = np.where(better_a == 1, rng.random(N_PAIRS) < 0.05, rng.random(N_PAIRS) < 0.35)  # lean toward a
    vote = np.where(flip, 1 - better_a, better_a)
    voted = (rng.random(N_PAIRS) < 0.6) | (split == "test")
    vote = np.where(split == "test", better_a, vote)
    table = pl.DataFrame({
        "prompt": [f"prompt {i // 4}" for i in range(N_PAIRS)],
        "response_a": [f"answer a{i}" for i in range(N_PAIRS)],
        "response_b": [f"answer b{i}" for i in range(N_PAIRS)],
        "feedback": [("a" if v else "b") if o else "" for v, o in zip(vote, voted)],
        "shown_first": ["a"] * N_PAIRS,
        "true_label": ["a" if t else "b" for t in better_a],
        "split": [s or None for s in split],
    })
    path = tmp_path_factory.mktemp("ab") / "ab.csv"
    table.write_csv(path)
    return path, Xa, Xb


def _loaded(ab_log):
    path, Xa, Xb = ab_log
    view = D.load_upload(None, str(path), *NO_MAP, "", "", "auto")
    view.state.X, view.state.embed_model = pair_features(Xa, Xb), "synthetic"
    return view


@pytest.fixture(scope="module")
def trained(ab_log, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.mktemp("app-sessions")))
    session = _loaded(ab_log).state
    views = list(T.train_models(session, ["naive", "ips"], "mlp", "cpu", 3, 30, 0, True, True))
    yield session, views[-1]
    session.close()
    mp.undo()


def test_an_ab_upload_is_named_pairwise_with_both_responses_and_pairwise_methods(ab_log):
    path = ab_log[0]
    note = U.inspect_upload(str(path))[0]
    raw = pl.read_csv(path)
    n_votes = int((raw["feedback"].fill_null("") != "").sum())
    assert f"an A/B log of {N_PAIRS:,} pairs, {n_votes:,} with a vote" in note
    view = _loaded(ab_log)
    try:
        assert f"{N_PAIRS:,} pairs, {n_votes:,} with a vote" in view.summary
        assert "pairwise (A/B) log" in view.summary
        assert {"response_a", "response_b"} <= set(view.preview.columns) and "response" not in view.preview.columns
        offered = set(view.methods["choices"]) - {"auto"}
        assert offered and all(registry.get(m).pairwise for m in offered)  # no learned imputation: no pairwise form
    finally:
        view.state.close()


def test_the_noise_tab_shows_the_position_bias_counted_on_the_labelled_votes(ab_log):
    view = _loaded(ab_log)
    session = view.state
    try:
        out = N.estimate_noise(session, "anchor quantile (default)", 0.97, False, 0.2, 0.1, 0)
        log = session.log
        voted = log.filter(pl.col("observed") == 1)
        r, t = voted["feedback"].to_numpy(), voted["true_label"].to_numpy()
        assert "Position bias" in out.summary and "first-shown response (a)" in out.summary
        assert f"{fmt(100 * r.mean(), 1)}% of the votes" in out.summary
        assert f"P(vote b | a better) = {fmt(np.mean(r[t == 1] == 0))}" in out.summary
        assert f"P(vote a | b better) = {fmt(np.mean(r[t == 0] == 1))}" in out.summary
        assert out.position["visible"] is True and out.position["value"] is not None
    finally:
        session.close()


def test_compare_shows_pairwise_accuracy_of_the_pointwise_models_on_held_out_pairs(trained):
    session, view = trained
    assert "Open the **Compare** tab" in view.status, view.status
    cv = C.compare_models(session, "naive", "ips")
    log = session.log
    test = session.results["naive"].split == "test"
    a_log, b_log = sides(log)
    Xa, Xb = session.X[:, :DIM], session.X[:, DIM:]
    labels = log["true_label"].to_numpy()[test]
    rows = {r["method"]: r for r in cv.metrics.to_dicts()}
    for method in ("naive", "ips"):
        res = session.results[method]
        d = res.score(a_log, Xa)[test] - res.score(b_log, Xb)[test]  # each side scored on its own
        acc = float(np.mean(np.where(d == 0, 0.5, (d > 0) == (labels == 1))))
        assert rows[method]["pairwise accuracy"].startswith(f"{acc:.4f} [")
        assert rows[method]["pairs"] == int(test.sum())
    assert "clean labels of the held-out test pairs" in cv.metrics_note
    assert f"on {2 * N_PAIRS:,} responses" in cv.rank_summary  # the single responses, ranked
    key = cv.prompt_choices["value"]
    table = C.prompt_ranking(session, "naive", "ips", key)
    assert table.height == 8  # a prompt's 4 pairs: 8 responses
    one = PW.compare_pairs(session, "naive", "naive", {"naive": C.run_scored(session, "naive")["reward"].to_numpy()})
    assert "Train a second method" in one["rank_summary"]


def test_pairwise_accuracy_counts_ties_half():
    labels = np.array([1, 0, 1, 0, 1])
    z = np.array([0.3, -2.0, -0.1, 0.0, 0.0])
    assert PW.pairwise_accuracy(labels, z) == pytest.approx((1 + 1 + 0 + 0.5 + 0.5) / 5)


def test_the_audit_shows_a_pair_side_by_side_and_labels_a_or_b(trained):
    session, _ = trained
    view = A.propose(session, 20, 0)
    row_id = session.audit.table["response_id"][session.audit.cursor]
    row = session.log.filter(pl.col("response_id") == row_id).row(0, named=True)
    assert "Which response is better" in view.card
    assert view.response["value"] == row["response_a"] and view.response["label"] == "response a"
    assert view.response_b["value"] == row["response_b"] and view.response_b["visible"] is True
    view = A.label(session, A.BAD)  # b is better
    assert session.log.filter(pl.col("response_id") == row_id)["gold_label"][0] == 0.0
    labels = pl.read_csv(view.download["value"])
    assert {"response_a", "response_b"} <= set(labels.columns) and "response" not in labels.columns
    A.clear(session)


def test_the_bundled_real_ab_sample_loads_with_one_click_and_says_it_has_no_selection():
    view = D.load_sample(None, PW.SAMPLE_REAL)
    try:
        assert "400 pairs, 400 with a vote" in view.summary and "no selection and no position bias" in view.summary
        assert view.state.X.shape == (400, 2 * 384)  # both sides, from the shipped embeddings
    finally:
        view.state.close()
