"""Flip rates of an A/B log from swapped-order duplicates: one pair shown in both orders, to different users.

Notation as in docs/ARCHITECTURE.md and :mod:`causalrm.data.pairwise` (a = the first-shown response, r = 1 if the vote
went to a, rho01 = P(r = 0 | r* = 1), rho10 = P(r = 1 | r* = 0)). A *swapped-order group* g is one prompt and two
responses {A, B} voted at least once with A first (order 0) and at least once with B first (order 1).

    p11 = mean_g f0_g f1_g,      p00 = mean_g (1 - f0_g)(1 - f1_g)      (f_k: share of order k's votes for the first)
    d = p11 - p00,      s = 1 - sqrt(1 - 2 (p11 + p00) + d^2),      rho01 = (s - d) / 2,      rho10 = (s + d) / 2

Derivation. Whichever of A, B is truly better, it is shown first in exactly one of the two orders: one order has
r* = 1, the other r* = 0, *whatever* t = P(A better) is, pair by pair. With the two users' votes independent given
r*, the chance that both votes go to the first-shown response (a "both first" disagreement on the response) and
that both go to the second are

    P(both first)  = (1 - rho01) rho10 = p11,       P(both second) = rho01 (1 - rho10) = p00,

and the remaining mass (1 - rho01)(1 - rho10) + rho01 rho10 is the two users naming the same response. So
p11 - p00 = rho10 - rho01 = d, and with s = rho01 + rho10, p11 + p00 = s - 2 rho01 rho10 = s - (s^2 - d^2) / 2,
i.e. (1 - s)^2 = 1 - 2 (p11 + p00) + d^2. The root s < 1 is the formula above. Both rates are identified; t is not
needed (nor identified pair by pair: the log-level share of pairs whose first-logged order has the better response
first would be, but no estimator reads it). The other root, s' = 2 - s, is the label swap (rho01, rho10) ->
(1 - rho10, 1 - rho01), which fits the same three cell probabilities: the familiar sign ambiguity of noisy labels,
resolved by rho01 + rho10 < 1 (the feedback is informative), the same condition every estimator divides by. With
several votes in an order, f0_g f1_g is still unbiased for p11 (the orders' votes are independent given r*), so each
group weighs once. Three cells, two parameters: in the interior the formula is the multinomial maximum likelihood
estimate on the groups with one vote per order (tests/test_pairwise_duplicates.py checks it against a numerical MLE).

Assumptions. (i) The noise is class-conditional and position-dependent only: rho01, rho10 do not vary with the pair
(the anchor estimator assumes the same), so a duplicated pair's rates are the log's; heterogeneous rates give the
moment-matched rates of the duplicated groups. (ii) Given r*, the two users' votes are independent: no shared
confounder (the same user twice, a UI state) makes their mistakes agree. (iii) The two users share r*: a pair's
preference is a property of the pair, not of the user; with genuinely split preferences (P(A better) strictly
between 0 and 1 per user) p11 would grow with the disagreement between users and the rates come out too large.
(iv) Which pairs are shown twice and which are voted may depend on the pair (its x, how different the responses
are), not on the flips: then selection leaves the estimate unbiased, unlike the anchors it needs no proxy and no
sure-positive and sure-negative pairs. Same-order repeats (the same pair, the same order) carry t and are not read.

The 95% interval is the percentile bootstrap over groups (a group's votes resampled together); a resample whose
1 - 2 (p11 + p00) + d^2 is negative gets s = 1. ``flip_rates.FlipRateEstimator(method="duplicates")`` wraps it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from causalrm.errors import InputError

#: fewer swapped-order groups than this: too few to read the rates from (the estimator refuses)
MIN_GROUPS = 20


def group_shares(vote: Any, group: Any, order: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(f0, f1, n_incomplete): per swapped-order group with a vote in both orders, the share of its order-0 and
    order-1 votes for the first-shown response; and how many groups voted in one order only (not read).

    ``vote``: (m,) 0/1 votes (1 = the first-shown won) of voted rows; ``group``: (m,) non-negative group ids;
    ``order``: (m,) 0/1, which of the group's two orders the row showed. Loud preconditions (ValueError)."""
    r, g, k = (np.asarray(v).reshape(-1) for v in (vote, group, order))
    if not (r.shape == g.shape == k.shape):
        raise ValueError(f"vote, group and order must have one length, got {r.shape}, {g.shape}, {k.shape}")
    if not np.all((r == 0) | (r == 1)) or not np.all((k == 0) | (k == 1)):
        raise ValueError("vote and order must be 0/1")
    if r.size and (not np.issubdtype(g.dtype, np.integer) or g.min() < 0):
        raise ValueError("group must hold non-negative integer ids")
    if r.size == 0:
        return np.empty(0), np.empty(0), 0
    _, gi = np.unique(g, return_inverse=True)
    n_groups = int(gi.max()) + 1
    count = np.zeros((n_groups, 2))
    first = np.zeros((n_groups, 2))
    np.add.at(count, (gi, k.astype(np.int64)), 1.0)
    np.add.at(first, (gi, k.astype(np.int64)), r.astype(np.float64))
    both = (count > 0).all(axis=1)
    f = first[both] / count[both]
    return f[:, 0], f[:, 1], int(n_groups - both.sum())


