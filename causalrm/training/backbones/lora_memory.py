"""How much memory a LoRA training job needs, estimated before it starts, and the settings that fit a budget.

Peak memory of a process training the LoRA backbone (:mod:`causalrm.training.backbones.lora`) with the trainer's token-budget
micro-batches (``TrainOptions.max_batch_tokens``)::

    peak = process + weights + max(training activations, evaluation activations) + features

- process: the interpreter with torch, transformers, polars and scikit-learn loaded, the log and the nuisances
  (:data:`PROCESS_BYTES`; not counted on a GPU, where only weights and activations live);
- weights: the frozen base (parameters x bytes of ``base_dtype``) plus adapters and head with their gradient and two
  Adam moments (4 float32 copies);
- training activations, per token of a micro-batch and per layer, ``4 (32 h + c i + 3.5 a L)`` bytes for hidden size
  ``h``, intermediate size ``i`` (``c`` = 4, or 6 for the gated MLPs of decoders), ``a`` attention heads and padded
  length ``L`` (float32, attention scores materialised as on CPU). Gradient checkpointing keeps only each layer's
  input plus two layers' worth during the backward pass;
- evaluation activations (no gradients): one layer's transient tensors, ``4 (a L + i + 6 h)`` bytes per token of a
  ``max_tokens_per_forward`` chunk;
- features: the token ids (int32) of every row.

The constants were measured as peak resident memory on all-MiniLM-L6-v2 (6 layers, h 384, i 1536, 12 heads) with
torch 2.13 on CPU and err on the high side (``benchmarks/lora_memory.py`` prints estimate beside measurement); other
architectures scale through h, i, a and the layer count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from causalrm.errors import InputError
from causalrm.training.backbones.hf_models import DEFAULT_MAX_LENGTH, DEFAULT_MODEL, is_encoder, resolve_model_path
from causalrm.training.options import TrainOptions

GB = 1024**3
#: resident memory of a training process before the transformer is built (measured about 0.45 GB, rounded up)
PROCESS_BYTES = int(0.6 * GB)
#: padded tokens per training micro-batch aimed for (the trainer's default ``max_batch_tokens``)
DEFAULT_BATCH_TOKENS = int(TrainOptions.max_batch_tokens)
#: padded tokens per no-grad evaluation chunk at most (the LoRA backbone's default ``max_tokens_per_forward``)
MAX_EVAL_TOKENS = 16384
#: rows per optimiser step of a planned job (the MLP head's 512 would give a handful of steps per epoch)
PLAN_BATCH_SIZE = 32
#: share of the budget a plan may use (the rest absorbs allocator slack and estimate error)
HEADROOM = 0.9
_BYTES = {"float32": 4, "bfloat16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a transformer (from its config and weight files)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    parameters: int
    max_positions: int | None
    encoder: bool


@dataclass(frozen=True)
class LoraPlan:
    """Settings of a LoRA job that fit ``budget_bytes``, and the estimated peak ``peak_bytes``."""

    model: str
    max_length: int
    batch_tokens: int
    eval_tokens: int
    gradient_checkpointing: bool
    peak_bytes: int
    budget_bytes: int

    def backbone_options(self) -> dict[str, object]:
        """LoRA backbone keyword arguments of the plan (merge into ``FitConfig.backbone_options``)."""
        return {"max_length": self.max_length, "gradient_checkpointing": self.gradient_checkpointing,
                "max_tokens_per_forward": self.eval_tokens}

    def describe(self) -> str:
        """One line: the settings and the estimate against the budget."""
        ckpt = "with" if self.gradient_checkpointing else "no"
        return (f"max length {self.max_length}, micro-batches of at most {self.batch_tokens:,} tokens, {ckpt} "
                f"gradient checkpointing: about {self.peak_bytes / GB:.1f} GB of {round(self.budget_bytes / GB, 2):g} "
                "GB")


def model_shape(model: str = DEFAULT_MODEL, *, trust_remote_code: bool = False) -> ModelShape:
    """Layer count and sizes from the model's config; the parameter count from its safetensors headers when the
    model is a local folder, else from the config (embeddings + attention + MLP per layer)."""
    from transformers import AutoConfig

    path = resolve_model_path(model)
    try:
        cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the config of model {model!r} ({str(err).splitlines()[0]}); pass a local "
                         "folder or a model id in the Hugging Face cache") from err
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    hidden = int(cfg.hidden_size)
    layers = int(cfg.num_hidden_layers)
    inter = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    encoder = is_encoder(str(getattr(cfg, "model_type", "")))
    params = _counted_parameters(Path(path))
    if params is None:
        vocab = int(getattr(cfg, "vocab_size", 32000))
        params = vocab * hidden + layers * (4 * hidden * hidden + (2 if encoder else 3) * hidden * inter)
    positions = getattr(cfg, "max_position_embeddings", None)
    return ModelShape(name=str(model), layers=layers, hidden=hidden, intermediate=inter,
                      heads=int(cfg.num_attention_heads), parameters=int(params),
                      max_positions=int(positions) if isinstance(positions, int) and positions > 0 else None,
                      encoder=encoder)


def _counted_parameters(folder: Path) -> int | None:
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), "pt") as fh:
            for key in fh.keys():
                n = 1
                for dim in fh.get_slice(key).get_shape():
                    n *= int(dim)
                total += n
    return total


def estimate_peak(
    shape: ModelShape, *, max_length: int, batch_tokens: int, eval_tokens: int, gradient_checkpointing: bool,
    n_rows: int = 0, r: int = 8, base_dtype: str = "float32", on_gpu: bool = False,
) -> int:
    """Estimated peak memory in bytes of training ``shape`` with LoRA rank ``r`` (formula in the module docstring)."""
    h, i, a, L = shape.hidden, shape.intermediate, shape.heads, int(max_length)
    per_layer = 32 * h + (4 if shape.encoder else 6) * i + 7 * a * L // 2  # floats per token
    if gradient_checkpointing:
        train_floats = 2 * per_layer + 2 * shape.layers * h
    else:
        train_floats = shape.layers * per_layer
    train_act = 4 * train_floats * int(batch_tokens)
    eval_act = 4 * (a * L + i + 6 * h) * int(eval_tokens)
    trainable = shape.layers * 3 * 2 * r * h + h + 1  # adapters on q, k, v plus the one-logit head
    weights = shape.parameters * _BYTES.get(base_dtype, 4) + 16 * trainable
    features = 4 * int(n_rows) * L
    process = 0 if on_gpu else PROCESS_BYTES
    return int(process + weights + max(train_act, eval_act) + features)


def _fitting(shape: ModelShape, budget: float, *, max_length: int, batch_tokens: int, **kw) -> LoraPlan | None:
    """The first setting that fits: the full token budget down to a quarter without gradient checkpointing, then
    with checkpointing down to one row per micro-batch (checkpointing costs about a third more compute, so it is
    used only where it saves the micro-batch size)."""
    floor = max(max_length, batch_tokens // 4)
    for ckpt in (False, True):
        tokens = batch_tokens
        while tokens >= (max_length if ckpt else floor):
            eval_tokens = max(max_length, min(MAX_EVAL_TOKENS, 4 * tokens))
            peak = estimate_peak(shape, max_length=max_length, batch_tokens=tokens, eval_tokens=eval_tokens,
                                 gradient_checkpointing=ckpt, **kw)
            if peak <= HEADROOM * budget:
                return LoraPlan(model=shape.name, max_length=max_length, batch_tokens=tokens, eval_tokens=eval_tokens,
                                gradient_checkpointing=ckpt, peak_bytes=peak, budget_bytes=int(budget))
            tokens //= 2
    return None


def plan_lora(
    budget_bytes: float, *, model: str = DEFAULT_MODEL, max_length: int = DEFAULT_MAX_LENGTH,
    batch_tokens: int = DEFAULT_BATCH_TOKENS, n_rows: int = 0, r: int = 8, base_dtype: str = "float32",
    on_gpu: bool = False, budget_name: str = "the memory available",
) -> LoraPlan:
    """The LoRA settings (micro-batch tokens, gradient checkpointing, evaluation chunk) that fit ``budget_bytes``.

    Raises InputError, naming the largest ``max_length`` that would fit (or saying that the model alone does not),
    when even one row per micro-batch with gradient checkpointing needs more. ``budget_name`` says in that message
    where the budget comes from.
    """
    shape = model_shape(model)
    if shape.max_positions:
        max_length = min(int(max_length), shape.max_positions)
    if max_length < 8:
        raise InputError(f"max_length must be at least 8 tokens; got {max_length}")
    kw = dict(n_rows=n_rows, r=r, base_dtype=base_dtype, on_gpu=on_gpu)
    plan = _fitting(shape, budget_bytes, max_length=max_length, batch_tokens=max(batch_tokens, max_length), **kw)
    if plan is not None:
        return plan
    need = estimate_peak(shape, max_length=max_length, batch_tokens=max_length, eval_tokens=max_length,
                         gradient_checkpointing=True, **kw)
    head = (f"LoRA on {shape.name} needs about {need / GB:.1f} GB at max length {max_length} (even one row per "
            f"micro-batch with gradient checkpointing) but {budget_name} is {round(budget_bytes / GB, 2):g} GB")
    length = max_length // 2
    while length >= 16:
        smaller = _fitting(shape, budget_bytes, max_length=length, batch_tokens=max(batch_tokens, length), **kw)
        if smaller is not None:
            raise InputError(f"{head}: max length {length} would fit (about {smaller.peak_bytes / GB:.1f} GB), "
                             "or use the mlp backbone")
        length //= 2
    raise InputError(f"{head}, and the model alone does not fit: use the mlp backbone or a smaller model")


def planned_config(config: Any, *, budget_bytes: float, budget_name: str, on_gpu: bool, n_rows: int,
                   max_length: int) -> tuple[Any, str]:
    """``LoraBackbone.plan_memory``: ``config`` (a ``FitConfig``) with the micro-batch tokens, gradient checkpointing
    and evaluation chunk of :func:`plan_lora` for ``budget_bytes``, ``PLAN_BATCH_SIZE`` rows per step, and the plan's
    line; InputError naming the max length that would fit when none does."""
    plan = plan_lora(budget_bytes, model=config.backbone_options.get("model", DEFAULT_MODEL),
                     max_length=int(max_length), n_rows=n_rows, on_gpu=on_gpu, budget_name=budget_name)
    options = {**config.backbone_options, **plan.backbone_options()}
    return (config.replace(backbone_options=options, max_batch_tokens=plan.batch_tokens, batch_size=PLAN_BATCH_SIZE),
            f"LoRA: {plan.describe()}.")
