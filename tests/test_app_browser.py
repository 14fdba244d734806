"""The whole workbench flow in a real browser (Debian's chromium through Playwright) on the bundled sample:
load, fit the propensity, estimate the noise, train naive + causalrm-ips for a few epochs, compare. Asserts that the
plotly plots and the metrics table render, and saves a screenshot of each tab under test-artifacts/screenshots/."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from app_server import serving

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CAUSALRM_CHROMIUM", "/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("app_browser")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with serving([sys.executable, "app/app.py"], tmp_path_factory.mktemp("browser-sessions")) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)  # generous: the other CI worker may hold both cores
        pg.goto(app_url, wait_until="load")
        pg.wait_for_selector("#load-sample")
        # the app copes with clicks before the page-load restore answers (test_a_pages_first_events_share_one_session)
        # but a reload test needs the token stored: wait for it as a user would for the page to settle
        pg.wait_for_function("sessionStorage.getItem('causalrm-session')")
        yield pg
        browser.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _train(page, epochs: int, timeout: float) -> None:
    """Set the Train tab's epochs, press Train and wait until the status points to Compare."""
    box = page.locator("#epochs input")
    box.fill(str(epochs))
    box.press("Tab")
    page.click("#train")
    page.wait_for_selector("#train-status >> text=Compare", timeout=timeout)


def _empty_upload(page) -> None:
    """The Data tab's upload field, shown and empty: an earlier test's file is cleared once the field has rendered
    (the file input, or the Clear button of a file it still holds), never decided before it appears."""
    _tab(page, "1 · Data")
    page.get_by_label("Upload a log").check()
    page.wait_for_selector("#upload input[type=file], #upload button[aria-label='Clear']", state="attached",
                           timeout=180_000)
    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=180_000)


def _plot_rendered(page, elem_id: str, timeout: float = 60_000) -> None:
    page.wait_for_selector(f"#{elem_id} .js-plotly-plot", state="attached", timeout=timeout)
    assert page.locator(f"#{elem_id} .js-plotly-plot .main-svg").count() >= 1


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(600)  # let plotly finish its transitions
    page.screenshot(path=str(SHOTS / name), full_page=True)


def _no_error_toast(page) -> None:
    errors = page.locator(".toast-body.error, [data-testid='toast-body'].error")
    assert errors.count() == 0, errors.first.inner_text()


def test_whole_flow_in_the_browser(page):
    # 1 - Data
    page.click("#load-sample")
    page.wait_for_selector("#data-summary >> text=impressions")
    assert "15,243 impressions" in page.inner_text("#data-summary")  # the default: the WildBench demo sample
    assert page.locator("#preview [role=row]").count() > 5
    assert "ready" in page.inner_text("#embed-status")
    _shot(page, "1-data.png")

    # 2 - Propensity (logistic keeps the test quick)
    _tab(page, "2 · Propensity")
    page.get_by_label("logistic").check()
    page.click("#fit-propensity")
    page.wait_for_selector("#prop-diagnostics >> text=AUC", timeout=240_000)
    _plot_rendered(page, "prop-hist")
    _plot_rendered(page, "prop-calib")
    assert re.search(r"clip 0\.1 raises \d+ of \d+", page.inner_text("#clip-report"))
    _no_error_toast(page)
    _shot(page, "2-propensity.png")

    # 3 - Noise
    _tab(page, "3 · Noise")
    page.click("#estimate-noise")
    page.wait_for_selector("#noise-summary >> text=Training will use", timeout=240_000)
    for elem in ("noise-heatmap", "noise-proxy", "noise-sweep"):
        _plot_rendered(page, elem)
    assert "true (simulation setting)" in page.inner_text("#noise-table")
    _shot(page, "3-noise.png")

    # 4 - Train naive + auto (the defaults) for 3 epochs
    _tab(page, "4 · Train")
    _train(page, 3, timeout=150_000)
    _plot_rendered(page, "loss-curves")
    results = page.inner_text("#train-results")
    assert "naive" in results and "auto" in results
    _no_error_toast(page)
    _shot(page, "4-train.png")

    # 5 - Compare
    _tab(page, "5 · Compare")
    page.click("#compare")
    page.wait_for_selector("#rank-summary >> text=Kendall", timeout=240_000)
    metrics = page.inner_text("#metrics-table")
    assert "naive" in metrics and "auto" in metrics and "r2" in metrics
    assert "Verdict" in page.inner_text("#metrics-note")
    assert "true_label" in page.inner_text("#metrics-note")
    _plot_rendered(page, "reward-scatter")
    _plot_rendered(page, "metric-bars")
    # three epochs: auto may keep naive itself (identical rankings, no rank shifts) or a debiased model
    kept_naive = "auto kept naive" in page.inner_text("#metrics-note")
    assert kept_naive or page.locator("#movers [role=row]").count() > 1
    assert "causalrm fit" in page.inner_text("#cli")
    _no_error_toast(page)
    _shot(page, "5-compare.png")


