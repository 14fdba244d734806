"""benchmarks/auto_candidates.py: replaying auto's rule on a bench run's recorded evidence gives, per seed, the
choice of a smaller candidate set and the R² of the method it picks; a file without evidence is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from auto_candidates import replay  # noqa: E402


def _candidate(central, beats, learned=True):
    return {"fitted": True, "learned": learned, "beats_baseline": beats, "central": central}


def _doc():
    results = []
    for seed, cands, chosen in [
        (0, {"naive": _candidate(0.30, False), "causalrm-ips": _candidate(0.20, True),
             "causalrm-mrdr": _candidate(0.10, True)}, "causalrm-mrdr"),
        (1, {"naive": _candidate(0.30, False), "causalrm-ips": _candidate(0.35, False),
             "causalrm-mrdr": _candidate(0.25, True)}, "causalrm-mrdr"),
        (2, {"naive": _candidate(0.30, False), "causalrm-ips": _candidate(0.20, True),
             "causalrm-mrdr": _candidate(0.25, False)}, "causalrm-ips"),
    ]:
        for i, m in enumerate(("naive", "causalrm-ips", "causalrm-mrdr")):
            results.append({"method": m, "seed": seed, "r2": 0.1 * (i + 1) + 0.01 * seed})
        results.append({"method": "auto", "seed": seed, "r2": None, "chosen": chosen,
                        "choice": {"central": "central", "candidates": cands}})
    return {"results": results}


def test_replay_restricts_the_candidates_and_reads_the_picked_method_s_r2():
    rows = replay(_doc(), ("naive", "causalrm-ips"))
    assert [(r["full"], r["subset"]) for r in rows] == [
        ("causalrm-mrdr", "causalrm-ips"), ("causalrm-mrdr", "naive"), ("causalrm-ips", "causalrm-ips")]
    assert rows[1]["r2_full"] == pytest.approx(0.31) and rows[1]["r2_subset"] == pytest.approx(0.11)


def test_replay_refuses_a_file_without_evidence():
    doc = _doc()
    for r in doc["results"]:
        r.pop("choice", None)
    with pytest.raises(SystemExit, match="records no auto evidence"):
        replay(doc, ("naive",))
