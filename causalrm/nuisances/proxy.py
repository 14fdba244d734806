"""The proxy f(x) of P(r = 1 | x) that the anchors, the pseudo-labels and the audit's design read.

A logistic model on the observed rows (1 / p-hat weights, C chosen by cross-validated log loss), scored out-of-fold on
every row and calibrated, cross-fitted, with free asymptotes (``AsymptoticCalibrator``): why, in
:mod:`causalrm.nuisances.flip_rates`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from causalrm.errors import InputError

CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
CALIBRATIONS: tuple[str, ...] = ("asymptotic", "isotonic", "sigmoid", "none")


# ---------------------------------------------------------------------------------------------- the proxy
def _standardise(X: np.ndarray) -> np.ndarray:
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    return (X - mu) / np.where(sd > 0, sd, 1.0)


def _n_splits(y: np.ndarray, wanted: int) -> int:
    minority = int(min(np.sum(y == 1), np.sum(y == 0)))
    return max(2, min(wanted, minority))


def choose_c(Xs: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None, random_state: int = 0) -> float:
    """The L2 strength C of a logistic regression with the best 3-fold cross-validated log loss over ``CS``."""
    folds = StratifiedKFold(_n_splits(y, 3), shuffle=True, random_state=random_state)
    best, best_c = np.inf, 1.0
    for c in CS:
        losses = []
        for tr, te in folds.split(Xs, y):
            sw = None if sample_weight is None else sample_weight[tr]
            m = LogisticRegression(C=c, max_iter=1000).fit(Xs[tr], y[tr], sample_weight=sw)
            losses.append(
                log_loss(y[te], m.predict_proba(Xs[te])[:, 1], labels=[0, 1],
                         sample_weight=None if sample_weight is None else sample_weight[te])
            )
        if np.mean(losses) < best - 1e-9:
            best, best_c = float(np.mean(losses)), c
    return best_c


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


class AsymptoticCalibrator:
    """Four-parameter logistic calibration f(s) = c0 + (c1 - c0) sigma(a s + b), 0 < c0 < c1 < 1, fitted by MLE.

    Platt scaling with free asymptotes: under class-conditional noise P(r = 1 | x) = rho10 + (1 - rho01 - rho10)
    eta(x) has plateaus at rho10 and 1 - rho01 (formula (*) in the module docstring), which Platt's sigma(a s + b)
    cannot represent (its tails reach 0 and 1) and isotonic regression overshoots at the ends (its extreme blocks
    are maxima of suffix means). Parametrised as c0 = sigma(t0), c1 = c0 + (1 - c0) sigma(t1); L-BFGS from the
    Platt solution with asymptotes 0.02 / 0.98.
    """

    def fit(self, s: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> AsymptoticCalibrator:
        from scipy.optimize import minimize

        s = np.asarray(s, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        w = w / w.mean()
        scale = float(np.std(s)) or 1.0
        u = (s - np.mean(s)) / scale
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(u[:, None], y, sample_weight=w)
        x0 = np.array([platt.coef_[0, 0], platt.intercept_[0], np.log(0.02 / 0.98), np.log(0.98 / 0.02)])

        n = len(y)

        def nll_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b, t0, t1 = theta
            c0, s1 = _sigmoid(t0), _sigmoid(t1)
            sg = _sigmoid(a * u + b)
            f = np.clip(c0 + (1.0 - c0) * s1 * sg, 1e-12, 1 - 1e-12)
            value = float(-np.sum(w * (y * np.log(f) + (1 - y) * np.log(1 - f))) / n)
            dldf = -w * (y / f - (1 - y) / (1 - f)) / n
            dg = (1.0 - c0) * s1 * sg * (1.0 - sg)
            grad = np.array(
                [
                    np.sum(dldf * dg * u),
                    np.sum(dldf * dg),
                    np.sum(dldf * c0 * (1.0 - c0) * (1.0 - s1 * sg)),
                    np.sum(dldf * (1.0 - c0) * s1 * (1.0 - s1) * sg),
                ]
            )
            return value, grad

        res = minimize(
            nll_and_grad, x0, jac=True, method="L-BFGS-B", bounds=[(-50, 50), (-50, 50), (-15, 15), (-15, 15)]
        )
        self.theta_ = res.x
        self.mean_, self.scale_ = float(np.mean(s)), scale
        return self

    @staticmethod
    def _f(u: np.ndarray, theta: np.ndarray) -> np.ndarray:
        a, b, t0, t1 = theta
        c0 = _sigmoid(t0)
        c1 = c0 + (1.0 - c0) * _sigmoid(t1)
        return c0 + (c1 - c0) * _sigmoid(a * u + b)

    @property
    def asymptotes_(self) -> tuple[float, float]:
        """(c0, c1): the fitted lower and upper plateaus."""
        _, _, t0, t1 = self.theta_
        c0 = float(_sigmoid(t0))
        return c0, c0 + (1.0 - c0) * float(_sigmoid(t1))

    def predict(self, s: np.ndarray) -> np.ndarray:
        return self._f((np.asarray(s, dtype=np.float64) - self.mean_) / self.scale_, self.theta_)


class _Platt:
    def fit(self, s: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> _Platt:
        self.m_ = LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], y, sample_weight=sample_weight)
        return self

    def predict(self, s: np.ndarray) -> np.ndarray:
        return self.m_.predict_proba(np.asarray(s)[:, None])[:, 1]


class _Identity:
    def fit(self, s: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> _Identity:
        return self

    def predict(self, s: np.ndarray) -> np.ndarray:
        return _sigmoid(np.asarray(s, dtype=np.float64))


def make_calibrator(calibration: str) -> Any:
    """A calibrator with fit(s, y, sample_weight) / predict(s) mapping logistic decision values to probabilities."""
    if calibration == "asymptotic":
        return AsymptoticCalibrator()
    if calibration == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    if calibration == "sigmoid":
        return _Platt()
    if calibration == "none":
        return _Identity()
    raise InputError(f"calibration {calibration!r} is unknown: choose one of {', '.join(CALIBRATIONS)}")


class ProxyModel:
    """A fitted proxy of P(y = 1 | x): standardised logistic regression + a calibrator on its decision values."""

    def __init__(self, C: float, calibration: str, random_state: int = 0) -> None:
        self.C, self.calibration, self.random_state = C, calibration, random_state

    def fit(self, Xs: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> ProxyModel:
        k = _n_splits(y, 3)
        dec = np.empty(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=self.random_state).split(Xs, y):
            sw = None if sample_weight is None else sample_weight[tr]
            m = LogisticRegression(C=self.C, max_iter=1000).fit(Xs[tr], y[tr], sample_weight=sw)
            dec[te] = m.decision_function(Xs[te])
        self.calibrator_ = make_calibrator(self.calibration).fit(dec, y, sample_weight=sample_weight)
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(Xs, y, sample_weight=sample_weight)
        return self

    def predict_proba(self, Xs: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict(self.model_.decision_function(Xs))


def cross_fitted_proxy(
    X: np.ndarray,
    feedback: np.ndarray,
    observed: np.ndarray,
    *,
    n_folds: int = 5,
    calibration: str = "asymptotic",
    sample_weight: np.ndarray | None = None,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Cross-fitted calibrated scores f(x_i) ~ P(r = 1 | x_i) for *every* row, fitted on the observed rows only.

    1. C by 3-fold cross-validated log loss over ``CS`` on the observed rows (one hyperparameter, chosen once).
    2. The rows are split into ``n_folds`` folds (stratified by observed, so a row's own feedback never moves it
       to another fold; by feedback when every row is observed); row i's decision value s_i = w_{-k(i)} . x_i comes
       from a standardised L2 logistic regression fitted on the observed rows of the other folds, so no observed
       row is scored by a model that saw its feedback.
    3. Calibration inside each training fold (``ProxyModel``: the calibrator is fitted on inner out-of-fold
       decision values), so nothing applied to fold k has seen fold k's feedback. ``calibration``: "asymptotic"
       (default, ``AsymptoticCalibrator``), "isotonic", "sigmoid" (Platt) or "none".
    ``sample_weight`` ((n,), e.g. 1 / p_hat) weights the observed rows in every fit.
    Returns (scores (n,), decision values (n,), info) with info = {C, calibration, n_folds, oof_log_loss (scores),
    oof_auc (decision values, observed rows: the proxy's ranking apart from calibration), asymptotes (asymptotic
    calibration fitted on all observed rows)}.
    """
    Xs = _standardise(np.asarray(X, dtype=np.float64))
    obs = np.asarray(observed).reshape(-1) == 1
    r = np.where(obs, np.asarray(feedback, dtype=np.float64).reshape(-1), 0.0)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    C = choose_c(Xs[obs], r[obs], sample_weight=None if w is None else w[obs], random_state=random_state)
    k = _n_splits(r[obs], n_folds)
    strata = (r if obs.all() else obs).astype(int)
    stratify = np.bincount(strata).min() >= k
    splitter = (StratifiedKFold if stratify else KFold)(k, shuffle=True, random_state=random_state)
    folds = list(splitter.split(Xs, strata))
    dec, scores = np.empty(len(r)), np.empty(len(r))
    for tr, te in folds:
        tr = tr[obs[tr]]
        proxy = ProxyModel(C, calibration, random_state).fit(Xs[tr], r[tr], sample_weight=None if w is None else w[tr])
        dec[te] = proxy.model_.decision_function(Xs[te])
        scores[te] = proxy.calibrator_.predict(dec[te])
    ro, so = r[obs], np.clip(scores[obs], 1e-12, 1 - 1e-12)
    info = {
        "C": C,
        "calibration": calibration,
        "n_folds": k,
        "oof_log_loss": float(log_loss(ro, so, labels=[0, 1])),
        "oof_auc": float(roc_auc_score(ro, dec[obs])) if 0 < ro.sum() < len(ro) else None,
    }
    if calibration == "asymptotic":
        cal = AsymptoticCalibrator().fit(dec[obs], ro, sample_weight=None if w is None else w[obs])
        info["asymptotes"] = list(cal.asymptotes_)
    return scores, dec, info


