"""Reward-model backbones behind one contract (:mod:`causalrm.training.backbones.base`).

``mlp``: the paper's head on frozen embeddings (:mod:`causalrm.training.backbones.mlp`, the default); ``lora``: a
transformer with LoRA adapters (:mod:`causalrm.training.backbones.lora`, imported on first use). Outside this package
a backbone is asked through its class (``get_backbone_class(name)``, ``available_backbones()``,
``export_format(kind)``), never by name.
"""
