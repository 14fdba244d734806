"""The paper's experiment end to end (METHOD.md, "The paper's experiment"), plus a real-feedback mode.

Semi-synthetic mode (any rated dataset, e.g. ``ultrafeedback``, ``wildbench`` or a file): for each seed

1. simulate a biased, noisy log from the rated rows (:func:`causalrm.simulation.simulate.simulate_with_config`: selection
   ``p = alpha^(5 - s)`` scaled to a 20% observation rate, flips ``rho01``/``rho10`` on observed train/val rows, a
   clean fully observed test split); ``rating="teacher"`` replaces the rating by a known function of the embedding;
2. embed the rows once (shipped all-MiniLM-L6-v2 vectors for the bundled texts);
3. fit the nuisances once per seed on the train + val rows, shared by every method;
4. train every method (early stopping on its own debiased validation estimate: no test labels are ever read);
5. evaluate sigma(z) on the clean test split against ``true_label``: R², MAE, MSE, AUROC, Pearson.

The summary reports means ± standard deviations over seeds, the oracle (clean labels of all training rows: the
ceiling for this representation) and the share of the naive -> oracle gap each method closes,
``(R²_m - R²_naive) / (R²_oracle - R²_naive)``, with a percentile bootstrap interval over seeds.

Real-feedback mode (``dataset="oasst1"``): no simulation. The real emoji-feedback log is split by seeded prompt
groups into train / val / held-out test (test groups never reach fitting); every method is trained on the real
feedback and evaluated against the crowd ``gold_label`` on the held-out rows (also reported: all rows with a gold
label, training rows included). The ``oracle`` row is trained on the gold labels of the training rows (a ceiling,
not a method one could run on a real log).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm.atomic_io import jsonable
from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.splits import group_split
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.evaluation.downstream import log_downstream
from causalrm.evaluation.information import (
    INFORMATION_LIMIT,
    clean_subset,
    effective_sample_size,
    realised_flip_rates,
)
from causalrm.evaluation.metrics import METRICS, evaluate_scores, evaluation_rows, metrics, sigmoid
from causalrm.evaluation.ranking import within_prompt_kendall
from causalrm.nuisances.container import Nuisances
from causalrm.workflows.orchestrate import fit_methods, shared_nuisances
from causalrm.workflows.pipeline import FitResult

REAL_FEEDBACK = ("oasst1",)
DOWNSTREAM = ("best_of_n", "best_of_n_win_rate", "accept_precision", "accept_recall")  # evaluation.downstream's


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_METHODS":  # the registry's bench defaults, read when accessed
        return registry.bench_defaults()
    raise AttributeError(f"module 'causalrm.workflows.bench' has no attribute {name!r}")


@dataclass
class BenchConfig:
    """One benchmark cell: a dataset, a selection/noise scenario and several seeds and methods.

    dataset: bundled name (ultrafeedback, wildbench, helpsteer2), a rated file, ``oasst1`` (real feedback), or
    ``synthetic[:ROWSxDIM]`` (a control where the assumptions hold: :func:`synthetic_rated`).
    alpha, rho01, rho10, observation_rate: simulation (METHOD.md step 3 and 5); rating: ``"real"`` or ``"teacher"``;
    teacher, snr: the teacher's form and signal-to-noise ratio (``None`` = noiseless). rating_column: which rating.
    seeds, methods: the grid (default: the registry's ``bench_default`` specs, ``causalrm.estimators.methods``).
    fit: ``FitConfig`` overrides shared by every method (e.g. ``{"max_epochs": 300}``).
    embedder: embedding model. n_boot: bootstrap replicates of the gap-closed interval.
    true_propensity: hand the estimators the simulation's true propensity as the log's ``logged_propensity``
    (an ablation: a real log has it only when the product logs it; with ``fit`` rho01/rho10 set to the simulation's
    rates, every nuisance is the truth).
    feedback_column: a second rating of the same rows (e.g. wildbench's ``score_gpt4turbo`` against ``rating_column``
    ``score_gpt4o``) whose binarised value (the same threshold) is the observed feedback: real, instance-dependent
    noise under the simulated selection (rows without it are dropped; rho01 = rho10 = 0: no simulated flips).
    information_limit: add the ``oracle-effective`` row (:mod:`causalrm.evaluation.information`): ``oracle-observed``
    on the clean labels of a seeded random subset of n (1 - rho01 - rho10)^2 observed rows, the rates as realised.
    """

    dataset: str = "ultrafeedback"
    alpha: float = 0.5
    rho01: float = 0.2
    rho10: float = 0.1
    observation_rate: float = 0.2
    rating: str = "real"
    teacher: str = "linear"
    snr: float | None = None
    rating_column: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = field(default_factory=registry.bench_defaults)
    fit: dict[str, Any] = field(default_factory=dict)
    embedder: str = schema.DEFAULT_EMBEDDER
    n_boot: int = 2000
    true_propensity: bool = False
    feedback_column: str | None = None
    information_limit: bool = False

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.methods = tuple(self.methods)
        self.fit = dict(self.fit)

    @property
    def real_feedback(self) -> bool:
        return self.dataset in REAL_FEEDBACK

    def fit_config(self, method: str, seed: int) -> FitConfig:
        """The fit of ``method``: every method but ``auto`` is measured even where a gate would refuse it (the
        gates' verdicts are recorded per seed); ``auto`` obeys them, as it does for a user."""
        fit = dict(self.fit)
        if method in (registry.BASELINE, registry.AUTO) or registry.get(method).clean_labels:  # a shared val_method
            # applies to the debiased methods only
            fit.pop("val_method", None)
        if method != registry.AUTO:
            fit.setdefault("force_noise_correction", True)
        return FitConfig.from_dict({**fit, "method": method, "seed": seed, "embedder": self.embedder})

    def validate(self) -> BenchConfig:
        if not self.seeds:
            raise InputError("--seeds: give at least one seed, e.g. 0,1,2")
        if not self.methods:
            raise InputError("--methods: give at least one method")
        bad = [m for m in self.methods if not registry.is_method(m) and m != registry.AUTO]
        if bad:
            raise InputError(f"unknown method(s) {bad}; choose from: {', '.join(registry.names(auto=True))}")
        if self.rating not in ("real", "teacher"):
            raise InputError(f"--rating {self.rating!r}: use real or teacher")
        if self.true_propensity and self.real_feedback:
            raise InputError(f"--true-propensity: {self.dataset} is a real log; only a simulated log has a true "
                             "propensity")
        if self.feedback_column is not None and (self.real_feedback or self.rating != "real" or self.rho01 or self.rho10):
            raise InputError(f"--feedback-column {self.feedback_column}: needs --rating real and --rho01 0 --rho10 0 "
                             "on a rated dataset (the second rating is the noise)")
        if self.information_limit and self.real_feedback:
            raise InputError(f"--information-limit: {self.dataset} is a real log; it needs clean labels")
        self.fit_config(self.methods[0], self.seeds[0]).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seeds"] = list(self.seeds)
        out["methods"] = list(self.methods)
        out["mode"] = "real-feedback" if self.real_feedback else "semi-synthetic"
        for key in ("feedback_column", "information_limit"):  # issue 25's options, recorded when used
            if not out[key]:
                del out[key]
        return out


@dataclass
class BenchResult:
    """Per (method, seed) rows, per-seed nuisance summaries, and the summary over seeds."""

    config: BenchConfig
    results: list[dict[str, Any]]
    nuisances: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"config": self.config.to_dict(), "results": self.results, "summary": self.summary,
                         "nuisances": self.nuisances, "seconds": self.seconds})

    def to_markdown(self, *, title: str | None = None, command: str | None = None) -> str:
        from causalrm.workflows.bench_report import format_markdown

        return format_markdown(self, title=title, command=command)


