"""Pseudo-labels q(x) = P(r* = 1 | x) for the doubly robust estimators.

The proxy f(x) of the noisy posterior mapped through the affine noise model ((*) of
:mod:`causalrm.nuisances.flip_rates`): q = clip((f - rho10) / (1 - rho01 - rho10), 0, 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from causalrm.errors import InputError
from causalrm.estimators.base_losses import check_rates
from causalrm.nuisances.checks import check_binary, check_features, check_propensity
from causalrm.nuisances.proxy import cross_fitted_proxy


# ---------------------------------------------------------------------------------------------- pseudo-labels
def fit_pseudo_labels(
    X: Any,
    feedback: Any,
    observed: Any,
    *,
    rho01: float,
    rho10: float,
    random_state: int = 0,
    propensity: Any = None,
    n_folds: int = 5,
    calibration: str = "asymptotic",
) -> np.ndarray:
    """Cross-fitted pseudo-label q(x) ~ eta(x) = P(r* = 1 | x) of the clean label on every row, shape (n,).

    q(x) = clip((f(x) - rho10) / (1 - rho01 - rho10), 0, 1), f the cross-fitted calibrated proxy of P(r = 1 | x)
    (``cross_fitted_proxy``, the same kernel as the anchor estimates).

    Why this form: under class-conditional noise P(r = 1 | x) = rho10 + (1 - rho01 - rho10) eta(x) (module docstring),
    so inverting the affine map turns a noisy-label posterior into the clean one; CausalRM-DR needs e = l(z, q) to
    impute the *clean* loss, because its observed-row term l~ has clean-loss expectation. With rho01 = rho10 = 0 this
    is the proxy of the noisy label itself (the imputation for the debias-only ``dr``).

    Cross-fitting: row i's q comes from a proxy fitted on the observed rows of the other folds, so DR never imputes
    a row with a model that saw its own feedback.

    Selection: the proxy is fitted on observed rows only. Under the assumption of no unmeasured confounding
    (O independent of R*, R given X), P(r = 1 | x, o = 1) = P(r = 1 | x), so a well-specified proxy is unbiased; a
    misspecified one is fitted for the observed rows' covariate distribution. Passing ``propensity`` (clipped p_hat,
    (n,)) weights the fit by 1 / p, re-targeting it at the distribution of all impressions (importance weighting
    for covariate shift). Runs with one BLAS thread (many small dense fits).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_pseudo_labels(
            X, feedback, observed, rho01=rho01, rho10=rho10, random_state=random_state, propensity=propensity,
            n_folds=n_folds, calibration=calibration,
        )


def _fit_pseudo_labels(
    X: Any,
    feedback: Any,
    observed: Any,
    *,
    rho01: float,
    rho10: float,
    random_state: int,
    propensity: Any,
    n_folds: int,
    calibration: str,
) -> np.ndarray:
    rho01, rho10 = check_rates(rho01, rho10)
    o = check_binary(observed, "observed")
    n = len(o)
    Xa = check_features(X, n)
    r = np.asarray(feedback, dtype=np.float64).reshape(-1)
    if r.shape[0] != n:
        raise InputError(f"column 'feedback' has {r.shape[0]} rows but 'observed' has {n}")
    obs = o == 1
    if not np.all((r[obs] == 0) | (r[obs] == 1)):
        raise InputError("column 'feedback' must be 0 or 1 on every observed row")
    if obs.sum() < 10 or min(r[obs].sum(), obs.sum() - r[obs].sum()) < 3:
        raise InputError("too few observed rows (or one feedback class only) to fit pseudo-labels")
    w = None if propensity is None else 1.0 / check_propensity(propensity, name="propensity", n=n)
    q, _, _ = cross_fitted_proxy(
        Xa, np.where(obs, r, 0.0), o, n_folds=n_folds, calibration=calibration, sample_weight=w,
        random_state=random_state,
    )
    return clean_posterior(q, rho01=rho01, rho10=rho10)


def clean_posterior(noisy_posterior: Any, *, rho01: float, rho10: float) -> np.ndarray:
    """eta = clip((P(r = 1 | x) - rho10) / (1 - rho01 - rho10), 0, 1): formula (*) of the module docstring inverted.

    With the flip-rate estimator's cross-fitted proxy (``FlipRateEstimator.proxy_scores_``) this is exactly what
    ``fit_pseudo_labels`` returns for the same rows, weights and seed, without fitting the proxy a second time.
    """
    rho01, rho10 = check_rates(rho01, rho10)
    f = np.asarray(noisy_posterior, dtype=np.float64)
    return np.clip((f - rho10) / (1.0 - rho01 - rho10), 0.0, 1.0)
