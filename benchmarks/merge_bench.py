"""Merge `causalrm bench` JSON files of one cell run in parts: disjoint seed sets (e.g. two processes in parallel)
and/or extra methods run later on the same seeds.

The files must agree on everything but the seeds and the methods (dataset, scenario, fit overrides, embedder). A
(method, seed) row present in two files must be the same in both but for its seconds, and so must the nuisances of
a seed (the keys both record, seconds aside): that is the check that the later run reproduces the earlier one. Every
method must cover every seed. The merged file holds the union of the per-(method, seed) rows and per-seed nuisances,
recomputes the summary over all seeds (`causalrm.workflows.bench.summarize`: the same means, stds and gap-closed bootstrap as
a single run), and records the sum of the runs' seconds (CPU-style: the runs may have overlapped in wall time) with
the source files under "merged_from". Writes JSON and, with --markdown, the bench markdown table.

    python benchmarks/merge_bench.py a.json b.json --json merged.json --markdown merged.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.atomic_io import write_json_atomic, write_text_atomic  # noqa: E402
from causalrm.config import FitConfig  # noqa: E402
from causalrm.workflows.bench import BenchConfig, BenchResult, summarize  # noqa: E402
from causalrm.workflows.bench_report import format_markdown  # noqa: E402


def _same(a: dict, b: dict) -> bool:
    keys = (set(a) & set(b)) - {"seconds"}
    return all(a[k] == b[k] for k in keys)


def _config(doc: dict) -> dict:
    """A file's config with the fields an older release did not record at their defaults."""
    defaults = {k: v for k, v in BenchConfig().to_dict().items() if k not in ("seeds", "methods", "mode")}
    return {**defaults, **doc["config"]}


def _setting(doc: dict) -> dict:
    """What must agree between the parts: the config but seeds and methods, the fit overrides as the FitConfig
    they give (an override equal to its default is the same setting as none)."""
    config = {k: v for k, v in _config(doc).items() if k not in ("seeds", "methods")}
    config["fit"] = FitConfig.from_dict(config["fit"]).to_dict()
    return config


def merge(docs: list[dict]) -> dict:
    first = _config(docs[0])
    fixed = _setting(docs[0])
    methods: list[str] = []
    rows: dict[tuple[str, int], dict] = {}
    nuis: dict[int, dict] = {}
    for d in docs:
        other = _setting(d)
        if other != fixed:
            diff = sorted(k for k in set(fixed) | set(other) if fixed.get(k) != other.get(k))
            raise SystemExit(f"error: the cells differ in more than the seeds and methods: {diff}")
        methods += [m for m in d["config"]["methods"] if m not in methods]
        for r in d["results"]:
            key = (r["method"], r["seed"])
            if key in rows and not _same(rows[key], r):
                raise SystemExit(f"error: method {key[0]} seed {key[1]} differs between the files; rerun it with "
                                 "the same code and settings")
            rows.setdefault(key, r)
        for n in d["nuisances"]:
            if n["seed"] in nuis and not _same(nuis[n["seed"]], n):
                raise SystemExit(f"error: the nuisances of seed {n['seed']} differ between the files")
            nuis.setdefault(n["seed"], n)
    order = sorted({seed for _, seed in rows})
    missing = [f"{m} seed {s}" for m in methods for s in order if (m, s) not in rows]
    if missing:
        raise SystemExit(f"error: no row for {', '.join(missing[:5])}; every method must cover every seed")
    results = [rows[(m, s)] for s in order for m in methods]
    return {"config": {**first, "seeds": order, "methods": methods}, "results": results,
            "summary": summarize(results, n_boot=first.get("n_boot", 2000), seed=0),
            "nuisances": [nuis[s] for s in order], "seconds": sum(d.get("seconds", 0.0) for d in docs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="causalrm bench JSON files (same cell; parts by seeds and/or methods)")
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
    write_json_atomic(out, args.json)
    if args.markdown:
        cfg = {k: v for k, v in out["config"].items() if k != "mode"}
        result = BenchResult(config=BenchConfig(**cfg), results=out["results"], nuisances=out["nuisances"],
                             summary=out["summary"], seconds=out["seconds"])
        write_text_atomic(format_markdown(result, command=args.command) + "\n", args.markdown)


if __name__ == "__main__":
    main()
