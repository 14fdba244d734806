"""Reward-model backbones behind one contract (see :mod:`causalrm.training.backbones.base`).

``mlp``: the paper's head on frozen embeddings (:mod:`causalrm.training.backbones.mlp`, the default); ``lora``: a transformer
with LoRA adapters (:mod:`causalrm.training.backbones.lora`, imported on first use). Outside this package a backbone is asked
through its class (``get_backbone_class(name)``, ``available_backbones()``, ``export_format(kind)``), never by name.
"""

from __future__ import annotations

from causalrm.training.backbones.base import (
    Backbone,
    ExportFormat,
    ExportPlan,
    Features,
    available_backbones,
    export_format,
    get_backbone_class,
    register_backbone,
    resolve_device,
    unregister_backbone,
)
from causalrm.training.backbones.mlp import MLPBackbone, TensorFeatures

#: ``FitConfig.backbone``'s default (and the app's)
DEFAULT_BACKBONE = MLPBackbone.name


def build_backbone(name: str, X, options: dict | None = None, *, seed: int = 0) -> Backbone:
    """A freshly initialised backbone ``name`` for data like ``X`` (``options``: backbone-specific kwargs)."""
    return get_backbone_class(name).build(X, dict(options or {}), seed=seed)


def load_backbone(run_dir, *, device="cpu") -> Backbone:
    """The backbone saved in ``run_dir`` (safetensors + JSON), whatever its kind."""
    return Backbone.load(run_dir, device=device)


__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "ExportFormat",
    "ExportPlan",
    "Features",
    "MLPBackbone",
    "TensorFeatures",
    "available_backbones",
    "build_backbone",
    "export_format",
    "get_backbone_class",
    "load_backbone",
    "register_backbone",
    "resolve_device",
    "unregister_backbone",
]
