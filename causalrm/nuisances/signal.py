"""The nuisances of a log of one signal (explicit thumbs, or implicit events read as impressions): the propensity
(cross-fitted, or reused), the flip rates (anchors on a subsampled proxy for large logs, gold, fixed, or the event
rates of an implicit log), the pseudo-labels, and their gates."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import polars as pl

from causalrm.atomic_io import jsonable
from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.feedback_kinds import FEEDBACK_KIND, IMPLICIT, IMPLICIT_NEEDS, event_flip_rates, resolve_kind
from causalrm.data.pairwise import is_pair_log, nuisance_features, swapped_duplicates
from causalrm.data.splits import resolve_split
from causalrm.errors import InputError
from causalrm.nuisances.container import Nuisances, _column, _observed_feedback, _stage, needs_of
from causalrm.nuisances.gates import Gate, flip_rate_gate, propensity_gate


def propensity_settings(config: FitConfig, *, logged: bool) -> dict[str, Any]:
    """What determines a fitted propensity besides the log, its rows and split (recorded in its diagnostics); the
    device as it resolves here ("auto" and "cpu" fit the same model on a machine without a GPU)."""
    from causalrm.devices import resolve_device

    return {"logged": logged} if logged else {
        "model": config.propensity_model, "folds": config.propensity_folds, "clip": config.clip,
        "seed": config.seed, "max_rows": config.nuisance_max_rows, "device": resolve_device(config.device).type}


def _reusable_propensity(reuse: Nuisances | None, nuis: Nuisances, settings: dict[str, Any]) -> bool:
    """Whether ``reuse`` holds a propensity fitted on ``nuis``'s rows and split with ``settings``."""
    return (reuse is not None and reuse.propensity_clipped is not None
            and np.array_equal(reuse.rows, nuis.rows) and np.array_equal(reuse.split, nuis.split)
            and (reuse.diagnostics.get("propensity") or {}).get("settings") == settings)


