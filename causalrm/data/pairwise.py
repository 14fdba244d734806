"""A/B preference logs: "which response is better?" votes on pairs of responses to one prompt.

Notation as in docs/ARCHITECTURE.md, per pair j = (a, b) of responses to one prompt:

    o_j    1 if the user voted, else 0 (selection: a vote is likelier on some pairs, e.g. clear differences)
    r_j    1 if the vote went to a, 0 if to b; meaningless where o_j = 0
    r*_j   1 if a is truly the better response (simulation: ``true_label``; an audit: ``gold_label``)
    rho01  P(r = 0 | r* = 1) = P(vote b | a better);   rho10 = P(r = 1 | r* = 0) = P(vote a | b better)

With the reward model z = f(prompt, response) (pointwise) and P(a preferred) = sigma(z_a - z_b) (Bradley-Terry),
a pair is a row of an ordinary log whose logit is the difference d_j = z_a - z_b: every estimator of the method
registry applies to it unchanged (``causalrm.estimators.losses.pairwise_terms``; docs/METHOD.md, "A/B preference
logs"). The noise on r is class-conditional and may be asymmetric: a user who picks the first-shown response when
unsure flips toward it, so with a = the first-shown response rho10 > rho01 (position bias).

The canonical A/B log (:func:`read_pairs`), one row per pair, in this order:

``prompt``, ``response_a``, ``response_b`` : str, required, non-empty.
``response_id`` : str, unique: the comparison's id (generated ``ab-<row>`` when absent).
``feedback`` : Int8, 1 = a preferred, 0 = b preferred, null = no vote. Read from ``a`` / ``b`` (any case), 1 / 0
    (1 = a preferred), true / false, or TRL's ``chosen`` / ``rejected`` columns (below). ``tie``, ``skip`` and an
    empty cell are no vote: a tie says neither is better, which the Bradley-Terry label cannot hold, so the vote
    propensity then models a *decisive* vote (``validate`` counts the ties). Anything else is refused.
``observed`` : Int8, 1 where ``feedback`` is set (a given ``observed`` column must agree).
``pair_id``, ``split``, ``logged_propensity`` (of a vote) : as in an impression log (``pair_id`` groups rows of one
    prompt; splits keep prompt groups whole).
``gold_label`` : Float64, audited 1 = a better, 0 = b better (read from ``a`` / ``b`` or 1 / 0).
``true_label`` : Int8, simulation only, the clean ``a better``.
``shown_first`` : ``a`` or ``b`` when the log records which response was shown first. Reading puts the first-shown
    response in position a (``response_a`` / ``response_b``, ``feedback``, ``gold_label``, ``true_label`` swapped where
    ``shown_first`` is ``b``; the column then reads ``a`` everywhere), so that the flip rates on "a wins" *are* the
    position bias: rho10 = P(vote first | second better), rho01 = P(vote second | first better).
``feedback_kind`` : ``pairwise`` on every row (``causalrm.data.feedback_kinds``).

TRL's preference format (``prompt``, ``chosen``, ``rejected``; strings, or conversations whose last message is the
response) reads as an A/B log with every row voted. Which of chosen / rejected becomes a is drawn per row from
``numpy.random.default_rng(seed)`` (``seed`` 0 by default), so the votes split about evenly between a and b and the
same file always reads the same way: putting ``chosen`` always in a would make "a wins" constant and teach nothing,
and the file records no display order, so no position bias can be read from it.

Other columns are kept after these (simulation: ``true_score_a``, ``true_score_b``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from causalrm.data import schema
from causalrm.data.feedback_kinds import FEEDBACK_KIND, PAIRWISE, describe_pairwise
from causalrm.errors import InputError

RESPONSE_A = "response_a"
RESPONSE_B = "response_b"
SHOWN_FIRST = "shown_first"
CHOSEN = "chosen"
REJECTED = "rejected"
#: simulation only: the true (pointwise) scores of the two responses
TRUE_SCORE_A = "true_score_a"
TRUE_SCORE_B = "true_score_b"
#: feedback cells read as no vote (module docstring)
NO_VOTE = ("", "tie", "skip", "none")
#: the canonical columns, in order (present ones only; ``feedback_kind`` last)
COLUMNS = (schema.PROMPT, RESPONSE_A, RESPONSE_B, schema.RESPONSE_ID, schema.FEEDBACK, schema.OBSERVED,
           schema.PAIR_ID, schema.SPLIT, schema.LOGGED_PROPENSITY, schema.GOLD_LABEL, schema.INCLUSION_PROBABILITY,
           schema.AUDIT_STRATUM, schema.TRUE_LABEL, SHOWN_FIRST)


def is_pairwise(columns: list[str] | tuple[str, ...]) -> bool:
    """Whether a table with these columns is an A/B log: ``response_a`` and ``response_b``, or TRL's ``chosen`` and
    ``rejected``."""
    cols = set(columns)
    return {RESPONSE_A, RESPONSE_B} <= cols or {CHOSEN, REJECTED} <= cols


def is_pair_log(log: pl.DataFrame | None) -> bool:
    """Whether ``log`` is a canonical A/B log (read by :func:`read_pairs`: the ``pairwise`` mark)."""
    return log is not None and FEEDBACK_KIND in log.columns and RESPONSE_A in log.columns and log.height > 0 and \
        log[FEEDBACK_KIND][0] == PAIRWISE


def _where(source: str, row: int, column: str) -> str:
    return f"{source}: row {row + 1}, column {column!r}"


def _texts(values: list[Any], column: str, source: str) -> list[str]:
    """Non-empty response texts; a conversation (list of ``{role, content}``) gives its last message."""
    out = []
    for i, v in enumerate(values):
        if isinstance(v, list) and v and isinstance(v[-1], dict):
            v = v[-1].get("content")
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"{_where(source, i, column)}: empty or not text; every pair needs two non-empty "
                             "responses")
        out.append(v)
    return out


def _side(values: list[Any], column: str, source: str, *, what: str) -> list[float | None]:
    """``a`` / ``b`` / 1 / 0 / true / false cells as 1.0 (a) / 0.0 (b) / None (no vote, tie, skip)."""
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
            continue
        s = str(v).strip().lower()
        if s in ("a", "1", "1.0", "true"):
            out.append(1.0)
        elif s in ("b", "0", "0.0", "false"):
            out.append(0.0)
        elif s in NO_VOTE:
            out.append(None)
        else:
            raise InputError(f"{_where(source, i, column)}: {v!r} is not a {what}; use a, b (or 1 = a, 0 = b), or "
                             "leave it empty (tie / skip: no vote)")
    return out


def _conversation_prompt(values: list[Any]) -> list[str] | None:
    """TRL conversational rows without a prompt column: the prompt is the messages before the response."""
    from causalrm.data.chat import render_prompt

    if not all(isinstance(v, list) and len(v) > 1 for v in values):
        return None
    return [render_prompt(v[:-1]) for v in values]


def read_pairs(df: pl.DataFrame, *, source: str = "the log", objects: dict[str, list] | None = None,
               seed: int = 0) -> pl.DataFrame:
    """The canonical A/B log (module docstring) of a table whose columns :func:`is_pairwise` accepts (after the
    user's mapping). ``objects``: JSON columns' Python values (conversations), by column name. One-line
    InputError naming the row and column at fault."""
    objects = objects or {}
    if df.height == 0:
        raise InputError(f"{source}: no rows")

    def column(name: str) -> list[Any]:
        return objects[name] if name in objects else df[name].to_list()

    trl = not {RESPONSE_A, RESPONSE_B} <= set(df.columns)
    if trl:
        chosen, rejected = _texts(column(CHOSEN), CHOSEN, source), _texts(column(REJECTED), REJECTED, source)
        prompts = df[schema.PROMPT].to_list() if schema.PROMPT in df.columns else _conversation_prompt(column(CHOSEN))
        if prompts is None:
            raise InputError(f"{source}: a preference file needs a 'prompt' column (or conversations in 'chosen')")
        chosen_first = np.random.default_rng(seed).random(df.height) < 0.5
        a = [c if f else r for c, r, f in zip(chosen, rejected, chosen_first)]
        b = [r if f else c for c, r, f in zip(chosen, rejected, chosen_first)]
        vote: list[float | None] = [1.0 if f else 0.0 for f in chosen_first]
        if schema.FEEDBACK in df.columns:
            raise InputError(f"{source}: column 'feedback' beside 'chosen' / 'rejected': a preference file's vote is "
                             "its chosen column; drop one of them")
    else:
        a, b = _texts(column(RESPONSE_A), RESPONSE_A, source), _texts(column(RESPONSE_B), RESPONSE_B, source)
        if schema.PROMPT not in df.columns:
            raise InputError(f"{source}: an A/B log needs a 'prompt' column (map yours with --map prompt=COLUMN)")
        prompts = df[schema.PROMPT].to_list()
        if schema.FEEDBACK not in df.columns:
            raise InputError(f"{source}: an A/B log needs a 'feedback' column: a, b, or empty for no vote")
        vote = _side(df[schema.FEEDBACK].to_list(), schema.FEEDBACK, source, what="vote")
    bad = next((i for i, p in enumerate(prompts) if p is not None and not isinstance(p, str)), None)
    if bad is not None:
        raise InputError(f"{_where(source, bad, schema.PROMPT)}: not text")
    prompts = ["" if p is None else p for p in prompts]  # an empty prompt is allowed, as in an impression log
    n = df.height
    voted = np.array([v is not None for v in vote])
    cols: dict[str, pl.Series] = {
        schema.PROMPT: pl.Series(prompts, dtype=pl.String),
        RESPONSE_A: pl.Series(a, dtype=pl.String),
        RESPONSE_B: pl.Series(b, dtype=pl.String),
    }
    if schema.RESPONSE_ID in df.columns:
        ids = df[schema.RESPONSE_ID].cast(pl.String)
        if ids.null_count() or ids.n_unique() != n:
            raise InputError(f"{source}: column 'response_id' must be unique and non-empty on every pair")
    else:
        ids = pl.Series([f"ab-{i:06d}" for i in range(n)], dtype=pl.String)
    cols[schema.RESPONSE_ID] = ids.alias(schema.RESPONSE_ID)
    cols[schema.FEEDBACK] = pl.Series(vote, dtype=pl.Float64).cast(pl.Int8)
    if schema.OBSERVED in df.columns:
        given = df[schema.OBSERVED].cast(pl.Int8, strict=False).to_numpy()
        bad = np.flatnonzero(given.astype(float) != voted.astype(float))
        if bad.size:
            raise InputError(f"{_where(source, int(bad[0]), schema.OBSERVED)}: observed must be 1 exactly where there "
                             "is a vote (a or b); drop the column to derive it")
    cols[schema.OBSERVED] = pl.Series(voted.astype(np.int8), dtype=pl.Int8)
    for name in (schema.PAIR_ID, schema.SPLIT, schema.AUDIT_STRATUM):
        if name in df.columns:
            cols[name] = df[name].cast(pl.String)
    for name in (schema.LOGGED_PROPENSITY, schema.INCLUSION_PROBABILITY):
        if name in df.columns:
            p = df[name].cast(pl.Float64, strict=False)
            bad = np.flatnonzero(((p <= 0) | (p > 1)).fill_null(False).to_numpy())
            if bad.size:
                raise InputError(f"{_where(source, int(bad[0]), name)}: must lie in (0, 1]")
            cols[name] = p
    if schema.GOLD_LABEL in df.columns:
        cols[schema.GOLD_LABEL] = pl.Series(_side(df[schema.GOLD_LABEL].to_list(), schema.GOLD_LABEL, source,
                                                  what="gold label"), dtype=pl.Float64)
    if schema.TRUE_LABEL in df.columns:
        cols[schema.TRUE_LABEL] = pl.Series(_side(df[schema.TRUE_LABEL].to_list(), schema.TRUE_LABEL, source,
                                                  what="label"), dtype=pl.Float64).cast(pl.Int8)
    out = pl.DataFrame(cols)
    if SHOWN_FIRST in df.columns:
        first = _side(df[SHOWN_FIRST].to_list(), SHOWN_FIRST, source, what="position")
        if any(f is None for f in first):
            raise InputError(f"{_where(source, first.index(None), SHOWN_FIRST)}: empty; say a or b on every row, "
                             "or drop the column")
        out = _first_in_a(out.with_columns(pl.Series(SHOWN_FIRST, ["a" if f else "b" for f in first])))
    extra = [c for c in df.columns if c not in out.columns and c not in (CHOSEN, REJECTED, SHOWN_FIRST,
                                                                         schema.OBSERVED, FEEDBACK_KIND)]
    out = pl.concat([out, df.select(extra)], how="horizontal") if extra else out
    if SHOWN_FIRST in df.columns and TRUE_SCORE_A in out.columns and TRUE_SCORE_B in out.columns:
        swap = pl.col(SHOWN_FIRST + "_swapped")
        out = out.with_columns(pl.when(swap).then(pl.col(TRUE_SCORE_B)).otherwise(pl.col(TRUE_SCORE_A)).alias(
            TRUE_SCORE_A), pl.when(swap).then(pl.col(TRUE_SCORE_A)).otherwise(pl.col(TRUE_SCORE_B)).alias(TRUE_SCORE_B))
    out = out.drop(SHOWN_FIRST + "_swapped", strict=False)
    return out.with_columns(pl.lit(PAIRWISE, dtype=pl.String).alias(FEEDBACK_KIND))


def _first_in_a(log: pl.DataFrame) -> pl.DataFrame:
    """Rows whose ``shown_first`` is ``b`` swapped so that a is the first-shown response (module docstring); a
    temporary ``shown_first_swapped`` column says which."""
    swap = pl.col(SHOWN_FIRST) == "b"

    def flip(name: str) -> pl.Expr:
        return pl.when(swap).then(1 - pl.col(name)).otherwise(pl.col(name)).cast(log[name].dtype).alias(name)

    return log.with_columns(
        pl.when(swap).then(pl.col(RESPONSE_B)).otherwise(pl.col(RESPONSE_A)).alias(RESPONSE_A),
        pl.when(swap).then(pl.col(RESPONSE_A)).otherwise(pl.col(RESPONSE_B)).alias(RESPONSE_B),
        *[flip(c) for c in (schema.FEEDBACK, schema.GOLD_LABEL, schema.TRUE_LABEL) if c in log.columns],
        swap.alias(SHOWN_FIRST + "_swapped"),
        pl.lit("a").alias(SHOWN_FIRST),
    )


def sides(log: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The a and b responses of an A/B log as two impression logs aligned with its rows (``prompt``, ``response``,
    ``response_id`` = the pair's id + ``:a`` / ``:b``, ``pair_id`` and ``split`` when present): what is embedded and
    scored, and what the app shows side by side."""
    keep = [c for c in (schema.PAIR_ID, schema.SPLIT) if c in log.columns]

    def side(column: str, tag: str) -> pl.DataFrame:
        return log.select(schema.PROMPT, pl.col(column).alias(schema.RESPONSE),
                          (pl.col(schema.RESPONSE_ID) + tag).alias(schema.RESPONSE_ID), *keep)

    return side(RESPONSE_A, ":a"), side(RESPONSE_B, ":b")


def pair_features(Xa: np.ndarray, Xb: np.ndarray) -> np.ndarray:
    """A pair's inputs ``[x_a, x_b]`` (float32, ``(n, 2d)``), row j the embeddings of pair j's two responses: the
    ``X`` of an A/B log everywhere (``fit``, ``score``, the nuisances); :func:`split_features` gives the two sides
    back to the reward model, :func:`nuisance_features` what the nuisance models read."""
    Xa, Xb = np.asarray(Xa, dtype=np.float32), np.asarray(Xb, dtype=np.float32)
    if Xa.shape != Xb.shape or Xa.ndim != 2:
        raise InputError(f"the a and b embeddings must be two matrices of one shape, got {Xa.shape} and {Xb.shape}")
    return np.ascontiguousarray(np.hstack([Xa, Xb]), dtype=np.float32)


def split_features(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x_a, x_b)`` back from :func:`pair_features`."""
    d2 = np.shape(X)[1]
    if d2 % 2:
        raise InputError(f"pair features have {d2} columns, not twice the embedding size; build them with "
                         "causalrm.data.pairwise.pair_features")
    X = np.asarray(X)
    return X[:, :d2 // 2], X[:, d2 // 2:]


def nuisance_features(X: np.ndarray) -> np.ndarray:
    """What the nuisance models of an A/B log read: ``[x_a - x_b, |x_a - x_b|]`` from :func:`pair_features`. The
    signed difference carries the Bradley-Terry direction (a linear proxy of P(a wins) on it is antisymmetric, as
    the model is, so its asymptotes, the anchors, identify the flip rates: docs/METHOD.md, "A/B preference
    logs"), its magnitude how different the two responses are (the vote propensity)."""
    Xa, Xb = split_features(X)
    diff = Xa - Xb
    return np.ascontiguousarray(np.hstack([diff, np.abs(diff)]), dtype=np.float32)


def position_summary(log: pl.DataFrame) -> dict[str, Any]:
    """Votes and where they went, the one count of them (``validate``, ``describe``, the simulator and the
    benchmark read it): ``pairs``, ``votes``, ``n_for_a`` and ``for_a`` (votes for a, the first-shown response where
    the log records it: count and share), ``position_logged``, ``swapped`` (:func:`count_swapped`), and on gold- or
    simulation-labelled voted pairs the plain rates ``rho01`` = P(vote b | a better), ``rho10`` = P(vote a | b
    better) with their counts."""
    voted = log.filter(pl.col(schema.OBSERVED) == 1)
    n_for_a = int((voted[schema.FEEDBACK] == 1).sum())
    out: dict[str, Any] = {"pairs": log.height, "votes": voted.height, "n_for_a": n_for_a,
                           "for_a": n_for_a / voted.height if voted.height else float("nan"),
                           "position_logged": SHOWN_FIRST in log.columns, "swapped": count_swapped(log)}
    label = schema.GOLD_LABEL if schema.GOLD_LABEL in log.columns else (
        schema.TRUE_LABEL if schema.TRUE_LABEL in log.columns else None)
    if label is not None:
        lab = voted.filter(pl.col(label).is_not_null())
        r, t = lab[schema.FEEDBACK].to_numpy().astype(float), lab[label].to_numpy().astype(float)
        out.update(label=label, n_a_better=int((t == 1).sum()), n_b_better=int((t == 0).sum()),
                   rho01=float(np.mean(r[t == 1] == 0)) if (t == 1).any() else float("nan"),
                   rho10=float(np.mean(r[t == 0] == 1)) if (t == 0).any() else float("nan"))
    return out


def swapped_duplicates(log: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Swapped-order duplicates: rows of one prompt and one pair of responses shown in both orders (after
    :func:`read_pairs` put the first-shown in a). Returns ``group`` ((n,) int64: the group's id, -1 for a row whose
    pair the log never shows in the other order, or whose two responses are one text) and ``order`` ((n,) int8: 0
    where ``response_a`` sorts before ``response_b``, else 1). What ``FlipRateEstimator(method="duplicates")`` reads
    (:mod:`causalrm.nuisances.duplicate_votes`) and ``validate`` counts."""
    a, b = pl.col(RESPONSE_A), pl.col(RESPONSE_B)
    keyed = log.select(schema.PROMPT, pl.min_horizontal(a, b).alias("_lo"), pl.max_horizontal(a, b).alias("_hi"),
                       (a > b).cast(pl.Int8).alias("_order"), (a == b).alias("_same")).with_row_index("_row")
    both = (keyed.filter(~pl.col("_same")).group_by(schema.PROMPT, "_lo", "_hi")
            .agg(pl.col("_order").n_unique().alias("_orders"), pl.col("_row"))
            .filter(pl.col("_orders") == 2).sort(pl.col("_row").list.min()))
    group = np.full(log.height, -1, dtype=np.int64)
    for gid, rows in enumerate(both["_row"].to_list()):
        group[np.asarray(rows, dtype=np.int64)] = gid
    return group, keyed["_order"].to_numpy().astype(np.int8)


def count_swapped(log: pl.DataFrame) -> int:
    """Swapped-order duplicate pairs whose two orders both got a vote (:func:`swapped_duplicates`): how many pairs
    the flip rates can be read from."""
    group, order = swapped_duplicates(log)
    voted = (group >= 0) & (log[schema.OBSERVED].to_numpy() == 1)
    return len({int(g) for g in group[voted & (order == 0)]} & {int(g) for g in group[voted & (order == 1)]})


def describe(log: pl.DataFrame) -> str:
    """One line for ``validate``, ``fit`` and the app: a pairwise (A/B) log, its votes and where they went."""
    s = position_summary(log)
    return describe_pairwise(s["pairs"], s["votes"], s["n_for_a"], first_shown=s["position_logged"])


__all__ = ["CHOSEN", "COLUMNS", "REJECTED", "RESPONSE_A", "RESPONSE_B", "SHOWN_FIRST", "TRUE_SCORE_A", "TRUE_SCORE_B",
           "count_swapped", "describe", "is_pair_log", "is_pairwise", "nuisance_features", "pair_features",
           "position_summary", "read_pairs", "sides", "split_features", "swapped_duplicates"]
