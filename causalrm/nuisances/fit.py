"""``fit_nuisances``: the nuisances of a fit (:class:`~causalrm.nuisances.container.Nuisances`), fitted once on the
train + val rows before training: the propensity ``p_hat``, the flip rates and the doubly robust pseudo-labels ``q``,
each only when a method needs it (the method registry's ``needs``). A log of one signal is fitted by
:mod:`causalrm.nuisances.signal`, a mixed log (thumbs + events) signal by signal by :mod:`causalrm.nuisances.mixed`.
Steps and rules: the ``causalrm.workflows.pipeline`` module docstring, ``FitConfig``'s Nuisances fields.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from causalrm.config import FitConfig
from causalrm.data.feedback_kinds import MIXED
from causalrm.data.splits import resolve_split
from causalrm.devices import cpu_threads
from causalrm.nuisances import mixed
from causalrm.nuisances.container import Nuisances, StageFn
from causalrm.nuisances.signal import _feedback_kind, fit_signal


def fit_nuisances(
    log: pl.DataFrame,
    X: np.ndarray | None,
    config: FitConfig,
    *,
    methods: list[str] | tuple[str, ...] | None = None,
    split: np.ndarray | None = None,
    on_stage: StageFn | None = None,
    reuse: Nuisances | None = None,
) -> Nuisances:
    """Fit the nuisances that ``methods`` (default ``[config.method]``) need, once, on the train + val rows.

    ``X``: embeddings of *every* row of ``log`` (only the train + val rows are read), or of the train + val rows
    alone (``len(X) == number of those rows``), or None (embedded with ``config.embedder``). ``reuse``: nuisances
    fitted earlier on this log; their propensity is taken instead of cross-fitting it again when it was fitted on
    the same rows and split with the same settings (``propensity_settings``), e.g. the app's Propensity tab's for its
    Noise tab and training job.
    """
    config.validate()
    with cpu_threads(config.num_threads):
        if _feedback_kind(log) == MIXED:
            methods = [config.method] if methods is None else list(methods)
            split = resolve_split(log, val_fraction=config.val_fraction, seed=config.seed) if split is None else split
            return mixed.fit_nuisances(log, X, config, methods=methods, split=split, on_stage=on_stage)
        return fit_signal(log, X, config, methods=methods, split=split, on_stage=on_stage, reuse=reuse)


