"""Helpers shared by the teaching notebooks (``notebooks/``): their run settings, several methods fitted on shared
nuisances, clean-label metric tables, sweep summaries, flip rates from a simulated log or audit, and the interval
columns their plots draw.

Everything here returns arrays and tables; the notebooks draw the figures (the core library draws nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.estimators.methods import BASELINE
from causalrm.evaluation import audit
from causalrm.evaluation.metrics import evaluate_scores, evaluation_rows, sigmoid
from causalrm.nuisances.container import Nuisances
from causalrm.nuisances.flip_rates import FlipRateEstimator, design_columns
from causalrm.workflows.bench import gap_closed


class NotebookSettings(NamedTuple):
    """What every notebook's first cell sets: ``FitConfig`` training keywords and bootstrap resamples for CIs."""

    train: dict[str, int]
    n_boot: int


def setup_notebook(fast: bool) -> NotebookSettings:
    """Set the polars table display of the notebooks and return their settings: the paper's training (Adam, lr 5e-4,
    batch 512, up to 600 epochs, patience 30) or, when ``fast`` (``CAUSALRM_FAST=1``, as in CI), a quick version."""
    pl.Config.set_tbl_rows(20)
    pl.Config.set_fmt_str_lengths(60)
    if fast:
        return NotebookSettings(dict(max_epochs=40, patience=8, propensity_folds=3, flip_bootstrap=20), n_boot=50)
    return NotebookSettings(dict(max_epochs=600, patience=30, propensity_folds=5, flip_bootstrap=200), n_boot=500)


