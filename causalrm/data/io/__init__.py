"""Reading impression logs into the canonical schema (the atomic writers live in :mod:`causalrm.atomic_io`).

``read_log`` accepts CSV, TSV, JSONL (``.jsonl`` / ``.ndjson``), JSON (an array of objects) and Parquet files, and the
gzip variants of the text formats (``.csv.gz``, ``.tsv.gz``, ``.jsonl.gz``, ``.json.gz``). It returns a
``pl.DataFrame`` whose canonical columns (``causalrm.data.schema``) have their canonical dtypes:

* ``prompt``, ``response``, ``response_id``, ``feedback``, ``observed`` are always present;
* the other canonical columns (``user_id``, ``pair_id``, ``logged_propensity``, ``gold_label``, ``true_label``, ...)
  appear only when the file has them (after ``mapping``), so their presence carries information;
* every other column is kept, after the canonical ones, under its own name (text files: numbers are inferred).

Chat-format logs (``causalrm.data.chat``) give a ``messages`` column instead of ``prompt`` / ``response``: a list of
``{"role", "content"}`` messages (JSON / JSONL arrays, a Parquet list-of-structs column, or JSON text in a CSV cell).
The final assistant message becomes ``response``, the messages before it ``prompt`` (rendered readable by
``causalrm.data.chat.render_prompt``) and ``context`` (the same messages as JSON text, first after the canonical columns).
A ``prompt`` or ``response`` that is not text (a JSON object or array, a nested Parquet column) is an error.

Every problem with the input raises :class:`~causalrm.errors.InputError` with one line that names the file, the
1-based data row (and the line for text files) and/or the column, and says what to do. Parser exceptions from
polars / pyarrow / json never escape.

Feedback normalisation (to Int8 0/1, null = no feedback): booleans; 0/1; +1/-1 (thumbs); the words true/false,
yes/no, up/down, thumbs_up/thumbs_down, like/dislike, positive/negative, good/bad, 👍/👎; numeric ratings only
with ``threshold`` (``rating >= threshold`` -> 1). Empty cells and NA/null/none/nan mean "no feedback".

Submodules:

* :mod:`causalrm.data.io.readers`: the public readers ``read_log``, ``read_rated``, ``read_table``, ``read_labels``
  (``_guard``: no parser exception escapes).
* :mod:`causalrm.data.io.formats`: raw loading, one parser per format (CSV/TSV, JSONL, JSON, Parquet, gzip, ``hf://``),
  file checks, ``SUPPORTED_SUFFIXES``; the ``_Raw`` table with its row -> line locator.
* :mod:`causalrm.data.io.mapping`: ``parse_mapping`` (``--map`` specs) and applying a mapping to a file's columns.
* :mod:`causalrm.data.io.normalise`: column values to canonical dtypes (feedback words and ratings, 0/1 flags,
  probabilities, text, ids) with one-line errors naming row and column.
* :mod:`causalrm.data.io.canonical`: a raw table -> the canonical schema (required columns, chat ``messages``, extras).
* :mod:`causalrm.data.io.formatting`: wording shared by the error messages.

Every name the single module defined is importable from ``causalrm.data.io`` as before (``X as X``: a re-export outside
``__all__``; the private ones for :mod:`causalrm.data.scan`, which mirrors the eager checks, and for tests).
"""

from __future__ import annotations

from causalrm.data.io.canonical import _NOT_TEXT_TODO as _NOT_TEXT_TODO
from causalrm.data.io.canonical import _canonicalise as _canonicalise
from causalrm.data.io.canonical import _check_not_nested as _check_not_nested
from causalrm.data.io.canonical import _from_messages as _from_messages
from causalrm.data.io.formats import _SUPPORTED_TEXT as _SUPPORTED_TEXT
from causalrm.data.io.formats import HF_PREFIX as HF_PREFIX
from causalrm.data.io.formats import SUPPORTED_SUFFIXES
from causalrm.data.io.formats import _check_file as _check_file
from causalrm.data.io.formats import _clean_header as _clean_header
from causalrm.data.io.formats import _decode as _decode
from causalrm.data.io.formats import _frame_from_records as _frame_from_records
from causalrm.data.io.formats import _json_type as _json_type
from causalrm.data.io.formats import _kind as _kind
from causalrm.data.io.formats import _load_delimited as _load_delimited
from causalrm.data.io.formats import _load_hf as _load_hf
from causalrm.data.io.formats import _load_json as _load_json
from causalrm.data.io.formats import _load_jsonl as _load_jsonl
from causalrm.data.io.formats import _load_parquet as _load_parquet
from causalrm.data.io.formats import _load_raw as _load_raw
from causalrm.data.io.formats import _Raw as _Raw
from causalrm.data.io.formats import _read_bytes as _read_bytes
from causalrm.data.io.formats import _series_from_values as _series_from_values
from causalrm.data.io.formatting import _first_line as _first_line
from causalrm.data.io.formatting import _fmt as _fmt
from causalrm.data.io.formatting import _list as _list
from causalrm.data.io.mapping import _TARGETS as _TARGETS
from causalrm.data.io.mapping import _apply_mapping as _apply_mapping
from causalrm.data.io.mapping import _check_target as _check_target
from causalrm.data.io.mapping import parse_mapping
from causalrm.data.io.normalise import _BINARY_WORDS as _BINARY_WORDS
from causalrm.data.io.normalise import _FEEDBACK_WORDS as _FEEDBACK_WORDS
from causalrm.data.io.normalise import _NEGATIVE as _NEGATIVE
from causalrm.data.io.normalise import _NULL_TOKENS as _NULL_TOKENS
from causalrm.data.io.normalise import _POSITIVE as _POSITIVE
from causalrm.data.io.normalise import _SPLIT_NAMES as _SPLIT_NAMES
from causalrm.data.io.normalise import _binary as _binary
from causalrm.data.io.normalise import _Ctx as _Ctx
from causalrm.data.io.normalise import _first_bad as _first_bad
from causalrm.data.io.normalise import _ids as _ids
from causalrm.data.io.normalise import _infer_text_column as _infer_text_column
from causalrm.data.io.normalise import _probability as _probability
from causalrm.data.io.normalise import _text as _text
from causalrm.data.io.normalise import _to_float as _to_float
from causalrm.data.io.readers import _guard as _guard
from causalrm.data.io.readers import _source as _source
from causalrm.data.io.readers import read_labels as read_labels
from causalrm.data.io.readers import read_log, read_rated, read_table

__all__ = [
    "SUPPORTED_SUFFIXES",
    "parse_mapping",
    "read_log",
    "read_rated",
    "read_table",
]
