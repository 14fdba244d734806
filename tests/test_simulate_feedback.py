"""Implicit and mixed feedback protocols of the simulator (causalrm/simulation/feedback.py) and their CLI flags.

Event counts are compared with their expectation under the protocol (sum of e_i * rate over the rows) within 4
binomial standard errors.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import polars as pl
import pytest
from test_simulate import rated_frame

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.simulation.feedback import (
    COPIED,
    EXPLICIT_DEFAULTS,
    REGENERATED,
    TRUE_EXAMINATION,
    display_positions,
    examination_probability,
    resolve_protocol,
)
from causalrm.simulation.simulate import simulate_with_config, simulation_summary

EXPLICIT_COLUMNS = ["prompt", "response", "response_id", "pair_id", "feedback", "observed", "split", "true_label",
                    "true_score", "true_propensity", "rating", "rating_source"]


@pytest.fixture(scope="module")
def rated():
    return rated_frame(n_prompts=3000, per_prompt=4, d=8, seed=11)


def digest(log: pl.DataFrame) -> str:
    return hashlib.sha256(json.dumps(log.to_dict(as_series=False), sort_keys=True).encode()).hexdigest()[:16]


def events(log: pl.DataFrame, column: str) -> np.ndarray:
    return log[column].is_not_null().to_numpy()


def check_event_rates(hit: np.ndarray, e: np.ndarray, label: np.ndarray, good: float, bad: float) -> None:
    """Events among good / bad rows match sum(e * rate) within 4 binomial standard errors."""
    for mask, rate in ((label == 1, good), (label == 0, bad)):
        q = e[mask] * rate
        assert abs(hit[mask].sum() - q.sum()) < 4 * np.sqrt(np.sum(q * (1 - q))) + 1e-9


def check_one_or_null(log: pl.DataFrame, column: str) -> None:
    assert log[column].dtype == pl.Int8
    assert set(log[column].drop_nulls().unique().to_list()) <= {1}


# ---------------------------------------------------------------------------------------------------------------------
# explicit logs are unchanged
# ---------------------------------------------------------------------------------------------------------------------
# sha256 of json(log.to_dict()) produced by the simulator at commit dfc59d0, before the implicit protocols existed
EXPLICIT_HASHES = {
    "real": (dict(seed=0), "e78d7eede476cc6c"),
    "real_a02_s3": (dict(alpha=0.2, rho01=0.15, rho10=0.25, observation_rate=0.3, seed=3), "1546fe3d24873911"),
    "teacher_mlp_snr": (dict(rating="teacher", teacher="mlp", snr=4.0, seed=5), "c0189a82ec89f7b0"),
}


@pytest.mark.parametrize("case", sorted(EXPLICIT_HASHES))
def test_explicit_logs_reproduce_the_logs_before_the_implicit_protocols(case):
    kwargs, expected = EXPLICIT_HASHES[case]
    small, X = rated_frame(n_prompts=200, per_prompt=3, d=8, seed=7)
    if kwargs.get("rating") == "teacher":
        kwargs = {**kwargs, "embeddings": X}
    log, config = simulate_with_config(small, **kwargs)
    assert digest(log) == expected
    assert config.feedback_kind == "explicit" and config.event_rate_good is None and config.examination is None


def test_mixed_keeps_the_explicit_columns_and_copied_is_the_implicit_event(rated):
    df, _ = rated
    explicit = simulate_with_config(df, seed=4)[0]
    mixed, config = simulate_with_config(df, seed=4, feedback_kind="mixed", examination=0.7,
                                         regenerate_rate_good=0.05, regenerate_rate_bad=0.3)
    implicit = simulate_with_config(df, seed=4, feedback_kind="implicit", examination=0.7)[0]
    assert mixed.select(EXPLICIT_COLUMNS).equals(explicit)
    assert mixed.columns == [*EXPLICIT_COLUMNS[:6], COPIED, REGENERATED, *EXPLICIT_COLUMNS[6:10], TRUE_EXAMINATION,
                             *EXPLICIT_COLUMNS[10:]]
    # the same streams: the same positions and event variates as the implicit log of that seed
    assert mixed[COPIED].equals(implicit[schema.FEEDBACK].alias(COPIED))
    np.testing.assert_array_equal(mixed[TRUE_EXAMINATION].to_numpy(), implicit[schema.TRUE_PROPENSITY].to_numpy())
    assert (config.alpha, config.rho01, config.rho10, config.observation_rate) == tuple(EXPLICIT_DEFAULTS.values())


# ---------------------------------------------------------------------------------------------------------------------
# implicit protocol
# ---------------------------------------------------------------------------------------------------------------------
def test_implicit_log_layout_without_examination(rated):
    df, _ = rated
    log, config = simulate_with_config(df, feedback_kind="implicit", seed=1)
    assert log.columns == [c for c in EXPLICIT_COLUMNS if c != schema.OBSERVED]
    check_one_or_null(log, schema.FEEDBACK)
    for split in (schema.TRAIN, schema.VAL, schema.TEST):  # events on every split, test included
        assert log.filter(pl.col(schema.SPLIT) == split)[schema.FEEDBACK].is_not_null().any()
    assert (log[schema.TRUE_PROPENSITY] == 1.0).all()
    label = log[schema.TRUE_LABEL].to_numpy()
    check_event_rates(events(log, schema.FEEDBACK), np.ones(log.height), label, 0.35, 0.03)
    assert config.feedback_kind == "implicit" and (config.event_rate_good, config.event_rate_bad) == (0.35, 0.03)
    assert config.alpha is None and config.rho01 is None and config.observation_rate is None
    assert config.propensity_scale is None and config.n_capped is None
    json.dumps(config.to_dict())


@pytest.mark.parametrize("eta, good, bad", [(1.0, 0.35, 0.03), (0.5, 0.6, 0.1)])
def test_implicit_event_rates_follow_the_examination_model(rated, eta, good, bad):
    df, _ = rated
    log, config = simulate_with_config(df, feedback_kind="implicit", examination=eta, event_rate_good=good,
                                       event_rate_bad=bad, seed=2)
    e = log[schema.TRUE_PROPENSITY].to_numpy()
    np.testing.assert_array_equal(log[schema.LOGGED_PROPENSITY].to_numpy(), e)
    check_one_or_null(log, schema.FEEDBACK)
    label = log[schema.TRUE_LABEL].to_numpy()
    hit = events(log, schema.FEEDBACK)
    check_event_rates(hit, e, label, good, bad)
    # positions are independent of the label: the rates are c * E[e] and eps * E[e] for the mean examination
    mean_e = e.mean()
    for mask, rate in ((label == 1, good), (label == 0, bad)):
        target = rate * mean_e
        assert abs(hit[mask].mean() - target) < 4 * np.sqrt(target * (1 - target) / mask.sum()) + 0.01
    # e = 1 / (1 + k) ** eta with k a permutation of 0 .. m - 1 within each prompt group (4 rows each here)
    k = np.power(e, -1.0 / eta) - 1.0
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    per_group = pl.DataFrame({"g": log[schema.PAIR_ID], "k": np.round(k).astype(np.int64)}).group_by("g").agg(
        pl.col("k").sort())
    assert all(ks == [0, 1, 2, 3] for ks in per_group["k"].to_list())
    assert config.examination == eta
    summary = simulation_summary(log)["events"][schema.FEEDBACK]
    assert summary["mean_examination"] == pytest.approx(mean_e)
    assert summary["rate_good"] == pytest.approx(hit[label == 1].mean())


def test_display_positions_match_a_per_group_argsort():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, size=500)
    u = rng.random(500)
    k = display_positions(groups, u)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        expected = np.empty(rows.size, dtype=np.int64)
        expected[np.argsort(u[rows])] = np.arange(rows.size)
        np.testing.assert_array_equal(k[rows], expected)
    np.testing.assert_allclose(examination_probability(k, 2.0), 1.0 / (1.0 + k) ** 2)
    assert (examination_probability(k, None) == 1.0).all()


def test_implicit_protocol_on_the_synthetic_control():
    from causalrm.workflows.bench import synthetic_rated

    df, X = synthetic_rated(rows=6000, dim=8, seed=3)
    log, config = simulate_with_config(df, feedback_kind="implicit", examination=1.0, seed=0, dataset="synthetic")
    e = log[schema.TRUE_PROPENSITY].to_numpy()
    assert (e == 1.0).all()  # one row per prompt group: every row is at position 0
    check_one_or_null(log, schema.FEEDBACK)
    check_event_rates(events(log, schema.FEEDBACK), e, log[schema.TRUE_LABEL].to_numpy(), 0.35, 0.03)
    teacher = simulate_with_config(df, feedback_kind="implicit", rating="teacher", embeddings=X, seed=0)[0]
    check_event_rates(events(teacher, schema.FEEDBACK), np.ones(teacher.height),
                      teacher[schema.TRUE_LABEL].to_numpy(), 0.35, 0.03)


# ---------------------------------------------------------------------------------------------------------------------
# mixed protocol
# ---------------------------------------------------------------------------------------------------------------------
def test_mixed_log_has_explicit_feedback_and_both_implicit_signals(rated):
    df, _ = rated
    log, config = simulate_with_config(df, feedback_kind="mixed", event_rate_good=0.4, event_rate_bad=0.05,
                                       regenerate_rate_good=0.05, regenerate_rate_bad=0.3, seed=6)
    assert TRUE_EXAMINATION not in log.columns and schema.LOGGED_PROPENSITY not in log.columns
    summary = simulation_summary(log)
    assert summary["test_clean"] and set(summary["events"]) == {COPIED, REGENERATED}
    for column in (COPIED, REGENERATED):
        check_one_or_null(log, column)
    label = log[schema.TRUE_LABEL].to_numpy()
    ones = np.ones(log.height)
    copied, regenerated = events(log, COPIED), events(log, REGENERATED)
    check_event_rates(copied, ones, label, 0.4, 0.05)
    check_event_rates(regenerated, ones, label, 0.05, 0.3)
    # independent draws: both happen about as often as the product of their probabilities
    for mask, p in ((label == 1, 0.4 * 0.05), (label == 0, 0.05 * 0.3)):
        both = np.sum(copied[mask] & regenerated[mask])
        assert abs(both - p * mask.sum()) < 4 * np.sqrt(p * (1 - p) * mask.sum())
    # explicit feedback still follows the selection protocol
    tv = log.filter(pl.col(schema.SPLIT) != schema.TEST)
    assert tv[schema.TRUE_PROPENSITY].mean() == pytest.approx(0.2, abs=1e-9)
    assert config.regenerate_rate_bad == 0.3 and config.propensity_scale is not None


# ---------------------------------------------------------------------------------------------------------------------
# bad parameters
# ---------------------------------------------------------------------------------------------------------------------
INVALID = [
    (dict(feedback_kind="clicks"), "feedback_kind"),
    (dict(feedback_kind="implicit", alpha=0.3), "alpha applies to explicit"),
    (dict(feedback_kind="implicit", rho01=0.1), "rho01 applies to explicit"),
    (dict(feedback_kind="implicit", observation_rate=0.5), "observation_rate applies to explicit"),
    (dict(event_rate_good=0.3), "event_rate_good applies to implicit"),
    (dict(examination=1.0), "examination applies to implicit"),
    (dict(feedback_kind="implicit", event_rate_good=1.5), "event_rate_good"),
    (dict(feedback_kind="implicit", event_rate_bad=-0.1), "event_rate_bad"),
    (dict(feedback_kind="implicit", event_rate_good=0.1, event_rate_bad=0.2), "below event_rate_good"),
    (dict(feedback_kind="implicit", examination=0.0), "examination"),
    (dict(feedback_kind="implicit", examination=float("nan")), "examination"),
    (dict(feedback_kind="implicit", examination="steep"), "examination"),
    (dict(feedback_kind="implicit", regenerate_rate_good=0.1, regenerate_rate_bad=0.3), "feedback_kind='mixed' only"),
    (dict(feedback_kind="mixed", regenerate_rate_good=0.1), "regenerate_rate_bad: give both"),
    (dict(feedback_kind="mixed", regenerate_rate_good=0.3, regenerate_rate_bad=0.1), "below regenerate_rate_bad"),
    (dict(feedback_kind="mixed", rho01=0.6, rho10=0.5), "rho01 + rho10"),
]


@pytest.mark.parametrize("kwargs, match", INVALID)
def test_invalid_protocol_parameters_raise_one_line_input_errors(kwargs, match):
    df, _ = rated_frame(n_prompts=30, per_prompt=2, d=4)
    with pytest.raises(InputError, match=re.escape(match)) as info:
        simulate_with_config(df, **kwargs)
    assert "\n" not in str(info.value)


def test_resolve_protocol_fills_the_defaults_of_its_kind():
    explicit = resolve_protocol()
    assert (explicit.alpha, explicit.event_rate_good, explicit.explicit) == (0.5, None, True)
    implicit = resolve_protocol(feedback_kind="implicit", examination=2)
    assert (implicit.alpha, implicit.event_rate_good, implicit.event_rate_bad, implicit.examination) == (
        None, 0.35, 0.03, 2.0)
    assert not implicit.explicit and implicit.regenerate_rate_good is None


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["implicit", "mixed"])
def test_cli_round_trip(tmp_path, capsys, kind):
    from causalrm.cli.main import main
    from causalrm.data.datasets import load_rated

    out, cfg_path = tmp_path / f"{kind}.parquet", tmp_path / f"{kind}.json"
    argv = ["simulate", "--dataset", "ultrafeedback", "--feedback-kind", kind, "--event-rate-good", "0.5",
            "--event-rate-bad", "0.05", "--examination", "1", "--seed", "3", "--out", str(out),
            "--config-out", str(cfg_path)]
    if kind == "mixed":
        argv += ["--regenerate-rate-good", "0.02", "--regenerate-rate-bad", "0.2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    log = pl.read_parquet(out)
    cfg = json.loads(cfg_path.read_text())
    assert cfg["feedback_kind"] == kind and cfg["event_rate_good"] == 0.5 and cfg["examination"] == 1.0
    expected, _ = simulate_with_config(
        load_rated("ultrafeedback"), seed=3,
        feedback_kind=kind, event_rate_good=0.5, event_rate_bad=0.05, examination=1.0, dataset="ultrafeedback",
        **(dict(regenerate_rate_good=0.02, regenerate_rate_bad=0.2) if kind == "mixed" else {}))
    assert log.equals(expected)
    event = schema.FEEDBACK if kind == "implicit" else COPIED
    check_one_or_null(log, event)
    assert f"{event} events" in printed
    if kind == "implicit":
        assert schema.OBSERVED not in log.columns and cfg["alpha"] is None
        assert log[schema.LOGGED_PROPENSITY].equals(log[schema.TRUE_PROPENSITY].alias(schema.LOGGED_PROPENSITY))
    else:
        assert cfg["regenerate_rate_bad"] == 0.2 and "regenerated events" in printed and "flip rates" in printed


CLI_INVALID = [
    (["--feedback-kind", "implicit", "--alpha", "0.3"], "alpha"),
    (["--feedback-kind", "implicit", "--event-rate-good", "0.1", "--event-rate-bad", "0.2"], "event_rate_bad"),
    (["--event-rate-good", "0.3"], "event_rate_good"),
    (["--feedback-kind", "mixed", "--examination", "-1"], "examination"),
    (["--feedback-kind", "implicit", "--regenerate-rate-good", "0.1", "--regenerate-rate-bad", "0.3"], "mixed"),
]


@pytest.mark.parametrize("extra, message", CLI_INVALID)
def test_cli_invalid_protocol_parameters(tmp_path, capsys, extra, message):
    from causalrm.cli.main import main

    out = tmp_path / "x.parquet"
    rc = main(["simulate", "--dataset", "ultrafeedback", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []
