"""Run directories: one fitted reward model with everything needed to reuse and audit it.

Layout (all JSON, safetensors and parquet; nothing pickled)::

    RUN_DIR/
      config.json        {"format": "causalrm-run", "version", "created", "causalrm_version", "fit": FitConfig, ...}
      backbone.json      backbone kind + architecture (Backbone.save)
      model.safetensors  weights
      metrics.json       training history (validation estimate per epoch, best epoch) and, when the log has clean
                         labels, test metrics (simulated logs: true_label on the test split; real logs: gold_label)
      nuisances.json     propensity diagnostics, flip-rate estimates and CIs
      scored.parquet     response_id, prompt, response, pair_id, split, reward (logit z), preference (sigma(z)),
                         plus observed / feedback / true_label / gold_label (with an audit's inclusion_probability
                         and audit_stratum) when the log has them

``save_run`` writes into a temporary folder next to ``RUN_DIR`` and renames it into place only when everything is
written, so a failure leaves nothing behind (and an existing run untouched). It refuses to replace a folder that is
not a run (non-empty without a run ``config.json``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from causalrm import __version__, distributed
from causalrm.atomic_io import atomic_dir, write_json_atomic
from causalrm.config import FitConfig
from causalrm.data import schema
from causalrm.errors import InputError
from causalrm.evaluation.metrics import evaluate_scores, sigmoid
from causalrm.training.backbones.base import Backbone, load_backbone
from causalrm.workflows.pipeline import FitResult, score_with

RUN_FORMAT = "causalrm-run"
RUN_VERSION = 1
CONFIG, METRICS, NUISANCES, SCORED = "config.json", "metrics.json", "nuisances.json", "scored.parquet"
SCORED_COLUMNS = (schema.RESPONSE_ID, schema.PROMPT, schema.RESPONSE, schema.PAIR_ID, schema.SPLIT)
EXTRA_COLUMNS = (schema.OBSERVED, schema.FEEDBACK, schema.TRUE_LABEL, schema.GOLD_LABEL, schema.INCLUSION_PROBABILITY,
                 schema.AUDIT_STRATUM)


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a run ``config.json`` (format ``causalrm-run``)."""
    cfg = Path(path) / CONFIG
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def scored_table(log: pl.DataFrame, rewards: np.ndarray, *, split: np.ndarray | None = None) -> pl.DataFrame:
    """The scored log: identifying columns of ``log``, ``reward`` (logit z) and ``preference`` (sigma(z)).

    ``split``: the role each row had in fitting (overrides the log's ``split`` column, which may be empty).
    """
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if rewards.size != log.height:
        raise InputError(f"{rewards.size} rewards for a log of {log.height} rows")
    cols: list[pl.Series] = []
    for c in SCORED_COLUMNS:
        if c == schema.SPLIT and split is not None:
            cols.append(pl.Series(c, [str(s) for s in split], dtype=pl.String))
        elif c in log.columns:
            cols.append(log[c])
    cols.append(pl.Series("reward", rewards, dtype=pl.Float64))
    cols.append(pl.Series("preference", sigmoid(rewards), dtype=pl.Float64))
    cols += [log[c] for c in EXTRA_COLUMNS if c in log.columns]
    return pl.DataFrame(cols)


def _prepare_target(run_dir: Path) -> None:
    if run_dir.exists():
        if not run_dir.is_dir():
            raise InputError(f"{run_dir}: exists and is not a folder; choose another --out")
        if any(run_dir.iterdir()) and not is_run_dir(run_dir):
            raise InputError(f"{run_dir}: folder exists and is not a causalrm run; choose another --out or empty it")
    run_dir.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _atomic_dir(run_dir: Path):
    """Yield a temporary folder next to ``run_dir``; on success it replaces ``run_dir`` (an old run is removed)."""
    _prepare_target(run_dir)
    with atomic_dir(run_dir) as tmp:
        yield tmp


