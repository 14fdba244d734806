"""The RQ3 unbiasedness check: CausalRM-IPS/DR unbiased at the true rho and p, naive not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from causalrm.errors import InputError
from causalrm.evaluation.unbiasedness import (
    VECTORS,
    prediction_vectors,
    rating_levels,
    rq3_bias_table,
    selection_propensity,
)

METHODS = ("naive", "ips", "causalrm-ips", "causalrm-dr")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return rq3_bias_table(n=600, n_reps=300, methods=METHODS, seed=1)
    finally:
        torch.set_num_threads(before)


def test_table_shape(table):
    assert table.height == len(METHODS) * len(VECTORS)
    assert set(table["vector"]) == set(VECTORS)
    assert {"method", "vector", "ideal", "mean", "bias", "relative_bias", "se", "relative_se", "z"} <= set(
        table.columns
    )


@pytest.mark.parametrize("method", ["causalrm-ips", "causalrm-dr"])
def test_causalrm_is_unbiased_within_monte_carlo_error(table, method):
    rows = table.filter(pl.col("method") == method)
    assert rows.height == len(VECTORS)
    for row in rows.iter_rows(named=True):
        assert abs(row["bias"]) < 4 * row["se"], row


def test_naive_is_biased(table):
    for row in table.filter(pl.col("method") == "naive").iter_rows(named=True):
        assert abs(row["bias"]) > 10 * row["se"], row


def test_debias_only_ips_is_biased_by_noise(table):
    z = table.filter(pl.col("method") == "ips")["z"].abs()
    assert z.max() > 10


def test_dr_is_robust_to_a_wrong_propensity_when_imputation_is_right():
    """Wrong p (constant 0.2) but q = r*: CausalRM-DR stays unbiased, CausalRM-IPS does not."""
    n = 500
    rstar = (rating_levels(n, seed=2) > 3).astype(float)
    t = rq3_bias_table(
        n=n, n_reps=200, methods=("causalrm-ips", "causalrm-dr"), propensity_hat=np.full(n, 0.2),
        pseudo_label=rstar, seed=2,
    )
    dr = t.filter(pl.col("method") == "causalrm-dr")
    ips = t.filter(pl.col("method") == "causalrm-ips")
    assert (dr["bias"].abs() < 4 * dr["se"] + 1e-12).all()
    assert (ips["z"].abs() > 10).any()


def test_prediction_vectors_follow_their_definitions():
    y = rating_levels(500, seed=0)
    assert np.bincount(y)[1:].tolist() == [100] * 5
    v = prediction_vectors(y, seed=0)
    s = lambda level: np.clip((level - 1) / 4, 0.02, 0.98)  # noqa: E731
    np.testing.assert_allclose(v["ROTATE"], s(np.where(y >= 2, y - 1, 5)))
    changed = v["ONE"] != s(y)
    assert changed.sum() == 100 and np.all(y[changed] == 1) and np.all(v["ONE"][changed] == s(5))
    changed = v["FOUR"] != s(y)
    assert changed.sum() == 100 and np.all(y[changed] == 4) and np.all(v["FOUR"][changed] == s(1))
    assert np.all((v["SKEW"] >= 0.02) & (v["SKEW"] <= 0.98))
    p = selection_propensity(y, alpha=0.5, observation_rate=0.2)
    assert p.mean() == pytest.approx(0.2) and np.all(np.diff([p[y == k][0] for k in range(1, 6)]) > 0)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"rho01": 0.6, "rho10": 0.5}, ">= 1"),
        ({"methods": ("magic",)}, "unknown method"),
        ({"vectors": ("THREE",)}, "unknown prediction"),
        ({"n_reps": 1}, "n_reps"),
    ],
)
def test_invalid_inputs(kw, match):
    with pytest.raises(InputError, match=match):
        rq3_bias_table(**kw)
