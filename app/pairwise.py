"""The workbench on an A/B preference log (``causalrm.data.pairwise``: one row per pair, a vote for a or b).

What the tabs show differently on such a log: the Data tab's summary and preview (pairs, votes, both responses), the
bundled A/B samples, the Noise tab's position bias (:func:`position_md`, ``plots.position_bars``), the Compare tab's
pairwise accuracy and the rankings of single responses (:func:`compare_pairs`), and the Audit tab's two responses side
by side (the tab reads ``pairwise.RESPONSE_A`` / ``RESPONSE_B``). Training needs nothing here: the core fits the
pairs' Bradley-Terry logit z_a - z_b (``causalrm.training.pairs``) and keeps a pointwise reward model.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import numpy as np
import polars as pl

from app import plots
from app.common import fmt
from app.session import Session
from causalrm.data import schema
from causalrm.data.pairwise import RESPONSE_A, RESPONSE_B, position_summary, sides, split_features

SAMPLE_REAL = "UltraFeedback A/B (real GPT-4 preferences)"
SAMPLE_SIMULATED = "WildBench A/B (simulated votes, position bias)"
SAMPLES = (SAMPLE_REAL, SAMPLE_SIMULATED)
#: what the real sample cannot show, said wherever it is loaded
REAL_NOTE = ("every pair is voted and the file records no display order: there is **no selection and no position "
             "bias to undo** here (a and b drawn per pair, seed 0); it shows the A/B flow on real texts. The "
             "simulated WildBench A/B sample has both")
PREVIEW_CHARS = 100


def load_sample(sample: str, seed: int, embedder: Any) -> tuple[pl.DataFrame, dict[str, Any], np.ndarray | None]:
    """A bundled A/B sample: ``(log, source, X)``. The real UltraFeedback pairs (``X`` None: embedded from the
    shipped cache next), or an A/B log simulated from WildBench's rated responses (``causalrm.simulation.pairwise``
    with its defaults, teacher scores on ``embedder``'s vectors; ``X`` the pairs' features of those vectors)."""
    if sample == SAMPLE_REAL:
        from causalrm.data.datasets import PAIRS_SAMPLE, load_pairs_sample

        source = {"kind": "pairs", "label": SAMPLE_REAL, "note": REAL_NOTE, "file": f"data/{PAIRS_SAMPLE}"}
        return load_pairs_sample(), source, None
    from causalrm.data.pairwise import pair_features
    from causalrm.simulation.pairwise import DEFAULTS, INDEX_A, INDEX_B, simulate_pairs
    from causalrm.simulation.simulate import load_for_simulation

    rated, X = load_for_simulation("wildbench", embedder=embedder, teacher=True)
    log, _ = simulate_pairs(rated, rating="teacher", embeddings=X, seed=seed, dataset="wildbench")
    note = (f"simulated from WildBench (teacher scores, seed {seed}): votes on about {DEFAULTS['vote_rate']:.0%} of "
            f"the train/val pairs, likelier on clear differences; P(vote b | a better) = {DEFAULTS['rho01']:g}, "
            f"P(vote a | b better) = {DEFAULTS['rho10']:g}, a always shown first; test pairs clean")
    source = {"kind": "pairs", "label": SAMPLE_SIMULATED, "seed": seed, "note": note, "file": "sim_ab.parquet",
              "command": f"causalrm simulate --dataset wildbench --pairwise --rating teacher --seed {seed} "
                         "--out sim_ab.parquet"}
    return log, source, pair_features(X[log[INDEX_A].to_numpy()], X[log[INDEX_B].to_numpy()])


def summary_head(session: Session) -> str:
    """The Data tab's first line on an A/B log: pairs, votes and where they went."""
    log = session.log
    s = position_summary(log)
    line = (f"**{session.source.get('label', 'log')}**: {s['pairs']:,} pairs, {s['votes']:,} with a vote "
            f"({s['votes'] / max(s['pairs'], 1):.1%}); {fmt(100 * s['for_a'], 1)}% of the votes for a")
    if schema.SPLIT in log.columns and (log[schema.SPLIT] == schema.TEST).any():
        fit = log.filter((pl.col(schema.SPLIT) != schema.TEST).fill_null(True))
        votes = int(fit[schema.OBSERVED].sum())
        line += (f". On the train/val pairs, which models are fitted on, {votes:,} of {fit.height:,} have a vote "
                 f"({votes / max(fit.height, 1):.1%}); the {log.height - fit.height:,} test pairs are held out")
    note = session.source.get("note")
    return line + (f". This sample: {note}." if note else ".")


