"""auto's ranking evidence (causalrm.workflows.selection, step 4): the IPS-weighted AUROC of each candidate against the
noisy val feedback, checked against scikit-learn, and its veto: a candidate that ranks below naive on evidence is
never kept, however well it calibrates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from causalrm.data import schema
from causalrm.devices import cpu_threads
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.selection import choice_record, pick, ranking_evidence
from tests.test_gates import fast, strong_log


@pytest.fixture(scope="module")
def fitted():
    with cpu_threads(1):
        log, X = strong_log(n=2000)
        return log, X, fit_log(log, X, fast(auto_candidates=("ips",), max_epochs=15))


def test_ranking_evidence_is_the_ips_weighted_auroc_against_the_val_feedback(fitted):
    log, _, result = fitted
    nuis, config = result.nuisances, result.config
    evidence = ranking_evidence(result.candidates, log, nuis, config)
    val_rows = nuis.rows[nuis.split == schema.VAL]
    observed = log[schema.OBSERVED].to_numpy()[val_rows] == 1
    r = log[schema.FEEDBACK].to_numpy()[val_rows][observed]
    w = 1 / nuis.propensity_clipped[nuis.split == schema.VAL][observed]
    assert nuis.gates["propensity"].passed
    for m, res in result.candidates.items():
        want = roc_auc_score(r, res.val_logits[observed], sample_weight=w)
        assert evidence[m]["val_auroc"] == pytest.approx(want, abs=1e-12)
        assert evidence[m]["auroc_difference"] == pytest.approx(want - evidence["naive"]["val_auroc"], abs=1e-12)
    lo, hi = evidence["ips"]["auroc_ci95"]
    assert lo <= evidence["ips"]["auroc_difference"] <= hi
    assert evidence["naive"]["auroc_difference"] == 0 and not evidence["naive"]["ranks_below_baseline"]
    assert result.choice["candidates"]["ips"]["val_auroc"] == evidence["ips"]["val_auroc"]


def test_a_candidate_that_ranks_below_naive_is_vetoed(fitted):
    log, _, result = fitted
    naive = result.candidates["naive"]
    reversed_ = dataclasses.replace(result.candidates["ips"], val_logits=-naive.val_logits)
    choice = choice_record({"naive": naive, "ips": reversed_}, log, result.nuisances, result.config, {})
    kept = choice["candidates"]["ips"]
    assert kept["ranks_below_baseline"] and kept["auroc_ci95"][1] < 0
    assert choice["method"] == "naive" and "ranked below naive" in choice["reason"]
    # the rule alone: calibration evidence cannot outvote the veto
    record = {"naive": {"fitted": True, "learned": True, "beats_baseline": False, "central": 0.3},
              "x": {"fitted": True, "learned": True, "beats_baseline": True, "central": 0.1,
                    "ranks_below_baseline": True}}
    assert pick(record, "central") == "naive"
    record["x"]["ranks_below_baseline"] = False
    assert pick(record, "central") == "x"



def test_ranking_evidence_reads_a_seeded_subsample_of_a_large_val_split(fitted, monkeypatch):
    from causalrm.workflows import selection

    log, _, result = fitted
    nuis, config = result.nuisances, result.config
    monkeypatch.setattr(selection, "RANK_MAX_ROWS", 60)
    evidence = ranking_evidence(result.candidates, log, nuis, config)
    val_rows = nuis.rows[nuis.split == schema.VAL]
    observed = log[schema.OBSERVED].to_numpy()[val_rows] == 1
    keep = np.sort(np.random.default_rng(config.seed).choice(int(observed.sum()), 60, replace=False))
    r = log[schema.FEEDBACK].to_numpy()[val_rows][observed][keep]
    w = 1 / nuis.propensity_clipped[nuis.split == schema.VAL][observed][keep]
    for m, res in result.candidates.items():
        want = roc_auc_score(r, res.val_logits[observed][keep], sample_weight=w)
        assert evidence[m]["val_auroc"] == pytest.approx(want, abs=1e-12)
