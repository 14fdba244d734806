"""Tab 5, Compare: two trained models side by side: metrics against clean or gold labels with intervals and the
verdict (on a log without labels: the two models' predicted preferences instead, no metrics table), the reward
scatter, the ranking comparison (Kendall τ, the responses that moved most, one prompt's rankings), downloads (scored
log, run folders) and the equivalent ``causalrm`` commands.

Layout: :func:`build`; events: :func:`wire`.
"""

from __future__ import annotations

import math
import shlex
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import polars as pl

from app import plots
from app.common import DEFAULT_EMBEDDER, ORACLE, fmt, guarded, require, run_scored
from app.session import Session
from causalrm.atomic_io import atomic_path
from causalrm.data import schema
from causalrm.data.pairwise import is_pair_log
from causalrm.errors import InputError
from causalrm.estimators.methods import BASELINE, against_baseline


class CompareView(NamedTuple):
    metrics: pl.DataFrame
    metrics_shown: Any  # gr.update: the metrics table only where there are labels to compute it against
    metrics_note: str
    metric_plot: Any  # gr.update: R² by method, or the predicted preferences on a log without labels
    scatter: Any
    rank_summary: str
    movers: pl.DataFrame
    prompt_choices: Any  # gr.update of the prompt dropdown
    ranking: pl.DataFrame
    cli: str
    download_csv: str | None
    download_parquet: str | None
    download_zip: str | None


def _run_evaluation(session: Session, method: str, rewards: np.ndarray) -> dict[str, Any] | None:
    """Clean-label metrics of a run (written by ``save_run``; recomputed with ``evaluate_scores`` if absent)."""
    from causalrm.evaluation.metrics import evaluate_scores
    from causalrm.workflows.runs import METRICS

    path = session.run_dirs.get(method)
    if path is not None and (path / METRICS).is_file():
        import json

        test = json.loads((path / METRICS).read_text(encoding="utf-8")).get("test")
        if test is not None and test.get("ci"):
            return test
    res = session.results[method]
    return evaluate_scores(session.log, rewards, split=res.split, n_boot=200, seed=res.config.seed)