# --------------------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------------------
def _embed(df: pl.DataFrame, model: str) -> np.ndarray:
    from causalrm.embeddings.embedder import Embedder, embed_log

    return embed_log(df, Embedder(model=model, progress=False))


def synthetic_rated(rows: int = 20_000, dim: int = 32, *, noise: float = 0.3, seed: int = 0,
                    ) -> tuple[pl.DataFrame, np.ndarray]:
    """A control dataset where the method's assumptions hold and the signal is strong.

    ``X ~ N(0, I_dim)`` is the representation itself (no embedding model), the rating is linear in it,
    ``rating = X w + noise * N(0, 1)`` with ``w ~ N(0, I / dim)``, each row its own prompt group. Used as
    ``--dataset synthetic`` (or ``synthetic:ROWSxDIM``) to check the estimators where they should work.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, dim)).astype(np.float32)
    w = rng.standard_normal(dim) / np.sqrt(dim)
    rating = X.astype(np.float64) @ w + noise * rng.standard_normal(rows)
    rated = pl.DataFrame({
        schema.PROMPT: [""] * rows, schema.RESPONSE: [f"synthetic response {i}" for i in range(rows)],
        schema.RESPONSE_ID: [f"syn{i}" for i in range(rows)], schema.PAIR_ID: [f"syn{i}" for i in range(rows)],
        "rating": rating, schema.SPLIT: pl.Series([None] * rows, dtype=pl.String),
    })
    return rated, X


def _parse_synthetic(name: str) -> tuple[int, int]:
    spec = name.split(":", 1)[1] if ":" in name else "20000x32"
    try:
        rows, dim = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise InputError(f"--dataset {name!r}: use synthetic or synthetic:ROWSxDIM, e.g. synthetic:20000x32") from None
    if rows < 50 or dim < 1:
        raise InputError(f"--dataset {name!r}: need at least 50 rows and 1 dimension")
    return rows, dim


def _load_rated(config: BenchConfig) -> tuple[pl.DataFrame, np.ndarray]:
    from causalrm.data.datasets import load_rated

    if config.dataset == "synthetic" or config.dataset.startswith("synthetic:"):
        return synthetic_rated(*_parse_synthetic(config.dataset))

    rated = load_rated(config.dataset, rating_column=config.rating_column)
    rated = rated.filter(pl.col("rating").is_not_null() & pl.col("rating").is_finite())
    if config.feedback_column is not None:
        if config.feedback_column not in rated.columns:
            raise InputError(f"--feedback-column {config.feedback_column!r}: {config.dataset} has no such column")
        rated = rated.filter(pl.col(config.feedback_column).is_not_null())
    return rated, _embed(rated, config.embedder)


def _load_real(config: BenchConfig) -> tuple[pl.DataFrame, np.ndarray]:
    from causalrm.data.datasets import load_oasst1_log

    log = load_oasst1_log()
    if schema.GOLD_LABEL not in log.columns:
        raise InputError("oasst1: the log has no gold_label column")
    # rows without a gold label cannot be evaluated or used by the gold-label oracle
    log = log.filter(pl.col(schema.GOLD_LABEL).is_not_null())
    log = log.with_columns(pl.lit(None, dtype=pl.String).alias(schema.SPLIT))
    return log, _embed(log, config.embedder)


def _real_split(log: pl.DataFrame, seed: int, test_fraction: float = 0.2) -> pl.DataFrame:
    """Hold out ``test_fraction`` of the prompt groups as ``test`` (seeded); the rest is left for fit_log's split."""
    is_test = group_split(log, np.arange(log.height), val_fraction=test_fraction, seed=10_000 + seed)
    split = np.where(is_test, schema.TEST, None)
    log = log.with_columns(pl.Series(schema.SPLIT, split.tolist(), dtype=pl.String))
    # the gold-label oracle's training target (test rows keep it too, unused in fitting)
    return log.with_columns(pl.col(schema.GOLD_LABEL).round(0).cast(pl.Int8).alias(schema.TRUE_LABEL))


