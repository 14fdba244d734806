"""One meaning of a device name: :func:`resolve_device`, used by the embedder, the propensity MLP, the trainer, the
reward models of :mod:`causalrm.export.reward_models`, the pipeline and the app.

``"auto"`` (or None / empty): cuda when a CUDA GPU is present, else cpu. Apple's ``mps`` is used when asked for by
name; ``"auto"`` picks it only where the caller passes ``auto_mps=True`` (the embedder: a forward pass in fp16 /
fp32). Training and the propensity MLP keep float64 tensors on the device, which mps does not support, so their
``"auto"`` never picks it. Any other name is a torch device (``cpu``, ``cuda``, ``cuda:N``, ``mps``); one that is not
valid or not present here raises :class:`~causalrm.errors.InputError` with one line saying what to use.

torch is imported on the first call, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from causalrm.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["AUTO", "resolve_device"]

AUTO = "auto"
_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = AUTO, *, auto_mps: bool = False) -> torch.device:
    """The ``torch.device`` that ``device`` names (see the module docstring); InputError when it is not usable here."""
    import torch

    if device is None or str(device).strip() in ("", AUTO):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if auto_mps and _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(str(device).strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"device {device!r} is not valid; use {_CHOICES}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available here; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                             "device(s); use cuda, cpu or auto")
    elif dev.type == "mps" and not _mps_available(torch):
        raise InputError(f"device {device!r} requested but Apple's mps is not available here; use cpu or auto")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r} is not supported; use {_CHOICES}")
    return dev


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Limit torch's intra-op threads and the BLAS/OpenMP pools (threadpoolctl) to ``n`` inside the block.

    ``None``/0: unchanged. Restored afterwards. On a shared or oversubscribed CPU, spinning worker threads can make
    small matrix products tens of times slower; one thread each avoids that.
    """
    if not n:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - scikit-learn depends on it
            yield
        else:
            with threadpool_limits(limits=int(n)):
                yield
    finally:
        torch.set_num_threads(previous)
