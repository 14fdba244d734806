"""The training options (``TrainOptions``: method, lr, batch size, epochs, patience, ...), declared once with
``option(...)`` and shared by :class:`~causalrm.config.FitConfig`, and ``TrainConfig``: what
:func:`~causalrm.training.trainer.train` reads."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from causalrm.errors import InputError
from causalrm.estimators.methods import DEFAULT_METHOD, names
from causalrm.options import option
from causalrm.training.scoring import _AUTOCAST


#: what early stopping can watch (``TrainOptions.stop_on``)
STOP_ON = ("estimate", "ranking")


def _method_names() -> tuple[str, ...]:
    return names(auto=True)


@dataclass
class TrainOptions:
    """The optimisation settings a user chooses, declared once: :class:`TrainConfig` and ``causalrm.config.FitConfig``
    both extend it (defaults: the paper's head training: Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30).

    method: estimator name of ``causalrm.estimators.losses.METHODS`` (training loss and, by default, validation estimate), or
    ``"auto"``, the registry's default (``causalrm.estimators.methods.DEFAULT_METHOD``): fit naive and the debiased candidates
    on shared nuisances and keep one on validation evidence (``causalrm.workflows.selection``); :func:`train` itself takes an
    estimator, so a :class:`TrainConfig` names one.
    val_method: the estimator evaluated on the validation rows for early stopping (``None`` = ``method``).
    base_loss: ``"mse"`` (Brier score on sigma(z), bounded: the default) or ``"bce"`` (with the non-negative guard).
    lr, weight_decay: Adam; batch_size: rows per optimiser step; max_epochs; patience: epochs without a validation
    improvement larger than ``min_delta`` before stopping (``None`` or 0 = never stop early).
    stop_on: what early stopping watches on the val rows: ``"estimate"`` (``val_method``'s debiased estimate, lower is
    better) or ``"ranking"`` (the criterion the caller hands :func:`~causalrm.training.trainer.train`, higher is
    better: the pipeline's is the AUROC of z against the noisy val feedback, weighted by 1 / p where a propensity is
    fitted; docs/METHOD.md, "Ranking under noise").
    grad_accum_steps: split each batch into this many micro-batches (same effective batch; for big backbones).
    max_batch_tokens: with token features (``Features.lengths``, the transformer backbones), split each batch
    further so that no micro-batch holds more than this many padded tokens (rows x longest row); gradients
    accumulate over them, so ``batch_size`` sets the optimiser step and this bounds the activation memory.
    autocast_dtype: ``None``, ``"bfloat16"`` or ``"float16"`` (mixed precision forward; the loss stays float32).
    max_grad_norm: clip the gradient norm (``None`` = off). eval_batch_size: rows per no-grad pass.
    device: ``"auto"`` (cuda when present), ``"cpu"``, ``"cuda"``. seed: batch order (and dropout).
    num_threads: CPU threads torch may use while training (``None`` = torch's setting). On a shared or busy CPU,
    1 is often many times faster than the default (threads spin waiting for each other).
    """

    method: str = option(DEFAULT_METHOD, help="estimator: auto (fit naive and the debiased candidates, keep one on "
                                              "validation evidence) or one of {choices}", choices=_method_names)
    val_method: str | None = option(None, help="estimator evaluated on the val split for early stopping (default: "
                                               "--method itself)")
    base_loss: str = option("mse", help="pointwise loss on sigma(z): mse (Brier, bounded) or bce (non-negative "
                                        "guard)", choices=("mse", "bce"))
    lr: float = option(5e-4, help="Adam learning rate")
    weight_decay: float = option(0.0, help="Adam weight decay")
    batch_size: int = option(512, help="rows per optimiser step")
    max_epochs: int = option(600, help="maximum epochs", flag="--epochs")
    patience: int | None = option(30, help="stop after this many epochs without a better validation estimate "
                                           "(0 = never)", none="0")
    min_delta: float = option(0.0, help="smallest validation improvement that resets the patience")
    stop_on: str = option("estimate", help="what early stopping watches on the val split: estimate (the debiased "
                                           "validation estimate) or ranking (the AUROC of z against the noisy val "
                                           "feedback, weighted by 1 / p where a propensity is fitted)",
                          choices=STOP_ON)
    grad_accum_steps: int = option(1, help="micro-batches per optimiser step", flag="--grad-accum")
    max_batch_tokens: int | None = option(4096, help="padded tokens per micro-batch (transformer backbones)")
    autocast_dtype: str | None = option(None, help="mixed-precision forward: bfloat16 or float16 (default off)")
    max_grad_norm: float | None = option(None, help="clip the gradient norm (default off)")
    eval_batch_size: int = option(8192, help="rows per no-grad pass")
    device: str = option("auto", help="auto (cuda when present), cpu or cuda")
    seed: int = option(0, help="random seed")
    num_threads: int | None = option(None, help="CPU threads for torch/BLAS (default: library default; 1 is "
                                                "fastest on a busy machine)", flag="--threads")


@dataclass
class TrainConfig(TrainOptions):
    """Settings of :func:`train`: the :class:`TrainOptions` plus what the pipeline derives or fixes.

    rho01, rho10: flip rates handed to the noise-aware estimators (estimated or fixed by the pipeline).
    nonneg: the class-wise non-negative guard of ``losses.estimate`` (``None`` = on for "bce", off for "mse";
    ``False`` with "bce" is the unguarded surrogate, for demonstrations only).
    sort_by_length: when ``Features.lengths`` exists, group rows of similar length into batches (order of batches
    still shuffled).
    """

    rho01: float = 0.0
    rho10: float = 0.0
    nonneg: bool | None = None
    sort_by_length: bool = True

    @classmethod
    def from_any(cls, config: Any, **overrides: Any) -> TrainConfig:
        """A ``TrainConfig`` from itself, a dict, or any object with (some of) these attribute names."""
        if isinstance(config, cls) and not overrides:
            return config
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(config, dict):
            values = {k: v for k, v in config.items() if k in names}
        else:
            values = {k: getattr(config, k) for k in names if hasattr(config, k)}
        values.update(overrides)
        for key in ("rho01", "rho10"):
            if values.get(key) is None:
                values.pop(key, None)
        return cls(**values)

    def validate(self) -> None:
        if self.batch_size < 1 or self.max_epochs < 0 or self.grad_accum_steps < 1 or self.eval_batch_size < 1:
            raise InputError("batch_size, grad_accum_steps and eval_batch_size must be >= 1, max_epochs >= 0")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise InputError(f"max_batch_tokens must be >= 1 (or None for no limit), got {self.max_batch_tokens}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"lr must be a positive number, got {self.lr}")
        if self.patience is not None and self.patience < 0:
            raise InputError(f"patience must be >= 0, got {self.patience}")
        if self.stop_on not in STOP_ON:
            raise InputError(f"stop_on {self.stop_on!r}: use one of {', '.join(STOP_ON)}")
        if self.autocast_dtype is not None and self.autocast_dtype not in _AUTOCAST:
            raise InputError(f"autocast_dtype {self.autocast_dtype!r}: use bfloat16 or float16")