def save_run(
    result: FitResult, log: pl.DataFrame, X: np.ndarray | None, run_dir: str | os.PathLike, *,
    source: str | None = None, extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``result`` as a run directory (layout in the module docstring), atomically; returns its path.

    ``log``/``X``: the fitted log and its embeddings (``X`` None = embed with the run's embedder); every row is
    scored (test rows included: scoring is not fitting). ``source``: where the log came from (recorded).
    Under ``accelerate launch`` / torchrun (``causalrm.distributed``) only rank 0 writes; every rank returns when
    the run is written.
    """
    run_dir = Path(run_dir)
    if not distributed.is_main():  # data-parallel (accelerate launch): rank 0 writes, the others wait for it
        distributed.wait()
        return run_dir
    try:
        return _save_run(result, log, X, run_dir, source=source, extra=extra)
    finally:
        distributed.wait()


def _save_run(result: FitResult, log: pl.DataFrame, X: np.ndarray | None, run_dir: Path, *, source: str | None,
              extra: dict[str, Any] | None) -> Path:
    _prepare_target(run_dir)
    rewards = result.score(log, X)
    split = result.split if len(result.split) == log.height else None
    evaluation = evaluate_scores(log, rewards, split=split, n_boot=200, seed=result.config.seed)
    history = result.history.to_dict()
    metrics = {
        "method": result.config.method,
        "validation": {"best_epoch": history["best_epoch"], "best_val_estimate": history["best_val_estimate"],
                       "epochs": history["epochs"], "stop_reason": history["stop_reason"]},
        "history": history,
        "test": evaluation,
        "seconds": result.seconds,
        "selection": result.selection,
        "learned": None if result.learned is None else result.learned.passed,
        "learning": result.learned,
        "gates": {name: gate for name, gate in result.nuisances.gates.items()},
        "choice": result.choice,
        "world_size": distributed.world_size(),  # processes that trained it (accelerate launch / torchrun; 1 = one)
    }
    config = {
        "format": RUN_FORMAT, "version": RUN_VERSION, "causalrm_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": result.config.method, "backbone": result.backbone.name, "embedder": result.config.embedder,
        "source": source, "n_rows": log.height,
        "rows": {s: int(np.sum(result.split == s)) for s in (schema.TRAIN, schema.VAL, schema.TEST)},
        "fit": result.config.to_dict(), **(extra or {}),
    }
    with _atomic_dir(run_dir) as tmp:
        result.backbone.save(tmp)
        write_json_atomic(metrics, tmp / METRICS)
        write_json_atomic(result.nuisances.to_dict(), tmp / NUISANCES)
        scored_table(log, rewards, split=split).write_parquet(tmp / SCORED)
        write_json_atomic(config, tmp / CONFIG)  # last: its presence marks a complete run
    return run_dir


@dataclass
class Run:
    """A loaded run directory: ``config`` (FitConfig), ``backbone``, ``metrics``, ``nuisances`` and ``info``
    (the raw ``config.json``)."""

    path: Path
    config: FitConfig
    backbone: Backbone
    metrics: dict[str, Any] = field(default_factory=dict)
    nuisances: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def score(self, log: pl.DataFrame, X: np.ndarray | None = None) -> np.ndarray:
        """Reward logits of every row of ``log`` (``X`` None = embed with the run's embedder)."""
        return score_with(self.backbone, self.config, log, X)

    def scored(self) -> pl.DataFrame:
        """The scored log written at fit time."""
        path = self.path / SCORED
        if not path.is_file():
            raise InputError(f"{self.path}: no {SCORED}; score a log with `causalrm score`")
        return pl.read_parquet(path)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: unreadable {what} ({err}); re-run `causalrm fit`") from err
    return data if isinstance(data, dict) else {}


def load_run(run_dir: str | os.PathLike, *, device: str = "cpu") -> Run:
    """Load a run directory written by :func:`save_run` (JSON + safetensors only)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory; pass the --out folder of `causalrm fit`")
    if not is_run_dir(run_dir):
        from causalrm.export.reward_models import MANIFEST

        if (run_dir / MANIFEST).is_file():
            raise InputError(f"{run_dir}: an export of a run (causalrm export), not a run directory; `causalrm score` "
                             "and causalrm.load_reward_model read it, this needs the run (a `causalrm fit` --out)")
        raise InputError(f"{run_dir}: not a causalrm run directory (no run config.json); pass a `causalrm fit` --out")
    info = _read_json(run_dir / CONFIG, "run config")
    if int(info.get("version", 0)) > RUN_VERSION:
        raise InputError(f"{run_dir}: written by a newer causalrm (run format {info.get('version')}); upgrade")
    config = FitConfig.from_dict(info.get("fit") or {})
    backbone = load_backbone(run_dir, device=device)
    return Run(path=run_dir, config=config, backbone=backbone, metrics=_read_json(run_dir / METRICS, "metrics"),
               nuisances=_read_json(run_dir / NUISANCES, "nuisances"), info=info)


def score_log(run: str | os.PathLike | Run, log: pl.DataFrame, X: np.ndarray | None = None) -> pl.DataFrame:
    """Score ``log`` with a run (path or :class:`Run`): the scored table of :func:`scored_table`.

    ``X`` None = embed the log with the run's embedder (cached for bundled texts).
    """
    run = run if isinstance(run, Run) else load_run(run)
    rewards = run.score(log, X)
    return scored_table(log, rewards)
