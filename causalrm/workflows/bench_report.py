"""The bench's markdown report: the setting, a table of means ± std over seeds, the gap and limit shares, nuisances."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _pm(entry: dict[str, Any], key: str, digits: int = 3) -> str:
    v = entry.get(key) or {}
    mean, std = v.get("mean"), v.get("std")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None and math.isfinite(std) else f"{mean:.{digits}f}"


def format_markdown(result: Any, *, title: str | None = None, command: str | None = None) -> str:
    """A markdown section of a ``bench.BenchResult`` (read by attribute; this module sits below the bench, which
    calls it): the setting, a table of means ± std over seeds, gap closed, nuisance estimates."""
    c = result.config
    lines = []
    if c.real_feedback:
        head = f"{c.dataset}: real feedback, evaluated against gold_label on held-out prompt groups"
    else:
        rating = "real ratings" if c.rating == "real" else f"teacher ratings ({c.teacher}, snr {c.snr or 'inf'})"
        head = f"{c.dataset}, {rating}, alpha {c.alpha}, rho01 {c.rho01}, rho10 {c.rho10}"
    lines.append(f"### {title or head}")
    lines.append("")
    if command:
        lines += ["```bash", command, "```", ""]
    lines.append(f"Seeds {', '.join(map(str, c.seeds))}; embedder {c.embedder}; fit overrides "
                 f"{c.fit or 'none (paper defaults)'}; {result.seconds:.0f}s in total.")
    lines.append("")
    gaps = [(key, label) for key, label in (("gap_closed", "gap closed vs oracle [95% CI]"),
                                            ("gap_closed_observed", "gap closed vs oracle-observed [95% CI]"),
                                            ("limit_closed", "AUROC share naive -> oracle-effective [95% CI]"))
            if any(key in e for e in result.summary.values())]
    header = ("| method | R² | MSE | MAE | AUROC | prompt Kendall τ | Pearson | best-of-N gain | best-of-N win vs "
              "naive | accept precision | accept recall | " + "".join(f"{label} | " for _, label in gaps)
              + "epochs | s/fit |")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for m, e in result.summary.items():
        gap = ""
        for key, _ in gaps:
            g = e.get(key)
            gap += "n/a | " if not g or g["value"] is None or not math.isfinite(g["value"]) else (
                f"{g['value']:.0%} [{g['ci'][0]:.0%}, {g['ci'][1]:.0%}] | ")
        lines.append(f"| {m} | {_pm(e, 'r2')} | {_pm(e, 'mse', 4)} | {_pm(e, 'mae', 4)} | {_pm(e, 'auroc')} | "
                     f"{_pm(e, 'prompt_kendall')} | {_pm(e, 'pearson')} | {_pm(e, 'best_of_n')} | "
                     f"{_pm(e, 'best_of_n_win_rate')} | {_pm(e, 'accept_precision')} | {_pm(e, 'accept_recall')} | {gap}{_pm(e, 'best_epoch', 0)} | "
                     f"{_pm(e, 'seconds', 1)} |")
    lines.append("")
    rho = [(n["rho01_hat"], n["rho10_hat"]) for n in result.nuisances if n.get("rho01_hat") is not None]
    if rho:
        r01 = ", ".join(f"{a:.3f}" for a, _ in rho)
        r10 = ", ".join(f"{b:.3f}" for _, b in rho)
        lines.append(f"Estimated flip rates per seed: rho01 {r01} (true {c.rho01 if not c.real_feedback else '?'}); "
                     f"rho10 {r10} (true {c.rho10 if not c.real_feedback else '?'}).")
    limits = [n["simulation"]["information_limit"] for n in result.nuisances
              if (n.get("simulation") or {}).get("information_limit")]
    if limits:
        lines.append("Information limit (oracle-effective) per seed: clean rows " + ", ".join(
            f"{d['effective_n']} of {d['n_observed']} (realised rho01 {d['realised_rho01']:.3f}, rho10 "
            f"{d['realised_rho10']:.3f})" for d in limits) + ".")
    aucs = [n["propensity_auc"] for n in result.nuisances if n.get("propensity_auc") is not None]
    if aucs:
        lines.append(f"Propensity AUC (cross-fitted) per seed: {', '.join(f'{a:.3f}' for a in aucs)}.")
    gates = [n.get("gates") or {} for n in result.nuisances]
    for name in ("propensity", "flip_rates"):
        verdicts = [g[name]["passed"] for g in gates if name in g]
        if verdicts:
            lines.append(f"Gate {name.replace('_', ' ')} per seed: "
                         f"{', '.join('pass' if v else 'fail' for v in verdicts)}.")
    chosen = [r["chosen"] for r in result.results if r.get("chosen")]
    if chosen:
        lines.append(f"auto chose per seed: {', '.join(chosen)}.")
    unlearned = sorted({r["method"] for r in result.results if r.get("learned") is False})
    if unlearned:
        counts = {m: sum(1 for r in result.results if r["method"] == m and r.get("learned") is False)
                  for m in unlearned}
        lines.append("Did not learn (learning gate): " + ", ".join(f"{m} in {k} seed(s)" for m, k in counts.items())
                     + ".")
    if c.real_feedback:
        lines.append("Metrics: held-out rows (20% of prompt groups, never used in fitting) against gold_label. "
                     "The oracle row is trained on the gold labels of the training rows (a ceiling).")
        allg = {}
        for r in result.results:
            allg.setdefault(r["method"], []).append(r["all_gold"]["r2"])
        lines.append("R² on all gold rows (training rows included): "
                     + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in allg.items()) + ".")
    else:
        lines.append("Metrics: sigma(z) against true_label on the clean, fully observed test split (prompt "
                     "Kendall τ: tau-b within each test prompt with both labels, averaged; best-of-N gain: the true "
                     "rating of each test prompt group's top-scored response minus the group's mean, averaged, and "
                     "how often it beats naive's pick (ties half); acceptance at sigma(z) > 0.5 against true_label). "
                     "Early stopping used "
                     "each method's validation estimate (the ranking-head methods: their IPS-weighted AUROC against "
                     "the noisy feedback) on the observational val split only.")
    lines.append("")
    return "\n".join(lines)
