"""``predict_logits``: the one scoring kernel (a backbone's reward logits z of every row, no grad, length-sorted
batches, optional autocast); training's validation pass, ``FitResult.score``, ``CausalRM.score_texts`` and every
reward model of :mod:`causalrm.export.reward_models` end in it."""

from __future__ import annotations

import numpy as np
import torch

from causalrm.devices import resolve_device
from causalrm.training.backbones.base import Backbone, Features

_AUTOCAST = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------------------------------
def _forward_all(
    backbone: Backbone, features: Features, device: torch.device, batch_size: int, autocast: torch.dtype | None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of every row (float32, on ``device``, original order), no grad, eval mode restored afterwards.

    ``rows``: only these rows (a LongTensor; the output is in their order), e.g. one rank's slice of the val split.
    """
    rows = torch.arange(len(features)) if rows is None else rows
    was_training = backbone.training
    backbone.eval()
    out = torch.empty(len(rows), dtype=torch.float32, device=device)
    lengths = getattr(features, "lengths", None)
    order = (torch.as_tensor(np.argsort(np.asarray(lengths)[rows.numpy()], kind="stable"), dtype=torch.long)
             if lengths is not None else torch.arange(len(rows)))
    try:
        with torch.no_grad():
            for pos in torch.split(order, batch_size):
                batch = features.batch(rows[pos], device)
                with _autocast(device, autocast):
                    z = backbone(**batch)
                out[pos.to(device)] = z.float().reshape(-1)
    finally:
        backbone.train(was_training)
    return out


def predict_logits(
    backbone: Backbone, features: Features, *, batch_size: int = 8192, device: str | torch.device | None = None,
    autocast_dtype: str | None = None,
) -> np.ndarray:
    """Reward logits z of every row of ``features`` as float32 ``(n,)``, in row order (no grad).

    ``device=None`` uses the device the backbone's parameters are on.
    """
    if device is None:
        p = next(iter(backbone.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
        backbone.to(dev)
    if len(features) == 0:
        return np.zeros(0, dtype=np.float32)
    z = _forward_all(backbone, features, dev, batch_size, _AUTOCAST.get(autocast_dtype or ""))
    return z.cpu().numpy().astype(np.float32)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)
