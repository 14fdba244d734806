"""`causalrm embed LOG --out OUT.safetensors|.npy` (or `causalrm embed LOG OUT/ --shard-rows N`): embed a log's rows.

Writes the float32 matrix ``X`` (n, d) atomically: ``.safetensors`` holds a tensor ``embeddings`` and, in its JSON
metadata, ``response_ids`` (a JSON list in row order), ``model`` and ``dim``; ``.npy`` is a plain array
(``np.save(..., allow_pickle=False)``). Without ``--out`` it only fills the cache. Rows already in a cache (the shipped
``data/embeddings/`` or ``--cache-dir``) are never re-embedded.

Sharded output (``--shard-rows N``, or OUT a folder): ``OUT/shard-00000.npy`` ... (N rows each, the last the
remainder) and ``OUT/index.json`` (shape, dtype, model, row ranges, a hash of the response ids), each written
atomically; the rows are embedded shard by shard, and under ``accelerate launch`` each rank writes its own block of
shards (the matrix is never gathered) while rank 0 writes the index after a barrier (``causalrm.data.shards``).
``causalrm fit/score --embeddings OUT`` (or ``OUT/index.json``) memory-maps the shards.

Example::

    causalrm embed data/oasst1.parquet --out oasst1.safetensors
    causalrm embed big_log.parquet big_X/ --shard-rows 131072
    causalrm embed my_log.csv --map prompt=question response=answer --model Qwen/Qwen2.5-0.5B-Instruct --out X.npy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from causalrm.data.schema import DEFAULT_EMBEDDER

    p = subparsers.add_parser(
        "embed", help="embed a log's (prompt, response) rows into X.safetensors / X.npy (cached)",
        description="Embed each (prompt, response) row of LOG with a frozen model. Cached by model and text hash.",
    )
    p.add_argument("log", metavar="LOG", help="impression log (.parquet, .csv, .tsv, .jsonl, .json; optionally .gz)")
    p.add_argument("--model", default=DEFAULT_EMBEDDER,
                   help="Hugging Face encoder/decoder id or local folder (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("out_pos", nargs="?", metavar="OUT", default=None,
                   help="output .safetensors / .npy file, or a folder (no extension) for sharded output (as --out)")
    p.add_argument("--out", metavar="OUT", help="output .safetensors or .npy, or a folder: fixed-size .npy shards "
                   "plus index.json (omit to only fill the cache)")
    p.add_argument("--shard-rows", type=int, default=None, metavar="N",
                   help="write OUT as a folder of N-row .npy shards and an index.json (default for a folder OUT: "
                   "131072); under accelerate launch each rank writes its own shards")
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
    from causalrm.data.io.mapping import parse_mapping

    return parse_mapping(specs)


def run(args: argparse.Namespace) -> int:
    from causalrm.data.io.readers import read_log
    from causalrm.data.schema import RESPONSE_ID
    from causalrm.embeddings.embedder import Embedder, embed_log
    from causalrm.errors import InputError

    if args.out and args.out_pos and args.out != args.out_pos:
        raise InputError(f"two outputs given ({args.out_pos} and --out {args.out}); give one")
    out = Path(args.out or args.out_pos) if (args.out or args.out_pos) else None
    if args.shard_rows is not None and args.shard_rows < 1:
        raise InputError(f"--shard-rows must be >= 1, got {args.shard_rows}")
    sharded_out = out is not None and (args.shard_rows is not None or out.is_dir() or not out.suffix)
    if out is not None and sharded_out:
        if out.suffix.lower() in (".safetensors", ".npy", ".json") or (out.exists() and not out.is_dir()):
            raise InputError(f"{out}: sharded output (--shard-rows) goes to a folder; name a folder, e.g. "
                             f"{out.with_suffix('')}")
    elif out is not None and out.suffix.lower() not in (".safetensors", ".npy"):
        raise InputError(f"{out}: unsupported output extension {out.suffix!r}; use .safetensors or .npy")
    if out is not None and not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"{out.parent}: output folder does not exist; create it first")
    from causalrm import distributed

    # under `accelerate launch` / torchrun each rank embeds a contiguous slice of the rows; rank 0 writes OUT
    distributed.init(device=args.device)
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
    if sharded_out:
        return _run_sharded(args, df, embedder, out)
    if sharded:
        start, stop = distributed.row_slice(df.height)
        embedder.shard_name += f"-rank{distributed.rank()}"
        X, stats = _gather(embed_log_rows(df, start, stop, embedder), embedder.last_stats, df.height)
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


def _run_sharded(args: argparse.Namespace, df, embedder, out: Path) -> int:
    """Embed into ``out/`` as fixed-size ``.npy`` shards plus ``index.json`` (``causalrm.data.shards``).

    Shard by shard (at most one shard's rows in memory); under ``accelerate launch`` each rank embeds and writes a
    contiguous block of whole shards (no gather of the matrix), and rank 0 writes the index after a barrier."""
    import numpy as np

    from causalrm import distributed
    from causalrm.data import shards
    from causalrm.data.schema import RESPONSE_ID

    shard_rows = args.shard_rows or shards.DEFAULT_SHARD_ROWS
    ranges = shards.plan(df.height, shard_rows)
    if distributed.is_main():
        out.mkdir(exist_ok=True)
        (out / shards.INDEX_NAME).unlink(missing_ok=True)  # no stale index over half-rewritten shards
    distributed.wait()
    mine = shards.rank_shards(len(ranges), distributed.world_size(), distributed.rank())
    if distributed.active():
        embedder.shard_name += f"-rank{distributed.rank()}"
    stats = {"rows": 0, "cache_hits": 0, "computed": 0}
    dim = embedder.dim if df.height == 0 else None
    for k in mine:
        a, b = ranges[k]
        X = embed_log_rows(df, a, b, embedder)
        dim = X.shape[1]
        shards.write_shard(out, k, X)
        for key in stats:
            stats[key] += int(embedder.last_stats.get(key, 0)) if b > a else 0
        del X
    stats = _reduce_stats(stats)
    distributed.wait()
    if distributed.is_main():
        if dim is None:  # rank 0 wrote no shard (more ranks than shards): read the width from shard 0
            dim = int(np.load(out / shards.shard_name(0), mmap_mode="r").shape[1])
        ids = df[RESPONSE_ID].cast(str).to_list() if RESPONSE_ID in df.columns else None
        shards.write_index(out, ranges=ranges, dim=dim, shard_rows=shard_rows, model=embedder.model_id,
                           cache_key=embedder.spec.key, response_ids=ids)
    distributed.wait()
    if not distributed.is_main():
        return 0
    print(f"embedded {df.height} rows x {dim} dims with {embedder.model_id}: {stats['cache_hits']} cache hits, "
          f"{stats['computed']} computed -> {out}/ ({len(ranges)} shards of <= {shard_rows} rows, "
          f"{shards.INDEX_NAME})", file=sys.stdout)
    return 0


def embed_log_rows(df, start: int, stop: int, embedder):
    """``embed_log`` of rows ``start:stop`` of ``df`` (float32 ``(stop - start, d)``)."""
    import numpy as np

    from causalrm.embeddings.embedder import embed_log

    if stop <= start:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return embed_log(df.slice(start, stop - start), embedder)


def _reduce_stats(stats: dict) -> dict:
    """The cache statistics summed over ranks (``stats`` itself in a single process)."""
    from causalrm import distributed

    if not distributed.active():
        return stats
    import torch
    from accelerate.utils import reduce

    keys = ("rows", "cache_hits", "computed")
    counts = torch.tensor([float(stats.get(k, 0)) for k in keys], dtype=torch.float64)
    counts = reduce(counts.to(distributed.device()), reduction="sum").cpu()
    return {**stats, **{k: int(v) for k, v in zip(keys, counts.tolist())}}


def _gather(X_local, stats: dict, n: int):
    """Every rank's slice of ``X`` in row order (on every rank) and the summed cache statistics."""
    import numpy as np
    import torch

    from causalrm import distributed

    t = torch.from_numpy(np.ascontiguousarray(X_local, dtype=np.float32))
    X = distributed.gather_rows(t, distributed.row_sizes(n), grad=False).cpu().numpy()
    return X, _reduce_stats(stats)


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
