"""``export_run``: a run as a Hugging Face folder (the backbone's export plan, the manifest, the model card),
reloaded and checked against the run's scores on probe texts before it is moved into place."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from causalrm.atomic_io import atomic_dir, write_json_atomic, write_text_atomic
from causalrm.errors import InputError
from causalrm.export.loading import load_reward_model
from causalrm.export.model_card import model_card, run_summary
from causalrm.export.reward_models import EXPORT_FORMAT, EXPORT_VERSION, MANIFEST, PROBE_PROMPTS, PROBE_RESPONSES
from causalrm.training.backbones.base import export_format


# --------------------------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_folder(out: Path, *, overwrite: bool):
    """Yield a temporary folder next to ``out``; on success it is renamed to ``out`` (replacing it if allowed)."""
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; choose another OUT")
        if any(out.iterdir()) and not overwrite:
            raise InputError(f"{out}: folder exists and is not empty; choose another OUT or pass --overwrite")
    with atomic_dir(out) as tmp:  # raises InputError when out's parent folder is missing
        yield tmp


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    adapter_only: bool = False,
    overwrite: bool = False,
    embedder: str | None = None,
    verify: bool = True,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Export the run in ``run_dir`` to the folder ``out`` (see the module docstring); returns the manifest.

    ``adapter_only``: LoRA runs only, write the peft adapter instead of merged weights. ``embedder``: MLP runs only,
    the embedding model id to record (default: the run's). ``verify``: reload the export and compare its scores on
    probe texts with the run's (``atol`` plus a relative 1e-3; looser for bf16 bases); nothing is written on failure.
    """
    from causalrm.workflows.runs import load_run

    run = load_run(run_dir)
    out = Path(out)
    probes = (list(PROBE_PROMPTS), list(PROBE_RESPONSES))
    plan = run.backbone.export(run, adapter_only=adapter_only, embedder=embedder, probes=probes, atol=atol)
    summary = run_summary(run)
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "causalrm_version": __import__("causalrm").__version__,
        "run": Path(run_dir).resolve().name, "training": summary, **plan.manifest,
    }
    from causalrm.training.backbones.hf_models import no_progress_bars

    with _atomic_folder(out, overwrite=overwrite) as tmp, no_progress_bars():
        manifest.update(plan.write(tmp))
        write_json_atomic(manifest, tmp / MANIFEST)
        write_text_atomic(model_card(manifest), tmp / "README.md")
        bad = [f.name for f in tmp.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")]
        if bad:
            raise InputError(f"export would contain pickled files {bad}; please report this")
        if verify:
            _verify(tmp, manifest, plan.reference, probes, plan.tolerance)
    return manifest


def _verify(path: Path, manifest: dict[str, Any], reference: np.ndarray, probes: tuple[list, list],
            atol: float) -> None:
    """Reload the export and check it: its format's own checks (no newly initialised weights, the adapter's keys,
    transformers alone), then the same scores as the run on the probes."""
    rm = load_reward_model(path, device="cpu")
    fmt = export_format(manifest["kind"])
    if fmt.check is not None:
        fmt.check(path, rm, reference, probes, atol)
    scores = rm.score(*probes)
    if not np.allclose(scores, reference, atol=atol, rtol=1e-3):
        raise InputError(f"export check failed: reloaded scores {np.round(scores, 5).tolist()} differ from the run's "
                         f"{np.round(reference, 5).tolist()}; please report this")
