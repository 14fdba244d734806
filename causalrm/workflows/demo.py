"""The demo: the workbench's whole flow, headless, on a bundled setting where the method's assumptions hold.

**Semi-synthetic, and labelled so everywhere.** Real WildBench texts and their shipped MiniLM embeddings; the
outcome is simulated (METHOD.md, "The paper's experiment"): a *teacher* rating (a fixed linear function of the
embedding, so the representation can explain it), strong selection on it (alpha 0.1: feedback mostly on the best
responses), class-conditional flips rho01 0.2 / rho10 0.1 on the observed rows, a clean fully observed test split.
Here selection is on x and the flip rates are identifiable, so the corrections have something to correct.

``run_demo`` fits ``method="auto"`` (naive and the debiased candidates on shared nuisances, one kept on
validation evidence only) and then, for the first time, reads the clean test labels: R² of naive against the
kept model (or, if auto kept naive, against the debiased candidate it ranked best) with a paired bootstrap interval
over the test rows, and a one-sentence verdict. The app's default sample is the same setting (``DEMO``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from causalrm.config import FitConfig
from causalrm.estimators.methods import AUTO, BASELINE, against_baseline
from causalrm.evaluation.metrics import evaluate_scores, sigmoid
from causalrm.evaluation.verdicts import READING_GUIDE, labelled_verdict
from causalrm.workflows.orchestrate import fit_log


@dataclass(frozen=True)
class DemoSetting:
    """The bundled demo setting (module docstring)."""

    dataset: str = "wildbench"
    rating: str = "teacher"
    alpha: float = 0.1
    rho01: float = 0.2
    rho10: float = 0.1
    seed: int = 0

    def describe(self) -> str:
        return (f"semi-synthetic: {self.dataset} texts, simulated teacher ratings, selection alpha {self.alpha}, "
                f"flips rho01 {self.rho01} / rho10 {self.rho10}, seed {self.seed}")


DEMO = DemoSetting()


def debiased_of(result: Any) -> str:
    """The model to set against naive: auto's choice, or the best debiased candidate when auto kept naive (the
    registry's rule, ``causalrm.estimators.methods.against_baseline``); naive itself when no other candidate was fitted."""
    return against_baseline(list(result.choice["candidates"]), result.choice) or BASELINE


def run_demo(setting: DemoSetting = DEMO, *, config: FitConfig | None = None,
             on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simulate the demo log, fit ``auto``, evaluate on the clean test split. Returns the ``--json`` record:
    {"setting", "baseline", "debiased", "chosen", "choice", "metrics", "difference", "verdict", "seconds", ...}."""
    from causalrm.embeddings.embedder import embed_log
    from causalrm.simulation.simulate import simulate_dataset

    t0 = time.perf_counter()
    log, _ = simulate_dataset(setting.dataset, alpha=setting.alpha, rho01=setting.rho01, rho10=setting.rho10,
                              seed=setting.seed, rating=setting.rating)
    X = embed_log(log)
    result = fit_log(log, X, (config or FitConfig()).replace(method=AUTO, seed=setting.seed), on_stage=on_stage)
    debiased = debiased_of(result)
    models = {BASELINE: result.candidates[BASELINE],
              debiased: result if debiased == result.choice["method"] else result.candidates[debiased]}
    probs = {m: sigmoid(r.score(log, X)) for m, r in models.items()}
    reasons = [] if debiased != BASELINE else ["no debiased candidate could be fitted"]
    if result.choice["method"] == BASELINE and debiased != BASELINE:
        reasons.append(f"auto kept naive ({result.choice['reason']})")
    for m, r in models.items():
        if r.learned is not None and not r.learned.passed:
            reasons.append(f"{m} {r.learned.verdict}")
    diff = labelled_verdict(log, probs[BASELINE], probs[debiased], baseline=BASELINE, debiased=debiased,
                            reasons=reasons, seed=setting.seed)
    return {
        "setting": {**asdict(setting), "description": setting.describe()},
        "baseline": BASELINE,
        "debiased": debiased,
        "chosen": result.choice["method"],
        "choice": result.choice,
        "gates": {name: gate.to_dict() for name, gate in result.nuisances.gates.items()},
        "metrics": {m: evaluate_scores(log, r.score(log, X))["metrics"] for m, r in models.items()},
        "evaluated_on": f"{diff['n']} rows of the {diff['labels']}",
        "difference": {"r2": diff["difference"], "ci95": diff["ci95"]},
        "verdict": diff["verdict"],
        "reading_guide": READING_GUIDE,
        "seconds": time.perf_counter() - t0,
    }


__all__ = ["DEMO", "DemoSetting", "debiased_of", "run_demo"]
