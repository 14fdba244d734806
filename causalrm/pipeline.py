"""``fit_log``: the single entry the CLI, app, bench and notebooks call to fit a reward model on a log.

Steps (METHOD.md; docs/ARCHITECTURE.md):

1. **Rows.** :func:`resolve_split` decides each row's role. Rows with ``split == "test"`` are *never* touched in
   fitting: not embedded, not seen by the nuisance models, not by the trainer. Rows with ``split`` ``train`` / ``val``
   keep it. Rows without a split (no column, or null) are assigned by a seeded *group* split: 80/20 (``val_fraction``)
   of the prompt groups (connected components of a shared ``pair_id`` or prompt text, so no prompt crosses the
   split) go to train / val. If there are train rows but no val rows, ``val_fraction`` of the train groups become val.
2. **Nuisances, once** (:func:`fit_nuisances`, on the train + val rows, cross-fitted): the propensity ``p_hat``
   (``PropensityModel``, or the log's ``logged_propensity``), the flip rates (``FlipRateEstimator``: anchor
   quantiles, anchor min/max, an audited ``gold_label`` subset, or fixed values), and the pseudo-labels ``q`` of the
   doubly robust methods. A method fits only what it uses: ``naive`` and ``oracle`` nothing; ``ips``/``snips`` the
   propensity; ``fcorr``/``denoise`` the flip rates; ``dr`` propensity + ``q = P(r=1|x)``; ``causalrm-ips``
   propensity + flip rates; ``causalrm-dr`` all three with ``q = P(r*=1|x)`` (each spec's ``needs`` in the method
   registry, ``causalrm.methods``).
3. **Training** (:func:`causalrm.trainer.train`): the backbone on the train rows, early-stopped on the *same*
   estimator evaluated on the val rows (never test rows, never clean labels, except ``oracle``, which is the
   clean-label reference by definition).

The result, :class:`FitResult`, holds the config, the trained backbone, the training history and the nuisance
diagnostics, and scores any log with ``score(log, X)``.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm import methods as registry
from causalrm import schema
from causalrm.atomic_io import jsonable
from causalrm.backbones import Backbone, build_backbone, get_backbone_class
from causalrm.backbones.base import as_int_tuple
from causalrm.errors import InputError
from causalrm.options import option
from causalrm.gates import REMEDIES, Gate, best_constant, flip_rate_gate, learning_gate, propensity_gate
from causalrm.noise import FLIP_METHODS
from causalrm.propensity import MODELS as PROPENSITY_MODELS
from causalrm.trainer import TrainConfig, TrainHistory, TrainOptions, _method_names, cpu_threads, predict_logits, train

StageFn = Callable[[str], None]
#: step size of the linear head that ``FitConfig.select_head`` tries beside the configured head
LINEAR_HEAD_LR = 5e-3
PROXY_WEIGHTINGS = ("propensity", "none")
#: how the doubly robust pseudo-labels are fitted (noise.split_cross_fitted_proxy): "train-only" (default: cross-fitted
#: within the train rows, val rows scored by a train-row proxy) or "pooled" (the flip-rate proxy over train + val)
IMPUTATION_FITS = ("train-only", "pooled")
DEFAULT_EMBEDDER = schema.DEFAULT_EMBEDDER
#: the method that fits several estimators on shared nuisances and keeps one on the evidence (causalrm.selection)
AUTO = registry.AUTO

# --------------------------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class FitConfig(TrainOptions):
    """Everything that determines a fit (JSON round trip: ``to_dict`` / ``from_dict``).

    Estimator and optimisation: the fields of :class:`causalrm.trainer.TrainOptions` (method: here default
    ``"auto"``, which fits naive and the debiased candidates on shared nuisances and keeps one on validation
    evidence, ``causalrm.selection``; val_method, base_loss, lr, weight_decay, batch_size, max_epochs, patience, min_delta,
    grad_accum_steps, autocast_dtype, max_grad_norm, eval_batch_size, device, seed, num_threads). Here seed also
    fixes the split, the nuisances and the initialisation, and num_threads covers BLAS during the nuisance fits.
    val_method may name another debiased estimator (e.g. ``causalrm-ips`` to stop ``causalrm-dr`` with an estimate
    that does not involve its own pseudo-labels); it never reads clean labels (``oracle`` excepted).
    auto_candidates: the estimators ``auto`` fits and chooses among (naive always one); empty = the registry's
    ``auto_candidate`` specs.
    Backbone
        backbone: ``"mlp"`` (head on frozen embeddings) or ``"lora"``; hidden: MLP hidden sizes (256, 64);
        select_head: also train a linear head (``hidden=()``, lr ``LINEAR_HEAD_LR``) and keep whichever of the two
        has the lower best validation estimate (same estimator, same val rows, shared nuisances: no clean label is
        read). A linear head cannot memorise rows, which is what small logs and CausalRM-DR's per-row imputation
        term punish (docs/RESULTS.md); it needs the larger step size to converge within the epoch budget.
        backbone_options: extra backbone keyword arguments (e.g. ``{"dropout": 0.1}``, LoRA model id and rank).
        embedder: embedding model id used when no ``X`` is passed (and by ``score`` on new logs).
    Nuisances
        clip: floor on p_hat when it is used as a weight (0.1). propensity_model: ``"auto"`` (default: cross-fit
        both and keep the lower out-of-fold log loss), ``"mlp"`` or ``"logistic"`` (C by cross-validation);
        propensity_folds: cross-fitting folds; use_logged_propensity: use the log's ``logged_propensity`` column
        when it is complete. flip_method: ``"anchor-quantile"`` (default, q-th / (1-q)-th quantile of a calibrated
        out-of-fold proxy), ``"anchor-minmax"``, ``"gold"`` (audited ``gold_label`` rows) or ``"fixed"``;
        quantile: 0.97; rho01, rho10: fixed flip rates (both or neither; given -> ``flip_method="fixed"``);
        flip_bootstrap: bootstrap replicates of the flip-rate CI. force_noise_correction: train a noise-aware method
        even when the flip-rate gate fails (``causalrm.gates``; by default such a fit is refused).
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
        nuisance_max_rows: large logs (``causalrm.rowmatrix``): the propensity, anchor flip-rate and DR pseudo-label
        models are fitted on a seeded subsample of at most this many train + val rows (50 000; ``None`` = all),
        gathered by index from the (memory-mapped) embeddings; every row still gets p_hat and q (out-of-fold on the
        subsample, predictions of models that never saw the row elsewhere: ``subsampled_proxy``). Logs of at most
        this many rows are fitted exactly as before.
    """

    method: str = option(AUTO, help="estimator: auto (fit naive and the debiased candidates, keep one on "
                                    "validation evidence) or one of {choices}", choices=_method_names)
    auto_candidates: tuple[str, ...] = option((), help="the estimators auto fits and chooses among, comma-separated "
                                                       "(naive, the baseline, is always one; default: the "
                                                       "registry's: naive, ips, denoise, causalrm-ips)",
                                              metavar="M1,M2")
    backbone: str = option("mlp", help="reward model backbone: mlp or lora")
    hidden: tuple[int, ...] = option((256, 64), help="MLP hidden sizes ('' = a linear head)")
    select_head: bool = option(False, help="also train a linear head and keep the one with the lower validation "
                                           "estimate")
    backbone_options: dict[str, Any] = option(help="extra backbone keyword arguments (LoRA: the --lora-* options)",
                                              flag=None, default_factory=dict)
    embedder: str = option(DEFAULT_EMBEDDER, help="embedding model id (or the one recorded in --embeddings)",
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
                                   "gold": "gold labels", "fixed": "fixed rates"})
    quantile: float = option(0.97, help="anchor quantile")
    rho01: float | None = option(None, help="fixed P(r=0 | r*=1) (with --rho10; else estimated)")
    rho10: float | None = option(None, help="fixed P(r=1 | r*=0) (with --rho01; else estimated)")
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
        names = self.auto_candidates.split(",") if isinstance(self.auto_candidates, str) else self.auto_candidates
        self.auto_candidates = tuple(str(m).strip() for m in names or () if str(m).strip())
        self.backbone_options = dict(self.backbone_options or {})

    # ------------------------------------------------------------------------------------------------------------
    def validate(self) -> FitConfig:
        """Raise InputError on any invalid option; returns self."""
        from causalrm.losses import BASES

        if self.method != AUTO and not registry.is_method(self.method):
            raise InputError(f"unknown method {self.method!r}; choose one of: {', '.join(registry.names(auto=True))}")
        for m in self.auto_candidates:
            if m == AUTO or not registry.is_method(m) or registry.get(m).clean_labels:
                raise InputError(f"--auto-candidates: {m!r} is not an estimator auto can choose; use names of: "
                                 f"{', '.join(n for n in registry.names() if not registry.get(n).clean_labels)}")
        if self.method == AUTO and self.val_method is not None:
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
        if (self.rho01 is None) != (self.rho10 is None):
            raise InputError("give both --rho01 and --rho10 (fixed flip rates) or neither (estimated)")
        if self.rho01 is not None:
            from causalrm.losses import check_rates

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
        if self.select_head and self.backbone != "mlp":
            raise InputError("select_head compares MLP heads on frozen embeddings; use it with backbone mlp")
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
        if self.method == AUTO:
            return self.candidate_methods
        return tuple(dict.fromkeys((self.method, self.validation_method)))

    @property
    def candidate_methods(self) -> tuple[str, ...]:
        """The estimators ``auto`` fits, the baseline naive first: ``auto_candidates`` or the registry's."""
        if not self.auto_candidates:
            return registry.auto_candidates()
        return tuple(dict.fromkeys(("naive", *self.auto_candidates)))

    @property
    def effective_flip_method(self) -> str:
        return "fixed" if self.rho01 is not None else self.flip_method

    def train_config(self, *, rho01: float = 0.0, rho10: float = 0.0) -> TrainConfig:
        """The trainer's settings, with the flip rates the estimator should use."""
        return TrainConfig.from_any(self, rho01=float(rho01), rho10=float(rho10))

    def backbone_kwargs(self) -> dict[str, Any]:
        opts = dict(self.backbone_options)
        if self.backbone == "mlp":
            opts.setdefault("hidden", list(self.hidden))
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
        that differ from their defaults, but ``skip``; the LoRA backbone's options as its ``--model`` / ``--lora-*``
        flags)."""
        from causalrm.options import to_cli

        out = to_cli(self, skip=tuple(skip) + (("backbone_options", "embedder") if self.backbone == "lora" else ()))
        if self.backbone == "lora":
            from causalrm.backbones.lora import lora_cli

            out += lora_cli(self.backbone_options)
        return out

    @classmethod
    def from_args(cls, args: Any, **overrides: Any) -> FitConfig:
        """The configuration a parsed ``causalrm fit`` command line sets (options left out keep their defaults)."""
        from causalrm.options import from_args

        return cls(**{**from_args(cls, args), **overrides})


# --------------------------------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------------------------------
def group_split(log: pl.DataFrame, rows: np.ndarray, *, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask over ``rows``: True = val. Seeded split of whole prompt groups (pair_id / prompt text).

    ``round(val_fraction * G)`` of the ``G`` groups (at least 1, at most ``G - 1``) go to val, chosen by a
    ``numpy.random.default_rng(seed)`` permutation.
    """
    from causalrm.simulate import prompt_groups

    sub = log[rows.tolist()] if rows.size else log.clear()
    prompts = sub[schema.PROMPT].to_list() if schema.PROMPT in sub.columns else [None] * len(rows)
    pairs = sub[schema.PAIR_ID].cast(pl.String).to_list() if schema.PAIR_ID in sub.columns else [None] * len(rows)
    groups = prompt_groups(prompts, pairs)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    if n_groups < 2:
        raise InputError(
            f"only {n_groups} prompt group(s) available for train/val; add rows or give a 'split' column with val rows"
        )
    n_val = min(max(1, int(round(val_fraction * n_groups))), n_groups - 1)
    val_groups = np.zeros(n_groups, dtype=bool)
    val_groups[np.random.default_rng(seed).permutation(n_groups)[:n_val]] = True
    return val_groups[groups]