# --------------------------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------------------------
def fit_cell(config: BenchConfig, log: pl.DataFrame, X: np.ndarray | None, seed: int,
             methods: Sequence[str] | None = None) -> tuple[Nuisances, float, dict[str, FitResult], dict[str, float]]:
    """One seed of the bench on ``log``: the nuisances once (``orchestrate.shared_nuisances``, timed), then every one
    of ``methods`` (default ``config.methods``) with ``orchestrate.fit_methods``; ``auto`` reuses every method's fit,
    as measured (each one forced past the gates, with the shared val_method). Returns (nuisances, their seconds,
    ``{method: FitResult}``, ``{method: seconds}``)."""
    methods = list(config.methods if methods is None else methods)
    config_for = functools.partial(config.fit_config, seed=seed)
    t0 = time.perf_counter()
    nuis = shared_nuisances(log, X, config_for(methods[0]), methods, config_for=config_for)
    t_nuis = time.perf_counter() - t0
    timing: dict[str, float] = {}

    def on_event(kind: str, method: str | None, payload: Any) -> None:
        if kind == "done":
            timing[method] = payload["seconds"]

    fits = fit_methods(log, X, config_for(methods[0]), methods, config_for=config_for, nuisances=nuis,
                       reuse=lambda candidate, auto: True, on_event=on_event)
    return nuis, t_nuis, fits, timing


