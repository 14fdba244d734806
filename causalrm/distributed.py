"""Data-parallel runs under Hugging Face Accelerate (``accelerate launch``) or ``torchrun``; a no-op otherwise.

``accelerate launch --multi_gpu --num_processes N $(which causalrm) fit ...`` (or ``torchrun --nproc_per_node N``)
starts N copies of the command with ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in their environment. Only then is
``accelerate`` imported and one :class:`accelerate.PartialState` created (:func:`init`): it opens the process group
(NCCL on GPUs, gloo on CPUs) and names this process's device. Without ``WORLD_SIZE > 1`` nothing here imports
Accelerate and every helper is the identity, so the single-process path is unchanged (docs/DISTRIBUTED.md).

The design (what each rank does in ``causalrm fit``):

* the log, its embeddings, the split and the **nuisances** are computed on every rank, identically (same seed, same
  rows); the trainer then broadcasts rank 0's loss inputs, flip rates and initial weights, so every rank trains on
  exactly rank 0's numbers even where a GPU kernel is not bit-reproducible;
* every optimiser step draws the **same global batch** on every rank (one seeded generator); each rank forwards its
  slice (:func:`shard`), the logits are all-gathered *with autograd* (:func:`gather_rows`) and every rank evaluates
  the estimator on the whole global batch. Self-normalised estimators (SNIPS, SDR) therefore divide by the sum over
  the global batch, and the non-negative guard clamps the global class-wise risks, exactly as in one process; the
  gathered gradients are averaged (:func:`average_gradients`), which makes the step the single-process step;
* the **validation estimate** for early stopping: each rank forwards a slice of the val rows, the logits are
  gathered and the estimator is computed on all of them; rank 0's value is broadcast, so every rank stops at the
  same epoch and keeps the same best weights;
* only rank 0 (:func:`is_main`) writes the run directory; the others wait (:func:`wait`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["average_gradients", "broadcast", "broadcast_object", "close", "gather_rows", "init", "is_main", "launched",
           "rank", "shard", "state", "wait", "world_size"]

_STATE: Any = None


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> bool:
    """Whether this process is one of several started by ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE > 1``)."""
    return _env_int("WORLD_SIZE", 1) > 1


def init(*, device: Any = None) -> Any:
    """The process group's :class:`accelerate.PartialState` when launched on several processes, else ``None``.

    Created once (later calls return it). ``device``: the user's device option; ``"cpu"`` (or ``cpu:N``) uses gloo
    on the CPU even where CUDA is present; otherwise the CPU is used when no CUDA GPU is visible or
    ``accelerate launch --cpu`` set ``ACCELERATE_USE_CPU``.
    """
    global _STATE
    if _STATE is not None or not launched():
        return _STATE
    import torch
    from accelerate import PartialState

    cpu = str(device or "").startswith("cpu") or not torch.cuda.is_available()
    cpu = cpu or os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")
    _STATE = PartialState(cpu=cpu)
    return _STATE


def close() -> None:
    """End the process group, on every rank after its last collective (a rank that exits with a gloo group still open
    can abort with "terminate called without an active exception"). No-op in a single process."""
    global _STATE
    if _STATE is not None:
        _STATE.destroy_process_group()
        _STATE = None


def state() -> Any:
    """:func:`init`'s state (created on first use) or ``None`` in a single process."""
    return init()


def active() -> bool:
    s = state()
    return s is not None and s.num_processes > 1


def world_size() -> int:
    s = state()
    return int(s.num_processes) if s is not None else 1


def rank() -> int:
    s = state()
    return int(s.process_index) if s is not None else 0


def is_main() -> bool:
    """True in a single process and on rank 0: the process that writes files and prints."""
    s = state()
    return True if s is None else bool(s.is_main_process)


def wait() -> None:
    """Barrier: every rank waits here until all arrive (no-op in a single process)."""
    s = state()
    if s is not None:
        s.wait_for_everyone()


def device() -> torch.device | None:
    """This rank's device (``cuda:LOCAL_RANK`` on GPUs, ``cpu`` with gloo); ``None`` in a single process."""
    s = state()
    return None if s is None else s.device


def train_device(requested: Any) -> Any:
    """The device a data-parallel rank trains on: its own GPU when ``requested`` is auto/cuda and the group uses GPUs,
    else ``requested`` (a single process: always ``requested``)."""
    s = state()
    if s is None:
        return requested
    if s.device.type == "cpu":
        return "cpu"
    if requested is None or str(requested).strip() in ("", "auto", "cuda"):
        return s.device
    return requested


