"""The model card (``README.md``) of an export and the run summary it and the export manifest hold."""

from __future__ import annotations

import math
from typing import Any

from causalrm.estimators import methods as registry
from causalrm.training.backbones.base import export_format


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return str(value)


def run_summary(run: Any) -> dict[str, Any]:
    """Training method, flip rates and propensity summary of a run (for the manifest and the model card)."""
    nuis = run.nuisances or {}
    flips = nuis.get("flip_rates") or {}
    prop = nuis.get("propensity") or {}
    history = (run.metrics or {}).get("validation") or {}
    test = (run.metrics or {}).get("test") or None
    keys = ("source", "clip", "share_clipped", "fraction_clipped", "fraction_clipped_observed", "auc", "ece", "brier",
            "ess", "ess_fraction", "max_weight", "n_observed", "n_rows", "warnings", "note")
    return {
        "method": run.config.method,
        "base_loss": run.config.base_loss,
        "backbone": run.backbone.name,
        "embedder": run.config.embedder,
        "flip_rates": None if nuis.get("rho01") is None or run.config.method not in registry.where(noise_aware=True)
        else {
            "rho01": nuis.get("rho01"), "rho10": nuis.get("rho10"), "ci": nuis.get("rho_ci"),
            "method": flips.get("method") or run.config.effective_flip_method, "quantile": flips.get("quantile")},
        "propensity": {k: prop[k] for k in keys if k in prop} or None,
        "observed_rate": nuis.get("observed_rate"),
        "rows": (run.info or {}).get("rows"),
        "source_log": (run.info or {}).get("source"),
        "validation": history or None,
        "test": test,
        "run_created": (run.info or {}).get("created"),
        "gates": {name: {"passed": g.get("passed"), "verdict": g.get("verdict")}
                  for name, g in (nuis.get("gates") or {}).items()},
        "learned": (run.metrics or {}).get("learned"),
        "learning": ((run.metrics or {}).get("learning") or {}).get("verdict"),
        "choice": {k: v for k, v in ((run.metrics or {}).get("choice") or {}).items() if k in ("method", "reason")}
                  or None,
    }


def model_card(manifest: dict[str, Any]) -> str:
    """The README.md of an export: training method, flip rates, propensity diagnostics, usage."""
    s = manifest.get("training") or {}
    fmt = export_format(manifest["kind"])
    base = manifest.get("base_model_card")
    method = s.get("method", "?")
    front = ["---", f"library_name: {fmt.library}", "tags:", "- reward-model", "- causalrm", "- rlhf", f"- {method}"]
    if base and "/" in base and not base.startswith(("/", ".")):
        front.append(f"base_model: {base}")
    front.append("pipeline_tag: text-classification")
    front.append("---")
    lines = [*front, "", f"# CausalRM reward model ({method})", ""]
    lines += [
        "A reward model fitted with the [CausalRM Workbench](https://arxiv.org/abs/2603.18736) on an observational "
        "user-feedback log: noisy binary feedback (thumbs, copies, upvotes) observed on a selection-biased subset of "
        "the responses. Its output is one reward logit z per (prompt, response); sigma(z) is the predicted "
        "probability that a user truly prefers the response.", "",
        "## Training", "",
        f"- **Method**: `{method}`. {registry.description(method)}",
        f"- **Base loss**: `{s.get('base_loss', 'mse')}` on sigma(z).",
    ]
    lines.append(f"- **Model**: {fmt.card_model(manifest)}")
    lines.append(f"- **Input**: {fmt.card_input(manifest)}")
    if s.get("rows"):
        rows = s["rows"]
        lines.append(f"- **Rows**: {rows.get('train')} train, {rows.get('val')} validation (early stopping on the "
                     f"method's debiased estimate), {rows.get('test')} test; observed (feedback) rate "
                     f"{_fmt(s.get('observed_rate'))}.")
    if s.get("validation"):
        v = s["validation"]
        lines.append(f"- **Early stopping**: best epoch {v.get('best_epoch')} of {v.get('epochs')} "
                     f"({v.get('stop_reason')}); validation estimate {_fmt(v.get('best_val_estimate'), 4)}.")
    if s.get("choice"):
        lines.append(f"- **Chosen by `auto`**: {s['choice']['reason']}.")
    if s.get("learned") is False:
        lines.append(f"- **Warning: this model {s['learning']}.** Its scores are not a usable reward.")
    for name, gate in (s.get("gates") or {}).items():
        lines.append(f"- **Gate {name.replace('_', ' ')}**: {'pass' if gate['passed'] else 'fail'}: {gate['verdict']}.")
    lines += ["", "## Flip rates (feedback noise)", ""]
    flips = s.get("flip_rates")
    if flips:
        ci = flips.get("ci") or {}
        lines += ["| rate | meaning | estimate | 95% CI |", "| --- | --- | --- | --- |"]
        for key, meaning in (("rho01", "P(feedback = 0 given true preference 1)"),
                             ("rho10", "P(feedback = 1 given true preference 0)")):
            lo_hi = ci.get(key)
            ci_text = f"[{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]" if lo_hi else "n/a"
            lines.append(f"| {key} | {meaning} | {_fmt(flips.get(key))} | {ci_text} |")
        how = flips.get("method")
        if how:
            q = f" (quantile {flips['quantile']})" if how == "anchor-quantile" and flips.get("quantile") else ""
            lines += ["", f"Estimated with `{how}`{q}."]
    else:
        lines.append(f"Not used: method `{method}` does not correct for feedback noise.")
    lines += ["", "## Propensity diagnostics (selection bias)", ""]
    prop = s.get("propensity")
    if prop:
        lines += ["| diagnostic | value |", "| --- | --- |"]
        labels = (("source", "propensity source"), ("clip", "clip (floor on p-hat as a weight)"),
                  ("share_clipped", "share of rows clipped"), ("auc", "AUROC of p-hat vs observed"),
                  ("ece", "expected calibration error"), ("brier", "Brier score"),
                  ("ess_fraction", "effective sample size / observed rows"), ("max_weight", "largest weight 1/p"))
        for key, label in labels:
            if key in prop:
                lines.append(f"| {label} | {_fmt(prop[key])} |")
        for w in prop.get("warnings") or []:
            lines.append(f"\nWarning: {w}")
        if prop.get("note"):
            lines.append(f"\nNote: {prop['note']}")
    else:
        lines.append(f"Not used: method `{method}` does not correct for selection bias.")
    test = s.get("test")
    if isinstance(test, dict) and isinstance(test.get("metrics"), dict):
        m = test["metrics"]
        lines += ["", "## Test metrics", "",
                  f"On {test.get('rows', 'clean test rows')} (n={test.get('n')}): "
                  + ", ".join(f"{k.upper()} {_fmt(m.get(k))}" for k in ("r2", "mse", "mae", "auroc") if k in m)
                  + "."]
    lines += ["", "## Usage", "", *_USAGE, *fmt.card_usage(manifest), ""]
    return "\n".join(lines)


#: the usage every export shares (its format adds how to load it without causalrm)
_USAGE = ("```python", "import causalrm", "", 'rm = causalrm.load_reward_model("PATH")',
          'rm.score(["How do I sort a list?"], ["Use sorted(xs)."])  # reward logits (numpy)', "",
          "# as a TRL reward (GRPOTrainer(reward_funcs=[...]))",
          "from causalrm.export.loading import reward_function, best_of_n",
          'reward = reward_function("PATH")', 'best, scores = best_of_n(rm, "prompt", ["answer a", "answer b"])',
          "```")


__all__ = ["model_card", "run_summary"]
