"""Backbone contract: what the trainer needs from a reward model, whatever sits under its head.

A *backbone* maps the rows of an impression log to reward logits z (shape ``(n,)``). Two pieces:

- :class:`Features` — the model inputs for ``n`` rows (a float matrix of frozen embeddings, token ids, ...), with
  ``batch(idx, device)`` returning the keyword arguments of ``Backbone.forward`` for the rows ``idx``.
- :class:`Backbone` — a ``torch.nn.Module`` with ``featurize(log, X) -> Features``, ``forward(**batch) -> logits``,
  ``trainable_parameters()`` (what the optimiser updates; the default is every parameter with ``requires_grad``),
  and ``save(run_dir)`` / ``Backbone.load(run_dir)`` through safetensors weights plus a JSON config (never pickle).

Backbones register under a name (``@register_backbone``); ``get_backbone_class(name)`` imports
``causalrm.training.backbones.<name>`` on first use, so heavy backbones (``lora``: transformers + peft) cost nothing until asked.

Everything outside this package asks the class, never its name: its options (``options``, a dataclass of
``causalrm.options.option`` fields: ``causalrm fit``'s flags and ``FitConfig.backbone_options``; ``config_fields``:
the ``FitConfig`` fields it reads), whether it needs embeddings, ``selects_head``, its memory plan
(``plan_memory``), its export (``export`` and ``export_formats``: how each manifest kind is described and loaded),
what the app proposes and shows (``label``, ``app_epochs``, ``head_label``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import polars as pl
import torch

from causalrm.atomic_io import write_json_atomic
from causalrm.errors import InputError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "backbone.json"
FORMAT = "causalrm-backbone"


@runtime_checkable
class Features(Protocol):
    """Model inputs for ``n`` rows, on the host or already on the device.

    ``lengths`` holds per-row token counts for length-sorted batching (``None`` for fixed-size vectors).
    ``batch(idx, device)`` returns the keyword arguments of ``Backbone.forward`` for rows ``idx`` (a LongTensor).
    """

    lengths: np.ndarray | None

    def __len__(self) -> int: ...

    def batch(self, idx: torch.Tensor, device: torch.device | str) -> dict[str, torch.Tensor]: ...


_REGISTRY: dict[str, type[Backbone]] = {}


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute `name` to be registered")
    _REGISTRY[name] = cls
    return cls


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone (a plug-in's test cleans up after itself)."""
    _REGISTRY.pop(name, None)


def available_backbones() -> tuple[str, ...]:
    """Registered backbone names: every module of :mod:`causalrm.training.backbones` that imports here is imported, so a new
    backbone is one file (``mlp`` always; ``lora`` once transformers and peft are installed)."""
    import pkgutil

    import causalrm.training.backbones as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _REGISTRY and info.name not in _NOT_BACKBONES and not info.name.startswith("_"):
            try:
                importlib.import_module(f"causalrm.training.backbones.{info.name}")
            except ImportError:
                pass
    return tuple(sorted(_REGISTRY))


_NOT_BACKBONES = frozenset({"base", "hf_models", "lora_export", "lora_memory", "mlp_export"})  # helper modules of the package


