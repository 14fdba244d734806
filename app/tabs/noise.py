"""Tab 3, Noise: the flip rates ρ01, ρ10 by anchor points on a calibrated out-of-fold proxy (and from gold labels
when the log has them, or set by hand), their gate, and which rates training will use.

Layout: :func:`build`; events: :func:`wire`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import polars as pl

from app import plots
from app.common import CLEAR_ERRORS, FLIP_METHODS, ci_text, fit_config, gate_md, guarded, notify, require
from app.session import Session
from causalrm.errors import InputError


class NoiseView(NamedTuple):
    state: Session
    estimates: pl.DataFrame
    heatmap: Any
    proxy: Any
    sweep: Any
    summary: str


@guarded
def estimate_noise(state: Session | None, flip_method: str = "anchor quantile (default)", quantile: float = 0.97,
                   use_manual: bool = False, rho01_manual: float = 0.2, rho10_manual: float = 0.1,
                   seed: float = 0, progress=gr.Progress()) -> NoiseView:
    """Estimate ρ01, ρ10 (anchor points on a calibrated out-of-fold proxy, and gold labels when the log has them)."""
    from causalrm.pipeline import fit_nuisances

    session = require(state, embeddings=True)
    method = FLIP_METHODS.get(flip_method, flip_method)
    if method not in FLIP_METHODS.values():
        raise InputError(f"flip-rate method {flip_method!r}: choose one of {', '.join(FLIP_METHODS)}")
    seed = int(seed or 0)
    rows: list[dict[str, Any]] = []
    progress(0.1, desc="fitting the anchor proxy")
    anchor_method = method if method != "gold" else "anchor-quantile"
    cfg = fit_config(session, method="denoise", flip_method=anchor_method, quantile=float(quantile), seed=seed,
                      rho01=None, rho10=None)
    anchor = fit_nuisances(session.log, session.X, cfg, methods=["denoise"], reuse=session.propensity)
    est = anchor.flip_estimator
    rows.append({"estimate": f"anchor ({anchor_method}, q = {float(quantile):g})", "rho01": anchor.rho01,
                 "rho01 95% CI": ci_text(anchor.rho_ci, "rho01"), "rho10": anchor.rho10,
                 "rho10 95% CI": ci_text(anchor.rho_ci, "rho10")})
    gold = (anchor.diagnostics.get("flip_rates") or {}).get("gold_check")  # fitted beside the anchors (pipeline)
    if gold and "error" in gold:
        notify(f"gold-set estimate unavailable: {gold['error']}")
        gold = None
    elif gold:
        rows.append({"estimate": f"gold labels (n = {gold['n_gold']})", "rho01": gold["rho01"],
                     "rho01 95% CI": ci_text(gold["ci"], "rho01"), "rho10": gold["rho10"],
                     "rho10 95% CI": ci_text(gold["ci"], "rho10")})
    truth = None
    if session.source.get("kind") == "simulated":
        truth = (session.source["rho01"], session.source["rho10"])
        real = session.source.get("realised") or {}
        rows.append({"estimate": "true (simulation setting)", "rho01": truth[0], "rho01 95% CI": "",
                     "rho10": truth[1], "rho10 95% CI": ""})
        if real.get("rho01_hat") is not None:
            rows.append({"estimate": "realised in this log", "rho01": real["rho01_hat"], "rho01 95% CI": "",
                         "rho10": real["rho10_hat"], "rho10 95% CI": ""})
    manual = None
    if use_manual:
        from causalrm.losses import check_rates

        manual = check_rates(float(rho01_manual), float(rho10_manual))
        rows.append({"estimate": "manual override (used)", "rho01": manual[0], "rho01 95% CI": "",
                     "rho10": manual[1], "rho10 95% CI": ""})
    if manual is not None:
        used, origin = manual, "manual override"
    elif method == "gold" and gold is not None:
        used, origin = (gold["rho01"], gold["rho10"]), "gold labels"
    elif method == "gold":
        raise InputError("gold-label estimate failed; choose an anchor method")
    else:
        used, origin = (anchor.rho01, anchor.rho10), f"anchor ({anchor_method})"
    session.flip = anchor
    session.rho, session.rho_origin = (float(used[0]), float(used[1])), origin
    session.noise_settings = {"flip_method": "gold" if (method == "gold" and manual is None) else anchor_method,
                              "quantile": float(quantile), "manual": manual, "seed": seed}
    table = pl.DataFrame(rows).with_columns(pl.col("rho01", "rho10").cast(pl.Float64).round(4))

    diag = dict(getattr(est, "diagnostics_", None) or {})
    for w in diag.get("warnings", []):
        notify(w)
    scores = getattr(est, "proxy_scores_", None)
    q_used = diag.get("quantile", float(quantile))
    # the anchor estimates are the (1 - q) and q quantiles of the proxy scores: rho10 and 1 - rho01
    proxy_fig = (plots.proxy_scores(scores, lower=anchor.rho10, upper=1.0 - anchor.rho01,
                                    quantile=q_used if q_used < 1.0 else None)
                 if scores is not None else plots.empty("no proxy scores"))
    sweep = diag.get("sweep") or {}
    if sweep.get("q"):
        sweep_fig = plots.q_sweep(sweep["q"], sweep["rho01"], sweep["rho10"], chosen=q_used, true=truth)
    else:
        sweep_fig = plots.empty("no q-sweep available")
    from causalrm.gates import flip_rate_gate

    if manual is not None:
        gate = flip_rate_gate({"method": "fixed", "rho01": used[0], "rho10": used[1]})
    elif origin == "gold labels":
        gate = flip_rate_gate({"method": "gold", "rho01": used[0], "rho10": used[1], "ci": gold["ci"],
                               "n_gold": gold["n_gold"]})
    else:
        gate = anchor.gates["flip_rates"]
    summary = gate_md(gate) + "\n\n" + _use_md(gate, used, origin)
    proxy_info = diag.get("proxy") or {}
    if proxy_info.get("oof_auc") is not None:
        summary += (f"\n\nProxy out-of-fold AUC {proxy_info['oof_auc']:.3f} on {diag.get('n_observed', '?')} "
                    "observed rows.")
    spread = diag.get("sweep_spread")
    if spread:
        summary += (f" Over q in [0.95, 0.99] the estimates move by {spread['rho01']:.3f} (ρ01) and "
                    f"{spread['rho10']:.3f} (ρ10).")
    if diag.get("warnings"):
        summary += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in diag["warnings"])
    return NoiseView(session, table, plots.transition_heatmap(used[0], used[1]), proxy_fig, sweep_fig, summary)


def _use_md(gate: Any, used: tuple[float, float], origin: str) -> str:
    """Whether training will use the rates: "Training will use" only when the gate lets the noise-aware methods
    train; otherwise that they will not, and the remedy that fits the rates' origin (never gold labels to a user whose
    rates came from gold labels)."""
    rates = f"ρ01 = {used[0]:.3f}, ρ10 = {used[1]:.3f}"
    margin = 1 - used[0] - used[1]
    if not gate.passed:
        better = ("label more rows on the Audit tab" if origin == "gold labels"
                  else "better: audited gold labels (Audit tab) or rates set by hand")
        return (f"These rates ({rates}, {origin}) will **not** be used: noise-aware methods (denoise, causalrm-*) "
                "will not train unless you tick **train noise-aware methods anyway** on the Train tab, which trains "
                f"them with these rates; {better}.")
    text = (f"Training will use **{rates}** ({origin}) in the noise-aware methods. Their losses divide by "
            f"1 − ρ01 − ρ10 = {margin:.3f}.")
    return text + (" ⚠️ This is small: the corrected loss will have high variance." if margin < 0.3 else "")


# ---------------------------------------------------------------------------------------------------------------------
# layout and events
# ---------------------------------------------------------------------------------------------------------------------
class NoiseUI(NamedTuple):
    flip_method: Any
    quantile: Any
    use_manual: Any
    rho01: Any
    rho10: Any
    seed: Any
    estimate: Any
    status: Any
    summary: Any
    table: Any
    heatmap: Any
    sweep: Any
    proxy: Any


def build() -> NoiseUI:
    """The Noise tab (call inside the app's ``gr.Tabs``)."""
    with gr.Tab("3 · Noise", id="noise", elem_id="tab-noise"):
        gr.Markdown("Flip rates by anchor points: a calibrated, out-of-fold proxy P(r = 1 | x) on observed "
                    "rows; ρ̂10 = its (1 − q) quantile, ρ̂01 = 1 − its q quantile. Gold labels, when the log "
                    "has them, give a direct estimate.", elem_classes="crm-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                flip_method = gr.Radio(list(FLIP_METHODS)[:2], value=list(FLIP_METHODS)[0],
                                       label="estimate used for training")
                quantile = gr.Slider(0.80, 1.0, value=0.97, step=0.005, label="anchor quantile q")
                with gr.Accordion("Manual override", open=False):
                    use_manual = gr.Checkbox(False, label="use these flip rates instead")
                    rho01_m = gr.Number(0.2, minimum=0, maximum=0.49, label="ρ01")
                    rho10_m = gr.Number(0.1, minimum=0, maximum=0.49, label="ρ10")
                noise_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                noise_btn = gr.Button("Estimate noise", variant="primary", elem_id="estimate-noise")
                noise_status = gr.Markdown(elem_classes="crm-note", elem_id="noise-status")
                noise_summary = gr.Markdown(elem_id="noise-summary")
            with gr.Column(scale=3):
                noise_table = gr.Dataframe(label="flip-rate estimates", interactive=False,
                                           elem_id="noise-table")
                with gr.Row():
                    noise_heat = gr.Plot(plots.empty("Transition matrix"), label="transition matrix",
                                         elem_id="noise-heatmap")
                    noise_sweep = gr.Plot(plots.empty("q-sweep"), label="q sweep", elem_id="noise-sweep")
                noise_proxy = gr.Plot(plots.empty("Proxy scores"), label="proxy scores",
                                      elem_id="noise-proxy")
    return NoiseUI(flip_method, quantile, use_manual, rho01_m, rho10_m, noise_seed, noise_btn, noise_status,
                   noise_summary, noise_table, noise_heat, noise_sweep, noise_proxy)


def wire(state: Any, ui: NoiseUI) -> None:
    """The Noise tab's events."""
    ui.estimate.click(estimate_noise, [state, ui.flip_method, ui.quantile, ui.use_manual, ui.rho01, ui.rho10, ui.seed],
                      [state, ui.table, ui.heatmap, ui.proxy, ui.sweep, ui.summary], api_name="estimate_noise",
                      concurrency_id="nuisance"
                      ).success(lambda: "", None, ui.status, queue=False, api_visibility="private", js=CLEAR_ERRORS)