def fit_signal(
    log: pl.DataFrame, X: np.ndarray | None, config: FitConfig, *, methods, split, on_stage, reuse=None,
) -> Nuisances:
    """The nuisances of a log of one signal (explicit thumbs or implicit events): ``fit_nuisances`` without its
    thread limit, and each signal's of a mixed log (:mod:`causalrm.nuisances.mixed`)."""
    methods = [config.method] if methods is None else list(methods)
    needs = needs_of(methods)
    kind = _feedback_kind(log)
    split = resolve_split(log, val_fraction=config.val_fraction, seed=config.seed) if split is None else split
    rows = np.flatnonzero(split != schema.TEST)
    nuis = Nuisances(rows=rows, split=split[rows])
    diag: dict[str, Any] = {"methods": methods, "n_train": int(np.sum(split == schema.TRAIN)),
                            "n_val": int(np.sum(split == schema.VAL)), "seconds": {}}
    nuis.diagnostics = diag
    obs, fb = _observed_feedback(log, rows)
    diag["observed_rate"] = float(obs.mean()) if obs.size else None
    diag["n_observed"] = int(obs.sum())
    diag["feedback_kind"] = kind
    if kind == IMPLICIT and config.use_logged_propensity and _has_values(log, schema.LOGGED_PROPENSITY, rows):
        raise InputError(f"column {schema.LOGGED_PROPENSITY!r} on an implicit log (an examination propensity) is "
                         "not supported yet: drop the column (every impression then counts as seen)")
    if "true_label" in needs and schema.TRUE_LABEL not in log.columns:
        clean = [m for m in methods if "true_label" in needs_of(m)]
        raise InputError(f"method {'/'.join(clean)!r} needs the column 'true_label' (simulated logs only)")
    model_needs = needs - {"true_label"}
    if not model_needs:
        return nuis
    if obs.sum() < 2:
        raise InputError("fewer than 2 rows with feedback among train/val rows; nothing to learn from")
    X_fit = _fit_rows_X(log, X, rows, config)
    if is_pair_log(log):  # an A/B log: the nuisances read [x_a - x_b, |x_a - x_b|] (causalrm.data.pairwise)
        X_fit = nuisance_features(X_fit)
    proxy_needed = "pseudo_label" in needs or "pseudo_label_noisy" in needs or (
        "flip_rates" in needs and config.effective_flip_method.startswith("anchor"))
    if config.proxy_weighting == "propensity" and proxy_needed and obs.min() == 0:
        needs = needs | {"propensity"}  # the proxy's importance weights (FitConfig.proxy_weighting)

    if kind == IMPLICIT and "propensity" in needs:  # every impression is observed: nothing to reweight
        _implicit_propensity(nuis, rows, config)
        needs = needs - {"propensity"}
    if "propensity" in needs:
        _stage(on_stage, "propensity")
        t0 = time.perf_counter()
        from causalrm.nuisances.propensity import PropensityModel

        logged = _column(log, schema.LOGGED_PROPENSITY, rows)
        use_logged = bool(config.use_logged_propensity and logged is not None and not np.isnan(logged).any())
        if obs.min() == 1 and not use_logged:
            raise InputError(
                "every train/val row has feedback (a feedback-only log): propensities cannot be learned; add a "
                "logged_propensity column, include the impressions without feedback, or use --method denoise / naive"
            )
        settings = propensity_settings(config, logged=use_logged)
        if _reusable_propensity(reuse, nuis, settings):
            for name in ("propensity_model", "propensity", "propensity_clipped", "propensity_clipped_alt"):
                setattr(nuis, name, getattr(reuse, name))
            diag["propensity"] = dict(reuse.diagnostics["propensity"])
            if "propensity" in reuse.diagnostics.get("subsample", {}):
                diag.setdefault("subsample", {})["propensity"] = reuse.diagnostics["subsample"]["propensity"]
            nuis.gates["propensity"] = reuse.gates["propensity"]
            diag["seconds"]["propensity"] = reuse.diagnostics.get("seconds", {}).get("propensity", 0.0)
        else:
            model = PropensityModel(model=config.propensity_model, n_folds=config.propensity_folds, clip=config.clip,
                                    random_state=config.seed, device=config.device, max_rows=config.nuisance_max_rows)
            model.fit(X_fit, obs, logged_propensity=logged if use_logged else None)
            nuis.propensity_model = model
            nuis.propensity = np.asarray(model.propensity_, dtype=np.float64)
            diag["propensity"] = {"source": "logged" if use_logged else config.propensity_model,
                                  **(jsonable(getattr(model, "diagnostics_", None)) or {})}
            nuis.propensity_clipped = model.weights_
            if getattr(model, "selection_", None) is not None:
                diag["propensity"]["selection"] = jsonable(model.selection_)
            nuis.propensity_clipped_alt = getattr(model, "alternative_weights_", None)
            if getattr(model, "fit_rows_", None) is not None:
                diag.setdefault("subsample", {})["propensity"] = int(len(model.fit_rows_))
            nuis.gates["propensity"] = propensity_gate(diag["propensity"])
            diag["propensity"]["clip"] = config.clip
            diag["propensity"]["settings"] = settings
            diag["propensity"]["share_clipped"] = float(np.mean(nuis.propensity < config.clip))
            diag["seconds"]["propensity"] = time.perf_counter() - t0

    # FitConfig.proxy_weighting
    proxy_weights = nuis.propensity_clipped if config.proxy_weighting == "propensity" else None
    if "flip_rates" in needs or "pseudo_label" in needs:
        _stage(on_stage, "flip rates")
        t0 = time.perf_counter()
        from causalrm.nuisances.flip_rates import FlipRateEstimator, design_columns

        method, fixed = config.effective_flip_method, (config.rho01, config.rho10)
        audit = design_columns(log, rows)
        gold = audit["gold_label"]
        if kind == IMPLICIT:
            method, fixed = _implicit_rates(config, method, gold)
        if method == "gold" and (gold is None or np.isnan(gold).all()):
            raise InputError("flip method 'gold' needs audited labels on train/val rows: merge a label file "
                             "(--gold FILE, from causalrm audit) or give the log a 'gold_label' column")
        est = FlipRateEstimator(method=method, quantile=config.quantile, rho01=fixed[0], rho10=fixed[1],
                                n_bootstrap=config.flip_bootstrap, random_state=config.seed)
        from causalrm.data.rowmatrix import subsample, take_rows

        sub = None if method in ("gold", "duplicates", "fixed") else subsample(len(obs), config.nuisance_max_rows, config.seed,
                                                                   stratify=obs)
        if method == "gold":
            est.fit(X_fit, fb, obs, **audit)
        elif method == "duplicates":  # an A/B log's pairs shown in both orders (causalrm.nuisances.duplicate_votes)
            group, order = swapped_duplicates(log[rows.tolist()]) if is_pair_log(log) else (None, None)
            est.fit(None, fb, obs, swap_group=group, swap_order=order)
        elif sub is not None:  # scalar rates from a subsample gathered by index (FitConfig.nuisance_max_rows)
            est.fit(take_rows(X_fit, sub), fb[sub], obs[sub],
                    propensity=None if proxy_weights is None else np.asarray(proxy_weights)[sub])
            diag.setdefault("subsample", {})["flip_rates"] = int(sub.size)
        else:
            est.fit(X_fit, fb, obs, propensity=proxy_weights)
        nuis.flip_estimator = est
        nuis.rho01, nuis.rho10 = float(est.rho01_), float(est.rho10_)
        ci = getattr(est, "ci_", None)
        nuis.rho_ci = {k: tuple(float(v) for v in ci[k]) for k in ("rho01", "rho10")} if ci else None
        weighted = est.proxy_scores_ is not None and proxy_weights is not None  # anchor methods use the weights
        diag["flip_rates"] = {"method": method, "quantile": config.quantile, "rho01": nuis.rho01,
                              "rho10": nuis.rho10, "ci": nuis.rho_ci,
                              "proxy_weighting": "propensity" if weighted else "none",
                              **(jsonable(getattr(est, "diagnostics_", None)) or {})}
        nuis.gates["flip_rates"] = flip_rate_gate(est.diagnostics_)
        if method != "gold" and gold is not None and np.isfinite(gold[obs == 1]).any():
            diag["flip_rates"]["gold_check"] = _gold_check(fb, obs, audit, config)
        diag["seconds"]["flip_rates"] = time.perf_counter() - t0

    if "pseudo_label" in needs or "pseudo_label_noisy" in needs:
        _stage(on_stage, "pseudo-labels")
        t0 = time.perf_counter()
        from causalrm.nuisances.pseudo_labels import clean_posterior, fit_pseudo_labels

        # One proxy f of P(r = 1 | x) serves both. "train-only" (FitConfig.imputation_fit): cross-fitted within the
        # train rows, val rows scored by a train-row proxy (noise.split_cross_fitted_proxy), so neither the trained
        # model nor the val rows' imputation ever saw a val row's feedback. "pooled": the anchor estimator's proxy
        # over train + val (same rows, weights and seed) or, with gold or fixed rates, one fitted here.
        f = None
        pl_weights = None if proxy_weights is None else 1.0 / np.asarray(proxy_weights, dtype=np.float64)
        if config.nuisance_max_rows and len(obs) > config.nuisance_max_rows:  # large log: a subsample's proxy
            fit_on = nuis.split == schema.TRAIN if config.imputation_fit == "train-only" else np.ones(len(obs), bool)
            f, n_sub = subsampled_proxy(X_fit, fb, obs, fit_on, max_rows=config.nuisance_max_rows, seed=config.seed,
                                        sample_weight=pl_weights)
            diag.setdefault("subsample", {})["pseudo_label"] = n_sub
        elif config.imputation_fit == "train-only":
            from causalrm.nuisances.proxy import split_cross_fitted_proxy

            f, _ = split_cross_fitted_proxy(
                X_fit, fb, obs, nuis.split == schema.TRAIN, random_state=config.seed,
                sample_weight=None if proxy_weights is None else 1.0 / np.asarray(proxy_weights, dtype=np.float64))
        else:
            f = getattr(nuis.flip_estimator, "proxy_scores_", None)
            if f is not None and len(f) != len(obs):  # the flip rates came from a subsample: refit on every row
                f = None
        if f is None:
            f = fit_pseudo_labels(X_fit, fb, obs, rho01=0.0, rho10=0.0, random_state=config.seed,
                                  propensity=proxy_weights)
        f = np.asarray(f, dtype=np.float64)
        if "pseudo_label" in needs:
            nuis.pseudo_label = clean_posterior(f, rho01=nuis.rho01, rho10=nuis.rho10)
        if "pseudo_label_noisy" in needs:
            nuis.pseudo_label_noisy = f
        q = nuis.pseudo_label if nuis.pseudo_label is not None else nuis.pseudo_label_noisy
        diag["pseudo_label"] = {"mean": float(q.mean()), "min": float(q.min()), "max": float(q.max()),
                                "weighting": "propensity" if proxy_weights is not None else "none",
                                "fit": config.imputation_fit}
        diag["seconds"]["pseudo_label"] = time.perf_counter() - t0
    return nuis


