"""The Noise tab's summary (app/tabs/noise.py): rates are said to be used only when a noise-aware method will use
them, and the remedy never asks for gold labels when the rates came from gold labels."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.tabs.noise import _use_md  # noqa: E402
from causalrm.nuisances.gates import flip_rate_gate  # noqa: E402


def test_rates_are_used_only_when_the_gate_passes():
    passed = flip_rate_gate({"method": "gold", "rho01": 0.15, "rho10": 0.25, "n_gold": 180,
                             "ci": {"rho01": [0.10, 0.21], "rho10": [0.13, 0.38]}})
    text = _use_md(passed, (0.15, 0.25), "gold labels")
    assert passed.passed and text.startswith("Training will use **ρ01 = 0.150, ρ10 = 0.250**")
    failed = flip_rate_gate({"method": "anchor-quantile", "rho01": 0.307, "rho10": 0.438, "ci": {}})
    text = _use_md(failed, (0.307, 0.438), "anchor (anchor-quantile)")
    assert not failed.passed and "Training will use" not in text and "will **not** be used" in text
    assert "gold labels" in text
    few = flip_rate_gate({"method": "gold", "rho01": 0.0, "rho10": 0.5, "n_gold": 5,
                          "ci": {"rho01": [0.0, 0.56], "rho10": [0.09, 0.91]}})
    text = _use_md(few, (0.0, 0.5), "gold labels")
    assert "will **not** be used" in text and "label more rows" in text and "audited gold labels" not in text
