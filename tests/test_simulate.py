"""The paper's simulator (causalrm/simulation/simulate.py) and `causalrm simulate`.

Statistical checks compare realised rates with their targets within 4 binomial standard errors.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.simulation.simulate import label_threshold, scale_to_rate, simulate, simulate_with_config, simulation_summary
from causalrm.data.splits import prompt_groups
from causalrm.simulation.teacher import teacher_score
from causalrm.simulation.config import SimulationConfig

LEVELS = np.arange(1.0, 11.0)  # a 1-10 scale, like UltraFeedback


def rated_frame(n_prompts: int = 1500, per_prompt: int = 2, d: int = 16, seed: int = 123, split: bool = False):
    """Synthetic rated data: ``per_prompt`` responses per prompt, integer ratings 1-10 depending on x, embeddings x."""
    rng = np.random.default_rng(seed)
    n = n_prompts * per_prompt
    X = rng.standard_normal((n, d)).astype(np.float32)
    latent = X[:, 0] + 0.5 * X[:, 1] + rng.standard_normal(n)
    rating = np.clip(np.round(5.5 + 1.6 * latent), 1, 10)
    pair = np.repeat(np.arange(n_prompts), per_prompt)
    data = {
        "prompt": [f"prompt {i}" for i in pair],
        "response": [f"response {j}" for j in range(n)],
        "response_id": [f"r{j}" for j in range(n)],
        "pair_id": [f"p{i}" for i in pair],
        "rating": rating,
    }
    if split:
        data["split"] = np.where(pair % 5 == 0, "test", "train").tolist()
    return pl.DataFrame(data), X


@pytest.fixture(scope="module")
def rated():
    return rated_frame()


def trainval(log: pl.DataFrame) -> pl.DataFrame:
    return log.filter(pl.col("split") != "test")


def within(emp: float, target: float, n: int, k: float = 4.0, var: float | None = None) -> bool:
    se = np.sqrt((target * (1 - target) if var is None else var) / n)
    return abs(emp - target) < k * se


# ---------------------------------------------------------------------------------------------------------------------
# building blocks against references
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.05, 0.2, 0.6, 0.95, 1.0])
@pytest.mark.parametrize("alpha", [0.005, 0.1, 0.5, 1.0])
def test_scale_to_rate_matches_root_finder(alpha, rate):
    from scipy.optimize import brentq

    s = np.random.default_rng(0).uniform(1, 5, 500)
    p_raw = alpha ** (5 - s)
    c = scale_to_rate(p_raw, rate)
    assert np.mean(np.minimum(1.0, c * p_raw)) == pytest.approx(rate, abs=1e-10)
    if rate < 1.0:
        ref = brentq(lambda k: np.mean(np.minimum(1.0, k * p_raw)) - rate, 1e-12, 1.0 / p_raw.min() + 1, xtol=1e-14)
        assert c == pytest.approx(ref, rel=1e-8)


def test_prompt_groups_link_pairs_and_prompts_but_not_empty_prompts():
    prompts = ["a", "a", "b", "c", "", "", "d", "e"]
    pairs = ["p1", "p2", "p2", "p3", "p4", "p5", None, None]
    g = prompt_groups(prompts, pairs)
    # a-p1, a-p2, b-p2 chain into one group; empty prompts do not link p4 and p5; d and e stay apart.
    assert g[0] == g[1] == g[2]
    assert len({g[0], g[3], g[4], g[5], g[6], g[7]}) == 6


def test_label_threshold_readings():
    y = np.array([1, 1, 1, 1, 2, 9, 10.0])
    assert label_threshold(y, "levels") == np.median([1, 2, 9, 10])
    assert label_threshold(y, "ratings") == 1.0
    assert label_threshold(y, 3.5) == 3.5


# ---------------------------------------------------------------------------------------------------------------------
# the protocol's promises
# ---------------------------------------------------------------------------------------------------------------------
def test_output_schema_and_row_order(rated):
    df, _ = rated
    log, cfg = simulate_with_config(df, seed=0)
    assert isinstance(cfg, SimulationConfig)
    for col in ("prompt", "response", "response_id", "pair_id", "feedback", "observed", "split", "true_label",
                "true_score", "true_propensity"):
        assert log.schema[col] == schema.DTYPES[col], col
    assert log.schema["rating"] == pl.Float64 and set(log["rating_source"].unique()) == {"real"}
    assert log["response_id"].to_list() == df["response_id"].to_list()  # input order kept (embeddings stay aligned)
    assert np.array_equal(log["true_score"].to_numpy(), df["rating"].to_numpy())
    assert set(log["split"].unique()) == {"train", "val", "test"}
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize("alpha", [0.5, 0.05, 0.005])
def test_observation_rate_and_propensity_formula(rated, alpha):
    df, _ = rated
    log, cfg = simulate_with_config(df, alpha=alpha, observation_rate=0.2, seed=1)
    tv = trainval(log)
    p = tv["true_propensity"].to_numpy()
    assert p.mean() == pytest.approx(0.2, abs=1e-10)  # expected rate hit exactly, capping included
    # NumPy reference: p = min(1, c * alpha^(5 - s)), s = 1 + 4 (y - min) / (max - min).
    y = log["rating"].to_numpy()
    s = 1 + 4 * (y - y.min()) / (y.max() - y.min())
    reference = np.minimum(1, cfg.propensity_scale * alpha ** (5 - s))
    np.testing.assert_allclose(log["true_propensity"].to_numpy(), reference)
    assert cfg.n_capped == int(np.sum(p >= 1))
    emp = tv["observed"].mean()
    assert within(emp, 0.2, tv.height, var=float(np.sum(p * (1 - p)) / tv.height))


def test_capping_when_bias_is_strong(rated):
    df, _ = rated
    log, cfg = simulate_with_config(df, alpha=0.005, observation_rate=0.3, seed=0)
    assert cfg.n_capped > 0
    tv = trainval(log)
    assert tv["true_propensity"].max() == 1.0 and tv["true_propensity"].mean() == pytest.approx(0.3, abs=1e-10)
    assert (tv.filter(pl.col("true_propensity") == 1.0)["observed"] == 1).all()


@pytest.mark.parametrize("rho01, rho10", [(0.2, 0.1), (0.1, 0.2)])
def test_flip_rates_on_observed_rows(rho01, rho10):
    df, _ = rated_frame(n_prompts=3000)
    log = simulate(df, alpha=0.5, rho01=rho01, rho10=rho10, observation_rate=0.6, seed=7)
    obs = trainval(log).filter(pl.col("observed") == 1)
    pos, neg = obs.filter(pl.col("true_label") == 1), obs.filter(pl.col("true_label") == 0)
    assert pos.height > 500 and neg.height > 500
    assert within(float((pos["feedback"] == 0).mean()), rho01, pos.height)
    assert within(float((neg["feedback"] == 1).mean()), rho10, neg.height)
    summary = simulation_summary(log)
    assert summary["rho01_hat"] == pytest.approx(float((pos["feedback"] == 0).mean()))


def test_unobserved_rows_have_no_feedback_and_test_is_clean(rated):
    df, _ = rated
    log = simulate(df, seed=3)
    assert log.filter(pl.col("observed") == 0)["feedback"].null_count() == log.filter(pl.col("observed") == 0).height
    assert log.filter(pl.col("observed") == 1)["feedback"].null_count() == 0
    test = log.filter(pl.col("split") == "test")
    assert test.height > 0 and (test["observed"] == 1).all()
    assert (test["feedback"] == test["true_label"]).all()
    assert simulation_summary(log)["test_clean"]


def test_no_noise_means_no_flips(rated):
    df, _ = rated
    log = simulate(df, rho01=0.0, rho10=0.0, seed=4)
    obs = log.filter(pl.col("observed") == 1)
    assert (obs["feedback"] == obs["true_label"]).all()


def test_true_label_is_rating_above_median_level(rated):
    df, _ = rated
    log, cfg = simulate_with_config(df, seed=0)
    y = df["rating"].to_numpy()
    assert cfg.label_threshold == np.median(np.unique(y))
    np.testing.assert_array_equal(log["true_label"].to_numpy(), (y > np.median(np.unique(y))).astype(np.int8))
    log_r, cfg_r = simulate_with_config(df, seed=0, threshold="ratings")
    np.testing.assert_array_equal(log_r["true_label"].to_numpy(), (y > np.median(y)).astype(np.int8))


def _rate_by_level(log: pl.DataFrame) -> pl.DataFrame:
    by = trainval(log).group_by("rating").agg(pl.col("observed").mean().alias("rate"), pl.len().alias("n"))
    return by.sort("rating")


def test_propensity_monotone_in_rating_and_stronger_at_small_alpha():
    from scipy.stats import spearmanr

    df, _ = rated_frame(n_prompts=3000)
    ratios = {}
    for alpha in (0.5, 0.1):
        log = simulate(df, alpha=alpha, observation_rate=0.3, seed=11)
        by_p = trainval(log).group_by("rating").agg(pl.col("true_propensity").first()).sort("rating")
        p = by_p["true_propensity"].to_numpy()
        assert np.all(np.diff(p) >= 0) and np.all(np.diff(p[p < 1]) > 0)  # increasing in the rating (until the cap)
        by = _rate_by_level(log).filter(pl.col("n") >= 50)
        assert spearmanr(by["rating"], by["rate"]).statistic > 0.9
        lo, hi = by.row(0, named=True), by.row(-1, named=True)
        se = np.sqrt(lo["rate"] * (1 - lo["rate"]) / lo["n"] + hi["rate"] * (1 - hi["rate"]) / hi["n"])
        assert hi["rate"] - lo["rate"] > 4 * se
        ratios[alpha] = hi["rate"] / max(lo["rate"], 1e-3)
    assert ratios[0.1] > ratios[0.5]
    # Observed rows are skewed towards high ratings, more so at small alpha.
    m05 = simulate(df, alpha=0.5, seed=11).filter(pl.col("observed") == 1, pl.col("split") != "test")["rating"].mean()
    m01 = simulate(df, alpha=0.1, seed=11).filter(pl.col("observed") == 1, pl.col("split") != "test")["rating"].mean()
    assert m01 > m05 > trainval(simulate(df, seed=11))["rating"].mean()


def test_group_split_has_no_leakage_and_the_requested_fractions(rated):
    df, _ = rated
    log, cfg = simulate_with_config(df, seed=5, val_fraction=0.2, test_fraction=0.2)
    assert cfg.test_source == "group-split"
    for key in ("pair_id", "prompt"):
        assert (log.group_by(key).agg(pl.col("split").n_unique())["split"] == 1).all()
    groups = log.group_by("pair_id").agg(pl.col("split").first())["split"]
    n_groups = groups.len()
    assert (groups == "test").sum() == round(0.2 * n_groups)
    assert (groups == "val").sum() == round(0.2 * (n_groups - round(0.2 * n_groups)))
    assert cfg.n_train + cfg.n_val + cfg.n_test == df.height


def test_source_test_split_is_respected():
    df, _ = rated_frame(n_prompts=500, split=True)
    log, cfg = simulate_with_config(df, seed=0)
    assert cfg.test_source == "source" and cfg.n_moved_to_test == 0
    assert (log["split"] == "test").to_list() == (df["split"] == "test").to_list()
    assert set(trainval(log)["split"].unique()) == {"train", "val"}
    # A source whose test split shares a prompt group with its train rows: the train rows join test.
    leaky = df.with_columns(
        pl.when(pl.col("response_id") == "r1").then(pl.lit("test")).otherwise(pl.col("split")).alias("split")
    )  # r0 / r1 share pair p0 (already test); r2 / r3 (pair p1): make r2 test, r3 stays train
    leaky = leaky.with_columns(
        pl.when(pl.col("response_id") == "r2").then(pl.lit("test")).otherwise(pl.col("split")).alias("split")
    )
    log2, cfg2 = simulate_with_config(leaky, seed=0)
    assert cfg2.n_moved_to_test == 1
    assert log2.filter(pl.col("response_id") == "r3")["split"].item() == "test"
    assert (log2.group_by("pair_id").agg(pl.col("split").n_unique())["split"] == 1).all()


def test_seeded_determinism(rated):
    df, _ = rated
    a, b, c = simulate(df, seed=0), simulate(df, seed=0), simulate(df, seed=1)
    assert a.equals(b)
    assert not a["observed"].equals(c["observed"]) and not a["split"].equals(c["split"])


# ---------------------------------------------------------------------------------------------------------------------
# teacher mode (semi-synthetic: real covariates, simulated outcomes)
# ---------------------------------------------------------------------------------------------------------------------
def test_teacher_requires_aligned_embeddings(rated):
    df, X = rated
    with pytest.raises(InputError, match="needs embeddings"):
        simulate(df, rating="teacher")
    with pytest.raises(InputError, match="aligned"):
        simulate(df, rating="teacher", embeddings=X[:-1])
    with pytest.raises(InputError, match="NaN"):
        bad = X.copy()
        bad[0, 0] = np.nan
        simulate(df, rating="teacher", embeddings=bad)


@pytest.mark.parametrize("teacher", ["mlp", "linear"])
def test_teacher_rating_is_a_fixed_function_of_embeddings(rated, teacher):
    df, X = rated
    log, cfg = simulate_with_config(df, rating="teacher", teacher=teacher, embeddings=X, seed=0)
    assert set(log["rating_source"].unique()) == {f"teacher:{teacher}"} and cfg.rating_source == f"teacher:{teacher}"
    np.testing.assert_array_equal(log["source_rating"].to_numpy(), df["rating"].to_numpy())
    y = log["rating"].to_numpy()
    assert y.min() == pytest.approx(1.0) and y.max() == pytest.approx(10.0)  # mapped onto the source's range
    np.testing.assert_array_equal(y, log["true_score"].to_numpy())
    np.testing.assert_array_equal(y, log["teacher_score"].to_numpy())  # noiseless
    again = simulate(df, rating="teacher", teacher=teacher, embeddings=X, seed=0)
    np.testing.assert_array_equal(again["rating"].to_numpy(), y)
    other = simulate(df, rating="teacher", teacher=teacher, embeddings=X, seed=1)
    assert np.corrcoef(other["rating"].to_numpy(), y)[0, 1] < 0.9  # another seed, another teacher
    # The same teacher for another selection seed; the score is row-permutation equivariant.
    same = simulate(df, rating="teacher", teacher=teacher, embeddings=X, seed=1, teacher_seed=0)
    np.testing.assert_allclose(same["rating"].to_numpy(), y)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(
        teacher_score(X[perm], teacher=teacher, seed=0), teacher_score(X, teacher=teacher, seed=0)[perm], atol=1e-10
    )
    # Labels and selection follow the teacher rating, not the real one.
    np.testing.assert_array_equal(log["true_label"].to_numpy(), (y > np.median(np.unique(y))).astype(np.int8))


def test_teacher_is_learnable_from_embeddings():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score
    from sklearn.neural_network import MLPRegressor

    df, X = rated_frame(n_prompts=1500, d=8)
    half = len(X) // 2
    f_lin = teacher_score(X, teacher="linear", seed=2)
    assert r2_score(f_lin[half:], LinearRegression().fit(X[:half], f_lin[:half]).predict(X[half:])) > 0.999
    f_mlp = teacher_score(X, teacher="mlp", seed=2)
    assert f_mlp.mean() == pytest.approx(0, abs=1e-10) and f_mlp.std() == pytest.approx(1)
    lin = r2_score(f_mlp[half:], LinearRegression().fit(X[:half], f_mlp[:half]).predict(X[half:]))
    mlp = MLPRegressor(hidden_layer_sizes=(64,), max_iter=1000, random_state=0).fit(X[:half], f_mlp[:half])
    r2 = r2_score(f_mlp[half:], mlp.predict(X[half:]))
    assert r2 > 0.9 and lin < 0.99  # learnable, and not just linear


def test_teacher_noise_at_the_requested_snr():
    df, X = rated_frame(n_prompts=2000)
    noiseless = simulate(df, rating="teacher", embeddings=X, seed=0)
    snr = 1.0
    noisy = simulate(df, rating="teacher", embeddings=X, seed=0, snr=snr)
    y, f = noisy["rating"].to_numpy(), noisy["teacher_score"].to_numpy()
    assert not np.allclose(y, noiseless["rating"].to_numpy())
    # teacher_score is the noiseless teacher on the noisy rating's scale: an exact affine image of the noiseless one.
    assert np.corrcoef(f, noiseless["rating"].to_numpy())[0, 1] == pytest.approx(1.0)
    # Share of variance explained by the noiseless teacher = snr / (1 + snr), within sampling error.
    r2, target = np.corrcoef(y, f)[0, 1] ** 2, snr / (1 + snr)
    se = 2 * np.sqrt(target) * (1 - target) / np.sqrt(len(y))  # delta method: sd(r) = (1 - rho^2) / sqrt(n)
    assert abs(r2 - target) < 4 * se
    np.testing.assert_array_equal(
        simulate(df, rating="teacher", embeddings=X, seed=0, snr=snr)["rating"].to_numpy(), y
    )


def test_teacher_range_and_no_source_rating(rated):
    df, X = rated
    log = simulate(df.drop("rating"), rating="teacher", embeddings=X, teacher_range=(0, 4), seed=0)
    assert log["rating"].min() == pytest.approx(0) and log["rating"].max() == pytest.approx(4)
    assert log["source_rating"].null_count() == log.height
    log = simulate(df.drop("rating"), rating="teacher", embeddings=X, seed=0)
    assert log["rating"].min() == pytest.approx(1) and log["rating"].max() == pytest.approx(10)  # default 1-10


# ---------------------------------------------------------------------------------------------------------------------
# invalid parameters
# ---------------------------------------------------------------------------------------------------------------------
INVALID = [
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"rho01": 0.6, "rho10": 0.4}, "rho01 \\+ rho10"),
    ({"rho01": -0.1}, "rho01"),
    ({"rho10": -0.2}, "rho10"),
    ({"observation_rate": 0.0}, "observation_rate"),
    ({"observation_rate": 1.2}, "observation_rate"),
    ({"observation_rate": -0.2}, "observation_rate"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"test_fraction": 0.0}, "test_fraction"),
    ({"rating": "fake"}, "rating"),
    ({"teacher": "gbm"}, "teacher"),
    ({"snr": 0.0, "rating": "teacher"}, "snr"),
    ({"snr": 2.0}, "snr"),
    ({"teacher_range": (5, 1), "rating": "teacher"}, "teacher_range"),
    ({"threshold": "mean"}, "threshold"),
    ({"seed": -1}, "seed"),
    ({"threshold": 10.0}, "threshold"),
]


@pytest.mark.parametrize("kwargs, match", INVALID)
def test_invalid_parameters_raise_input_error(rated, kwargs, match):
    df, _ = rated
    with pytest.raises(InputError, match=match) as err:
        simulate(df, **kwargs)
    assert "\n" not in str(err.value)


def test_invalid_data_raise_input_error(rated):
    df, _ = rated
    with pytest.raises(InputError, match="rating"):
        simulate(df.drop("rating"))
    with pytest.raises(InputError, match="rating"):
        simulate(df.with_columns(pl.lit(3.0).alias("rating")))
    with pytest.raises(InputError, match="rating"):
        missing = pl.when(pl.col("response_id") == "r5").then(None).otherwise(pl.col("rating"))
        simulate(df.with_columns(missing.alias("rating")))
    with pytest.raises(InputError, match="response_id"):
        simulate(df.with_columns(pl.lit("same").alias("response_id")))
    with pytest.raises(InputError, match="prompt groups"):
        simulate(df.with_columns(pl.lit("p").alias("pair_id")))


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
CLI_INVALID = [
    (["--alpha", "0"], "alpha"),
    (["--alpha", "2"], "alpha"),
    (["--rho01", "0.5", "--rho10", "0.5"], "rho01 + rho10"),
    (["--rho10", "-0.1"], "rho10"),
    (["--observation-rate", "0"], "observation_rate"),
    (["--observation-rate", "1.5"], "observation_rate"),
    (["--snr", "-1", "--rating", "teacher"], "snr"),
    (["--threshold", "mean"], "--threshold"),
]


@pytest.mark.parametrize("extra, message", CLI_INVALID)
def test_cli_invalid_parameters(tmp_path, capsys, extra, message):
    from causalrm.cli.main import main

    out = tmp_path / "x.parquet"
    rc = main(["simulate", "--dataset", "ultrafeedback", "--seed", "0", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_bad_output_extension(tmp_path, capsys):
    from causalrm.cli.main import main

    rc = main(["simulate", "--dataset", "ultrafeedback", "--out", str(tmp_path / "x.txt")])
    assert rc == 2 and "extension" in capsys.readouterr().err


def test_cli_unknown_dataset(tmp_path, capsys):
    from causalrm.cli.main import main

    rc = main(["simulate", "--dataset", "no-such-dataset", "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_end_to_end_on_ultrafeedback(tmp_path, capsys):
    from causalrm.cli.main import main
    from causalrm.data.datasets import load_rated

    out, cfg_path = tmp_path / "sim.parquet", tmp_path / "sim.json"
    argv = ["simulate", "--dataset", "ultrafeedback", "--alpha", "0.5", "--rho01", "0.2", "--rho10", "0.1",
            "--seed", "0", "--out", str(out), "--config-out", str(cfg_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "observation rate" in printed and "rho01" in printed
    log = pl.read_parquet(out)
    rated = load_rated("ultrafeedback")
    assert log.height == rated.height
    assert (log["split"] == "test").sum() == (rated["split"] == "test").sum()  # the source's own test split
    assert simulation_summary(log)["test_clean"]
    for key in ("pair_id", "prompt"):
        assert (log.group_by(key).agg(pl.col("split").n_unique())["split"] == 1).all()
    cfg = json.loads(cfg_path.read_text())
    assert cfg["alpha"] == 0.5 and cfg["dataset"] == "ultrafeedback" and cfg["test_source"] == "source"
    tv = trainval(log)
    assert tv["true_propensity"].mean() == pytest.approx(0.2, abs=1e-9)
    assert within(tv["observed"].mean(), 0.2, tv.height)
    # Same seed, same file.
    out2 = tmp_path / "sim2.parquet"
    assert main(argv[:-4] + ["--out", str(out2)]) == 0
    assert pl.read_parquet(out2).equals(log)


def test_simulate_dataset_teacher_embeds_the_loaded_rows(monkeypatch):
    import causalrm.embeddings.embedder as embeddings
    from causalrm.data.datasets import load_rated
    from causalrm.simulation.simulate import simulate_dataset

    seen = {}

    def fake_embed_log(df, embedder=None):
        seen["ids"] = df["response_id"].to_list()
        return np.random.default_rng(0).standard_normal((df.height, 8)).astype(np.float32)

    monkeypatch.setattr(embeddings, "embed_log", fake_embed_log)
    log, cfg = simulate_dataset("helpsteer2", rating="teacher", teacher="linear", snr=4.0, seed=0)
    assert seen["ids"] == log["response_id"].to_list() == load_rated("helpsteer2")["response_id"].to_list()
    assert cfg.rating_source == "teacher:linear" and cfg.dataset == "helpsteer2" and cfg.test_source == "group-split"
    assert log["rating"].min() == pytest.approx(0) and log["rating"].max() == pytest.approx(4)  # HelpSteer2's 0-4
    np.testing.assert_array_equal(log["source_rating"].to_numpy(), load_rated("helpsteer2")["rating"].to_numpy())
