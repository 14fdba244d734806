"""`causalrm bench`: the paper's semi-synthetic experiment (or oasst1's real feedback) for several methods and seeds.

Examples::

    causalrm bench --dataset ultrafeedback --alpha 0.5 --rho01 0.2 --rho10 0.1 --seeds 0,1,2 \\
        --methods naive,ips,denoise,causalrm-ips,causalrm-dr,oracle --json uf.json --markdown uf.md
    causalrm bench --dataset wildbench --rating teacher --alpha 0.1 --json wb_teacher.json
    causalrm bench --dataset oasst1 --json oasst1.json      # real feedback, evaluated against gold labels
"""

from __future__ import annotations

import argparse
import shlex
import sys

#: the FitConfig fields `causalrm bench` exposes (shared by every method; its --rho01/--rho10 are the simulation's)
BENCH_FIT_OPTIONS = ("max_epochs", "patience", "propensity_model", "flip_method", "clip", "proxy_weighting",
                     "base_loss", "device", "hidden", "lr", "num_threads", "val_method", "select_head",
                     "imputation_fit", "weight_decay", "auto_candidates")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.data.schema import DEFAULT_EMBEDDER
    from causalrm.estimators.methods import bench_defaults

    p = subparsers.add_parser("bench", help="run the paper's experiment: simulate, fit every method, evaluate",
                              description="Simulate biased noisy feedback from a rated dataset, fit several "
                                          "estimators per seed and evaluate them on the clean test split.")
    p.add_argument("--dataset", default="ultrafeedback",
                   help="ultrafeedback, wildbench, helpsteer2, a rated file, oasst1 (real feedback vs gold), or "
                        "synthetic[:ROWSxDIM] (a control with a linear score on Gaussian features)")
    p.add_argument("--rating-column", default=None, help="rating column (default: rating)")
    p.add_argument("--alpha", type=float, default=0.5, help="selection strength, smaller = stronger (default 0.5)")
    p.add_argument("--rho01", type=float, default=0.2, help="P(r=0 | r*=1) (default 0.2)")
    p.add_argument("--rho10", type=float, default=0.1, help="P(r=1 | r*=0) (default 0.1)")
    p.add_argument("--observation-rate", type=float, default=0.2, help="share of observed rows (default 0.2)")
    p.add_argument("--rating", default="real", choices=("real", "teacher"),
                   help="real ratings or a teacher function of the embedding (semi-synthetic, default real)")
    p.add_argument("--teacher", default="linear", choices=("linear", "mlp"), help="teacher form (default linear)")
    p.add_argument("--snr", type=float, default=None, help="teacher signal-to-noise variance ratio (default none)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--methods", default=",".join(bench_defaults()),
                   help="comma-separated methods (default: the registry's bench defaults)")
    from causalrm.config import FitConfig
    from causalrm.options import add_arguments

    add_arguments(p.add_argument_group("fit configuration shared by every method (FitConfig)"), FitConfig,
                  BENCH_FIT_OPTIONS, help_suffix={"val_method": " (every method except naive/oracle)"})
    p.add_argument("--fixed-rates", action="store_true",
                   help="give the estimators the true rho01/rho10 instead of estimating them (ablation)")
    p.add_argument("--true-propensity", action="store_true",
                   help="give the estimators the simulation's true propensity as a logged one (ablation)")
    p.add_argument("--feedback-column", default=None, metavar="COLUMN",
                   help="a second rating whose binarised value is the feedback (real noise; e.g. wildbench "
                        "--rating-column score_gpt4o --feedback-column score_gpt4turbo --rho01 0 --rho10 0)")
    p.add_argument("--information-limit", action="store_true",
                   help="add the oracle-effective row: clean labels of n (1 - rho01 - rho10)^2 observed rows")
    p.add_argument("--model", dest="embedder", default=DEFAULT_EMBEDDER,
                   help=f"embedding model (default {DEFAULT_EMBEDDER})")
    p.add_argument("--json", dest="json_out", required=True, metavar="OUT", help="results JSON")
    p.add_argument("--markdown", dest="md_out", default=None, metavar="OUT.md", help="also write a markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _ints(text: str) -> tuple[int, ...]:
    from causalrm.errors import InputError

    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None


def config_from_args(args: argparse.Namespace):
    """The ``BenchConfig`` of parsed ``causalrm bench`` arguments (validated)."""
    from causalrm.config import FitConfig
    from causalrm.options import as_str_tuple, from_args
    from causalrm.workflows.bench import BenchConfig

    fit: dict = from_args(FitConfig, args, BENCH_FIT_OPTIONS)
    if args.fixed_rates:
        fit.update(rho01=args.rho01, rho10=args.rho10)
    return BenchConfig(
        dataset=args.dataset, alpha=args.alpha, rho01=args.rho01, rho10=args.rho10,
        observation_rate=args.observation_rate, rating=args.rating, teacher=args.teacher, snr=args.snr,
        rating_column=args.rating_column, seeds=_ints(args.seeds),
        methods=as_str_tuple(args.methods), fit=fit, embedder=args.embedder,
        true_propensity=args.true_propensity, feedback_column=args.feedback_column,
        information_limit=args.information_limit,
    ).validate()


def run(args: argparse.Namespace) -> int:
    from causalrm.atomic_io import write_json_atomic, write_text_atomic
    from causalrm.workflows.bench import run_bench

    config = config_from_args(args)
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = run_bench(config, progress=say)
    command = "causalrm bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] \
        else None
    write_json_atomic(result.to_dict(), args.json_out)
    md = result.to_markdown(command=command)
    if args.md_out:
        write_text_atomic(md, args.md_out)
    print(md)
    return 0
