"""Plotly figures of the workbench. Pure functions from arrays / tables to ``go.Figure``; no estimation here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

OBSERVED_COLOR = "#4f46e5"
UNOBSERVED_COLOR = "#9ca3af"
ACCENT = "#059669"
WARN = "#dc2626"
PALETTE = ("#4f46e5", "#059669", "#d97706", "#dc2626", "#0891b2", "#7c3aed", "#65a30d", "#db2777", "#475569")
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=45), height=360,
               legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))


def _figure(title: str, xaxis: str, yaxis: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), xaxis_title=xaxis, yaxis_title=yaxis,
                      **{**_LAYOUT, **layout})
    return fig


def empty(message: str = "Nothing to show yet") -> go.Figure:
    """A blank figure carrying a centred hint."""
    fig = _figure("", "", "", height=260)
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#6b7280"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def method_color(method: str, order: Sequence[str]) -> str:
    order = list(order)
    return PALETTE[order.index(method) % len(PALETTE)] if method in order else PALETTE[-1]


# ---- propensity ----------------------------------------------------------------------------------------------------
def propensity_histogram(p_hat: np.ndarray, observed: np.ndarray, *, clip: float | None = None) -> go.Figure:
    """Overlaid histograms of p-hat for observed and unobserved impressions, with the clipping floor."""
    p_hat = np.asarray(p_hat, dtype=float)
    observed = np.asarray(observed).astype(bool)
    fig = _figure("Estimated propensity p̂(x) by feedback status", "p̂(x) = P(o = 1 | x)", "share of rows",
                  barmode="overlay")
    bins = dict(start=0.0, end=1.0, size=0.025)
    for mask, name, color in ((~observed, "no feedback (o = 0)", UNOBSERVED_COLOR), (observed, "feedback (o = 1)",
                                                                                    OBSERVED_COLOR)):
        if mask.any():
            fig.add_trace(go.Histogram(x=p_hat[mask], name=f"{name}, n = {int(mask.sum()):,}", xbins=bins,
                                       histnorm="probability", marker_color=color, opacity=0.6))
    if clip is not None:
        fig.add_vline(x=float(clip), line=dict(color=WARN, dash="dash"),
                      annotation=dict(text=f"clip {clip:g}", font=dict(color=WARN)))
    return fig


def calibration_curve(mean_predicted: Sequence[float], fraction_positive: Sequence[float],
                      counts: Sequence[int] | None = None, *, title: str = "Propensity calibration") -> go.Figure:
    """Reliability diagram: mean predicted vs observed frequency per bin, with the diagonal."""
    fig = _figure(title, "mean p̂ in bin", "observed rate in bin")
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(color="#9ca3af", dash="dot")))
    text = None if counts is None else [f"n = {int(c):,}" for c in counts]
    sizes = None
    if counts is not None and len(counts):
        c = np.asarray(counts, dtype=float)
        sizes = 6 + 14 * np.sqrt(c / max(c.max(), 1.0))
    fig.add_trace(go.Scatter(x=list(mean_predicted), y=list(fraction_positive), mode="lines+markers", name="model",
                             text=text, marker=dict(color=OBSERVED_COLOR, size=sizes), line=dict(color=OBSERVED_COLOR)))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return fig


# ---- noise ---------------------------------------------------------------------------------------------------------
def transition_heatmap(rho01: float, rho10: float, *, title: str = "Feedback transition matrix") -> go.Figure:
    """2x2 heatmap of P(r | r*): rows true label r*, columns logged feedback r."""
    z = [[1 - rho10, rho10], [rho01, 1 - rho01]]
    text = [[f"{v:.3f}" for v in row] for row in z]
    fig = _figure(title, "logged feedback r", "true preference r*", height=320)
    fig.add_trace(go.Heatmap(z=z, x=["r = 0", "r = 1"], y=["r* = 0", "r* = 1"], text=text, texttemplate="%{text}",
                             textfont=dict(size=18), colorscale="Blues", zmin=0, zmax=1, showscale=False))
    fig.update_yaxes(autorange="reversed")
    return fig


#: heights (share of the plot area) of the proxy plot's two quantile labels: 0.12 apart, about 30 px at the default
#: height, two lines of 12 px text
QUANTILE_LABEL_ROWS = (0.99, 0.87)


def proxy_scores(scores: np.ndarray, *, lower: float | None = None, upper: float | None = None,
                 quantile: float | None = None) -> go.Figure:
    """Histogram of the anchor proxy P(r = 1 | x) with the quantile lines that define the flip-rate estimates; their
    labels sit on two rows (``QUANTILE_LABEL_ROWS``), each on the side of its line facing the middle of the axis, so
    they cannot overlap however close the lines are."""
    fig = _figure("Anchor proxy scores P(r = 1 | x), every row (cross-fitted)", "proxy score", "rows")
    fig.add_trace(go.Histogram(x=np.asarray(scores, dtype=float), xbins=dict(start=0, end=1, size=0.02),
                               marker_color=OBSERVED_COLOR, opacity=0.75, name="proxy"))
    q = quantile
    lines = []
    if lower is not None:
        lines.append((lower, ACCENT, f"{1 - q:.0%} quantile → ρ̂10 = {lower:.3f}" if q is not None
                      else f"min → ρ̂10 = {lower:.3f}"))
    if upper is not None:
        lines.append((upper, WARN, f"{q:.0%} quantile → ρ̂01 = {1 - upper:.3f}" if q is not None
                      else f"max → ρ̂01 = {1 - upper:.3f}"))
    for (x, color, label), row in zip(lines, QUANTILE_LABEL_ROWS):
        fig.add_vline(x=x, line=dict(color=color, dash="dash"))
        fig.add_annotation(x=x, y=row, xref="x", yref="paper", text=label, showarrow=False, yanchor="top",
                           xanchor="left" if x < 0.5 else "right", font=dict(color=color),
                           bgcolor="rgba(255,255,255,0.8)")
    fig.update_xaxes(range=[0, 1])
    fig.update_layout(showlegend=False)
    return fig


def q_sweep(quantiles: Sequence[float], rho01: Sequence[float], rho10: Sequence[float], *,
            chosen: float | None = None, true: tuple[float, float] | None = None) -> go.Figure:
    """How far the anchor estimates move with the quantile q."""
    fig = _figure("Sensitivity of the anchor estimates to q", "quantile q", "estimated flip rate")
    fig.add_trace(go.Scatter(x=list(quantiles), y=list(rho01), mode="lines+markers", name="ρ̂01",
                             line=dict(color=WARN)))
    fig.add_trace(go.Scatter(x=list(quantiles), y=list(rho10), mode="lines+markers", name="ρ̂10",
                             line=dict(color=ACCENT)))
    if chosen is not None:
        fig.add_vline(x=chosen, line=dict(color="#6b7280", dash="dot"), annotation=dict(text=f"q = {chosen:g}"))
    if true is not None:
        fig.add_hline(y=true[0], line=dict(color=WARN, width=1, dash="dot"),
                      annotation=dict(text=f"true ρ01 = {true[0]:g}", xanchor="left", x=0))
        fig.add_hline(y=true[1], line=dict(color=ACCENT, width=1, dash="dot"),
                      annotation=dict(text=f"true ρ10 = {true[1]:g}", xanchor="left", x=0))
    return fig


# ---- training ------------------------------------------------------------------------------------------------------
def loss_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], *, order: Sequence[str] = ()) -> go.Figure:
    """Per-method training loss (solid) and debiased validation estimate (dashed) by epoch.

    ``histories[method]`` has ``epoch``, ``train_loss`` and ``val_estimate`` lists of equal length.
    """
    if not histories:
        return empty("Loss curves appear here while training")
    order = list(order) or list(histories)
    fig = _figure("Training loss (solid) and validation estimate (dashed)", "epoch", "loss")
    for method, hist in histories.items():
        color = method_color(method, order)
        epochs = list(hist.get("epoch", []))
        fig.add_trace(go.Scatter(x=epochs, y=list(hist.get("train_loss", [])), mode="lines", name=f"{method} train",
                                 legendgroup=method, line=dict(color=color)))
        val = list(hist.get("val_estimate", []))
        if any(v is not None for v in val):
            fig.add_trace(go.Scatter(x=epochs, y=val, mode="lines", name=f"{method} val", legendgroup=method,
                                     line=dict(color=color, dash="dash")))
        best = hist.get("best_epoch")
        if best is not None and best in epochs:
            i = epochs.index(best)
            if i < len(val) and val[i] is not None:
                fig.add_trace(go.Scatter(x=[best], y=[val[i]], mode="markers", showlegend=False, legendgroup=method,
                                         marker=dict(color=color, size=10, symbol="star"),
                                         hovertext=f"{method}: best epoch {best}"))
    return fig


# ---- comparison ----------------------------------------------------------------------------------------------------
def reward_scatter(x_scores: np.ndarray, y_scores: np.ndarray, *, x_name: str, y_name: str,
                   labels: np.ndarray | None = None, label_name: str = "true label",
                   hover: Sequence[str] | None = None) -> go.Figure:
    """Scatter of two methods' rewards σ(z) on the same rows, coloured by the clean label when known."""
    x_scores = np.asarray(x_scores, dtype=float)
    y_scores = np.asarray(y_scores, dtype=float)
    fig = _figure(f"Predicted preference: {x_name} vs {y_name}", f"{x_name}  σ(z)", f"{y_name}  σ(z)", height=420)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#9ca3af", dash="dot"),
                             showlegend=False, hoverinfo="skip"))
    if labels is None:
        groups = [(np.ones(len(x_scores), dtype=bool), "rows", OBSERVED_COLOR)]
    else:
        labels = np.asarray(labels, dtype=float)
        groups = [(labels >= 0.5, f"{label_name} = 1", ACCENT), (labels < 0.5, f"{label_name} = 0", WARN)]
    for mask, name, color in groups:
        if not mask.any():
            continue
        text = None if hover is None else [hover[i] for i in np.flatnonzero(mask)]
        fig.add_trace(go.Scattergl(x=x_scores[mask], y=y_scores[mask], mode="markers", name=name, text=text,
                                   hoverinfo="text+x+y" if text is not None else "x+y",
                                   marker=dict(color=color, size=5, opacity=0.55)))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1], scaleanchor="x", scaleratio=1)
    return fig