def split_cross_fitted_proxy(
    X: np.ndarray,
    feedback: np.ndarray,
    observed: np.ndarray,
    is_train: np.ndarray,
    *,
    n_folds: int = 5,
    calibration: str = "asymptotic",
    sample_weight: np.ndarray | None = None,
    random_state: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Calibrated f(x_i) ~ P(r = 1 | x_i) for every row, cross-fitted *within* the train rows and never fitted on a
    val row's feedback: the imputation of the doubly robust estimators (double machine learning practice,
    Chernozhukov et al. 2018).

    * a train row's score comes from ``cross_fitted_proxy`` run on the train rows alone (fold k's rows scored by a
      proxy fitted on the observed train rows of the other folds);
    * a val row's score comes from one proxy (``ProxyModel``, same C, calibrated inside) fitted on every observed
      train row.

    So no row's pseudo-label comes from a model that saw that row's feedback, the trained reward model never sees a
    val row's feedback through its pseudo-labels, and a validation estimate that reads the val rows' pseudo-labels
    is not fitted to the val feedback it is scored against. (``cross_fitted_proxy`` over train + val, which the flip
    rates use, gives the first property only.) The covariates are standardised with the train rows' moments.
    ``sample_weight`` (e.g. 1 / p_hat) weights the observed rows of every fit. Returns (scores (n,), info of the
    train-row cross-fit).
    """
    Xa = np.asarray(X, dtype=np.float64)
    tr = np.asarray(is_train, dtype=bool).reshape(-1)
    obs = np.asarray(observed).reshape(-1) == 1
    r = np.where(obs, np.asarray(feedback, dtype=np.float64).reshape(-1), 0.0)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if not tr.any():
        raise InputError("no train rows to fit the pseudo-labels on")
    mu, sd = Xa[tr].mean(axis=0), Xa[tr].std(axis=0)
    Xs = (Xa - mu) / np.where(sd > 0, sd, 1.0)
    scores = np.empty(len(r))
    scores[tr], _, info = cross_fitted_proxy(Xs[tr], r[tr], obs[tr].astype(np.int8), n_folds=n_folds,
                                             calibration=calibration, sample_weight=None if w is None else w[tr],
                                             random_state=random_state)
    if (~tr).any():
        fit_rows = tr & obs
        proxy = ProxyModel(info["C"], calibration, random_state).fit(
            Xs[fit_rows], r[fit_rows], sample_weight=None if w is None else w[fit_rows])
        scores[~tr] = proxy.predict_proba(Xs[~tr])
    info = {**info, "fit": "train rows only (cross-fitted within train; val rows scored by a train-row proxy)"}
    return np.clip(scores, 0.0, 1.0), info
