"""The workbench on a mixed log (thumbs + copies on the same impressions), handler by handler: the upload is named
mixed with both counts, the Propensity and Noise tabs inspect the thumbs and say where the copies' rates come from,
the Audit tab's sample covers impressions without a thumb, and training learns from both signals once the audit
gives the copies' rates."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import common  # noqa: E402
from app import upload as U  # noqa: E402
from app.tabs import audit as A  # noqa: E402
from app.tabs import data as D  # noqa: E402
from app.tabs import noise as N  # noqa: E402
from app.tabs import propensity as P  # noqa: E402
from app.tabs import train as T  # noqa: E402

pytestmark = [pytest.mark.xdist_group("app_handlers"), pytest.mark.filterwarnings("ignore::UserWarning")]
NO_MAP = [U.AUTO] * len(U.MAPPABLE)


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CAUSALRM_APP_TMPDIR", str(tmp_path_factory.getbasetemp() / "app-sessions"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    from causalrm.simulation.simulate import simulate_dataset

    log, _ = simulate_dataset("wildbench", rating="real", feedback_kind="mixed", alpha=0.5, rho01=0.1, rho10=0.1,
                              observation_rate=0.4, event_rate_good=0.5, event_rate_bad=0.05, seed=0)
    path = tmp_path_factory.mktemp("mixed") / "mixed.parquet"
    log.sample(n=1200, seed=0).drop("regenerated", strict=False).write_parquet(path)
    return path


def _loaded(path: Path):
    from causalrm.embeddings.embedder import Embedder, embed_log

    view = D.load_upload(None, str(path), *NO_MAP, "", "", "auto")
    view.state.X = embed_log(view.state.log, Embedder(progress=False))  # the shipped MiniLM cache: instant
    view.state.embed_model = common.DEFAULT_EMBEDDER
    return view


def test_a_mixed_upload_is_inspected_on_its_thumbs_and_trains_on_both_signals_after_an_audit(mixed):
    raw = pl.read_parquet(mixed)
    view = _loaded(mixed)
    assert "mixed feedback" in view.summary and f"{int(raw['copied'].sum()):,} implicit 'copied' events" in view.summary
    session = view.state
    prop = P.fit_propensity(session, "logistic", 0.1, 0)
    assert session.propensity.diagnostics["feedback_kind"] == "explicit"  # the thumbs' selection
    assert prop.state is session
    out = N.estimate_noise(session, "anchor quantile (default)")
    assert "mixed log" in out.summary and "Audit tab" in out.summary
    A.propose(session, 200, 0)
    table = session.audit.table.join(session.log.select("response_id", "observed", "true_label"), on="response_id")
    assert set(table["observed"].to_list()) == {0, 1}  # designed on the copies: rows without a thumb too
    truth = dict(zip(table["response_id"], table["true_label"]))
    for _ in range(table.height):
        A.label(session, A.GOOD if truth[session.audit.table["response_id"][session.audit.cursor]] == 1 else A.BAD)
    views = list(T.train_models(session, ["naive", "denoise"], "mlp", "cpu", 2, 30, 0, False, True))
    assert "Open the **Compare** tab" in views[-1].status, views[-1].status
    nuis = session.results["denoise"].nuisances
    assert set(nuis.diagnostics["signals"]) == {"feedback", "copied"}
    assert nuis.diagnostics["signals"]["copied"]["flip_rates"]["method"] == "gold"
    session.close()
