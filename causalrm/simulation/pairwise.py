"""Simulated A/B preference logs: pairs within prompt groups, selected votes, position-biased flips.

The protocol (docs/METHOD.md, "A/B preference logs"), from a rated dataset (``causalrm.data.datasets.load_rated``):

1. **Scores and splits.** :func:`causalrm.simulation.simulate.simulate_with_config` with the same ``rating``
   (``real``, or ``teacher``: a known function of the embedding), ``seed`` and split fractions gives every response
   its true score s (``true_score``), its clean pointwise label (``true_label``) and its split; prompt groups never
   cross a split, so neither does a pair.
2. **Pairs.** Within each prompt group (a shared ``pair_id``, else the prompt), the responses in a seeded random
   order are paired two by two (a group of k responses gives floor(k / 2) disjoint pairs; WildBench's ~15 responses
   per task give 7). The first of the two is a, and a is always the response shown first (``shown_first = a``).
   Pairs whose scores tie (real ratings) carry no preference and are dropped (``dropped_ties``).
3. **Votes** (selection). ``true_label`` r* = 1[s_a > s_b]. With u = |s_a - s_b| / sd(s_a - s_b) and an effect
   g ~ N(0, 1) per prompt group (the groups of step 2), P(vote) = sigmoid(c + ``selection`` (u - mean u) +
   ``prompt_selection`` g), the intercept c solved (bisection) so that the mean over the train + val pairs is
   ``vote_rate``: votes are likelier on clear differences (``selection`` > 0) and on some prompts.
   o ~ Bernoulli(P(vote)) on train / val pairs.
4. **Flips** (position bias). A vote goes to the second-shown b though a is better with probability ``rho01``, to
   the first-shown a though b is better with ``rho10``; ``rho10 > rho01`` is a bias toward the first-shown response.
5. **Test pairs** are clean and every one voted: ``observed = 1``, ``feedback = true_label``.
6. **Swapped-order duplicates** (``swapped_share`` > 0). A seeded share of the train / val pairs is shown a second
   time, in the other order, to another user: a row appended after the others with a and b exchanged
   (``true_label`` 1 - r*), its own vote (the same P(vote)) and its own flip (the same rates, independent of the
   first user's). ``causalrm.nuisances.duplicate_votes`` reads the flip rates from them.

Columns: the canonical A/B log (``causalrm.data.pairwise``: ``prompt``, ``response_a``, ``response_b``,
``response_id``, ``feedback``, ``observed``, ``pair_id``, ``split``, ``true_label``, ``shown_first``, the ``pairwise``
mark; a duplicate's ``response_id`` continues the numbering) plus ``true_propensity`` (P(vote)), ``true_score_a`` / ``true_score_b`` and ``index_a`` / ``index_b`` (the
rated rows of the two responses, to align embeddings of the rated rows: ``pairwise.pair_features(X[index_a],
X[index_b])``). Randomness: one ``numpy.random.SeedSequence(seed)`` spawns the pairing, prompt-effect, vote and flip
streams (and a fifth, the duplicates' choice, votes and flips), independent of the pointwise simulation's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import FEEDBACK_KIND, PAIRWISE
from causalrm.data.pairwise import RESPONSE_A, RESPONSE_B, SHOWN_FIRST, TRUE_SCORE_A, TRUE_SCORE_B, position_summary
from causalrm.errors import InputError
from causalrm.simulation.simulate import simulate_with_config

INDEX_A, INDEX_B = "index_a", "index_b"
#: the defaults: the issue's measured cell (votes on ~21% of pairs, likelier on clear differences; P(vote b | a
#: better) 0.10, P(vote a | b better) 0.30, a shown first)
DEFAULTS = {"vote_rate": 0.26, "selection": 1.5, "prompt_selection": 0.0, "rho01": 0.10, "rho10": 0.30}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept(score: np.ndarray, target: float) -> float:
    """c with mean(sigmoid(c + score)) = target (bisection; the mean is increasing in c)."""
    lo, hi = -50.0, 50.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + score).mean() < target else (lo, mid)
    return (lo + hi) / 2


def group_key(log: pl.DataFrame) -> str:
    """The column that holds a log's prompt groups: ``pair_id`` where every row has one, else ``prompt``."""
    return schema.PAIR_ID if schema.PAIR_ID in log.columns and log[schema.PAIR_ID].null_count() == 0 else schema.PROMPT


