"""Tab 4, Train: the selected methods trained in a worker process (:mod:`app.training`), with live loss curves, the
queue position, Cancel, and the table of trained models; the Compare tab's pair follows what was trained.

Layout: :func:`build`; events: :func:`wire`. :func:`follow_training` also serves a page reloaded mid-training
(:mod:`app.restore`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import polars as pl

from app import plots, training
from app.common import (
    CLEAR_ERRORS,
    DEFAULT_METHODS,
    DEVICES,
    SETTINGS,
    TRAIN_METHODS,
    app_methods,
    fit_config,
    fmt,
    guarded,
    method_choices,
    notify,
    require,
)
from app.session import Session
from causalrm.data.feedback_kinds import MIXED, kind_of
from causalrm.data import schema
from causalrm.devices import resolve_device
from causalrm.errors import InputError
from causalrm.estimators import methods as registry
from causalrm.training.backbones.base import DEFAULT_BACKBONE, get_backbone_class

#: max epochs and patience the form proposes for the default backbone (each backbone's ``app_epochs``)
EPOCHS, PATIENCE = get_backbone_class(DEFAULT_BACKBONE).app_epochs


class TrainView(NamedTuple):
    state: Session
    status: str
    curves: Any
    results: pl.DataFrame
    compare_a: Any  # gr.update of the Compare tab's baseline dropdown
    compare_b: Any  # gr.update of the Compare tab's debiased dropdown


def histories(session: Session, live: dict[str, dict[str, list]]) -> dict[str, dict[str, Any]]:
    """Loss curves per method: the trained ones' histories, then the live epochs of the one training now."""
    out: dict[str, dict[str, Any]] = {}
    for method, res in session.results.items():
        h = res.history
        out[method] = {"epoch": list(range(1, h.epochs + 1)), "train_loss": list(h.train_loss),
                       "val_estimate": list(h.val_estimate), "best_epoch": h.best_epoch}
    for method, h in live.items():
        if method not in out:
            out[method] = h
    return out


def results_table(session: Session) -> pl.DataFrame:
    """The table of trained models (head, epochs, best epoch and validation estimate, stop reason, device, time)."""
    rows = []
    for method, res in session.results.items():
        h = res.history
        best = float(h.best_val_estimate)
        head = get_backbone_class(res.config.backbone).head_label(res.config)
        rows.append({"method": method, "head": head, "epochs": h.epochs, "best epoch": h.best_epoch,
                     "best val estimate": round(best, 5) if math.isfinite(best) else None,
                     "stop": h.stop_reason, "device": h.device,
                     "seconds": round(float(res.seconds.get("total", 0.0)), 1)})
    if not rows:
        return pl.DataFrame(schema={"method": pl.String, "head": pl.String, "epochs": pl.Int64,
                                    "best epoch": pl.Int64, "best val estimate": pl.Float64, "stop": pl.String,
                                    "device": pl.String, "seconds": pl.Float64})
    return pl.DataFrame(rows)


def compare_updates(session: Session) -> tuple[Any, Any]:
    """The Compare tab's pair after training: naive (or the first) against the registry's default debiased model
    (``causalrm.estimators.methods.against_baseline``: auto when trained, else the most debiased), else the next trained."""
    trained = list(session.results)
    if not trained:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None)
    a = registry.BASELINE if registry.BASELINE in trained else trained[0]
    b = registry.against_baseline(trained) or next((m for m in trained if m != a), a)
    return gr.update(choices=trained, value=a), gr.update(choices=trained, value=b)


def available_backbones() -> list[str]:
    """Backbones the core can build here (``lora`` appears once ``causalrm/training/backbones/lora.py`` imports)."""
    from causalrm.training.backbones.base import available_backbones as core_available

    return list(core_available())


