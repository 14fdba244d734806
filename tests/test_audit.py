"""Gold audits (causalrm.evaluation.audit): the design's inclusion probabilities and nesting, reading and merging label files,
the weighted flip rates and the audited evaluation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from causalrm.data import schema
from causalrm.data.io.readers import read_labels
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.evaluation import audit
from causalrm.evaluation.metrics import metrics
from causalrm.nuisances.flip_rates import FlipRateEstimator


@pytest.fixture(autouse=True)
def _one_thread():
    with cpu_threads(1):
        yield


def population(n=3000, seed=0, rho01=0.2, rho10=0.25):
    """Feedback groups and strata of a log with strong selection: observed rows are mostly positive."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    y = (rng.random(n) < score).astype(float)
    o = (rng.random(n) < 0.05 + 0.4 * score).astype(float)
    flip = np.where(y == 1, rng.random(n) < rho01, rng.random(n) < rho10)
    r = np.where(o == 1, np.where(flip, 1 - y, y), 0.0)
    propensity = np.clip(0.05 + 0.4 * score + rng.normal(0, 0.1, n), 0.01, 1)
    return o, r, y, score, audit.audit_strata(o, r, score, propensity=propensity)


def log_with(n=600, d=6, seed=0, test_share=0.2):
    """A simulated log with embeddings: selection and flips depend on x."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    eta = 1 / (1 + np.exp(-3 * X[:, 0]))
    y = (rng.random(n) < eta).astype(np.int8)
    split = np.where(rng.random(n) < test_share, "test", "train")
    o = np.where(split == "test", 1, rng.random(n) < 0.2 + 0.5 * eta).astype(np.int8)
    fb = np.where(rng.random(n) < 0.15, 1 - y, y)
    log = pl.DataFrame({
        "prompt": [f"p{i // 2}" for i in range(n)], "response": [f"r{i}" for i in range(n)],
        "response_id": [f"id{i}" for i in range(n)], "pair_id": [f"q{i // 2}" for i in range(n)],
        "feedback": pl.Series([int(f) if ob else None for f, ob in zip(fb, o)], dtype=pl.Int8),
        "observed": pl.Series(o, dtype=pl.Int8), "split": split.tolist(), "true_label": pl.Series(y, dtype=pl.Int8),
    })
    return log, X


# ------------------------------------------------------------------------------------------ the design
def test_strata_follow_the_feedback_groups_and_put_the_suspicious_tail_first():
    o, r, _, score, strata = population()
    up, down = (o == 1) & (r == 1), (o == 1) & (r == 0)
    assert set(strata[up]) == {f"up:{k}" for k in range(1, 5)} and set(strata[o == 0]) == {f"none:{k}" for k in
                                                                                            range(1, 5)}
    assert score[strata == "up:1"].max() <= score[up & (strata != "up:1")].min()       # lowest f among thumbs up
    assert score[strata == "down:1"].min() >= score[down & (strata != "down:1")].max()  # highest f among downs
    assert np.mean(strata[up] == "up:1") == pytest.approx(audit.FLIP_EDGES[0], abs=0.01)


def test_the_proposal_of_n_rows_is_the_prefix_of_a_larger_one_with_exact_probabilities():
    *_, strata = population()
    small, pi_small, _ = audit.draw(strata, 40, seed=3)
    large, pi_large, sizes = audit.draw(strata, 400, seed=3)
    assert np.array_equal(small, large[:40])
    labels = strata[large]
    for name in set(strata):
        taken = labels == name
        assert taken.any()  # every stratum, so every row has pi > 0
        assert np.allclose(pi_large[taken], taken.sum() / np.sum(strata == name))
        assert np.all(sizes[taken] == np.sum(strata == name))
    assert pi_large[np.isin(labels, ["up:1", "down:1"])].mean() > pi_large[np.char.startswith(
        labels.astype(str), "none")].mean()  # the flip-rate part oversamples the feedback strata
    assert not np.array_equal(large, audit.draw(strata, 400, seed=4)[0])


def test_inclusion_frequencies_match_the_documented_probabilities():
    labels = np.array(["up:1"] * 10 + ["up:2"] * 30 + ["down:1"] * 8 + ["none:1"] * 80, dtype=object)
    counts = np.zeros(labels.size)
    runs = 3000
    for seed in range(runs):
        rows, pi, _ = audit.draw(labels, 25, seed=seed)
        counts[rows] += 1
    expected = dict(zip(labels[rows], pi))  # the same for every seed: the allocation does not depend on it
    for name in set(labels):
        m = labels == name
        assert np.allclose(counts[m] / runs, expected[name], atol=0.05)
        assert counts[m].mean() / runs == pytest.approx(expected[name], abs=0.01)


def test_draw_refuses_sizes_the_design_cannot_serve():
    labels = np.array(["up:1", "down:1", "none:1", "none:1"], dtype=object)
    with pytest.raises(InputError, match="at least one row per stratum"):
        audit.draw(labels, 2)
    with pytest.raises(InputError, match="between 3 and 4"):
        audit.draw(labels, 5)
    assert audit.draw(labels, 4)[1].tolist() == [1.0] * 4


def test_propose_writes_the_documented_columns_never_proposes_test_rows_and_extends():
    log, X = log_with()
    first = audit.propose(log, X, 30, seed=1)
    assert first.columns == list(audit.LABEL_COLUMNS) and first.height == 30
    assert first["gold_label"].null_count() == 30
    test_ids = set(log.filter(pl.col("split") == "test")["response_id"])
    assert not test_ids & set(first["response_id"])
    labelled = first.with_columns(pl.Series("gold_label", [1.0, 0.0] * 15))
    more = audit.carry_labels(audit.propose(log, X, 60, seed=1), labelled, source="labels.csv")
    assert more["response_id"][:30].to_list() == first["response_id"].to_list()
    assert more["gold_label"][:30].to_list() == [1.0, 0.0] * 15 and more["gold_label"][30:].null_count() == 30
    with pytest.raises(InputError, match="labels.csv: .* not in the new proposal"):
        audit.carry_labels(audit.propose(log, X, 60, seed=2), labelled, source="labels.csv")


# ------------------------------------------------------------------------------------------ label files
def _label_file(tmp_path, rows, name="labels.csv"):
    path = tmp_path / name
    pl.DataFrame(rows).write_csv(path)
    return path


@pytest.mark.parametrize("rows, match", [
    ({"response_id": ["a", "zz"], "gold_label": [1, 0]}, r"row 2 \(line 3\), column 'response_id': id 'zz' is not "
                                                         "in the log"),
    ({"response_id": ["a", "b"], "gold_label": [1, 2]}, r"row 2 \(line 3\), column 'gold_label': value '2' is not 0/1"),
    ({"response_id": ["a", "a"], "gold_label": [1, 0]}, r"id 'a' appears twice, at row 1 \(line 2\) and row 2"),
    ({"response_id": ["a", "b"], "label": [1, 0]}, r"no column 'gold_label'"),
    ({"response_id": ["a", "b"], "gold_label": [1, 0], "inclusion_probability": [0.5, 1.5]},
     r"column 'inclusion_probability': value 1.5 is outside \(0, 1\]"),
])
def test_bad_label_files_fail_with_one_line_naming_file_row_and_column(tmp_path, rows, match):
    path = _label_file(tmp_path, rows)
    with pytest.raises(InputError, match=match) as err:
        read_labels(path, known_ids=["a", "b", "c"])
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_merge_uses_labelled_counts_for_skipped_rows_and_keeps_the_log_order():
    log = pl.DataFrame({"response_id": [f"id{i}" for i in range(8)], "prompt": ["p"] * 8, "response": ["r"] * 8})
    labels = pl.DataFrame({
        "response_id": ["id5", "id1", "id2", "id7"], "gold_label": [1.0, None, 0.0, 1.0],
        "inclusion_probability": [0.5, 0.5, 0.5, 0.25], "audit_stratum": ["up:1", "up:1", "up:1", "none:1"],
        "audit_stratum_rows": [6, 6, 6, 4],
    })
    merged = audit.merge_labels(log, labels)
    assert merged["response_id"].to_list() == log["response_id"].to_list()
    pi = dict(zip(merged["response_id"], merged["inclusion_probability"]))
    assert pi["id5"] == pytest.approx(2 / 6) and pi["id2"] == pytest.approx(2 / 6)  # id1 skipped: 2 of 6 labelled
    assert pi["id7"] == pytest.approx(1 / 4) and pi["id1"] is None and pi["id0"] is None
    plain = audit.merge_labels(log, labels.select("response_id", "gold_label"))
    assert schema.INCLUSION_PROBABILITY not in plain.columns and plain["gold_label"].null_count() == 5
    with pytest.warns(UserWarning, match="own gold_label .* is replaced"):
        audit.merge_labels(log.with_columns(pl.lit(1.0).alias("gold_label")), labels)
    with pytest.raises(InputError, match="no labels yet"):
        audit.merge_labels(log, labels.with_columns(pl.lit(None, dtype=pl.Float64).alias("gold_label")))


# ------------------------------------------------------------------------------------------ estimates
def test_weighted_gold_flip_rates_recover_the_realised_rates_where_unweighted_ones_do_not():
    o, r, y, _, strata = population(n=20000)
    obs = o == 1
    realised = (np.mean(r[obs & (y == 1)] == 0), np.mean(r[obs & (y == 0)] == 1))
    errors, unweighted, covered = [], [], 0
    for seed in range(20):
        rows, pi, _ = audit.draw(strata, 600, seed=seed)
        gold = np.full(o.size, np.nan)
        gold[rows] = y[rows]
        full_pi = np.full(o.size, np.nan)
        full_pi[rows] = pi
        est = FlipRateEstimator(method="gold", random_state=seed).fit(
            None, r, o, gold_label=gold, inclusion_probability=full_pi)
        plain = FlipRateEstimator(method="gold", n_bootstrap=0).fit(None, r, o, gold_label=gold)
        errors.append(np.subtract(est.rates(), realised))
        unweighted.append(np.subtract(plain.rates(), realised))
        covered += all(lo <= t <= hi for (lo, hi), t in zip(est.ci_.values(), realised))
        assert est.diagnostics_["weighted"] and not plain.diagnostics_["weighted"]
    assert np.all(np.abs(np.mean(errors, axis=0)) < 0.02)       # weighted: unbiased for the log's rates
    assert np.abs(np.mean(unweighted, axis=0)).max() > 0.05     # the design oversamples: ignoring it biases
    assert covered >= 16


def test_gold_rates_reject_labelled_rows_without_a_probability():
    o, r, y, _, strata = population(n=500)
    gold = np.where(o == 1, y, np.nan)
    with pytest.raises(InputError, match="inclusion_probability' row .* on a gold-labelled row"):
        FlipRateEstimator(method="gold").fit(None, r, o, gold_label=gold, inclusion_probability=np.full(500, np.nan))


def test_weighted_metrics_match_sklearn_and_reduce_to_the_plain_ones():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.4).astype(float)
    p = np.round(np.clip(0.3 * y + 0.35 + 0.2 * rng.standard_normal(300), 0.01, 0.99), 2)  # ties
    w = rng.random(300) * 5
    m = metrics(y, p, sample_weight=w)
    assert m["r2"] == pytest.approx(r2_score(y, p, sample_weight=w))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p, sample_weight=w))
    assert m["mse"] == pytest.approx(np.average((p - y) ** 2, weights=w))
    assert metrics(y, p, sample_weight=np.ones(300)) == pytest.approx(metrics(y, p))
    with pytest.raises(InputError, match="sample weights"):
        metrics(y, p, sample_weight=-w)


def test_pair_agreement_counts_only_pairs_of_one_prompt_with_different_labels():
    y = np.array([1, 0, 0, 1, 1, 0])
    p = np.array([0.9, 0.2, 0.5, 0.1, 0.6, 0.6])
    groups = np.array(["a", "a", "a", "b", "c", "c"])
    # prompt a: (0,1) right, (0,2) right, (1,2) same label; prompt c: (4,5) tie -> 1/2; b alone
    assert audit.pair_agreement(y, p, groups) == (pytest.approx(2.5 / 3), 3)
    w = np.array([1, 1, 3, 1, 1, 1.0])
    assert audit.pair_agreement(y, p, groups, w)[0] == pytest.approx((1 + 3 + 0.5) / 5)
    assert np.isnan(audit.pair_agreement(y, p, np.arange(6))[0])


def test_audited_evaluation_weights_the_rows_and_reports_intervals():
    n = 200
    rng = np.random.default_rng(2)
    gold = (rng.random(n) < 0.5).astype(float)
    pi = np.where(gold == 1, 0.2, 0.8)  # positives oversampled 4x relative to their weight
    table = pl.DataFrame({"gold_label": gold, "inclusion_probability": pi, "split": ["val"] * n,
                          "audit_stratum": np.where(gold == 1, "up:1", "none:1").tolist(),
                          "pair_id": [f"q{i // 2}" for i in range(n)]})
    good = np.clip(0.5 + 0.4 * (gold - 0.5) + rng.normal(0, 0.1, n), 0.01, 0.99)
    out = audit.audited_evaluation(table, {"flat": np.full(n, 0.5), "good": good}, n_boot=200)
    record = out["runs"]["good"]
    assert record["n"] == n and record["r2"] == pytest.approx(r2_score(gold, good, sample_weight=1 / pi))
    assert record["r2_ci"][0] < record["r2"] < record["r2_ci"][1] and record["auroc"] > 0.9
    # every pair ranked right in every resample: a bootstrap of width 0 is no interval, so none is reported
    assert record["n_pairs"] > 0 and record["pair_agreement"] == 1.0 and record["pair_agreement_ci"] is None
    assert out["not_enough"] is None
    assert out["runs"]["flat"]["r2"] < 0  # 0.5 is not the weighted base rate
    assert audit.audited_evaluation(table.drop("gold_label"), {"flat": np.full(n, 0.5)}) is None


def test_auto_weighs_audited_rows_by_their_inclusion_probability():
    """Naive is right on the oversampled rows, the candidate on the rest: only the weighted comparison, which
    stands for the whole log, prefers the candidate."""
    from types import SimpleNamespace

    from causalrm.workflows.selection import _gold_evidence

    y = np.tile([1.0, 0.0], 100)
    rare = np.arange(200) >= 160  # 40 rows drawn with pi 0.02, 160 with pi 0.8
    w = np.where(rare, 50.0, 1.25)
    truth, wrong = np.where(y == 1, 3.0, -3.0), np.where(y == 1, -1.0, 1.0)
    results = {"naive": SimpleNamespace(val_logits=np.where(rare, wrong, truth)),
               "denoise": SimpleNamespace(val_logits=np.where(rare, truth, 0.0))}
    strata = np.where(rare, "up:1", "none:1")
    at = np.arange(200)
    weighted = _gold_evidence(results, at, y, w, strata, seed=0)
    plain = _gold_evidence(results, at, y, None, None, seed=0)
    assert weighted["denoise"]["beats_baseline"] and not plain["denoise"]["beats_baseline"]
    assert weighted["denoise"]["gold_mse"] == pytest.approx(np.average(
        (1 / (1 + np.exp(-results["denoise"].val_logits)) - y) ** 2, weights=w))


def test_an_audit_is_read_on_its_held_out_rows_only_once_enough_remain():
    from causalrm.evaluation.audit import audited_evaluation
    from causalrm.evaluation.verdicts import MIN_AUDIT_HELD_OUT

    rng = np.random.default_rng(3)
    n = 400
    gold = (rng.random(n) < 0.5).astype(float)
    prob = np.clip(0.5 + 0.3 * (gold - 0.5) + rng.normal(0, 0.1, n), 0.01, 0.99)
    for held in (60, MIN_AUDIT_HELD_OUT + 20):
        split = np.where(np.arange(n) < held, "val", "train")
        table = pl.DataFrame({"gold_label": gold, "inclusion_probability": np.full(n, 0.5), "split": split.tolist()})
        out = audited_evaluation(table, {"m": prob}, n_boot=50)
        assert out["n"] == (n if held < MIN_AUDIT_HELD_OUT else held)
        assert out["labels"].startswith("held-out") == (held >= MIN_AUDIT_HELD_OUT)


# ------------------------------------------------------------------------------------------ large embeddings
def test_a_memory_mapped_matrix_is_checked_in_chunks_and_gathered_by_index(tmp_path):
    import tracemalloc

    from causalrm.data.rowmatrix import RowView

    log, X = log_with()
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    rows = audit.auditable_rows(log)
    tracemalloc.start()
    Xu = audit.auditable_features(mm, log.height, rows)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(Xu, RowView) and Xu.shape == (rows.size, X.shape[1])
    assert peak < X.nbytes / 2  # no full-size copy (the old check_features(X)[rows] made two)
    np.testing.assert_array_equal(Xu.take(), X[rows])
    # the same proposal from the memory-mapped matrix as from the in-memory one
    assert audit.propose(log, mm, 30, seed=1).equals(audit.propose(log, X, 30, seed=1))
    # in memory: float32 is not copied when every row is auditable
    assert audit.auditable_features(X, log.height, np.arange(log.height)) is X


def test_non_finite_embeddings_are_named_by_row_in_memory_and_memory_mapped(tmp_path):
    log, X = log_with()
    X[7, 2] = np.nan
    np.save(tmp_path / "X.npy", X)
    for matrix in (X, np.load(tmp_path / "X.npy", mmap_mode="r")):
        with pytest.raises(InputError, match="row 7 contains NaN"):
            audit.propose(log, matrix, 30, seed=1)