def _feedback_kind(log: pl.DataFrame) -> str:
    """The log's feedback kind; refuses a positive-only log that was not read as implicit (or forced explicit)."""
    kind = resolve_kind(log)
    if kind == IMPLICIT and FEEDBACK_KIND not in log.columns:
        raise InputError("the log's feedback is only ever 1 or empty (implicit events such as copies or clicks), "
                         "but it was not read as implicit feedback: read it with causalrm.data.io.readers.read_log (or "
                         "causalrm.data.feedback_kinds.as_impressions), or force --feedback-kind explicit")
    return kind


def _implicit_rates(config: FitConfig, method: str, gold: np.ndarray | None
                    ) -> tuple[str, tuple[float | None, float | None]]:
    """An implicit log's flip-rate method and fixed rates: the event rates given (``event_flip_rates``), else the
    configured method with anchors replaced by the audited labels (:func:`_implicit_flip_method`)."""
    rates = event_flip_rates(config.event_rate, config.accidental_rate)
    if rates is not None:
        if config.rho01 is not None:
            raise InputError("give the rates once: --event-rate/--accidental-rate or --rho01/--rho10, not both")
        return "fixed", rates
    if method.startswith("anchor"):
        method = _implicit_flip_method(gold)
    return method, (config.rho01, config.rho10)


