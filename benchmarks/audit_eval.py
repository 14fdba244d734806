"""Gold audits measured against the truth (docs/RESULTS.md, "Gold audits"): flip rates and verdicts from audited labels.

``flips``: on held-out simulated logs (seed 100, never used in development), audits of N = 100, 300, 1000 rows
labelled from ``true_label``, redrawn with ``--designs`` design seeds: the gold flip rates (inclusion-weighted,
``FlipRateEstimator(method="gold")``) against the rates realised on the log's observed train/val rows: error, 95%
interval coverage and width.

``verdicts``: per cell and seed, an audit of 1000 rows (its prefixes are the audits of 100 and 300) labelled from the
clean label (oasst1: its crowd ``gold_label``, the audit capped at the auditable rows); ``auto`` is fitted with the
300-row audit merged and ``flip_method="gold"``; then the kept model (or, when auto kept naive, the debiased candidate
it ranked best) is set against naive twice: on the clean test split (oasst1: the crowd labels of the held-out
prompts) and on the audited rows at each N (``labelled_verdict`` on the audit: held-out rows, inclusion-weighted,
stratified bootstrap). Also recorded: each model's audited R² interval, the true R² difference on the rows the audit
stands for (all val rows; and all train/val rows for the variant that keeps training rows), and the flip rates.

    python benchmarks/audit_eval.py flips --out docs/results/audit/flips.json
    python benchmarks/audit_eval.py verdicts --cells wildbench:teacher,oasst1 --seeds 0,1,2 \\
        --out docs/results/audit/verdicts.json
    python benchmarks/audit_eval.py report docs/results/audit/flips.json docs/results/audit/verdicts.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from causalrm.atomic_io import (
    jsonable,  # noqa: E402
    write_json_atomic,  # noqa: E402
)
from causalrm.config import FitConfig
from causalrm.data import schema  # noqa: E402
from causalrm.data.splits import group_split
from causalrm.embeddings.embedder import embed_log  # noqa: E402
from causalrm.evaluation import audit
from causalrm.evaluation.metrics import metrics, sigmoid
from causalrm.evaluation.verdicts import labelled_verdict  # noqa: E402
from causalrm.nuisances.flip_rates import (
    FlipRateEstimator,  # noqa: E402
    design_columns,
)
from causalrm.workflows.orchestrate import fit_log  # noqa: E402

SIZES = (100, 300, 1000)
#: the held-out setting of docs/RESULTS.md ("auto and the gates"): a selection and noise no other cell uses
ALPHA, RHO01, RHO10 = 0.2, 0.15, 0.25
FIT_WITH = 300


# --------------------------------------------------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------------------------------------------------
def cell_log(cell: str, seed: int) -> tuple[pl.DataFrame, np.ndarray, str]:
    """(log, X, clean-label column) of a cell: ``DATASET:RATING`` simulated at the held-out setting, or ``oasst1``
    (real feedback; 20% of the prompt groups held out as test, as in ``causalrm bench --real-feedback``)."""
    if cell == "oasst1":
        from causalrm.data.datasets import load_oasst1_log

        log = load_oasst1_log().filter(pl.col(schema.GOLD_LABEL).is_not_null()).drop(schema.SPLIT)
        is_test = group_split(log, np.arange(log.height), val_fraction=0.2, seed=10_000 + seed)
        log = log.with_columns(pl.Series(schema.SPLIT, np.where(is_test, schema.TEST, None).tolist(),
                                         dtype=pl.String),
                               pl.col(schema.GOLD_LABEL).alias("crowd_label")).drop(schema.GOLD_LABEL)
        return log, embed_log(log), "crowd_label"
    from causalrm.simulation.simulate import simulate_dataset

    dataset, rating = cell.split(":")
    log, _ = simulate_dataset(dataset, alpha=ALPHA, rho01=RHO01, rho10=RHO10, seed=seed, rating=rating)
    return log, embed_log(log), schema.TRUE_LABEL


def labelled(log: pl.DataFrame, table: pl.DataFrame, clean: str) -> pl.DataFrame:
    """The label file ``table`` filled in from the log's clean label."""
    truth = dict(zip(log[schema.RESPONSE_ID], log[clean].cast(pl.Float64)))
    return table.with_columns(pl.Series(schema.GOLD_LABEL, [truth[i] for i in table[schema.RESPONSE_ID]]))