def run_bench(
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
    data: tuple[pl.DataFrame, np.ndarray] | None = None,
    on_scores: Callable[[int, str, pl.DataFrame, np.ndarray], None] | None = None,
) -> BenchResult:
    """Run every (seed, method) of ``config`` (module docstring). ``progress(message)`` after each fit.

    ``data``: ``(rated, X)`` (or ``(log, X)`` for oasst1) to reuse loaded rows and embeddings across calls.
    ``on_scores(seed, method, log, rewards)``: called with each fit's rewards (logits) for every row of the log.
    """
    from causalrm.simulation.simulate import simulate_with_config, simulation_summary

    config.validate()
    t_start = time.perf_counter()
    base, X = data if data is not None else (_load_real(config) if config.real_feedback else _load_rated(config))
    results: list[dict[str, Any]] = []
    nuis_rows: list[dict[str, Any]] = []
    for seed in config.seeds:
        if config.real_feedback:
            log = _real_split(base, seed)
            sim: dict[str, Any] = {"mode": "real-feedback"}
        else:
            log, simcfg = simulate_with_config(
                base, alpha=config.alpha, rho01=config.rho01, rho10=config.rho10,
                observation_rate=config.observation_rate, rating=config.rating, teacher=config.teacher,
                snr=config.snr, embeddings=X, seed=seed, dataset=config.dataset)
            if config.feedback_column is not None:  # the second rating, binarised, is the feedback
                second = (base[config.feedback_column].to_numpy() > simcfg.label_threshold).astype(np.int8)
                log = log.with_columns(pl.when(pl.col(schema.OBSERVED) == 1).then(
                    pl.when(pl.col(schema.SPLIT) == schema.TEST).then(pl.col(schema.TRUE_LABEL))
                    .otherwise(pl.Series(second))).cast(pl.Int8).alias(schema.FEEDBACK))
            sim = {**simulation_summary(log), "label_threshold": simcfg.label_threshold}
            if config.true_propensity:
                log = log.with_columns(pl.col(schema.TRUE_PROPENSITY).alias(schema.LOGGED_PROPENSITY))
        methods = [m for m in config.methods if not registry.is_method(m) or not registry.get(m).clean_labels
                   or (schema.TRUE_LABEL in log.columns
                       and (not registry.get(m).weighted or schema.TRUE_PROPENSITY in log.columns))]
        nuis, t_nuis, fits, timing = fit_cell(config, log, X, seed, methods)
        if config.information_limit:
            rates = realised_flip_rates(log)
            n_obs = int(((log[schema.OBSERVED] == 1) & (log[schema.SPLIT] != schema.TEST)).sum())
            sim["information_limit"] = {"realised_rho01": rates[0], "realised_rho10": rates[1], "n_observed": n_obs,
                                        "effective_n": effective_sample_size(n_obs, *rates)}
            sub = clean_subset(log, sim["information_limit"]["effective_n"], seed)
            _, _, limit_fit, limit_time = fit_cell(config, sub, X, seed, ["oracle-observed"])
            fits[INFORMATION_LIMIT], timing[INFORMATION_LIMIT] = limit_fit["oracle-observed"], limit_time[
                "oracle-observed"]
        nd = nuis.to_dict()
        nuis_rows.append(jsonable({
            "seed": seed, "seconds": t_nuis, "rho01_hat": nuis.rho01, "rho10_hat": nuis.rho10, "rho_ci": nuis.rho_ci,
            "propensity_auc": (nd.get("propensity") or {}).get("auc"),
            "propensity_source": (nd.get("propensity") or {}).get("source"),
            "proxy_auc": ((nd.get("flip_rates") or {}).get("proxy") or {}).get("oof_auc"),
            "flip_warnings": (nd.get("flip_rates") or {}).get("warnings", []),
            "share_clipped": (nd.get("propensity") or {}).get("share_clipped"),
            "gates": {name: {"passed": g.passed, "verdict": g.verdict} for name, g in nuis.gates.items()},
            "simulation": sim,
        }))
        scored = {method: result.score(log, X) for method, result in fits.items()}
        for method, result in fits.items():
            seconds = timing[method]
            rewards = scored[method]
            if on_scores is not None:
                on_scores(seed, method, log, rewards)
            row: dict[str, Any] = {"method": method, "seed": seed}
            if config.real_feedback:
                ev = _evaluate_real(log, rewards, result.split)
                row.update(ev["held_out"])
                row.update(_prompt_kendall(log, rewards, result.split == schema.TEST, schema.GOLD_LABEL))
                row.update(log_downstream(log, rewards, result.split == schema.TEST, schema.GOLD_LABEL,
                                          scored.get(registry.BASELINE)))
                row["all_gold"] = ev["all_gold"]
            else:
                ev = evaluate_scores(log, rewards)
                if ev is None:
                    raise InputError("the simulated log has no clean test rows to evaluate on")
                row.update(ev["metrics"])
                row["n_test"] = ev["n"]
                is_eval = np.zeros(log.height, dtype=bool)
                is_eval[evaluation_rows(log)[0]] = True
                row.update(_prompt_kendall(log, rewards, is_eval, schema.TRUE_LABEL))
                row.update(log_downstream(log, rewards, is_eval, schema.TRUE_LABEL, scored.get(registry.BASELINE)))
            row.update({"seconds": seconds, "best_epoch": result.history.best_epoch,
                        "val_method": result.history.val_method,
                        "best_val_estimate": result.history.best_val_estimate,
                        "epochs": result.history.epochs, "stop_reason": result.history.stop_reason,
                        "learned": None if result.learned is None else result.learned.passed})
            if result.choice is not None:
                row["chosen"] = result.choice["method"]
                keep = ("fitted", "learned", "beats_baseline", result.choice["central"])
                row["choice"] = {"central": result.choice["central"], "candidates": {
                    m: {k: c[k] for k in keep if k in c} for m, c in result.choice["candidates"].items()}}
            results.append(jsonable(row))
            if progress is not None:
                progress(f"seed {seed} {method}: R2 {row['r2']:.3f} ({seconds:.1f}s)")
    summary = summarize(results, n_boot=config.n_boot, seed=0)
    return BenchResult(config=config, results=results, nuisances=nuis_rows, summary=summary,
                       seconds=time.perf_counter() - t_start)


