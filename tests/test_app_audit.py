"""The Audit tab's handlers (app/tabs/audit.py), called as plain Python functions on the bundled simulated
sample: propose, label with 👍 / 👎 / skip, the flip-rate and verdict panels, download and upload of the label file,
clear."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.tabs import audit as A  # noqa: E402
from app.tabs import data as D  # noqa: E402
from app.tabs import train as T  # noqa: E402
from causalrm.data.io.readers import read_labels  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_handlers"), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.mktemp("audit-sessions")))
    view = D.load_sample(None, D.SAMPLE_SIMULATED, D.DEFAULT_RATING_MODE, 0.2, 0.15, 0.25, 0.2, 0)
    yield view.state
    view.state.close()
    mp.undo()


def _truth(session):
    """👍 / 👎 as the simulation's clean label of the row shown."""
    row_id = session.audit.table["response_id"][session.audit.cursor]
    y = session.audit.base.filter(pl.col("response_id") == row_id)["true_label"][0]
    return A.GOOD if y == 1 else A.BAD


def test_labels_move_the_flip_rates_and_reach_the_log(session):
    view = A.propose(session, 40, 0)
    assert "Row 1 of 40" in view.card and view.response and "0 labelled" in view.progress
    assert "appear here" in view.flips
    flips = []
    for k in range(30):
        value = A.SKIP if k == 3 else _truth(session)
        view = A.label(session, value)
        flips.append(view.flips)
    assert "29 labelled" in view.progress and "1 skipped" in view.progress and "10 to go of 40" in view.progress
    assert "**Flip rates** from" in view.flips and "audit (weighted" in view.flips
    assert len(set(flips[-10:])) > 1  # the panel follows the labels
    assert "gold labels" in view.flip_method["choices"]
    log = session.log
    assert log["gold_label"].is_not_null().sum() == 29 and log["inclusion_probability"].is_not_null().sum() == 29
    assert "Train naive and a debiased method" in view.verdict


def test_download_upload_round_trip_and_clear(session, tmp_path):
    view = A.propose(session, 40, 0)  # same seed and size: the labels stay
    assert "29 labelled" in view.progress
    path = Path(view.download["value"])
    labels = read_labels(path, known_ids=session.log["response_id"].to_list())
    assert labels.height == 40 and labels["gold_label"].is_not_null().sum() == 29
    assert {"prompt", "response", "feedback"} <= set(pl.read_csv(path).columns)
    copy = tmp_path / "labels.csv"
    copy.write_bytes(path.read_bytes())
    cleared = A.clear(session)
    assert session.audit is None and "gold_label" not in session.log.columns and cleared.download["value"] is None
    view = A.upload(session, str(copy))
    assert "29 labelled" in view.progress and session.log["gold_label"].is_not_null().sum() == 29
    with pytest.raises(Exception, match="not in the new proposal"):
        A.propose(session, 40, 7)  # another seed: refused, labels kept
    assert session.audit.labelled() == 29


def test_the_verdict_panel_reads_the_audit_once_models_are_trained_and_enough_rows_labelled(session, tmp_path):
    from causalrm.evaluation.verdicts import MIN_DECISION_LABELS

    status = list(T.train_models(session, ["naive", "causalrm-ips"], "mlp", "cpu", 2, 30, 0, False, True))[-1].status
    nu = session.results["causalrm-ips"].nuisances  # the Train status names the rates that entered each method
    assert f"entered the noise-aware methods: causalrm-ips: ρ01 = {nu.rho01:.3f}, ρ10 = {nu.rho10:.3f}." in status
    assert "naive: ρ01" not in status
    view = A.propose(session, 40, 0)  # 29 labels: below the decision threshold, no table, no verdict, no number
    assert "not enough labels yet: 29 labelled, about 100 needed" in view.verdict
    assert "**Verdict.**" not in view.verdict and "R²" not in view.verdict.replace("R² difference", "")
    assert "better" not in view.verdict and "worse" not in view.verdict
    view = A.propose(session, MIN_DECISION_LABELS + 40, 0)
    labels = pl.read_csv(view.download["value"])
    truth = dict(zip(session.audit.base["response_id"], session.audit.base["true_label"]))
    gold = [float(truth[i]) if k < MIN_DECISION_LABELS + 20 else None for k, i in enumerate(labels["response_id"])]
    labels.with_columns(pl.Series("gold_label", gold, dtype=pl.Float64)).write_csv(tmp_path / "labels.csv")
    view = A.upload(session, str(tmp_path / "labels.csv"))
    assert "**Audited evaluation** on" in view.verdict and "naive" in view.verdict
    assert "**Verdict.**" in view.verdict and "causalrm-ips" in view.verdict
    assert np.isfinite(session.log["inclusion_probability"].drop_nulls().to_numpy()).all()
