"""The CausalRM Workbench: a Gradio UI over the :mod:`causalrm` library (UI wiring only, no estimation here).

Modules: :mod:`app.session` (per-session state and temp folders), :mod:`app.handlers` (one function per action, plain
Python, testable without a server), :mod:`app.plots` (plotly figures), :mod:`app.ui` (the ``gr.Blocks`` layout and
``launch``), ``app/app.py`` (the entry point, ``python app/app.py``).
"""
