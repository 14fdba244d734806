"""The workbench's A/B flow in a real browser (Debian's chromium through Playwright), with the harness of
tests/test_app_browser.py: the bundled real A/B sample loads with one click and is named a pairwise log, a tiny naive
run trains in a worker process, and the Compare tab shows its pairwise accuracy on the held-out pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from app_server import serving
from test_app_browser import _no_error_toast, _plot_rendered, _shot, _tab, _train
from test_app_browser import page as page  # noqa: F401  (the fixture: chromium on this module's server)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.pairwise import SAMPLE_REAL  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("app_browser")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with serving([sys.executable, "app/app.py"], tmp_path_factory.mktemp("browser-sessions-ab")) as url:
        yield url


def test_the_ab_sample_trains_naive_and_compare_shows_pairwise_accuracy(page):  # noqa: F811
    page.locator("#sample input").click()
    page.get_by_role("option", name=SAMPLE_REAL).click()
    page.click("#load-sample")
    page.wait_for_selector("#data-summary >> text=400 pairs", timeout=180_000)
    summary = page.inner_text("#data-summary")
    assert "pairwise (A/B) log" in summary and "no selection and no position bias" in summary
    page.wait_for_selector("#embed-status >> text=ready", timeout=120_000)

    _tab(page, "4 · Train")
    page.wait_for_selector("#methods >> text=naive", timeout=120_000)
    page.locator("#methods").get_by_role("checkbox", name="auto", exact=True).uncheck()  # naive alone: tiniest
    _train(page, 2, timeout=240_000)
    assert "naive" in page.inner_text("#train-results")
    _no_error_toast(page)

    _tab(page, "5 · Compare")
    page.click("#compare")
    # the note's final text, not the progress label ("pairwise accuracy and rankings - 30%") shown meanwhile
    page.wait_for_selector("#metrics-note >> text=votes of the held-out test pairs", timeout=180_000)
    assert "Pairwise accuracy" in page.inner_text("#metrics-note")
    metrics = page.inner_text("#metrics-table")
    assert "pairwise accuracy" in metrics and "naive" in metrics and "100" in metrics
    _plot_rendered(page, "metric-bars")
    _no_error_toast(page)
    _shot(page, "11-ab-compare.png")