def _load_small_sample(page, *, radio: bool = False) -> None:
    """The Data tab's small simulated sample (UltraFeedback, 2,398 rows); ``radio``: pick "Bundled sample" first."""
    _tab(page, "1 · Data")
    if radio:
        page.get_by_label("Bundled sample").check()
    page.locator("#sample input").click()
    page.get_by_role("option", name="UltraFeedback (simulated)").click()
    page.click("#load-sample")
    page.wait_for_selector("#data-summary >> text=2,398 impressions")


def _status_badges(page) -> list[str]:
    """Data-tab components showing gradio's red status badge (an error state), by the nearest element id."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('#tab-data .error'))
        .map((e) => { let p = e; while (p && !p.id) p = p.parentElement; return p ? p.id : '?'; })""")


def test_lora_trains_on_the_cpu_within_the_memory_limit(page):
    """The small simulated sample, LoRA with max length 32 for one epoch: the plan line shows the memory estimate
    against the per-job limit, and the job finishes in its worker process."""
    _load_small_sample(page)
    _tab(page, "4 · Train")
    page.locator("#backbone input").click()
    page.get_by_role("option", name="lora").click()
    page.wait_for_selector("#lora-max-length", state="visible")
    assert page.locator("#epochs input").input_value() == "3"  # LoRA's own default
    for box in page.locator("#methods input[type=checkbox]").all():
        if box.is_checked() and box.locator("xpath=..").inner_text().strip() != "naive":
            box.uncheck()
    for elem, value in (("#lora-max-length input", "32"), ("#epochs input", "1")):
        field = page.locator(elem)
        field.fill(value)
        field.press("Tab")
    page.click("#train")
    page.wait_for_selector("#train-status >> text=LoRA: max length 32", timeout=180_000)
    page.wait_for_selector("#train-status >> text=Compare", timeout=600_000)
    status = page.inner_text("#train-status")
    assert "with the lora backbone" in status and "of 4 GB" in status and "Peak memory of the job" in status
    assert "naive" in page.inner_text("#train-results")
    _no_error_toast(page)
    _shot(page, "6-lora.png")


def test_a_reload_keeps_the_session(page):
    """After the LoRA run: a reload shows the same data and trained model without running anything again."""
    token = page.evaluate("sessionStorage.getItem('causalrm-session')")
    page.reload(wait_until="load")
    page.wait_for_selector("#data-summary >> text=2,398 impressions", timeout=180_000)
    assert page.evaluate("sessionStorage.getItem('causalrm-session')") == token
    _tab(page, "4 · Train")
    page.wait_for_selector("#train-status >> text=Restored after a reload: trained naive", timeout=180_000)
    assert "naive" in page.inner_text("#train-results")
    _no_error_toast(page)
    _shot(page, "7-after-reload.png")


