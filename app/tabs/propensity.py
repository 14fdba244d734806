"""Tab 2, Propensity: p̂(x) = P(o = 1 | x), cross-fitted on the train + val impressions; its diagnostics, gate,
histogram and calibration, and what the clipping floor does to the IPS/DR weights.

Layout: :func:`build`; events: :func:`wire`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import polars as pl

from app import plots
from app.common import CLEAR_ERRORS, PROPENSITY_MODELS, fit_config, fmt, gate_md, guarded, md_table, notify, require
from app.session import Session
from causalrm.data import schema


def _observed(session: Session, rows: np.ndarray) -> np.ndarray:
    return session.log[schema.OBSERVED].cast(pl.Float64).fill_null(0.0).to_numpy()[rows]


class PropensityView(NamedTuple):
    state: Session
    diagnostics: str
    histogram: Any
    calibration: Any
    clip_text: str


def _propensity_md(diag: Any, note: str = "", gate: Any = None) -> str:
    rows = [("source", diag.source), ("rows (train + val)", f"{diag.n_rows:,}"),
            ("with feedback", f"{diag.n_observed:,}"), ("AUC (p̂ vs o)", fmt(diag.auc)),
            ("ECE", fmt(diag.ece)), ("Brier", fmt(diag.brier)),
            ("ESS of 1/p̂ weights", f"{diag.ess:,.0f} ({diag.ess_fraction:.0%} of observed)"),
            ("max weight", fmt(diag.max_weight, 1))]
    md = md_table(("diagnostic", "value"), rows)
    if gate is not None:
        md = gate_md(gate) + "\n\n" + md
    if diag.warnings:
        md += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in diag.warnings)
    return (note + "\n\n" + md) if note else md


def _clip_md(report: dict[str, Any]) -> str:
    return f"**Clip {report['clip']:g}**: {report['message']}."


@guarded
def fit_propensity(state: Session | None, model: str = "auto", clip: float = 0.1, seed: float = 0,
                   progress=gr.Progress()) -> PropensityView:
    """Cross-fit p̂(x) = P(o = 1 | x) on the train + val rows (``causalrm.nuisances.fit.fit_nuisances``)."""
    from causalrm.data.mixed_feedback import thumbs_reading
    from causalrm.nuisances.fit import fit_nuisances
    from causalrm.nuisances.propensity import clip_report, propensity_diagnostics

    session = require(state, embeddings=True)
    model = PROPENSITY_MODELS.get(model, model)
    session.propensity_settings = {"model": model, "clip": float(clip)}
    config = fit_config(session, method="ips", seed=int(seed or 0))
    progress(0.1, desc=f"cross-fitting the {model} propensity model")
    nuis = fit_nuisances(thumbs_reading(session.log), session.X, config, methods=["ips"])  # a mixed log: its thumbs
    session.propensity = nuis
    session.propensity_settings["seed"] = int(seed or 0)
    p = np.asarray(nuis.propensity, dtype=float)
    o = _observed(session, nuis.rows)
    note = (nuis.diagnostics.get("propensity") or {}).get("note", "")
    if note:
        notify(note)
    diag = (nuis.propensity_model.diagnostics_ if nuis.propensity_model is not None
            else propensity_diagnostics(p, o, float(clip), source="none (feedback-only log)"))
    for w in diag.warnings:
        notify(w)
    report = clip_report(p, float(clip), observed=o)
    return PropensityView(session, _propensity_md(diag, note, nuis.gates.get("propensity")),
                          plots.propensity_histogram(p, o, clip=float(clip)),
                          plots.calibration_curve(diag.calibration_predicted, diag.calibration_observed,
                                                  diag.calibration_count),
                          _clip_md(report))


@guarded
def clip_preview(state: Session | None, clip: float = 0.1) -> tuple[Session | None, str, Any]:
    """How many rows the floor ``clip`` raises (``causalrm.nuisances.propensity.clip_report``); updates the histogram line."""
    from causalrm.nuisances.propensity import clip_report

    if not isinstance(state, Session) or state.propensity is None:
        return state, "Fit the propensity model to see what the clip does.", gr.update()
    nuis = state.propensity
    p = np.asarray(nuis.propensity, dtype=float)
    o = _observed(state, nuis.rows)
    report = clip_report(p, float(clip), observed=o)
    state.propensity_settings["clip"] = float(clip)
    return state, _clip_md(report), plots.propensity_histogram(p, o, clip=float(clip))


# ---------------------------------------------------------------------------------------------------------------------
# layout and events
# ---------------------------------------------------------------------------------------------------------------------
class PropensityUI(NamedTuple):
    model: Any
    clip: Any
    seed: Any
    fit: Any
    status: Any
    clip_text: Any
    diagnostics: Any
    histogram: Any
    calibration: Any


def build() -> PropensityUI:
    """The Propensity tab (call inside the app's ``gr.Tabs``)."""
    with gr.Tab("2 · Propensity", id="propensity", elem_id="tab-propensity"):
        gr.Markdown("p̂(x) = P(o = 1 | x), cross-fitted on the train + val impressions. IPS/DR weight an "
                    "observed row by 1 / max(p̂, clip).", elem_classes="crm-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                prop_model = gr.Radio(list(PROPENSITY_MODELS), value="auto", label="propensity model",
                                      info="auto: logistic and MLP, the lower out-of-fold log loss")
                clip = gr.Slider(0.01, 0.5, value=0.1, step=0.01, label="clipping floor",
                                 elem_id="clip")
                prop_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                fit_prop_btn = gr.Button("Fit propensity", variant="primary", elem_id="fit-propensity")
                prop_status = gr.Markdown(elem_classes="crm-note", elem_id="prop-status")
                clip_md = gr.Markdown(elem_id="clip-report")
                prop_diag = gr.Markdown(elem_id="prop-diagnostics")
            with gr.Column(scale=3):
                prop_hist = gr.Plot(plots.empty("Fit the propensity model"), label="p̂ histogram",
                                    elem_id="prop-hist")
                prop_calib = gr.Plot(plots.empty("Calibration appears here"), label="calibration",
                                     elem_id="prop-calib")
    return PropensityUI(prop_model, clip, prop_seed, fit_prop_btn, prop_status, clip_md, prop_diag, prop_hist,
                        prop_calib)


def wire(state: Any, ui: PropensityUI) -> None:
    """The Propensity tab's events."""
    ui.fit.click(fit_propensity, [state, ui.model, ui.clip, ui.seed],
                 [state, ui.diagnostics, ui.histogram, ui.calibration, ui.clip_text], api_name="fit_propensity",
                 concurrency_id="nuisance", concurrency_limit=2
                 ).success(lambda: "", None, ui.status, queue=False, api_visibility="private", js=CLEAR_ERRORS)
    ui.clip.release(clip_preview, [state, ui.clip], [state, ui.clip_text, ui.histogram], api_name="clip_report",
                    concurrency_id="light", show_progress="hidden")
