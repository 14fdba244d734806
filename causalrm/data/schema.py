"""Canonical columns of an impression log.

An impression log has one row per response shown to a user. Users map their own column names onto these with
``--map`` on the CLI or a ``mapping`` dict in Python.

Columns
-------
prompt, response : str, required, non-empty response.
response_id : str, unique; generated when absent.
feedback : Int8 in {0, 1} or null (null = no feedback); normalised from binary, thumbs or thresholded ratings.
observed : Int8 in {0, 1}; ``feedback is not null`` unless given.
user_id, timestamp, pair_id, split : optional metadata (``pair_id`` groups responses to one prompt).
logged_propensity : Float64 in (0, 1], optional; the product's own probability of logging feedback.
gold_label : Float64 in [0, 1], optional; audited true preference on a small subset (evaluation only).
inclusion_probability : Float64 in (0, 1], optional; with gold_label from an audit (``causalrm.evaluation.audit``): the
    probability that the audit's design labelled the row; audited rows weigh 1 / inclusion_probability.
audit_stratum : str, optional; the audit stratum of a gold-labelled row (intervals resample within strata).
true_label, true_score, true_propensity : simulation only; never used for training.

Chat format
-----------
messages : input only, instead of prompt and response: a conversation in the OpenAI / Hugging Face format, a list of
    ``{"role", "content"}`` messages (roles system, user, assistant, tool) ending with the rated assistant message
    (``causalrm.data.chat``). Reading it gives ``response`` (the final assistant message), ``prompt`` (the earlier messages
    rendered readable; one user message renders as its text alone) and ``context``.
context : str, present only for chat-format logs (after the canonical columns): the messages before the response as
    a JSON list of ``{"role", "content"}`` (``causalrm.data.chat.parse_context``), kept for chat templates.
"""

from __future__ import annotations

import polars as pl

PROMPT = "prompt"
RESPONSE = "response"
RESPONSE_ID = "response_id"
FEEDBACK = "feedback"
OBSERVED = "observed"
USER_ID = "user_id"
TIMESTAMP = "timestamp"
PAIR_ID = "pair_id"
LOGGED_PROPENSITY = "logged_propensity"
GOLD_LABEL = "gold_label"
INCLUSION_PROBABILITY = "inclusion_probability"
AUDIT_STRATUM = "audit_stratum"
#: label files only (``causalrm audit``): the number of auditable rows in the row's stratum
AUDIT_STRATUM_ROWS = "audit_stratum_rows"
SPLIT = "split"
TRUE_LABEL = "true_label"
TRUE_SCORE = "true_score"
TRUE_PROPENSITY = "true_propensity"

#: chat-format input column (a list of {role, content} messages); replaced by prompt, response and context on reading
MESSAGES = "messages"
#: chat-format logs only: the messages before the response, as JSON text (not a canonical column: no dtype cast)
CONTEXT = "context"

REQUIRED = (PROMPT, RESPONSE)
SIMULATION_ONLY = (TRUE_LABEL, TRUE_SCORE, TRUE_PROPENSITY)

DTYPES: dict[str, pl.DataType] = {
    PROMPT: pl.String(),
    RESPONSE: pl.String(),
    RESPONSE_ID: pl.String(),
    FEEDBACK: pl.Int8(),
    OBSERVED: pl.Int8(),
    USER_ID: pl.String(),
    TIMESTAMP: pl.String(),
    PAIR_ID: pl.String(),
    LOGGED_PROPENSITY: pl.Float64(),
    GOLD_LABEL: pl.Float64(),
    INCLUSION_PROBABILITY: pl.Float64(),
    AUDIT_STRATUM: pl.String(),
    SPLIT: pl.String(),
    TRUE_LABEL: pl.Int8(),
    TRUE_SCORE: pl.Float64(),
    TRUE_PROPENSITY: pl.Float64(),
}
COLUMNS = tuple(DTYPES)

# Split names. ``train`` / ``val`` are observational; ``test`` is clean and fully observed (simulation).
TRAIN, VAL, TEST = "train", "val", "test"

#: the embedding model every entry point uses unless told otherwise (the bundled all-MiniLM-L6-v2)
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
