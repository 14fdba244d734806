"""Flip rates rho01 = P(r = 0 | r* = 1), rho10 = P(r = 1 | r* = 0) and pseudo-labels q(x) of the clean label.

Notation as in docs/ARCHITECTURE.md (``X``, ``feedback`` r, ``observed`` o, ``gold_label``, ``pseudo_label`` q).

Under class-conditional noise the noisy posterior is an affine image of the clean one:

    P(r = 1 | x) = rho10 + (1 - rho01 - rho10) eta(x),      eta(x) = P(r* = 1 | x).                        (*)

Anchor points (Liu & Tao 2016; Patrini et al. 2017; the CausalRM paper, arXiv 2603.18736): if some x are almost
surely negative (eta = 0) and some almost surely positive (eta = 1), then min_x P(r = 1 | x) = rho10 and
max_x P(r = 1 | x) = 1 - rho01. With a proxy f(x) of P(r = 1 | x) fitted on the observed rows and evaluated,
cross-fitted, on *every* row i (``cross_fitted_proxy``):

    anchor-minmax:    rho10 = min_i f(x_i),              rho01 = 1 - max_i f(x_i)
    anchor-quantile:  rho10 = quantile_{1-q} f(x_i),     rho01 = 1 - quantile_q f(x_i)   (q = 0.97 by default)

Pitfall 2 of METHOD.md: an overfit proxy scores its own training rows near 0 and 1 and the estimates collapse to 0.
Here the proxy scores are out-of-fold (row i is scored by a model that never saw r_i), the logistic model's C is
chosen by cross-validated log loss, and the decision values are calibrated, cross-fitted, by a four-parameter
logistic curve with free asymptotes (``AsymptoticCalibrator``). The calibrator matters for anchors: (*) has flat
plateaus at rho10 and 1 - rho01, which plain Platt / logistic probabilities cannot represent (their tails run to 0
and 1, so their extreme quantiles collapse the estimates towards 0, as in pitfall 2), while isotonic regression
overshoots at the ends (its extreme blocks are maxima of suffix means). Measured on synthetic logs with 8,000 rows
(tests/test_noise.py settings): plain logistic gave rho01 = 0.07 for a true 0.2, isotonic 0.15-0.19, asymptotic
within 0.03 of every true rate.

gold: on rows with an audited ``gold_label`` and observed feedback, rho01 = P(r = 0 | gold = 1),
rho10 = P(r = 1 | gold = 0); rows of an audit (``causalrm.evaluation.audit``) weigh 1 / inclusion probability. Each rate's 95%
interval is the Wilson score interval at the Kish effective size of its rows (honest at every sample size: positive
width at 0 or 1 flips, no resample that collapses). duplicates (A/B logs): the votes of pairs shown in both orders
(:mod:`causalrm.nuisances.duplicate_votes`, its derivation). fixed: the user's values.

Why every row and not only the observed ones: the anchors are points x of the covariate distribution, and
P(r = 1 | x, o = 1) = P(r = 1 | x) under no unmeasured confounding, so the proxy applies to unobserved rows too.
Selection makes the observed rows a biased sample of x: with feedback mostly on good responses (small alpha) they are
~90% positive, their lower quantile sits among positives and rho10 comes out several times too large (measured on
the bundled data: 0.3-0.9 for a true 0.1-0.2). The unobserved rows hold the negatives the anchor needs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.estimators.base_losses import check_rates
from causalrm.nuisances.checks import check_binary, check_features, check_propensity
from causalrm.nuisances.proxy import CALIBRATIONS, cross_fitted_proxy, make_calibrator

FLIP_METHODS: tuple[str, ...] = ("anchor-quantile", "anchor-minmax", "gold", "duplicates", "fixed")
SWEEP_QUANTILES: tuple[float, ...] = (0.90, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)
WARN_SUM = 0.8


def chance_auc_bound(n_positive: int, n_negative: int, z: float = 2.0) -> float:
    """0.5 + z * the standard error of the AUC of a random scorer (Hanley & McNeil 1982 under the null:
    sqrt((n1 + n0 + 1) / (12 n1 n0))): an out-of-fold AUC at or below it is indistinguishable from chance."""
    if n_positive < 1 or n_negative < 1:
        return 1.0
    return 0.5 + z * math.sqrt((n_positive + n_negative + 1) / (12.0 * n_positive * n_negative))


def anchor_rates(scores: np.ndarray, q: float) -> tuple[float, float]:
    """(rho01, rho10) = (1 - quantile_q f, quantile_{1-q} f); q = 1 gives the min/max anchors."""
    hi, lo = np.quantile(scores, [q, 1.0 - q])
    return float(1.0 - hi), float(lo)


# ---------------------------------------------------------------------------------------------- the estimator
class FlipRateEstimator(BaseEstimator):
    """Class-conditional flip rates rho01 = P(r = 0 | r* = 1) and rho10 = P(r = 1 | r* = 0).

    anchor-quantile: rho10 = quantile_{1-q} f(x), rho01 = 1 - quantile_q f(x); anchor-minmax: q = 1 (min / max),
    f = calibrated proxy of P(r = 1 | x) fitted on the observed rows and cross-fitted over *all* rows
    (``cross_fitted_proxy``); the quantiles are taken over all rows, observed or not (module docstring).
    gold: rho01 = P(r = 0 | gold = 1), rho10 = P(r = 1 | gold = 0) on observed rows with a gold label; a soft
    gold_label is thresholded (> 0.5 positive, < 0.5 negative, exactly 0.5 dropped as uninformative). With an
    audit's ``inclusion_probability`` pi, the Hájek estimates for the whole log:
    rho01 = Σ w [gold = 1, r = 0] / Σ w [gold = 1], w = 1 / pi, and likewise rho10.
    duplicates (A/B logs): with p11 / p00 the shares of swapped-order groups whose two votes both went to the
    first- / second-shown response and d = p11 - p00, rho01 + rho10 = 1 - sqrt(1 - 2 (p11 + p00) + d^2),
    rho10 - rho01 = d (``duplicate_votes``; ``swap_group`` / ``swap_order`` from
    ``causalrm.data.pairwise.swapped_duplicates``).
    fixed: ``rho01``, ``rho10`` as given.

    ci_: 95% intervals. anchor: percentile bootstrap from ``n_bootstrap`` resamples of the rows (each resample refits
    the calibrator on the resampled out-of-fold decision values and recomputes the quantiles, so the interval covers
    the calibration and quantile error but not the refit of the logistic direction). duplicates: percentile
    bootstrap over the swapped-order groups. gold: the Wilson score interval
    of each rate at the Kish effective size n_eff = (Σ w)² / Σ w² of the gold rows of its class
    (``evaluation.wilson_interval``); the rates are parameters of the feedback process, so a labelled census of the
    feedback rows still leaves an interval.
    Warns (``warnings.warn`` and diagnostics_["warnings"]) when the proxy's out-of-fold AUC on the observed rows is
    within two standard errors of chance (``chance_auc_bound``: the anchors are then quantiles of noise). Refuses
    rho01 + rho10 >= 1 (InputError); warns (``warnings.warn`` and diagnostics_["warnings"]) when the sum
    exceeds 0.8. diagnostics_["sweep"]: the anchor estimates over ``SWEEP_QUANTILES`` (how far they move
    with q; both rates are non-increasing in q).

    Fitted attributes: rho01_, rho10_, ci_ = {"rho01": (lo, hi), "rho10": (lo, hi)}, proxy_scores_ ((n,)
    cross-fitted proxy scores of every row, None for gold / fixed), diagnostics_ (JSON-serialisable dict).
    """

    def __init__(
        self,
        *,
        method: str = "anchor-quantile",
        quantile: float = 0.97,
        rho01: float | None = None,
        rho10: float | None = None,
        n_bootstrap: int = 200,
        n_folds: int = 5,
        calibration: str = "asymptotic",
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.quantile = quantile
        self.rho01 = rho01
        self.rho10 = rho10
        self.n_bootstrap = n_bootstrap
        self.n_folds = n_folds
        self.calibration = calibration
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.method not in FLIP_METHODS:
            raise InputError(f"flip-rate method {self.method!r} is unknown: choose one of {', '.join(FLIP_METHODS)}")
        if not (0.5 < float(self.quantile) <= 1.0):
            raise InputError(f"quantile must lie in (0.5, 1], got {self.quantile!r}")
        if self.calibration not in CALIBRATIONS:
            raise InputError(
                f"calibration {self.calibration!r} is unknown: choose one of {', '.join(CALIBRATIONS)}"
            )
        if not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise InputError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")
        if not isinstance(self.n_bootstrap, int) or self.n_bootstrap < 0:
            raise InputError(f"n_bootstrap must be a non-negative integer, got {self.n_bootstrap!r}")

    def fit(
        self, X: Any, feedback: Any, observed: Any, gold_label: Any = None, propensity: Any = None, *,
        inclusion_probability: Any = None, swap_group: Any = None, swap_order: Any = None,
    ) -> FlipRateEstimator:
        """Estimate the flip rates from a log (X may be None for ``gold`` and ``fixed``).

        ``propensity`` ((n,), clipped p_hat; anchor methods only) weights the proxy's fit by 1 / p, re-targeting it
        at the distribution of all impressions, where the rare observed negatives (low propensity) count fully.
        ``inclusion_probability`` ((n,); gold only): the audit design's pi of the gold-labelled rows
        (``causalrm.evaluation.audit``; other rows may hold NaN / None). ``swap_group``, ``swap_order`` ((n,);
        duplicates only): each row's swapped-order group (-1: none) and which of its two orders it showed
        (``causalrm.data.pairwise.swapped_duplicates``).

        Runs with one BLAS thread: the problems are many small dense fits, where BLAS threads only add contention.
        """
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(X, feedback, observed, gold_label, propensity, inclusion_probability,
                             (swap_group, swap_order))

    def _fit(self, X: Any, feedback: Any, observed: Any, gold_label: Any, propensity: Any,
             design: Any, swaps: tuple[Any, Any]) -> FlipRateEstimator:
        self._check_params()
        rng = np.random.default_rng(self.random_state)
        diag: dict[str, Any] = {"method": self.method, "warnings": []}
        self.proxy_scores_: np.ndarray | None = None
        if self.method == "fixed":
            if self.rho01 is None or self.rho10 is None:
                raise InputError("method 'fixed' needs both rho01 and rho10")
            a, b = self._accept(float(self.rho01), float(self.rho10), diag)
            self.ci_ = {"rho01": (a, a), "rho10": (b, b)}
        else:
            o = check_binary(observed, "observed")
            n = len(o)
            r = np.asarray(feedback, dtype=np.float64).reshape(-1)
            if r.shape[0] != n:
                raise InputError(f"column 'feedback' has {r.shape[0]} rows but 'observed' has {n}")
            obs = o == 1
            r_obs = r[obs]
            if not np.all((r_obs == 0) | (r_obs == 1)):
                i = int(np.flatnonzero(obs)[np.argmax(~((r_obs == 0) | (r_obs == 1)))])
                raise InputError(
                    f"column 'feedback' row {i} is {float(r[i])!r}: it must be 0 or 1 where observed == 1"
                )
            if self.method == "gold":
                self._fit_gold(r, obs, gold_label, n, diag, design)
            elif self.method == "duplicates":
                self._fit_duplicates(r, obs, n, diag, *swaps)
            else:
                w = None if propensity is None else 1.0 / check_propensity(propensity, name="propensity", n=n)
                self._fit_anchor(X, r_obs, obs, n, rng, diag, w)
        self.rho01_, self.rho10_ = diag["rho01"], diag["rho10"]
        diag["ci"] = {k: list(v) for k, v in self.ci_.items()}
        self.diagnostics_ = diag
        return self

    def _accept(self, rho01: float, rho10: float, diag: dict[str, Any]) -> tuple[float, float]:
        if not (np.isfinite(rho01) and np.isfinite(rho10)):
            raise InputError("flip rates are not finite numbers")
        if rho01 + rho10 >= 1.0:
            why = ("label more rows (the gold rows so far disagree with the feedback at least as often as they agree) "
                   "or set the rates by hand (method='fixed')" if self.method == "gold" else
                   "the swapped-order duplicate votes agree no more than chance would, so use gold labels "
                   "(method='gold') or set the rates by hand (method='fixed')" if self.method == "duplicates" else
                   "the proxy cannot separate the classes, so use gold labels (method='gold') or set the rates by "
                   "hand (method='fixed')")
            raise InputError(
                f"estimated rho01 + rho10 = {rho01 + rho10:.3f} >= 1 (rho01={rho01:.3f}, rho10={rho10:.3f}): the "
                f"feedback would carry no information about the true label; {why}"
            )
        check_rates(rho01, rho10)
        if rho01 + rho10 > WARN_SUM:
            msg = (
                f"rho01 + rho10 = {rho01 + rho10:.3f} > {WARN_SUM}: the noise correction divides by "
                f"{1 - rho01 - rho10:.3f} and will be very noisy; check the estimates"
            )
            _warn(diag, msg, stacklevel=3)
        diag["rho01"], diag["rho10"] = rho01, rho10
        return rho01, rho10

    def _fit_anchor(
        self,
        X: Any,
        r_obs: np.ndarray,
        obs: np.ndarray,
        n: int,
        rng: np.random.Generator,
        diag: dict[str, Any],
        weight: np.ndarray | None,
    ) -> None:
        if X is None:
            raise InputError(f"method {self.method!r} needs X (the embeddings)")
        Xa = check_features(X, n)
        m = len(r_obs)
        if m < 20 or min(r_obs.sum(), m - r_obs.sum()) < 5:
            raise InputError(
                f"only {m} observed rows ({int(r_obs.sum())} positive): too few to estimate flip rates from anchors; "
                "use method='fixed' or 'gold'"
            )
        r_all = np.zeros(n)
        r_all[obs] = r_obs
        scores, dec, info = cross_fitted_proxy(
            Xa, r_all, obs.astype(np.int8), n_folds=self.n_folds, calibration=self.calibration,
            sample_weight=weight, random_state=self.random_state,
        )
        auc_floor = chance_auc_bound(int(r_obs.sum()), int(m - r_obs.sum()))
        diag["proxy_auc_chance_bound"] = auc_floor
        if info["oof_auc"] is None or info["oof_auc"] <= auc_floor:
            msg = (
                f"flip rates are not identifiable from anchors here: the proxy ranks the feedback of the {m} observed "
                f"rows no better than chance (out-of-fold AUC {info['oof_auc'] or 0.5:.3f} <= {auc_floor:.3f}, the "
                "2-sigma band of a random scorer), so its extreme quantiles are noise; give the rates "
                "(--rho01/--rho10, method 'fixed') or audited labels (gold_label, method 'gold')"
            )
            _warn(diag, msg, stacklevel=4)
        elif info["oof_auc"] < 0.6:
            msg = (
                f"the proxy separates feedback poorly (out-of-fold AUC {info['oof_auc']:.2f}): anchor estimates "
                "assume some rows are almost surely positive / negative and may be far off"
            )
            _warn(diag, msg, stacklevel=4)
        q = 1.0 if self.method == "anchor-minmax" else float(self.quantile)
        rho01, rho10 = anchor_rates(scores, q)
        self.proxy_scores_ = scores
        sweep = [anchor_rates(scores, s) for s in SWEEP_QUANTILES]
        diag.update(
            quantile=q,
            n_observed=m,
            n_observed_positive=int(r_obs.sum()),
            n_observed_negative=int(m - r_obs.sum()),
            n_rows=n,
            proxy=info,
            sweep={
                "q": list(SWEEP_QUANTILES),
                "rho01": [a for a, _ in sweep],
                "rho10": [b for _, b in sweep],
            },
        )
        mid = [i for i, s in enumerate(SWEEP_QUANTILES) if 0.95 <= s <= 0.99]
        diag["sweep_spread"] = {
            "rho01": float(np.ptp([sweep[i][0] for i in mid])),
            "rho10": float(np.ptp([sweep[i][1] for i in mid])),
        }
        self._accept(rho01, rho10, diag)
        if self.n_bootstrap:
            dec_obs, w_obs = dec[obs], None if weight is None else weight[obs]
            b01, b10 = np.empty(self.n_bootstrap), np.empty(self.n_bootstrap)
            for i in range(self.n_bootstrap):
                idx = rng.integers(0, m, size=m)
                cal = make_calibrator(self.calibration).fit(
                    dec_obs[idx], r_obs[idx], sample_weight=None if w_obs is None else w_obs[idx]
                )
                b01[i], b10[i] = anchor_rates(cal.predict(dec[rng.integers(0, n, size=n)]), q)
            self.ci_ = {"rho01": _percentile_ci(b01), "rho10": _percentile_ci(b10)}
        else:
            self.ci_ = {"rho01": (rho01, rho01), "rho10": (rho10, rho10)}

    def _fit_gold(
        self, r: np.ndarray, obs: np.ndarray, gold_label: Any, n: int, diag: dict[str, Any], design: Any,
    ) -> None:
        from causalrm.evaluation.metrics import effective_size, wilson_interval

        if gold_label is None:
            raise InputError("method 'gold' needs gold_label (audited true labels on a subset of rows)")
        g = np.asarray(gold_label, dtype=np.float64).reshape(-1)
        if g.shape[0] != n:
            raise InputError(f"column 'gold_label' has {g.shape[0]} rows but the log has {n}")
        bad = np.isfinite(g) & ((g < 0) | (g > 1))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(
                f"column 'gold_label' row {i} is {float(g[i])!r}: gold labels must lie in [0, 1] (or be null)"
            )
        use = obs & np.isfinite(g) & (g != 0.5)
        gb = (g[use] > 0.5).astype(float)
        rr = r[use]
        w = self._weights(design, use, n)
        n_pos, n_neg = int(gb.sum()), int(len(gb) - gb.sum())
        if n_pos < 1 or n_neg < 1:
            raise InputError(
                f"gold labels on observed rows: {n_pos} positive, {n_neg} negative; both classes are needed to "
                "estimate rho01 and rho10: label more rows with feedback"
            )
        pos, neg = gb == 1, gb == 0
        rho01 = float(np.sum(w[pos] * (rr[pos] == 0)) / np.sum(w[pos]))
        rho10 = float(np.sum(w[neg] * (rr[neg] == 1)) / np.sum(w[neg]))
        n_eff = {"rho01": effective_size(w[pos]), "rho10": effective_size(w[neg])}
        diag.update(n_gold=int(len(gb)), n_gold_positive=n_pos, n_gold_negative=n_neg,
                    weighted=design is not None, n_effective=n_eff)
        if min(n_pos, n_neg) < 30:
            diag["warnings"].append(
                f"only {min(n_pos, n_neg)} gold rows in the smaller class: the flip-rate estimate is imprecise"
            )
        self._accept(rho01, rho10, diag)
        self.ci_ = {"rho01": wilson_interval(rho01, n_eff["rho01"]), "rho10": wilson_interval(rho10, n_eff["rho10"])}

    def _fit_duplicates(self, r: np.ndarray, obs: np.ndarray, n: int, diag: dict[str, Any], group: Any,
                        order: Any) -> None:
        from causalrm.nuisances.duplicate_votes import swapped_vote_rates

        if group is None or order is None:
            raise InputError("method 'duplicates' reads an A/B log's swapped-order duplicates (one pair shown in "
                             "both orders): use it on an A/B log, or choose anchor-quantile, gold or fixed")
        g, k = np.asarray(group).reshape(-1), np.asarray(order).reshape(-1)
        if g.shape[0] != n or k.shape[0] != n:
            raise InputError(f"swap_group / swap_order have {g.shape[0]} / {k.shape[0]} rows but the log has {n}")
        use = obs & (g >= 0)
        found = swapped_vote_rates(r[use], g[use].astype(np.int64), k[use], n_bootstrap=self.n_bootstrap,
                                   random_state=self.random_state)
        diag.update(n_swapped=found["n_groups"], n_swapped_one_order=found["n_incomplete"],
                    p_both_first=found["p_both_first"], p_both_second=found["p_both_second"])
        if found["n_groups"] < 100:
            diag["warnings"].append(f"only {found['n_groups']} swapped-order duplicate pairs: the flip-rate "
                                    "estimate is imprecise")
        self._accept(found["rho01"], found["rho10"], diag)
        self.ci_ = found["ci"]

    @staticmethod
    def _weights(pi: Any, use: np.ndarray, n: int) -> np.ndarray:
        """Weights 1 / pi of the used gold rows (``inclusion_probability``); ones without an audit design."""
        if pi is None:
            return np.ones(int(use.sum()))
        pi = np.asarray(pi, dtype=np.float64).reshape(-1)
        if pi.shape[0] != n:
            raise InputError(f"column 'inclusion_probability' has {pi.shape[0]} rows but the log has {n}")
        bad = use & ~((pi > 0) & (pi <= 1))
        if bad.any():
            raise InputError(f"column 'inclusion_probability' row {int(np.argmax(bad))} is {float(pi[bad][0])!r} "
                             "on a gold-labelled row: it must lie in (0, 1]; merge the labels with --gold FILE")
        return 1.0 / pi[use]

    def rates(self) -> tuple[float, float]:
        """(rho01_, rho10_)."""
        check_is_fitted(self, "rho01_")
        return self.rho01_, self.rho10_


def _warn(diag: dict[str, Any], msg: str, *, stacklevel: int) -> None:
    """Emit ``msg`` as a UserWarning (``stacklevel`` counted from the caller) and keep it in diagnostics_."""
    warnings.warn(msg, UserWarning, stacklevel=stacklevel + 1)
    diag["warnings"].append(msg)


def _percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [a, 1.0 - a])
    return float(lo), float(hi)


__all__ = [
    "CALIBRATIONS",
    "FLIP_METHODS",
    "AsymptoticCalibrator",
    "ProxyModel",
    "SWEEP_QUANTILES",
    "FlipRateEstimator",
    "anchor_rates",
    "clean_posterior",
    "chance_auc_bound",
    "cross_fitted_proxy",
    "split_cross_fitted_proxy",
    "choose_c",
    "fit_pseudo_labels",
    "make_calibrator",
]


def design_columns(log: pl.DataFrame, rows: np.ndarray) -> dict[str, np.ndarray | None]:
    """``gold_label`` and ``inclusion_probability`` over ``rows`` of ``log`` (NaN where the log has no value, None
    without the column): the keyword arguments of ``FlipRateEstimator.fit``."""
    def column(name: str) -> np.ndarray | None:
        return log[name].cast(pl.Float64).to_numpy()[rows] if name in log.columns else None

    return {"gold_label": column(schema.GOLD_LABEL), "inclusion_probability": column(schema.INCLUSION_PROBABILITY)}