def preview(log: pl.DataFrame, rows: int) -> pl.DataFrame:
    """The first ``rows`` pairs, both responses cut to :data:`PREVIEW_CHARS` characters."""
    order = (schema.RESPONSE_ID, schema.FEEDBACK, schema.OBSERVED, schema.SPLIT, schema.GOLD_LABEL, schema.TRUE_LABEL,
             schema.PROMPT, RESPONSE_A, RESPONSE_B)
    head = log.head(rows).select([c for c in order if c in log.columns])
    limits = {schema.PROMPT: 80, RESPONSE_A: PREVIEW_CHARS, RESPONSE_B: PREVIEW_CHARS}
    return head.with_columns([pl.col(c).str.slice(0, n).alias(c) for c, n in limits.items()])


def position_md(log: pl.DataFrame) -> str:
    """The Noise tab's position bias in words (``pairwise.position_summary`` on the voted pairs)."""
    s = position_summary(log)
    where = "the first-shown response (a)" if s["position_logged"] else "a (the log records no display order)"
    text = (f"**Position bias.** {s['votes']:,} of {s['pairs']:,} pairs have a vote; "
            f"{fmt(100 * s['for_a'], 1)}% of the votes went to {where}.")
    if "label" in s:
        text += (f" On the voted pairs with `{s['label']}` (a better on {s['n_a_better']:,}, b better on "
                 f"{s['n_b_better']:,}): P(vote b | a better) = {fmt(s['rho01'])}, P(vote a | b better) = "
                 f"{fmt(s['rho10'])}, plain counts (no weighting).")
        if s["position_logged"] and math.isfinite(s["rho10"]) and math.isfinite(s["rho01"]):
            text += (" Users lean toward the first-shown response." if s["rho10"] > s["rho01"] else
                     " No lean toward the first-shown response.")
    elif s["position_logged"]:
        text += " Without labels the bias shows in the flip rates above: ρ10 > ρ01 is a lean toward a."
    return text + (" On an A/B log ρ01 = P(vote b | a better) and ρ10 = P(vote a | b better).")


def evaluated_pairs(log: pl.DataFrame, split: np.ndarray) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The pairs to measure accuracy on: ``(rows, labels 1 = a better, what)``. The clean ``true_label`` of the
    held-out (test) pairs (a simulation), else gold labels where given (an audit), else the held-out pairs' own
    votes; None if there are none."""
    test = np.asarray(split) == schema.TEST
    for column, what, where in ((schema.TRUE_LABEL, "clean labels of the held-out test pairs", test),
                                (schema.GOLD_LABEL, "gold labels (every labelled pair)", np.ones(log.height, bool)),
                                (schema.FEEDBACK, "the votes of the held-out test pairs", test)):
        if column in log.columns:
            v = log[column].cast(pl.Float64).to_numpy()
            rows = np.flatnonzero(where & ~np.isnan(v))
            if rows.size:
                return rows, v[rows], what
    return None


def pairwise_accuracy(labels: np.ndarray, z: np.ndarray) -> float:
    """Share of pairs whose logit z = z_a - z_b has the label's sign (1 = a better: z > 0); z = 0 counts 1/2."""
    labels, z = np.asarray(labels, dtype=float), np.asarray(z, dtype=float)
    return float(np.mean(np.where(z == 0, 0.5, (z > 0) == (labels > 0.5))))


def response_scores(session: Session, methods: list[str]) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """The log's single responses (``pairwise.sides``, a and b stacked; a response in several pairs kept once) and each
    method's pointwise reward z of them (its trained backbone, ``FitResult.score``)."""
    a, b = sides(session.log)
    Xa, Xb = split_features(session.X) if session.X is not None else (None, None)
    both = pl.concat([a, b], how="vertical_relaxed").with_row_index("_row")
    keep = both.unique(subset=[schema.PROMPT, schema.RESPONSE], keep="first", maintain_order=True)
    rows = keep["_row"].to_numpy()
    X = None if Xa is None else np.vstack([Xa, Xb])[rows]
    responses = keep.drop("_row")
    return responses, {m: session.results[m].score(responses, X).astype(np.float64) for m in methods}