# --------------------------------------------------------------------------------------------------------------------
# collectives (identity in a single process)
# --------------------------------------------------------------------------------------------------------------------
def _comm_device(t: torch.Tensor) -> torch.device:
    """Where a collective must run: the rank's device for NCCL (cuda), the tensor's own for gloo (cpu)."""
    s = state()
    return s.device if s.device.type != "cpu" else t.device


def broadcast(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``t`` on every rank (same shape, dtype and device as ``t``)."""
    if not active():
        return t
    from accelerate.utils import broadcast as _broadcast

    out = _broadcast(t.detach().contiguous().to(_comm_device(t)), from_process=0)
    return out.to(t.device)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every rank."""
    if not active():
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]


def shard(idx: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """This rank's part of the global index batch ``idx`` (contiguous, sizes differ by at most one) and every rank's
    part size. A batch with fewer rows than ranks is not split (every rank takes all of it; sizes ``[]``)."""
    import torch

    w = world_size()
    if w == 1 or idx.numel() < w:
        return idx, []
    parts = torch.tensor_split(idx, w)
    return parts[rank()], [int(p.numel()) for p in parts]


def gather_rows(local: torch.Tensor, sizes: list[int], *, grad: bool = True) -> torch.Tensor:
    """Concatenate every rank's ``local`` rows (``sizes[r]`` rows on rank ``r``) in rank order, on every rank.

    ``grad``: differentiable (forward :func:`accelerate.utils.gather`, backward :func:`accelerate.utils.reduce`): the
    gradient reaching ``local`` is the sum over ranks of the gradient of each rank's copy, so with the same loss on
    every rank it is ``world_size`` times the single-process gradient, which :func:`average_gradients` (a mean) turns back into it. ``sizes == []``
    (an unsplit batch): ``local`` itself.
    """
    if not sizes or not active():
        return local
    import torch

    m = max(sizes)
    dev = local.device
    x = local.to(_comm_device(local))
    if x.shape[0] < m:
        x = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))])
    if grad:
        return _gather_function().apply(x, tuple(sizes), rank()).to(dev)
    return _gather_padded(x.detach(), sizes)


def _gather_padded(x: torch.Tensor, sizes: list[int] | tuple[int, ...]) -> torch.Tensor:
    import torch
    from accelerate.utils import gather

    parts = torch.split(gather(x.contiguous()), x.shape[0])
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


_GATHER_FN: Any = None


def _gather_function() -> Any:
    """``torch.autograd.Function``: forward = :func:`accelerate.utils.gather` of the padded rows; backward = the
    sum over ranks of the incoming gradient (:func:`accelerate.utils.reduce`), this rank's rows of it."""
    global _GATHER_FN
    if _GATHER_FN is None:
        import torch

        class _GatherRows(torch.autograd.Function):
            @staticmethod
            def forward(ctx, padded, sizes, r):  # noqa: ANN001
                ctx.sizes, ctx.rank, ctx.m = sizes, r, padded.shape[0]
                return _gather_padded(padded, sizes)

            @staticmethod
            def backward(ctx, grad):  # noqa: ANN001
                from accelerate.utils import reduce

                total = reduce(grad.contiguous(), reduction="sum")
                start = sum(ctx.sizes[:ctx.rank])
                mine = total[start:start + ctx.sizes[ctx.rank]]
                if mine.shape[0] < ctx.m:
                    mine = torch.cat([mine, mine.new_zeros((ctx.m - mine.shape[0], *mine.shape[1:]))])
                return mine, None, None

        _GATHER_FN = _GatherRows
    return _GATHER_FN


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over ranks (one flat all-reduce). A gradient that is ``None``
    on every rank stays ``None``; one that exists on some ranks only counts as zeros on the others."""
    if not active():
        return
    import torch
    from accelerate.utils import reduce

    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    has = reduce(has.to(_comm_device(has)), reduction="max").cpu().bool().tolist()
    chosen = [p for p, h in zip(params, has) if h]
    if not chosen:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in chosen])
    dev = flat.device
    flat = reduce(flat.to(_comm_device(flat)), reduction="mean").to(dev)
    offset = 0
    for p in chosen:
        k = p.numel()
        g = flat[offset:offset + k].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        offset += k


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (a cancel on rank 0 stops all of them together)."""
    if not active():
        return flag
    import torch
    from accelerate.utils import reduce

    t = torch.tensor([1.0 if flag else 0.0])
    return bool(reduce(t.to(_comm_device(t)), reduction="max").item() > 0)


def row_slice(n: int) -> tuple[int, int]:
    """This rank's contiguous ``[start, stop)`` of ``n`` rows (``numpy.array_split`` sizes); ``(0, n)`` alone."""
    w, r = world_size(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def row_sizes(n: int) -> list[int]:
    w = world_size()
    base, extra = divmod(n, w)
    return [base + (1 if r < extra else 0) for r in range(w)]