def _metric_cell(value: Any, ci: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if ci and ci[0] is not None and ci[1] is not None and all(math.isfinite(float(c)) for c in ci):
        return f"{value:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.4f}"


def _group_column(df: pl.DataFrame) -> str | None:
    if schema.PAIR_ID in df.columns and df[schema.PAIR_ID].is_not_null().all():
        return schema.PAIR_ID
    return schema.PROMPT if schema.PROMPT in df.columns else None


def _short(text: Any, n: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _check_pair(session: Session, a: str | None, b: str | None) -> tuple[str, str]:
    trained = list(session.results)
    if not trained:
        raise InputError("no trained models yet: train at least one method on the Train tab")
    a = a or (BASELINE if BASELINE in trained else trained[0])
    b = b or against_baseline(trained) or trained[-1]
    for m in (a, b):
        if m not in trained:
            raise InputError(f"method {m!r} has not been trained in this session; trained: {', '.join(trained)}")
    return a, b


@guarded
def compare_models(state: Session | None, method_a: str | None = None, method_b: str | None = None,
                   progress=gr.Progress()) -> CompareView:
    """Metrics vs clean / gold labels with CIs, reward scatter, ranking comparison (Kendall τ, rank shifts),
    downloads and the equivalent CLI commands."""
    from causalrm.evaluation.metrics import evaluation_rows, sigmoid
    from causalrm.evaluation.ranking import compare_rankings

    session = require(state)
    a, b = _check_pair(session, method_a, method_b)
    progress(0.1, desc="collecting scores")
    scored = {m: run_scored(session, m) for m in session.results}
    rewards = {m: df["reward"].to_numpy().astype(np.float64) for m, df in scored.items()}
    if is_pair_log(session.log):  # an A/B log: pairwise accuracy and the single responses' rankings (app.pairwise)
        from app.pairwise import compare_pairs

        progress(0.3, desc="pairwise accuracy and rankings")
        return CompareView(**compare_pairs(session, a, b, rewards), cli=cli_command(session),
                           **_downloads(session, rewards))

    # ---- metrics -------------------------------------------------------------------------------------------------
    progress(0.3, desc="metrics")
    rows, bars, evals = [], [], {}
    for method in session.results:
        ev = _run_evaluation(session, method, rewards[method])
        evals[method] = ev
        if ev is None:
            continue
        m, ci = ev["metrics"], ev.get("ci") or {}
        row = {"method": method}
        for key in ("mse", "mae", "r2", "auroc", "pearson"):
            row[key] = _metric_cell(m.get(key), ci.get(key))
        held = (ev.get("by_split") or {}).get("held_out")
        if held:
            row["r2 held-out"] = _metric_cell(held["metrics"].get("r2"), None)
        rows.append(row)
        r2_ci = ci.get("r2") or (None, None)
        bars.append({"method": method, "value": m.get("r2"), "lo": r2_ci[0], "hi": r2_ci[1]})
    found = evaluation_rows(session.log)
    if rows and found is not None:  # what a best-of-N policy gets (issue 25): the bench's kernel
        from causalrm.evaluation.downstream import log_downstream

        mask = np.zeros(session.log.height, dtype=bool)
        mask[found[0]] = True
        for row in rows:
            d = log_downstream(session.log, rewards[row["method"]], mask, found[1], rewards.get(BASELINE))
            row["best-of-N gain"] = _metric_cell(d["best_of_n"], None)
            row["best-of-N win vs naive"] = _metric_cell(d.get("best_of_n_win_rate"), None)
    if rows and BASELINE in evals and ORACLE in evals and evals[BASELINE] and evals[ORACLE]:
        from causalrm.workflows.bench import gap_closed  # the bench's convention: NaN unless oracle beats naive

        r2_naive, r2_oracle = evals[BASELINE]["metrics"]["r2"], evals[ORACLE]["metrics"]["r2"]
        for row in rows:
            share = gap_closed(evals[row["method"]]["metrics"]["r2"], r2_naive, r2_oracle)
            row["naive→oracle R² gap closed"] = f"{share:.0%}" if math.isfinite(share) else "–"
    if rows:
        metrics_df = pl.DataFrame(rows)
        ev0 = next(e for e in evals.values() if e is not None)
        note = (f"Metrics of σ(z) against **{ev0['label']}** on {ev0['rows']} ({ev0['n']:,} rows), with 95% "
                "bootstrap intervals. Lower MSE/MAE, higher R²/AUROC/Pearson are better. "
                "Best-of-N gain: within each prompt group, the label of the response the model scores highest "
                "minus the group's mean label (what best-of-N sampling gets); win vs naive: how often its pick "
                "beats naive's (ties half).")
        if ev0["label"] == schema.GOLD_LABEL:
            note += (" Gold labels sit on rows the models were also trained on (with noisy feedback); "
                     "'r2 held-out' uses only the validation rows.")
        if ev0["label"] == schema.TRUE_LABEL and ORACLE not in evals:
            note += " Train `oracle` too to see the ceiling of this representation."
        note = _verdict_md(session, a, b, rewards) + "\n\n" + note
        metric_fig = gr.update(value=plots.metric_bars([r for r in bars if r["value"] is not None], metric="R²",
                                                       order=list(session.results)), label="R² by method")
    else:  # what the scores alone can show: their distributions (here), the scatter and the rankings (below)
        metrics_df = pl.DataFrame()
        note = (f"This log has no clean or gold labels (no test split with `true_label`, no `gold_label`): no "
                f"metrics and no verdict on which model is right. Shown: the predicted preferences of **{a}** and "
                f"**{b}**, their scatter and how their rankings differ. Label rows on the **Audit** tab for an "
                "audited verdict.")
        metric_fig = gr.update(value=plots.preference_histograms(
            {m: sigmoid(rewards[m]) for m in dict.fromkeys((a, b))}, order=list(session.results)),
            label="predicted preferences")

    # ---- scatter -------------------------------------------------------------------------------------------------

    if found is not None:
        idx, label_col, _ = found
        labels = session.log[label_col].cast(pl.Float64).to_numpy()[idx]
    else:
        idx, label_col, labels = np.arange(session.log.height), None, None
    hover = [_short(r, 90) for r in session.log[schema.RESPONSE].gather(idx).to_list()]
    scatter = plots.reward_scatter(sigmoid(rewards[a][idx]), sigmoid(rewards[b][idx]), x_name=a, y_name=b,
                                   labels=labels, label_name=label_col or "label", hover=hover)

    # ---- rankings ------------------------------------------------------------------------------------------------
    progress(0.6, desc="ranking comparison")
    if a == b:
        raise InputError("pick two different methods to compare rankings")
    cmp = compare_rankings(scored[a], scored[b], names=(a, b), top_k=10, n_shifts=15)
    unlearned = [m for m in (a, b) if session.results[m].learned is not None and not session.results[m].learned.passed]
    lines = [f"⚠️ **{' and '.join(unlearned)} did not learn**: the rank shifts below are noise, not findings."
             ] if unlearned else []
    lines += [f"**{a}** vs **{b}** on {cmp.n:,} responses: Kendall τ = **{cmp.kendall:+.3f}**, Spearman ρ = "
             f"{cmp.spearman:+.3f}, top-{cmp.top_k} overlap {cmp.top_k_overlap:.0%}."]
    if cmp.n_prompts:
        lines.append(f"Within prompts ({cmp.n_prompts:,} with ≥ 2 responses): mean Kendall τ "
                     f"{fmt(cmp.prompt_kendall_mean)}, same top response in "
                     f"{fmt(100 * cmp.prompt_top1_agreement, 0)}% "
                     "of prompts.")
    if cmp.gold_column:
        lines.append(f"Against `{cmp.gold_column}` ({cmp.n_gold:,} rows): Kendall τ "
                     + ", ".join(f"{k} {fmt(v)}" for k, v in cmp.gold_kendall.items()) + ".")
    movers = pl.DataFrame([{"rank " + a: s["rank_a"], "rank " + b: s["rank_b"], "shift": s["shift"],
                            "response": _short(s.get(schema.RESPONSE), 300),
                            "prompt": _short(s.get(schema.PROMPT), 160), "response_id": s["response_id"]}
                           for s in cmp.shifts]
                          ) if cmp.shifts else pl.DataFrame({"shift": []})
    choices, default = _prompt_choices(session.log, cmp)
    ranking = prompt_ranking_table(session, a, b, default, rewards=rewards) if default is not None else pl.DataFrame()

    progress(0.85, desc="preparing downloads")
    return CompareView(metrics_df, gr.update(visible=bool(rows)), note, metric_fig, scatter, "\n\n".join(lines),
                       movers, gr.update(choices=choices, value=default), ranking, cli_command(session),
                       **_downloads(session, rewards))


def _downloads(session: Session, rewards: dict[str, np.ndarray]) -> dict[str, str | None]:
    """The scored log (CSV, Parquet) and the run folders (zip), written for the download buttons."""
    from causalrm.atomic_io import write_table_atomic

    out = session.folder("downloads")
    table = scored_log(session, rewards)
    csv_path, pq_path = out / "scored_log.csv", out / "scored_log.parquet"
    write_table_atomic(table, csv_path)
    write_table_atomic(table, pq_path)
    zip_path = _zip_runs(session, out / "runs.zip")
    return {"download_csv": str(csv_path), "download_parquet": str(pq_path),
            "download_zip": str(zip_path) if zip_path else None}


def _verdict_md(session: Session, a: str, b: str, rewards: dict[str, np.ndarray]) -> str:
    """The Compare tab's verdict (``causalrm.evaluation.verdicts.labelled_verdict``): is the debiased model of the pair
    better, level or worse than the other on the clean / gold labels, why (failed gates, the learning check), and
    what the corrections can change."""
    from causalrm.evaluation.metrics import sigmoid
    from causalrm.evaluation.verdicts import READING_GUIDE, labelled_verdict

    base, deb = (a, b) if a == BASELINE or b != BASELINE else (b, a)
    res = session.results[deb]
    reasons = [f"{g.verdict} ({'Propensity' if g.name == 'propensity' else 'Noise'} tab)"
               for g in res.nuisances.gates.values() if not g.passed]
    reasons += [f"{m} {session.results[m].learned.verdict} (Train tab)" for m in (base, deb)
                if session.results[m].learned is not None and not session.results[m].learned.passed]
    name = f"{deb} (auto kept {res.config.method})" if res.choice else deb
    out = labelled_verdict(session.log, sigmoid(rewards[base]), sigmoid(rewards[deb]), baseline=base,
                           debiased=name, split=res.split, reasons=reasons, n_boot=500)
    if out is None:
        return "No clean labels: no verdict is possible here; audited gold labels would give one."
    return f"**Verdict.** {out['verdict']}\n\n*Reading guide:* {READING_GUIDE}"


def _prompt_choices(log: pl.DataFrame, cmp: Any) -> tuple[list[tuple[str, str]], str | None]:
    """Dropdown choices (label, group key) of prompts with >= 2 responses, most disputed first."""
    col = _group_column(log)
    if col is None or not cmp.prompt_kendall:
        return [], None
    ranked = sorted(cmp.prompt_kendall, key=lambda p: (p["kendall"] if math.isfinite(p["kendall"]) else 2.0,
                                                       -p["n"]))[:200]
    keys = [p["group"] for p in ranked]
    sub = log.filter(pl.col(col).cast(pl.String).is_in(keys)).group_by(pl.col(col).cast(pl.String).alias("_k")).agg(
        pl.col(schema.PROMPT).first())
    prompt_of = dict(zip(sub["_k"].to_list(), sub[schema.PROMPT].to_list()))
    choices = []
    for p in ranked:
        text = _short(prompt_of.get(p["group"]), 70) or "(no prompt text)"
        tau = f"τ {p['kendall']:+.2f}" if math.isfinite(p["kendall"]) else "τ n/a"
        choices.append((f"{text} · {p['n']} responses · {tau}", p["group"]))
    return choices, (choices[0][1] if choices else None)


def _ranks(z: np.ndarray) -> np.ndarray:
    """Rank 1 for the highest reward (ties in row order)."""
    ranks = np.empty(z.size, dtype=np.int64)
    ranks[np.argsort(-z, kind="stable")] = np.arange(1, z.size + 1)
    return ranks


def prompt_ranking_table(session: Session, a: str, b: str, key: str | None,
                         rewards: dict[str, np.ndarray] | None = None, log: pl.DataFrame | None = None
                         ) -> pl.DataFrame:
    """The responses of one prompt side by side: each method's reward and rank within the prompt, and the shift.
    ``log``: the responses ranked (default the session's log; an A/B log's single responses, ``rewards`` theirs)."""
    log = session.log if log is None else log
    col = _group_column(log)
    if col is None or key is None:
        return pl.DataFrame()
    idx = np.flatnonzero((log[col].cast(pl.String) == str(key)).fill_null(False).to_numpy())
    if idx.size == 0:
        raise InputError(f"prompt {key!r} is not in this log")
    if rewards is None:
        rewards = {m: run_scored(session, m)["reward"].to_numpy().astype(np.float64) for m in (a, b)}
    za, zb = rewards[a][idx], rewards[b][idx]
    rank_a, rank_b = _ranks(za), _ranks(zb)
    sub = log[idx.tolist()]
    data = {f"rank {a}": rank_a, f"rank {b}": rank_b, "shift": rank_b - rank_a, f"reward {a}": np.round(za, 4),
            f"reward {b}": np.round(zb, 4)}
    for c in (schema.TRUE_LABEL, schema.GOLD_LABEL, schema.FEEDBACK):
        if c in sub.columns:
            data[c] = sub[c].to_list()
    data["response"] = [_short(r, 400) for r in sub[schema.RESPONSE].to_list()]
    return pl.DataFrame(data).sort(f"rank {b}")


@guarded
def prompt_ranking(state: Session | None, method_a: str | None, method_b: str | None, key: str | None
                   ) -> pl.DataFrame:
    """Side-by-side ranking of the responses of one prompt (the Compare tab's prompt picker)."""
    session = require(state)
    a, b = _check_pair(session, method_a, method_b)
    if is_pair_log(session.log):  # the single responses of the pairs (app.pairwise)
        from app.pairwise import response_scores

        responses, rewards = response_scores(session, [a, b])
        return prompt_ranking_table(session, a, b, key, rewards=rewards, log=responses)
    return prompt_ranking_table(session, a, b, key)


def _zip_runs(session: Session, path: Path) -> Path | None:
    if not session.run_dirs:
        return None
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for method, folder in session.run_dirs.items():
            for file in sorted(Path(folder).rglob("*")):
                if file.is_file():
                    zf.write(file, Path("runs") / method / file.relative_to(folder))
        zf.writestr("README.txt", "CausalRM Workbench runs (one folder per method). Reproduce with:\n\n"
                    + cli_command(session) + "\n")
    return path


def scored_log(session: Session, rewards: dict[str, np.ndarray]) -> pl.DataFrame:
    """The log with ``reward_<method>`` (logit z) and ``preference_<method>`` (σ(z)) per trained method."""
    from causalrm.evaluation.metrics import sigmoid

    cols = []
    for method, z in rewards.items():
        name = method.replace("-", "_")
        cols.append(pl.Series(f"reward_{name}", z, dtype=pl.Float64))
        cols.append(pl.Series(f"preference_{name}", sigmoid(z), dtype=pl.Float64))
    return session.log.with_columns(cols)


def _read_options(src: dict[str, Any]) -> list[str]:
    """The ``--map``, ``--threshold`` and ``--feedback-kind`` options an uploaded log was read with."""
    opts = []
    if src.get("mapping"):
        opts.append("--map " + ",".join(f"{canon}={col}" for col, canon in src["mapping"].items()))
    if src.get("threshold") is not None:
        opts.append(f"--threshold {src['threshold']:g}")
    if src.get("feedback_kind", "auto") != "auto":
        opts.append(f"--feedback-kind {src['feedback_kind']}")
    return opts


def cli_command(session: Session) -> str:
    """The ``causalrm`` commands that reproduce this session's log, models and comparison."""
    src = session.source
    lines = []
    if src.get("kind") == "simulated":
        log_file = "sim.parquet"
        lines.append(f"causalrm simulate --dataset {src['dataset']} --alpha {src['alpha']:g} --rho01 {src['rho01']:g} "
                     f"--rho10 {src['rho10']:g} --observation-rate {src['observation_rate']:g} --rating "
                     f"{src['rating']} --seed {src['seed']} --out {log_file}")
    elif src.get("kind") == "oasst1":
        log_file = "data/oasst1.parquet"
    elif src.get("kind") == "pairs":  # an A/B sample (app.pairwise): the bundled file, or its simulation
        log_file = src["file"]
        lines += [src["command"]] if src.get("command") else []
    else:
        log_file = shlex.quote(src.get("file", "LOG"))
        lines.append(" ".join(["causalrm validate", log_file, *_read_options(src)]))
    ts = session.train_settings
    opts: list[str] = []
    if ts.get("config"):  # the trained configuration's own options (FitConfig.to_cli: what differs from defaults)
        from causalrm.config import FitConfig
        from causalrm.options import join

        config = FitConfig.from_dict(ts["config"])
        if config.embedder.rsplit("/", 1)[-1] == DEFAULT_EMBEDDER:  # the bundled copy of the default model
            config = config.replace(embedder=DEFAULT_EMBEDDER)
        opts.append(join(config.to_cli(skip=("method",))))
    if src.get("kind") == "upload":
        opts += _read_options(src)
    suffix = (" " + " ".join(o for o in opts if o)) if any(opts) else ""
    for method in ts.get("methods", []):
        lines.append(f"causalrm fit {log_file} --method {method} --out runs/{method}{suffix}")
    methods = ts.get("methods", [])
    if methods:  # a long job goes to Accelerate as the same command (docs/DISTRIBUTED.md)
        lines.append("# data-parallel on several GPUs or machines (docs/DISTRIBUTED.md), any fit above under Accelerate:")
        lines.append(f"#   accelerate launch --config_file accelerate.yaml $(which causalrm) fit {log_file} "
                     f"--method {methods[0]} --out runs/{methods[0]}{suffix}")
    if len(methods) >= 2:
        lines.append("causalrm compare " + " ".join(f"runs/{m}" for m in methods))
    return "\n".join(lines) if lines else "# load data and train first"


# ---------------------------------------------------------------------------------------------------------------------
# layout and events
# ---------------------------------------------------------------------------------------------------------------------
class CompareUI(NamedTuple):
    method_a: Any
    method_b: Any
    compare: Any
    metrics_note: Any
    metrics: Any
    metrics_box: Any
    metric_plot: Any
    scatter: Any
    rank_summary: Any
    movers: Any
    prompt_pick: Any
    ranking: Any
    download_csv: Any
    download_parquet: Any
    download_zip: Any
    cli: Any


def build() -> CompareUI:
    """The Compare tab (call inside the app's ``gr.Tabs``)."""
    with gr.Tab("5 · Compare", id="compare", elem_id="tab-compare"):
        with gr.Row():
            method_a = gr.Dropdown([], label="baseline", allow_custom_value=True, elem_id="method-a")
            method_b = gr.Dropdown([], label="debiased", allow_custom_value=True, elem_id="method-b")
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
        metrics_note = gr.Markdown(elem_classes="crm-note", elem_id="metrics-note")
        with gr.Column(elem_id="metrics-box") as metrics_box:
            metrics_table = gr.Dataframe(label="metrics vs clean labels", interactive=False, wrap=False,
                                         elem_id="metrics-table")
        with gr.Row():
            metric_plot = gr.Plot(plots.empty("Metrics appear here"), label="R² by method",
                                  elem_id="metric-bars")
            scatter = gr.Plot(plots.empty("Reward scatter appears here"), label="reward scatter",
                              elem_id="reward-scatter")
        rank_summary = gr.Markdown(elem_id="rank-summary")
        movers = gr.Dataframe(label="responses whose rank moved most (rank 1 = highest reward)",
                              interactive=False, wrap=False, max_height=380, elem_id="movers")
        prompt_pick = gr.Dropdown([], label="prompt (most disputed first)", allow_custom_value=True,
                                  elem_id="prompt-pick")
        ranking = gr.Dataframe(label="rankings side by side", interactive=False, wrap=False,
                               elem_id="prompt-ranking")
        with gr.Row():
            dl_csv = gr.DownloadButton("Scored log (CSV)", visible=True, interactive=False,
                                       elem_id="dl-csv")
            dl_parquet = gr.DownloadButton("Scored log (Parquet)", interactive=False, elem_id="dl-parquet")
            dl_zip = gr.DownloadButton("Run folders (zip)", interactive=False, elem_id="dl-zip")
        cli = gr.Code("# train a model first", language="shell", label="equivalent causalrm commands",
                      interactive=False, elem_id="cli")
    return CompareUI(method_a, method_b, compare_btn, metrics_note, metrics_table, metrics_box, metric_plot, scatter,
                     rank_summary, movers, prompt_pick, ranking, dl_csv, dl_parquet, dl_zip, cli)


def wire(state: Any, ui: CompareUI) -> None:
    """The Compare tab's events."""
    downloads = [ui.download_csv, ui.download_parquet, ui.download_zip]
    ui.compare.click(
        compare_models, [state, ui.method_a, ui.method_b],
        [ui.metrics, ui.metrics_box, ui.metrics_note, ui.metric_plot, ui.scatter, ui.rank_summary, ui.movers,
         ui.prompt_pick,
         ui.ranking, ui.cli, *downloads], api_name="compare", concurrency_id="nuisance",
    ).success(lambda: [gr.update(interactive=True)] * 3, None, downloads, queue=False, api_visibility="private")
    ui.prompt_pick.input(prompt_ranking, [state, ui.method_a, ui.method_b, ui.prompt_pick], ui.ranking,
                         api_name="prompt_ranking", concurrency_id="light", show_progress="hidden")
