"""What a policy trained on the reward gets (issue 25): best-of-N within prompt groups and PPO-style acceptance.

Best-of-N and GRPO read only the order of the rewards within a prompt's group of responses; PPO-style absolute
rewards feel sigma(z) itself. Pure functions over arrays; ``log_downstream`` reads them off a scored log (prompt
groups as ``splits.prompt_groups`` makes them, the same grouping as the bench's prompt Kendall tau).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.errors import InputError

ACCEPT_THRESHOLD = 0.5  # sigma(z) > 0.5 accepts a response


def _members(groups: Any, *arrays: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    g = np.asarray(groups).reshape(-1)
    arrs = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    if any(a.size != g.size for a in arrs):
        raise InputError(f"groups ({g.size}) and values ({', '.join(str(a.size) for a in arrs)}) differ in length")
    if any(not np.all(np.isfinite(a)) for a in arrs):
        raise InputError("best-of-N: quality and scores must be finite on every row")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    parts = [m for m in np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1) if m.size >= 2]
    return parts, arrs


def best_of_n(groups: Any, quality: Any, scores: Any) -> dict[str, float]:
    """Best-of-N gain: over the groups with at least two rows, the mean of ``quality[pick] - mean(quality[group])``,
    ``pick`` the group's row of highest score (the first on ties). Returns ``{"best_of_n": gain (NaN without a
    group), "best_of_n_groups": their number}``."""
    parts, (q, s) = _members(groups, quality, scores)
    gains = [q[m[np.argmax(s[m])]] - q[m].mean() for m in parts]
    return {"best_of_n": float(np.mean(gains)) if gains else float("nan"), "best_of_n_groups": len(gains)}


def best_of_n_win_rate(groups: Any, quality: Any, scores: Any, baseline_scores: Any) -> float:
    """Over the groups with at least two rows, the share where the row ``scores`` picks has a higher ``quality`` than
    the one ``baseline_scores`` picks (a tie, the same pick included, counts one half); NaN without a group."""
    parts, (q, s, b) = _members(groups, quality, scores, baseline_scores)
    wins = [float(np.sign(q[m[np.argmax(s[m])]] - q[m[np.argmax(b[m])]]) + 1) / 2 for m in parts]
    return float(np.mean(wins)) if wins else float("nan")


def acceptance(labels: Any, prob: Any, threshold: float = ACCEPT_THRESHOLD) -> dict[str, float]:
    """Acceptance at ``prob > threshold`` against clean 0/1 ``labels``: precision P(label = 1 | accepted) and recall
    P(accepted | label = 1) (NaN when nothing is accepted / no positive)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.size != p.size:
        raise InputError(f"labels ({y.size}) and probabilities ({p.size}) differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("acceptance: labels must be 0/1")
    accept = p > threshold
    hits = float(np.sum(accept & (y == 1)))
    return {"accept_precision": hits / accept.sum() if accept.any() else float("nan"),
            "accept_recall": hits / (y == 1).sum() if (y == 1).any() else float("nan")}


def log_groups(log: pl.DataFrame) -> np.ndarray:
    """Each row's prompt group (``splits.prompt_groups`` of its prompt and pair_id)."""
    from causalrm.data.splits import prompt_groups

    prompts = log[schema.PROMPT].to_list() if schema.PROMPT in log.columns else [None] * log.height
    pairs = log[schema.PAIR_ID].cast(pl.String).to_list() if schema.PAIR_ID in log.columns else [None] * log.height
    return prompt_groups(prompts, pairs)


def log_downstream(log: pl.DataFrame, rewards: Any, rows: Any, label: str,
                   baseline_rewards: Any | None = None) -> dict[str, float]:
    """The downstream figures of ``rewards`` (logits, one per log row) over the rows of the boolean mask ``rows``
    with a clean ``label``: best-of-N on the log's ``true_score`` (the rating a simulation used) or else the label,
    its win rate against ``baseline_rewards`` (key ``best_of_n_win_rate``, when given) and the acceptance."""
    y = log[label].cast(pl.Float64).to_numpy()
    keep = np.asarray(rows, dtype=bool) & np.isfinite(y)
    quality = log[schema.TRUE_SCORE].cast(pl.Float64).to_numpy() if schema.TRUE_SCORE in log.columns else y
    groups = log_groups(log.filter(pl.Series(keep)))
    z = np.asarray(rewards, dtype=np.float64)
    out: dict[str, float] = {**best_of_n(groups, quality[keep], z[keep]),
                             **acceptance(y[keep], 1.0 / (1.0 + np.exp(-z[keep])))}
    if baseline_rewards is not None:
        out["best_of_n_win_rate"] = best_of_n_win_rate(groups, quality[keep], z[keep],
                                                       np.asarray(baseline_rewards, dtype=np.float64)[keep])
    return out