def equal_count_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index (0 to ``n_bins - 1``) of each value, by rank, so that the bins hold equal counts (ties by order)."""
    values = np.asarray(values)
    rank = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return rank * n_bins // len(values)


def fit_scores(log: pl.DataFrame, X: np.ndarray, methods: Sequence[str], config: FitConfig, *,
               nuisances: Nuisances | None = None) -> dict[str, np.ndarray]:
    """Fit each of ``methods`` on ``log`` with ``config``, sharing one set of nuisances (``nuisances``, or fitted
    once here: ``causalrm.workflows.orchestrate.fit_methods``, as the bench and the app do); return ``{method: reward logits
    of every row}``."""
    from causalrm.workflows.orchestrate import fit_methods

    results = fit_methods(log, X, config, list(methods), nuisances=nuisances)
    return {m: results[m].score(log, X) for m in methods}


def metric_rows(log: pl.DataFrame, scores: dict[str, np.ndarray], *, n_boot: int, **extra: Any
                ) -> list[dict[str, Any]]:
    """One row per method of ``scores`` (reward logits of ``log``'s rows): AUROC, R² and MSE against the clean labels
    (``evaluate_scores``: a simulated log's test split, else its gold-labelled rows) with 95% bootstrap intervals, and
    the mean and standard deviation of P(good) over those rows. ``extra`` columns lead each row."""
    found = evaluation_rows(log)
    if found is None:
        raise InputError("the log has no clean labels (a simulated test split or gold_label) to evaluate against")
    rows = found[0]
    out = []
    for method, z in scores.items():
        ev = evaluate_scores(log, z, n_boot=n_boot)
        m, ci = ev["metrics"], ev["ci"]
        prob = sigmoid(np.asarray(z)[rows])
        out.append({**extra, "method": method, "AUROC": m["auroc"], "AUROC lo": ci["auroc"][0],
                    "AUROC hi": ci["auroc"][1], "R2": m["r2"], "R2 lo": ci["r2"][0], "R2 hi": ci["r2"][1],
                    "MSE": m["mse"], "mean P(good)": float(prob.mean()), "sd P(good)": float(prob.std())})
    return out


def reliability_table(log: pl.DataFrame, scores: dict[str, np.ndarray], *, n_bins: int = 10) -> pl.DataFrame:
    """Reliability of sigma(z) against the clean labels of ``log`` (the rows :func:`metric_rows` evaluates, each
    counted once: an audit's design weights are not applied): per method of ``scores`` (reward logits of every row)
    and equal-count bin of sigma(z), its ``rows``, ``mean P(good)`` and ``share good`` (mean clean label). A
    calibrated model lies on the diagonal; ``ECE`` (repeated on each row of a method) is the expected calibration
    error, sum over bins of (rows / n) |share good - mean P(good)|."""
    if n_bins < 1:
        raise InputError(f"n_bins={n_bins}: must be at least 1")
    found = evaluation_rows(log)
    if found is None:
        raise InputError("the log has no clean labels (a simulated test split or gold_label) to evaluate against")
    rows, label, _ = found
    y = log[label].cast(pl.Float64).to_numpy()[rows]
    tables = []
    for method, z in scores.items():
        prob = sigmoid(np.asarray(z, dtype=np.float64)[rows])
        table = (pl.DataFrame({"bin": equal_count_bins(prob, n_bins), "prob": prob, "y": y})
                   .group_by("bin").agg(rows=pl.len(), **{"mean P(good)": pl.col("prob").mean(),
                                                          "share good": pl.col("y").mean()})
                   .sort("bin"))
        ece = float((table["rows"] / len(y) * (table["share good"] - table["mean P(good)"]).abs()).sum())
        tables.append(table.select(pl.lit(method).alias("method"), pl.all(), pl.lit(ece).alias("ECE")))
    return pl.concat(tables)


def with_gap_closed(table: pl.DataFrame, metric: str = "R2") -> pl.DataFrame:
    """``table`` (rows of :func:`metric_rows`, naive and oracle among them) with the share of the naive -> oracle gap
    each method closes on ``metric`` (1 = the oracle, < 0 = worse than naive)."""
    naive = table.filter(pl.col("method") == BASELINE)[metric].to_numpy()
    oracle = table.filter(pl.col("method") == "oracle")[metric].to_numpy()
    gaps = [gap_closed(np.array([value]), naive, oracle) for value in table[metric]]
    return table.with_columns(pl.Series(f"gap closed ({metric})", gaps))


def sweep_summary(table: pl.DataFrame, x: str) -> pl.DataFrame:
    """Per ``x`` and method over the seeds of ``table`` (rows of :func:`metric_rows`): mean R² and its standard
    deviation (``sd``, 0 for one seed), mean AUROC and mean P(good)."""
    return (table.group_by(x, "method")
                 .agg(pl.col("R2").mean().alias("mean R2"), pl.col("R2").std().fill_null(0).alias("sd"),
                      pl.col("AUROC").mean().alias("mean AUROC"), pl.col("mean P(good)").mean())
                 .sort(x, "method"))


def error_bars(table: pl.DataFrame, y: str, lo: str | None = None, hi: str | None = None) -> dict[str, pl.Series]:
    """Plotly's ``error_y`` / ``error_y_minus`` for the interval ``[lo, hi]`` around ``y`` (default columns
    ``"{y} lo"`` and ``"{y} hi"``): ``px.scatter(table, x=..., y=y, **error_bars(table, y))``."""
    return {"error_y": table[hi or f"{y} hi"] - table[y], "error_y_minus": table[y] - table[lo or f"{y} lo"]}


def fit_flip_rates(log: pl.DataFrame, X: np.ndarray, *, n_bootstrap: int, **options: Any
                   ) -> tuple[FlipRateEstimator, np.ndarray]:
    """A ``FlipRateEstimator(**options)`` fitted on the train + val rows of the simulated ``log`` (``X``: embeddings of
    every row); returns it and the boolean mask of those rows."""
    rows = (log[schema.SPLIT] != schema.TEST).to_numpy()
    est = FlipRateEstimator(n_bootstrap=n_bootstrap, **options)
    return est.fit(X[rows], log[schema.FEEDBACK].to_numpy()[rows], log[schema.OBSERVED].to_numpy()[rows]), rows


def simulated_audit(log: pl.DataFrame, rows: np.ndarray, strata: np.ndarray, n: int, *, seed: int) -> pl.DataFrame:
    """The audit proposal of ``n`` rows (``audit.proposal_table``) labelled the way a careful auditor would: with the
    simulation's clean ``true_label``."""
    table = audit.proposal_table(log, rows, strata, n, seed=seed)
    truth = dict(zip(log[schema.RESPONSE_ID], log[schema.TRUE_LABEL].cast(pl.Float64)))
    return table.with_columns(pl.Series(schema.GOLD_LABEL, [truth[i] for i in table[schema.RESPONSE_ID]]))


def audited_flip_rates(log: pl.DataFrame, labels: pl.DataFrame, *, weighted: bool = True, n_bootstrap: int = 200,
                       seed: int = 0) -> dict[str, float]:
    """Gold flip rates of ``log``'s auditable rows from the label table ``labels`` (``audit.merge_labels``), weighted
    by 1 / inclusion probability or, with ``weighted=False``, ignoring the design: ``rho01``, ``rho10`` and their
    95% Wilson intervals at the effective size (``rho01_lo``, ``rho01_hi``, ``rho10_lo``, ``rho10_hi``)."""
    rows = audit.auditable_rows(log)
    feedback = np.nan_to_num(log[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows])
    observed = log[schema.OBSERVED].cast(pl.Float64).to_numpy()[rows]
    design = design_columns(audit.merge_labels(log, labels), rows)
    if not weighted:
        design = {"gold_label": design["gold_label"]}
    est = FlipRateEstimator(method="gold", n_bootstrap=n_bootstrap, random_state=seed)
    est.fit(None, feedback, observed, **design)
    return {"rho01": est.rho01_, "rho10": est.rho10_, "rho01_lo": est.ci_["rho01"][0],
            "rho01_hi": est.ci_["rho01"][1], "rho10_lo": est.ci_["rho10"][0], "rho10_hi": est.ci_["rho10"][1]}