def metric_bars(rows: Sequence[Mapping], *, metric: str, order: Sequence[str] = ()) -> go.Figure:
    """Bar chart of one metric per method with its CI as error bars. ``rows``: method, value, lo, hi."""
    if not rows:
        return empty("No metrics")
    order = list(order) or [r["method"] for r in rows]
    methods = [r["method"] for r in rows]
    values = [r["value"] for r in rows]
    lo = [r["value"] - r["lo"] if r.get("lo") is not None else 0 for r in rows]
    hi = [r["hi"] - r["value"] if r.get("hi") is not None else 0 for r in rows]
    fig = _figure(f"{metric} by method (95% bootstrap CI)", "method", metric, height=320)
    fig.add_trace(go.Bar(x=methods, y=values, marker_color=[method_color(m, order) for m in methods],
                         error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo)))
    fig.update_layout(showlegend=False)
    return fig


def preference_histograms(preferences: Mapping[str, np.ndarray], *, order: Sequence[str] = ()) -> go.Figure:
    """Overlaid histograms of each model's predicted preference σ(z) over the same rows (a log without labels)."""
    order = list(order) or list(preferences)
    fig = _figure("Predicted preference σ(z) by model", "σ(z)", "share of rows", barmode="overlay", height=320)
    for method, values in preferences.items():
        fig.add_trace(go.Histogram(x=np.asarray(values, dtype=float), name=method, histnorm="probability",
                                   xbins=dict(start=0.0, end=1.0, size=0.025), opacity=0.6,
                                   marker_color=method_color(method, order)))
    return fig


def position_bars(summary: Mapping) -> go.Figure:
    """An A/B log's votes by position (``causalrm.data.pairwise.position_summary``): the share for a and for b, and on
    labelled pairs the plain rates P(vote b | a better), P(vote a | b better)."""
    names, values = ["votes for a", "votes for b"], [summary["for_a"], 1 - summary["for_a"]]
    if "label" in summary:
        names += ["P(vote b | a better)", "P(vote a | b better)"]
        values += [summary["rho01"], summary["rho10"]]
    fig = _figure(f"Position: {summary['votes']:,} votes", "", "share", height=300)
    fig.add_trace(go.Bar(x=names, y=values, marker_color=[ACCENT, WARN, OBSERVED_COLOR, OBSERVED_COLOR],
                         text=[f"{v:.1%}" for v in values], textposition="outside"))
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(showlegend=False)
    return fig
