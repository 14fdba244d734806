"""MLP runs as transformers models: the frozen sentence encoder and the MLP head in one Hugging Face folder.

``write_mlp_export(backbone, embedder, folder)`` writes, next to the export's manifest and model card:

- ``config.json``: ``model_type`` "causalrm-mlp-reward", ``auto_map`` (AutoConfig and
  AutoModelForSequenceClassification in ``modeling_causalrm.py``), the encoder's own config, the head's widths, the
  embedder's pooling and normalisation, ``num_labels`` 1 and ``problem_type`` "regression" (a pipeline returns z);
- ``model.safetensors``: ``encoder.*`` (the embedding model's weights, float32) and ``head.*`` (the trained MLP);
- the encoder's tokenizer with ``model_max_length`` set to the embedder's token limit (``truncation=True`` then
  truncates as the embedder does);
- ``modeling_causalrm.py``: :mod:`causalrm.export.modeling_causalrm`, copied by transformers' ``save_pretrained``.

``load_mlp_head(folder)`` rebuilds the head as an :class:`~causalrm.training.backbones.mlp.MLPBackbone` from the same weights, for
``causalrm.load_reward_model`` (which embeds with the manifest's embedder, as the run did, so its scores equal the
run's).

The MLP backbone's export format (``causalrm.training.backbones.mlp.EXPORT``) is made of :func:`card_model`, :func:`card_input`,
:func:`card_usage`, :func:`load_export` and :func:`check_export`; :func:`export_plan` is ``MLPBackbone.export``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalrm.errors import InputError

HEAD_PREFIX = "head."


def encoder_spec(embedder: str) -> Any:
    """``embedder``'s ``ModelSpec``; an ``InputError`` unless it is a sentence encoder (a text-pair model)."""
    from causalrm.embeddings.models import resolve_model

    spec = resolve_model(embedder)
    if spec.kind != "encoder":
        raise InputError(f"embedder {embedder!r} is a decoder; transformers exports of MLP runs support sentence "
                         "encoders (text pairs) only: use causalrm.load_reward_model on the run directory")
    return spec


def build_hf_model(backbone: Any, embedder: str) -> tuple[Any, Any, Any]:
    """``(CausalRMRewardModel, tokenizer, ModelSpec)``: ``embedder``'s encoder (float32) and ``backbone``'s head."""
    from transformers import AutoModel, AutoTokenizer

    from causalrm.export.modeling_causalrm import CausalRMRewardConfig, CausalRMRewardModel
    from causalrm.training.backbones.hf_models import quiet_transformers

    spec = encoder_spec(embedder)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(spec.source)
            encoder = AutoModel.from_pretrained(spec.source, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load embedder {embedder!r} to bundle it ({str(err).splitlines()[0]}); pass "
                         "--embedder with the run's embedding model") from err
    if int(encoder.config.hidden_size) != backbone.input_dim:
        raise InputError(f"embedder {embedder!r} gives {encoder.config.hidden_size}-dim vectors but the head reads "
                         f"{backbone.input_dim}; pass --embedder with the run's embedding model")
    encoder_config = {k: v for k, v in encoder.config.to_dict().items() if k != "_name_or_path"}  # no local paths
    config = CausalRMRewardConfig(
        encoder=encoder_config, hidden=list(backbone.hidden), negative_slope=backbone.negative_slope,
        pooling=spec.pooling, normalize=spec.normalize, id2label={0: "reward"}, label2id={"reward": 0},
        problem_type="regression")
    with quiet_transformers():
        model = CausalRMRewardModel(config)
    model.encoder.load_state_dict(encoder.state_dict())
    model.head.load_state_dict(backbone.net.state_dict())
    tokenizer.model_max_length = spec.max_length
    return model.eval(), tokenizer, spec


def write_mlp_export(backbone: Any, embedder: str, folder: Path) -> dict[str, Any]:
    """Write the transformers files of an MLP export into ``folder``; returns the manifest's input fields."""
    from causalrm.export.modeling_causalrm import CausalRMRewardConfig, CausalRMRewardModel

    model, tokenizer, spec = build_hf_model(backbone, embedder)
    CausalRMRewardConfig.register_for_auto_class()
    CausalRMRewardModel.register_for_auto_class("AutoModelForSequenceClassification")
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    if not (folder / "modeling_causalrm.py").is_file():
        raise InputError("export would lack modeling_causalrm.py; please report this")
    return {"input_format": "pair", "max_length": spec.max_length, "pooling": spec.pooling,
            "normalize": spec.normalize}