def resolve_split(log: pl.DataFrame, *, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Role of each row: ``"train"``, ``"val"`` or ``"test"`` (object array, one per row; see the module docstring)."""
    n = log.height
    if schema.SPLIT in log.columns:
        raw = log[schema.SPLIT].cast(pl.String).to_list()
        bad = sorted({s for s in raw if s is not None and s not in (schema.TRAIN, schema.VAL, schema.TEST)})
        if bad:
            raise InputError(f"column 'split' has value(s) {bad}; use train, val, test or leave it empty")
        split = np.array([s if s is not None else "" for s in raw], dtype=object)
    else:
        split = np.full(n, "", dtype=object)
    unassigned = np.flatnonzero(split == "")
    if unassigned.size:
        is_val = group_split(log, unassigned, val_fraction=val_fraction, seed=seed)
        split[unassigned] = np.where(is_val, schema.VAL, schema.TRAIN)
    if not np.any(split == schema.VAL):
        train_rows = np.flatnonzero(split == schema.TRAIN)
        is_val = group_split(log, train_rows, val_fraction=val_fraction, seed=seed)
        split[train_rows[is_val]] = schema.VAL
    if not np.any(split == schema.TRAIN):
        raise InputError("no training rows: every row has split 'val' or 'test'")
    return split


def _column(log: pl.DataFrame, name: str, rows: np.ndarray) -> np.ndarray | None:
    if name not in log.columns:
        return None
    return log[name].cast(pl.Float64).to_numpy()[rows]


def _observed_feedback(log: pl.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed, feedback) as float arrays over ``rows``; feedback 0 where unobserved."""
    if schema.FEEDBACK not in log.columns:
        raise InputError("the log has no 'feedback' column; map one with --map feedback=<column>")
    fb = log[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows]
    if schema.OBSERVED in log.columns:
        obs = log[schema.OBSERVED].cast(pl.Float64).fill_null(0.0).to_numpy()[rows]
    else:
        obs = (~np.isnan(fb)).astype(np.float64)
    missing = (obs > 0) & np.isnan(fb)
    if missing.any():
        first = int(rows[np.flatnonzero(missing)[0]])
        raise InputError(f"row {first}: observed is 1 but feedback is empty; fix column 'feedback' or 'observed'")
    fb = np.where(obs > 0, fb, 0.0)
    if not np.isin(fb, (0.0, 1.0)).all() or not np.isin(obs, (0.0, 1.0)).all():
        raise InputError("columns 'feedback' and 'observed' must be 0/1; pass --threshold to binarise ratings")
    return obs, fb


# --------------------------------------------------------------------------------------------------------------------
# nuisances
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Nuisances:
    """Nuisance estimates on the fitting rows (train + val), fitted once before training.

    rows: positions in the log of the fitting rows; split: their role (train / val).
    propensity: cross-fitted p_hat (unclipped) or None; propensity_clipped: ``max(p_hat, clip)``, what the losses
    receive (clipped once, by ``PropensityModel``; ``weights`` is its old name); propensity_clipped_alt: the same
    from the runner-up propensity model (``propensity_model="auto"``), else None (old name ``weights_alt``).
    rho01, rho10: flip rates (estimated or fixed; None when no method asked); rho_ci: {"rho01": (lo, hi), ...}.
    pseudo_label: q = P(r* = 1 | x) for causalrm-dr; pseudo_label_noisy: P(r = 1 | x) for dr.
    diagnostics: JSON-able summary (propensity diagnostics, flip-rate estimates and CIs, sources, seconds).
    gates: the verdicts of ``causalrm.gates`` on what was fitted ({"propensity": Gate, "flip_rates": Gate}).
    propensity_model, flip_estimator: the fitted objects (for plots in the app); not saved.
    """

    rows: np.ndarray
    split: np.ndarray
    propensity: np.ndarray | None = None
    propensity_clipped: np.ndarray | None = None
    propensity_clipped_alt: np.ndarray | None = None
    rho01: float | None = None
    rho10: float | None = None
    rho_ci: dict[str, tuple[float, float]] | None = None
    pseudo_label: np.ndarray | None = None
    pseudo_label_noisy: np.ndarray | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    propensity_model: Any = None
    flip_estimator: Any = None

    def provides(self) -> set[str]:
        out = set()
        if self.propensity_clipped is not None:
            out.add("propensity")
        if self.rho01 is not None:
            out.add("flip_rates")
        if self.pseudo_label is not None:
            out.add("pseudo_label")
        if self.pseudo_label_noisy is not None:
            out.add("pseudo_label_noisy")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able diagnostics (no per-row arrays)."""
        out = dict(self.diagnostics)
        out["rho01"] = self.rho01
        out["rho10"] = self.rho10
        out["rho_ci"] = self.rho_ci
        out["n_rows"] = int(self.rows.size)
        out["gates"] = {name: gate.to_dict() for name, gate in self.gates.items()}
        return jsonable(out)


def needs_of(methods: str | list[str] | tuple[str, ...]) -> set[str]:
    """What ``methods`` need fitted (``causalrm.methods.needs_of``: the registry's specs)."""
    return registry.needs_of(methods)


def fit_nuisances(
    log: pl.DataFrame,
    X: np.ndarray | None,
    config: FitConfig,
    *,
    methods: list[str] | tuple[str, ...] | None = None,
    split: np.ndarray | None = None,
    on_stage: StageFn | None = None,
) -> Nuisances:
    """Fit the nuisances that ``methods`` (default ``[config.method]``) need, once, on the train + val rows.

    ``X``: embeddings of *every* row of ``log`` (only the train + val rows are read), or of the train + val rows
    alone (``len(X) == number of those rows``), or None (embedded with ``config.embedder``).
    """
    config.validate()
    with cpu_threads(config.num_threads):
        return _fit_nuisances(log, X, config, methods=methods, split=split, on_stage=on_stage)


def _fit_nuisances(
    log: pl.DataFrame, X: np.ndarray | None, config: FitConfig, *, methods, split, on_stage,
) -> Nuisances:
    methods = [config.method] if methods is None else list(methods)
    needs = needs_of(methods)
    split = resolve_split(log, val_fraction=config.val_fraction, seed=config.seed) if split is None else split
    rows = np.flatnonzero(split != schema.TEST)
    nuis = Nuisances(rows=rows, split=split[rows])
    diag: dict[str, Any] = {"methods": methods, "n_train": int(np.sum(split == schema.TRAIN)),
                            "n_val": int(np.sum(split == schema.VAL)), "seconds": {}}
    nuis.diagnostics = diag
    obs, fb = _observed_feedback(log, rows)
    diag["observed_rate"] = float(obs.mean()) if obs.size else None
    diag["n_observed"] = int(obs.sum())
    if "true_label" in needs and schema.TRUE_LABEL not in log.columns:
        clean = [m for m in methods if "true_label" in needs_of(m)]
        raise InputError(f"method {'/'.join(clean)!r} needs the column 'true_label' (simulated logs only)")
    model_needs = needs - {"true_label"}
    if not model_needs:
        return nuis
    if obs.sum() < 2:
        raise InputError("fewer than 2 rows with feedback among train/val rows; nothing to learn from")
    X_fit = _fit_rows_X(log, X, rows, config)
    proxy_needed = "pseudo_label" in needs or "pseudo_label_noisy" in needs or (
        "flip_rates" in needs and config.effective_flip_method.startswith("anchor"))
    if config.proxy_weighting == "propensity" and proxy_needed and obs.min() == 0:
        needs = needs | {"propensity"}  # the proxy's importance weights (FitConfig.proxy_weighting)

    if "propensity" in needs:
        _stage(on_stage, "propensity")
        t0 = time.perf_counter()
        from causalrm.propensity import PropensityModel

        logged = _column(log, schema.LOGGED_PROPENSITY, rows)
        use_logged = bool(config.use_logged_propensity and logged is not None and not np.isnan(logged).any())
        if obs.min() == 1 and not use_logged:
            raise InputError(
                "every train/val row has feedback (a feedback-only log): propensities cannot be learned; add a "
                "logged_propensity column, include the impressions without feedback, or use --method denoise / naive"
            )
        model = PropensityModel(model=config.propensity_model, n_folds=config.propensity_folds, clip=config.clip,
                                random_state=config.seed, device=config.device, max_rows=config.nuisance_max_rows)
        model.fit(X_fit, obs, logged_propensity=logged if use_logged else None)
        nuis.propensity_model = model
        nuis.propensity = np.asarray(model.propensity_, dtype=np.float64)
        diag["propensity"] = {"source": "logged" if use_logged else config.propensity_model,
                              **(jsonable(getattr(model, "diagnostics_", None)) or {})}
        nuis.propensity_clipped = model.weights_
        if getattr(model, "selection_", None) is not None:
            diag["propensity"]["selection"] = jsonable(model.selection_)
        nuis.propensity_clipped_alt = getattr(model, "alternative_weights_", None)
        if getattr(model, "fit_rows_", None) is not None:
            diag.setdefault("subsample", {})["propensity"] = int(len(model.fit_rows_))
        nuis.gates["propensity"] = propensity_gate(diag["propensity"])
        diag["propensity"]["clip"] = config.clip
        diag["propensity"]["share_clipped"] = float(np.mean(nuis.propensity < config.clip))
        diag["seconds"]["propensity"] = time.perf_counter() - t0

    # FitConfig.proxy_weighting
    proxy_weights = nuis.propensity_clipped if config.proxy_weighting == "propensity" else None
    if "flip_rates" in needs or "pseudo_label" in needs:
        _stage(on_stage, "flip rates")
        t0 = time.perf_counter()
        from causalrm.noise import FlipRateEstimator

        from causalrm.audit import design_columns

        method = config.effective_flip_method
        audit = design_columns(log, rows)
        gold = audit["gold_label"]
        if method == "gold" and (gold is None or np.isnan(gold).all()):
            raise InputError("flip method 'gold' needs audited labels on train/val rows: merge a label file "
                             "(--gold FILE, from causalrm audit) or give the log a 'gold_label' column")
        est = FlipRateEstimator(method=method, quantile=config.quantile, rho01=config.rho01, rho10=config.rho10,
                                n_bootstrap=config.flip_bootstrap, random_state=config.seed)
        from causalrm.rowmatrix import subsample, take_rows

        sub = None if method in ("gold", "fixed") else subsample(len(obs), config.nuisance_max_rows, config.seed,
                                                                   stratify=obs)
        if method == "gold":
            est.fit(X_fit, fb, obs, **audit)
        elif sub is not None:  # scalar rates from a subsample gathered by index (FitConfig.nuisance_max_rows)
            est.fit(take_rows(X_fit, sub), fb[sub], obs[sub],
                    propensity=None if proxy_weights is None else np.asarray(proxy_weights)[sub])
            diag.setdefault("subsample", {})["flip_rates"] = int(sub.size)
        else:
            est.fit(X_fit, fb, obs, propensity=proxy_weights)
        nuis.flip_estimator = est
        nuis.rho01, nuis.rho10 = float(est.rho01_), float(est.rho10_)
        ci = getattr(est, "ci_", None)
        nuis.rho_ci = {k: tuple(float(v) for v in ci[k]) for k in ("rho01", "rho10")} if ci else None
        weighted = est.proxy_scores_ is not None and proxy_weights is not None  # anchor methods use the weights
        diag["flip_rates"] = {"method": method, "quantile": config.quantile, "rho01": nuis.rho01,
                              "rho10": nuis.rho10, "ci": nuis.rho_ci,
                              "proxy_weighting": "propensity" if weighted else "none",
                              **(jsonable(getattr(est, "diagnostics_", None)) or {})}
        nuis.gates["flip_rates"] = flip_rate_gate(est.diagnostics_)
        if method != "gold" and gold is not None and np.isfinite(gold[obs == 1]).any():
            diag["flip_rates"]["gold_check"] = _gold_check(fb, obs, audit, config)
        diag["seconds"]["flip_rates"] = time.perf_counter() - t0

    if "pseudo_label" in needs or "pseudo_label_noisy" in needs:
        _stage(on_stage, "pseudo-labels")
        t0 = time.perf_counter()
        from causalrm.noise import clean_posterior, fit_pseudo_labels

        # One proxy f of P(r = 1 | x) serves both. "train-only" (FitConfig.imputation_fit): cross-fitted within the
        # train rows, val rows scored by a train-row proxy (noise.split_cross_fitted_proxy), so neither the trained
        # model nor the val rows' imputation ever saw a val row's feedback. "pooled": the anchor estimator's proxy
        # over train + val (same rows, weights and seed) or, with gold or fixed rates, one fitted here.
        f = None
        pl_weights = None if proxy_weights is None else 1.0 / np.asarray(proxy_weights, dtype=np.float64)
        if config.nuisance_max_rows and len(obs) > config.nuisance_max_rows:  # large log: a subsample's proxy
            fit_on = nuis.split == schema.TRAIN if config.imputation_fit == "train-only" else np.ones(len(obs), bool)
            f, n_sub = subsampled_proxy(X_fit, fb, obs, fit_on, max_rows=config.nuisance_max_rows, seed=config.seed,
                                        sample_weight=pl_weights)
            diag.setdefault("subsample", {})["pseudo_label"] = n_sub
        elif config.imputation_fit == "train-only":
            from causalrm.noise import split_cross_fitted_proxy

            f, _ = split_cross_fitted_proxy(
                X_fit, fb, obs, nuis.split == schema.TRAIN, random_state=config.seed,
                sample_weight=None if proxy_weights is None else 1.0 / np.asarray(proxy_weights, dtype=np.float64))
        else:
            f = getattr(nuis.flip_estimator, "proxy_scores_", None)
            if f is not None and len(f) != len(obs):  # the flip rates came from a subsample: refit on every row
                f = None
        if f is None:
            f = fit_pseudo_labels(X_fit, fb, obs, rho01=0.0, rho10=0.0, random_state=config.seed,
                                  propensity=proxy_weights)
        f = np.asarray(f, dtype=np.float64)
        if "pseudo_label" in needs:
            nuis.pseudo_label = clean_posterior(f, rho01=nuis.rho01, rho10=nuis.rho10)
        if "pseudo_label_noisy" in needs:
            nuis.pseudo_label_noisy = f
        q = nuis.pseudo_label if nuis.pseudo_label is not None else nuis.pseudo_label_noisy
        diag["pseudo_label"] = {"mean": float(q.mean()), "min": float(q.min()), "max": float(q.max()),
                                "weighting": "propensity" if proxy_weights is not None else "none",
                                "fit": config.imputation_fit}
        diag["seconds"]["pseudo_label"] = time.perf_counter() - t0
    return nuis


def subsampled_proxy(
    X: Any, fb: np.ndarray, obs: np.ndarray, fit_on: np.ndarray, *, max_rows: int, seed: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The DR proxy f(x) ~ P(r = 1 | x) of every row on a large log, never copying ``X`` whole
    (``FitConfig.nuisance_max_rows``): ``noise.cross_fitted_proxy`` on a seeded subsample of at most ``max_rows``
    of the ``fit_on`` rows (stratified by o; standardised with the subsample's moments), and every other row scored
    in chunks by one ``noise.ProxyModel`` (same C, calibrated inside) fitted on the subsample's observed rows: no
    row is scored by a model that saw its feedback, and with ``fit_on`` = the train rows no val feedback is used.
    Returns (f (n,), subsample size)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # many small dense fits, as noise.fit_pseudo_labels
        return _subsampled_proxy(X, fb, obs, fit_on, max_rows=max_rows, seed=seed, sample_weight=sample_weight)


def _subsampled_proxy(X, fb, obs, fit_on, *, max_rows, seed, sample_weight):
    from causalrm.noise import ProxyModel, cross_fitted_proxy
    from causalrm.rowmatrix import RowView, predict_blocks, subsample, take_rows

    cand = np.flatnonzero(fit_on)
    pick = subsample(len(cand), max_rows, seed, stratify=obs[cand])
    sub = cand if pick is None else cand[pick]
    Xs = take_rows(X, sub).astype(np.float64)
    mu, sd = Xs.mean(axis=0), Xs.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Xs = (Xs - mu) / sd
    r = np.where(obs == 1, fb, 0.0)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    f = np.empty(len(obs), dtype=np.float64)
    f[sub], _, info = cross_fitted_proxy(Xs, r[sub], obs[sub].astype(np.int8), sample_weight=None if w is None
                                         else w[sub], random_state=seed)
    keep = obs[sub] == 1
    proxy = ProxyModel(info["C"], "asymptotic", seed).fit(Xs[keep], r[sub][keep],
                                                           sample_weight=None if w is None else w[sub][keep])
    del Xs
    rest = np.setdiff1d(np.arange(len(obs)), sub, assume_unique=True)
    if rest.size:
        f[rest] = predict_blocks(lambda block: proxy.predict_proba((block - mu) / sd), RowView(X, rest))
    return np.clip(f, 0.0, 1.0), int(sub.size)


def _gold_check(fb: np.ndarray, obs: np.ndarray, audit: dict[str, Any], config: FitConfig) -> dict[str, Any]:
    """The gold-label estimate beside the one used, for logs with an audited subset: {rho01, rho10, ci, n_gold} or
    {error} when the gold rows cannot give one (e.g. a single class)."""
    from causalrm.noise import FlipRateEstimator

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = FlipRateEstimator(method="gold", n_bootstrap=config.flip_bootstrap, random_state=config.seed)
            est.fit(None, fb, obs, **audit)
    except InputError as err:
        return {"error": str(err)}
    return {"rho01": est.rho01_, "rho10": est.rho10_, "ci": {k: list(v) for k, v in est.ci_.items()},
            "n_gold": est.diagnostics_["n_gold"]}


def _stage(on_stage: StageFn | None, name: str) -> None:
    if on_stage is not None:
        on_stage(name)


def _fit_rows_X(log: pl.DataFrame, X: np.ndarray | None, rows: np.ndarray, config: FitConfig) -> np.ndarray:
    """Embeddings of the fitting rows: ``X[rows]`` (X over the whole log), ``X`` itself (X over the fitting rows
    only) or freshly embedded with ``config.embedder``."""
    if X is None:
        from causalrm.embeddings import Embedder, embed_log

        return embed_log(log[rows.tolist()], Embedder(model=config.embedder, progress=False))
    from causalrm.rowmatrix import RowView, is_lazy

    if is_lazy(X):  # memory-mapped: a lazy row view, rows gathered by index later, never copied whole
        if np.ndim(X) != 2:
            raise InputError(f"embeddings must be a 2-D matrix (rows, dims); got shape {np.shape(X)}")
        if np.shape(X)[0] == log.height:
            return RowView(X, rows)
        if np.shape(X)[0] == rows.size:
            return X if isinstance(X, RowView) else RowView(X)
        raise InputError(f"embeddings have {np.shape(X)[0]} rows but the log has {log.height}; embed this log")
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"embeddings must be a 2-D matrix (rows, dims); got shape {X.shape}")
    if X.shape[0] == log.height:
        return np.ascontiguousarray(X[rows], dtype=np.float32)
    if X.shape[0] == rows.size:
        return np.ascontiguousarray(X, dtype=np.float32)
    raise InputError(f"embeddings have {X.shape[0]} rows but the log has {log.height}; embed this log")


# --------------------------------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """A fitted reward model: ``config``, ``backbone`` (trained, best epoch), ``history`` (:class:`TrainHistory`),
    ``nuisances`` (:class:`Nuisances`), ``split`` (role of each row of the fitted log), ``seconds`` and, when
    ``select_head`` chose among heads, ``selection`` (the candidates' best validation estimates; ``config`` is the
    chosen candidate's, so refitting it reproduces the model). ``learned``: the learning gate (``causalrm.gates``);
    ``val_logits``: the model's logits on the val rows (what the gate and ``auto`` read); ``choice``: what
    ``method="auto"`` chose and why (``causalrm.selection``), with ``config`` the chosen method's, and ``candidates``
    every candidate's result (the naive baseline included)."""

    config: FitConfig
    backbone: Backbone
    history: TrainHistory
    nuisances: Nuisances
    split: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    learned: Gate | None = None
    val_logits: np.ndarray | None = None
    choice: dict[str, Any] | None = None
    candidates: dict[str, FitResult] | None = None

    def score(self, log: pl.DataFrame, X: np.ndarray | None = None) -> np.ndarray:
        """Reward logits z (float32, one per row of ``log``); ``X`` None = embed with ``config.embedder``."""
        return score_with(self.backbone, self.config, log, X)

    def diagnostics(self) -> dict[str, Any]:
        return jsonable({"nuisances": self.nuisances.to_dict(), "history": self.history.to_dict(),
                         "seconds": self.seconds, "selection": self.selection,
                         "learned": None if self.learned is None else self.learned.passed,
                         "learning": self.learned, "choice": self.choice})


def score_with(backbone: Backbone, config: FitConfig, log: pl.DataFrame, X: np.ndarray | None) -> np.ndarray:
    """Reward logits of every row of ``log`` under ``backbone`` (embedding with ``config.embedder`` if needed)."""
    if X is None and backbone.needs_embeddings:
        from causalrm.embeddings import Embedder, embed_log

        X = embed_log(log, Embedder(model=config.embedder, progress=False))
    feats = backbone.featurize(log, X)
    return predict_logits(backbone, feats, batch_size=config.eval_batch_size, device=config.device,
                          autocast_dtype=config.autocast_dtype)


def loss_inputs(
    log: pl.DataFrame, nuis: Nuisances, method: str | tuple[str, ...], mask: np.ndarray
) -> Any:
    """``LossInputs`` for the fitting rows selected by ``mask`` (a boolean array over ``nuis.rows``), holding what
    ``method`` (one name or several, e.g. the training and the validation estimator) needs."""
    from causalrm.losses import LossInputs

    methods = (method,) if isinstance(method, str) else tuple(method)
    rows = nuis.rows[mask]
    obs, fb = _observed_feedback(log, rows)
    needs = needs_of(methods)
    if "pseudo_label" in needs and "pseudo_label_noisy" in needs:
        raise InputError("dr and causalrm-dr impute different pseudo-labels; do not combine them as train and val "
                         "estimators")
    true_label = None
    if "true_label" in needs:
        true_label = _column(log, schema.TRUE_LABEL, rows)
        if true_label is None or np.isnan(true_label).any():
            raise InputError(f"method {'/'.join(methods)!r} needs 'true_label' on every train/val row")

    def pick(arr: np.ndarray | None, what: str) -> np.ndarray | None:
        if what not in needs:
            return None
        if arr is None:
            raise InputError(f"method {'/'.join(methods)!r} needs {what.replace('_', ' ')} but it was not fitted")
        return arr[mask]

    q = pick(nuis.pseudo_label_noisy, "pseudo_label_noisy") if "pseudo_label_noisy" in needs else \
        pick(nuis.pseudo_label, "pseudo_label")
    propensity = pick(nuis.propensity_clipped, "propensity")
    if any(registry.get(m).clean_labels and registry.get(m).weighted for m in methods):  # oracle-observed
        propensity = _column(log, schema.TRUE_PROPENSITY, rows)
        if propensity is None or np.isnan(propensity).any():
            raise InputError(f"method {'/'.join(methods)!r} needs 'true_propensity' on every train/val row "
                             "(simulated logs only)")
    return LossInputs(
        feedback=fb.astype(np.float32), observed=obs.astype(np.float32),
        propensity=propensity, pseudo_label=q, true_label=true_label,
    )


def fit_log(
    log: pl.DataFrame,
    X: np.ndarray | None,
    config: FitConfig | None = None,
    *,
    progress: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    nuisances: Nuisances | None = None,
    on_stage: StageFn | None = None,
) -> FitResult:
    """Fit ``config.method`` on ``log`` (module docstring): nuisances once on train + val, training on train,
    early stopping on the method's estimate on val. Test rows are never read.

    ``X``: embeddings aligned with the log's rows (or with its train + val rows only), or None to embed with
    ``config.embedder``. ``nuisances``: reuse a :func:`fit_nuisances` result (e.g. one per seed shared by several
    methods in the bench; it must come from the same log and split). ``progress(epoch, max_epochs, train_loss,
    val_estimate)``, ``should_stop()``: see :func:`causalrm.trainer.train`. ``on_stage(name)`` announces
    ``"propensity"``, ``"flip rates"``, ``"pseudo-labels"``, ``"training"``.
    """
    config = (config or FitConfig()).validate()
    if not isinstance(log, pl.DataFrame):
        raise InputError(f"log must be a polars DataFrame, got {type(log).__name__}")
    with cpu_threads(config.num_threads):
        if config.method == AUTO:
            from causalrm.selection import fit_auto

            return fit_auto(log, X, config, progress=progress, should_stop=should_stop, nuisances=nuisances,
                            on_stage=on_stage)
        if not config.select_head:
            return _fit_log(log, X, config, progress=progress, should_stop=should_stop, nuisances=nuisances,
                            on_stage=on_stage)
        candidates = [config.replace(select_head=False), config.replace(select_head=False, hidden=(),
                                                                         lr=LINEAR_HEAD_LR)]
        results: list[FitResult] = []
        for candidate in candidates:
            results.append(_fit_log(log, X, candidate, progress=progress, should_stop=should_stop,
                                    nuisances=nuisances, on_stage=on_stage))
            nuisances = results[-1].nuisances
            if results[-1].history.stop_reason == "cancelled":
                break
        best = min(range(len(results)), key=lambda i: results[i].history.best_val_estimate)
        chosen = results[best]
        chosen.seconds = {**chosen.seconds, "total": sum(r.seconds["total"] for r in results)}
        chosen.selection = {
            "criterion": f"lowest best {chosen.history.val_method} estimate on the val split",
            "chosen": best,
            "candidates": [{"hidden": list(r.config.hidden), "lr": r.config.lr,
                            "best_val_estimate": r.history.best_val_estimate, "best_epoch": r.history.best_epoch}
                           for r in results],
        }
        return chosen


def _fit_log(log, X, config, *, progress, should_stop, nuisances, on_stage) -> FitResult:
    t0 = time.perf_counter()
    if nuisances is None:
        split = resolve_split(log, val_fraction=config.val_fraction, seed=config.seed)
    else:
        split = np.full(log.height, schema.TEST, dtype=object)
        split[nuisances.rows] = nuisances.split
    rows = np.flatnonzero(split != schema.TEST)
    backbone_cls = get_backbone_class(config.backbone)
    methods = config.methods_needed()
    needs_X = backbone_cls.needs_embeddings or bool(needs_of(methods) - {"true_label"})
    X_fit = _fit_rows_X(log, X, rows, config) if needs_X else None
    if nuisances is None:
        nuisances = fit_nuisances(log, X_fit, config, methods=methods, split=split, on_stage=on_stage)
    else:
        if nuisances.rows.shape != rows.shape or not np.array_equal(nuisances.rows, rows):
            raise InputError("the nuisances were fitted on other rows; refit them for this log")
        missing = needs_of(methods) - {"true_label"} - nuisances.provides()
        if missing:
            raise InputError(f"the given nuisances lack {sorted(missing)} needed by method {config.method!r}")
    t_nuis = time.perf_counter() - t0

    noise_aware = any(registry.get(m).noise_aware for m in methods)
    check_flip_gate(nuisances, config, noise_aware=noise_aware)
    _stage(on_stage, "training")
    is_train = nuisances.split == schema.TRAIN
    is_val = nuisances.split == schema.VAL
    tcfg = config.train_config(rho01=nuisances.rho01 if noise_aware else 0.0,
                               rho10=nuisances.rho10 if noise_aware else 0.0)
    train_in = loss_inputs(log, nuisances, config.method, is_train)
    val_in = loss_inputs(log, nuisances, (config.method, config.validation_method), is_val)
    backbone = build_backbone(config.backbone, X_fit, config.backbone_kwargs(), seed=config.seed)
    train_rows, val_rows = rows[is_train], rows[is_val]
    train_feats = backbone.featurize(log[train_rows.tolist()], X_fit[is_train] if X_fit is not None else None)
    val_feats = backbone.featurize(log[val_rows.tolist()], X_fit[is_val] if X_fit is not None else None)
    t1 = time.perf_counter()
    history = train(backbone, train_feats, train_in, val_feats, val_in, tcfg, progress=progress,
                    should_stop=should_stop)
    val_logits = predict_logits(backbone, val_feats, batch_size=config.eval_batch_size, device=config.device,
                                autocast_dtype=config.autocast_dtype)
    loss_kw = {"rho01": tcfg.rho01, "rho10": tcfg.rho10, "base": tcfg.base_loss, "nonneg": tcfg.nonneg}
    constant = best_constant(config.validation_method, loss_inputs(log, nuisances, config.validation_method,
                                                                   is_train), **loss_kw)
    learned = learning_gate(config.validation_method, val_logits, val_in, constant, seed=config.seed, **loss_kw)
    seconds = {"nuisances": t_nuis, "training": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    return FitResult(config=config, backbone=backbone, history=history, nuisances=nuisances, split=split,
                     seconds=seconds, learned=learned, val_logits=val_logits)


def check_flip_gate(nuisances: Nuisances, config: FitConfig, *, noise_aware: bool) -> None:
    """Refuse a noise-aware fit whose flip-rate gate failed, unless ``config.force_noise_correction``."""
    gate = nuisances.gates.get("flip_rates")
    if noise_aware and gate is not None and not gate.passed and not config.force_noise_correction:
        raise InputError(f"{gate.verdict}; {REMEDIES}")


def config_json(config: FitConfig) -> str:
    return json.dumps(config.to_dict(), indent=2)
