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
"""