def test_a_reload_mid_job_keeps_the_train_form(page):
    """A job started with a form far from the defaults (device cpu, 300 epochs, patience 300, seed 3: naive alone,
    about ten seconds): a reload while it runs shows that form again, not MLP / auto / 40 epochs, and follows the
    job to its end."""
    _load_small_sample(page)
    _tab(page, "4 · Train")
    page.locator("#backbone input").click()
    page.get_by_role("option", name="mlp", exact=True).click()
    page.wait_for_selector("#lora-max-length", state="hidden")
    for box in page.locator("#methods input[type=checkbox]").all():
        if box.is_checked() != (box.locator("xpath=..").inner_text().strip() == "naive"):
            box.click()
    page.locator("#train-device").get_by_label("cpu").check()
    form = {"#epochs input": "300", "#patience input": "300", "#train-seed input": "3"}
    for elem, value in form.items():
        field = page.locator(elem)
        field.fill(value)
        field.press("Tab")
    page.click("#train")
    page.wait_for_selector("#train-status >> text=/Fitting|Training|Queued/", timeout=180_000)
    page.reload(wait_until="load")
    page.wait_for_selector("#data-summary >> text=2,398 impressions", timeout=180_000)
    _tab(page, "4 · Train")
    for elem, value in form.items():
        page.wait_for_function("([sel, v]) => document.querySelector(sel).value === v", arg=[elem, value],
                               timeout=30_000)
    assert page.locator("#train-device").get_by_label("cpu").is_checked()
    assert page.locator("#backbone input").input_value() == "mlp"
    assert page.locator("#lora-max-length").is_hidden()
    # the job, followed after the reload to its end (or, on a fast machine, already over when the page came back)
    page.wait_for_selector("#train-status >> text=/Compare|Restored after a reload: trained naive/", timeout=300_000)
    for elem, value in form.items():  # the restored job's updates leave the form as it was
        assert page.locator(elem).input_value() == value
    assert "naive" in page.inner_text("#train-results")
    _no_error_toast(page)
    _shot(page, "8-reload-keeps-train-form.png")


def test_a_failed_upload_marks_one_field_and_a_success_clears_its_toast(page, tmp_path):
    _tab(page, "1 · Data")
    page.get_by_label("Upload a log").check()
    bad, good = tmp_path / "broken.parquet", tmp_path / "renamed.csv"
    bad.write_bytes(b"not a parquet file")
    good.write_text("question,answer,stars\nhi,there,5\n")
    page.set_input_files("#upload input[type=file]", str(bad))
    page.wait_for_selector(".toast-body.error")
    assert _status_badges(page) == ["upload-columns"]  # not the nine mapping fields, not the preview
    page.locator("#upload button[aria-label='Clear']").click()
    page.set_input_files("#upload input[type=file]", str(good))
    page.wait_for_selector("#upload-columns >> text=3 columns")
    # the earlier attempt's error is out of date: the success closes it (the toast fades out)
    page.wait_for_selector(".toast-body.error", state="detached", timeout=10_000)
    _no_error_toast(page)
    assert _status_badges(page) == []
    page.click("#load-upload")  # unmapped: no prompt column
    # the module's page is one session: when an earlier test left a log loaded, the failed load keeps it, marked as
    # the previous one, with no error badge; otherwise the summary itself carries the error
    kept = "#data-summary:has-text('Previous log (still loaded)')"
    page.wait_for_selector(f".toast-body.error, {kept}", timeout=240_000)
    if page.locator(kept).count():
        assert "renamed.csv was not loaded" in page.inner_text("#data-summary")
        assert _status_badges(page) == []
    else:
        assert _status_badges(page) == ["data-summary"]


