"""The method registry (causalrm.estimators.methods): derived views, the METHOD.md table, a toy method usable everywhere; the
configuration as the command line's source (causalrm.options, FitConfig.to_cli)."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from causalrm.cli.main import build_parser
from causalrm.config import FitConfig
from causalrm.errors import InputError
from causalrm.estimators import losses, methods
from causalrm.nuisances.container import needs_of

TOY = "toy-half-naive"


VARIANTS = ("dr-cf", "dr-jl", "mrdr", "tdr", "sdr")
CRM_VARIANTS = tuple(f"causalrm-{v}" for v in VARIANTS)


def test_registry_views_match_the_builtin_traits():
    assert losses.METHODS == ("naive", "ips", "snips", "dr", "fcorr", "fcorr-ips", "fcorr-dr", "denoise",
                              "causalrm-ips", "causalrm-dr",
                              "causalrm-snips", "nnpu", "causalrm-nnpu",
                              *(m for v in VARIANTS for m in (v, f"causalrm-{v}")),
                              "naive-rank", "fcorr-rank", "fcorr-gap", "oracle", "oracle-observed")
    assert losses.WEIGHTED == {"ips", "snips", "dr", "fcorr-ips", "fcorr-dr", "causalrm-ips", "causalrm-dr",
                               "causalrm-snips", "causalrm-nnpu", *VARIANTS, *CRM_VARIANTS, "oracle-observed"}
    assert losses.DOUBLY_ROBUST == {"dr", "fcorr-dr", "causalrm-dr", *VARIANTS, *CRM_VARIANTS}
    assert losses.NOISE_AWARE == {"fcorr", "fcorr-ips", "fcorr-dr", "fcorr-rank", "fcorr-gap", "denoise",
                                  "causalrm-ips", "causalrm-dr", "causalrm-snips", "nnpu", "causalrm-nnpu",
                                  *CRM_VARIANTS}
    assert losses.SURROGATE == {"denoise", "causalrm-ips", "causalrm-dr", "causalrm-snips", "nnpu", "causalrm-nnpu",
                                *CRM_VARIANTS}
    assert methods.where(nonnegative=True) == ("nnpu", "causalrm-nnpu")
    assert methods.auto_candidates() == ("naive", "ips", "denoise", "causalrm-ips", "naive-rank", "fcorr-rank",
                                         "fcorr-gap")
    assert methods.where(head="ranking") == ("naive-rank", "fcorr-rank", "fcorr-gap")
    assert methods.where(pointwise=False) == ("fcorr-gap",)
    assert methods.bench_defaults() == ("naive", "ips", "denoise", "causalrm-ips", "causalrm-dr", "oracle",
                                         "oracle-observed")
    assert methods.app_methods() == ("auto", "naive", "ips", "dr", "denoise", "causalrm-ips", "causalrm-dr",
                                     "nnpu", "causalrm-nnpu", *CRM_VARIANTS, "naive-rank", "fcorr-rank", "fcorr-gap")
    assert methods.app_methods(clean_labels=True)[-1] == "oracle"
    assert needs_of("causalrm-dr") == {"propensity", "flip_rates", "pseudo_label"}
    assert needs_of("dr") == {"propensity", "pseudo_label_noisy"}
    assert needs_of("fcorr-dr") == {"propensity", "flip_rates", "pseudo_label_noisy"}
    assert methods.validation_method("fcorr-dr") == "fcorr-ips"  # IPS: the same epoch as SNIPS on fixed val rows
    assert needs_of("nnpu") == needs_of("denoise") == {"flip_rates"}
    assert needs_of("causalrm-nnpu") == needs_of("causalrm-ips") == {"propensity", "flip_rates"}
    assert needs_of("oracle") == {"true_label"} and needs_of("naive") == set()
    assert needs_of("oracle-observed") == {"true_label"}  # and the log's true_propensity (container.loss_inputs)
    assert needs_of("auto") == {"propensity", "flip_rates"}
    for v in VARIANTS:  # the pre-registered validation criterion (docs/METHOD.md, "Validating the DR variants")
        assert methods.validation_method(v) == "snips"
        assert methods.validation_method(f"causalrm-{v}") == "causalrm-snips"
        assert needs_of(f"causalrm-{v}") == needs_of("causalrm-dr") and needs_of(v) == needs_of("dr")
    assert methods.validation_method("causalrm-dr") == "causalrm-dr"
    assert methods.validation_method("causalrm-tdr", "causalrm-ips") == "causalrm-ips"


@pytest.mark.parametrize("method", ["causalrm-dr-cf", "causalrm-dr-jl", "mrdr", "causalrm-tdr", "causalrm-sdr",
                                    "fcorr-ips", "fcorr-dr"])
def test_dr_variants_train_and_stop_on_snips(method):
    """Each DR variant fits end to end (the joint-learning ones with their imputation model) and early-stops on the
    self-normalised IPS estimate of its observed error."""
    from causalrm.devices import cpu_threads
    from causalrm.simulation.simulate import simulate_with_config
    from causalrm.workflows.bench import synthetic_rated
    from causalrm.workflows.orchestrate import fit_log

    rated, X = synthetic_rated(600, 6)
    log, _ = simulate_with_config(rated, alpha=0.5, rho01=0.2, rho10=0.1, observation_rate=0.4, embeddings=X,
                                  seed=0, dataset="synthetic")
    with cpu_threads(1):
        res = fit_log(log, X, FitConfig(method=method, hidden=(8,), max_epochs=3, patience=2, rho01=0.2, rho10=0.1,
                                        propensity_model="logistic", flip_bootstrap=10, device="cpu"))
    assert res.history.val_method == methods.validation_method(method)
    assert res.history.epochs >= 1 and np.isfinite(res.history.best_val_estimate)


def test_method_md_table_is_the_registry_s():
    text = (REPO_ROOT / "docs" / "METHOD.md").read_text(encoding="utf-8")
    assert methods.replace_table(text) == text, "regenerate: methods.replace_table(docs/METHOD.md)"


def test_specs_are_validated():
    with pytest.raises(InputError, match="correction"):
        methods.MethodSpec("bad", "t", "r", correction="backward")
    with pytest.raises(InputError, match="weighted"):
        methods.MethodSpec("bad", "t", "r", self_normalized=True)
    with pytest.raises(InputError, match="already registered"):
        methods.register(methods.get("naive"))
    with pytest.raises(InputError, match="unknown method 'nope'"):
        methods.get("nope")


def _half_naive(logits, t, base):
    """0.5 o l(z, r): a toy estimator with its own kernel (class-split terms)."""
    s = torch.sigmoid(logits)
    o, r = t["observed"], t["feedback"]
    return 0.5 * torch.stack((o * r * (1 - s) ** 2, o * (1 - r) * s**2), dim=-1)


@pytest.fixture
def toy():
    spec = methods.register(methods.MethodSpec(TOY, "0.5 o l(z, r)", "a test", weighted=True,
                                               components=_half_naive))
    yield spec
    methods.unregister(TOY)


def test_a_registered_method_reaches_the_losses_and_the_entry_points(toy):
    z = torch.tensor([0.3, -1.0, 2.0, 0.0])
    inputs = losses.LossInputs(feedback=torch.tensor([1.0, 0.0, 1.0, 0.0]), observed=torch.tensor([1.0, 1.0, 0.0, 1.0]),
                               propensity=torch.full((4,), 0.5))
    naive = losses.estimate("naive", z, inputs)
    assert torch.isclose(losses.estimate(TOY, z, inputs), 0.5 * naive)
    assert TOY in losses.METHODS and TOY in losses.WEIGHTED and needs_of(TOY) == {"propensity"}
    assert TOY in methods.app_methods()
    assert TOY not in methods.auto_candidates()
    FitConfig(method=TOY).validate()
    parser = build_parser()
    fit = next(a for a in parser._subparsers._group_actions[0].choices["fit"]._actions if a.dest == "method")
    assert TOY in fit.help
    with pytest.raises(InputError, match="needs propensity"):
        losses.estimate(TOY, z, losses.LossInputs(feedback=inputs.feedback, observed=inputs.observed))


# ----------------------------------------------------------------------------------------------------------------
# the configuration as the command line's source
# ----------------------------------------------------------------------------------------------------------------
def _parse_fit(argv):
    return build_parser().parse_args(["fit", "LOG", "--out", "RUN", *argv])


@pytest.mark.parametrize("config", [
    FitConfig(),
    FitConfig(method="causalrm-ips", max_epochs=50, patience=0, hidden=(), lr=0.003, select_head=False, seed=3,
              rho01=0.2, rho10=0.1, num_threads=1, force_noise_correction=True, clip=0.05, device="cpu"),
    FitConfig(method="ips", val_method="naive", propensity_model="logistic", flip_method="anchor-minmax",
              quantile=0.99, proxy_weighting="none", base_loss="bce", embedder="some/model", grad_accum_steps=2,
              select_head=True, val_fraction=0.3, flip_bootstrap=50, propensity_folds=3, weight_decay=1e-5),
    FitConfig(auto_candidates=("denoise", "causalrm-mrdr")),
])
def test_to_cli_reproduces_the_config(config):
    argv = config.to_cli()
    args = _parse_fit(shlex.split(" ".join(shlex.quote(a) for a in argv)))
    assert FitConfig.from_args(args) == config
    assert FitConfig().to_cli() == []


def test_auto_candidates_are_checked_and_naive_always_leads():
    cfg = FitConfig(auto_candidates="causalrm-mrdr, denoise").validate()
    assert cfg.auto_candidates == ("causalrm-mrdr", "denoise")
    assert cfg.candidate_methods == cfg.methods_needed() == ("naive", "causalrm-mrdr", "denoise")
    assert FitConfig().candidate_methods == methods.auto_candidates()
    assert FitConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ("oracle", "auto", "nope"):
        with pytest.raises(InputError, match="--auto-candidates"):
            FitConfig(auto_candidates=("ips", bad)).validate()


def test_to_cli_writes_patience_none_as_never_stop_early():
    argv = FitConfig(patience=None).to_cli()
    assert argv == ["--patience", "0"]  # the documented "never": the trainer treats 0 and None alike
    assert FitConfig.from_args(_parse_fit(argv)).patience == 0


def test_the_app_choice_lists_come_from_the_config():
    from causalrm.nuisances.flip_rates import FLIP_METHODS
    from causalrm.nuisances.propensity import MODELS
    from causalrm.options import choice_labels

    flips = choice_labels(FitConfig, "flip_method", mark_default=True)
    assert tuple(flips.values()) == FLIP_METHODS and "anchor quantile (default)" in flips
    assert tuple(choice_labels(FitConfig, "propensity_model").values()) == MODELS
    from app.common import FLIP_METHODS as APP_FLIPS
    from app.common import PROPENSITY_MODELS

    assert APP_FLIPS == {k: v for k, v in flips.items() if v != "fixed"}  # fixed: the Noise tab's manual override
    assert tuple(PROPENSITY_MODELS.values()) == MODELS


def test_to_cli_refuses_what_the_command_line_cannot_say():
    with pytest.raises(InputError, match="use_logged_propensity"):
        FitConfig(use_logged_propensity=False).to_cli()


def test_lora_options_round_trip_through_the_command_line():
    import dataclasses

    from causalrm.training.backbones.lora import LoraBackbone, LoraOptions

    config = FitConfig(backbone="lora", backbone_options={"model": "m/x", "r": 4, "max_length": 64,
                                                          "gradient_checkpointing": True, "target_modules": ["q", "v"],
                                                          "max_tokens_per_forward": 512})
    argv = config.to_cli()
    assert "--model" in argv and "--lora-r" in argv and "--hidden" not in argv
    assert "--lora-targets" in argv and "max_tokens_per_forward" not in " ".join(argv)  # a memory bound: no flag
    args = _parse_fit(argv)
    opts = LoraBackbone.options_from_args(args)
    assert opts["model"] == "m/x" and opts["r"] == 4 and opts["max_length"] == 64 and opts["gradient_checkpointing"]
    assert opts["target_modules"] == ["q", "v"]
    defaults = LoraBackbone.options_from_args(_parse_fit(["--backbone", "lora"]))  # each default declared once
    assert defaults == {f.name: getattr(LoraOptions(), f.name) for f in dataclasses.fields(LoraOptions)
                        if f.name in defaults} and set(defaults) == {"model", "r", "alpha", "dropout",
                                                                     "target_modules", "max_length",
                                                                     "gradient_checkpointing", "base_dtype"}
    with pytest.raises(InputError, match="no command-line option"):
        FitConfig(backbone="lora", backbone_options={"nope": 1}).to_cli()


def test_fit_and_bench_options_come_from_the_config():
    from causalrm.cli.bench import BENCH_FIT_OPTIONS
    from causalrm.options import cli_fields, from_args

    args = _parse_fit([])
    assert from_args(FitConfig, args) == {}
    bench = build_parser().parse_args(["bench", "--json", "x.json", "--epochs", "7", "--hidden", "", "--threads", "1"])
    assert from_args(FitConfig, bench, BENCH_FIT_OPTIONS) == {"max_epochs": 7, "hidden": "", "num_threads": 1}
    flags = {f.name for f in cli_fields(FitConfig)}
    assert {"method", "max_epochs", "num_threads", "embedder", "rho01"} <= flags
    assert np.all([f in flags for f in BENCH_FIT_OPTIONS])


def test_a_registered_method_trains_through_the_estimator_and_the_cli(toy, tmp_path):
    """The toy method, registered in this test only, runs through CausalRM and `causalrm fit` untouched."""
    import json

    from test_pipeline import synth_log

    import causalrm
    from causalrm.cli.main import main

    log, X = synth_log(n=200)
    fast = dict(hidden=(8,), max_epochs=3, patience=0, propensity_model="logistic", device="cpu",
                num_threads=1)
    est = causalrm.CausalRM(method=TOY, **fast).fit(log, X=X)
    assert est.method_ == TOY and est.nuisances_.propensity_clipped is not None and est.nuisances_.rho01 is None
    assert np.isfinite(est.score_log(log, X)).all()
    log.write_parquet(tmp_path / "log.parquet")
    np.save(tmp_path / "X.npy", X)
    code = main(["fit", str(tmp_path / "log.parquet"), "--embeddings", str(tmp_path / "X.npy"), "--out",
                 str(tmp_path / "run"), "--quiet", "--method", TOY, *FitConfig(**fast).to_cli()])
    assert code == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["method"] == TOY


def test_a_registered_method_is_among_the_app_s_choices(toy):
    import polars as pl

    pytest.importorskip("gradio")
    from app.tabs.data import _methods_update

    simulated = pl.DataFrame({"prompt": ["p"], "response": ["r"], "true_label": [1]})
    choices = _methods_update(simulated)["choices"]
    assert TOY in choices and choices[0] == "auto" and choices[-1] == "oracle"
    assert "oracle" not in _methods_update(simulated.drop("true_label"))["choices"]