def realised_rates(log: pl.DataFrame, clean: str) -> tuple[float, float]:
    """rho01, rho10 realised on the observed train/val rows against the clean label."""
    u = log[audit.auditable_rows(log).tolist()].filter(pl.col(schema.OBSERVED) == 1)
    y, r = u[clean].cast(pl.Float64).to_numpy(), u[schema.FEEDBACK].cast(pl.Float64).to_numpy()
    return float(np.mean(r[y == 1] == 0)), float(np.mean(r[y == 0] == 1))


def gold_rates(merged: pl.DataFrame, seed: int, n_bootstrap: int = 1000) -> dict[str, Any]:
    rows = audit.auditable_rows(merged)
    obs = merged[schema.OBSERVED].cast(pl.Float64).to_numpy()[rows]
    fb = np.nan_to_num(merged[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows])
    est = FlipRateEstimator(method="gold", n_bootstrap=n_bootstrap, random_state=seed)
    est.fit(None, fb, obs, **design_columns(merged, rows))
    return {"rho01": est.rho01_, "rho10": est.rho10_, "ci": {k: list(v) for k, v in est.ci_.items()},
            "n_gold": est.diagnostics_["n_gold"]}


# --------------------------------------------------------------------------------------------------------------------
# flips
# --------------------------------------------------------------------------------------------------------------------
def run_flips(cells: list[str], designs: int, seed: int) -> list[dict[str, Any]]:
    out = []
    for cell in cells:
        log, X, clean = cell_log(cell, seed)
        realised = realised_rates(log, clean)
        rows, strata = audit.design_strata(log, X, seed=seed)
        for n in SIZES:
            for design in range(designs):
                table = labelled(log, audit.proposal_table(log, rows, strata, n, seed=design), clean)
                est = gold_rates(audit.merge_labels(log, table), design, n_bootstrap=500)
                out.append({"cell": cell, "log_seed": seed, "n": n, "design": design,
                            "realised": {"rho01": realised[0], "rho10": realised[1]}, **est})
        print(f"flips {cell}: done", file=sys.stderr)
    return out


# --------------------------------------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------------------------------------
def outcome(diff: dict[str, Any]) -> str:
    lo, hi = diff["ci95"]
    return "better" if lo > 0 else "worse" if hi < 0 else "level"


def r2_difference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return metrics(y, b)["r2"] - metrics(y, a)["r2"]


