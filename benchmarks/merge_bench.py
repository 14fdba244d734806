"""Merge `causalrm bench` JSON files of one cell run over disjoint seed sets (e.g. two processes in parallel).

The cells must agree on everything but the seeds (dataset, scenario, methods, fit overrides, embedder); the seeds must
be disjoint. The merged file concatenates the per-(method, seed) rows and the per-seed nuisances, lists the union of
the seeds, recomputes the summary over all seeds (`causalrm.bench.summarize`: the same means, stds and gap-closed
bootstrap as a single run over those seeds), and records the sum of the runs' seconds (CPU-style: the runs may have
overlapped in wall time) with the source files under "merged_from". Writes JSON and, with --markdown, the bench
markdown table.

    python benchmarks/merge_bench.py a.json b.json --json merged.json --markdown merged.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.bench import BenchConfig, BenchResult, format_markdown, summarize  # noqa: E402


def merge(docs: list[dict]) -> dict:
    first = docs[0]["config"]
    fixed = {k: v for k, v in first.items() if k != "seeds"}
    seeds: list[int] = []
    for d in docs:
        other = {k: v for k, v in d["config"].items() if k != "seeds"}
        if other != fixed:
            diff = sorted(k for k in set(fixed) | set(other) if fixed.get(k) != other.get(k))
            raise SystemExit(f"error: the cells differ in more than the seeds: {diff}")
        overlap = set(seeds) & set(d["config"]["seeds"])
        if overlap:
            raise SystemExit(f"error: seeds {sorted(overlap)} appear in more than one file")
        seeds += list(d["config"]["seeds"])
    order = sorted(seeds)
    results = sorted((r for d in docs for r in d["results"]),
                     key=lambda r: (order.index(r["seed"]), first["methods"].index(r["method"])))
    nuisances = sorted((n for d in docs for n in d["nuisances"]), key=lambda n: order.index(n["seed"])) \
        if all("seed" in n for d in docs for n in d["nuisances"]) else [n for d in docs for n in d["nuisances"]]
    return {"config": {**first, "seeds": order}, "results": results,
            "summary": summarize(results, n_boot=first.get("n_boot", 2000), seed=0),
            "nuisances": nuisances, "seconds": sum(d.get("seconds", 0.0) for d in docs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="causalrm bench JSON files (same cell, disjoint seeds)")
    ap.add_argument("--json", required=True, help="merged JSON output")
    ap.add_argument("--markdown", help="merged markdown table")
    ap.add_argument("--command", help="command line to print in the markdown section")
    args = ap.parse_args()
    docs = []
    for path in args.files:
        with open(path, encoding="utf-8") as fh:
            docs.append(json.load(fh))
    out = merge(docs)
    out["merged_from"] = [os.path.basename(p) for p in args.files]
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    if args.markdown:
        cfg = {k: v for k, v in out["config"].items() if k != "mode"}
        result = BenchResult(config=BenchConfig(**cfg), results=out["results"], nuisances=out["nuisances"],
                             summary=out["summary"], seconds=out["seconds"])
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(format_markdown(result, command=args.command) + "\n")


if __name__ == "__main__":
    main()
