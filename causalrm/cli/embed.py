"""`causalrm embed LOG --out OUT.safetensors|.npy`: embed a log's (prompt, response) rows.

Writes the float32 matrix ``X`` (n, d) atomically: ``.safetensors`` holds a tensor ``embeddings`` and, in its JSON
metadata, ``response_ids`` (a JSON list in row order), ``model`` and ``dim``; ``.npy`` is a plain array
(``np.save(..., allow_pickle=False)``). Without ``--out`` it only fills the cache. Rows already in a cache (the shipped
``data/embeddings/`` or ``--cache-dir``) are never re-embedded.

Example::

    causalrm embed data/oasst1.parquet --out oasst1.safetensors
    causalrm embed my_log.csv --map prompt=question response=answer --model Qwen/Qwen2.5-0.5B-Instruct --out X.npy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.schema import DEFAULT_EMBEDDER

    p = subparsers.add_parser(
        "embed", help="embed a log's (prompt, response) rows into X.safetensors / X.npy (cached)",
        description="Embed each (prompt, response) row of LOG with a frozen model. Cached by model and text hash.",
    )
    p.add_argument("log", metavar="LOG", help="impression log (.parquet, .csv, .tsv, .jsonl, .json; optionally .gz)")
    p.add_argument("--model", default=DEFAULT_EMBEDDER,
                   help="Hugging Face encoder/decoder id or local folder (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--out", metavar="OUT", help="output .safetensors or .npy (omit to only fill the cache)")
    p.add_argument("--map", dest="mapping", nargs="+", action="extend", metavar="CANON=COLUMN", default=None,
                   help="map your column names, e.g. --map prompt=question response=answer")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto", help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--max-length", type=int, default=None, help="token limit (default: the model's)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default $CAUSALRM_CACHE/embeddings or "
                   "~/.cache/causalrm/embeddings)")
    p.add_argument("--cache-dtype", default="float32", choices=("float32", "float16"),
                   help="precision of newly cached rows (default float32)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write any cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _mapping(specs: list[str] | None) -> dict[str, str] | None:
    if not specs:
        return None
    from causalrm.io import parse_mapping

    return parse_mapping(specs)


def run(args: argparse.Namespace) -> int:
    from causalrm.embeddings import Embedder, embed_log
    from causalrm.errors import InputError
    from causalrm.io import read_log
    from causalrm.schema import RESPONSE_ID

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in (".safetensors", ".npy"):
            raise InputError(f"{out}: unsupported output extension {out.suffix!r}; use .safetensors or .npy")
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise InputError(f"{out.parent}: output folder does not exist; create it first")
    from causalrm import distributed

    # under `accelerate launch` / torchrun each rank embeds a contiguous slice of the rows; rank 0 writes OUT
    distributed.init(cpu=True if str(args.device).startswith("cpu") else None)
    df = read_log(args.log, mapping=_mapping(args.mapping))
    sharded = distributed.active() and df.height >= distributed.world_size()
    device = args.device
    if sharded and str(device) in ("auto", "cuda") and distributed.device().type == "cuda":
        device = str(distributed.device())  # this rank's GPU
    embedder = Embedder(model=args.model, device=device, dtype=args.dtype, batch_size=args.batch_size,
                        max_length=args.max_length, cache_dir=args.cache_dir,
                        progress=not args.quiet and distributed.is_main(), cache=not args.no_cache,
                        cache_dtype=args.cache_dtype)
    embedder.shard_name = Path(args.log).name.split(".")[0] or "shard"
    if sharded:
        start, stop = distributed.row_slice(df.height)
        embedder.shard_name += f"-rank{distributed.rank()}"
        X, stats = _gather(embed_log(df.slice(start, stop - start), embedder), embedder.last_stats, df.height)
    else:
        X = embed_log(df, embedder)
        stats = embedder.last_stats
    if not distributed.is_main():
        distributed.wait()
        return 0
    if out is not None:
        _write(out, X, df[RESPONSE_ID].cast(str).to_list() if RESPONSE_ID in df.columns else None, embedder)
    distributed.wait()
    dest = f" -> {out}" if out is not None else " (cache only)"
    print(f"embedded {X.shape[0]} rows x {X.shape[1]} dims with {embedder.model_id}: {stats.get('cache_hits', 0)} "
          f"cache hits, {stats.get('computed', 0)} computed{dest}", file=sys.stdout)
    return 0


def _gather(X_local, stats: dict, n: int):
    """Every rank's slice of ``X`` in row order (on every rank) and the summed cache statistics."""
    import numpy as np
    import torch

    from causalrm import distributed
    from accelerate.utils import reduce

    t = torch.from_numpy(np.ascontiguousarray(X_local, dtype=np.float32))
    X = distributed.gather_rows(t, distributed.row_sizes(n), grad=False).cpu().numpy()
    keys = ("rows", "cache_hits", "computed")
    counts = torch.tensor([float(stats.get(k, 0)) for k in keys], dtype=torch.float64)
    counts = reduce(counts.to(distributed.device()), reduction="sum").cpu()
    return X, {**stats, **{k: int(v) for k, v in zip(keys, counts.tolist())}}


def _write(out: Path, X, response_ids: list[str] | None, embedder) -> None:
    import numpy as np

    from causalrm.atomic_io import atomic_path

    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(X, dtype=np.float32), allow_pickle=False)
        else:
            from safetensors.numpy import save_file

            metadata = {"model": embedder.model_id, "dim": str(X.shape[1]), "rows": str(X.shape[0]),
                        "cache_key": embedder.spec.key}
            if response_ids is not None:
                metadata["response_ids"] = json.dumps(response_ids, ensure_ascii=False)
            save_file({"embeddings": np.ascontiguousarray(X, dtype=np.float32)}, str(tmp), metadata=metadata)
