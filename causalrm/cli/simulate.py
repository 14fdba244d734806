"""`causalrm simulate`: the paper's semi-synthetic log from a rated dataset (see causalrm/simulation/simulate.py).

Example::

    causalrm simulate --dataset ultrafeedback --alpha 0.5 --rho01 0.2 --rho10 0.1 --seed 0 --out sim.parquet
    causalrm simulate --dataset wildbench --feedback-kind implicit --event-rate-good 0.35 --event-rate-bad 0.03 \
        --examination 1 --out implicit.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from causalrm.errors import InputError

_OUT_SUFFIXES = (".parquet", ".csv", ".jsonl")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a selection-biased, noisy feedback log from a rated dataset (the paper's protocol)",
        description="Turn a rated dataset into an impression log: train/val/test split by prompt group, observation "
        "o ~ Bernoulli(p) with p = c * alpha^(5 - s) (s = rating rescaled to [1, 5], c sets the observation rate), "
        "true_label = 1[rating > median of the rating levels], feedback flipped with rho01 / rho10 on observed "
        "train/val rows; the test split stays clean and fully observed. --feedback-kind implicit logs positive-only "
        "events on every row instead (feedback 1 or empty), mixed adds them to explicit feedback as a 'copied' "
        "column (causalrm/simulation/feedback.py).",
    )
    p.add_argument("--dataset", required=True, metavar="NAME_OR_PATH",
                   help="bundled name (ultrafeedback, wildbench, oasst1, helpsteer2) or a rated file")
    p.add_argument("--rating-column", default=None, metavar="COL", help="column holding the rating in a file")
    p.add_argument("--alpha", type=float, default=None,
                   help="selection strength in (0, 1]; smaller = stronger bias (default 0.5; explicit feedback only)")
    p.add_argument("--rho01", type=float, default=None,
                   help="P(feedback 0 | true 1) on observed rows (default 0.2; explicit feedback only)")
    p.add_argument("--rho10", type=float, default=None,
                   help="P(feedback 1 | true 0) on observed rows (default 0.1; explicit feedback only)")
    p.add_argument("--observation-rate", type=float, default=None,
                   help="expected share of train/val rows with feedback, in (0, 1] (default 0.2; explicit only)")
    p.add_argument("--feedback-kind", choices=("explicit", "implicit", "mixed", "pairwise"), default="explicit",
                   help="explicit thumbs (default), implicit positive-only events on every row (feedback 1 or "
                   "empty), mixed: explicit feedback plus an implicit 'copied' column, or pairwise: an A/B log of "
                   "votes between two responses to one prompt (causalrm/simulation/pairwise.py; --rho01 = P(vote b | "
                   "a better), default 0.10, --rho10 = P(vote a | b better), default 0.30, a shown first)")
    p.add_argument("--pairwise", dest="feedback_kind", action="store_const", const="pairwise",
                   help="the same as --feedback-kind pairwise")
    p.add_argument("--vote-rate", type=float, default=None, metavar="V",
                   help="pairwise: share of train/val pairs with a vote (default 0.26)")
    p.add_argument("--selection", type=float, default=None, metavar="B",
                   help="pairwise: votes likelier on clear differences, logit slope per sd of |score difference| "
                   "(default 1.5; 0 = at random)")
    p.add_argument("--prompt-selection", type=float, default=None, metavar="G",
                   help="pairwise: votes likelier on some prompts, sd of a logit effect per prompt group (default 0)")
    p.add_argument("--swapped-share", type=float, default=0.0, metavar="S",
                   help="pairwise: share of train/val pairs also shown in the other order to another user (own vote "
                   "and flip; --flip-method duplicates reads the rates from them; default 0)")
    p.add_argument("--event-rate-good", type=float, default=None, metavar="C",
                   help="implicit / mixed: P(event | examined, good response) (default 0.35)")
    p.add_argument("--event-rate-bad", type=float, default=None, metavar="EPS",
                   help="implicit / mixed: P(event | examined, bad response), below C (default 0.03)")
    p.add_argument("--examination", type=float, default=None, metavar="ETA",
                   help="implicit / mixed: position-based examination e = 1 / (1 + k)^ETA at a random display "
                   "position k within the prompt group (default: every row examined)")
    p.add_argument("--regenerate-rate-good", type=float, default=None, metavar="R",
                   help="mixed: P(regenerated | examined, good response); with --regenerate-rate-bad")
    p.add_argument("--regenerate-rate-bad", type=float, default=None, metavar="R",
                   help="mixed: P(regenerated | examined, bad response), above the good rate")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of non-test prompt groups in val (default 0.2)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of prompt groups held out as test when the dataset has no test split (default 0.2)")
    p.add_argument("--rating", choices=("real", "teacher"), default="real",
                   help="real ratings, or a semi-synthetic teacher rating computed from the embeddings (default real)")
    p.add_argument("--teacher", choices=("linear", "mlp"), default="linear", help="teacher function (default linear)")
    p.add_argument("--snr", type=float, default=None,
                   help="teacher signal-to-noise variance ratio (default: noiseless)")
    p.add_argument("--embeddings", default=None, metavar="FILE.npy",
                   help="teacher mode: precomputed (n, d) embeddings aligned with the rated rows (default: embed now)")
    p.add_argument("--threshold", default="levels", metavar="levels|ratings|NUMBER",
                   help="true_label = 1[rating > m], m = median of the distinct rating levels (default), of the "
                   "row ratings, or a number")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, metavar="FILE", help="output log (.parquet, .csv or .jsonl)")
    p.add_argument("--config-out", default=None, metavar="FILE.json", help="also write the simulation config as JSON")
    return p


def _threshold(value: str) -> str | float:
    if value in ("levels", "ratings"):
        return value
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--threshold {value!r}: use levels, ratings or a number") from None


def run(args: argparse.Namespace) -> int:

    from causalrm.atomic_io import write_json_atomic, write_table_atomic
    from causalrm.simulation.feedback import REGENERATED
    from causalrm.simulation.simulate import simulate_dataset, simulation_summary
    from causalrm.simulation.config import validate_parameters

    out = Path(args.out)
    if out.suffix.lower() not in _OUT_SUFFIXES:
        raise InputError(f"--out {out}: unsupported extension {out.suffix!r}; use .parquet, .csv or .jsonl")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist; create it first")
    if args.feedback_kind == "pairwise":
        return _run_pairwise(args, out)
    threshold = _threshold(args.threshold)
    feedback = dict(
        alpha=args.alpha, rho01=args.rho01, rho10=args.rho10, observation_rate=args.observation_rate,
        feedback_kind=args.feedback_kind, event_rate_good=args.event_rate_good, event_rate_bad=args.event_rate_bad,
        examination=args.examination, regenerate_rate_good=args.regenerate_rate_good,
        regenerate_rate_bad=args.regenerate_rate_bad,
    )
    validate_parameters(val_fraction=args.val_fraction, test_fraction=args.test_fraction, rating=args.rating,
                        teacher=args.teacher, snr=args.snr, threshold=threshold, **feedback)
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: must be a non-negative integer")
    embeddings = None
    if args.embeddings is not None:
        if args.rating != "teacher":
            raise InputError("--embeddings is only used with --rating teacher")
        from causalrm.embeddings.files import read_embeddings

        embeddings, _ = read_embeddings(args.embeddings)

    log, config = simulate_dataset(
        args.dataset, rating_column=args.rating_column, embeddings=embeddings, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, rating=args.rating, teacher=args.teacher, snr=args.snr,
        threshold=threshold, seed=args.seed, **feedback,
    )
    write_table_atomic(log, out)
    if args.config_out is not None:
        write_json_atomic(config.to_dict(), args.config_out)

    summary = simulation_summary(log)
    rows = summary["rows"]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print(f"wrote {out} ({log.height} rows; ratings: {config.rating_source}; test split: {config.test_source}; "
          f"feedback: {config.feedback_kind})")
    test_rows = "implicit events, like every row" if config.feedback_kind == "implicit" else "clean, fully observed"
    print(f"rows: train {rows['train']}, val {rows['val']}, test {rows['test']} ({test_rows})")
    print(f"true_label = 1[rating > {config.label_threshold:g}]: positive rate {fmt(summary['positive_rate'])}")
    if config.feedback_kind != "implicit":
        print(f"observation rate (train+val): {fmt(summary['observation_rate'])} (target {config.observation_rate:g}, "
              f"alpha {config.alpha:g}, {config.n_capped} rows at p = 1)")
        print(f"flip rates on observed train+val rows: rho01 {fmt(summary['rho01_hat'])} (target {config.rho01:g}, "
              f"n={summary['n_observed_pos']}), rho10 {fmt(summary['rho10_hat'])} (target {config.rho10:g}, "
              f"n={summary['n_observed_neg']})")
    for column, events in summary.get("events", {}).items():
        good, bad = ((config.regenerate_rate_good, config.regenerate_rate_bad) if column == REGENERATED
                     else (config.event_rate_good, config.event_rate_bad))
        print(f"{column} events on all rows: good responses {fmt(events['rate_good'])} (n={events['n_good']}), bad "
              f"{fmt(events['rate_bad'])} (n={events['n_bad']}) (targets {good:g} / {bad:g} x mean examination "
              f"{fmt(events['mean_examination'])})")
    return 0


def _run_pairwise(args: argparse.Namespace, out: Path) -> int:
    """``--feedback-kind pairwise``: an A/B log (:func:`causalrm.simulation.pairwise.simulate_pairs`)."""
    from causalrm.atomic_io import write_json_atomic, write_table_atomic
    from causalrm.simulation.pairwise import DEFAULTS, simulate_pairs
    from causalrm.simulation.simulate import load_for_simulation

    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: must be a non-negative integer")
    embeddings = None
    if args.embeddings is not None:
        from causalrm.embeddings.files import read_embeddings

        embeddings, _ = read_embeddings(args.embeddings)
    rated, embeddings = load_for_simulation(args.dataset, rating_column=args.rating_column, embeddings=embeddings,
                                            teacher=args.rating == "teacher")
    given = {"vote_rate": args.vote_rate, "selection": args.selection, "prompt_selection": args.prompt_selection,
             "rho01": args.rho01, "rho10": args.rho10}
    log, info = simulate_pairs(rated, **{k: DEFAULTS[k] if v is None else v for k, v in given.items()},
                               rating=args.rating, teacher=args.teacher, snr=args.snr, embeddings=embeddings,
                               val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
                               dataset=args.dataset, swapped_share=args.swapped_share)
    write_table_atomic(log, out)
    if args.config_out is not None:
        write_json_atomic(info, args.config_out)
    print(f"wrote {out} ({info['pairs']} pairs of {info['responses']} responses; {info['dropped_ties']} tied pairs "
          f"dropped; ratings: {args.rating})")
    print(f"votes on train/val pairs: {info['votes']} ({info['votes_for_first']:.1%} for the first-shown a); flip "
          f"rates P(vote b | a better) {info['rho01']:g}, P(vote a | b better) {info['rho10']:g}; test pairs clean")
    if info["swapped_shown"]:
        print(f"swapped order: {info['swapped_shown']} pairs shown again in the other order, {info['swapped_voted']} "
              "voted in both orders")
    return 0