def _prompt_kendall(log: pl.DataFrame, rewards: np.ndarray, rows: np.ndarray, label: str) -> dict[str, float]:
    """Mean within-prompt Kendall tau-b of the rewards against the clean ``label`` over the rows ``rows`` (a boolean
    mask) that have one (``ranking.within_prompt_kendall``; prompt groups as in the split)."""
    from causalrm.data.splits import prompt_groups

    y = log[label].cast(pl.Float64).to_numpy()
    keep = np.asarray(rows, dtype=bool) & np.isfinite(y)
    sub = log.filter(pl.Series(keep))
    prompts = sub[schema.PROMPT].to_list() if schema.PROMPT in sub.columns else [None] * sub.height
    pairs = sub[schema.PAIR_ID].cast(pl.String).to_list() if schema.PAIR_ID in sub.columns else [None] * sub.height
    return within_prompt_kendall(prompt_groups(prompts, pairs), y[keep], np.asarray(rewards)[keep])


def _evaluate_real(log: pl.DataFrame, rewards: np.ndarray, split: np.ndarray) -> dict[str, Any]:
    gold = log[schema.GOLD_LABEL].cast(pl.Float64).to_numpy()
    prob = sigmoid(rewards)
    has = np.isfinite(gold)
    held = has & (np.asarray(split, dtype=object) == schema.TEST)
    out = {"held_out": {**metrics(gold[held], prob[held]), "n_test": int(held.sum())},
           "all_gold": {**metrics(gold[has], prob[has]), "n": int(has.sum())}}
    return out