def compare_pairs(session: Session, a: str, b: str, rewards: dict[str, np.ndarray]) -> dict[str, Any]:
    """The Compare tab on an A/B log (its ``CompareView`` fields up to ``ranking``): each method's pairwise accuracy
    (sign of z_a - z_b against :func:`evaluated_pairs`, 95% bootstrap interval), the pairs' P(a better) under both
    models, and the rankings of single responses under the two pointwise reward models."""
    from app.tabs.compare import _short
    from causalrm.evaluation.metrics import bootstrap_ci, sigmoid

    log = session.log
    split = session.results[b].split
    found = evaluated_pairs(log, split)
    rows, bars = [], []
    if found is not None:
        idx, labels, what = found
        for method, z in rewards.items():
            acc = pairwise_accuracy(labels, z[idx])
            lo, hi = bootstrap_ci(pairwise_accuracy, labels, z[idx], n_boot=500, seed=0)
            rows.append({"method": method, "pairwise accuracy": f"{acc:.4f} [{lo:.3f}, {hi:.3f}]", "pairs": idx.size})
            bars.append({"method": method, "value": acc, "lo": lo, "hi": hi})
        note = (f"**Pairwise accuracy**: the share of pairs where the model prefers the response the label prefers "
                f"(z_a − z_b > 0 when a is better), against **{what}** ({idx.size:,} pairs), with 95% bootstrap "
                "intervals. 0.5 is a coin flip.")
        label_name = "a better"
    else:
        idx, labels, label_name = np.arange(log.height), None, "label"
        note = "No labelled or held-out pairs: no pairwise accuracy. Shown: the two models' rankings."
    metrics = pl.DataFrame(rows) if rows else pl.DataFrame()
    figure = plots.metric_bars(bars, metric="pairwise accuracy", order=list(session.results))
    hover = [_short(p, 90) for p in log[schema.PROMPT].gather(idx).to_list()]
    scatter = plots.reward_scatter(sigmoid(rewards[a][idx]), sigmoid(rewards[b][idx]), x_name=a, y_name=b,
                                   labels=labels, label_name=label_name, hover=hover)

    if a == b:  # one model: its accuracy, no second ranking to set beside its own
        lines = [f"Train a second method to compare how **{a}** and another model rank the single responses."]
        movers, choices, default, ranking = pl.DataFrame({"shift": []}), [], None, pl.DataFrame()
    else:
        lines, movers, choices, default, ranking = _rankings(session, a, b)
    return {"metrics": metrics, "metrics_shown": gr.update(visible=bool(rows)), "metrics_note": note,
            "metric_plot": gr.update(value=figure, label="pairwise accuracy by method"), "scatter": scatter,
            "rank_summary": "\n\n".join(lines), "movers": movers,
            "prompt_choices": gr.update(choices=choices, value=default), "ranking": ranking}


def _rankings(session: Session, a: str, b: str) -> tuple[list[str], pl.DataFrame, list, str | None, pl.DataFrame]:
    """The single responses ranked by the two pointwise reward models: summary lines, the responses that moved most,
    the prompt choices (most disputed first) and the default prompt's rankings side by side."""
    from app.tabs.compare import _prompt_choices, _short, prompt_ranking_table
    from causalrm.evaluation.ranking import compare_rankings

    responses, single = response_scores(session, [a, b])
    scored = {m: responses.with_columns(pl.Series("reward", z)) for m, z in single.items()}
    cmp = compare_rankings(scored[a], scored[b], names=(a, b), top_k=10, n_shifts=15)
    lines = [f"**Single responses** ranked by each pointwise reward model (the backbone of z_a − z_b): **{a}** vs "
             f"**{b}** on {cmp.n:,} responses: Kendall τ = **{cmp.kendall:+.3f}**, top-{cmp.top_k} overlap "
             f"{cmp.top_k_overlap:.0%}."]
    if cmp.n_prompts:
        lines.append(f"Within prompts ({cmp.n_prompts:,} with ≥ 2 responses): mean Kendall τ "
                     f"{fmt(cmp.prompt_kendall_mean)}, same top response in {fmt(100 * cmp.prompt_top1_agreement, 0)}%"
                     " of prompts.")
    movers = pl.DataFrame([{"rank " + a: s["rank_a"], "rank " + b: s["rank_b"], "shift": s["shift"],
                            "response": _short(s.get(schema.RESPONSE), 300),
                            "prompt": _short(s.get(schema.PROMPT), 160), "response_id": s["response_id"]}
                           for s in cmp.shifts]) if cmp.shifts else pl.DataFrame({"shift": []})
    choices, default = _prompt_choices(responses, cmp)
    ranking = (prompt_ranking_table(session, a, b, default, rewards=single, log=responses) if default is not None
               else pl.DataFrame())
    return lines, movers, choices, default, ranking