def run_verdict(cell: str, seed: int, threads: int) -> dict[str, Any]:
    from causalrm.workflows.demo import debiased_of

    t0 = time.perf_counter()
    log, X, clean = cell_log(cell, seed)
    rows, strata = audit.design_strata(log, X, seed=seed)
    largest = min(max(SIZES), rows.size)
    table = labelled(log, audit.proposal_table(log, rows, strata, largest, seed=seed), clean)
    fit_on = audit.merge_labels(log, table.head(FIT_WITH))
    result = fit_log(fit_on, X, FitConfig(flip_method="gold", seed=seed, num_threads=threads))
    debiased = debiased_of(result)
    probs = {m: sigmoid(result.candidates[m].score(log, X)) for m in ("naive", debiased)}
    split = result.split
    y = log[clean].cast(pl.Float64).to_numpy()
    record: dict[str, Any] = {"cell": cell, "seed": seed, "chosen": result.choice["method"], "debiased": debiased,
                              "choice_reason": result.choice["reason"], "realised": dict(zip(
                                  ("rho01", "rho10"), realised_rates(log, clean))),
                              "gates": {k: g.passed for k, g in result.nuisances.gates.items()}}
    test = log.select(pl.col(clean).alias(schema.GOLD_LABEL), pl.Series(schema.SPLIT, split.tolist()))
    test = test.with_columns(pl.when(pl.col(schema.SPLIT) == schema.TEST).then(pl.col(schema.GOLD_LABEL))
                             .alias(schema.GOLD_LABEL))
    diff = labelled_verdict(test if clean != schema.TRUE_LABEL else log, probs["naive"], probs[debiased],
                            baseline="naive", debiased=debiased, split=split, seed=seed)
    record["clean"] = {k: diff[k] for k in ("difference", "ci95", "n", "labels")} | {"outcome": outcome(diff)}
    val, fitted = split == schema.VAL, split != schema.TEST
    record["truth"] = {"val": r2_difference(y[val], probs["naive"][val], probs[debiased][val]),
                       "train_val": r2_difference(y[fitted], probs["naive"][fitted], probs[debiased][fitted])}
    record["audits"] = {}
    for n in sorted({*(s for s in SIZES if s < largest), largest}):
        merged = audit.merge_labels(log, table.head(n))
        entry: dict[str, Any] = {"flip_rates": gold_rates(merged, seed)}
        trained_on = pl.Series(split == schema.TRAIN)
        held_only = merged.with_columns(pl.when(trained_on).then(None).otherwise(pl.col(schema.GOLD_LABEL))
                                        .alias(schema.GOLD_LABEL))
        every_row = np.full(log.height, schema.VAL, dtype=object)
        for variant, table_n, roles in (("verdict", merged, split), ("held_out", held_only, every_row),
                                        ("all_rows", merged, every_row)):
            d = labelled_verdict(table_n, probs["naive"], probs[debiased], baseline="naive", debiased=debiased,
                                 split=roles, seed=seed, label=schema.GOLD_LABEL)
            evaluation = audit.audited_evaluation(table_n, probs, split=roles, seed=seed)
            entry[variant] = {"difference": d["difference"], "ci95": d["ci95"], "n": d["n"], "labels": d["labels"],
                              "outcome": outcome(d), "r2": {m: [r["r2"], *r["r2_ci"]] for m, r in
                                                              evaluation["runs"].items()}}
        record["audits"][str(n)] = entry
    record["seconds"] = time.perf_counter() - t0
    print(f"verdicts {cell} seed {seed}: {debiased} vs naive, clean {record['clean']['outcome']}, audits "
          + ", ".join(f"{n}: {e['verdict']['outcome']}" for n, e in record["audits"].items())
          + f" ({record['seconds']:.0f}s)", file=sys.stderr)
    return jsonable(record)


# --------------------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------------------
def report_flips(rows: list[dict[str, Any]]) -> str:
    lines = ["| log | N | rho01: mean abs. error / within 0.08 / CI covers / CI width | rho10: same |",
             "|---|---|---|---|"]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        for n in SIZES:
            sub = [r for r in rows if r["cell"] == cell and r["n"] == n]
            parts = []
            for k in ("rho01", "rho10"):
                err = np.array([r[k] - r["realised"][k] for r in sub])
                cover = np.mean([r["ci"][k][0] <= r["realised"][k] <= r["ci"][k][1] for r in sub])
                width = np.mean([r["ci"][k][1] - r["ci"][k][0] for r in sub])
                parts.append(f"{np.mean(np.abs(err)):.3f} / {np.mean(np.abs(err) < 0.08):.0%} / {cover:.0%} / "
                             f"{width:.3f}")
            realised = sub[0]["realised"]
            lines.append(f"| {cell} seed {sub[0]['log_seed']} (realised {realised['rho01']:.3f} / "
                         f"{realised['rho10']:.3f}) | {n} | " + " | ".join(parts) + " |")
    lines.append(f"\n{len(rows) // (len(SIZES) * len(set(r['cell'] for r in rows)))} design draws per row.")
    return "\n".join(lines)


VARIANTS = {"verdict": "the product's rule (held-out rows once at least 100 remain, else all)",
            "held_out": "held-out audited rows only", "all_rows": "all audited rows (training rows kept)"}


def _truth(record: dict[str, Any], variant: str, entry: dict[str, Any]) -> float:
    """The true R² difference on the rows an audited estimate stands for: all val rows (held-out audited rows), or
    all train/val rows (training rows kept)."""
    held_out = variant == "held_out" or (variant == "verdict" and entry["labels"].startswith("held-out"))
    return record["truth"]["val" if held_out else "train_val"]