def inspected_nuisances(session: Session, config: Any) -> Any:
    """The nuisances the user fitted and inspected (Noise tab, else Propensity tab) when training can use them: on
    the rows and split this configuration fits, without hand-set flip rates (those replace the estimate). Their fitted
    models stay behind (plots only); ``causalrm.workflows.orchestrate`` adds what the methods need beyond them."""
    import dataclasses

    from causalrm.data.splits import resolve_split

    if kind_of(session.log) == MIXED:  # inspected on the thumbs; training stacks both signals' rows (mixed_feedback)
        return None
    split = resolve_split(session.log, val_fraction=config.val_fraction, seed=config.seed)
    rows = np.flatnonzero(split != schema.TEST)
    for nuis in (session.flip, session.propensity):
        if nuis is None or not np.array_equal(nuis.rows, rows) or not np.array_equal(nuis.split, split[rows]):
            continue
        flips = nuis.diagnostics.get("flip_rates") or {}
        if nuis is session.flip and (config.rho01 is not None or flips.get("method") != config.flip_method
                                     or flips.get("quantile") != config.quantile):
            continue
        return dataclasses.replace(nuis, propensity_model=None, flip_estimator=None)
    return None


@guarded
def train_models(state: Session | None, methods: Sequence[str] | None = DEFAULT_METHODS,
                 backbone: str = DEFAULT_BACKBONE, device: str = "auto", epochs: float = EPOCHS,
                 patience: float = PATIENCE,
                 seed: float = 0, select_head: bool = False, force_noise_correction: bool = False,
                 max_length: float | None = None, request: gr.Request = None,
                 progress=gr.Progress()) -> Iterator[TrainView]:
    """Train each selected method in a worker process (``app.train_worker``; live loss curves, Cancel, queue).

    The nuisances are fitted once, then each method; each trained model is saved as a run folder
    (``causalrm.workflows.runs.save_run``) in the session's folder. ``select_head``: each method also trains a linear head and
    keeps the one its validation estimate prefers (``FitConfig.select_head``); the live curve then restarts for the
    second head. ``max_length``: tokens per (prompt, response) for a backbone that reads text (default: 128 on a CPU,
    256 on a GPU); the backbone's memory plan (``Backbone.plan_memory``: LoRA's micro-batches and gradient
    checkpointing) fits the server's memory limit per job, and a job that cannot fit is refused with the max length
    that would.
    """
    from app import train_worker
    from app.training import TrainingRun, default_lora_max_length, planned_config, pool

    session = require(state)
    if isinstance(methods, str):
        methods = [methods]
    methods = list(dict.fromkeys(m for m in (methods or []) if m))
    if not methods:
        raise InputError("select at least one method to train")
    allowed = set(app_methods(clean_labels=True))
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise InputError(f"unknown method(s) {bad}; choose from {', '.join(sorted(allowed))}")
    clean = [m for m in methods if m in app_methods(clean_labels=True) and m not in app_methods()]
    if clean and schema.TRUE_LABEL not in session.log.columns:
        raise InputError(f"{', '.join(repr(m) for m in clean)} needs clean labels: available on simulated logs only")
    offered, why = method_choices(session.log, session.flip)  # an implicit log: what its rates allow
    if any(m not in offered for m in methods):
        raise InputError(f"{', '.join(m for m in methods if m not in offered)} not offered on this log. {why}")
    if device not in DEVICES:
        raise InputError(f"device {device!r}: choose auto, cuda or cpu")
    if backbone not in available_backbones():
        raise InputError(f"backbone {backbone!r} is not available here; choose one of {available_backbones()}")
    try:
        epochs, patience, seed = int(epochs), int(patience), int(seed or 0)
        max_length = int(max_length or default_lora_max_length())
    except (TypeError, ValueError):
        raise InputError("epochs, patience, seed and max length must be whole numbers") from None
    if not 1 <= epochs <= SETTINGS.max_epochs:
        raise InputError(f"epochs must be between 1 and {SETTINGS.max_epochs}")
    resolve_device(device)  # InputError when the device is not usable here
    if get_backbone_class(backbone).needs_embeddings and session.X is None:
        raise InputError(f"the {backbone} backbone needs embeddings: press 'Compute embeddings' on the Data tab "
                         "first")
    if session.training is not None and not session.training.job.finished:
        raise InputError("this session is already training; wait for it to finish or press Cancel")
    config = fit_config(session, method=methods[0], backbone=backbone, device=device, max_epochs=epochs,
                         patience=patience, seed=seed, select_head=bool(select_head),
                         force_noise_correction=bool(force_noise_correction))
    config, plan = planned_config(config, n_rows=session.log.height, max_length=max_length)
    config.validate()
    session.results, session.run_dirs = {}, {}
    session.train_settings = {"methods": methods, "backbone": backbone, "device": device, "epochs": epochs,
                              "patience": patience, "seed": seed, "select_head": bool(select_head),
                              "force_noise": bool(force_noise_correction), "max_length": max_length,
                              "config": config.to_dict()}
    job = pool().submit(session.session_hash[:8], train_worker.train, log=session.log, X=session.X, config=config,
                        methods=methods, runs_root=str(session.folder("runs")), source=session.source.get("label"),
                        nuisances=inspected_nuisances(session, config))
    session.training = TrainingRun(job=job, methods=methods, backbone=backbone, stage=session.stage,
                                   plan=plan, max_epochs=epochs)
    yield from follow_training(session, progress)