def load_mlp_head(folder: Path, architecture: dict[str, Any], backbone_class: Any) -> Any:
    """The export's MLP head as a ``backbone_class`` (``MLPBackbone``; ``architecture``: the manifest's
    ``Backbone.get_config()``)."""
    from safetensors import safe_open

    path = folder / "model.safetensors"
    try:
        with safe_open(str(path), "pt") as fh:
            state = {"net." + k[len(HEAD_PREFIX):]: fh.get_tensor(k) for k in fh.keys() if k.startswith(HEAD_PREFIX)}
        head = backbone_class.from_config(dict(architecture))
        head.load_saved_state(state)
    except (OSError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{path}: the MLP head does not match the export's manifest "
                         f"({str(err).splitlines()[0]}); export the run again") from err
    return head


def hf_scores(folder: Path, prompts: list[str], responses: list[str], *, batch_size: int = 16) -> np.ndarray:
    """Reward logits through transformers alone (causalrm's class, not the folder's code), as EXPORT.md shows."""
    from transformers import AutoTokenizer

    from causalrm.export.modeling_causalrm import CausalRMRewardModel
    from causalrm.training.backbones.hf_models import quiet_transformers

    with quiet_transformers():
        model = CausalRMRewardModel.from_pretrained(str(folder)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)  # config.json: not BERT's
    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            inputs = tokenizer(prompts[i:i + batch_size], responses[i:i + batch_size], truncation=True, padding=True,
                               return_tensors="pt")
            out.append(model(**inputs).logits[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def export_plan(backbone: Any, run: Any, *, embedder: str | None, probes: tuple[list, list], atol: float) -> Any:
    """``MLPBackbone.export``: the manifest entries, the run's probe scores (embedded by ``embedder``, default the
    run's) and the writer of the transformers folder; a decoder embedder is refused before any work."""
    from causalrm.export.reward_models import _run_reward_model
    from causalrm.training.backbones.base import ExportPlan

    embedder = embedder or run.config.embedder
    encoder_spec(embedder)
    reference = _run_reward_model(run, device="cpu", batch_size=16, embedder=embedder).score(*probes)
    return ExportPlan(manifest={"kind": backbone.export_formats[0].kind, "embedder": embedder, "architecture": backbone.get_config()},
                      reference=reference, tolerance=atol,
                      write=lambda folder: write_mlp_export(backbone, embedder, folder))


def load_export(folder: Path, manifest: dict[str, Any], *, device: Any, batch_size: int) -> Any:
    """An MLP export as a reward model: its head (version 1 exports: ``backbone.json``) on the manifest's embedder."""
    from causalrm.data.schema import DEFAULT_EMBEDDER
    from causalrm.export.reward_models import BackboneRewardModel, _make_embedder
    from causalrm.training.backbones.base import get_backbone_class, load_backbone

    backbone = load_backbone(folder) if (folder / "backbone.json").is_file() else \
        load_mlp_head(folder, manifest.get("architecture") or {}, get_backbone_class(manifest["kind"]))
    embedder = _make_embedder(manifest.get("embedder") or DEFAULT_EMBEDDER, device)
    rm = BackboneRewardModel(backbone, embedder=embedder, device=device, path=str(folder), manifest=manifest,
                             batch_size=batch_size)
    rm.kind = manifest["kind"]
    return rm


def check_export(folder: Path, rm: Any, reference: np.ndarray, probes: tuple[list, list], atol: float) -> None:
    """transformers alone (the bundled encoder + head) must give the run's scores too."""
    scores = hf_scores(folder, *probes)
    if not np.allclose(scores, reference, atol=atol, rtol=1e-3):
        raise InputError(f"export check failed: transformers scores {np.round(scores, 5).tolist()} differ from "
                         f"the run's {np.round(reference, 5).tolist()}; please report this")


def card_model(manifest: dict[str, Any]) -> str:
    arch = manifest.get("architecture") or {}
    widths = " -> ".join(str(w) for w in (arch.get("input_dim"), *(arch.get("hidden") or []), 1))
    return (f"MLP head {widths} (LeakyReLU) on frozen `{manifest.get('embedder')}` embeddings of (prompt, "
            "response).")


def card_input(manifest: dict[str, Any]) -> str:
    return (f"(prompt, response) embedded by `{manifest.get('embedder')}` (bundled in the folder): the text pair "
            f"`[CLS] prompt [SEP] response [SEP]` (the response alone when the prompt is empty; max "
            f"{manifest.get('max_length')} tokens, longest-first truncation), {manifest.get('pooling')}-pooled"
            + (", L2-normalised" if manifest.get("normalize") else "") + ", then the MLP head.")


def card_usage(manifest: dict[str, Any]) -> list[str]:
    return ["", "With transformers alone (the folder ships its model code, `modeling_causalrm.py`):", "",
            "```python", "from transformers import pipeline", "",
            'rm = pipeline("text-classification", model="PATH", trust_remote_code=True)',
            'rm({"text": "How do I sort a list?", "text_pair": "Use sorted(xs)."}, truncation=True,',
            '   function_to_apply="none")["score"]  # the reward logit z', "```"]

