"""The bundled datasets in ``data/`` (see ``data/README.md`` for sources, licenses and changes).

* ``ultrafeedback``: 2,398 responses, GPT-4 ratings 1-10, the source's own train/test split.
* ``wildbench``: 15,243 responses, GPT-4o / GPT-4-Turbo WB-Scores 1-10; ``prompt`` is "" (no prompt text).
* ``oasst1``: a real observational log (emoji feedback, crowd ``quality`` as ``gold_label``); rating = quality.
* ``helpsteer2``: 100 responses, human helpfulness 0-4 (a fixture).

Beside them, not a rated dataset (so not in :data:`BUNDLED`): ``ultrafeedback_pairs.parquet``, 400 real UltraFeedback
A/B pairs in TRL's preference format (GPT-4 chosen / rejected, every pair voted), read by :func:`load_pairs_sample`.

The folder is found relative to the package (``<repo>/data``); the ``CAUSALRM_DATA_DIR`` environment variable
overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from causalrm.data import schema
from causalrm.data.io.readers import read_log, read_rated
from causalrm.errors import InputError

__all__ = ["BUNDLED", "PAIRS_SAMPLE", "bundled_path", "bundled_log", "data_dir", "load_oasst1_log", "load_pairs_sample",
           "load_rated"]

BUNDLED: tuple[str, ...] = ("ultrafeedback", "wildbench", "oasst1", "helpsteer2")
#: the bundled A/B sample's file name in ``data/`` (an A/B log, not a rated dataset: :func:`load_pairs_sample`)
PAIRS_SAMPLE = "ultrafeedback_pairs.parquet"

_RATED_HEAD = (schema.PROMPT, schema.RESPONSE, schema.RESPONSE_ID, schema.PAIR_ID, "rating", schema.SPLIT)


def data_dir() -> Path:
    """The folder holding the bundled ``<name>.parquet`` files."""
    env = os.environ.get("CAUSALRM_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data"


def bundled_path(name: str) -> Path:
    """Path of bundled dataset ``name`` (one of :data:`BUNDLED`): ``data/<name>.parquet``."""
    if name not in BUNDLED:
        raise InputError(f"unknown bundled dataset {name!r}; use one of {', '.join(BUNDLED)}")
    path = data_dir() / f"{name}.parquet"
    if not path.is_file():
        raise InputError(f"{path}: bundled dataset {name!r} is missing; run python scripts/build_bundled_data.py "
                         "from the repository root")
    return path


def bundled_log(name: str) -> pl.DataFrame:
    """Bundled dataset ``name`` read through :func:`causalrm.data.io.readers.read_log` (canonical log schema + extras)."""
    return read_log(bundled_path(name))


def load_rated(name_or_path: str | os.PathLike, *, rating_column: str | None = None,
               mapping: dict[str, str] | None = None) -> pl.DataFrame:
    """A rated dataset: ``prompt, response, response_id, pair_id, rating (Float64), split`` then extras.

    Args:
        name_or_path: a bundled name (:data:`BUNDLED`), a file path (any format ``read_log`` reads) or
            ``hf://OWNER/NAME[:SPLIT]`` (needs the ``datasets`` package and network or a local HF cache).
        rating_column: the numeric column to use as ``rating``. Bundled data default to their ``rating`` column
            (for example ``"score_gpt4turbo"`` picks the other WildBench judge); for a file it is required unless
            the file has a column named ``rating``.
        mapping: ``{user column: canonical column}`` for files (as ``read_log``).

    Bundled rows whose chosen rating is null are dropped (oasst1: 6 rows without a quality label). For a file every
    row needs a finite rating (else :class:`InputError`). ``split`` is ``"train"``, ``"test"``, ``"val"`` or null;
    a missing ``pair_id`` is derived from the prompt text (``p<k>``, numbered by first appearance).
    """
    if isinstance(name_or_path, str) and name_or_path in BUNDLED:
        name = name_or_path
        df = pl.read_parquet(bundled_path(name))
        column = rating_column or "rating"
        if column not in df.columns:
            raise InputError(f"bundled dataset {name!r} has no column {column!r}; numeric columns: "
                             + ", ".join(c for c, t in df.schema.items() if t.is_numeric()))
        if not df.schema[column].is_numeric():
            raise InputError(f"bundled dataset {name!r}: column {column!r} is not numeric; pick a numeric rating")
        df = df.with_columns(pl.col(column).cast(pl.Float64).alias("rating"))
        df = df.filter(pl.col("rating").is_not_null() & pl.col("rating").is_finite())
    else:
        path = name_or_path if str(name_or_path).startswith("hf://") else Path(name_or_path)
        if isinstance(path, Path) and isinstance(name_or_path, str) and not path.suffix and not path.exists():
            raise InputError(f"{name_or_path!r} is neither a bundled dataset ({', '.join(BUNDLED)}) nor a file; "
                             "check the name or path")
        df = read_rated(path, rating_column=rating_column, mapping=mapping)
    if schema.PAIR_ID not in df.columns:
        prompts = df[schema.PROMPT].unique(maintain_order=True).to_list()
        codes = {p: f"p{k}" for k, p in enumerate(prompts)}
        df = df.with_columns(pl.col(schema.PROMPT).replace_strict(codes, return_dtype=pl.String).alias(schema.PAIR_ID))
    if schema.SPLIT not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias(schema.SPLIT))
    head = list(_RATED_HEAD)
    return df.select(*head, *[c for c in df.columns if c not in head])


def load_oasst1_log() -> pl.DataFrame:
    """The real oasst1 feedback log (log schema: feedback/observed from emoji reactions, ``gold_label`` from the
    crowd ``quality`` label) with its extra columns (``gold_score``, ``rank``, ``thumbs_up``, ``context``, ...)."""
    return read_log(bundled_path("oasst1"))


def load_pairs_sample() -> pl.DataFrame:
    """The bundled real A/B sample (``data/ultrafeedback_pairs.parquet``: prompt, chosen, rejected) read as a canonical
    A/B log (``causalrm.data.pairwise.read_pairs``: a / b drawn per row with seed 0, every pair voted)."""
    path = data_dir() / PAIRS_SAMPLE
    if not path.is_file():
        raise InputError(f"{path}: the bundled A/B sample is missing; run python scripts/build_bundled_data.py "
                         "ultrafeedback_pairs from the repository root")
    return read_log(path)