def _train_status(run: Any) -> str:
    """The Train tab's status line while a job is queued or running."""
    job = run.job
    if job.state == "queued":
        return (f"Queued: position {job.position} in line, {job.pool.running} job(s) running (at most "
                f"{job.pool.max_running} at once). Cancel leaves the queue.")
    n = len(run.methods)
    limit = job.pool.time_limit_s
    elapsed = None if job.started is None else time.monotonic() - job.started
    if run.current is not None:
        i = run.methods.index(run.current) + 1
        if training.shows_steps(run):
            line = f"Training **{run.current}** ({i}/{n}): " + training.step_progress(run, elapsed_s=elapsed,
                                                                                     limit_s=limit)
        elif run.last_epoch is None:
            line = f"Training **{run.current}** ({i}/{n})…"
        else:
            epoch, max_epochs, train_loss, val_estimate = run.last_epoch
            line = (f"Training **{run.current}** ({i}/{n}): epoch {epoch}/{max_epochs}, train loss "
                    f"{fmt(train_loss, 4)}, validation estimate {fmt(val_estimate, 4)}")
    elif run.stage_text and run.stage_text != "training":
        line = f"{run.stage_text[0].upper()}{run.stage_text[1:]}…"
    else:
        line = "Fitting the nuisances (propensity, flip rates, pseudo-labels)…"
    if job.timed_out:  # cancelled by the pool; the worker keeps what it validated, if anything, then ends
        line += (f" Reached this server's limit of {limit / 60:g} minutes per job (--job-time-limit-min): stopping "
                 "and keeping the best validated model, if any.")
    elif limit and elapsed is not None:
        line += f" ({elapsed / 60:.0f} of at most {limit / 60:g} minutes)"
    return line


