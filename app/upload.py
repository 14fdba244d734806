"""A visitor's uploaded log on the Data tab: its columns offered for mapping (``inspect_upload``), the log checks
run on it as named, the column mapping from the dropdowns and free-text specs, the feedback threshold field."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from app.common import guarded, upload_path
from causalrm.data import schema
from causalrm.data.feedback_kinds import IMPLICIT, PAIRWISE
from causalrm.data.pairwise import is_pairwise
from causalrm.errors import InputError

MAPPABLE = (schema.PROMPT, schema.RESPONSE, schema.FEEDBACK, schema.OBSERVED, schema.GOLD_LABEL,
            schema.LOGGED_PROPENSITY, schema.PAIR_ID, schema.SPLIT, schema.RESPONSE_ID, schema.MESSAGES)


AUTO = "(same name)"


@contextlib.contextmanager
def _named_as_uploaded(path: Path) -> Iterator[None]:
    """Report errors about an uploaded file by its name, not by the server's temporary path."""
    try:
        yield
    except InputError as err:
        raise InputError(str(err).replace(str(path), path.name)) from None


@guarded
def inspect_upload(file: Any) -> tuple:
    """Columns of an uploaded file, offered in the mapping dropdowns (a column named like the target is preselected).

    Returns ``(columns_md, *dropdown updates for MAPPABLE)``.
    """
    if file is None:
        return ("", *[gr.update(choices=[AUTO], value=AUTO) for _ in MAPPABLE])
    from causalrm.data.io.readers import read_table

    path = upload_path(file)
    with _named_as_uploaded(path):
        columns = [str(c) for c in read_table(path).columns]
    updates = [gr.update(choices=[AUTO, *columns], value=AUTO) for _ in MAPPABLE]
    note = f"`{path.name}`: {len(columns)} columns: `" + "`, `".join(columns) + "`"
    if schema.MESSAGES in columns:
        note += (f". Chat format: `{schema.MESSAGES}` gives the response (the final assistant message) and the "
                 "prompt (the turns before it); leave prompt and response unmapped")
    return (note + "\n\n" + _check_md(path, columns), *updates)


def _check_md(path: Path, columns: Sequence[str]) -> str:
    """The log checks ``validate`` and ``read_log`` make (:func:`causalrm.data.scan.summarize_file`), run on the file as
    named: a pass, the one-line error to fix before *Load log*, or the columns still to map."""
    from causalrm.data.scan import summarize_file

    if schema.MESSAGES not in columns and not is_pairwise(columns) and not all(c in columns for c in schema.REQUIRED):
        missing = ", ".join(f"`{c}`" for c in schema.REQUIRED if c not in columns)
        return f"Checks: map {missing} (or a chat `{schema.MESSAGES}` column) below, then *Load log* checks the rest."
    try:
        with _named_as_uploaded(path):
            s = summarize_file(path, source=path.name)
    except InputError as err:
        return f"❌ **This file will not load as named**: {err}"
    if s.feedback_kind == PAIRWISE:
        return f"✅ Checks pass as named: an A/B log of {s.n_rows:,} pairs, {s.n_observed:,} with a vote."
    if s.feedback_kind == IMPLICIT:
        return f"✅ Checks pass as named: {s.n_rows:,} rows, implicit feedback with {s.n_positive:,} events."
    return f"✅ Checks pass as named: {s.n_rows:,} rows, {s.n_observed:,} with feedback."


def build_mapping(picks: dict[str, str | None], extra: str | None) -> dict[str, str]:
    """``{user column: canonical}`` from the dropdown picks (canonical -> user column) and free-text ``a=b`` specs."""
    from causalrm.data.io.mapping import parse_mapping

    specs = [f"{canonical}={column}" for canonical, column in picks.items()
             if column and column != AUTO and column != canonical]
    if extra and extra.strip():
        specs += [s for s in extra.replace("\n", ",").split(",") if s.strip()]
    return parse_mapping(specs) if specs else {}


def parse_threshold(value: Any) -> float | None:
    """The feedback threshold field: empty means none, else a finite number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        thr = float(str(value).strip())
    except ValueError:
        thr = math.nan
    if not math.isfinite(thr):
        raise InputError(f"feedback threshold {value!r}: enter a number (e.g. 4) or leave it empty")
    return thr