# --------------------------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(results: list[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per method: mean and std over seeds of each metric and the seconds, and the naive -> oracle gap closed.

    Gap closed: :func:`gap_closed` of the per-seed R² (paired by seed); its interval is a percentile bootstrap over
    seeds (resampling seeds with replacement, 95%). With 3 seeds the interval is coarse: read it as a rough guide.
    ``gap_closed`` is against ``oracle`` (clean labels of every training row), ``gap_closed_observed`` against
    ``oracle-observed`` (clean labels of the observed training rows, weighted by the true propensity: the ceiling
    of any correction of noise and selection with the rows this log has), each when that method ran;
    ``limit_closed`` is the share of the naive -> ``oracle-effective`` (the information limit) gap in AUROC.
    """
    methods = list(dict.fromkeys(r["method"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    by = {(r["method"], r["seed"]): r for r in results}
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        rows = [by[(m, s)] for s in seeds if (m, s) in by]
        entry: dict[str, Any] = {"n_seeds": len(rows)}
        downstream = [k for k in DOWNSTREAM if any(k in r for r in rows)]  # bench JSON before issue 25 lacks them
        for k in (*METRICS, "prompt_kendall", *downstream, "seconds", "best_epoch"):
            mean, std = _mean_std([r.get(k) for r in rows])
            entry[k] = {"mean": mean, "std": std}
        out[m] = entry
    for ceiling, key, metric in (("oracle", "gap_closed", "r2"), ("oracle-observed", "gap_closed_observed", "r2"),
                                 (INFORMATION_LIMIT, "limit_closed", "auroc")):
        if registry.BASELINE not in methods or ceiling not in methods:
            continue
        paired = [s for s in seeds if (registry.BASELINE, s) in by and (ceiling, s) in by]
        r2n = np.array([by[(registry.BASELINE, s)][metric] for s in paired], dtype=np.float64)
        r2o = np.array([by[(ceiling, s)][metric] for s in paired], dtype=np.float64)
        rng = np.random.default_rng(seed)
        idx = [rng.integers(0, len(paired), len(paired)) for _ in range(n_boot)] if paired else []
        for m in methods:
            if not all((m, s) in by for s in paired) or not paired:
                continue
            r2m = np.array([by[(m, s)][metric] for s in paired], dtype=np.float64)
            point = gap_closed(r2m, r2n, r2o)
            reps = np.array([gap_closed(r2m[i], r2n[i], r2o[i]) for i in idx])
            reps = reps[np.isfinite(reps)]
            ci = (float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))) if reps.size else (math.nan,) * 2
            out[m][key] = {"value": point, "ci": list(ci), "seeds": len(paired)}
    return out


def gap_closed(r2_method: Any, r2_naive: Any, r2_oracle: Any) -> float:
    """The share of the naive -> oracle gap a method closes, ``(mean R²_m - mean R²_naive) / (mean R²_oracle -
    mean R²_naive)`` (arrays paired by seed, or single values); NaN when the gap is not positive. The one
    convention of the bench, the app's Compare tab and the notebooks."""
    gap = float(np.mean(r2_oracle) - np.mean(r2_naive))
    if not gap > 1e-12:
        return float("nan")
    return float((np.mean(r2_method) - np.mean(r2_naive)) / gap)
