"""Canonicalisation: a raw table (after mapping) -> the canonical schema of :mod:`causalrm.data.schema`, extras kept.

Chat-format logs (a ``messages`` column) give ``prompt``, ``response`` and ``context`` here.
"""

from __future__ import annotations

import json
import math

import polars as pl

from causalrm.data import chat, schema
from causalrm.data.io.formats import _json_type, _Raw
from causalrm.data.io.formatting import _list
from causalrm.data.io.normalise import (
    ColumnProblem,
    _check_unique,
    _Ctx,
    _first_bad,
    _infer_text_column,
    first_failure,
    log_rules,
)
from causalrm.errors import InputError


# --------------------------------------------------------------------------------------------------------------------
# Canonicalisation
# --------------------------------------------------------------------------------------------------------------------
def _canonicalise(raw: _Raw, origin: dict[str, str], threshold: float | None, *, log: bool) -> pl.DataFrame:
    ctx = _Ctx(raw, origin)
    df = raw.df
    path = raw.path
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise InputError(f"--threshold {threshold!r}: expected a finite number, for example --threshold 4")
    context = None
    if schema.MESSAGES in df.columns:
        prompt_s, response_s, context = _from_messages(ctx)
        df = df.drop(schema.MESSAGES).with_columns(prompt_s, response_s)
    missing = [c for c in schema.REQUIRED if c not in df.columns]
    if missing:
        shown = ", ".join(f"--map {c}=COLUMN" for c in missing)
        raise InputError(f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)}; columns found: {_list(df.columns)}; "
                         f"rename the columns or pass {shown} (chat transcripts: a {schema.MESSAGES!r} column, "
                         f"or --map {schema.MESSAGES}=COLUMN)")
    n = df.height
    for name in (schema.PROMPT, schema.RESPONSE):
        _check_not_nested(ctx, name, df[name])
    if log and threshold is not None and schema.FEEDBACK not in df.columns:
        raise InputError(f"{path}: --threshold given but there is no feedback column (columns found: "
                         f"{_list(df.columns)}); map your rating column with --map feedback=COLUMN")
    try:
        rules = log_rules(dict(df.schema), threshold, log=log)
    except ColumnProblem as err:
        raise ctx.fail(None, err.column, err.problem, err.todo) from None
    bad = first_failure(df, rules)
    if bad is not None:
        raise ctx.fail(*bad)
    values = df.select([rule.value.alias(name) for name, rule in rules.items()])
    out: dict[str, pl.Series] = {name: values[name] for name in rules}
    if schema.RESPONSE_ID in out:
        _check_unique(ctx, schema.RESPONSE_ID, out[schema.RESPONSE_ID])
    else:
        out[schema.RESPONSE_ID] = pl.Series(schema.RESPONSE_ID, [f"r{k}" for k in range(1, n + 1)], dtype=pl.String)

    ordered = [c for c in schema.COLUMNS if c in out]
    canon = pl.DataFrame([out[c].cast(schema.DTYPES[c]).rename(c) for c in ordered])
    if context is not None:
        canon = canon.with_columns(context)
        out[schema.CONTEXT] = context
    extras = [c for c in df.columns if c not in out]
    if extras:
        extra_df = df.select(extras)
        if raw.cells_are_text:
            extra_df = pl.DataFrame([_infer_text_column(extra_df[c]) for c in extras])
        canon = pl.concat([canon, extra_df], how="horizontal")
    return canon


_NOT_TEXT_TODO = ("store the text as a string; for chat transcripts give a 'messages' column (a list of "
                  "{role, content} messages ending with the assistant's response) instead of prompt/response")


def _check_not_nested(ctx: _Ctx, name: str, s: pl.Series) -> None:
    """Raise, naming the first row, when a prompt / response column holds JSON objects or arrays (not text)."""
    values = ctx.raw.objects.get(name)
    if values is not None:
        i = next(k for k, v in enumerate(values) if isinstance(v, (dict, list)))
        raise ctx.fail(i, name, f"is a JSON {_json_type(values[i])}, not text", _NOT_TEXT_TODO)
    if s.dtype.is_nested():
        i = _first_bad(s.is_not_null())
        kind = "a list" if isinstance(s.dtype, (pl.List, pl.Array)) else "a struct"
        raise ctx.fail(i if i is not None else 0, name, f"is {kind} ({s.dtype}), not text", _NOT_TEXT_TODO)


def _from_messages(ctx: _Ctx) -> tuple[pl.Series, pl.Series, pl.Series]:
    """``prompt``, ``response`` and ``context`` (JSON text) from a chat-format ``messages`` column."""
    df = ctx.raw.df
    both = [c for c in (schema.PROMPT, schema.RESPONSE, schema.CONTEXT) if c in df.columns]
    if both:
        raise InputError(f"{ctx.raw.path}: has both a {ctx.col(schema.MESSAGES)} and a column {both[0]!r}; the "
                         f"conversation gives the prompt, context and response: drop or rename {both[0]!r} (or "
                         f"map the columns you mean)")
    s = df[schema.MESSAGES]
    values = ctx.raw.objects.get(schema.MESSAGES)
    if values is None:
        if s.dtype != pl.Null and s.dtype != pl.String and not s.dtype.is_nested():
            raise ctx.fail(0, schema.MESSAGES, f"has type {s.dtype}, not a list of messages",
                           'give each row a list of {"role", "content"} messages')
        values = s.to_list()
    prompts: list[str] = []
    responses: list[str] = []
    contexts: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            raise ctx.fail(i, schema.MESSAGES, "is empty",
                           "every row needs a conversation ending with the assistant's response; drop the row")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise ctx.fail(i, schema.MESSAGES, "is text, not a JSON list of messages",
                               'write [{"role": "user", "content": "..."}, {"role": "assistant", '
                               '"content": "..."}]') from None
        try:
            context, response = chat.split_conversation(value)
        except chat.MalformedConversation as err:
            raise ctx.fail(i, schema.MESSAGES, err.problem, err.todo) from None
        prompts.append(chat.render_prompt(context))
        responses.append(response)
        contexts.append(chat.context_json(context))
    return (pl.Series(schema.PROMPT, prompts, dtype=pl.String), pl.Series(schema.RESPONSE, responses, dtype=pl.String),
            pl.Series(schema.CONTEXT, contexts, dtype=pl.String))
