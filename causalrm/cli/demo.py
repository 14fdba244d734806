"""`causalrm demo [--json FILE]`: the workbench's flow headless on the bundled demo setting (semi-synthetic).

Simulates the demo log (WildBench texts, teacher ratings, strong selection, class-conditional flips), fits
``--method auto`` with the library's defaults, and reports naive against the debiased model on the clean test
split with a paired bootstrap interval and a verdict: a check of an install (and of a Space) in about a minute.

Example::

    causalrm demo --json demo.json
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.workflows.demo import DEMO

    p = subparsers.add_parser("demo", help="run the whole flow on the bundled semi-synthetic demo setting",
                              description=f"Fit --method auto on the demo log ({DEMO.describe()}) and compare it "
                                          "with naive on the clean test labels.")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the result as JSON")
    p.add_argument("--seed", type=int, default=DEMO.seed, help=f"simulation and fitting seed (default {DEMO.seed})")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch/BLAS (default 1: many small fits, where more threads only contend)")
    p.add_argument("--quiet", action="store_true", help="no stage messages")
    return p


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from causalrm.atomic_io import write_json_atomic
    from causalrm.config import FitConfig
    from causalrm.workflows.demo import DEMO, run_demo

    setting = dataclasses.replace(DEMO, seed=args.seed)
    say = None if args.quiet else (lambda stage: print(f"demo: {stage}", file=sys.stderr, flush=True))
    if say:
        say(setting.describe())
    out = run_demo(setting, config=FitConfig(num_threads=args.threads), on_stage=say)
    print(f"auto kept {out['chosen']}: {out['choice']['reason']}")
    for name, gate in out["gates"].items():
        print(f"  gate {name.replace('_', ' ')}: {'pass' if gate['passed'] else 'fail'}: {gate['verdict']}")
    for m, met in out["metrics"].items():
        print(f"  {m}: R² {met['r2']:.3f}, MSE {met['mse']:.4f}, AUROC {met['auroc']:.3f} ({out['evaluated_on']})")
    print(out["verdict"])
    print(f"note: {out['reading_guide']}")
    print(f"({out['seconds']:.0f}s)")
    if args.json_out:
        write_json_atomic(out, args.json_out)
        print(f"wrote {args.json_out}")
    return 0
