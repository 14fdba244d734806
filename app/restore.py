"""Sessions that survive a page reload: the page keeps its session's token in the tab's ``sessionStorage`` and hands
it back on load; :func:`restore_session` puts that session's data, nuisances and trained models on screen again
(following a training job that is still running). Closing or reloading the tab detaches its page
(:func:`app.session.detach_page`).

Events: :func:`wire` (after every tab's layout, since the page load fills components of several tabs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import gradio as gr

from app import plots
from app.common import guarded
from app.session import Session, detach_page, new_session, reattach
from app.tabs.data import data_view
from app.tabs.train import compare_updates, follow_training, form_updates, histories, results_table

TOKEN_KEY = "causalrm-session"
# the tab's session token: read before the page-load handler, stored whenever the server sends one
READ_TOKEN = f"() => sessionStorage.getItem('{TOKEN_KEY}') || ''"
STORE_TOKEN = f"(token) => {{ if (token) sessionStorage.setItem('{TOKEN_KEY}', token); }}"


class RestoreView(NamedTuple):
    """What the page-load handler returns (order = the outputs in :func:`wire`)."""

    state: Session
    token: str
    summary: Any
    warnings: Any
    preview: Any
    embed_status: Any
    methods: Any
    flip_method: Any
    propensity_status: Any
    noise_status: Any
    train_status: Any
    curves: Any
    results: Any
    compare_a: Any
    compare_b: Any
    # the Train form as last submitted (``app.tabs.train.form_updates``)
    backbone: Any
    device: Any
    epochs: Any
    patience: Any
    seed: Any
    select_head: Any
    lora_length: Any
    force_noise: Any


RESTORED = ("Restored after a reload: fitted earlier with the settings shown (training uses them); press the button "
            "again to redraw the plots.")


@guarded
def restore_session(token: str | None, state: Session | None = None, request: gr.Request = None
                    ) -> Iterator[RestoreView]:
    """Page load: the session this tab showed before a reload (its ``token`` kept in the tab's sessionStorage) with
    its data, nuisances and trained models on screen again, following a training job that is still running; or a
    new session when there is none to restore."""
    page = getattr(request, "session_hash", None)
    session = state if isinstance(state, Session) else reattach(token, page or "")
    keep = gr.update()
    if session is None:
        session = new_session(page)
    if session.log is None:
        yield RestoreView(session, session.token, *[keep] * 13, *form_updates(session))
        return
    data = data_view(session, toasts=False)
    methods = data.methods
    if session.train_settings.get("methods"):
        methods = gr.update(choices=methods["choices"], value=session.train_settings["methods"])
    notes = [RESTORED if done else "" for done in (session.propensity is not None, session.flip is not None)]
    head = (session, session.token, data.summary, data.warnings, data.preview, data.embed_status, methods,
            data.flip_method, *notes)
    form = form_updates(session)
    run = session.training
    if run is None:
        yield RestoreView(*head, keep, keep, keep, keep, keep, *form)
        return
    if not run.job.finished:
        for view in follow_training(session):
            yield RestoreView(*head, *view[1:], *form)
            head, form = (session, session.token, *[keep] * 8), (keep,) * len(form)
        return
    run.update(session, timeout=0)
    trained = ", ".join(session.results) or "nothing"
    a, b = compare_updates(session)
    yield RestoreView(*head, f"Restored after a reload: trained {trained} ({run.job.state}).",
                      plots.loss_curves(histories(session, run.live), order=run.methods), results_table(session),
                      a, b, *form)


def _on_unload(request: gr.Request) -> None:
    """The tab closed or reloaded: its session stays restorable for a while (``app.session.detach_page``)."""
    detach_page(getattr(request, "session_hash", None))


def wire(demo: gr.Blocks, state: Any, token: Any, *, data: Any, propensity: Any, noise: Any, train: Any,
         compare: Any) -> None:
    """The page load (restore or start a session), the token kept in ``sessionStorage`` and the page unload."""
    demo.load(None, None, token, js=READ_TOKEN).then(
        restore_session, [token, state],
        [state, token, data.summary, data.warnings, data.preview, data.embed_status, train.methods, noise.flip_method,
         propensity.status, noise.status, train.status, train.curves, train.results, compare.method_a,
         compare.method_b, train.backbone, train.device, train.epochs, train.patience, train.seed, train.select_head,
         train.lora_length, train.force_noise],
        api_visibility="private", concurrency_id="restore", concurrency_limit=None, show_progress="hidden")
    token.change(None, token, None, js=STORE_TOKEN)
    demo.unload(_on_unload)
