"""A pointwise reward model trained on pairs: the Bradley-Terry logit d = z_a - z_b of any backbone.

An A/B log (``causalrm.data.pairwise``) has one row per pair; the trainer's loop is written for one logit per row.
:class:`PairFeatures` makes a pair one row (its batch holds the features of both sides) and :class:`PairModel` one
logit, ``backbone(a) - backbone(b)``, so ``causalrm.training.trainer.train`` and every estimator of the registry run
unchanged on the pairs (P(a preferred) = sigma(d); ``causalrm.estimators.losses.pairwise_terms`` is the same kernel
written with explicit pair indices). The trained ``backbone`` itself is the reward model: it scores single responses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import polars as pl

from causalrm.data.pairwise import sides, split_features
from causalrm.errors import InputError
from causalrm.training.backbones.base import Backbone, Features


class PairFeatures:
    """Features of n pairs from the features of their two sides (both ``Features`` of n rows, row j of each the
    pair's a and b response); ``batch`` yields ``{"a": a's batch, "b": b's batch}``."""

    def __init__(self, a: Features, b: Features) -> None:
        if len(a) != len(b):
            raise InputError(f"the a side has {len(a)} rows but the b side {len(b)}; pass both sides of every pair")
        self.a, self.b = a, b
        la, lb = getattr(a, "lengths", None), getattr(b, "lengths", None)
        #: padded tokens of a pair: both sides' (token-budget micro-batches count them together)
        self.lengths = None if la is None or lb is None else np.asarray(la) + np.asarray(lb)

    def __len__(self) -> int:
        return len(self.a)

    def batch(self, idx: torch.Tensor, device: Any) -> dict[str, dict[str, torch.Tensor]]:
        return {"a": self.a.batch(idx, device), "b": self.b.batch(idx, device)}


class PairModel(torch.nn.Module):
    """``forward(a, b) = backbone(**a) - backbone(**b)``: the Bradley-Terry logit of a pair under a pointwise
    ``backbone`` (its only parameters; the trainer's snapshots and restores reach them through this module)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = backbone.name

    def trainable_parameters(self) -> Any:
        return self.backbone.trainable_parameters()

    def forward(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return self.backbone(**a) - self.backbone(**b)


def featurize_pairs(backbone: Backbone, log: pl.DataFrame, X: np.ndarray | None) -> PairFeatures:
    """The pairs of an A/B log as :class:`PairFeatures` of ``backbone``: its a and b responses
    (``pairwise.sides``) featurized, with ``X`` the pairs' features (``pairwise.pair_features``) or None for a
    backbone that reads the texts."""
    a, b = sides(log)
    Xa, Xb = split_features(X) if X is not None else (None, None)
    return PairFeatures(backbone.featurize(a, Xa), backbone.featurize(b, Xb))


__all__ = ["PairFeatures", "PairModel", "featurize_pairs"]
