"""Ranking comparison of two models on the same log: where their orders of the responses disagree, and the
within-prompt Kendall tau against clean labels (what GRPO-style group normalisation reads)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from causalrm.atomic_io import jsonable
from causalrm.data import schema
from causalrm.errors import InputError


# --------------------------------------------------------------------------------------------------------------------
# ranking comparison
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class RankingComparison:
    """Two reward models' rankings of the same responses (``a`` vs ``b``), globally and within each prompt.

    Global: Kendall τ-b and Spearman ρ between the two score vectors (``scipy.stats``); against ``gold`` when given.
    Per prompt (``pair_id``, or the prompt text): mean Kendall τ over prompts with >= 2 responses and non-constant
    scores, and the share of prompts whose top response is the same. ``top_k_overlap``: |top-k(a) ∩ top-k(b)| / k.
    ``shifts``: the responses whose global rank moved most (rank 1 = highest reward), with their texts.
    """

    names: tuple[str, str]
    n: int
    kendall: float
    spearman: float
    top_k: int
    top_k_overlap: float
    n_prompts: int
    prompt_kendall_mean: float
    prompt_top1_agreement: float
    gold_column: str | None = None
    n_gold: int = 0
    gold_kendall: dict[str, float] = field(default_factory=dict)
    gold_spearman: dict[str, float] = field(default_factory=dict)
    shifts: list[dict[str, Any]] = field(default_factory=list)
    prompt_kendall: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["names"] = list(self.names)
        return jsonable(out)

    def format(self, width: int = 60) -> str:
        a, b = self.names
        lines = [
            f"ranking comparison: {a} vs {b} on {self.n} responses",
            f"  global      Kendall tau {self.kendall:+.3f}   Spearman rho {self.spearman:+.3f}",
            f"  top-{self.top_k:<3}      overlap {self.top_k_overlap:.0%}",
            f"  per prompt  {self.n_prompts} prompts with >= 2 responses: mean Kendall tau "
            f"{_fmt(self.prompt_kendall_mean)}, same top response {_fmt_pct(self.prompt_top1_agreement)}",
        ]
        if self.gold_column:
            lines.append(f"  vs {self.gold_column} ({self.n_gold} rows): "
                         + ", ".join(f"{k} tau {_fmt(self.gold_kendall.get(k))} rho {_fmt(self.gold_spearman.get(k))}"
                                     for k in self.names))
        if self.shifts:
            lines.append(f"  largest rank shifts (rank 1 = highest reward, of {self.n}):")
            for s in self.shifts:
                text = _clip(f"{s['prompt']!s} -> {s['response']!s}", width)
                lines.append(f"    {s['rank_a']:>6} -> {s['rank_b']:<6} ({s['shift']:+d})  {text}")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"


def _fmt_pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.0%}"


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _ranks_desc(x: np.ndarray) -> np.ndarray:
    """1-based ranks, highest value first (ties broken by position, stable)."""
    order = np.argsort(-x, kind="stable")
    ranks = np.empty(x.size, dtype=np.int64)
    ranks[order] = np.arange(1, x.size + 1)
    return ranks


def compare_rankings(
    scored_a: pl.DataFrame,
    scored_b: pl.DataFrame,
    *,
    gold: str | np.ndarray | None = None,
    top_k: int = 10,
    score: str = "reward",
    names: tuple[str, str] = ("A", "B"),
    n_shifts: int | None = None,
) -> RankingComparison:
    """Compare two scored logs (columns ``response_id``, ``score``; ``pair_id``/``prompt``/``response`` optional).

    Rows are matched on ``response_id`` (inner join; InputError if none match). ``gold``: a column name of
    ``scored_a``, an array aligned with ``scored_a``'s rows, or None = ``gold_label`` then ``true_label`` of
    ``scored_a`` when present. ``n_shifts`` (default ``top_k``) largest absolute global rank shifts are listed.
    """
    from scipy.stats import kendalltau, spearmanr

    if top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {top_k}")
    for df, name in ((scored_a, names[0]), (scored_b, names[1])):
        for col in (schema.RESPONSE_ID, score):
            if col not in df.columns:
                raise InputError(f"scored log {name} has no column {col!r}; score it with `causalrm score`")
    a = scored_a.with_row_index("_row_a")
    if isinstance(gold, np.ndarray) or isinstance(gold, list):
        g = np.asarray(gold, dtype=np.float64)
        if g.size != scored_a.height:
            raise InputError(f"gold has {g.size} values for {scored_a.height} rows")
        a = a.with_columns(pl.Series("_gold", g))
        gold_column = "gold"
    else:
        if gold is None:
            gold = next((c for c in (schema.GOLD_LABEL, schema.TRUE_LABEL) if c in scored_a.columns
                         and scored_a[c].is_not_null().any()), None)
        elif gold not in scored_a.columns:
            raise InputError(f"gold column {gold!r} not in the scored log; columns: {', '.join(scored_a.columns)}")
        gold_column = gold
        if gold is not None:
            a = a.with_columns(pl.col(gold).cast(pl.Float64).alias("_gold"))
    keep_a = [c for c in ("_row_a", schema.RESPONSE_ID, score, schema.PAIR_ID, schema.PROMPT, schema.RESPONSE, "_gold")
              if c in a.columns]
    b = scored_b.select([schema.RESPONSE_ID, pl.col(score).alias("_score_b")])
    if scored_b[schema.RESPONSE_ID].n_unique() != scored_b.height or scored_a[schema.RESPONSE_ID].n_unique() != scored_a.height:
        raise InputError("response_id is not unique in a scored log; cannot match rows")
    joined = a.select(keep_a).join(b, on=schema.RESPONSE_ID, how="inner").sort("_row_a")
    n = joined.height
    if n < 2:
        raise InputError(f"the two scored logs share {n} response_id(s); compare runs scored on the same log")
    sa = joined[score].cast(pl.Float64).to_numpy()
    sb = joined["_score_b"].cast(pl.Float64).to_numpy()
    tau = float(kendalltau(sa, sb).statistic)
    rho = float(spearmanr(sa, sb).statistic)
    k = min(top_k, n)
    top_a = set(np.argsort(-sa, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-sb, kind="stable")[:k].tolist())
    overlap = len(top_a & top_b) / k

    gold_k: dict[str, float] = {}
    gold_s: dict[str, float] = {}
    n_gold = 0
    if gold_column is not None and "_gold" in joined.columns:
        g = joined["_gold"].to_numpy()
        m = np.isfinite(g)
        n_gold = int(m.sum())
        if n_gold >= 2 and np.ptp(g[m]) > 0:
            for nm, s in zip(names, (sa, sb)):
                gold_k[nm] = float(kendalltau(s[m], g[m]).statistic)
                gold_s[nm] = float(spearmanr(s[m], g[m]).statistic)
        else:
            gold_column = None if n_gold < 2 else gold_column

    # per prompt
    group_col = schema.PAIR_ID if schema.PAIR_ID in joined.columns and joined[schema.PAIR_ID].is_not_null().all() \
        else (schema.PROMPT if schema.PROMPT in joined.columns else None)
    per_prompt: list[dict[str, Any]] = []
    top1 = []
    if group_col is not None:
        keys = joined[group_col].cast(pl.String).to_numpy()
        _, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        for members in np.split(order, bounds):
            if members.size < 2:
                continue
            ga, gb = sa[members], sb[members]
            top1.append(bool(members[np.argmax(ga)] == members[np.argmax(gb)]))
            t = float(kendalltau(ga, gb).statistic) if np.ptp(ga) > 0 and np.ptp(gb) > 0 else float("nan")
            per_prompt.append({"group": str(keys[members[0]]), "n": int(members.size), "kendall": t})
    taus = np.array([p["kendall"] for p in per_prompt], dtype=np.float64)
    taus = taus[np.isfinite(taus)]

    ra, rb = _ranks_desc(sa), _ranks_desc(sb)
    shift = rb - ra
    n_shifts = top_k if n_shifts is None else n_shifts
    biggest = np.argsort(-np.abs(shift), kind="stable")[: min(n_shifts, n)]
    shifts = []
    for i in biggest:
        if shift[i] == 0:
            break
        row = {"response_id": joined[schema.RESPONSE_ID][int(i)], "rank_a": int(ra[i]), "rank_b": int(rb[i]),
               "shift": int(shift[i]), "score_a": float(sa[i]), "score_b": float(sb[i])}
        for col in (schema.PAIR_ID, schema.PROMPT, schema.RESPONSE):
            row[col] = joined[col][int(i)] if col in joined.columns else None
        shifts.append(row)
    return RankingComparison(
        names=(str(names[0]), str(names[1])), n=n, kendall=tau, spearman=rho, top_k=k, top_k_overlap=overlap,
        n_prompts=len(per_prompt), prompt_kendall_mean=float(taus.mean()) if taus.size else float("nan"),
        prompt_top1_agreement=float(np.mean(top1)) if top1 else float("nan"), gold_column=gold_column,
        n_gold=n_gold, gold_kendall=gold_k, gold_spearman=gold_s, shifts=shifts, prompt_kendall=per_prompt,
    )


def within_prompt_kendall(groups: Any, labels: Any, scores: Any) -> dict[str, float]:
    """Mean within-prompt Kendall tau-b between ``scores`` and the clean ``labels``: the ranking a reward model gives
    the responses to one prompt (what GRPO-style group normalisation reads), apart from calibration.

    For each group (``groups``: one key per row, e.g. ``splits.prompt_groups``) with at least two rows and both
    label values, tau_b(scores, labels) (``scipy.stats.kendalltau``, ties in the binary label handled by tau-b);
    returns ``{"prompt_kendall": mean over those groups (NaN when none), "n_prompts": their number}``.
    """
    from scipy.stats import kendalltau

    g = np.asarray(groups).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (g.size == y.size == s.size):
        raise InputError(f"groups ({g.size}), labels ({y.size}) and scores ({s.size}) differ in length")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    taus = []
    for members in np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1):
        if members.size < 2 or np.ptp(y[members]) == 0 or np.ptp(s[members]) == 0:
            continue
        taus.append(float(kendalltau(s[members], y[members]).statistic))
    taus_arr = np.asarray([t for t in taus if math.isfinite(t)], dtype=np.float64)
    return {"prompt_kendall": float(taus_arr.mean()) if taus_arr.size else float("nan"),
            "n_prompts": int(taus_arr.size)}