def follow_training(session: Session, progress: Any = None) -> Iterator[TrainView]:
    """Views of the session's training job until it ends (live curves at most once a second), then the final one.

    Raises InputError with the job's one-line message when it failed (crash, out of memory, bad input).
    """
    run = session.training
    methods, n = run.methods, len(run.methods)

    def view(status: str, compare: tuple[Any, Any] = (gr.update(), gr.update())) -> TrainView:
        text = f"{status}\n\n{run.plan}" if run.plan else status
        return TrainView(session, text, plots.loss_curves(histories(session, run.live), order=methods),
                         results_table(session), *compare)

    yield view(_train_status(run))
    last_yield = time.monotonic()
    while not run.job.finished:
        milestone = run.update(session, timeout=0.5)
        if progress is not None and run.current is not None and (run.last_step or run.last_epoch):
            i, max_epochs = methods.index(run.current), max(run.max_epochs, 1)
            done = run.last_epoch[0] if run.last_epoch else 0  # epochs done, plus the steps of the next one
            where = f"epoch {done}/{max_epochs}"
            if run.last_step is not None and run.last_step[0] > done:  # a LoRA epoch on a CPU takes minutes
                epoch, step, steps = run.last_step[:3]
                done, where = epoch - 1 + step / max(steps, 1), f"epoch {epoch}/{max_epochs}, step {step}/{steps}"
            progress(min((i + done / max_epochs) / n, 1.0), desc=f"{run.current} ({i + 1}/{n}): {where}")
        if milestone or time.monotonic() - last_yield > 1.0:
            last_yield = time.monotonic()
            yield view(_train_status(run))
    run.update(session, timeout=0)
    job = run.job
    if job.state == "failed":
        yield view(f"Stopped: {job.error}")
        raise InputError(job.error)
    if session.stage != run.stage:
        raise InputError("the data changed while training; train again on the new log")
    trained = ", ".join(session.results) or "nothing"
    cancelled = job.state == "cancelled" or len(session.results) < n or any(
        r.history.stop_reason == "cancelled" for r in session.results.values())
    if job.timed_out:
        status = (f"Stopped at this server's limit of {job.pool.time_limit_s / 60:g} minutes per training job "
                  f"(--job-time-limit-min). Trained: {trained}.")
        notify("training stopped at the time limit")
    elif cancelled:
        status = f"Cancelled. Trained: {trained}."
        notify("training cancelled")
    else:
        used = {m: r.nuisances for m, r in session.results.items()
                if registry.get(r.config.method).noise_aware and r.nuisances.rho01 is not None}
        estimated = any(r.nuisances.rho01 is not None for r in session.results.values())
        rho = (" Flip rates that entered the noise-aware methods: " + "; ".join(
            f"{m}: ρ01 = {fmt(nu.rho01)}, ρ10 = {fmt(nu.rho10)}" for m, nu in used.items()) + "." if used
            else " No noise-aware method trained: the estimated flip rates were not used." if estimated else "")
        status = (f"Done: trained {trained} with the {run.backbone} backbone on {history_device(session)}.{rho} "
                  "Open the **Compare** tab.")
        for res in session.results.values():
            if res.choice:
                status += f"\n\n**auto** kept **{res.config.method}**: {res.choice['reason']}."
        unlearned = {m: r.learned.verdict for m, r in session.results.items()
                     if r.learned is not None and not r.learned.passed}
        if unlearned:  # never "Done" for a model that did not learn (causalrm.nuisances.gates.learning_gate)
            status = ("⚠️ " + "; ".join(f"**{m} {why}**" for m, why in unlearned.items())
                      + ": its scores are not a usable reward.\n\n" + status.replace("Done: trained", "Trained", 1))
    if job.peak_memory:
        status += f" Peak memory of the job: {job.peak_memory / 2**30:.1f} GB."
    yield view(status, compare_updates(session))


def history_device(session: Session) -> str:
    devices = sorted({r.history.device for r in session.results.values()})
    return ", ".join(devices) or "–"


def cancel_training(state: Session | None = None) -> str:
    """Stop this session's training job: it leaves the queue, or stops within seconds (the methods already trained
    are kept; the current one keeps its best epoch when it stops cleanly)."""
    run = state.training if isinstance(state, Session) else None
    if run is None or run.job.finished:
        return "Nothing is training."
    run.job.cancel()
    return "Cancelling…"


# ---------------------------------------------------------------------------------------------------------------------
# layout and events
# ---------------------------------------------------------------------------------------------------------------------
def _backbone_fields(backbone: str) -> tuple[Any, Any, Any, Any]:
    """The fields that follow the backbone: max length (a backbone that reads text), max epochs, patience (its
    ``app_epochs``), linear-head option (``selects_head``)."""
    kind = get_backbone_class(backbone)
    epochs, patience = kind.app_epochs
    return (gr.update(visible=not kind.needs_embeddings), gr.update(value=epochs), gr.update(value=patience),
            gr.update(visible=kind.selects_head, value=False))


def form_updates(session: Session) -> tuple[Any, ...]:
    """The Train form as the session last submitted it (a reloaded page shows what is training or was trained):
    updates of backbone, device, max epochs, patience, seed, linear-head option, LoRA max length and the
    noise-gate override (:class:`TrainUI`'s order); unchanged fields when nothing was submitted."""
    ts = session.train_settings
    if not ts.get("backbone"):
        return (gr.update(),) * 8
    kind = get_backbone_class(ts["backbone"])
    return (gr.update(value=ts["backbone"]), gr.update(value=ts["device"]), gr.update(value=ts["epochs"]),
            gr.update(value=ts["patience"]), gr.update(value=ts["seed"]),
            gr.update(value=bool(ts["select_head"]), visible=kind.selects_head),
            gr.update(value=ts.get("max_length") or training.default_lora_max_length(),
                      visible=not kind.needs_embeddings),
            gr.update(value=bool(ts.get("force_noise"))))


