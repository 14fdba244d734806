"""MLP reward head on frozen embeddings: x (d) -> 256 -> 64 -> 1, LeakyReLU (the paper's head).

The embeddings ``X`` are computed once (``causalrm.embeddings``) and held as one tensor; after the first batch a copy
lives on the training device, so a minibatch is a single index into it. Memory-mapped embeddings (large logs) are
never copied: each minibatch gathers its rows from the map by index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch

from causalrm.errors import InputError
from causalrm.training.backbones import mlp_export
from causalrm.training.backbones.base import (
    Backbone,
    ExportFormat,
    ExportPlan,
    as_int_tuple,
    hidden_label,
    register_backbone,
    seeded_init,
)

#: the export of an MLP run (:mod:`causalrm.training.backbones.mlp_export`); its manifest kind "mlp" is what exports on disk hold
EXPORT = ExportFormat(kind="mlp", summary=lambda m: f"MLP head on {m.get('embedder')} embeddings, encoder bundled",
                      card_model=mlp_export.card_model, card_input=mlp_export.card_input,
                      card_usage=mlp_export.card_usage, load=mlp_export.load_export, check=mlp_export.check_export)


class TensorFeatures:
    """Fixed-size vectors ``X`` (float32, ``(n, d)``) as model inputs; ``batch`` yields ``{"x": X[idx]}``.

    An in-memory matrix is copied to a device once, on first use there, and reused for every batch. A memory-mapped
    one (``np.memmap`` or ``causalrm.data.rowmatrix.RowView``, from ``read_embeddings``) is never copied whole: each
    batch gathers its rows by index (``torch.from_numpy(X[idx])``) and moves only them to the device.
    """

    lengths = None

    def __init__(self, X: np.ndarray | torch.Tensor) -> None:
        from causalrm.data.rowmatrix import RowView, check_finite, is_lazy

        self.rows_view: RowView | None = None
        if not isinstance(X, torch.Tensor) and is_lazy(X):
            self.rows_view = X if isinstance(X, RowView) else RowView(X)
            if self.rows_view.dtype != np.float32:
                raise InputError(f"memory-mapped embeddings must be float32, got {self.rows_view.dtype}")
            check_finite(self.rows_view, "embeddings")
            self.X = None
            self._on: dict[str, torch.Tensor] = {}
            return
        X = torch.as_tensor(np.asarray(X, dtype=np.float32)) if not isinstance(X, torch.Tensor) else X.float()
        if X.ndim != 2:
            raise InputError(f"embeddings must be a 2-D matrix (rows, dims); got shape {tuple(X.shape)}")
        if not torch.isfinite(X).all():
            raise InputError("embeddings contain NaN or infinite values; re-embed the log")
        self.X = X
        self._on = {str(X.device): X}

    def __len__(self) -> int:
        return len(self.rows_view) if self.rows_view is not None else int(self.X.shape[0])

    @property
    def dim(self) -> int:
        return self.rows_view.shape[1] if self.rows_view is not None else int(self.X.shape[1])

    def to(self, device: torch.device | str) -> TensorFeatures:
        """Place a copy on ``device`` now (later batches there index it directly); memory-mapped rows stay put."""
        if self.rows_view is None:
            self.on(device)
        return self

    def on(self, device: torch.device | str) -> torch.Tensor:
        if self.rows_view is not None:
            raise InputError("memory-mapped features are gathered per batch (batch(idx, device)), not copied whole")
        key = str(torch.device(device))
        if key not in self._on:
            self._on[key] = self.X.to(device)
        return self._on[key]

    def batch(self, idx: torch.Tensor, device: torch.device | str) -> dict[str, torch.Tensor]:
        if self.rows_view is not None:
            x = torch.from_numpy(self.rows_view.take(idx.cpu().numpy()))
            return {"x": x.to(device, non_blocking=True)}
        X = self.on(device)
        return {"x": X.index_select(0, idx.to(X.device))}

    def subset(self, rows: np.ndarray | torch.Tensor) -> TensorFeatures:
        if self.rows_view is not None:
            return TensorFeatures(self.rows_view[np.asarray(rows)])
        return TensorFeatures(self.X[torch.as_tensor(np.asarray(rows), dtype=torch.long)])


@register_backbone
class MLPBackbone(Backbone):
    """Reward head ``z = MLP(x)``: Linear(d, h1) - LeakyReLU - ... - Linear(h_k, 1), default hidden ``(256, 64)``.

    ``standardize``: train on ``(x - mean) / sd`` (per dimension, over the rows ``build`` is given: the fit rows; no
    label is read) with the output layer started at zero, so z = 0 everywhere at the start and Adam's steps weigh
    every dimension alike (the ranking head's start, docs/METHOD.md "Ranking under noise"). :meth:`after_training`
    folds the map into the first layer, W' = W / sd, b' = b - W' mean, so the trained head reads raw embeddings
    like any other: saved runs, exports and scoring see a plain MLP.
    """

    name = "mlp"
    needs_embeddings = True
    config_fields = ("hidden", "standardize")  # FitConfig's (also the bench's --hidden and select_head's other head)
    selects_head = True
    label = "head on frozen embeddings"
    # The app's patience is 5 where the CLI's is 30: seconds, not half a minute (docs/RESULTS.md, "Interactive
    # speed"); on the default sample every method keeps the same best epoch with either (none improves on its best
    # in the 30 epochs after it)
    app_epochs = (40, 5)
    export_formats = (EXPORT,)

    def __init__(
        self, input_dim: int, hidden: tuple[int, ...] | list[int] = (256, 64), negative_slope: float = 0.01,
        dropout: float = 0.0, standardize: bool = False,
    ) -> None:
        super().__init__()
        if int(input_dim) <= 0:
            raise InputError(f"input_dim must be positive, got {input_dim}")
        self.input_dim = int(input_dim)
        self.hidden = as_int_tuple(hidden)
        self.negative_slope = float(negative_slope)
        self.dropout = float(dropout)
        layers: list[torch.nn.Module] = []
        width = self.input_dim
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.LeakyReLU(self.negative_slope)]
            if self.dropout > 0:
                layers.append(torch.nn.Dropout(self.dropout))
            width = h
        layers.append(torch.nn.Linear(width, 1))
        self.net = torch.nn.Sequential(*layers)
        self.standardize = bool(standardize)
        if self.standardize:
            self.register_buffer("x_mean", torch.zeros(self.input_dim))
            self.register_buffer("x_sd", torch.ones(self.input_dim))
            torch.nn.init.zeros_(layers[-1].weight)
            torch.nn.init.zeros_(layers[-1].bias)

    def set_standardization(self, X: np.ndarray) -> None:
        """Set the per-dimension mean and sd (a floor of 1e-6) from the rows of ``X`` (read in chunks: a
        memory-mapped matrix is never copied whole)."""
        from causalrm.data.rowmatrix import iter_blocks

        total, squares, n = np.zeros(self.input_dim), np.zeros(self.input_dim), 0
        for _, _, block in iter_blocks(X):
            block = block.astype(np.float64)
            total += block.sum(0)
            squares += (block ** 2).sum(0)
            n += block.shape[0]
        if n == 0:
            raise InputError("a standardised head needs at least one row of embeddings")
        mean = total / n
        sd = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
        self.x_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.x_sd.copy_(torch.as_tensor(np.maximum(sd, 1e-6), dtype=torch.float32))

    def after_training(self) -> None:
        """Fold the standardisation into the first layer (class docstring); a no-op without it."""
        if not self.standardize:
            return
        first = self.net[0]
        with torch.no_grad():
            weight = first.weight / self.x_sd
            first.bias.sub_(weight @ self.x_mean)
            first.weight.copy_(weight)
        del self.x_mean, self.x_sd
        self.standardize = False

    @classmethod
    def build(cls, X: np.ndarray | None, options: dict[str, Any], *, seed: int = 0) -> MLPBackbone:
        if X is None:
            raise InputError("the mlp backbone needs embeddings; pass --embeddings or let causalrm embed the log")
        opts = dict(options)
        unknown = set(opts) - {"hidden", "negative_slope", "dropout", "standardize"}
        if unknown:
            raise InputError(f"unknown mlp backbone option(s) {sorted(unknown)}; use hidden, negative_slope, dropout, "
                             "standardize")
        model = seeded_init(seed, cls, int(np.shape(X)[1]), **opts)
        if model.standardize:
            model.set_standardization(X)
        return model

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "hidden": list(self.hidden), "negative_slope": self.negative_slope,
                "dropout": self.dropout, "standardize": self.standardize}

    def featurize(self, log: pl.DataFrame | None, X: np.ndarray | None) -> TensorFeatures:
        if X is None:
            raise InputError("the mlp backbone needs embeddings for the log; pass --embeddings or an embedder")
        feats = X if isinstance(X, TensorFeatures) else TensorFeatures(X)
        if log is not None and len(feats) != log.height:
            raise InputError(f"embeddings have {len(feats)} rows but the log has {log.height}; embed this log")
        if feats.dim != self.input_dim:
            raise InputError(
                f"embeddings have {feats.dim} dims but the model expects {self.input_dim}; use the run's embedder"
            )
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.standardize:
            x = (x - self.x_mean) / self.x_sd
        return self.net(x).squeeze(-1)

    @classmethod
    def head_label(cls, config: Any) -> str:
        return hidden_label(config.hidden)

    def export(self, run: Any, *, adapter_only: bool, embedder: str | None, probes: tuple[list, list],
               atol: float) -> ExportPlan:
        """A transformers folder holding the embedder's encoder and this head (:mod:`causalrm.training.backbones.mlp_export`)."""
        if adapter_only:
            raise InputError(f"--adapter-only applies to LoRA runs; {run.path} holds a {self.name!r} backbone")
        return mlp_export.export_plan(self, run, embedder=embedder, probes=probes, atol=atol)
