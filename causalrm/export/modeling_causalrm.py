"""A CausalRM MLP reward model as a transformers model: the frozen sentence encoder and the MLP head in one module.

This file is copied into every MLP export (``causalrm export``) as ``modeling_causalrm.py`` and named by the
export's ``config.json`` ``auto_map``, so ``AutoModelForSequenceClassification.from_pretrained(EXPORT,
trust_remote_code=True)`` and ``pipeline("text-classification", model=EXPORT, trust_remote_code=True)`` load it.
It imports only torch and transformers (the remote-code loader requires the file to stand alone).

The reward logit is ``z = MLP(x)``, where ``x`` is the encoder's pooled final hidden state (``pooling``: "mean" over
non-pad tokens, "cls" or "last" non-pad token), L2-normalised when ``normalize``: exactly the vector
``causalrm.embeddings.embedder.Embedder`` computes for the same tokens. An encoder reads the text pair
``tokenizer(prompt, response)`` (the response alone when the prompt is empty).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("mean", "cls", "last")


class CausalRMRewardConfig(PretrainedConfig):
    """``encoder``: the sentence encoder's config (a dict with its ``model_type``); ``hidden`` /
    ``negative_slope``: the head Linear(d, h1) - LeakyReLU - ... - Linear(h_k, 1); ``pooling``, ``normalize``."""

    model_type = "causalrm-mlp-reward"

    def __init__(self, encoder: dict[str, Any] | None = None, hidden: list[int] | None = None,
                 negative_slope: float = 0.01, pooling: str = "mean", normalize: bool = True, **kwargs: Any) -> None:
        self.encoder = dict(encoder or {})
        self.hidden = [int(h) for h in (hidden or [])]
        self.negative_slope = float(negative_slope)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
        self.pooling = pooling
        self.normalize = bool(normalize)
        kwargs.setdefault("num_labels", 1)
        super().__init__(**kwargs)


class CausalRMRewardModel(PreTrainedModel):
    """Reward logits ``(batch, 1)`` of tokenised (prompt, response) pairs: ``head(pool(encoder(tokens)))``."""

    config_class = CausalRMRewardConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"

    def __init__(self, config: CausalRMRewardConfig) -> None:
        super().__init__(config)
        encoder_config = dict(config.encoder)
        self.encoder = AutoModel.from_config(AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config))
        layers: list[torch.nn.Module] = []
        width = int(self.encoder.config.hidden_size)
        for h in config.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.LeakyReLU(config.negative_slope)]
            width = h
        layers.append(torch.nn.Linear(width, 1))
        self.head = torch.nn.Sequential(*layers)
        self.post_init()

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "last":
            positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), (positions * mask).argmax(dim=1)]
        elif self.config.pooling == "cls":
            vec = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(torch.float32)
            vec = (hidden.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        vec = vec.float()
        return torch.nn.functional.normalize(vec, p=2, dim=1) if self.config.normalize else vec

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> SequenceClassifierOutput | tuple:
        """Reward logits ``(batch, 1)``; other keyword arguments a pipeline passes are ignored."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self.config.pooling == "last":  # positions follow the mask: left and right padding agree
            inputs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.encoder(**inputs).last_hidden_state
        x = self._pool(hidden, attention_mask)
        logits = self.head(x.to(self.head[0].weight.dtype)).float()
        return (logits,) if return_dict is False else SequenceClassifierOutput(logits=logits)


__all__ = ["CausalRMRewardConfig", "CausalRMRewardModel"]
