"""benchmarks/calibration_ceiling.py: the isotonic ceiling bounds the raw R², depends on the ordering only, matches a
brute-force pool-adjacent-violators reference, and the gap shares follow the bench's convention against naive
and oracle-observed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from calibration_ceiling import isotonic_ceiling, table  # noqa: E402

from causalrm.evaluation.metrics import metrics  # noqa: E402


def pava(y_sorted: np.ndarray) -> np.ndarray:
    """Pool adjacent violators on labels already sorted by score (no ties): the least-squares increasing fit."""
    blocks = [[float(v), 1] for v in y_sorted]
    i = 0
    while i < len(blocks) - 1:
        if blocks[i][0] > blocks[i + 1][0]:
            (m1, n1), (m2, n2) = blocks[i], blocks[i + 1]
            blocks[i:i + 2] = [[(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2]]
            i = max(i - 1, 0)
        else:
            i += 1
    return np.concatenate([np.full(n, m) for m, n in blocks])


def test_ceiling_bounds_raw_r2_and_reads_only_the_order():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.4).astype(float)
    prob = 1 / (1 + np.exp(-(1.5 * y - 0.8 + rng.normal(0, 1.0, 400))))  # distinct scores: no ties
    ceiling = isotonic_ceiling(y, prob)
    assert ceiling >= metrics(y, prob)["r2"]
    assert isotonic_ceiling(y, prob**3) == pytest.approx(ceiling, abs=1e-12)
    order = np.argsort(prob)
    assert ceiling == pytest.approx(metrics(y[order], pava(y[order]))["r2"], abs=1e-12)


def test_table_gap_shares_per_seed():
    rows = []
    for seed, (naive, mid, top) in {0: (0.2, 0.3, 0.6), 1: (0.1, 0.3, 0.5)}.items():
        for m, r2 in (("naive", naive), ("causalrm-dr", mid), ("oracle-observed", top)):
            rows.append({"seed": seed, "method": m, "r2": r2, "auroc": 0.8, "r2_iso": r2 + 0.1})
    summary, md = table(rows)
    dr = next(s for s in summary if s["method"] == "causalrm-dr")
    assert dr["gap"] == pytest.approx((0.3 - 0.15) / (0.55 - 0.15))  # the bench's ratio of means
    assert dr["gap_iso"] == pytest.approx((0.4 - 0.15) / (0.55 - 0.15))
    assert "| causalrm-dr | 0.300 |" in md
