"""`causalrm export RUN_DIR OUT`: a fitted run as a reusable reward model.

LoRA runs become a Hugging Face folder (adapters merged; ``--adapter-only`` keeps the peft adapter); MLP runs a
transformers folder holding the sentence encoder, the head and their model code (``trust_remote_code=True``).
``causalrm.load_reward_model`` and ``causalrm score`` read every kind. Every export carries a README.md model card and is reloaded
and checked against the run's scores before it is moved into place. See docs/EXPORT.md.

Examples::

    causalrm export runs/lora-dr exports/rm
    causalrm export runs/lora-dr exports/rm-adapter --adapter-only
    causalrm export runs/dr exports/mlp-rm
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a run as a reward model (a Hugging Face folder) -> OUT",
        description="Export the reward model of RUN_DIR to OUT for transformers, peft, TRL and best-of-N.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `causalrm fit --out`")
    p.add_argument("out", metavar="OUT", help="folder to create (must not exist or be empty, unless --overwrite)")
    p.add_argument("--adapter-only", action="store_true",
                   help="LoRA runs: write the peft adapter + head instead of merged weights")
    p.add_argument("--embedder", default=None, metavar="MODEL",
                   help="MLP runs: the sentence encoder to bundle (default: the run's embedder)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-verify", action="store_true",
                   help="skip reloading the export and comparing its scores with the run's")
    return p


def run(args: argparse.Namespace) -> int:
    from causalrm.export.folder import export_run
    from causalrm.training.backbones.base import export_format

    manifest = export_run(args.run_dir, args.out, adapter_only=args.adapter_only, overwrite=args.overwrite,
                          embedder=args.embedder, verify=not args.no_verify)
    kind = export_format(manifest["kind"]).summary(manifest)
    flips = manifest["training"].get("flip_rates")
    extra = f", rho01 {flips['rho01']:.3f}, rho10 {flips['rho10']:.3f}" if flips else ""
    print(f"exported {manifest['training']['method']} reward model ({kind}{extra}) to {args.out}")
    print(f"  use it: causalrm.load_reward_model({str(args.out)!r}).score(prompts, responses)")
    return 0
