"""The capacity step of the pre-registered DR protocol (docs/METHOD.md, "The DR variants and how they are validated",
step 5): per method, the head / weight-decay configuration with the lowest mean best validation value of the
method's own early-stopping criterion over the seeds; the DR candidate (lowest mean validation ``causalrm-snips``
over the eligible DR variants and configurations); and the rule (level with the capacity-selected CausalRM-IPS and
>= 40% of the naive -> oracle-observed R² gap). Reads no clean test label to choose: test R² is read only for the
rule and the report, after every choice is made.

Each input is one ``causalrm bench`` JSON of one configuration, named CONFIG=PATH (CONFIG: a label such as
``mlp-wd0``); the first one is the library default, used for the secondary gap and to break exact ties.

    python benchmarks/dr_capacity.py --out docs/results/dr/capacity/selected.json \\
        mlp-wd0=docs/results/dr/capacity/mlp-wd0.json linear-wd0=docs/results/dr/capacity/linear-wd0.json ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.workflows.bench import summarize  # noqa: E402

CRITERION = "causalrm-snips"
#: DR variants that may become the default (they early-stop on CRITERION, protocol step 1)
ELIGIBLE_DR = ("causalrm-dr-cf", "causalrm-mrdr")
#: takes the configuration chosen for its DR term's snips-stopping form (it stops on its own DR estimate, which
#: step 1 rules out as a criterion); reported, never eligible
FOLLOWS = {"causalrm-dr": "causalrm-dr-cf"}
LEVEL_WITH = "causalrm-ips"
MIN_GAP = 0.40


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", metavar="CONFIG=PATH", help="one bench JSON per configuration")
    ap.add_argument("--out", default=None, help="write the selected rows (and the first configuration's as "
                                                 "METHOD@CONFIG) as one bench-style JSON (for "
                                                 "benchmarks/paired_differences.py)")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {}
    bench_config = None
    for item in args.configs:
        label, _, path = item.partition("=")
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        runs[label] = data["results"]
        bench_config = bench_config or data["config"]
    labels = list(runs)
    default = labels[0]
    methods = list(dict.fromkeys(r["method"] for r in runs[default]))

    # 1. per method and configuration: mean best validation value of the method's own criterion (no test label)
    val: dict[tuple[str, str], float] = {}
    crit: dict[str, set[str]] = {}
    for label, rows in runs.items():
        for m in methods:
            mrows = [r for r in rows if r["method"] == m]
            val[(m, label)] = _mean([r.get("best_val_estimate") for r in mrows])
            crit.setdefault(m, set()).update(r.get("val_method") for r in mrows)
    chosen: dict[str, str] = {}
    for m in methods:
        if m in FOLLOWS:
            continue
        chosen[m] = min(labels, key=lambda c: (val[(m, c)] if math.isfinite(val[(m, c)]) else math.inf,
                                               labels.index(c)))
    for m, lead in FOLLOWS.items():
        if m in methods and lead in chosen:
            chosen[m] = chosen[lead]

    print("Mean best validation value of each method's own criterion (chooses; lower is better):\n")
    print("| method | criterion | " + " | ".join(labels) + " | chosen |")
    print("|" + "---|" * (len(labels) + 3))
    for m in methods:
        cells = [f"{val[(m, c)]:.5f}" + (" ←" if chosen.get(m) == c else "") for c in labels]
        note = chosen.get(m, "–") + (f" (that of {FOLLOWS[m]})" if m in FOLLOWS else "")
        print(f"| {m} | {', '.join(sorted(x for x in crit[m] if x))} | " + " | ".join(cells) + f" | {note} |")

    # 2. the DR candidate: lowest mean validation causalrm-snips among eligible (variant, configuration) pairs
    pairs = [(val[(m, c)], m, c) for m in ELIGIBLE_DR if m in methods for c in labels
             if crit[m] == {CRITERION} and math.isfinite(val[(m, c)])]
    if not pairs:
        raise SystemExit(f"no eligible DR variant validated on {CRITERION}")
    _, cand, cand_cfg = min(pairs, key=lambda t: (t[0], labels.index(t[2])))
    print(f"\nDR candidate (lowest mean validation {CRITERION} over {', '.join(ELIGIBLE_DR)} x configurations): "
          f"{cand} with {cand_cfg}.")

    # 3. the selected rows, one configuration per method, and the rule (test R² read only from here on)
    selected = []
    for m in methods:
        for r in runs[chosen[m]]:
            if r["method"] == m:
                selected.append({**r, "capacity": chosen[m]})
    summary = summarize(selected)
    default_summary = summarize(runs[default])
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"config": {**(bench_config or {}), "capacity_selection": chosen,
                                  "dr_candidate": {"method": cand, "capacity": cand_cfg}},
                       # the default-configuration fits ride along as METHOD@CONFIG rows (for paired differences
                       # against today's defaults); the summary covers the selected rows only
                       "results": selected + [{**r, "method": f"{r['method']}@{default}", "capacity": default}
                                              for r in runs[default]],
                       "summary": summary, "nuisances": [], "seconds": 0.0}, fh, indent=1)

    def r2(m: str, s: dict) -> float:
        return s[m]["r2"]["mean"]

    def fmt(g: dict) -> str:
        return f"{g['value']:.0%} [{g['ci'][0]:.0%}, {g['ci'][1]:.0%}]" if g else "n/a"

    refs = ("naive", "oracle-observed")
    print("\nTest R² of the chosen configurations (reported; the rule reads the candidate and causalrm-ips):\n")
    print("| method | configuration | R² | AUROC | prompt Kendall τ | gap vs oracle-observed, selected refs "
          f"[95% CI] (rule) | same R² against the {default} refs | R² at {default} | gap at {default} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        # the selected fit against the default-configuration references (secondary, not used by the rule)
        mixed = [r for r in selected if r["method"] == m] + [r for r in runs[default] if r["method"] in refs
                                                             and r["method"] != m]
        g_def = summarize(mixed)[m].get("gap_closed_observed") or {}
        print(f"| {m} | {chosen[m]} | {r2(m, summary):.3f} | {summary[m]['auroc']['mean']:.3f} | "
              f"{summary[m]['prompt_kendall']['mean']:.3f} | {fmt(summary[m].get('gap_closed_observed') or {})} | "
              f"{fmt(g_def) if m not in refs else '–'} | {r2(m, default_summary):.3f} | "
              f"{fmt(default_summary[m].get('gap_closed_observed') or {})} |")

    seeds = sorted({r["seed"] for r in selected})
    by = {(r["method"], r["seed"]): r["r2"] for r in selected}
    diff = [by[(cand, s)] - by[(LEVEL_WITH, s)] for s in seeds if (cand, s) in by and (LEVEL_WITH, s) in by]
    level = _mean(diff)
    gap = (summary[cand].get("gap_closed_observed") or {}).get("value", math.nan)
    ok = level >= 0 and gap >= MIN_GAP
    print(f"\nRule: {cand} ({cand_cfg}) − {LEVEL_WITH} ({chosen.get(LEVEL_WITH)}) mean paired R² difference "
          f"{level:+.3f} (needs >= 0); gap closed vs oracle-observed {gap:.0%} (needs >= {MIN_GAP:.0%}; naive "
          f"{chosen.get('naive')}, oracle-observed {chosen.get('oracle-observed')}).")
    print("Decision: " + (f"REPLACE the default causalrm-dr with {cand} at {cand_cfg}." if ok
                          else "keep the default causalrm-dr (the rule is not met)."))


if __name__ == "__main__":
    main()