class TrainUI(NamedTuple):
    methods: Any
    backbone: Any
    device: Any
    epochs: Any
    patience: Any
    seed: Any
    select_head: Any
    lora_length: Any
    force_noise: Any
    train: Any
    cancel: Any
    status: Any
    curves: Any
    results: Any


def build() -> TrainUI:
    """The Train tab (call inside the app's ``gr.Tabs``)."""
    backbones = available_backbones()
    with gr.Tab("4 · Train", id="train", elem_id="tab-train"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                methods = gr.CheckboxGroup(list(TRAIN_METHODS), value=list(DEFAULT_METHODS),
                                           label="methods", elem_id="methods")
                shown = sorted(backbones, key=lambda b: b != DEFAULT_BACKBONE)  # the default's words first
                backbone = gr.Dropdown(backbones, value=DEFAULT_BACKBONE, label="backbone", elem_id="backbone",
                                       info="; ".join(f"{b}: {get_backbone_class(b).label}" for b in shown))
                device = gr.Radio(list(DEVICES), value="auto", label="device", elem_id="train-device")
                with gr.Row():
                    epochs = gr.Number(EPOCHS, precision=0, minimum=1, maximum=SETTINGS.max_epochs,
                                       label="max epochs", elem_id="epochs")
                    patience = gr.Number(PATIENCE, precision=0, minimum=0, label="patience",
                                         elem_id="patience")
                    train_seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="train-seed")
                select_head = gr.Checkbox(False, label="also try a linear head", elem_id="select-head",
                                          info="mlp only: keep whichever head the method's own "
                                               "validation estimate prefers (twice the training time)")
                lora_length = gr.Number(training.default_lora_max_length(), precision=0, minimum=32,
                                        maximum=512, label="LoRA max length (tokens per prompt + response)",
                                        visible=False, elem_id="lora-max-length",
                                        info="micro-batches and gradient checkpointing are chosen to fit "
                                             "the server's memory per job")
                force_noise = gr.Checkbox(False, label="train noise-aware methods anyway",
                                          elem_id="force-noise",
                                          info="override the flip-rate gate (Noise tab) for denoise and "
                                               "causalrm-*, and lets auto consider them")
                with gr.Row():
                    train_btn = gr.Button("Train", variant="primary", elem_id="train")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                gr.Markdown("Nuisances are fitted once with the Propensity / Noise tab settings; each method "
                            "early-stops on its own debiased validation estimate. **auto** trains naive "
                            "and the debiased candidates and keeps a debiased model only if it beats naive "
                            "at every corner of the flip-rate and propensity uncertainty (or on audited "
                            "gold rows). A model that does not beat a constant prediction is flagged "
                            "*did not learn*.", elem_classes="crm-note")
            with gr.Column(scale=3):
                train_status = gr.Markdown(elem_id="train-status")
                curves = gr.Plot(plots.loss_curves({}), label="loss curves", elem_id="loss-curves")
                results = gr.Dataframe(label="trained models", interactive=False, elem_id="train-results")
    return TrainUI(methods, backbone, device, epochs, patience, train_seed, select_head, lora_length, force_noise,
                   train_btn, cancel_btn, train_status, curves, results)


def wire(state: Any, ui: TrainUI, *, compare: Any) -> None:
    """The Train tab's events (``compare``: the Compare tab's components, whose pair follows what was trained)."""
    # the user's choice only (``input``): a reloaded page sets the backbone with the epochs it trained with
    ui.backbone.input(_backbone_fields, ui.backbone, [ui.lora_length, ui.epochs, ui.patience, ui.select_head],
                      queue=False, api_visibility="private")
    # Jobs wait in the worker pool's line (their position shown in the status), not in gradio's queue.
    ui.train.click(
        train_models,
        [state, ui.methods, ui.backbone, ui.device, ui.epochs, ui.patience, ui.seed, ui.select_head, ui.force_noise,
         ui.lora_length],
        [state, ui.status, ui.curves, ui.results, compare.method_a, compare.method_b], api_name="train",
        concurrency_id="train", concurrency_limit=16, show_progress="minimal", show_progress_on=ui.status,
    ).success(None, js=CLEAR_ERRORS)
    ui.cancel.click(cancel_training, [state], ui.status, api_name="cancel", queue=False)
