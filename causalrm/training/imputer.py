"""The DR-JL / MRDR imputer's steps inside the training loop: its q on every row, and its loss
(the imputation model and the loss itself: :mod:`causalrm.estimators.dr`)."""

from __future__ import annotations

from typing import Any

import torch

from causalrm.training.backbones.base import Features


def _forward_imputer(imputer: Any, features: Features, q0: torch.Tensor, device: torch.device,
                     batch_size: int) -> torch.Tensor:
    """The imputation model's q on every row of ``features`` (no grad), in batches."""
    out = []
    imputer.eval()
    for start in range(0, len(features), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(features)), device=device)
        out.append(imputer(features.batch(idx, device), q0[idx]))
    imputer.train()
    return torch.cat(out)


def dr_imputation_loss(kind: str, z: torch.Tensor, q: torch.Tensor, inputs: Any, *, surrogate: bool, rho01: float,
                       rho10: float, base: str, nonneg: Any = None) -> torch.Tensor:
    from causalrm.estimators.dr import imputation_loss

    return imputation_loss(kind, z, q, inputs, surrogate=surrogate, rho01=rho01, rho10=rho10, base=base)