def pair_groups(log: pl.DataFrame, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(a, b)`` of disjoint pairs within each prompt group (``pair_id``, else ``prompt``), the group's
    rows in a random order paired two by two; groups in order of first appearance."""
    rows = log.with_row_index("_row").group_by(group_key(log), maintain_order=True).agg(pl.col("_row"))
    groups = rows["_row"].to_list()
    a, b = [], []
    for rows in groups:
        order = rng.permutation(np.asarray(rows, dtype=np.int64))
        k = len(order) // 2 * 2
        a.extend(order[0:k:2].tolist())
        b.extend(order[1:k:2].tolist())
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


def simulate_pairs(rated: pl.DataFrame, *, vote_rate: float = DEFAULTS["vote_rate"],
                   selection: float = DEFAULTS["selection"], prompt_selection: float = DEFAULTS["prompt_selection"],
                   rho01: float = DEFAULTS["rho01"], rho10: float = DEFAULTS["rho10"], rating: str = "real",
                   teacher: str = "linear", snr: float | None = None, embeddings: np.ndarray | None = None,
                   val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0,
                   dataset: str | None = None, swapped_share: float = 0.0) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A simulated A/B log of ``rated`` (module docstring) and what it was made with (a JSON-ready dict)."""
    if not 0.0 <= swapped_share <= 1.0:
        raise InputError(f"swapped share {swapped_share:g}: give a share of train/val pairs in [0, 1]")
    if not 0.0 < vote_rate < 1.0:
        raise InputError(f"vote rate {vote_rate:g}: give a share of pairs in (0, 1)")
    if not (0.0 <= rho01 < 1.0 and 0.0 <= rho10 < 1.0 and rho01 + rho10 < 1.0):
        raise InputError(f"flip rates rho01 {rho01:g}, rho10 {rho10:g}: need 0 <= rho < 1 and rho01 + rho10 < 1")
    base, _ = simulate_with_config(rated, rating=rating, teacher=teacher, snr=snr, embeddings=embeddings,
                                     val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                                     dataset=dataset)
    pairing, prompt_rng, vote_rng, flip_rng, swap_rng = (np.random.default_rng(s) for s in
                                                         np.random.SeedSequence([seed, 23]).spawn(5))
    ia, ib = pair_groups(base, pairing)
    s = base[schema.TRUE_SCORE].to_numpy().astype(float)
    keep = s[ia] != s[ib]
    dropped = int((~keep).sum())
    ia, ib = ia[keep], ib[keep]
    if ia.size == 0:
        raise InputError("no pair of responses with different scores: the data need prompts with several responses")
    delta = s[ia] - s[ib]
    true = (delta > 0).astype(np.int8)
    split = base[schema.SPLIT].to_numpy()[ia]
    fit = split != schema.TEST
    u = np.abs(delta) / (delta.std() or 1.0)
    prompts = base[schema.PROMPT].to_numpy()[ia]
    # the effect of the prompt group (WildBench ships empty prompts: its tasks are the pair_id groups)
    _, group_index = np.unique(base[group_key(base)].to_numpy()[ia].astype(str), return_inverse=True)
    g = prompt_rng.standard_normal(int(group_index.max()) + 1)[group_index]
    score = selection * (u - u[fit].mean()) + prompt_selection * g
    p = _sigmoid(_intercept(score[fit], vote_rate) + score)
    observed = np.where(fit, vote_rng.random(ia.size) < p, True).astype(np.int8)
    flip = flip_rng.random(ia.size) < np.where(true == 1, rho01, rho10)
    feedback = np.where(fit & (observed == 1), np.where(flip, 1 - true, true), np.where(fit, -1, true))
    resp = base[schema.RESPONSE].to_numpy()
    group = (base[schema.PAIR_ID].to_numpy()[ia] if schema.PAIR_ID in base.columns else prompts)
    fit_rows = np.flatnonzero(fit)
    dup = np.sort(swap_rng.choice(fit_rows, size=int(round(swapped_share * fit_rows.size)), replace=False))
    if dup.size:  # step 6: the same pairs in the other order, another user's vote and flip
        dup_true = (1 - true[dup]).astype(np.int8)
        dup_obs = (swap_rng.random(dup.size) < p[dup]).astype(np.int8)
        dup_flip = swap_rng.random(dup.size) < np.where(dup_true == 1, rho01, rho10)
        dup_fb = np.where(dup_obs == 1, np.where(dup_flip, 1 - dup_true, dup_true), -1)
        ia, ib = np.concatenate([ia, ib[dup]]), np.concatenate([ib, ia[dup]])
        true, observed = np.concatenate([true, dup_true]), np.concatenate([observed, dup_obs])
        feedback, p = np.concatenate([feedback, dup_fb]), np.concatenate([p, p[dup]])
        split, fit = np.concatenate([split, split[dup]]), np.concatenate([fit, fit[dup]])
        prompts, group = np.concatenate([prompts, prompts[dup]]), np.concatenate([group, group[dup]])
    log = pl.DataFrame({
        schema.PROMPT: pl.Series(prompts, dtype=pl.String),
        RESPONSE_A: pl.Series(resp[ia], dtype=pl.String),
        RESPONSE_B: pl.Series(resp[ib], dtype=pl.String),
        schema.RESPONSE_ID: pl.Series([f"ab-{i:06d}" for i in range(ia.size)], dtype=pl.String),
        schema.FEEDBACK: pl.Series(np.where(feedback < 0, None, feedback).tolist(), dtype=pl.Int8),
        schema.OBSERVED: pl.Series(observed, dtype=pl.Int8),
        schema.PAIR_ID: pl.Series([None if v is None else str(v) for v in group], dtype=pl.String),
        schema.SPLIT: pl.Series(split.tolist(), dtype=pl.String),
        schema.TRUE_LABEL: pl.Series(true, dtype=pl.Int8),
        SHOWN_FIRST: pl.Series(["a"] * ia.size, dtype=pl.String),
        schema.TRUE_PROPENSITY: pl.Series(np.where(fit, p, 1.0), dtype=pl.Float64),
        TRUE_SCORE_A: pl.Series(s[ia], dtype=pl.Float64),
        TRUE_SCORE_B: pl.Series(s[ib], dtype=pl.Float64),
        INDEX_A: pl.Series(ia, dtype=pl.Int64),
        INDEX_B: pl.Series(ib, dtype=pl.Int64),
        FEEDBACK_KIND: pl.Series([PAIRWISE] * ia.size, dtype=pl.String),
    })
    votes = position_summary(log.filter(pl.col(schema.SPLIT) != schema.TEST))
    info = {"dataset": dataset, "rating": rating, "teacher": teacher if rating == "teacher" else None, "seed": seed,
            "vote_rate": vote_rate, "selection": selection, "prompt_selection": prompt_selection, "rho01": rho01,
            "rho10": rho10, "pairs": log.height, "dropped_ties": dropped, "votes": votes["votes"],
            "votes_for_first": votes["for_a"], "swapped_share": swapped_share, "swapped_shown": int(dup.size),
            "swapped_voted": votes["swapped"], "responses": base.height}
    return log, info


__all__ = ["DEFAULTS", "INDEX_A", "INDEX_B", "group_key", "pair_groups", "simulate_pairs"]