def test_the_audit_tab_labels_rows_by_keyboard_and_the_flip_rates_follow(page):
    """The Audit step on the small simulated sample: propose 30 rows, label them with the keys (and the buttons),
    skip one, and watch the inclusion-weighted gold flip rates appear and change."""
    _load_small_sample(page, radio=True)
    _tab(page, "6 · Audit")
    n = page.locator("#audit-n input")
    n.fill("30")
    n.press("Tab")
    page.click("#audit-propose")
    page.wait_for_selector("#audit-card >> text=Row 1 of 30", timeout=240_000)
    assert page.locator("#audit-response textarea").input_value()
    labelled, skipped, panels = 0, 0, []
    for k in range(16):
        if k == 5:
            page.keyboard.press("s")
            skipped += 1
            page.wait_for_selector(f"#audit-progress >> text={skipped} skipped")
            continue
        # agree with the row's feedback (its stratum names it), except every fourth label: a few flips
        stratum = re.search(r"stratum (\w+):", page.inner_text("#audit-card")).group(1)
        good = (stratum == "up" or (stratum == "none" and k % 2 == 0)) != (k % 4 == 2)
        if k % 3 == 0:
            page.click("#audit-good" if good else "#audit-bad")
        else:
            page.keyboard.press("1" if good else "0")
        labelled += 1
        page.wait_for_selector(f"#audit-progress >> text=/\\b{labelled} labelled/")
        panels.append(page.inner_text("#audit-flips"))
    assert "Flip rates" in panels[-1] and "audit (weighted" in panels[-1]
    assert len(set(p for p in panels if "Flip rates" in p)) > 1  # the rates follow the labels
    assert page.locator("#audit-download").is_enabled()
    _no_error_toast(page)
    _shot(page, "8-audit.png")


def test_the_audit_verdict_below_and_above_the_decision_threshold(page, tmp_path):
    """Naive and ips (no flip-rate gate to pass) trained on the small simulated sample, 300 rows proposed: a few
    labels by keyboard give "not enough labels yet" and no verdict; the downloaded label file, every row labelled
    with the simulation's clean true_label and uploaded again, gives a verdict with its interval."""
    import polars as pl

    from causalrm.evaluation.verdicts import MIN_DECISION_LABELS
    from causalrm.simulation.simulate import simulate_dataset
    from causalrm.workflows.demo import DEMO

    # the log of the Data tab's "UltraFeedback (simulated)" at its default settings (teacher ratings, seed 0)
    log, _ = simulate_dataset("ultrafeedback", alpha=DEMO.alpha, rho01=0.2, rho10=0.1, observation_rate=0.2,
                              rating="teacher", seed=0)
    truth = dict(zip(log["response_id"].to_list(), log["true_label"].to_list()))
    _load_small_sample(page, radio=True)
    _tab(page, "2 · Propensity")  # logistic keeps the training job quick (it reuses this propensity)
    page.get_by_label("logistic").check()
    page.click("#fit-propensity")
    page.wait_for_selector("#prop-diagnostics >> text=AUC", timeout=240_000)
    _tab(page, "4 · Train")
    page.locator("#backbone input").click()
    page.get_by_role("option", name="mlp", exact=True).click()
    for box in page.locator("#methods input[type=checkbox]").all():
        if box.is_checked() != (box.locator("xpath=..").inner_text().strip() in ("naive", "ips")):
            box.click()
    page.locator("#train-device").get_by_label("cpu").check()
    _train(page, 2, timeout=300_000)
    assert "ips" in page.inner_text("#train-results")

    _tab(page, "6 · Audit")
    n = page.locator("#audit-n input")
    n.fill("300")
    n.press("Tab")
    page.click("#audit-propose")
    page.wait_for_selector("#audit-card >> text=Row 1 of 300", timeout=240_000)
    few = 5
    assert few < MIN_DECISION_LABELS
    for k in range(1, few + 1):
        row_id = page.locator("#audit-card code").first.inner_text()  # the card names the row's response_id
        page.keyboard.press("1" if truth[row_id] == 1 else "0")
        page.wait_for_selector(f"#audit-progress >> text=/\\b{k} labelled/")
    page.wait_for_selector(f"#audit-verdict >> text=not enough labels yet: {few} labelled")
    below = page.inner_text("#audit-verdict")
    assert not re.search(r"better than|worse than|level with|\[", below), below

    with page.expect_download() as download:
        page.click("#audit-download")
    labels = pl.read_csv(download.value.path())
    assert labels.height == 300 and labels["gold_label"].is_not_null().sum() == few
    labels = labels.with_columns(pl.Series("gold_label", [float(truth[i]) for i in labels["response_id"]],
                                           dtype=pl.Float64))
    path = tmp_path / "labels.csv"
    labels.write_csv(path)
    page.set_input_files("#audit-upload input[type=file]", str(path))
    page.wait_for_selector("#audit-progress >> text=/\\b300 labelled/", timeout=180_000)
    page.wait_for_selector("#audit-verdict >> text=Verdict.", timeout=180_000)
    above = page.inner_text("#audit-verdict")
    assert re.search(r"\bips is (better than|level with|worse than) naive", above), above
    assert re.search(r"R² [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", above), above
    assert "not enough labels" not in above
    _no_error_toast(page)
    _shot(page, "9-audit-verdict.png")


