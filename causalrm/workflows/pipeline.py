"""``fit_log``: fit one reward model on a log; ``fit_one``: the kernel that trains one estimator on fitted nuisances.

``fit_log`` is the one orchestration (``causalrm.workflows.orchestrate.fit_methods``, which the CLI, the app, the bench and the
notebooks run) with one method; every model that orchestration trains is a ``fit_one``.

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
   registry, ``causalrm.estimators.methods``).
3. **Training** (:func:`causalrm.training.trainer.train`): the backbone on the train rows, early-stopped on the *same*
   estimator evaluated on the val rows (never test rows, never clean labels, except ``oracle``, which is the
   clean-label reference by definition).

The result, :class:`FitResult`, holds the config, the trained backbone, the training history and the nuisance
diagnostics, and scores any log with ``score(log, X)``.

Modules: :mod:`causalrm.config` (``FitConfig`` and its option constants), :mod:`causalrm.data.splits` (``resolve_split``,
``group_split``), :mod:`causalrm.nuisances.fit` (``Nuisances``, ``fit_nuisances``, ``loss_inputs``); this one: the fit
itself (``fit_log``, ``fit_one``, ``FitResult``, ``score_with``). Every name these offered from here before is still importable
from ``causalrm.workflows.pipeline`` (``X as X``: a re-export).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm.atomic_io import jsonable
from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.data.pairwise import is_pair_log, split_features
from causalrm.devices import cpu_threads
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.estimators.methods import AUTO
from causalrm.nuisances.container import Nuisances, StageFn, _stage, loss_inputs
from causalrm.nuisances.gates import Gate, best_constant, learning_gate, remedies, vote_gap_gate
from causalrm.nuisances.signal import _fit_rows_X
from causalrm.training.backbones.base import Backbone, build_backbone, get_backbone_class
from causalrm.training.pairs import PairModel, featurize_pairs
from causalrm.training.scoring import predict_logits
from causalrm.training.trainer import TrainHistory, train


# --------------------------------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """A fitted reward model: ``config``, ``backbone`` (trained, best epoch), ``history`` (:class:`TrainHistory`),
    ``nuisances`` (:class:`Nuisances`), ``split`` (role of each row of the fitted log), ``seconds`` and, when
    ``select_head`` chose among heads, ``selection`` (the candidates' best validation estimates; ``config`` is the
    chosen candidate's, so refitting it reproduces the model). ``learned``: the learning gate (``causalrm.nuisances.gates``);
    ``val_logits``: the model's logits on the val rows (what the gate and ``auto`` read); ``choice``: what
    ``method="auto"`` chose and why (``causalrm.workflows.selection``), with ``config`` the chosen method's, and ``candidates``
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
    """Reward logits of every row of ``log`` under ``backbone`` (embedding with ``config.embedder`` if needed); on an
    A/B log (``causalrm.data.pairwise``) each pair's Bradley-Terry logit z_a - z_b (``X``: its pair features)."""
    if is_pair_log(log):
        if X is None and backbone.needs_embeddings:
            X = _fit_rows_X(log, None, np.arange(log.height), config)
        return predict_logits(PairModel(backbone), featurize_pairs(backbone, log, X),
                              batch_size=config.eval_batch_size, device=config.device,
                              autocast_dtype=config.autocast_dtype)
    if X is None and backbone.needs_embeddings:
        from causalrm.embeddings.embedder import Embedder, embed_log

        X = embed_log(log, Embedder(model=config.embedder, progress=False))
    feats = backbone.featurize(log, X)
    return predict_logits(backbone, feats, batch_size=config.eval_batch_size, device=config.device,
                          autocast_dtype=config.autocast_dtype)


def fit_one(log: pl.DataFrame, X: np.ndarray | None, config: FitConfig, nuisances: Nuisances, *,
            progress: Callable[[int, int, float, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None, on_stage: StageFn | None = None) -> FitResult:
    """Train one estimator (``config.method``, not ``auto``; one head, not ``select_head``) on fitted ``nuisances``
    of ``log``: the kernel ``causalrm.workflows.orchestrate.fit_methods`` runs for every configuration it fits."""
    if config.method == AUTO or config.select_head or (
            registry.get(config.method).head == "ranking" and config.stop_on != "ranking"):
        raise InputError("fit_one trains one estimator and one head; fit auto, select_head or a method on the "
                         "ranking head with fit_log")
    with cpu_threads(config.num_threads):
        return _fit_one(log, X, config, nuisances, progress=progress, should_stop=should_stop, on_stage=on_stage)


def _fit_one(log, X, config, nuisances, *, progress, should_stop, on_stage) -> FitResult:
    t0 = time.perf_counter()
    split = np.full(log.height, schema.TEST, dtype=object)
    split[nuisances.rows] = nuisances.split
    rows = nuisances.rows
    backbone_cls = get_backbone_class(config.backbone)
    methods = config.methods_needed()
    missing = registry.lacking(methods, nuisances.provides())
    if missing:
        raise InputError(f"the given nuisances lack {sorted(missing)} needed by method {config.method!r}")
    pairs = is_pair_log(log)  # an A/B log: the backbone scores responses, the loss reads z_a - z_b per pair
    if not all(registry.applies(m, pairs=pairs) for m in methods):
        form, kind = ("pairwise", "an A/B log") if pairs else ("pointwise", "this log (it reads a pair's reward gap)")
        raise InputError(f"method {config.method!r} has no {form} form for {kind}; choose one of "
                         f"{', '.join(registry.where(**{form: True}))}")
    needs_X = backbone_cls.needs_embeddings or bool(registry.lacking(methods, set()))
    X_fit = _fit_rows_X(log, X, rows, config) if needs_X else None
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
    X_model = split_features(X_fit)[0] if pairs and X_fit is not None else X_fit
    backbone = build_backbone(config.backbone, X_model, config.backbone_kwargs(), seed=config.seed)
    model = PairModel(backbone) if pairs else backbone
    featurize = (lambda lg, x: featurize_pairs(backbone, lg, x)) if pairs else backbone.featurize
    train_rows, val_rows = rows[is_train], rows[is_val]
    train_feats = featurize(log[train_rows.tolist()], X_fit[is_train] if X_fit is not None else None)
    val_feats = featurize(log[val_rows.tolist()], X_fit[is_val] if X_fit is not None else None)
    t1 = time.perf_counter()
    criterion = ranking_criterion(val_in, nuisances, is_val) if tcfg.stop_on == "ranking" else None
    history = train(model, train_feats, train_in, val_feats, val_in, tcfg, progress=progress,
                    should_stop=should_stop, val_criterion=criterion)
    backbone.after_training()
    val_logits = predict_logits(model, val_feats, batch_size=config.eval_batch_size, device=config.device,
                                autocast_dtype=config.autocast_dtype)
    loss_kw = {"rho01": tcfg.rho01, "rho10": tcfg.rho10, "base": tcfg.base_loss, "nonneg": tcfg.nonneg}
    constant = best_constant(config.validation_method, loss_inputs(log, nuisances, config.validation_method,
                                                                   is_train), **loss_kw)
    learned = learning_gate(config.validation_method, val_logits, val_in, constant, seed=config.seed, **loss_kw)
    if registry.get(config.method).models_votes:
        learned = vote_gap_gate(learned, val_logits, val_in.observed)
    seconds = {"nuisances": t_nuis, "training": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    return FitResult(config=config, backbone=backbone, history=history, nuisances=nuisances, split=split,
                     seconds=seconds, learned=learned, val_logits=val_logits)


def ranking_criterion(val_in: Any, nuisances: Nuisances, is_val: np.ndarray) -> Callable[[np.ndarray], float]:
    """What ``stop_on="ranking"`` watches: the AUROC of the val logits against the noisy feedback on the observed
    val rows, weighted by 1 / p (the clipped propensity where one is fitted, else 1). Under class-conditional noise
    the noisy AUROC is an increasing affine function of the clean one (Menon et al. 2015;
    ``causalrm.workflows.selection``, step 4), and the weights make it the population's rather than the observed
    rows'. No clean label is read."""
    from causalrm.evaluation.metrics import auroc

    observed = np.asarray(val_in.observed, dtype=np.float64) == 1
    r = np.asarray(val_in.feedback, dtype=np.float64)[observed]
    p = nuisances.propensity_clipped
    w = np.ones(r.size) if p is None else 1.0 / np.asarray(p, dtype=np.float64)[is_val][observed]
    return lambda z: auroc(r, np.asarray(z, dtype=np.float64)[observed], w)


def check_flip_gate(nuisances: Nuisances, config: FitConfig, *, noise_aware: bool) -> None:
    """Refuse a noise-aware fit whose flip-rate gate failed, unless ``config.force_noise_correction``."""
    gate = nuisances.gates.get("flip_rates")
    if noise_aware and gate is not None and not gate.passed and not config.force_noise_correction:
        raise InputError(f"{gate.verdict}; {remedies(gate)}")
