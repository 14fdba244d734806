"""The LoRA backbone's export (``LoraBackbone.export``): a Hugging Face folder, merged or adapter-only.

``hf-merged``: the adapters merged into the base weights (peft's ``merge_and_unload``) and the trained one-logit head,
loadable by ``AutoModelForSequenceClassification.from_pretrained(OUT)``; ``hf-adapter`` (``--adapter-only``): the peft
adapter with the head as ``modules_to_save``. Both load back through transformers (``causalrm.export.reward_models``); the manifest
kinds are what exports on disk hold. :data:`FORMATS` says how the model card and ``causalrm export`` describe them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from causalrm.errors import InputError
from causalrm.training.backbones.base import ExportFormat, ExportPlan


def model_card_name(model_id: str) -> str:
    """Human-readable base model name for model cards (``sentence-transformers/all-MiniLM-L6-v2`` for the bundle)."""
    from causalrm.training.backbones.hf_models import BUNDLED_ALIASES

    if model_id in BUNDLED_ALIASES:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return model_id if not Path(model_id).exists() else Path(model_id).name


def export_plan(backbone: Any, *, adapter_only: bool, embedder: str | None, probes: tuple[list, list],
                atol: float) -> ExportPlan:
    """The manifest entries (base model, input format, LoRA settings), the backbone's probe scores and the writer of
    the merged (or, ``adapter_only``, the adapter) folder. bf16 bases are checked at a looser tolerance."""
    from causalrm.training.backbones.hf_models import BUNDLED_ALIASES

    if embedder:
        raise InputError("--embedder applies to MLP runs; a LoRA run embeds nothing")
    reference = backbone.score(*probes)
    local = Path(backbone.model_path)
    base_ref = backbone.model_id if backbone.model_id in BUNDLED_ALIASES else \
        str(local.resolve()) if local.exists() else backbone.model_id
    manifest = {
        "kind": (ADAPTER if adapter_only else MERGED).kind,
        "base_model": base_ref, "base_model_card": model_card_name(backbone.model_id),
        "input_format": "chat" if backbone.chat else "pair", "max_length": backbone.max_length,
        "lora": {k: backbone.get_config()[k] for k in ("r", "alpha", "dropout", "target_modules")},
    }

    def write(folder: Path) -> dict[str, Any]:
        from causalrm.atomic_io import write_json_atomic

        if adapter_only:
            backbone.model.save_pretrained(str(folder), safe_serialization=True)
            cfg_path = folder / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            # peft's own loaders read this: the hub id for the bundled MiniLM, else the local folder or id
            cfg["base_model_name_or_path"] = manifest["base_model_card"] if base_ref in BUNDLED_ALIASES else base_ref
            write_json_atomic(cfg, cfg_path)
        else:
            merged = backbone.merged_model()
            merged.config.id2label, merged.config.label2id = {0: "reward"}, {"reward": 0}
            merged.config.problem_type = "regression"  # a text-classification pipeline's score is then z
            merged.save_pretrained(str(folder), safe_serialization=True)
        backbone.tokenizer.save_pretrained(str(folder))
        return {}

    tolerance = 5e-2 if backbone.base_dtype == "bfloat16" else atol
    return ExportPlan(manifest=manifest, reference=reference, tolerance=tolerance, write=write)


def _check_merged(folder: Path, rm: Any, reference: np.ndarray, probes: tuple[list, list], atol: float) -> None:
    info = rm.loading_info
    if info.get("missing_keys") or info.get("mismatched_keys"):
        raise InputError(f"export check failed: weights missing from the export {info.get('missing_keys')}"
                         f"{info.get('mismatched_keys') or ''}; please report this")


def _check_adapter(folder: Path, rm: Any, reference: np.ndarray, probes: tuple[list, list], atol: float) -> None:
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    if not any("lora_" in k for k in keys) or not any(h in k for k in keys for h in ("classifier", "score")):
        raise InputError("export check failed: the adapter lacks the LoRA weights or the head; please report this")


def _card_model(manifest: dict[str, Any], merged: bool) -> str:
    lora = manifest.get("lora") or {}
    return (f"`{manifest.get('base_model_card')}` with LoRA adapters (r={lora.get('r')}, alpha={lora.get('alpha')}, "
            f"targets {', '.join(lora.get('target_modules') or [])}) and a trained one-logit head; "
            + ("adapters merged into the weights." if merged else "adapter only (peft)."))


def _card_input(manifest: dict[str, Any]) -> str:
    if manifest.get("input_format") == "chat":
        return ("the conversation `[{'role': 'user', 'content': prompt}, {'role': 'assistant', 'content': "
                "response}]` rendered with the saved chat template, tokenised without extra special tokens "
                f"(max {manifest.get('max_length')} tokens, truncated on the left); the head reads the last non-pad "
                "token.")
    return (f"the text pair (prompt, response): `[CLS] prompt [SEP] response [SEP]` (max {manifest.get('max_length')} "
            "tokens, longest-first truncation).")


def _merged_usage(manifest: dict[str, Any]) -> list[str]:
    lines = ["", "With transformers alone:", "", "```python",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
             'model = AutoModelForSequenceClassification.from_pretrained("PATH")',
             'tok = AutoTokenizer.from_pretrained("PATH")']
    if manifest.get("input_format") != "chat":
        lines += ['inputs = tok("How do I sort a list?", "Use sorted(xs).", return_tensors="pt")']
    else:
        lines += ['text = tok.apply_chat_template([{"role": "user", "content": "How do I sort a list?"},',
                  '                                 {"role": "assistant", "content": "Use sorted(xs)."}],'
                  ' tokenize=False)',
                  'inputs = tok(text, add_special_tokens=False, return_tensors="pt")']
    return lines + ["reward = model(**inputs).logits[0, 0].item()", "```"]


def _adapter_usage(manifest: dict[str, Any]) -> list[str]:
    return ["", "With peft:", "", "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
            'tok = AutoTokenizer.from_pretrained("PATH")',
            f'base = AutoModelForSequenceClassification.from_pretrained("{manifest.get("base_model_card")}", '
            "num_labels=1, pad_token_id=tok.pad_token_id)",
            'model = PeftModel.from_pretrained(base, "PATH")', "```"]


MERGED = ExportFormat(kind="hf-merged", summary=lambda m: "Hugging Face model (LoRA merged)",
                      card_model=lambda m: _card_model(m, merged=True), card_input=_card_input,
                      card_usage=_merged_usage, check=_check_merged)
ADAPTER = ExportFormat(kind="hf-adapter", summary=lambda m: "peft adapter + head",
                       card_model=lambda m: _card_model(m, merged=False), card_input=_card_input,
                       card_usage=_adapter_usage, library="peft", check=_check_adapter)
#: the LoRA backbone's export formats (``LoraBackbone.export_formats``)
FORMATS = (MERGED, ADAPTER)
