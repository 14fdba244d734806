"""The role of each row of a log in a fit: ``train``, ``val`` or ``test`` (``resolve_split``), and the seeded split
of whole prompt groups that assigns rows without one (``group_split``). Test rows are never read by a fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError


def group_split(log: pl.DataFrame, rows: np.ndarray, *, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask over ``rows``: True = val. Seeded split of whole prompt groups (pair_id / prompt text).

    ``round(val_fraction * G)`` of the ``G`` groups (at least 1, at most ``G - 1``) go to val, chosen by a
    ``numpy.random.default_rng(seed)`` permutation.
    """
    from causalrm.data.splits import prompt_groups

    sub = log[rows.tolist()] if rows.size else log.clear()
    prompts = sub[schema.PROMPT].to_list() if schema.PROMPT in sub.columns else [None] * len(rows)
    pairs = sub[schema.PAIR_ID].cast(pl.String).to_list() if schema.PAIR_ID in sub.columns else [None] * len(rows)
    groups = prompt_groups(prompts, pairs)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    if n_groups < 2:
        raise InputError(
            f"only {n_groups} prompt group(s) available for train/val; add rows or give a 'split' column with val rows"
        )
    n_val = min(max(1, int(round(val_fraction * n_groups))), n_groups - 1)
    val_groups = np.zeros(n_groups, dtype=bool)
    val_groups[np.random.default_rng(seed).permutation(n_groups)[:n_val]] = True
    return val_groups[groups]


def resolve_split(log: pl.DataFrame, *, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Role of each row: ``"train"``, ``"val"`` or ``"test"`` (object array, one per row; see the module docstring)."""
    n = log.height
    if schema.SPLIT in log.columns:
        raw = log[schema.SPLIT].cast(pl.String).to_list()
        bad = sorted({s for s in raw if s is not None and s not in (schema.TRAIN, schema.VAL, schema.TEST)})
        if bad:
            raise InputError(f"column 'split' has value(s) {bad}; use train, val, test or leave it empty")
        split = np.array([s if s is not None else "" for s in raw], dtype=object)
    else:
        split = np.full(n, "", dtype=object)
    unassigned = np.flatnonzero(split == "")
    if unassigned.size:
        is_val = group_split(log, unassigned, val_fraction=val_fraction, seed=seed)
        split[unassigned] = np.where(is_val, schema.VAL, schema.TRAIN)
    if not np.any(split == schema.VAL):
        train_rows = np.flatnonzero(split == schema.TRAIN)
        is_val = group_split(log, train_rows, val_fraction=val_fraction, seed=seed)
        split[train_rows[is_val]] = schema.VAL
    if not np.any(split == schema.TRAIN):
        raise InputError("no training rows: every row has split 'val' or 'test'")
    return split


# --------------------------------------------------------------------------------------------------------------------
# building blocks (pure functions over arrays)
# --------------------------------------------------------------------------------------------------------------------
def prompt_groups(prompts: Sequence[str | None], pair_ids: Sequence[str | None]) -> np.ndarray:
    """Group index per row: connected components of rows linked by a shared ``pair_id`` or non-empty prompt text.

    A row with neither (null pair_id and empty prompt) is its own group. Returns int64 codes ``0 .. G-1``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(prompts)
    if len(pair_ids) != n:
        raise ValueError("prompts and pair_ids must have the same length")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Nodes: rows 0..n-1, then one node per distinct pair_id, then one per distinct non-empty prompt.
    keys: dict[tuple[int, str], int] = {}
    src, dst = [], []
    for i, (prompt, pair) in enumerate(zip(prompts, pair_ids)):
        for kind, key in ((0, pair), (1, prompt)):
            if key is None or (kind == 1 and not str(key).strip()):
                continue
            node = keys.setdefault((kind, str(key)), n + len(keys))
            src.append(i)
            dst.append(node)
    size = n + len(keys)
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    _, codes = np.unique(labels[:n], return_inverse=True)
    return codes.astype(np.int64)
