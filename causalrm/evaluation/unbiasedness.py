"""The paper's RQ3 check: is each estimator's loss value unbiased for the ideal loss at fixed predictions?

For a fixed prediction vector s (predicted preferences sigma(z)) and fixed true labels r*, the ideal loss is
L_ideal = (1/N) sum_i l(z_i, r*_i). A log is simulated by drawing o_i ~ Bernoulli(p_i) and flipping r*_i into the
feedback r_i with the class-conditional rates rho01, rho10; each estimator (``causalrm.estimators.losses``) is evaluated on the
log, and the Monte Carlo mean over ``n_reps`` logs is compared with L_ideal (``unbiasedness_check`` is the single-log
version on a simulated log; ``rq3_bias_table`` averages over many simulated logs to separate bias from noise):

    relative bias = (mean_b L_hat_b - L_ideal) / L_ideal,     Monte Carlo SE = sd_b(L_hat_b) / sqrt(n_reps) / L_ideal.

Given the true rho and p, CausalRM-IPS and CausalRM-DR are exactly unbiased (E[(o/p) l~(z, r) | r*] = l(z, r*));
naive, IPS (debias-only), DR (debias-only), denoise-only and forward correction are not (naive, fcorr and denoise
average o l over all N rows, as the paper defines them, so their values also shrink with the observation rate). SNIPS
is a ratio estimator (consistent, not unbiased).

The prediction vectors follow the style of the synthetic checks of Schnabel et al. (ICML 2016, "Recommendations as
Treatments") used again by Li et al. (KDD 2024, OME-IPS/OME-DR) and the CausalRM paper (arXiv 2603.18736, RQ3).
The exact definitions below are OUR OWN (the paper's could not be read). Every row has a latent rating y in {1..5}
(uniform), r* = 1[y > 3] (above the median level); a predicted rating y_hat is mapped to s = clip((y_hat - 1) / 4,
0.02, 0.98), z = logit(s):

    ROTATE  y_hat = y - 1 for y >= 2, and 5 for y = 1 (every prediction one level low, the worst ones wrapped top).
    SKEW    y_hat ~ Normal(mean y, sd (6 - y) / 2), clipped to [1, 5] (accurate on high ratings, vague on low).
    ONE     y_hat = y, except that k randomly chosen rows with y = 1 get y_hat = 5, k = #{y = 5} (confident false
            positives).
    FOUR    y_hat = y, except that k randomly chosen rows with y = 4 get y_hat = 1, k = #{y = 5} (confident false
            negatives among the mild positives).

Selection as in the paper's protocol: p_i = c alpha^(5 - y_i), c chosen so that the mean of p is
``observation_rate`` (capped at 1). The DR imputation uses a fixed, deliberately imperfect pseudo-label
q_i = 0.2 + 0.6 r*_i unless one is passed (DR is unbiased for any q when p is right).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.estimators.base_losses import base_loss, check_rates
from causalrm.estimators.losses import LossInputs, loss_terms, reduce_terms
from causalrm.simulation.simulate import scale_to_rate
from causalrm.simulation.simulate import selection_propensity as simulated_propensity

VECTORS: tuple[str, ...] = ("ROTATE", "SKEW", "ONE", "FOUR")
DEFAULT_METHODS: tuple[str, ...] = registry.where(clean_labels=False)


def rating_levels(n: int, *, seed: int = 0) -> np.ndarray:
    """Latent ratings y in {1, ..., 5}, as balanced as n allows, in a seeded random order."""
    y = np.resize(np.arange(1, 6), n)
    np.random.default_rng(seed).shuffle(y)
    return y


def prediction_vectors(y: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Predicted preferences s in [0.02, 0.98] for ``VECTORS`` (definitions in the module docstring)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    n5 = int(np.sum(y == 5))
    rotate = np.where(y >= 2, y - 1, 5).astype(float)
    skew = np.clip(rng.normal(y, (6 - y) / 2.0), 1, 5)
    one = y.astype(float).copy()
    ones = np.flatnonzero(y == 1)
    one[rng.choice(ones, size=min(n5, len(ones)), replace=False)] = 5
    four = y.astype(float).copy()
    fours = np.flatnonzero(y == 4)
    four[rng.choice(fours, size=min(n5, len(fours)), replace=False)] = 1
    to_s = lambda v: np.clip((v - 1.0) / 4.0, 0.02, 0.98)  # noqa: E731
    return {"ROTATE": to_s(rotate), "SKEW": to_s(skew), "ONE": to_s(one), "FOUR": to_s(four)}


def selection_propensity(y: np.ndarray, *, alpha: float = 0.5, observation_rate: float = 0.2) -> np.ndarray:
    """The simulator's selection (METHOD.md step 3) on levels y in 1..5: p = min(1, c alpha^(5 - y)), mean(p) = rate."""
    scale = scale_to_rate(float(alpha) ** (5.0 - np.asarray(y, dtype=np.float64)), observation_rate)
    return simulated_propensity(y, alpha, scale)