def _implicit_flip_method(gold: np.ndarray | None) -> str:
    """An implicit log's flip rates (1 - c, eps) come from audited labels: anchors cannot find them, because no
    event is never a sure negative (``causalrm.data.feedback_kinds``)."""
    if gold is not None and np.isfinite(gold).any():
        return "gold"
    raise InputError("implicit (positive-only) feedback: its event rates cannot be estimated from the events alone, "
                     f"and noise-aware methods need them; {IMPLICIT_NEEDS}, or use --method naive (it ranks by "
                     "P(event | x) but does not calibrate P(good | x))")


def _has_values(log: pl.DataFrame, name: str, rows: np.ndarray) -> bool:
    values = _column(log, name, rows)
    return values is not None and bool(np.isfinite(values).any())


def _implicit_propensity(nuis: Nuisances, rows: np.ndarray, config: FitConfig) -> None:
    """An implicit log observes every impression: p = 1, and the propensity gate says there is no selection."""
    nuis.propensity = np.ones(rows.size)
    nuis.propensity_clipped = np.ones(rows.size)
    nuis.diagnostics["propensity"] = {"source": "implicit", "clip": config.clip, "share_clipped": 0.0}
    nuis.gates["propensity"] = Gate("propensity", False, "implicit feedback: every impression is observed (an event "
                                    "or none), so there is no selection to reweight", {"source": "implicit"})


