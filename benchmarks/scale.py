"""Scaling benchmark: wall time and peak anonymous memory per stage on synthetic logs of 10^4 ... 10^6 impressions.

For each size N a synthetic log (``log.parquet``: prompt, response, feedback, observed, split) and a float32
embedding file (``X.npy``, N x 384, written in chunks through ``np.lib.format.open_memmap``) are generated in a temp
folder. Each stage then runs in its own fresh process, polled every 10 ms by this one for ``RssAnon`` in
``/proc/PID/status`` (anonymous resident memory: heap, torch tensors, numpy arrays; *not* the page cache of the
memory-mapped embedding file, which is file-backed and reclaimable). The peak reported is the largest sample
(a spike shorter than 10 ms could be missed). Stages:

- ``baseline``: import causalrm, torch, polars (the floor every stage pays);
- ``read``: ``read_log`` of the parquet log and a summary (observed rate, feedback rate);
- ``validate``: what ``causalrm validate`` did before streaming: ``summarize_log(read_log(LOG))`` (eager frame);
- ``validate_stream``: what it does now: ``causalrm.data.scan.summarize_file(LOG)`` (a LazyFrame collected on the
  streaming engine; the texts are reduced to flags and hashes, never held);
- ``propensity``: cross-fitted logistic propensity on ``X`` memory-mapped (``nuisance_max_rows`` subsample);
- ``flip_rates``: anchor-quantile flip rates (subsample);
- ``train_epoch``: one epoch of ``causalrm.training.trainer.train`` (MLP 384-256-64-1, batch 512, causalrm-ips) over the
  memory-mapped rows, gathered per batch by index (``TensorFeatures`` on a ``RowView``);
- ``bare_epoch``: the same epoch as a bare PyTorch loop (randperm, ``torch.from_numpy(X[idx])``, MLP, Adam),
  the reference for the trainer's overhead;
- ``score``: ``predict_logits`` on every row;
- ``interleaved``: in one process, ``--epochs`` pairs of (bare loop epoch, trainer epoch) alternating, so both
  sides see the same page cache and the same load on a shared machine (not in the default stages);
- ``fit``: the whole ``causalrm fit LOG --embeddings X.npy`` CLI (``--method causalrm-ips --propensity-model
  logistic --epochs E --threads 1``), what the issue's 1.2 GB target is about.

Usage::

    python benchmarks/scale.py --sizes 10000 100000 1000000 --epochs 1 --out docs/results/scale

writes ``scale.json``, ``scale.md`` (the table) and ``scale.svg`` (peak anonymous memory and wall time per stage
against N, log-log) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
STAGES = ("baseline", "read", "validate", "validate_stream", "propensity", "flip_rates", "train_epoch", "bare_epoch", "score", "fit", "interleaved")


# ------------------------------------------------------------------------------------------------ synthetic data
def make_data(folder: Path, n: int, seed: int = 0) -> None:
    """log.parquet + X.npy (float32, n x DIM), written in chunks (memory independent of n)."""
    import polars as pl

    rng = np.random.default_rng(seed)
    w = rng.normal(size=DIM).astype(np.float32)
    w /= np.linalg.norm(w)
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    score = np.empty(n, dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        block = rng.normal(size=(stop - start, DIM)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start:stop] = block
        score[start:stop] = block @ w * np.sqrt(DIM) * 2
    X.flush()
    del X
    true = rng.random(n) < 1 / (1 + np.exp(-2 * score))
    p_obs = 1 / (1 + np.exp(-(-1.0 + 1.5 * score)))
    observed = rng.random(n) < p_obs
    flip = np.where(true, rng.random(n) < 0.2, rng.random(n) < 0.1)
    feedback = np.where(observed, true ^ flip, False).astype(np.int8)
    split = np.where(rng.random(n) < 0.8, "train", "val")
    ids = np.arange(n)
    log = pl.DataFrame({
        "prompt": pl.Series([f"prompt {i // 4}" for i in ids]),
        "response": pl.Series([f"response {i} to prompt {i // 4}" for i in ids]),
        "feedback": pl.Series(feedback).cast(pl.Int8).set(pl.Series(~observed), None),
        "observed": pl.Series(observed.astype(np.int8)),
        "split": pl.Series(split),
    })
    log.write_parquet(folder / "log.parquet")


# ------------------------------------------------------------------------------------------------ one stage
def run_stage(name: str, folder: Path, epochs: int) -> dict:
    """Runs in the child process; returns {"seconds": the stage's own time, ...}."""
    import torch

    torch.set_num_threads(1)
    import polars as pl  # noqa: F401

    import causalrm  # noqa: F401
    from causalrm.data.io.readers import read_log
    from causalrm.embeddings.files import read_embeddings

    out: dict = {}
    t0 = time.perf_counter()
    if name == "baseline":
        pass
    elif name == "read":
        log = read_log(folder / "log.parquet")
        out["observed_rate"] = float(log["observed"].mean())
        out["feedback_rate"] = float(log["feedback"].mean())
    elif name == "validate":
        from causalrm.data.validate import summarize_log

        out["n_observed"] = summarize_log(read_log(folder / "log.parquet")).n_observed
    elif name == "validate_stream":
        from causalrm.data.scan import summarize_file

        fallbacks: list[str] = []
        out["n_observed"] = summarize_file(folder / "log.parquet", on_fallback=fallbacks.append).n_observed
        out["fallback"] = fallbacks
    else:
        log = read_log(folder / "log.parquet")
        X, _ = read_embeddings(folder / "X.npy", log)
        t0 = time.perf_counter()
        obs = log["observed"].to_numpy().astype(np.float64)
        fb = log["feedback"].fill_null(0).to_numpy().astype(np.float64)
        if name == "propensity":
            from causalrm.nuisances.propensity import PropensityModel

            m = PropensityModel(model="logistic", max_rows=50_000).fit(X, obs)
            out["mean_p"] = float(m.propensity_.mean())
        elif name == "flip_rates":
            from causalrm.data.rowmatrix import subsample, take_rows
            from causalrm.nuisances.flip_rates import FlipRateEstimator

            sub = subsample(len(obs), 50_000, 0, stratify=obs)
            sub = np.arange(len(obs)) if sub is None else sub
            est = FlipRateEstimator(method="anchor-quantile").fit(take_rows(X, sub), fb[sub], obs[sub])
            out["rho01"], out["rho10"] = float(est.rho01_), float(est.rho10_)
        elif name in ("train_epoch", "score"):
            from causalrm.data.rowmatrix import RowView
            from causalrm.estimators.losses import LossInputs
            from causalrm.training.backbones.mlp import MLPBackbone
            from causalrm.training.options import TrainConfig
            from causalrm.training.scoring import predict_logits
            from causalrm.training.trainer import train

            split = log["split"].to_numpy()
            tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
            bb = MLPBackbone(DIM)
            if name == "score":
                t0 = time.perf_counter()
                z = predict_logits(bb, bb.featurize(None, X))
                out["mean_z"] = float(z.mean())
            else:
                prop = np.full(len(obs), max(float(obs.mean()), 0.1))

                def inputs(rows):
                    return LossInputs(feedback=fb[rows], observed=obs[rows], propensity=prop[rows])

                t0 = time.perf_counter()
                h = train(bb, bb.featurize(None, RowView(X, tr)), inputs(tr), bb.featurize(None, RowView(X, va)),
                          inputs(va), TrainConfig(method="causalrm-ips", max_epochs=epochs, patience=0))
                out["epoch_seconds"] = h.epoch_seconds
        elif name == "interleaved":
            out["bare_epoch_seconds"], out["train_epoch_seconds"] = [], []
            for _ in range(epochs):
                out["bare_epoch_seconds"] += run_stage("bare_epoch", folder, 1)["epoch_seconds"]
                out["train_epoch_seconds"] += run_stage("train_epoch", folder, 1)["epoch_seconds"]
        elif name == "bare_epoch":
            split = log["split"].to_numpy()
            tr = np.flatnonzero(split == "train")
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Linear(DIM, 256), torch.nn.LeakyReLU(), torch.nn.Linear(256, 64),
                                      torch.nn.LeakyReLU(), torch.nn.Linear(64, 1))
            opt = torch.optim.Adam(net.parameters(), lr=5e-4)
            y = torch.from_numpy(fb)
            w = torch.from_numpy(obs / max(float(obs.mean()), 0.1))
            gen = torch.Generator().manual_seed(0)
            secs = []
            for _ in range(epochs):
                t1 = time.perf_counter()
                for idx in torch.split(torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)], 512):
                    rows = np.sort(idx.numpy())  # ascending reads; the batch's loss is order-free
                    xb = torch.from_numpy(np.ascontiguousarray(X[rows]))
                    z = net(xb).squeeze(-1)
                    loss = (w[rows].float() * (torch.sigmoid(z) - y[rows].float()) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                secs.append(time.perf_counter() - t1)
            out["epoch_seconds"] = secs
        else:
            raise SystemExit(f"unknown stage {name}")
    out["seconds"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------------ measuring
def rss_anon_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def measure(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; wall seconds, peak RssAnon (MiB, 10 ms polling), exit code, last stdout line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        kib = rss_anon_kib(proc.pid)
        if kib is not None:
            peak = max(peak, kib)
        time.sleep(0.01)
    stdout, stderr = proc.communicate()
    res = {"wall_s": time.perf_counter() - t0, "peak_anon_mib": peak / 1024, "rc": proc.returncode}
    if proc.returncode != 0:
        res["stderr"] = stderr[-2000:]
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if lines:
        res.update(json.loads(lines[-1]))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--epochs", type=int, default=1, help="epochs of the training stages and of `causalrm fit`")
    ap.add_argument("--stages", nargs="+", default=[s for s in STAGES if s != "interleaved"], choices=STAGES)
    ap.add_argument("--out", default="docs/results/scale")
    ap.add_argument("--tmp", default=None, help="folder for the synthetic data (default: a temp folder)")
    ap.add_argument("--stage", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        print(json.dumps(run_stage(args.stage[0], Path(args.stage[1]), args.epochs)))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"dim": DIM, "epochs": args.epochs, "python": sys.version.split()[0], "sizes": {}}
    path = out / "scale.json"
    if path.is_file():
        results["sizes"] = json.loads(path.read_text()).get("sizes", {})
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            t0 = time.perf_counter()
            make_data(folder, n)
            row = {"generate_s": time.perf_counter() - t0,
                   "embeddings_mib": (folder / "X.npy").stat().st_size / 2**20, "stages": {}}
            for stage in args.stages:
                if stage == "fit":
                    cmd = [sys.executable, "-m", "causalrm.cli.main", "fit", str(folder / "log.parquet"),
                           "--embeddings", str(folder / "X.npy"), "--out", str(folder / "run"), "--quiet",
                           "--method", "causalrm-ips", "--propensity-model", "logistic", "--force-noise-correction", "--epochs",
                           str(args.epochs), "--patience", "0", "--threads", "1"]
                else:
                    cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--stage", stage, str(folder)]
                res = measure(cmd, env)
                row["stages"][stage] = res
                print(f"n={n:>8} {stage:<12} wall {res['wall_s']:8.1f}s  stage {res.get('seconds', float('nan')):8.1f}s"
                      f"  peak anon {res['peak_anon_mib']:7.0f} MiB  rc {res['rc']}", flush=True)
                if res["rc"] != 0:
                    print(res.get("stderr", ""), file=sys.stderr)
            results["sizes"][str(n)] = row
            path.write_text(json.dumps(results, indent=1))
            write_report(results, out)
            for f in folder.iterdir():
                if f.is_file():
                    f.unlink()
    return 0


# ------------------------------------------------------------------------------------------------ report
def write_report(results: dict, out: Path) -> None:
    sizes = sorted(results["sizes"], key=int)
    stages = [s for s in STAGES if any(s in results["sizes"][n]["stages"] for n in sizes)]
    lines = ["| stage | " + " | ".join(f"N = {int(n):,}" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for s in stages:
        cells = []
        for n in sizes:
            r = results["sizes"][n]["stages"].get(s)
            if r is None:
                cells.append("")
                continue
            secs = r.get("seconds", r["wall_s"])
            cells.append(f"{secs:.1f} s / {r['peak_anon_mib']:.0f} MiB" + ("" if r["rc"] == 0 else " (failed)"))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    ratio = []
    for n in sizes:
        st = results["sizes"][n]["stages"]
        if "train_epoch" in st and "bare_epoch" in st and st["bare_epoch"].get("epoch_seconds"):
            a, b = min(st["train_epoch"]["epoch_seconds"]), min(st["bare_epoch"]["epoch_seconds"])
            ratio.append(f"N = {int(n):,}: {a:.2f} s / {b:.2f} s = {a / b:.2f}x")
    text = "\n".join(lines) + "\n"
    for n in sizes:
        st = results["sizes"][n]["stages"].get("interleaved")
        if st and st.get("train_epoch_seconds"):
            pairs = ", ".join(f"{a:.2f}/{b:.2f} s = {a / b:.2f}x" for a, b in
                              zip(st["train_epoch_seconds"], st["bare_epoch_seconds"]))
            ratio.append(f"N = {int(n):,}, interleaved in one process (trainer/bare per pair): {pairs}")
    if ratio:
        text += "\ntrainer epoch / bare PyTorch epoch (same memory-mapped rows): " + "; ".join(ratio) + "\n"
    (out / "scale.md").write_text(text)
    (out / "scale.svg").write_text(svg_plot(results, sizes, stages))


def svg_plot(results: dict, sizes: list[str], stages: list[str]) -> str:
    """Two log-log panels (peak anonymous MiB; stage seconds) against N, one polyline per stage; plain SVG."""
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    W, H, pad = 420, 300, 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W + 160}" height="{H + 40}" '
             'font-family="sans-serif" font-size="11">']
    xs = [np.log10(int(n)) for n in sizes]
    for panel, (key, title) in enumerate((("peak_anon_mib", "peak anonymous memory (MiB)"),
                                          ("seconds", "stage wall time (s)"))):
        ox = panel * W
        vals = [results["sizes"][n]["stages"][s].get(key, results["sizes"][n]["stages"][s]["wall_s"])
                for s in stages for n in sizes if s in results["sizes"][n]["stages"]]
        vals = [max(v, 1e-2) for v in vals]
        lo, hi = np.floor(np.log10(min(vals))), np.ceil(np.log10(max(vals)))
        hi = hi if hi > lo else lo + 1
        x0, x1 = (min(xs), max(xs)) if len(xs) > 1 else (xs[0] - 1, xs[0] + 1)

        def px(x, ox=ox, x0=x0, x1=x1):
            return ox + pad + (x - x0) / (x1 - x0) * (W - 2 * pad)

        def py(v, lo=lo, hi=hi):
            return H - pad + 20 - (np.log10(max(v, 1e-2)) - lo) / (hi - lo) * (H - 2 * pad)

        parts.append(f'<text x="{ox + W / 2}" y="14" text-anchor="middle">{title}</text>')
        parts.append(f'<rect x="{ox + pad}" y="{pad - 30}" width="{W - 2 * pad}" height="{H - 2 * pad + 50}" '
                     'fill="none" stroke="#999"/>')
        for e in range(int(lo), int(hi) + 1):
            parts.append(f'<text x="{ox + pad - 4}" y="{py(10 ** e) + 4:.1f}" text-anchor="end">1e{e}</text>')
        for x, n in zip(xs, sizes):
            parts.append(f'<text x="{px(x):.1f}" y="{H + 30}" text-anchor="middle">N={int(n):.0e}</text>')
        for k, s in enumerate(stages):
            pts = [(px(x), py(results["sizes"][n]["stages"][s].get(key, results["sizes"][n]["stages"][s]["wall_s"])))
                   for x, n in zip(xs, sizes) if s in results["sizes"][n]["stages"]]
            c = colors[k % len(colors)]
            parts.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                c, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))
            for a, b in pts:
                parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>')
    for k, s in enumerate(stages):
        parts.append(f'<rect x="{2 * W + 10}" y="{30 + 16 * k}" width="10" height="10" '
                     f'fill="{colors[k % len(colors)]}"/><text x="{2 * W + 26}" y="{39 + 16 * k}">{s}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
