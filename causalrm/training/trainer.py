"""Backbone-agnostic training loop with early stopping on the debiased validation estimate.

``train`` minimises ``losses.estimate(method, z, inputs)`` over minibatches of the training rows and, after every
epoch, evaluates *the same estimator* on the observational validation split in one no-grad pass. That value is an
(approximately) unbiased estimate of the ideal validation loss ``(1/N) Σ ℓ(z_i, r*_i)`` when the nuisances are right
(METHOD.md, "Honest selection"), so it is what early stopping watches: never the training loss (which an unbounded
surrogate can drive to −∞, METHOD.md pitfall 1), never test rows or clean labels. After patience runs out the weights
of the best epoch are restored.

Speed: the features stay as tensors on the device (``Features.batch`` indexes them), the per-row loss inputs are
packed into one ``(n, k)`` device tensor indexed once per batch, batches come from ``torch.randperm`` with a seeded
``torch.Generator`` (no DataLoader), and nuisances are fitted before the loop (``causalrm.workflows.pipeline``). Seeded and
bit-for-bit deterministic on CPU. Open for larger backbones: ``grad_accum_steps``, ``autocast_dtype``,
length-sorted batches (``Features.lengths``) cut into micro-batches of at most ``max_batch_tokens`` padded tokens
(bounded activation memory whatever the batch size), ``Backbone.trainable_parameters()``, ``max_grad_norm``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from causalrm import distributed
from causalrm.atomic_io import jsonable
from causalrm.devices import cpu_threads, resolve_device
from causalrm.errors import InputError
from causalrm.training.backbones.base import Backbone, Features
from causalrm.training.imputer import _forward_imputer, dr_imputation_loss
from causalrm.training.options import TrainConfig
from causalrm.training.scoring import _AUTOCAST, _autocast, _forward_all

ProgressFn = Callable[[int, int, float, float], None]


@dataclass
class TrainHistory:
    """Per-epoch record of one training run (epochs are 1-based; epoch ``best_epoch``'s weights are kept).

    ``val_estimate[e-1]`` is ``val_method``'s debiased estimate on the validation split after epoch ``e``;
    ``val_ranking[e-1]`` the ranking criterion there when early stopping watches it (``stop_on="ranking"``; empty
    otherwise), ``best_val_ranking`` its value at the best epoch (``best_val_estimate`` is then the estimate at that
    epoch); ``stop_reason``: ``"patience"``, ``"max_epochs"``, ``"cancelled"`` or ``"diverged"`` (non-finite training loss).
    """

    method: str
    val_method: str = ""
    train_loss: list[float] = field(default_factory=list)
    val_estimate: list[float] = field(default_factory=list)
    val_ranking: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_estimate: float = float("inf")
    best_val_ranking: float = float("nan")
    stop_reason: str = "max_epochs"
    seconds: float = 0.0
    device: str = "cpu"
    n_train: int = 0
    n_val: int = 0

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["epochs"] = self.epochs
        return jsonable(out)


# --------------------------------------------------------------------------------------------------------------------
# loss inputs on the device
# --------------------------------------------------------------------------------------------------------------------
class _PackedInputs:
    """A ``LossInputs`` as one ``(n, k)`` float32 device tensor; ``take(idx)`` rebuilds a ``LossInputs`` of views."""

    def __init__(self, inputs: Any, device: torch.device) -> None:
        self.cls = type(inputs)
        self.names: list[str] = []
        self.static: dict[str, Any] = {}
        cols = []
        n = None
        for f in dataclasses.fields(inputs):
            value = getattr(inputs, f.name)
            if value is None:
                self.static[f.name] = None
                continue
            if isinstance(value, (torch.Tensor, np.ndarray)) and np.ndim(value) == 1:
                t = torch.as_tensor(np.asarray(value) if isinstance(value, np.ndarray) else value)
                t = t.to(device=device, dtype=torch.float32)
                if n is None:
                    n = t.shape[0]
                elif t.shape[0] != n:
                    raise InputError(f"loss input {f.name!r} has {t.shape[0]} rows, expected {n}")
                self.names.append(f.name)
                cols.append(t)
            else:
                self.static[f.name] = value
        if not cols:
            raise InputError("loss inputs hold no per-row arrays")
        self.n = int(n)
        self.packed = torch.stack(cols, dim=1).contiguous()
        if not torch.isfinite(self.packed).all():
            bad = [name for name, c in zip(self.names, cols) if not torch.isfinite(c).all()]
            raise InputError(f"loss inputs {bad} contain NaN or infinite values; check the log and the nuisances")

    def take(self, idx: torch.Tensor | None) -> Any:
        rows = self.packed if idx is None else self.packed.index_select(0, idx)
        values = dict(self.static)
        for j, name in enumerate(self.names):
            values[name] = rows[:, j]
        return self.cls(**values)


# --------------------------------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------------------------------
def epoch_batches(
    n: int, batch_size: int, generator: torch.Generator, lengths: np.ndarray | None = None, *,
    sort_by_length: bool = False, pool: int = 50,
) -> list[torch.Tensor]:
    """Index batches covering ``0..n-1`` once, in a seeded random order (``torch.randperm`` on ``generator``).

    With ``lengths`` and ``sort_by_length``: the permutation is cut into pools of ``pool`` batches, each pool sorted
    by length (similar lengths share a batch, less padding), and the resulting batches are shuffled again.
    """
    perm = torch.randperm(n, generator=generator)
    if lengths is None or not sort_by_length:
        return list(torch.split(perm, batch_size))
    lens = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
    batches: list[torch.Tensor] = []
    chunk = batch_size * pool
    for start in range(0, n, chunk):
        part = perm[start:start + chunk]
        part = part[torch.argsort(lens[part], stable=True)]
        batches.extend(torch.split(part, batch_size))
    order = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in order.tolist()]


def micro_batches(
    idx: torch.Tensor, *, grad_accum_steps: int = 1, lengths: np.ndarray | None = None,
    max_batch_tokens: int | None = None,
) -> list[torch.Tensor]:
    """The micro-batches of one batch ``idx``: ``grad_accum_steps`` equal parts, each split further (longest rows
    first, greedily) so that ``len(part) * max(lengths[part]) <= max_batch_tokens``; a part holds at least one row.

    Without ``lengths`` or ``max_batch_tokens`` only the equal split applies. Every row lands in exactly one part.
    """
    parts = [p for p in torch.tensor_split(idx, grad_accum_steps) if p.numel()] if grad_accum_steps > 1 else [idx]
    if lengths is None or not max_batch_tokens:
        return parts
    out: list[torch.Tensor] = []
    for part in parts:
        lens = torch.as_tensor(np.asarray(lengths)[part.numpy()], dtype=torch.long)
        order = torch.argsort(lens, descending=True, stable=True)
        part, lens = part[order], lens[order]
        start = 0
        while start < part.numel():
            width = int(lens[start])  # the longest row of this micro-batch (rows sorted longest first)
            rows = max(1, int(max_batch_tokens) // max(width, 1))
            out.append(part[start:start + rows])
            start += rows
    return out


# --------------------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------------------
def train(
    backbone: Backbone,
    train_features: Features,
    train_inputs: Any,
    val_features: Features,
    val_inputs: Any,
    config: Any,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    val_criterion: Callable[[np.ndarray], float] | None = None,
) -> TrainHistory:
    """Train ``backbone`` in place with ``config.method``'s estimator; early-stop on its validation estimate, or on
    ``val_criterion`` where ``config.stop_on`` is ``"ranking"``.

    Parameters: the training rows' features and ``LossInputs`` (``causalrm.estimators.losses``), the validation rows' features
    and ``LossInputs`` (observational split: noisy feedback, the same nuisances), and ``config`` (a
    :class:`TrainConfig` or any object with those attribute names, e.g. ``causalrm.config.FitConfig``).
    ``progress(epoch, max_epochs, train_loss, val_estimate)`` is called after every epoch; ``should_stop()`` is polled
    every batch and ends training (best weights restored, ``stop_reason="cancelled"``). ``val_criterion(z)``: a
    function of the validation rows' logits (float64, in their order), higher is better, that early stopping watches
    with ``stop_on="ranking"`` (required then, unused otherwise).

    Returns a :class:`TrainHistory`; the backbone ends on the best epoch's weights (lowest validation estimate, or
    highest criterion).
    """
    from causalrm.estimators import losses

    cfg = TrainConfig.from_any(config)
    cfg.validate()
    for m in (cfg.method, cfg.val_method):
        if m is not None and m not in losses.METHODS:
            raise InputError(f"unknown method {m!r}; choose one of: {', '.join(losses.METHODS)}")
    from causalrm.estimators.methods import get as get_spec
    from causalrm.estimators.methods import validation_method

    val_method = validation_method(cfg.method, cfg.val_method)
    ranking = cfg.stop_on == "ranking"
    if ranking and val_criterion is None:
        raise InputError("stop_on='ranking' watches a criterion of the val logits; pass val_criterion")
    if len(train_features) == 0:
        raise InputError("no training rows; the log needs rows with split 'train'")
    if len(val_features) == 0:
        raise InputError("no validation rows; the log needs rows with split 'val' for early stopping")
    if cfg.num_threads:
        with cpu_threads(cfg.num_threads):
            return train(backbone, train_features, train_inputs, val_features, val_inputs,
                         dataclasses.replace(cfg, num_threads=None), progress=progress, should_stop=should_stop,
                         val_criterion=val_criterion)
    device = resolve_device(distributed.train_device(cfg.device))
    backbone.to(device)
    train_in = _PackedInputs(train_inputs, device)
    val_in = _PackedInputs(val_inputs, device)
    parallel = distributed.active()  # data-parallel under accelerate launch / torchrun (causalrm.distributed)
    if parallel:  # every rank trains on rank 0's nuisances
        train_in.packed = distributed.broadcast(train_in.packed)
        val_in.packed = distributed.broadcast(val_in.packed)
    if train_in.n != len(train_features) or val_in.n != len(val_features):
        raise InputError(
            f"features and loss inputs disagree: train {len(train_features)} vs {train_in.n} rows, "
            f"val {len(val_features)} vs {val_in.n} rows"
        )
    autocast = _AUTOCAST.get(cfg.autocast_dtype or "")
    loss_kw = {"rho01": float(cfg.rho01), "rho10": float(cfg.rho10), "base": cfg.base_loss, "nonneg": cfg.nonneg}
    if parallel:
        loss_kw["rho01"], loss_kw["rho10"] = distributed.broadcast_object((loss_kw["rho01"], loss_kw["rho10"]))
    val_all = val_in.take(None)
    # DR-JL / MRDR (causalrm.estimators.dr): an imputation model of q trained alongside, one step per batch
    learning = get_spec(cfg.method).imputation_learning
    imputer = imp_optimizer = None
    if learning is not None:
        from causalrm.estimators.dr import ImputationModel

        imputer = ImputationModel(backbone).to(device)
        imp_optimizer = torch.optim.Adam(imputer.parameters_to_train(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    surrogate = get_spec(cfg.method).correction == "surrogate"

    def val_estimate() -> tuple[float, torch.Tensor]:
        """The validation estimate and the val logits it was taken on."""
        if parallel:  # each rank forwards a slice of the val rows; the estimate is taken on all of them
            start, stop = distributed.row_slice(val_in.n)
            z = _forward_all(backbone, val_features, device, cfg.eval_batch_size, autocast,
                             rows=torch.arange(start, stop))
            z = distributed.gather_rows(z, distributed.row_sizes(val_in.n), grad=False)
        else:
            z = _forward_all(backbone, val_features, device, cfg.eval_batch_size, autocast)
        value = float("inf")
        if bool(torch.isfinite(z).all()):
            inputs = val_all
            if imputer is not None and get_spec(val_method).imputation_learning is not None:
                with torch.no_grad():
                    q = _forward_imputer(imputer, val_features, val_all.pseudo_label, device, cfg.eval_batch_size)
                inputs = dataclasses.replace(val_all, pseudo_label=q)
            with torch.no_grad():
                value = float(losses.estimate(val_method, z, inputs, **loss_kw))
        if parallel:  # rank 0's value everywhere: every rank stops at the same epoch and keeps the same weights
            value = float(distributed.broadcast(torch.tensor([value], dtype=torch.float64, device=device))[0])
        return value, z

    def criterion(z: torch.Tensor) -> float:
        if not bool(torch.isfinite(z).all()):
            return float("nan")
        value = float(val_criterion(z.detach().double().cpu().numpy()))
        if parallel:
            value = float(distributed.broadcast(torch.tensor([value], dtype=torch.float64, device=device))[0])
        return value

    def stop_requested() -> bool:
        if should_stop is None:
            return False
        return distributed.any_rank(bool(should_stop())) if parallel else bool(should_stop())

    params = list(backbone.trainable_parameters())
    if not params:
        raise InputError(f"backbone {backbone.name!r} has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    history = TrainHistory(method=cfg.method, val_method=val_method, device=str(device), n_train=train_in.n,
                           n_val=val_in.n)
    keep = _trainable_state_names(backbone)
    if parallel:  # the same initial weights on every rank (rank 0's)
        _broadcast_state(backbone, keep)
        if imputer is not None:
            _broadcast_state(imputer, {name for name, _ in imputer.state_dict().items()})
    best_state = _snapshot(backbone, keep)
    patience = cfg.patience if cfg.patience else None
    lengths = getattr(train_features, "lengths", None)
    n = train_in.n
    t_start = time.perf_counter()
    since_best = 0
    cancelled = False
    diverged = False
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(int(cfg.seed))  # dropout and anything else drawing from the global RNG
        backbone.train()
        for epoch in range(1, cfg.max_epochs + 1):
            t0 = time.perf_counter()
            total = torch.zeros((), dtype=torch.float64, device=device)
            batches = epoch_batches(n, cfg.batch_size, generator, lengths, sort_by_length=cfg.sort_by_length)
            on_step = _STEP_LISTENER.get()
            for step, idx in enumerate(batches, 1):
                if stop_requested():
                    cancelled = True
                    break
                optimizer.zero_grad(set_to_none=True)
                parts = micro_batches(idx, grad_accum_steps=cfg.grad_accum_steps, lengths=lengths,
                                      max_batch_tokens=cfg.max_batch_tokens)
                for j, part in enumerate(parts):
                    if j and stop_requested():  # long batches: cancel between parts
                        cancelled = True
                        break
                    # data-parallel: this rank forwards its slice of the part; the logits of the whole part are
                    # gathered (with autograd) so the estimator sees the global batch (causalrm.distributed)
                    local, sizes = distributed.shard(part) if parallel else (part, [])
                    local = local.to(device, non_blocking=True)
                    part = part.to(device, non_blocking=True)
                    batch = train_features.batch(local, device)
                    with _autocast(device, autocast):
                        z = backbone(**batch)
                    z = distributed.gather_rows(z.float().reshape(-1), sizes)
                    part_in = train_in.take(part)
                    if imputer is not None:  # prediction step with q frozen, then the imputation step with z frozen
                        q = imputer(batch, train_in.take(local).pseudo_label if sizes else part_in.pseudo_label)
                        q = distributed.gather_rows(q, sizes)
                        imp_loss = dr_imputation_loss(learning, z, q, part_in, surrogate=surrogate, **loss_kw)
                        if len(parts) > 1:
                            imp_loss = imp_loss * (part.numel() / idx.numel())
                        imp_loss.backward()
                        part_in = dataclasses.replace(part_in, pseudo_label=q.detach())
                    try:
                        loss = losses.estimate(cfg.method, z, part_in, **loss_kw)
                    except InputError:
                        if bool(torch.isfinite(z).all()):
                            raise
                        diverged = True  # non-finite logits: estimate() refuses them
                        break
                    if len(parts) > 1:
                        loss = loss * (part.numel() / idx.numel())
                    loss.backward()
                    total += loss.detach().double() * (part.numel() if len(parts) == 1 else idx.numel())
                if diverged or cancelled:
                    break
                if parallel:  # mean over ranks = the single-process gradient of the global batch
                    distributed.average_gradients(params)
                    if imputer is not None:
                        distributed.average_gradients(list(imputer.parameters_to_train()))
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                if imp_optimizer is not None:
                    imp_optimizer.step()
                    imp_optimizer.zero_grad(set_to_none=True)
                if on_step is not None:
                    on_step(epoch, step, len(batches), time.perf_counter() - t0)
            if cancelled:
                history.stop_reason = "cancelled"
                break
            if diverged:
                history.stop_reason = "diverged"
                break
            train_loss = float(total) / n
            current, z_val = val_estimate()
            history.train_loss.append(train_loss)
            history.val_estimate.append(current)
            if ranking:
                history.val_ranking.append(criterion(z_val))
            history.epoch_seconds.append(time.perf_counter() - t0)
            if _improved(history, current, cfg.min_delta, ranking):
                history.best_val_estimate = current
                if ranking:
                    history.best_val_ranking = history.val_ranking[-1]
                history.best_epoch = epoch
                best_state = _snapshot(backbone, keep)
                since_best = 0
            else:
                since_best += 1
            if progress is not None:
                progress(epoch, cfg.max_epochs, train_loss, current)
            if not math.isfinite(train_loss):
                history.stop_reason = "diverged"
                break
            if patience is not None and since_best >= patience:
                history.stop_reason = "patience"
                break
    _restore(backbone, best_state)
    backbone.eval()
    history.seconds = time.perf_counter() - t_start
    return history


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
StepFn = Callable[[int, int, int, float], None]
_STEP_LISTENER: contextvars.ContextVar[StepFn | None] = contextvars.ContextVar("causalrm_step_listener",
                                                                               default=None)


@contextlib.contextmanager
def report_steps(listener: StepFn):
    """Inside the block, every :func:`train` calls ``listener(epoch, step, steps_per_epoch, seconds_into_epoch)``
    after each optimiser step: progress within an epoch (a LoRA epoch on a CPU takes minutes) and the time a step
    takes, without threading a callback through every caller of ``train`` (the app's training worker uses it)."""
    token = _STEP_LISTENER.set(listener)
    try:
        yield
    finally:
        _STEP_LISTENER.reset(token)


def _improved(history: TrainHistory, estimate: float, min_delta: float, ranking: bool) -> bool:
    """Whether the epoch just recorded is the best yet: a higher criterion (``ranking``) or a lower estimate, by more
    than ``min_delta``."""
    if ranking:
        value = history.val_ranking[-1]
        return math.isfinite(value) and not value <= history.best_val_ranking + min_delta
    return math.isfinite(estimate) and estimate < history.best_val_estimate - min_delta


def _trainable_state_names(backbone: Backbone) -> set[str]:
    """State-dict keys that training can change: trainable parameters and all buffers."""
    trainable = {id(p) for p in backbone.trainable_parameters()}
    names = {name for name, p in backbone.named_parameters() if id(p) in trainable}
    names |= {name for name, _ in backbone.named_buffers()}
    return names


def _broadcast_state(module: torch.nn.Module, keep: set[str]) -> None:
    """Overwrite the ``keep`` entries of ``module``'s state with rank 0's (data-parallel start)."""
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if name in keep:
                value.copy_(distributed.broadcast(value))


def _snapshot(backbone: Backbone, keep: set[str]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backbone.state_dict().items() if k in keep}


def _restore(backbone: Backbone, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        current = backbone.state_dict()
        for k, v in state.items():
            current[k].copy_(v)
