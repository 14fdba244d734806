"""Build ``data/oasst1_chat.jsonl``: a small chat-format impression log derived from ``data/oasst1.parquet``.

Deterministic (no randomness; rerun it to reproduce the file). Each row is one oasst1 assistant message with its
real emoji feedback, written as an OpenAI / Hugging Face ``messages`` conversation: the earlier turns (oasst1's
``context``: ``"User: ...\\n\\nAssistant: ..."``), the user's prompt, and the rated assistant message last. No text is
changed. Selection: the rows whose whole conversation has at most ``MAX_CHARS`` characters, first-turn rows (depth 0)
and second-turn rows (depth 2) whose context splits unambiguously into one user and one assistant turn, in
``response_id`` order, ``N_FIRST`` and ``N_SECOND`` of them.

Usage: ``python scripts/build_chat_sample.py`` from the repository root.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "oasst1.parquet"
TARGET = ROOT / "data" / "oasst1_chat.jsonl"
MAX_CHARS = 1500
N_FIRST = 120
N_SECOND = 80


def _earlier_turns(context: str) -> list[dict[str, str]] | None:
    """The user and assistant turns of a depth-2 oasst1 context, or None when the text does not split cleanly."""
    if not context.startswith("User: ") or context.count("\n\nAssistant: ") != 1 or "\n\nUser: " in context:
        return None
    user, _, assistant = context[len("User: "):].partition("\n\nAssistant: ")
    if not user.strip() or not assistant.strip():
        return None
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def build() -> list[dict]:
    df = pl.read_parquet(SOURCE).sort("response_id")
    rows: list[dict] = []
    counts = {0: 0, 2: 0}
    wanted = {0: N_FIRST, 2: N_SECOND}
    for r in df.iter_rows(named=True):
        depth = r["depth"]
        if depth not in wanted or counts[depth] >= wanted[depth] or r["deleted"]:
            continue
        earlier = [] if depth == 0 else _earlier_turns(r["context"] or "")
        if earlier is None:
            continue
        messages = [*earlier, {"role": "user", "content": r["prompt"]},
                    {"role": "assistant", "content": r["response"]}]
        if sum(len(m["content"]) for m in messages) > MAX_CHARS or not r["prompt"].strip():
            continue
        counts[depth] += 1
        rows.append({"response_id": r["response_id"], "pair_id": r["pair_id"], "messages": messages,
                     "feedback": r["feedback"], "gold_label": r["gold_label"]})
    return rows


def main() -> None:
    rows = build()
    TARGET.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows -> {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
