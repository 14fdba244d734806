"""`causalrm fit LOG --method causalrm-dr --out RUN_DIR`: fit a debiased reward model on an impression log.

A thin layer over :class:`causalrm.CausalRM`: the options are its parameters (``FitConfig``'s fields, whose metadata
generates them; ``FitConfig.to_cli`` writes a configuration back as these options), plus where the log, its
embeddings and the run directory live.

Nuisances (propensity, flip rates, pseudo-labels) are fitted once on the train + val rows, then the reward head is
trained on the train rows and early-stopped on the method's debiased estimate on the val rows (test rows are never
used). The run directory holds config.json, model.safetensors, metrics.json, nuisances.json and scored.parquet.

Examples::

    causalrm fit sim.parquet --method causalrm-dr --out runs/dr
    causalrm fit my_log.csv --map prompt=question response=answer feedback=thumbs --out runs/mine --epochs 200
    causalrm fit sim.parquet --method causalrm-ips --rho01 0.2 --rho10 0.1 --embeddings X.safetensors --out runs/ips
    causalrm fit my_log.csv --gold labels.csv --flip-method gold --out runs/audited   # labels from causalrm audit
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from causalrm.cli.progress import EpochProgress


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.config import FitConfig
    from causalrm.options import add_arguments

    p = subparsers.add_parser(
        "fit", help="fit a debiased reward model on a feedback log -> RUN_DIR",
        description=f"Fit a reward model on LOG with a debiased, denoised estimator (default {FitConfig.method}). "
                    "The options are FitConfig's fields (causalrm.workflows.pipeline; FitConfig.to_cli writes them back).",
    )
    p.add_argument("log", metavar="LOG", help="impression log (.parquet, .csv, .tsv, .jsonl, .json; optionally .gz)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write (replaced if it is a run)")
    add_log_arguments(p, model=False)
    p.add_argument("--gold", metavar="FILE", default=None,
                   help="audit label file (causalrm audit) merged by response_id: decides auto's choice, and the "
                        "flip rates with --flip-method gold")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(p.add_argument_group("fit configuration (FitConfig)"), FitConfig)
    from causalrm.training.backbones.base import available_backbones, get_backbone_class

    for name in available_backbones():  # each backbone's own options (Backbone.options)
        get_backbone_class(name).add_arguments(p)
    return p


def add_log_arguments(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """--map, --threshold, --feedback-kind, --embeddings and (``model``) --model (shared with `causalrm score` and
    `causalrm audit`; `causalrm fit` takes --model from FitConfig.embedder)."""
    p.add_argument("--map", dest="mapping", nargs="+", action="extend", metavar="CANON=COLUMN", default=None,
                   help="map your column names, e.g. --map prompt=question response=answer feedback=thumbs")
    p.add_argument("--threshold", type=float, default=None,
                   help="binarise a numeric feedback column: rating >= THRESHOLD is positive")
    add_kind_argument(p)
    p.add_argument("--embeddings", metavar="FILE", default=None,
                   help="precomputed embeddings (.safetensors or .npy from `causalrm embed`), rows aligned with LOG")
    if model:
        p.add_argument("--model", dest="embedder", default=None,
                       help="embedding model id (default all-MiniLM-L6-v2, or the one recorded in --embeddings)")


def add_kind_argument(p: argparse.ArgumentParser) -> None:
    """--feedback-kind (causalrm.data.feedback_kinds), shared by every command that reads a log."""
    from causalrm.data.feedback_kinds import AUTO, KINDS

    p.add_argument("--feedback-kind", choices=(AUTO, *KINDS), default=AUTO,
                   help="explicit thumbs, or implicit events (copies, clicks: 1 where the event happened, empty "
                        "elsewhere); default auto: a feedback column that is only ever 1 or empty is implicit")


def read_log_arg(args: argparse.Namespace):
    from causalrm.data.io.mapping import parse_mapping
    from causalrm.data.io.readers import read_log

    mapping = parse_mapping(args.mapping) if args.mapping else None
    return read_log(args.log, mapping=mapping, threshold=args.threshold,
                    feedback_kind=getattr(args, "feedback_kind", "auto"))


def _head_text(c: dict[str, Any]) -> str:
    """One fitted head of ``FitResult.selection``: its shape, lr (and weight decay), and the value it was chosen on."""
    from causalrm.training.backbones.base import hidden_label

    ranking = c.get("best_val_ranking")
    if ranking is not None and math.isfinite(ranking):  # the ranking head's decays, chosen on the val AUROC
        return f"{hidden_label(c['hidden'])} (weight decay {c['weight_decay']:g}): AUROC {ranking:.4f}"
    return f"{hidden_label(c['hidden'])} (lr {c['lr']:g}): {c['best_val_estimate']:.4f}"


def run(args: argparse.Namespace) -> int:
    from causalrm import distributed
    from causalrm.config import FitConfig
    from causalrm.errors import InputError
    from causalrm.estimator import CausalRM
    from causalrm.training.backbones.base import get_backbone_class, hidden_label
    from causalrm.workflows.runs import save_run

    out = Path(args.out)
    # under `accelerate launch` / torchrun: join the process group (gloo when --device cpu or no GPU)
    distributed.init(device=getattr(args, "device", None))
    main_rank = distributed.is_main()
    log = read_log_arg(args)
    from causalrm.data.pairwise import describe, is_pair_log

    if is_pair_log(log) and main_rank:
        print(describe(log), file=sys.stderr)
    if args.gold:
        from causalrm.data.io.readers import read_labels
        from causalrm.evaluation.audit import merge_labels

        labels = read_labels(args.gold, known_ids=log["response_id"].to_list(), log_name=str(args.log))
        log = merge_labels(log, labels, source=args.gold)
        if main_rank:
            print(f"merged {int(log['gold_label'].is_not_null().sum())} audited labels from {args.gold}",
                  file=sys.stderr)
    from causalrm.embeddings.files import read_embeddings

    X, file_model = (read_embeddings(args.embeddings, log) if args.embeddings else (None, None))
    embedder = args.embedder or file_model or FitConfig.embedder
    kind = get_backbone_class(args.backbone or FitConfig.backbone)
    backbone_options = kind.options_from_args(args)
    if kind.model_option:  # --model is the backbone's model (to fine-tune); nuisances use the default embedder
        embedder = file_model or FitConfig.embedder
    elif args.embedder and file_model and args.embedder != file_model:
        print(f"note: --model {args.embedder} differs from the model recorded in {args.embeddings} ({file_model})",
              file=sys.stderr)
    if args.max_epochs is not None and args.max_epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.max_epochs}")
    config = FitConfig.from_args(args, embedder=embedder, backbone_options=backbone_options).validate()
    if X is None and not args.quiet and main_rank:
        print(f"embedding {log.height} rows with {embedder} (cached texts are instant)", file=sys.stderr)

    bar = None if args.quiet or not main_rank else EpochProgress(f"fit {config.method}", config.max_epochs)
    estimator = CausalRM(**config.to_dict())
    try:
        estimator.fit(log, X=X, progress=bar, on_stage=bar.stage if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    result = estimator.result_
    save_run(result, log, X, out, source=str(args.log), extra={"gold": args.gold} if args.gold else None)
    if not main_rank:  # only rank 0 writes the run directory (save_run) and reports
        return 0
    h = result.history
    n = result.nuisances
    if result.choice:
        print(f"auto kept {result.config.method}: {result.choice['reason']}")
    print(f"fitted {result.config.method} in {result.seconds['total']:.1f}s: best epoch {h.best_epoch}/{h.epochs} "
          f"({h.stop_reason}), validation estimate {h.best_val_estimate:.4f}")
    for name, gate in n.gates.items():
        print(f"  gate {name.replace('_', ' ')}: {'pass' if gate.passed else 'fail'}: {gate.verdict}")
    if result.learned is not None:
        print(f"  {result.learned.verdict}")
        if not result.learned.passed:
            print(f"warning: the {result.config.method} model {result.learned.verdict}; its scores and rankings are "
                  "not findings", file=sys.stderr)
    if result.selection:
        print(f"  head ({result.selection['criterion']}): " + ", ".join(
            f"{'*' if i == result.selection['chosen'] else ''}{_head_text(c)}"
            for i, c in enumerate(result.selection["candidates"])))
    if n.propensity_clipped is not None:
        print(f"  propensity: {n.diagnostics.get('propensity', {}).get('source')}, clip {config.clip}, "
              f"{n.diagnostics['propensity']['share_clipped']:.1%} of rows clipped")
    if n.rho01 is not None:
        ci = n.rho_ci or {}
        fmt = lambda k, v: f"{k} {v:.3f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "")  # noqa: E731
        source = n.diagnostics.get("flip_rates", {}).get("method", config.effective_flip_method)
        print(f"  flip rates ({source}): {fmt('rho01', n.rho01)}, {fmt('rho10', n.rho10)}")
        gold = n.diagnostics.get("flip_rates", {}).get("gold_check")
        if gold and "error" in gold:
            print(f"  gold-label estimate: unavailable ({gold['error']})")
        elif gold:
            g = gold["ci"]
            print(f"  gold-label estimate ({gold['n_gold']} audited rows): rho01 {gold['rho01']:.3f} "
                  f"[{g['rho01'][0]:.3f}, {g['rho01'][1]:.3f}], rho10 {gold['rho10']:.3f} "
                  f"[{g['rho10'][0]:.3f}, {g['rho10'][1]:.3f}]")
    test = json.loads((out / "metrics.json").read_text(encoding="utf-8")).get("test")
    if test:
        m = test["metrics"]
        auroc = "n/a" if m.get("auroc") is None else f"{m['auroc']:.3f}"
        print(f"  {test['rows']} (n={test['n']}): R2 {m['r2']:.3f}, MSE {m['mse']:.4f}, MAE {m['mae']:.4f}, "
              f"AUROC {auroc}")
    print(f"wrote {out}")
    return 0
