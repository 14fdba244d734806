"""The workbench served for real (`python app/app.py` in a subprocess on a free 127.0.0.1 port), driven with
gradio_client: the public endpoints work, bad input comes back as our one-line message, and concurrent clients only
ever see their own data."""

from __future__ import annotations

import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from app_server import serving  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.xdist_group("app_api"), pytest.mark.filterwarnings("ignore::UserWarning")]
SAMPLE = "UltraFeedback (simulated)"
TEACHER = "teacher (semi-synthetic, known score)"
AUTO = "(same name)"
N_MAP = 10  # mapping dropdowns on the Data tab (MAPPABLE)
ENDPOINTS = {"/load_sample", "/upload", "/embed", "/fit_propensity", "/clip_report", "/estimate_noise", "/train",
             "/cancel", "/compare", "/prompt_ranking"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """URL of a freshly launched `python app/app.py` (upload cap 1 MB); session folders in a temp folder."""
    sessions = tmp_path_factory.mktemp("api-sessions")
    with serving([sys.executable, "app/app.py", "--max-upload-mb", "1"], sessions) as url:
        yield {"url": url, "sessions": sessions, "log": sessions / "server.log"}


def _client(server) -> Client:
    return Client(server["url"], verbose=False)


def _load(client: Client, seed: int):
    return client.predict(SAMPLE, TEACHER, 0.5, 0.2, 0.1, 0.2, seed, api_name="/load_sample")


def test_listens_on_localhost_with_named_endpoints(server):
    assert server["url"].startswith("http://127.0.0.1:")
    api = _client(server).view_api(return_format="dict", print_info=False)
    assert ENDPOINTS <= set(api["named_endpoints"])


def test_full_flow_over_the_api(server):
    c = _client(server)
    summary, warnings, preview, embed, methods, flip, stale = _load(c, 0)
    assert "2,398 impressions" in summary and "seed 0" in summary and "ready" in embed
    assert preview["headers"][0] == "response_id" and len(preview["data"]) == 50
    diag, hist, calib, clip = c.predict("logistic", 0.1, 0, api_name="/fit_propensity")
    assert "AUC" in diag and "Clip 0.1" in clip and hist is not None
    clip_text, _ = c.predict(0.25, api_name="/clip_report")
    assert "Clip 0.25" in clip_text
    table, heat, proxy, sweep, noise_md, _position = c.predict("anchor quantile (default)", 0.97, False, 0.2, 0.1, 0,
                                                    api_name="/estimate_noise")
    assert table["data"][0][0].startswith("anchor")
    assert ("Training will use" in noise_md) != ("will **not** be used" in noise_md)  # says which, as the gate did
    status, curves, results, a, b = c.predict(["naive", "causalrm-dr"], "mlp", "cpu", 2, 30, 0, True, True,
                                              api_name="/train")
    assert "Open the **Compare** tab" in status, status
    assert [row[0] for row in results["data"]] == ["naive", "causalrm-dr"]
    assert results["headers"][1] == "head" and {row[1] for row in results["data"]} <= {"256,64", "linear"}
    out = c.predict("naive", "causalrm-dr", api_name="/compare")
    metrics, note, bars, scatter, rank_md, movers, prompts, ranking, cli, csv, parquet, zipped = out
    assert [row[0] for row in metrics["data"]] == ["naive", "causalrm-dr"] and "true_label" in note
    assert "Kendall τ" in rank_md and len(movers["data"]) > 0 and len(ranking["data"]) >= 2
    assert "causalrm fit sim.parquet --method causalrm-dr" in cli and "--select-head" in cli
    assert "--force-noise-correction" in cli and "**Verdict.**" in note
    assert Path(csv).stat().st_size > 0 and Path(zipped).suffix == ".zip"  # downloaded by the client


def test_bad_upload_returns_our_message_and_the_app_keeps_serving(server, tmp_path):
    bad = tmp_path / "bad_log.csv"
    bad.write_text("question,answer\nhi,there\n")
    c = _client(server)
    with pytest.raises(AppError) as info:
        c.predict(handle_file(str(bad)), *[AUTO] * N_MAP, "", "", api_name="/upload")
    message = str(info.value)
    assert "bad_log.csv: missing required columns" in message and "Column mapping" in message
    assert "/tmp/gradio" not in message and "Traceback" not in message
    # with the mapping the same file loads
    picks = [AUTO] * N_MAP
    picks[0], picks[1] = "question", "answer"
    summary = c.predict(handle_file(str(bad)), *picks, "", "", api_name="/upload")[0]
    assert "1 impressions" in summary
    with pytest.raises(AppError, match="no embeddings yet"):
        c.predict("mlp", 0.1, 0, api_name="/fit_propensity")


def test_oversized_upload_is_refused(server, tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("prompt,response,feedback\n" + "a prompt,a response,1\n" * 80_000)  # ~1.8 MB > 1 MB cap
    with pytest.raises((AppError, ValueError), match="(?i)max|limit|size"):
        _client(server).predict(handle_file(str(big)), *[AUTO] * N_MAP, "", "", api_name="/upload")


def test_concurrent_clients_see_only_their_own_data(server):
    clients = [_client(server) for _ in range(2)]
    seeds = [3, 4]
    with ThreadPoolExecutor(2) as pool:
        loaded = list(pool.map(lambda cs: _load(*cs), zip(clients, seeds)))
    for (summary, *_), seed in zip(loaded, seeds):
        assert f"seed {seed} " in summary
    assert loaded[0][2]["data"] != loaded[1][2]["data"] or loaded[0][0] != loaded[1][0]
    with ThreadPoolExecutor(2) as pool:
        fitted = list(pool.map(lambda c: c.predict("logistic", 0.1, 0, api_name="/fit_propensity"), clients))
    assert fitted[0][0] != fitted[1][0]  # different logs -> different diagnostics
    # each client still sees its own log afterwards
    for c, own in zip(clients, fitted):
        clip_text = c.predict(0.1, api_name="/clip_report")[0]
        assert clip_text in own[3]  # the same p-hat as this client's own fit
    # a new client has no data at all
    with pytest.raises(AppError, match="no log loaded yet"):
        _client(server).predict("naive", "causalrm-dr", api_name="/compare")
    # every session got its own folder under the server's session root
    assert len([p for p in server["sessions"].glob("s-*") if p.is_dir()]) >= 2


def test_causalrm_app_command_serves_the_workbench(tmp_path):
    with serving([sys.executable, "-m", "causalrm.cli.main", "app", "--host", "127.0.0.1"], tmp_path) as url:
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert "CausalRM Workbench" in resp.read().decode("utf-8", "replace")


@pytest.mark.parametrize("command", [["-m", "causalrm.cli.main", "app"], ["app/app.py"]])
def test_a_second_app_on_the_same_port_exits_2_with_one_line(server, command):
    import subprocess

    port = server["url"].rstrip("/").rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, *command, "--port", port], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: --port {port}: ") and out.stderr.count("\n") == 1
    assert "already in use" in out.stderr and "GRADIO_SERVER_PORT" not in out.stderr
    assert urllib.request.urlopen(server["url"], timeout=10).status == 200  # the first app still serves


def test_the_load_test_sessions_all_succeed_and_stay_isolated(server):
    """benchmarks/load_test.py's sessions (each its own seed: load the sample, fit the propensity, read it back),
    a few at once here; the 20-session figures are in docs/RESULTS.md."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from load_test import run_load

    results = run_load(server["url"], 4, "logistic")
    assert [r["error"] for r in results] == [None] * 4
    assert all(r["isolated"] for r in results)
    assert len({r["diagnostics"] for r in results}) == 4  # four logs, four different propensity fits