def test_an_upload_embeds_itself_and_the_propensity_fits(page, tmp_path):
    """A newcomer's upload: Load log, then straight to the Propensity tab, no 'Compute embeddings' press; the
    embedding job's progress shows on the Data tab while it runs in a worker."""
    _empty_upload(page)
    log = tmp_path / "my_impressions.csv"
    rows = ["prompt,response,observed,feedback"]
    for i in range(240):
        observed = int(i % 3 != 0)
        feedback = (i // 2) % 2 if observed else ""
        rows.append(f"question {i % 40} about topic {i % 7},answer {i} with words {i % 11} and {i % 13},{observed},"
                    f"{feedback}")
    log.write_text("\n".join(rows) + "\n")
    page.set_input_files("#upload input[type=file]", str(log))
    page.wait_for_selector("#upload-columns >> text=4 columns")
    page.click("#load-upload")
    page.wait_for_selector("#data-summary >> text=240 impressions")
    page.wait_for_selector("#embed-status >> text=240 × 384 ready", timeout=180_000)
    _no_error_toast(page)
    _tab(page, "2 · Propensity")
    page.get_by_label("logistic").check()
    page.click("#fit-propensity")
    page.wait_for_selector("#prop-diagnostics >> text=AUC", timeout=240_000)
    _no_error_toast(page)
    _shot(page, "9-upload-embedded.png")


def test_an_implicit_log_is_named_takes_event_rates_and_trains(page, tmp_path):
    """Copies simulated on the bundled WildBench rows: the upload is named implicit, the Noise tab takes the event
    rates (no anchors), the Train tab then offers nnpu, which trains."""
    from causalrm.simulation.simulate import simulate_dataset

    log, _ = simulate_dataset("wildbench", rating="real", feedback_kind="implicit", event_rate_good=0.5,
                              event_rate_bad=0.05, seed=0)
    path = tmp_path / "copies.parquet"
    log.sample(n=600, seed=0).write_parquet(path)
    _empty_upload(page)
    page.set_input_files("#upload input[type=file]", str(path))
    page.wait_for_selector("#upload-columns >> text=implicit feedback with")
    page.click("#load-upload")
    page.wait_for_selector("#data-summary >> text=implicit (positive-only) feedback")
    assert "600 impressions" in page.inner_text("#data-summary")
    page.wait_for_selector("#embed-status >> text=600 × 384 ready", timeout=180_000)
    _tab(page, "3 · Noise")
    page.locator("#event-rate input").fill("0.5")
    page.locator("#accidental-rate input").fill("0.05")
    page.click("#estimate-noise")
    page.wait_for_selector("#noise-summary >> text=given by the user", timeout=240_000)
    assert "no selection to reweight" in page.inner_text("#noise-summary")
    _no_error_toast(page)
    _tab(page, "4 · Train")
    page.wait_for_selector("#methods >> text=nnpu")
    assert page.get_by_label("causalrm-ips", exact=True).count() == 0  # not needed: every impression is observed
    page.get_by_label("nnpu", exact=True).check()
    _train(page, 3, timeout=150_000)
    assert "nnpu" in page.inner_text("#train-results")
    _no_error_toast(page)
    _shot(page, "10-implicit.png")