def rq3_bias_table(
    *,
    n: int = 1000,
    n_reps: int = 400,
    rho01: float = 0.2,
    rho10: float = 0.1,
    alpha: float = 0.5,
    observation_rate: float = 0.2,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    vectors: tuple[str, ...] = VECTORS,
    base: str = "mse",
    propensity_hat: Any = None,
    pseudo_label: Any = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Monte Carlo bias of each estimator's value against L_ideal, for each prediction vector.

    The estimators get the true rho01, rho10 and (unless ``propensity_hat`` is given, (n,)) the true p; the logs are
    simulated ``n_reps`` times, vectorised as (n_reps, n) tensors. Returns one row per (method, vector) with columns
    method, vector, ideal, mean, bias, relative_bias, se (Monte Carlo standard error of the mean), relative_se and
    z = bias / se.
    """
    rho01, rho10 = check_rates(rho01, rho10)
    if n < 10 or n_reps < 2:
        raise InputError("rq3_bias_table needs n >= 10 rows and n_reps >= 2 replications")
    bad = [m for m in methods if not registry.is_method(m)]
    if bad:
        raise InputError(f"unknown method(s) {bad}: choose from {', '.join(registry.names())}")
    badv = [v for v in vectors if v not in VECTORS]
    if badv:
        raise InputError(f"unknown prediction vector(s) {badv}: choose from {', '.join(VECTORS)}")
    y = rating_levels(n, seed=seed)
    rstar = (y > 3).astype(float)
    p = selection_propensity(y, alpha=alpha, observation_rate=observation_rate)
    p_hat = p if propensity_hat is None else np.asarray(propensity_hat, dtype=float)
    q = 0.2 + 0.6 * rstar if pseudo_label is None else np.asarray(pseudo_label, dtype=float)
    preds = prediction_vectors(y, seed=seed)

    gen = torch.Generator().manual_seed(seed)
    dt = torch.float64
    rs_t = torch.as_tensor(rstar, dtype=dt).expand(n_reps, n)
    o = (torch.rand(n_reps, n, generator=gen, dtype=dt) < torch.as_tensor(p, dtype=dt)).to(dt)
    flip_p = torch.where(rs_t == 1, rho01, rho10)
    flip = (torch.rand(n_reps, n, generator=gen, dtype=dt) < flip_p).to(dt)
    r = torch.abs(rs_t - flip)
    inputs = LossInputs(
        feedback=r,
        observed=o,
        propensity=torch.as_tensor(p_hat, dtype=dt).expand(n_reps, n),
        pseudo_label=torch.as_tensor(q, dtype=dt).expand(n_reps, n),
        true_label=rs_t,
    )
    rows = []
    for name in vectors:
        s = preds[name]
        z1 = torch.as_tensor(np.log(s) - np.log1p(-s), dtype=dt)
        ideal = float(base_loss(z1, torch.as_tensor(rstar, dtype=dt), base).mean())
        z = z1.expand(n_reps, n)
        for method in methods:
            terms = loss_terms(method, z, inputs, rho01=rho01, rho10=rho10, base=base)
            vals = reduce_terms(method, terms, inputs, dim=-1).numpy()
            mean = float(vals.mean())
            se = float(vals.std(ddof=1) / np.sqrt(n_reps))
            bias = mean - ideal
            rows.append(
                {
                    "method": method,
                    "vector": name,
                    "ideal": ideal,
                    "mean": mean,
                    "bias": bias,
                    "relative_bias": bias / ideal,
                    "se": se,
                    "relative_se": se / ideal,
                    "z": bias / se if se > 0 else float("nan"),
                }
            )
    return pl.DataFrame(rows)


__all__ = [
    "DEFAULT_METHODS",
    "VECTORS",
    "prediction_vectors",
    "rating_levels",
    "rq3_bias_table",
    "selection_propensity",
]


# --------------------------------------------------------------------------------------------------------------------
# unbiasedness check (the paper's RQ3)
# --------------------------------------------------------------------------------------------------------------------
def unbiasedness_check(
    log: pl.DataFrame,
    predictions: dict[str, np.ndarray],
    *,
    methods: Sequence[str] = ("naive", "ips", "denoise", "causalrm-ips", "causalrm-dr"),
    propensity: np.ndarray | None = None,
    pseudo_label: np.ndarray | None = None,
    rho01: float | None = None,
    rho10: float | None = None,
    base: str = "mse",
    clip: float = 0.1,
) -> list[dict[str, Any]]:
    """Each estimator's value against the ideal loss ``(1/N) Σ ℓ(z_i, r*_i)`` for fixed prediction vectors.

    ``log`` is a simulated log (needs ``true_label``; the train + val rows are used, as in training);
    ``predictions`` maps a name (e.g. ROTATE, SKEW) to probabilities in (0, 1) per row of ``log``. Without
    ``propensity`` / flip rates the simulation's truth (``true_propensity``, the given or 0 rates) is used, and
    ``pseudo_label`` defaults to ``true_label`` (a correct imputation). Returns rows ``{"prediction", "method",
    "estimate", "ideal", "delta"}`` (``delta = estimate - ideal``; the paper reports Δ ≈ 0 for CausalRM).
    """
    import torch

    from causalrm.estimators.losses import LossInputs, estimate

    if schema.TRUE_LABEL not in log.columns:
        raise InputError("the unbiasedness check needs a simulated log with 'true_label'")
    rows = np.arange(log.height)
    if schema.SPLIT in log.columns:
        rows = np.flatnonzero((log[schema.SPLIT] != schema.TEST).fill_null(True).to_numpy())
    sub = log[rows.tolist()]
    obs = sub[schema.OBSERVED].cast(pl.Float64).to_numpy()
    fb = np.nan_to_num(sub[schema.FEEDBACK].cast(pl.Float64).to_numpy())
    rstar = sub[schema.TRUE_LABEL].cast(pl.Float64).to_numpy()
    if propensity is None:
        if schema.TRUE_PROPENSITY not in sub.columns:
            raise InputError("pass propensity= or use a simulated log with 'true_propensity'")
        propensity = sub[schema.TRUE_PROPENSITY].to_numpy()
    elif len(propensity) == log.height:
        propensity = np.asarray(propensity)[rows]
    q = rstar if pseudo_label is None else (np.asarray(pseudo_label)[rows] if len(pseudo_label) == log.height
                                            else np.asarray(pseudo_label))
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(a, dtype=np.float64))

    inputs = LossInputs(feedback=t(fb), observed=t(obs), propensity=t(np.clip(propensity, clip, 1.0)),
                        pseudo_label=t(np.clip(q, 0, 1)), true_label=t(rstar))
    out = []
    for name, pred in predictions.items():
        p = np.clip(np.asarray(pred, dtype=np.float64), 1e-6, 1 - 1e-6)
        p = p[rows] if p.size == log.height else p
        z = t(np.log(p) - np.log1p(-p))
        ideal = float(estimate("oracle", z, inputs, base=base))
        for m in methods:
            val = float(estimate(m, z, inputs, rho01=rho01 or 0.0, rho10=rho10 or 0.0, base=base, nonneg=False))
            out.append({"prediction": name, "method": m, "estimate": val, "ideal": ideal, "delta": val - ideal})
    return out
