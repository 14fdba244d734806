"""Tab 6, Audit: label a few hundred proposed rows by hand and watch the flip rates and the verdict settle.

The rows come from ``causalrm.evaluation.audit.propose`` (a stratified design with known inclusion probabilities); they are
shown one at a time with 👍 / 👎 / skip (keys ``1`` or ``y``, ``0`` or ``n``, ``s``). Every label is merged into
``Session.log`` at once (``causalrm.evaluation.audit.merge_labels``): the Noise tab's gold estimate, ``auto`` on the Train tab
and the Compare tab's verdict read it from there. The panels beside the row show the inclusion-weighted gold flip
rates and, once models are trained, the audited verdict, recomputed with every label. The label file downloads and
uploads in the format of ``causalrm audit`` (a file from the command line continues here, and back).

State: ``Session.audit`` (:class:`AuditState`). Layout: :func:`build` (inside the app's tabs); events: :func:`wire`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import polars as pl

from app.common import ORACLE, ci_text, flip_choices, fmt, guarded, has_gold, md_table, require, run_scored, upload_path
from app.session import Session
from causalrm.data import schema
from causalrm.data.pairwise import RESPONSE_A, RESPONSE_B, is_pair_log
from causalrm.errors import InputError
from causalrm.estimators.methods import BASELINE, against_baseline
from causalrm.evaluation import audit
from causalrm.nuisances.flip_rates import design_columns

GOOD, BAD, SKIP = "good", "bad", "skip"
#: keyboard shortcuts, active while the Audit tab is shown and no text field has the focus
SHORTCUTS_JS = """() => {
  if (window.crmAuditKeys) return;
  window.crmAuditKeys = true;
  const keys = {"1": "audit-good", "y": "audit-good", "0": "audit-bad", "n": "audit-bad", "s": "audit-skip"};
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" ||
        t.isContentEditable))) return;
    const card = document.getElementById("audit-card");
    const id = keys[e.key.toLowerCase()];
    if (!id || !card || card.offsetParent === null) return;
    const button = document.getElementById(id);
    if (button && !button.disabled) { e.preventDefault(); button.click(); }
  });
}"""


@dataclass
class AuditState:
    """One session's audit: ``table`` (the label file: ``causalrm.evaluation.audit.LABEL_COLUMNS`` or any subset with
    ``response_id`` and ``gold_label``), the ids skipped so far, the log as it was before the audit (``base``: the
    log's own gold columns come back when no label is left) and the position of the row shown."""

    table: pl.DataFrame
    base: pl.DataFrame
    skipped: set[str] = field(default_factory=set)
    cursor: int = 0

    def labelled(self) -> int:
        return int(self.table[schema.GOLD_LABEL].is_not_null().sum())

    def advance(self) -> None:
        """Move to the first row after the cursor (wrapping) that is neither labelled nor skipped; past the end if
        there is none."""
        ids, gold = self.table[schema.RESPONSE_ID].to_list(), self.table[schema.GOLD_LABEL].to_list()
        n = len(ids)
        for step in range(n):
            k = (self.cursor + step) % n
            if gold[k] is None and ids[k] not in self.skipped:
                self.cursor = k
                return
        self.cursor = n


class AuditView(NamedTuple):
    """What every audit handler returns (order = the components in :func:`wire`)."""

    state: Session
    card: str
    prompt: str
    response: str
    progress: str
    flips: str
    verdict: str
    download: Any
    flip_method: Any  # gr.update of the Noise tab's estimate choices (gold appears with the first label)
    response_b: Any  # gr.update: an A/B log's second response, beside the first (hidden otherwise)


# ---------------------------------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------------------------------
@guarded
def propose(state: Session | None, n: float = 300, seed: float = 0, progress=gr.Progress()) -> AuditView:
    """Propose ``n`` rows to label (``causalrm.evaluation.audit.propose``); labels already given are kept when every labelled
    row is in the new proposal (same seed, an equal or larger n)."""
    session = require(state, embeddings=True)
    progress(0.2, desc="fitting the design's propensity and proxy")
    current: AuditState | None = session.audit
    base = current.base if current is not None else session.log
    table = audit.propose(base, session.X, int(n or 0), seed=int(seed or 0))
    if current is not None and current.labelled():
        done = current.table.filter(pl.col(schema.GOLD_LABEL).is_not_null())
        table = audit.carry_labels(table, done, source="the labels given so far")
    session.audit = AuditState(table=table, base=base,
                               skipped=set() if current is None else current.skipped & set(table[schema.RESPONSE_ID]))
    session.audit.advance()
    return _view(session)


@guarded
def label(state: Session | None, value: str) -> AuditView:
    """Record 👍 (``good`` = 1), 👎 (``bad`` = 0) or ``skip`` for the row shown, then show the next one."""
    session = require(state)
    current = _current(session)
    if current.cursor >= current.table.height:
        raise InputError("every proposed row is labelled or skipped: propose more rows, or download the labels")
    row_id = current.table[schema.RESPONSE_ID][current.cursor]
    if value == SKIP:
        current.skipped.add(row_id)
    elif value in (GOOD, BAD):
        gold = current.table[schema.GOLD_LABEL].to_list()
        gold[current.cursor] = 1.0 if value == GOOD else 0.0
        current.table = current.table.with_columns(pl.Series(schema.GOLD_LABEL, gold, dtype=pl.Float64))
        _merge(session)
    else:
        raise InputError(f"unknown label {value!r}: use {GOOD}, {BAD} or {SKIP}")
    current.cursor += 1
    current.advance()
    return _view(session)


@guarded
def upload(state: Session | None, file: Any) -> AuditView:
    """Continue an audit from a label file (``causalrm audit`` or a download from here) of this log."""
    session = require(state)
    if file is None:
        raise InputError("no label file: choose the CSV, JSONL or Parquet file of an audit of this log")
    from causalrm.data.io.readers import read_labels

    current: AuditState | None = session.audit
    base = current.base if current is not None else session.log
    table = read_labels(upload_path(file), known_ids=base[schema.RESPONSE_ID].to_list(), log_name="the loaded log")
    session.audit = AuditState(table=table, base=base)
    session.audit.advance()
    _merge(session)
    return _view(session, labels_gone=True)


@guarded
def clear(state: Session | None) -> AuditView:
    """Drop the audit and its labels (the log gets its own gold columns back)."""
    session = require(state)
    if session.audit is not None:
        session.log = session.audit.base
        session.audit = None
    return _view(session, labels_gone=True)


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------
def _current(session: Session) -> AuditState:
    if session.audit is None:
        raise InputError("no audit yet: press 'Propose rows' (or upload a label file) first")
    return session.audit


def _merge(session: Session) -> None:
    """The log with the audit's labels (``causalrm.evaluation.audit.merge_labels``), or as it was without any."""
    current = _current(session)
    if not current.labelled():
        session.log = current.base
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the replaced own gold labels are said on the tab instead
        session.log = audit.merge_labels(current.base, current.table)


def _card(session: Session) -> tuple[str, str, Any, Any]:
    """The row shown: its card, prompt, response and (an A/B log) second response, side by side with the first."""
    pairs = is_pair_log(session.log)
    current = session.audit
    if current is None or current.cursor >= current.table.height:
        card = ("Propose rows to start the audit (the design needs the embeddings of the Data tab)." if current is None
                else "**Every proposed row is labelled or skipped.** Download the labels, or propose a larger N to "
                "extend the same sample.")
        return card, "", _response(pairs, ""), _response_b(pairs, "")
    row_id = current.table[schema.RESPONSE_ID][current.cursor]
    row = current.base.filter(pl.col(schema.RESPONSE_ID) == row_id).row(0, named=True)
    stratum = (current.table[schema.AUDIT_STRATUM][current.cursor]
               if schema.AUDIT_STRATUM in current.table.columns else "–")
    where = f"**Row {current.cursor + 1} of {current.table.height}** · `{row_id}` · stratum `{stratum}`."
    if pairs:  # gold_label 1 = a better, 0 = b better (causalrm.data.pairwise)
        card = (f"{where} Which response is better for the prompt? 👍 = **a** is better (key 1 or y), "
                "👎 = **b** is better (key 0 or n), skip (key s).")
        return (card, str(row.get(schema.PROMPT) or ""), _response(True, str(row[RESPONSE_A])),
                _response_b(True, str(row[RESPONSE_B])))
    card = f"{where} Is this a good response to the prompt? 👍 (key 1 or y), 👎 (key 0 or n), skip (key s)."
    return card, str(row.get(schema.PROMPT) or ""), _response(False, str(row[schema.RESPONSE])), _response_b(False, "")


def _response(pairs: bool, text: str) -> Any:
    return gr.update(value=text, label="response a" if pairs else "response")


def _response_b(pairs: bool, text: str) -> Any:
    return gr.update(value=text, visible=pairs)


def _progress_md(session: Session) -> str:
    current = session.audit
    if current is None:
        return ""
    gold = current.table[schema.GOLD_LABEL]
    n, good, bad = current.table.height, int((gold == 1).sum()), int((gold == 0).sum())
    done = good + bad + len(current.skipped)
    filled = round(20 * done / n) if n else 0
    text = (f"`{'█' * filled}{'░' * (20 - filled)}` **{good + bad} labelled** ({good} 👍, {bad} 👎), "
            f"{len(current.skipped)} skipped, {n - done} to go of {n}.")
    if has_gold(current.base):
        text += " While the audit has labels they replace the log's own gold labels."
    return text


def _flips_md(session: Session) -> str:
    """The inclusion-weighted gold flip rates with their intervals, beside the anchor and true rates."""
    from causalrm.nuisances.flip_rates import FlipRateEstimator

    if session.audit is None or not session.audit.labelled():
        return "Flip rates from the audit appear here with the first labels of both classes on rows with feedback."
    rows = audit.auditable_rows(session.log)
    obs = session.log[schema.OBSERVED].cast(pl.Float64).to_numpy()[rows]
    fb = np.nan_to_num(session.log[schema.FEEDBACK].cast(pl.Float64).to_numpy()[rows])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = FlipRateEstimator(method="gold", n_bootstrap=200).fit(None, fb, obs,
                                                                          **design_columns(session.log, rows))
    except InputError as err:
        return f"Flip rates from the audit: not yet ({err})."
    table = [("audit (weighted by 1 / inclusion probability)", fmt(est.rho01_), ci_text(est.ci_, "rho01"),
              fmt(est.rho10_), ci_text(est.ci_, "rho10"))]
    if session.flip is not None and session.flip.rho01 is not None:
        table.append(("anchors (Noise tab)", fmt(session.flip.rho01), ci_text(session.flip.rho_ci, "rho01"),
                      fmt(session.flip.rho10), ci_text(session.flip.rho_ci, "rho10")))
    realised = (session.source.get("realised") or {}) if session.source.get("kind") == "simulated" else {}
    if realised.get("rho01_hat") is not None:
        table.append(("realised in this log (simulation)", fmt(realised["rho01_hat"]), "",
                      fmt(realised["rho10_hat"]), ""))
    d = est.diagnostics_
    return (f"**Flip rates** from {d['n_gold']} audited rows with feedback ({d['n_gold_positive']} good, "
            f"{d['n_gold_negative']} bad; 95% Wilson intervals at the effective number of rows, honest at any "
            "number of labels). Choose *gold labels* on the Noise tab to train with them.\n\n"
            + md_table(("estimate", "ρ01", "95% CI", "ρ10", "95% CI"), table))


def _verdict_panel(session: Session) -> str:
    """The audited evaluation of the trained models and the verdict of the debiased one against naive."""
    from causalrm.evaluation.metrics import sigmoid
    from causalrm.evaluation.verdicts import labelled_verdict

    if session.audit is None or not session.audit.labelled():
        return "The audited verdict appears here once models are trained and rows labelled."
    trained = [m for m in session.results if m != ORACLE]
    debiased = against_baseline(trained)
    if BASELINE not in trained or debiased is None:
        return "Train naive and a debiased method (Train tab) to see the audited verdict here."
    res = session.results[debiased]
    probs = {m: sigmoid(run_scored(session, m)["reward"].to_numpy()) for m in (BASELINE, debiased)}
    evaluation = audit.audited_evaluation(session.log, probs, split=res.split, n_boot=200)
    if evaluation is None:
        return "Label a few more rows for the audited verdict."
    if evaluation["not_enough"]:  # no table, no verdict: nothing here would be a finding yet
        return (f"**Audited verdict:** {evaluation['not_enough']} (on the {evaluation['labels']}). No verdict on "
                f"whether {debiased} beats naive until then.")
    lines = [(name, fmt(r["r2"]), ci_text(r, "r2_ci"), fmt(r["mse"]), fmt(r["auroc"]))
             for name, r in evaluation["runs"].items()]
    text = (f"**Audited evaluation** on {evaluation['n']} {evaluation['labels']}, for the whole log:\n\n"
            + md_table(("model", "R²", "95% CI", "MSE", "AUROC"), lines))
    try:
        out = labelled_verdict(session.log, probs[BASELINE], probs[debiased], baseline=BASELINE, debiased=debiased,
                               split=res.split, n_boot=200, label=schema.GOLD_LABEL)
    except InputError as err:
        return text + f"\n\nNo verdict yet ({err})."
    return text + f"\n\n**Verdict.** {out['verdict']}" if out else text


def _download(session: Session) -> str | None:
    """The label file as ``causalrm audit`` writes it (CSV), for the download button."""
    from causalrm.atomic_io import write_table_atomic

    current = session.audit
    if current is None:
        return None
    responses = [RESPONSE_A, RESPONSE_B] if is_pair_log(current.base) else [schema.RESPONSE]
    texts = current.base.select(schema.RESPONSE_ID, schema.PROMPT, *responses, schema.FEEDBACK)
    table = current.table.select([c for c in current.table.columns if c not in texts.columns[1:]])
    table = table.join(texts, on=schema.RESPONSE_ID, how="left")
    columns = [r for c in audit.LABEL_COLUMNS for r in (responses if c == schema.RESPONSE else [c])]
    table = table.select([c for c in columns if c in table.columns])
    path = session.folder("downloads") / "labels.csv"
    write_table_atomic(table, path)
    return str(path)


def _view(session: Session, *, labels_gone: bool = False) -> AuditView:
    """The tab's outputs; ``labels_gone``: the log may have lost its gold labels, so the Noise tab's choice goes back
    to the default unless gold labels remain."""
    card, prompt, response, response_b = _card(session)
    choices = flip_choices(session.log)
    flip_method = (gr.update(choices=choices, value=choices[0]) if labels_gone and not has_gold(session.log)
                   else gr.update(choices=choices))
    download = _download(session)
    return AuditView(session, card, prompt, response, _progress_md(session), _flips_md(session),
                     _verdict_panel(session), gr.update(value=download, interactive=download is not None),
                     flip_method, response_b)


# ---------------------------------------------------------------------------------------------------------------------
# layout and events
# ---------------------------------------------------------------------------------------------------------------------
class AuditUI(NamedTuple):
    n: Any
    seed: Any
    propose: Any
    clear: Any
    upload: Any
    card: Any
    prompt: Any
    response: Any
    good: Any
    bad: Any
    skip: Any
    progress: Any
    flips: Any
    verdict: Any
    download: Any
    response_b: Any


def build() -> AuditUI:
    """The Audit tab (call inside the app's ``gr.Tabs``)."""
    with gr.Tab("6 · Audit", id="audit", elem_id="tab-audit"):
        gr.Markdown("Label a few hundred rows by hand: they settle the flip rates and tell whether a debiased model "
                    "beats naive on *this* log. The rows come from a stratified design with known inclusion "
                    "probabilities (`causalrm audit`), so the estimates stand for the whole log.",
                    elem_classes="crm-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                n = gr.Number(300, precision=0, minimum=1, label="rows to propose (N)", elem_id="audit-n")
                seed = gr.Number(0, precision=0, minimum=0, label="seed (keep it to extend the same sample)")
                with gr.Row():
                    propose_btn = gr.Button("Propose rows", variant="primary", elem_id="audit-propose")
                    clear_btn = gr.Button("Clear", elem_id="audit-clear")
                upload_file = gr.File(label="continue from a label file", file_types=[".csv", ".jsonl", ".parquet"],
                                      type="filepath", elem_id="audit-upload")
                download = gr.DownloadButton("Download labels (CSV)", interactive=False, elem_id="audit-download")
                progress = gr.Markdown(elem_id="audit-progress")
            with gr.Column(scale=3):
                card = gr.Markdown("Propose rows to start the audit.", elem_id="audit-card")
                prompt = gr.Textbox(label="prompt", interactive=False, lines=2, max_lines=8, elem_id="audit-prompt")
                with gr.Row(equal_height=True):
                    response = gr.Textbox(label="response", interactive=False, lines=6, max_lines=20,
                                          elem_id="audit-response")
                    response_b = gr.Textbox(label="response b", interactive=False, lines=6, max_lines=20,
                                            visible=False, elem_id="audit-response-b")
                with gr.Row():
                    good = gr.Button("👍 good (1)", elem_id="audit-good")
                    bad = gr.Button("👎 bad (0)", elem_id="audit-bad")
                    skip = gr.Button("skip (s)", elem_id="audit-skip")
                with gr.Row(equal_height=False):
                    flips = gr.Markdown(elem_id="audit-flips")
                    verdict = gr.Markdown(elem_id="audit-verdict")
    return AuditUI(n, seed, propose_btn, clear_btn, upload_file, card, prompt, response, good, bad, skip, progress,
                   flips, verdict, download, response_b)


def wire(demo: gr.Blocks, state: Any, ui: AuditUI, flip_method: Any) -> None:
    """The Audit tab's events (``flip_method``: the Noise tab's estimate choices, which gain *gold labels*)."""
    out = [state, ui.card, ui.prompt, ui.response, ui.progress, ui.flips, ui.verdict, ui.download, flip_method,
           ui.response_b]
    ui.propose.click(propose, [state, ui.n, ui.seed], out, api_name="audit_propose", concurrency_id="nuisance",
                     show_progress_on=ui.card)
    for button, value in ((ui.good, GOOD), (ui.bad, BAD), (ui.skip, SKIP)):
        button.click(label, [state, gr.State(value)], out, api_name=f"audit_{value}", concurrency_id="light",
                     show_progress="hidden")
    ui.upload.upload(upload, [state, ui.upload], out, api_name="audit_upload", concurrency_id="light")
    ui.clear.click(clear, [state], out, api_name="audit_clear", concurrency_id="light")
    demo.load(None, None, None, js=SHORTCUTS_JS)


__all__ = ["AuditState", "AuditUI", "AuditView", "build", "clear", "label", "propose", "upload", "wire"]
