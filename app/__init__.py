"""The CausalRM Workbench: a Gradio UI over the :mod:`causalrm` library (UI wiring only, no estimation here).

Modules: :mod:`app.tabs` (one module per tab: its layout, its handlers, plain Python testable without a server, and
its events), :mod:`app.common` (what the tabs share: choices, settings, error handling, small views),
:mod:`app.session` (per-session state and temp folders), :mod:`app.restore` (a session restored after a reload),
:mod:`app.jobs`, :mod:`app.training` and :mod:`app.train_worker` (training in worker processes), :mod:`app.plots`
(plotly figures), :mod:`app.ui` (the ``gr.Blocks`` assembled from the tabs, and ``launch``), ``app/app.py`` (the entry
point, ``python app/app.py``).
"""