def rates_from_shares(f0: np.ndarray, f1: np.ndarray) -> tuple[float, float]:
    """(rho01, rho10) of the module docstring's formula from the groups' shares (s capped at 1)."""
    p11 = float(np.mean(f0 * f1))
    p00 = float(np.mean((1.0 - f0) * (1.0 - f1)))
    d = p11 - p00
    s = 1.0 - float(np.sqrt(max(1.0 - 2.0 * (p11 + p00) + d * d, 0.0)))
    return (s - d) / 2.0, (s + d) / 2.0


def swapped_vote_rates(vote: Any, group: Any, order: Any, *, n_bootstrap: int = 200, random_state: int = 0,
                       level: float = 0.95) -> dict[str, Any]:
    """The flip rates of the module docstring from the votes of swapped-order groups, with bootstrap intervals.

    Returns {"rho01", "rho10", "ci": {"rho01": (lo, hi), "rho10": (lo, hi)}, "n_groups", "n_incomplete",
    "p_both_first", "p_both_second"}. InputError with fewer than ``MIN_GROUPS`` groups voted in both orders."""
    f0, f1, incomplete = group_shares(vote, group, order)
    n = f0.size
    if n < MIN_GROUPS:
        raise InputError(f"only {n} swapped-order duplicate pairs (one pair voted in both orders; {incomplete} more "
                         f"voted in one order only): at least {MIN_GROUPS} are needed to read the flip rates from "
                         "them; use --flip-method anchor-quantile, gold or fixed")
    rho01, rho10 = rates_from_shares(f0, f1)
    if n_bootstrap:
        rng = np.random.default_rng(random_state)
        draws = np.array([rates_from_shares(f0[i], f1[i]) for i in rng.integers(0, n, size=(n_bootstrap, n))])
        a = (1.0 - level) / 2.0
        lo, hi = np.quantile(draws, [a, 1.0 - a], axis=0)
        ci = {"rho01": (float(lo[0]), float(hi[0])), "rho10": (float(lo[1]), float(hi[1]))}
    else:
        ci = {"rho01": (rho01, rho01), "rho10": (rho10, rho10)}
    return {"rho01": rho01, "rho10": rho10, "ci": ci, "n_groups": n, "n_incomplete": incomplete,
            "p_both_first": float(np.mean(f0 * f1)), "p_both_second": float(np.mean((1 - f0) * (1 - f1)))}


__all__ = ["MIN_GROUPS", "group_shares", "rates_from_shares", "swapped_vote_rates"]
