"""Tab 3, Noise: the flip rates ρ01, ρ10 by anchor points on a calibrated out-of-fold proxy (and from gold labels
when the log has them, or set by hand), their gate, and which rates training will use. On an implicit log
(``causalrm.data.feedback_kinds``) never anchors: the rates are ρ01 = 1 − c, ρ10 = ε from the event rates given on the
tab, or from gold labels; without either the tab says they are not identifiable and what to do.

Layout: :func:`build`; events: :func:`wire`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import polars as pl

from app import plots
from app.common import (
    CLEAR_ERRORS,
    EVENT_RATES,
    FLIP_METHODS,
    IMPLICIT_NEEDS_APP,
    ci_text,
    featureless,
    fit_config,
    gate_md,
    guarded,
    has_gold,
    methods_update,
    notify,
    require,
)
from app.pairwise import position_md
from app.session import Session
from causalrm.data.feedback_kinds import IMPLICIT, MIXED, kind_of
from causalrm.data.pairwise import is_pair_log, position_summary
from causalrm.errors import InputError


class NoiseView(NamedTuple):
    state: Session
    estimates: pl.DataFrame
    heatmap: Any
    proxy: Any
    sweep: Any
    summary: str
    position: Any = gr.update(visible=False)  # an A/B log's votes by position (plots.position_bars), else hidden


@guarded
def estimate_noise(state: Session | None, flip_method: str = "anchor quantile (default)", quantile: float = 0.97,
                   use_manual: bool = False, rho01_manual: float = 0.2, rho10_manual: float = 0.1,
                   seed: float = 0, event_rate: float | None = None, accidental_rate: float | None = 0.0,
                   progress=gr.Progress()) -> NoiseView:
    """Estimate ρ01, ρ10 (anchor points on a calibrated out-of-fold proxy, and gold labels when the log has them).
    On an implicit log: the rates from ``event_rate`` c and ``accidental_rate`` ε, or from gold labels
    (:func:`implicit_noise`)."""
    from causalrm.data.mixed_feedback import thumbs_reading
    from causalrm.nuisances.fit import fit_nuisances

    session = require(state)
    if kind_of(session.log) == IMPLICIT:
        return implicit_noise(session, flip_method, event_rate, accidental_rate, int(seed or 0))
    require(session, embeddings=True)
    method = FLIP_METHODS.get(flip_method, flip_method)
    if method not in FLIP_METHODS.values():
        raise InputError(f"flip-rate method {flip_method!r}: choose one of {', '.join(FLIP_METHODS)}")
    seed = int(seed or 0)
    rows: list[dict[str, Any]] = []
    progress(0.1, desc="fitting the anchor proxy")
    anchor_method = method if method != "gold" else "anchor-quantile"
    cfg = fit_config(session, method="denoise", flip_method=anchor_method, quantile=float(quantile), seed=seed,
                      rho01=None, rho10=None)
    anchor = fit_nuisances(thumbs_reading(session.log), session.X, cfg, methods=["denoise"],  # a mixed log: thumbs
                           reuse=session.propensity)
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
        from causalrm.estimators.base_losses import check_rates

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
    from causalrm.nuisances.gates import flip_rate_gate

    if manual is not None:
        gate = flip_rate_gate({"method": "fixed", "rho01": used[0], "rho10": used[1]})
    elif origin == "gold labels":
        gate = flip_rate_gate({"method": "gold", "rho01": used[0], "rho10": used[1], "ci": gold["ci"],
                               "n_gold": gold["n_gold"]})
    else:
        gate = anchor.gates["flip_rates"]
    summary = gate_md(gate) + "\n\n" + _use_md(gate, used, origin)
    n_observed = anchor.diagnostics.get("n_observed")  # the train/val rows with feedback
    if n_observed:
        from causalrm.evaluation.information import effective_sample_size

        summary += (f" At these rates your {n_observed:,} labels on the train/val rows carry about as much as "
                    f"**{effective_sample_size(n_observed, *used):,} clean ones** (n (1 − ρ01 − ρ10)², the "
                    "information limit of noisy labels; docs/RESULTS.md).")
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
    if kind_of(session.log) == MIXED:
        summary += ("\n\nThis is a **mixed log**: these are the thumbs' rates. Training also learns from the events, "
                    "whose rates come from gold labels (label rows on the Audit tab; its sample covers every "
                    "impression) or, on the command line, from `--event-rate` / `--accidental-rate`.")
    if is_pair_log(session.log):  # an A/B log: the flip rates are the position bias, said in words and drawn
        summary += "\n\n" + position_md(session.log)
        position = gr.update(value=plots.position_bars(position_summary(session.log)), visible=True)
        return NoiseView(session, table, plots.transition_heatmap(*used), proxy_fig, sweep_fig, summary, position)
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


def implicit_noise(session: Session, choice: str, event_rate: float | None, accidental_rate: float | None,
                   seed: int) -> NoiseView:
    """An implicit log's flip rates: ρ01 = 1 − c, ρ10 = ε from the event rates given (``choice`` EVENT_RATES), or
    from the gold labels; never anchors (no event is never a sure negative). Without rates: the propensity gate
    alone (every impression observed) and a summary saying the rates are not identifiable and what to do."""
    from causalrm.data.feedback_kinds import event_flip_rates
    from causalrm.nuisances.fit import fit_nuisances

    gold = choice != EVENT_RATES
    if gold and not has_gold(session.log):
        raise InputError("gold labels: label rows on the Audit tab first, or give the event rates c and ε")
    missing = lambda v: v is None or v != v  # noqa: E731 - an empty number field
    c = None if missing(event_rate) else float(event_rate)
    # the ε field holds 0 until edited: without c, only an ε the user set is an error
    eps = None if missing(accidental_rate) or (c is None and not float(accidental_rate)) else float(accidental_rate)
    rates = None if gold else event_flip_rates(c, eps)
    methods = ["causalrm-ips"] if gold or rates else ["ips"]  # flip rates (when there are some) and the p = 1 gate
    source = ({"flip_method": "gold"} if gold else
              {"flip_method": "fixed", "rho01": rates[0], "rho10": rates[1]} if rates else {})
    cfg = fit_config(session, method=methods[0], seed=seed, **{"rho01": None, "rho10": None, **source})
    nuis = fit_nuisances(session.log, featureless(session.log) if session.X is None else session.X, cfg,
                         methods=methods)
    session.flip = nuis
    prop = gate_md(nuis.gates["propensity"])
    if nuis.rho01 is None:
        session.rho, session.rho_origin, session.noise_settings = None, "", {}
        summary = (f"{prop}\n\n⚠️ **The event rates are not identifiable from the events alone**: an impression "
                   "without an event may be a good response nobody copied, so no row is a sure negative and anchor "
                   f"points cannot find c or ε. To calibrate the reward, {IMPLICIT_NEEDS_APP}. Until then train "
                   "naive or auto: the model ranks the impressions by P(event | x) but its σ(z) is not a calibrated "
                   "P(good | x).")
        empty = pl.DataFrame(schema={"estimate": pl.String, "rho01": pl.Float64, "rho01 95% CI": pl.String,
                                     "rho10": pl.Float64, "rho10 95% CI": pl.String})
        no_anchors = plots.empty("implicit feedback: no anchors")
        return NoiseView(session, empty, plots.empty("no flip rates yet"), no_anchors, no_anchors, summary)
    used = (float(nuis.rho01), float(nuis.rho10))
    origin = "gold labels" if gold else "event rates given"
    rows = [{"estimate": (f"gold labels (n = {nuis.diagnostics['flip_rates'].get('n_gold', '?')})" if gold else
                          f"event rates given (c = {1 - used[0]:g}, ε = {used[1]:g})"),
             "rho01": used[0], "rho01 95% CI": ci_text(nuis.rho_ci, "rho01") if gold else "",
             "rho10": used[1], "rho10 95% CI": ci_text(nuis.rho_ci, "rho10") if gold else ""}]
    check = (nuis.diagnostics.get("flip_rates") or {}).get("gold_check")
    if not gold and check and "error" not in check:
        rows.append({"estimate": f"gold labels (n = {check['n_gold']}, not used)", "rho01": check["rho01"],
                     "rho01 95% CI": ci_text(check["ci"], "rho01"), "rho10": check["rho10"],
                     "rho10 95% CI": ci_text(check["ci"], "rho10")})
    session.rho, session.rho_origin = used, origin
    session.noise_settings = {"flip_method": cfg.flip_method, "quantile": cfg.quantile,
                              "manual": None if gold else used, "seed": seed}
    flip = nuis.gates["flip_rates"]
    summary = (f"{prop}\n\n{gate_md(flip)}\n\nρ01 = 1 − c = {used[0]:.3f}, ρ10 = ε = {used[1]:.3f} ({origin}): "
               + ("the noise-aware methods (denoise, nnpu) train with them; their losses divide by "
                  f"1 − ρ01 − ρ10 = {1 - used[0] - used[1]:.3f}." if flip.passed else
                  "the noise-aware methods will not train with them unless you tick **train noise-aware methods "
                  "anyway** on the Train tab; label more rows on the Audit tab."))
    table = pl.DataFrame(rows).with_columns(pl.col("rho01", "rho10").cast(pl.Float64).round(4))
    return NoiseView(session, table, plots.transition_heatmap(*used), plots.empty("implicit feedback: no anchors"),
                     plots.empty("implicit feedback: no anchors"), summary)


def implicit_fields(state: Session | None) -> tuple[Any, Any, Any]:
    """The fields that follow the log's kind: the event rates (implicit logs), the anchor quantile and the manual
    override (explicit logs)."""
    implicit = isinstance(state, Session) and state.log is not None and kind_of(state.log) == IMPLICIT
    return gr.update(visible=implicit), gr.update(visible=not implicit), gr.update(visible=not implicit)


def train_methods(state: Session | None, selected: list[str] | None) -> Any:
    """The Train tab's methods after an estimate (``common.method_choices``: on an implicit log, those its rates
    allow)."""
    if not isinstance(state, Session) or state.log is None:
        return gr.update()
    return methods_update(state.log, state.flip, selected)


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
    event_rates: Any  # the implicit-log fields: shown for implicit logs only
    event_rate: Any
    accidental_rate: Any
    manual_box: Any
    position: Any  # an A/B log's votes by position: shown for A/B logs only


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
                with gr.Column(visible=False) as event_rates:
                    gr.Markdown("Implicit feedback (events such as copies): ρ01 = 1 − c, ρ10 = ε. They are not "
                                "identifiable from the events alone: give them here, or label rows on the Audit "
                                "tab and choose gold labels.", elem_classes="crm-note")
                    event_rate = gr.Number(None, minimum=0, maximum=1, label="event rate of good responses c",
                                           elem_id="event-rate", info="P(event | good response)")
                    accidental_rate = gr.Number(0.0, minimum=0, maximum=1, label="accidental rate ε",
                                                elem_id="accidental-rate", info="P(event | bad response), below c")
                with gr.Accordion("Manual override", open=False) as manual_box:
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
                position = gr.Plot(label="votes by position (A/B log)", visible=False, elem_id="noise-position")
    return NoiseUI(flip_method, quantile, use_manual, rho01_m, rho10_m, noise_seed, noise_btn, noise_status,
                   noise_summary, noise_table, noise_heat, noise_sweep, noise_proxy, event_rates, event_rate,
                   accidental_rate, manual_box, position)


def wire(state: Any, ui: NoiseUI, *, train: Any) -> None:
    """The Noise tab's events (``train``: the Train tab's components, whose methods follow an implicit log's rates)."""
    ui.flip_method.change(implicit_fields, state, [ui.event_rates, ui.quantile, ui.manual_box], queue=False,
                          api_visibility="private")
    ui.estimate.click(estimate_noise, [state, ui.flip_method, ui.quantile, ui.use_manual, ui.rho01, ui.rho10, ui.seed,
                                       ui.event_rate, ui.accidental_rate],
                      [state, ui.table, ui.heatmap, ui.proxy, ui.sweep, ui.summary, ui.position],
                      api_name="estimate_noise",
                      concurrency_id="nuisance"
                      ).success(lambda: "", None, ui.status, queue=False, api_visibility="private", js=CLEAR_ERRORS
                      ).success(train_methods, [state, train.methods], train.methods, queue=False,
                                api_visibility="private")