def report_verdicts(rows: list[dict[str, Any]]) -> str:
    sizes = ("100", "300", "max")
    lines = ["| cell | seed | compared | clean test: R² diff [95% CI] | audit 100 | audit 300 | audit 1000 (oasst1: "
             "all) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["clean"]
        cells = []
        for k in sorted(r["audits"], key=int):
            a = r["audits"][k]["verdict"]
            where = "held-out" if a["labels"].startswith("held-out") else "all"
            cells.append(f"{a['difference']:+.3f} [{a['ci95'][0]:+.3f}, {a['ci95'][1]:+.3f}] {a['outcome']} "
                         f"({a['n']} {where})")
        lines.append(f"| {r['cell']} | {r['seed']} | {r['debiased']} vs naive | {c['difference']:+.3f} "
                     f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] {c['outcome']} | " + " | ".join(cells) + " |")
    lines += ["", "| rows the audit reads | audit | same outcome as the clean test | opposite outcome | median width "
                  "of the R² difference CI | median width of a model's R² CI | CI covers the true difference |",
              "|---|---|---|---|---|---|---|"]
    for variant, name in VARIANTS.items():
        for i, n in enumerate(sizes):
            entries = [(r, r["audits"][sorted(r["audits"], key=int)[i]][variant]) for r in rows]
            same = sum(a["outcome"] == r["clean"]["outcome"] for r, a in entries)
            opposite = sum({a["outcome"], r["clean"]["outcome"]} == {"better", "worse"} for r, a in entries)
            width = np.median([a["ci95"][1] - a["ci95"][0] for _, a in entries])
            r2_width = np.median([v[2] - v[1] for _, a in entries for v in a["r2"].values()])
            covers = sum(a["ci95"][0] <= _truth(r, variant, a) <= a["ci95"][1] for r, a in entries)
            total = len(entries)
            lines.append(f"| {name} | {n} | {same}/{total} | {opposite}/{total} | {width:.3f} | {r2_width:.3f} | "
                         f"{covers}/{total} |")
    lines.append("\n* The true difference: on every val row (held-out estimates) or every train/val row (estimates "
                 "that keep training rows), against the clean label.")
    for i, n in enumerate(sizes):
        val = sum(a["ci95"][0] <= r["truth"]["val"] <= a["ci95"][1] for r in rows
                  for a in [r["audits"][sorted(r["audits"], key=int)[i]]["all_rows"]])
        lines.append(f"* All audited rows, audit {n}: the interval covers the val-row difference in {val}/{len(rows)}.")
    shift = [r["truth"]["train_val"] - r["truth"]["val"] for r in rows]
    lines.append(f"* Training rows shift the true difference (train/val minus val rows) by {np.mean(shift):+.4f} on "
                 f"average, {min(shift):+.3f} to {max(shift):+.3f}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flips")
    f.add_argument("--cells", default="wildbench:teacher,ultrafeedback:teacher")
    f.add_argument("--log-seed", type=int, default=100)
    f.add_argument("--designs", type=int, default=100)
    f.add_argument("--out", required=True)
    v = sub.add_parser("verdicts")
    v.add_argument("--cells", default="wildbench:teacher,wildbench:real,ultrafeedback:teacher,ultrafeedback:real,"
                                      "oasst1")
    v.add_argument("--seeds", default="0,1,2")
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.command == "flips":
        rows = run_flips(args.cells.split(","), args.designs, args.log_seed)
        write_json_atomic({"kind": "flips", "rows": jsonable(rows)}, args.out)
    elif args.command == "verdicts":
        import torch

        torch.set_num_threads(args.threads)
        rows = []
        for cell in args.cells.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(run_verdict(cell, seed, args.threads))
                write_json_atomic({"kind": "verdicts", "rows": rows}, args.out)  # after each: resumable reading
    else:
        for path in args.files:
            data = json.loads(open(path, encoding="utf-8").read())
            print((report_flips if data["kind"] == "flips" else report_verdicts)(data["rows"]) + "\n")


if __name__ == "__main__":
    main()
