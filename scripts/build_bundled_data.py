"""Build the bundled data in ``data/`` from the raw copies in ``../shared/data/``.

Usage::

    python scripts/build_bundled_data.py [--source ../shared/data] [--dest data]

This is the only code that reads ``shared/``. Every change made to the sources is listed in ``data/README.md``;
the script is deterministic, so rerunning it reproduces the committed files (row order is the source order).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from causalrm.atomic_io import write_table_atomic  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data"
DEFAULT_DEST = ROOT / "data"

# Leading columns shared by every rated file, then dataset-specific extras.
RATED_HEAD = ("prompt", "response", "response_id", "pair_id", "split", "rating")


def _nonempty(col: str = "response") -> pl.Expr:
    return pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "")


def build_ultrafeedback(src: Path) -> pl.DataFrame:
    """2,400 UltraFeedback responses (1,200 pairs) minus the 2 empty responses; ``eval`` becomes ``test``."""
    df = pl.read_ndjson(src / "ultrafeedback_binarized" / "ultrafeedback_binarized_subset.jsonl.gz")
    assert df.height == 2400, df.height
    df = df.filter(_nonempty())
    assert df.height == 2398, df.height
    return df.select(
        pl.col("prompt"),
        pl.col("response"),
        pl.col("response_id"),
        pl.col("pair_id"),
        pl.col("split").replace_strict({"train": "train", "eval": "test"}, return_dtype=pl.String),
        pl.col("score").cast(pl.Float64).alias("rating"),
        pl.col("position"),
        pl.col("source_index"),
        pl.col("score_chosen").cast(pl.Float64),
        pl.col("score_rejected").cast(pl.Float64),
    )


#: pairs in ``ultrafeedback_pairs.parquet`` from the source's train and eval splits (the first decisive ones of each)
N_PAIRS = {"train": 300, "eval": 100}


def build_ultrafeedback_pairs(src: Path) -> pl.DataFrame:
    """A real A/B sample in TRL's preference format (``prompt``, ``chosen``, ``rejected``): of the UltraFeedback
    subset's pairs whose GPT-4 scores differ (a tie says neither is better) and whose two responses are non-empty, the
    first ``N_PAIRS[split]`` of each source split, in source order. ``split``: the source's ``eval`` -> ``"test"``,
    its ``train`` -> empty (the workbench draws train / val by prompt). ``response_id`` is the source's ``pair_id``;
    ``score_chosen``, ``score_rejected`` and ``source_index`` are kept. Every pair is voted: no selection to undo."""
    df = pl.read_ndjson(src / "ultrafeedback_binarized" / "ultrafeedback_binarized_subset.jsonl.gz")
    side = ["pair_id", "response"]
    chosen = df.filter(pl.col("position") == "chosen").select(*side, "split", "prompt", "source_index",
                                                             "score_chosen", "score_rejected")
    rejected = df.filter(pl.col("position") == "rejected").select(pl.col(side[0]), pl.col("response").alias("rejected"))
    pairs = chosen.join(rejected, on="pair_id", how="inner", maintain_order="left").rename({"response": "chosen"})
    assert pairs.height == 1200, pairs.height
    decisive = pairs.filter((pl.col("score_chosen") != pl.col("score_rejected")) & _nonempty("chosen")
                            & _nonempty("rejected"))
    pairs = pl.concat([decisive.filter(pl.col("split") == name).head(n) for name, n in N_PAIRS.items()])
    assert pairs.height == sum(N_PAIRS.values()) and pairs["pair_id"].n_unique() == pairs.height
    return pairs.select(pl.col("pair_id").alias("response_id"), "prompt", "chosen", "rejected",
                        pl.when(pl.col("split") == "eval").then(pl.lit("test")).otherwise(None).alias("split"),
                        pl.col("score_chosen").cast(pl.Float64), pl.col("score_rejected").cast(pl.Float64),
                        "source_index")

def build_wildbench(src: Path) -> pl.DataFrame:
    """WildBench responses minus the empty ones; ``prompt`` is "" (the source has no prompt text)."""
    df = pl.read_ndjson(src / "wildbench" / "wildbench_scored_responses.jsonl.gz")
    assert df.height == 15339, df.height
    df = df.filter(_nonempty())
    return df.select(
        pl.lit("", dtype=pl.String).alias("prompt"),
        pl.col("response"),
        pl.concat_str([pl.lit("wb-"), pl.col("session_id"), pl.lit("-"), pl.col("model")]).alias("response_id"),
        pl.col("session_id").alias("pair_id"),
        pl.lit(None, dtype=pl.String).alias("split"),
        pl.coalesce("score_gpt4o", "score_gpt4turbo").cast(pl.Float64).alias("rating"),
        pl.col("session_id"),
        pl.col("model"),
        pl.col("score_gpt4o").cast(pl.Float64),
        pl.col("score_gpt4turbo").cast(pl.Float64),
    )


def build_helpsteer2(src: Path) -> pl.DataFrame:
    """The first 100 HelpSteer2 train rows; ``rating`` = helpfulness (0-4); ``pair_id`` numbers the prompts."""
    df = pl.read_ndjson(src / "helpsteer2" / "helpsteer2_train_first100.jsonl.gz")
    assert df.height == 100, df.height
    df = df.with_row_index("row")
    # Number prompts by first appearance: hs0, hs1, ... (the 50 prompts each have two responses).
    first = df.group_by("prompt").agg(pl.col("row").min().alias("first")).sort("first")
    first = first.with_row_index("prompt_index").select("prompt", "prompt_index")
    df = df.join(first, on="prompt", how="left").sort("row")  # join does not keep order on every polars version
    return df.select(
        pl.col("prompt"),
        pl.col("response"),
        pl.format("hs2-{}", pl.col("row")).alias("response_id"),
        pl.format("hs2-p{}", pl.col("prompt_index")).alias("pair_id"),
        pl.lit(None, dtype=pl.String).alias("split"),
        pl.col("helpfulness").cast(pl.Float64).alias("rating"),
        *[pl.col(c).cast(pl.Int64) for c in ("helpfulness", "correctness", "coherence", "complexity", "verbosity")],
    )


def _named(struct_col: str, field: str, name: str, dtype: pl.DataType) -> pl.Expr:
    """Value of entry ``name`` in an oasst1 ``{name: [...], field: [...]}`` struct column (null when absent)."""
    names = pl.col(struct_col).struct.field("name")
    values = pl.col(struct_col).struct.field(field)
    idx = names.list.eval(pl.element() == name).list.arg_max()
    has = names.list.contains(name).fill_null(False)
    return pl.when(has).then(values.list.get(idx, null_on_oob=True)).otherwise(None).cast(dtype).alias(name)


def build_oasst1(src: Path) -> pl.DataFrame:
    """Real observational log: one row per English assistant message of the oasst1 validation split."""
    raw = pl.read_ndjson(src / "oasst1" / "oasst1_en_validation.jsonl.gz")
    assert raw.height == 2022, raw.height
    by_id = {r["message_id"]: r for r in raw.select("message_id", "parent_id", "role", "text").iter_rows(named=True)}

    def context_of(parent_id: str) -> tuple[str, int]:
        """Earlier turns above the parent (oldest first), as 'User: ...' / 'Assistant: ...' blocks."""
        turns: list[str] = []
        node = by_id.get(parent_id)
        node = by_id.get(node["parent_id"]) if node and node["parent_id"] else None
        while node is not None:
            who = "User" if node["role"] == "prompter" else "Assistant"
            turns.append(f"{who}: {node['text']}")
            node = by_id.get(node["parent_id"]) if node["parent_id"] else None
        return "\n\n".join(reversed(turns)), len(turns)

    parents = raw.select(
        pl.col("message_id").alias("parent_id"),
        pl.col("text").alias("parent_text"),
        pl.col("role").alias("parent_role"),
    )
    asst = (
        raw.with_row_index("_row")
        .filter(pl.col("role") == "assistant")
        .join(parents, on="parent_id", how="left")
        .sort("_row")
        .drop("_row")
    )
    assert asst.height == 1243, asst.height
    # 2 assistant replies answer prompts in another language, which the English filter removed: no prompt, dropped.
    asst = asst.filter(pl.col("parent_text").is_not_null())
    assert asst.height == 1241, asst.height
    assert (asst["parent_role"] == "prompter").all()
    ctx = [context_of(p) for p in asst["parent_id"]]

    asst = asst.with_columns(
        _named("emojis", "count", "+1", pl.Int64).fill_null(0).alias("thumbs_up"),
        _named("emojis", "count", "-1", pl.Int64).fill_null(0).alias("thumbs_down"),
        _named("emojis", "count", "red_flag", pl.Int64).fill_null(0).alias("red_flag"),
        _named("labels", "value", "quality", pl.Float64).alias("gold_score"),
        _named("labels", "count", "quality", pl.Int64).alias("gold_count"),
        _named("labels", "value", "helpfulness", pl.Float64).alias("helpfulness_score"),
        pl.Series("context", [c for c, _ in ctx], dtype=pl.String),
        pl.Series("depth", [d for _, d in ctx], dtype=pl.Int64),
    )
    median_quality = asst["gold_score"].drop_nulls().median()
    observed = (pl.col("thumbs_up") > 0) | (pl.col("thumbs_down") > 0)
    return asst.select(
        pl.col("parent_text").alias("prompt"),
        pl.col("text").alias("response"),
        pl.col("message_id").alias("response_id"),
        pl.when(observed).then((pl.col("thumbs_up") > pl.col("thumbs_down")).cast(pl.Int8)).otherwise(None)
        .alias("feedback"),
        observed.cast(pl.Int8).alias("observed"),
        pl.col("user_id"),
        pl.col("created_date").alias("timestamp"),
        pl.col("parent_id").alias("pair_id"),
        pl.lit(None, dtype=pl.String).alias("split"),
        pl.when(pl.col("gold_score").is_not_null())
        .then((pl.col("gold_score") > median_quality).cast(pl.Float64))
        .otherwise(None)
        .alias("gold_label"),
        pl.col("gold_score").alias("rating"),
        pl.col("gold_score"),
        pl.col("gold_count"),
        pl.col("helpfulness_score"),
        pl.col("rank").cast(pl.Int64),
        pl.col("thumbs_up"),
        pl.col("thumbs_down"),
        pl.col("red_flag"),
        pl.col("deleted"),
        pl.col("review_result"),
        pl.col("review_count").cast(pl.Int64),
        pl.col("message_tree_id"),
        pl.col("depth"),
        pl.col("context"),
    )


BUILDERS = {
    "ultrafeedback": build_ultrafeedback,
    "wildbench": build_wildbench,
    "oasst1": build_oasst1,
    "helpsteer2": build_helpsteer2,
    "ultrafeedback_pairs": build_ultrafeedback_pairs,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the raw copies")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="output folder (default: data/)")
    parser.add_argument("names", nargs="*", default=list(BUILDERS), help="datasets to build (default: all)")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        df = BUILDERS[name](args.source)
        assert df["response_id"].n_unique() == df.height, f"{name}: duplicate response_id"
        assert "response" not in df.columns or df.filter(~_nonempty()).height == 0, f"{name}: empty response"
        out = args.dest / f"{name}.parquet"
        write_table_atomic(df, out)
        print(f"{out}: {df.height} rows, {df.width} columns, {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
