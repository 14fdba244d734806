"""The workbench's tabs, one module each, in the order they appear: :mod:`~app.tabs.data`,
:mod:`~app.tabs.propensity`, :mod:`~app.tabs.noise`, :mod:`~app.tabs.train`, :mod:`~app.tabs.compare`,
:mod:`~app.tabs.audit`.

Each holds its layout (``build()``, called inside the app's ``gr.Tabs``, returning its components as a NamedTuple),
its handlers (plain functions, testable without a server, also the API endpoints) and its events (``wire(...)``,
given the components of other tabs that its events update).
"""