def get_backbone_class(name: str) -> type[Backbone]:
    """The backbone class registered as ``name`` (imports ``causalrm.training.backbones.<name>`` on first use)."""
    if name not in _REGISTRY and isinstance(name, str) and name.isidentifier():
        try:
            importlib.import_module(f"causalrm.training.backbones.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"causalrm.training.backbones.{name}":
                raise InputError(f"backbone {name!r} needs the missing package {err.name!r}; install it") from err
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "mlp"
        raise InputError(f"unknown backbone {name!r}; choose one of: {known}")
    return _REGISTRY[name]


@dataclass(frozen=True)
class ExportFormat:
    """One kind of export folder, named by its manifest's ``kind`` (kept on disk as written: exports must still load).

    ``summary``: `causalrm export`'s words for it; ``card_model`` / ``card_input``: the model card's **Model** and
    **Input** lines; ``card_usage``: its usage lines beyond ``causalrm.load_reward_model``; ``library``: the card's
    ``library_name``; ``load``: ``(folder, manifest, *, device, batch_size) -> RewardModel`` (``None``: transformers'
    sequence-classification loader); ``check``: ``(folder, reward_model, reference, probes, atol)``, the kind's own
    checks of a fresh export before its scores are compared with the run's.
    """

    kind: str
    summary: Callable[[dict[str, Any]], str]
    card_model: Callable[[dict[str, Any]], str]
    card_input: Callable[[dict[str, Any]], str]
    card_usage: Callable[[dict[str, Any]], list[str]]
    library: str = "transformers"
    load: Callable[..., Any] | None = None
    check: Callable[..., None] | None = None


@dataclass
class ExportPlan:
    """What ``Backbone.export`` decided for one run: the manifest's backbone entries (``kind`` first), the run's
    scores of the probe texts with the tolerance a reload must meet, and ``write(folder) -> manifest additions``."""

    manifest: dict[str, Any]
    reference: np.ndarray
    tolerance: float
    write: Callable[[Path], dict[str, Any]]


def export_format(kind: Any) -> ExportFormat | None:
    """The registered export format of manifest ``kind`` (``None``: no backbone writes it, e.g. a third-party
    Hugging Face model)."""
    available_backbones()
    for cls in _REGISTRY.values():
        for fmt in cls.export_formats:
            if fmt.kind == kind:
                return fmt
    return None


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class Backbone(torch.nn.Module):
    """Base class of reward-model backbones: rows of a log -> reward logits z, shape ``(n,)``.

    Subclasses set ``name``, implement ``build``, ``featurize``, ``forward`` and ``get_config`` (JSON-able keyword
    arguments of ``__init__``); ``save``/``load`` then work unchanged. ``needs_embeddings`` says whether
    ``featurize`` needs the embedding matrix ``X`` (the MLP head) or reads the texts itself (a transformer).

    Declarations the command line, ``FitConfig``, the export and the app read (the defaults suit a head on
    embeddings with no options of its own):

    - ``options``: a dataclass of ``causalrm.options.option`` fields, the backbone's keyword arguments; those with a
      flag are ``causalrm fit`` options (:meth:`add_arguments`, :meth:`options_from_args`, :meth:`options_cli`),
      the others are set in Python or by :meth:`plan_memory`. ``None``: no options of its own.
    - ``model_option``: the option ``--model`` sets (a backbone that reads text: the model to fine-tune; the
      nuisances then embed with the default embedder); ``None``: ``--model`` is the embedder.
    - ``config_fields``: ``FitConfig`` fields passed to :meth:`build` (the MLP: ``hidden``).
    - ``selects_head``: ``FitConfig.select_head`` (a linear head tried beside the configured one) applies.
    - ``label``: what the app's backbone list says about it; ``app_epochs``: the (max epochs, patience) the app's
      Train tab proposes.
    - ``export_formats``: the :class:`ExportFormat` of each manifest kind :meth:`export` writes.
    """

    name: ClassVar[str] = ""
    needs_embeddings: ClassVar[bool] = True
    options: ClassVar[type | None] = None
    model_option: ClassVar[str | None] = None
    config_fields: ClassVar[tuple[str, ...]] = ()
    selects_head: ClassVar[bool] = False
    label: ClassVar[str] = ""
    app_epochs: ClassVar[tuple[int, int]] = (40, 5)
    export_formats: ClassVar[tuple[ExportFormat, ...]] = ()

    # -------------------------------------------------------------------------------------------------- options
    @classmethod
    def _option_fields(cls, *, flagged: bool) -> list[dataclasses.Field]:
        from causalrm.options import cli_fields

        if cls.options is None:
            return []
        with_flag = {f.name for f in cli_fields(cls.options)}
        return [f for f in dataclasses.fields(cls.options) if (f.name in with_flag) == flagged]

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """The flagged ``options`` as ``causalrm fit`` options, in a group of their own (the first line of the
        options' docstring says what ``--model`` means for this backbone)."""
        if not cls._option_fields(flagged=True):
            return
        from causalrm.options import add_arguments

        doc = (cls.options.__doc__ or "").strip().splitlines()
        group = parser.add_argument_group(f"{cls.name} backbone (--backbone {cls.name}" +
                                          (f"; {doc[0].rstrip('.')})" if doc else ")"))
        add_arguments(group, cls.options, prefix=f"{cls.name}:")

    @classmethod
    def options_from_args(cls, args: Any) -> dict[str, Any]:
        """``FitConfig.backbone_options`` from parsed ``causalrm fit`` arguments: ``model_option`` (from ``--model``)
        and every flagged option, its default where the command line leaves it out."""
        if cls.options is None:
            return {}
        from causalrm.options import from_args

        given = from_args(cls.options, args, prefix=f"{cls.name}:")
        if cls.model_option and getattr(args, "embedder", None):
            given[cls.model_option] = args.embedder
        values = cls.options(**given)
        keys = {cls.model_option} | {f.name for f in cls._option_fields(flagged=True)}
        return {f.name: _plain(getattr(values, f.name)) for f in dataclasses.fields(values) if f.name in keys}

    @classmethod
    def options_cli(cls, options: dict[str, Any]) -> list[str]:
        """The ``causalrm fit`` flags that reproduce ``options`` (the inverse of :meth:`options_from_args`): the
        flagged options that differ from their defaults, ``--model`` for ``model_option``. Options without a flag
        are not written; a key the backbone does not declare is an InputError (the command would not reproduce it)."""
        if not options:
            return []
        declared = {f.name for f in dataclasses.fields(cls.options)} if cls.options is not None else set()
        if set(options) - declared:
            raise InputError(f"FitConfig.backbone_options = {options!r} has no command-line option; the equivalent "
                             "command would not reproduce it")
        from causalrm.options import to_cli

        values = cls.options(**options)
        out: list[str] = []
        if cls.model_option:
            model = getattr(values, cls.model_option)
            default = next(f.default for f in dataclasses.fields(values) if f.name == cls.model_option)
            if model is not None and model != default:
                out += ["--model", str(model)]
        return out + to_cli(values, skip=[f.name for f in cls._option_fields(flagged=False)])

    @classmethod
    def head_label(cls, config: Any) -> str:
        """How the app's table of trained models names the head of a fit with ``config`` ("–": nothing to say)."""
        return "–"

    @classmethod
    def plan_memory(cls, config: Any, *, budget_bytes: float, budget_name: str, on_gpu: bool, n_rows: int,
                    max_length: int) -> tuple[Any, str]:
        """``config`` with the settings that fit ``budget_bytes`` (``budget_name`` in messages) and one line saying
        so ("": no plan); InputError when the job cannot fit. ``max_length``: tokens per (prompt, response), for
        backbones that read text. Default: ``config`` unchanged."""
        return config, ""

    # ------------------------------------------------------------------------------------------------------ export
    def export(self, run: Any, *, adapter_only: bool, embedder: str | None, probes: tuple[list, list],
               atol: float) -> ExportPlan:
        """How ``causalrm export`` writes ``run`` (this backbone, trained): see :class:`ExportPlan`.
        ``adapter_only`` / ``embedder``: `causalrm export`'s options, refused by a backbone they do not apply to."""
        raise InputError(f"{run.path}: cannot export a {self.name!r} backbone yet")

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, X: np.ndarray | None, options: dict[str, Any], *, seed: int = 0) -> Backbone:
        """A freshly initialised backbone for data like ``X`` (``options``: backbone-specific keyword arguments)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-able keyword arguments that rebuild this backbone's architecture (weights excluded)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Backbone:
        return cls(**config)

    # ------------------------------------------------------------------------------------------------ model inputs
    def featurize(self, log: pl.DataFrame, X: np.ndarray | None) -> Features:
        raise NotImplementedError

    def featurize_texts(self, prompts: Sequence[Any], responses: Sequence[Any], *, embedder: Any = None) -> Features:
        """Features of (prompt, response) texts (strings or ``{"role", "content"}`` message lists) for scoring.

        Default: ``embedder``'s vectors of the texts (message lists flattened to text), through :meth:`featurize`.
        Backbones that read text themselves (LoRA) override it.
        """
        if not self.needs_embeddings:
            raise InputError(f"backbone {self.name!r} cannot score texts yet")
        if embedder is None:
            raise InputError(f"the {self.name} backbone scores embeddings: pass the embedder of its run")
        from causalrm.data.chat import render_prompt

        X = embedder.embed([render_prompt(p) for p in prompts], [render_prompt(r) for r in responses])
        return self.featurize(None, np.asarray(X, dtype=np.float32))

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_training(self) -> None:
        """Called once training ends (best weights restored), before scoring or saving: the MLP head folds its input
        standardisation into its first layer here. Default: nothing."""

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimiser updates (default: all with ``requires_grad``; LoRA: the adapters and head)."""
        return [p for p in self.parameters() if p.requires_grad]

    # ----------------------------------------------------------------------------------------------- persistence
    def state_for_save(self) -> dict[str, torch.Tensor]:
        """Tensors written to ``model.safetensors`` (default: the full state dict; LoRA: adapters + head only)."""
        return dict(self.state_dict())

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state, strict=True)

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``backbone.json`` into the existing folder ``run_dir``."""
        from safetensors.torch import save_file

        run_dir = Path(run_dir)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_for_save().items()}
        save_file(state, str(run_dir / WEIGHTS_FILE), metadata={"format": FORMAT, "backbone": self.name})
        meta = {"format": FORMAT, "name": self.name, "config": self.get_config()}
        write_json_atomic(meta, run_dir / CONFIG_FILE)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, device: str | torch.device = "cpu") -> Backbone:
        """Rebuild a backbone saved by :meth:`save` (any registered kind when called on ``Backbone``)."""
        from safetensors.torch import load_file

        run_dir = Path(run_dir)
        cfg_path, w_path = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise InputError(f"{run_dir}: no saved backbone ({CONFIG_FILE} + {WEIGHTS_FILE}); pass a run directory")
        try:
            meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{cfg_path}: unreadable backbone config ({err}); re-run `causalrm fit`") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "name" not in meta:
            raise InputError(f"{cfg_path}: not a causalrm backbone config; re-run `causalrm fit`")
        klass = get_backbone_class(meta["name"]) if cls is Backbone or not cls.name else cls
        if klass.name != meta["name"]:
            raise InputError(f"{cfg_path}: holds a {meta['name']!r} backbone, not {klass.name!r}")
        model = klass.from_config(dict(meta.get("config") or {}))
        try:
            state = load_file(str(w_path), device=str(device))
            model.load_saved_state(state)
        except (RuntimeError, OSError, ValueError) as err:
            raise InputError(f"{w_path}: weights do not match {cfg_path} ({str(err).splitlines()[0]})") from err
        return model.to(device)


def seeded_init(seed: int, build: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``build(*args, **kwargs)`` with torch's CPU RNG seeded, leaving the global RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build(*args, **kwargs)


def as_int_tuple(values: Iterable[int] | int | str) -> tuple[int, ...]:
    """``(256, 64)`` from ``[256, 64]``, ``"256,64"`` or ``256``; InputError on anything else."""
    if isinstance(values, str):
        parts = [p for p in values.replace(" ", "").split(",") if p]
    elif isinstance(values, int):
        parts = [values]
    else:
        parts = list(values)
    try:
        out = tuple(int(v) for v in parts)
    except (TypeError, ValueError) as err:
        raise InputError(f"hidden sizes must be positive integers like 256,64; got {values!r}") from err
    if any(v <= 0 for v in out):
        raise InputError(f"hidden sizes must be positive integers like 256,64; got {values!r}")
    return out


def hidden_label(hidden: Iterable[int] | int | str) -> str:
    """How a head is named to people: ``"256,64"`` for those MLP hidden sizes, ``"linear"`` for none."""
    return ",".join(map(str, as_int_tuple(hidden))) or "linear"


#: ``FitConfig.backbone``'s default (and the app's): the paper's head on frozen embeddings
DEFAULT_BACKBONE = "mlp"


def build_backbone(name: str, X, options: dict | None = None, *, seed: int = 0) -> Backbone:
    """A freshly initialised backbone ``name`` for data like ``X`` (``options``: backbone-specific kwargs)."""
    return get_backbone_class(name).build(X, dict(options or {}), seed=seed)


def load_backbone(run_dir, *, device="cpu") -> Backbone:
    """The backbone saved in ``run_dir`` (safetensors + JSON), whatever its kind."""
    return Backbone.load(run_dir, device=device)
