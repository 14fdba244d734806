"""``load_reward_model`` (an export, a run directory or a third-party Hugging Face reward model) and what uses a
loaded model: ``reward_function`` (a TRL ``reward_funcs`` entry) and ``best_of_n``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalrm.errors import InputError
from causalrm.export.reward_models import (
    MANIFEST,
    RewardModel,
    _load_transformer,
    _read_manifest,
    _run_reward_model,
)
from causalrm.training.backbones.base import export_format


def load_reward_model(path: str | os.PathLike, *, device: str | torch.device | None = "auto", batch_size: int = 16,
                      trust_remote_code: bool = False) -> RewardModel:
    """Load a reward model in one call: ``load_reward_model(path).score(prompts, responses) -> np.ndarray``.

    ``path``: a folder written by ``causalrm export`` (merged or adapter-only Hugging Face folder, or an MLP export),
    a ``causalrm fit`` run directory, or any Hugging Face sequence-classification reward model with one output
    (local folder or id in the local cache). ``device``: "auto" (cuda when present), "cpu", "cuda".
    """
    source = str(path)
    p = Path(source)
    if p.is_dir():
        from causalrm.workflows.runs import is_run_dir

        if is_run_dir(p):
            return _load_run_model(p, device=device, batch_size=batch_size)
        manifest = _read_manifest(p)
        fmt = export_format(manifest.get("kind")) if manifest else None
        if fmt is not None and fmt.load is not None:  # the backbone's own loader (an MLP export); else transformers
            return fmt.load(p, manifest, device=device, batch_size=batch_size)
        if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
            raise InputError(f"{p}: not a reward model folder (no config.json, adapter_config.json or {MANIFEST}); "
                             "pass the OUT folder of `causalrm export` or a run directory")
    elif p.exists() or source.startswith((".", "/", "~")):
        raise InputError(f"{source}: no such folder; pass the OUT folder of `causalrm export` or a run directory")
    return _load_transformer(source, _read_manifest(p) if p.is_dir() else {}, device=device, batch_size=batch_size,
                             trust_remote_code=trust_remote_code)


def _load_run_model(run_dir: Path, *, device: Any, batch_size: int) -> RewardModel:
    from causalrm.workflows.runs import load_run

    run = load_run(run_dir)
    return _run_reward_model(run, device=device, batch_size=batch_size)


def reward_function(path_or_model: Any, *, batch_size: int = 16, device: str | torch.device | None = "auto",
                    scale: float = 1.0) -> Callable[..., list[float]]:
    """A TRL ``reward_funcs`` entry: ``f(prompts, completions, **kwargs) -> list[float]`` (reward logits x ``scale``).

    ``path_or_model``: a :class:`RewardModel`, anything :func:`load_reward_model` accepts, or an object with
    ``score(prompts, responses)``. Prompts / completions are strings (standard datasets) or lists of
    ``{"role", "content"}`` messages (conversational datasets); extra keyword arguments TRL passes (dataset columns,
    ``completion_ids``, ``trainer_state``, ...) are ignored.
    """
    rm = _as_reward_model(path_or_model, batch_size=batch_size, device=device)

    def causalrm_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        scores = np.asarray(rm.score(list(prompts), list(completions)), dtype=np.float64) * float(scale)
        return [float(s) for s in scores]

    causalrm_reward.reward_model = rm  # type: ignore[attr-defined]
    return causalrm_reward


def best_of_n(model: Any, prompt: Any, candidates: Sequence[Any]) -> tuple[Any, np.ndarray]:
    """Best-of-N selection: ``(best candidate, scores of all candidates)``; ties go to the first.

    ``model``: a :class:`RewardModel`, a path :func:`load_reward_model` accepts, or a TRL-style reward function
    ``f(prompts, completions) -> list[float]`` (e.g. from :func:`reward_function`).
    """
    candidates = list(candidates)
    if not candidates:
        raise InputError("best_of_n needs at least one candidate response")
    if callable(model) and not hasattr(model, "score"):
        scores = np.asarray(model([prompt] * len(candidates), candidates), dtype=np.float64)
    else:
        scores = np.asarray(_as_reward_model(model).score([prompt] * len(candidates), candidates), dtype=np.float64)
    return candidates[int(np.argmax(scores))], scores


# --------------------------------------------------------------------------------------------------------------------
# TRL and best-of-N
# --------------------------------------------------------------------------------------------------------------------
def _as_reward_model(model: Any, **kw: Any) -> Any:
    if isinstance(model, RewardModel) or hasattr(model, "score") and not isinstance(model, (str, os.PathLike)):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_reward_model(model, **kw)
    raise InputError(f"expected a reward model, an export folder or a run directory, got {type(model).__name__}")
