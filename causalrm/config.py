"""``FitConfig``: everything that determines a fit (``causalrm.workflows.orchestrate.fit_log``), its option constants and JSON form.

The fields (declared once with ``causalrm.options.option``) are ``causalrm fit``'s options, the estimator's
parameters and the app's choice lists; ``validate`` refuses any invalid combination with an ``InputError``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.nuisances.flip_rates import FLIP_METHODS
from causalrm.nuisances.propensity import MODELS as PROPENSITY_MODELS
from causalrm.options import as_str_tuple, option
from causalrm.training.backbones.base import DEFAULT_BACKBONE, as_int_tuple, available_backbones, get_backbone_class
from causalrm.training.options import TrainConfig, TrainOptions

#: step size of the linear head that ``FitConfig.select_head`` tries beside the configured head
LINEAR_HEAD_LR = 5e-3
#: the ranking head (``MethodSpec.head == "ranking"``; docs/METHOD.md, "Ranking under noise"): a linear head on
#: standardised embeddings, started at zero, full-batch Adam (one step an epoch up to 16,384 train rows) at lr 0.01 for
#: at most 300 steps (fewer where ``max_epochs`` says so), the BCE likelihood, early-stopped at the best IPS-weighted
#: AUROC of z against the noisy val feedback (patience 100 steps)
RANKING_HEAD: dict[str, Any] = {"hidden": (), "standardize": True, "lr": 0.01, "batch_size": 16_384,
                                "max_epochs": 300, "patience": 100, "stop_on": "ranking", "base_loss": "bce",
                                "select_head": False}
#: the ranking head's weight decays, one fit each; the one with the best criterion is kept (``selection.choose_head``)
RANKING_DECAYS = (0.0, 1e-3, 1e-2, 3e-2, 1e-1)
PROXY_WEIGHTINGS = ("propensity", "none")
#: how the doubly robust pseudo-labels are fitted (noise.split_cross_fitted_proxy): "train-only" (default: cross-fitted
#: within the train rows, val rows scored by a train-row proxy) or "pooled" (the flip-rate proxy over train + val)
IMPUTATION_FITS = ("train-only", "pooled")

# --------------------------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class FitConfig(TrainOptions):
    """Everything that determines a fit (JSON round trip: ``to_dict`` / ``from_dict``).

    Estimator and optimisation: the fields of :class:`causalrm.training.options.TrainOptions` (method: default ``"auto"``,
    which fits naive and the debiased candidates on shared nuisances and keeps one on validation evidence,
    ``causalrm.workflows.selection``; val_method, base_loss, lr, weight_decay, batch_size, max_epochs, patience, min_delta,
    grad_accum_steps, autocast_dtype, max_grad_norm, eval_batch_size, device, seed, num_threads). Here seed also
    fixes the split, the nuisances and the initialisation, and num_threads covers BLAS during the nuisance fits.
    val_method may name another debiased estimator (e.g. ``causalrm-ips`` to stop ``causalrm-dr`` with an estimate
    that does not involve its own pseudo-labels); it never reads clean labels (``oracle`` excepted).
    auto_candidates: the estimators ``auto`` fits and chooses among (naive always one); empty = the registry's
    ``auto_candidate`` specs.
    Backbone
        backbone: a registered backbone (``causalrm.training.backbones``; default the MLP head on frozen embeddings), whose
        declarations (``Backbone.options``, ``config_fields``, ``selects_head``) the rest of this class reads;
        hidden: MLP hidden sizes (256, 64);
        select_head: also train a linear head (``hidden=()``, lr ``LINEAR_HEAD_LR``) and keep whichever of the two
        has the lower best validation estimate (same estimator, same val rows, shared nuisances: no clean label is
        read). A linear head cannot memorise rows, which is what small logs and CausalRM-DR's per-row imputation
        term punish (docs/RESULTS.md); it needs the larger step size to converge within the epoch budget.
        standardize: train the head on standardised embeddings (``MLPBackbone``; the ranking head's, ``RANKING_HEAD``).
        backbone_options: extra backbone keyword arguments (e.g. ``{"dropout": 0.1}``, LoRA model id and rank).
        embedder: embedding model id used when no ``X`` is passed (and by ``score`` on new logs).
    Nuisances
        clip: floor on p_hat when it is used as a weight (0.1). propensity_model: ``"auto"`` (default: cross-fit
        both and keep the lower out-of-fold log loss), ``"mlp"`` or ``"logistic"`` (C by cross-validation);
        propensity_folds: cross-fitting folds; use_logged_propensity: use the log's ``logged_propensity`` column
        when it is complete. flip_method: ``"anchor-quantile"`` (default, q-th / (1-q)-th quantile of a calibrated
        out-of-fold proxy), ``"anchor-minmax"``, ``"gold"`` (audited ``gold_label`` rows), ``"duplicates"`` (an A/B
        log's pairs voted in both orders, ``causalrm.nuisances.duplicate_votes``) or ``"fixed"``;
        quantile: 0.97; rho01, rho10: fixed flip rates (both or neither; given -> ``flip_method="fixed"``);
        flip_bootstrap: bootstrap replicates of the flip-rate CI. force_noise_correction: train a noise-aware method
        even when the flip-rate gate fails (``causalrm.nuisances.gates``; by default such a fit is refused).
        proxy_weighting: ``"propensity"`` (default) weights
        the observed rows by ``1 / p_hat`` (clipped) when fitting the proxy of P(r = 1 | x) behind the anchor flip
        rates and the DR pseudo-labels, whenever propensities are fitted: importance weighting re-targets the proxy
        at all impressions, where the anchors live and where DR imputes (under strong selection the observed rows
        are ~90% positive and an unweighted proxy shrinks towards that rate); ``"none"`` fits the rows as they are.
        imputation_fit: ``"train-only"`` (default) fits the DR pseudo-labels cross-fitted within the train rows and
        scores the val rows with a train-row proxy (``noise.split_cross_fitted_proxy``: no row's pseudo-label from a
        model that saw its feedback, and no val feedback in training or in the val rows' imputation);
        ``"pooled"`` reuses the flip-rate proxy cross-fitted over train + val (the earlier behaviour: the trained
        model's pseudo-labels then carry val feedback, which makes a DR validation estimate optimistic).
    Rows
        val_fraction: share of prompt groups sent to val when the log has no val split (0.2).
        nuisance_max_rows: large logs (``causalrm.data.rowmatrix``): the propensity, anchor flip-rate and DR pseudo-label
        models are fitted on a seeded subsample of at most this many train + val rows (50 000; ``None`` = all),
        gathered by index from the (memory-mapped) embeddings; every row still gets p_hat and q (out-of-fold on the
        subsample, predictions of models that never saw the row elsewhere: ``subsampled_proxy``). Logs of at most
        this many rows are fitted exactly as before.
    """

    auto_candidates: tuple[str, ...] = option((), help="the estimators auto fits and chooses among, comma-separated "
                                                       "(naive, the baseline, is always one; default: the "
                                                       "registry's: naive, ips, denoise, causalrm-ips, naive-rank, "
                                                       "fcorr-rank)",
                                              metavar="M1,M2")
    backbone: str = option(DEFAULT_BACKBONE, help="reward model backbone: {choices}", choices=available_backbones)
    hidden: tuple[int, ...] = option((256, 64), help="MLP hidden sizes ('' = a linear head)")
    select_head: bool = option(False, help="also train a linear head and keep the one with the lower validation "
                                           "estimate")
    standardize: bool = option(False, help="train the head on standardised embeddings (per-dimension mean and sd "
                                           "of the fit rows), output layer started at zero; folded into the first "
                                           "layer after training")
    backbone_options: dict[str, Any] = option(help="extra backbone keyword arguments (LoRA: the --lora-* options)",
                                              flag=None, default_factory=dict)
    embedder: str = option(schema.DEFAULT_EMBEDDER, help="embedding model id (or the one recorded in --embeddings)",
                           flag="--model")
    clip: float = option(0.1, help="floor on p-hat used as a weight")
    propensity_model: str = option("auto", help="auto (logistic and MLP, the lower out-of-fold log loss), mlp or "
                                                "logistic", choices=PROPENSITY_MODELS)
    propensity_folds: int = option(5, help="cross-fitting folds of the nuisance models")
    use_logged_propensity: bool = option(True, help="use the log's logged_propensity column when complete",
                                         flag=None)
    flip_method: str = option("anchor-quantile", help="flip-rate estimator: {choices} (gold needs --gold FILE or "
                                                      "a gold_label column)", choices=FLIP_METHODS,
                           labels={"anchor-quantile": "anchor quantile", "anchor-minmax": "anchor min/max",
                                   "gold": "gold labels", "fixed": "fixed rates",
                                   "duplicates": "swapped-order duplicates"})
    quantile: float = option(0.97, help="anchor quantile")
    rho01: float | None = option(None, help="fixed P(r=0 | r*=1) (with --rho10; else estimated)")
    rho10: float | None = option(None, help="fixed P(r=1 | r*=0) (with --rho01; else estimated)")
    event_rate: float | None = option(None, help="implicit events (copies, clicks): P(event | good response), known "
                                                 "or assumed; the event signal's rho01 = 1 - C", metavar="C")
    accidental_rate: float | None = option(None, help="implicit events: P(event | bad response) (default 0 with "
                                                      "--event-rate); the event signal's rho10 = EPS", metavar="EPS")
    flip_bootstrap: int = option(200, help="bootstrap replicates of the flip-rate intervals")
    force_noise_correction: bool = option(False, help="train a noise-aware method even when the flip-rate gate "
                                                      "says the rates are not identifiable")
    proxy_weighting: str = option("propensity", help="weight observed rows by 1/p-hat in the flip-rate and "
                                                     "pseudo-label proxy: {choices}", choices=PROXY_WEIGHTINGS)
    val_fraction: float = option(0.2, help="share of prompt groups sent to val when the log has no val split")
    nuisance_max_rows: int | None = option(50_000, help="fit the nuisance models (propensity, flip rates, DR "
                                                        "pseudo-labels) on a seeded subsample of at most this many "
                                                        "train/val rows (0 = all); the other rows get predictions",
                                           none="0")
    imputation_fit: str = option("train-only", help="how the DR pseudo-labels are fitted, one of {choices}: "
                                                    "train-only = cross-fitted within the train rows, never on val "
                                                    "feedback; pooled = the flip-rate proxy over train + val (the "
                                                    "fit before 2026-11-30)",
                                 choices=IMPUTATION_FITS)

    def __post_init__(self) -> None:
        self.hidden = as_int_tuple(self.hidden)
        self.auto_candidates = as_str_tuple(self.auto_candidates)
        self.backbone_options = dict(self.backbone_options or {})

    # ------------------------------------------------------------------------------------------------------------
    def validate(self) -> FitConfig:
        """Raise InputError on any invalid option; returns self."""
        from causalrm.estimators.base_losses import BASES

        if self.method != registry.AUTO and not registry.is_method(self.method):
            raise InputError(f"unknown method {self.method!r}; choose one of: {', '.join(registry.names(auto=True))}")
        for m in self.auto_candidates:
            if m == registry.AUTO or not registry.is_method(m) or registry.get(m).clean_labels:
                raise InputError(f"--auto-candidates: {m!r} is not an estimator auto can choose; use names of: "
                                 f"{', '.join(n for n in registry.names() if not registry.get(n).clean_labels)}")
        if self.method == registry.AUTO and self.val_method is not None:
            raise InputError("method 'auto' early-stops every candidate on its own estimate; drop --val-method")
        if self.val_method is not None and not registry.is_method(self.val_method):
            raise InputError(f"unknown validation method {self.val_method!r}; choose one of: "
                             f"{', '.join(registry.names())}")
        if self.val_method is not None and \
                registry.get(self.val_method).clean_labels != registry.get(self.method).clean_labels:
            raise InputError("the oracle's clean labels cannot select another method's model (or vice versa)")
        if self.base_loss not in BASES:
            raise InputError(f"unknown base loss {self.base_loss!r}; choose mse (default, bounded) or bce")
        get_backbone_class(self.backbone)
        if self.propensity_model not in PROPENSITY_MODELS:
            raise InputError(f"unknown propensity model {self.propensity_model!r}; choose one of: "
                             f"{', '.join(PROPENSITY_MODELS)}")
        if self.flip_method not in FLIP_METHODS:
            raise InputError(f"unknown flip method {self.flip_method!r}; choose one of: {', '.join(FLIP_METHODS)}")
        if self.event_rate is not None or self.accidental_rate is not None:
            from causalrm.data.feedback_kinds import event_flip_rates

            event_flip_rates(self.event_rate, self.accidental_rate)
        if (self.rho01 is None) != (self.rho10 is None):
            raise InputError("give both --rho01 and --rho10 (fixed flip rates) or neither (estimated)")
        if self.rho01 is not None:
            from causalrm.estimators.base_losses import check_rates

            check_rates(self.rho01, self.rho10)
        elif self.flip_method == "fixed":
            raise InputError("flip method 'fixed' needs --rho01 and --rho10")
        if self.imputation_fit not in IMPUTATION_FITS:
            raise InputError(f"imputation_fit {self.imputation_fit!r}: use {' or '.join(IMPUTATION_FITS)}")
        if self.proxy_weighting not in PROXY_WEIGHTINGS:
            raise InputError(f"proxy_weighting {self.proxy_weighting!r}: use {' or '.join(PROXY_WEIGHTINGS)}")
        if not 0.5 < self.quantile <= 1.0:
            raise InputError(f"quantile must be in (0.5, 1], got {self.quantile}")
        if not 0.0 < self.clip <= 1.0:
            raise InputError(f"clip must be in (0, 1], got {self.clip}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.propensity_folds < 2:
            raise InputError(f"propensity_folds must be >= 2, got {self.propensity_folds}")
        backbone_cls = get_backbone_class(self.backbone)
        if self.select_head and not backbone_cls.selects_head:
            heads = " or ".join(n for n in available_backbones() if get_backbone_class(n).selects_head)
            raise InputError(f"select_head compares MLP heads on frozen embeddings; use it with backbone {heads}")
        if self.standardize and "standardize" not in backbone_cls.config_fields:
            raise InputError(f"standardize applies to heads on frozen embeddings; backbone {self.backbone!r} has none")
        if self.method != registry.AUTO and registry.get(self.method).head == "ranking" \
                and not backbone_cls.selects_head:
            raise InputError(f"method {self.method!r} trains the ranking head on frozen embeddings; use it with the "
                             "mlp backbone")
        if isinstance(self.seed, bool) or int(self.seed) < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        self.train_config().validate()
        return self

    @property
    def validation_method(self) -> str:
        """``val_method``, else the method's registered validation estimator (the DR variants: SNIPS), else itself."""
        return registry.validation_method(self.method, self.val_method)

    def methods_needed(self) -> tuple[str, ...]:
        """The training estimator and, if different, the validation estimator (``auto``: every candidate)."""
        if self.method == registry.AUTO:
            return self.candidate_methods
        return tuple(dict.fromkeys((self.method, self.validation_method)))

    @property
    def candidate_methods(self) -> tuple[str, ...]:
        """The estimators ``auto`` fits, the baseline naive first: ``auto_candidates`` or the registry's."""
        if not self.auto_candidates:
            return registry.auto_candidates()
        return tuple(dict.fromkeys((registry.BASELINE, *self.auto_candidates)))

    @property
    def effective_flip_method(self) -> str:
        return "fixed" if self.rho01 is not None else self.flip_method

    def ranking_head(self, weight_decay: float) -> FitConfig:
        """This configuration on the ranking head (``RANKING_HEAD``) with ``weight_decay``; at most ``max_epochs``
        steps."""
        return self.replace(**{**RANKING_HEAD, "max_epochs": min(self.max_epochs, RANKING_HEAD["max_epochs"])},
                            weight_decay=float(weight_decay))

    def train_config(self, *, rho01: float = 0.0, rho10: float = 0.0) -> TrainConfig:
        """The trainer's settings, with the flip rates the estimator should use."""
        return TrainConfig.from_any(self, rho01=float(rho01), rho10=float(rho10))

    def backbone_kwargs(self) -> dict[str, Any]:
        """The backbone's keyword arguments: ``backbone_options`` plus the ``FitConfig`` fields it reads
        (``Backbone.config_fields``)."""
        opts = dict(self.backbone_options)
        for name in get_backbone_class(self.backbone).config_fields:
            value = getattr(self, name)
            opts.setdefault(name, list(value) if isinstance(value, tuple) else value)
        return opts

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        """Inverse of ``to_dict``; unknown keys raise InputError."""
        if not isinstance(data, dict):
            raise InputError("fit config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown fit config key(s) {unknown}; known: {', '.join(sorted(names))}")
        return cls(**data)

    def replace(self, **changes: Any) -> FitConfig:
        return dataclasses.replace(self, **changes)

    def to_cli(self, *, skip: tuple[str, ...] = ()) -> list[str]:
        """The ``causalrm fit`` options that reproduce this configuration (``causalrm.options.to_cli``: the fields
        that differ from their defaults, but ``skip``; ``backbone_options`` as the backbone's own flags,
        ``Backbone.options_cli``, ``--model`` among them for a backbone whose ``model_option`` it sets)."""
        from causalrm.options import to_cli

        kind = get_backbone_class(self.backbone)
        out = to_cli(self, skip=(*skip, "backbone_options", *(("embedder",) if kind.model_option else ())))
        return out + kind.options_cli(self.backbone_options)

    @classmethod
    def from_args(cls, args: Any, **overrides: Any) -> FitConfig:
        """The configuration a parsed ``causalrm fit`` command line sets (options left out keep their defaults)."""
        from causalrm.options import from_args

        return cls(**{**from_args(cls, args), **overrides})


def config_json(config: FitConfig) -> str:
    return json.dumps(config.to_dict(), indent=2)