def subsampled_proxy(
    X: Any, fb: np.ndarray, obs: np.ndarray, fit_on: np.ndarray, *, max_rows: int, seed: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The DR proxy f(x) ~ P(r = 1 | x) of every row on a large log, never copying ``X`` whole
    (``FitConfig.nuisance_max_rows``): ``noise.cross_fitted_proxy`` on a seeded subsample of at most ``max_rows``
    of the ``fit_on`` rows (stratified by o; standardised with the subsample's moments), and every other row scored
    in chunks by one ``noise.ProxyModel`` (same C, calibrated inside) fitted on the subsample's observed rows: no
    row is scored by a model that saw its feedback, and with ``fit_on`` = the train rows no val feedback is used.
    Returns (f (n,), subsample size)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # many small dense fits, as noise.fit_pseudo_labels
        return _subsampled_proxy(X, fb, obs, fit_on, max_rows=max_rows, seed=seed, sample_weight=sample_weight)


def _subsampled_proxy(X, fb, obs, fit_on, *, max_rows, seed, sample_weight):
    from causalrm.data.rowmatrix import RowView, predict_blocks, subsample, take_rows
    from causalrm.nuisances.proxy import ProxyModel, cross_fitted_proxy

    cand = np.flatnonzero(fit_on)
    pick = subsample(len(cand), max_rows, seed, stratify=obs[cand])
    sub = cand if pick is None else cand[pick]
    Xs = take_rows(X, sub).astype(np.float64)
    mu, sd = Xs.mean(axis=0), Xs.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Xs = (Xs - mu) / sd
    r = np.where(obs == 1, fb, 0.0)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    f = np.empty(len(obs), dtype=np.float64)
    f[sub], _, info = cross_fitted_proxy(Xs, r[sub], obs[sub].astype(np.int8), sample_weight=None if w is None
                                         else w[sub], random_state=seed)
    keep = obs[sub] == 1
    proxy = ProxyModel(info["C"], "asymptotic", seed).fit(Xs[keep], r[sub][keep],
                                                           sample_weight=None if w is None else w[sub][keep])
    del Xs
    rest = np.setdiff1d(np.arange(len(obs)), sub, assume_unique=True)
    if rest.size:
        f[rest] = predict_blocks(lambda block: proxy.predict_proba((block - mu) / sd), RowView(X, rest))
    return np.clip(f, 0.0, 1.0), int(sub.size)


def _gold_check(fb: np.ndarray, obs: np.ndarray, audit: dict[str, Any], config: FitConfig) -> dict[str, Any]:
    """The gold-label estimate beside the one used, for logs with an audited subset: {rho01, rho10, ci, n_gold} or
    {error} when the gold rows cannot give one (e.g. a single class)."""
    from causalrm.nuisances.flip_rates import FlipRateEstimator

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = FlipRateEstimator(method="gold", n_bootstrap=config.flip_bootstrap, random_state=config.seed)
            est.fit(None, fb, obs, **audit)
    except InputError as err:
        return {"error": str(err)}
    return {"rho01": est.rho01_, "rho10": est.rho10_, "ci": {k: list(v) for k, v in est.ci_.items()},
            "n_gold": est.diagnostics_["n_gold"]}


def _fit_rows_X(log: pl.DataFrame, X: np.ndarray | None, rows: np.ndarray, config: FitConfig) -> np.ndarray:
    """Embeddings of the fitting rows: ``X[rows]`` (X over the whole log), ``X`` itself (X over the fitting rows
    only) or freshly embedded with ``config.embedder``."""
    if X is None:
        from causalrm.embeddings.embedder import Embedder, embed_log

        return embed_log(log[rows.tolist()], Embedder(model=config.embedder, progress=False))
    from causalrm.data.rowmatrix import RowView, is_lazy

    if is_lazy(X):  # memory-mapped: a lazy row view, rows gathered by index later, never copied whole
        if np.ndim(X) != 2:
            raise InputError(f"embeddings must be a 2-D matrix (rows, dims); got shape {np.shape(X)}")
        if np.shape(X)[0] == log.height:
            return RowView(X, rows)
        if np.shape(X)[0] == rows.size:
            return X if isinstance(X, RowView) else RowView(X)
        raise InputError(f"embeddings have {np.shape(X)[0]} rows but the log has {log.height}; embed this log")
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"embeddings must be a 2-D matrix (rows, dims); got shape {X.shape}")
    if X.shape[0] == log.height:
        return np.ascontiguousarray(X[rows], dtype=np.float32)
    if X.shape[0] == rows.size:
        return np.ascontiguousarray(X, dtype=np.float32)
    raise InputError(f"embeddings have {X.shape[0]} rows but the log has {log.height}; embed this log")
