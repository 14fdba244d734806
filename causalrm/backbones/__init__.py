"""Reward-model backbones behind one contract (see :mod:`causalrm.backbones.base`).

``mlp``: the paper's head on frozen embeddings (:mod:`causalrm.backbones.mlp`); ``lora``: a transformer with LoRA
adapters (:mod:`causalrm.backbones.lora`, imported on first use).
"""

from __future__ import annotations

from causalrm.backbones.base import (
    Backbone,
    Features,
    available_backbones,
    get_backbone_class,
    register_backbone,
    resolve_device,
)
from causalrm.backbones.mlp import MLPBackbone, TensorFeatures


def build_backbone(name: str, X, options: dict | None = None, *, seed: int = 0) -> Backbone:
    """A freshly initialised backbone ``name`` for data like ``X`` (``options``: backbone-specific kwargs)."""
    return get_backbone_class(name).build(X, dict(options or {}), seed=seed)


def load_backbone(run_dir, *, device="cpu") -> Backbone:
    """The backbone saved in ``run_dir`` (safetensors + JSON), whatever its kind."""
    return Backbone.load(run_dir, device=device)


__all__ = [
    "Backbone",
    "Features",
    "MLPBackbone",
    "TensorFeatures",
    "available_backbones",
    "build_backbone",
    "get_backbone_class",
    "load_backbone",
    "register_backbone",
    "resolve_device",
]
