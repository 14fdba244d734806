"""``CausalRM``: a scikit-learn-style estimator of reward models from impression logs.

    from causalrm import CausalRM, load_reward_model

    rm = CausalRM(method="causalrm-ips", max_epochs=200, seed=0).fit("log.parquet")   # or a polars DataFrame
    rm.score(["How do I sort a list?"], ["Use sorted(xs)."])   # reward logits z
    rm.save("runs/ips")                                         # a run directory
    load_reward_model("runs/ips").score(...)                    # the same scores

Conventions (scikit-learn's): the constructor takes keyword arguments only and stores them unchanged; they are the
fields of :class:`causalrm.pipeline.FitConfig` (one source: the constructor's signature, the defaults, ``get_params``
/ ``set_params`` and ``sklearn.base.clone`` are all derived from it), validated in :meth:`CausalRM.fit`, which
returns ``self``. What fitting learned has a trailing underscore: ``config_`` (the validated configuration; with
``method="auto"`` the chosen method's), ``method_``, ``backbone_``, ``history_``, ``nuisances_``, ``split_``,
``learned_`` (the learning gate), ``choice_`` and ``candidates_`` (``auto``), ``seconds_``, ``result_`` (the
:class:`~causalrm.pipeline.FitResult`).

Scoring: :meth:`CausalRM.score` takes texts (strings or ``{"role", "content"}`` message lists), embeds them with the
configured embedder and returns reward logits; it is the scoring path of ``causalrm.load_reward_model`` (the
in-memory model is the one a saved run loads as). :meth:`CausalRM.score_log` scores the rows of a log (``X``:
precomputed embeddings). :meth:`CausalRM.save` writes a run directory (``causalrm.runs.save_run``).

``CausalRM`` is what ``causalrm fit`` runs (the command line is its constructor's parameters, ``FitConfig``'s field
metadata, plus where the log and the run live); several methods on shared nuisances are
``causalrm.orchestrate.fit_methods``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator

from causalrm.errors import InputError
from causalrm.feedback_kinds import as_impressions
from causalrm.config import FitConfig
from causalrm.nuisances import Nuisances
from causalrm.pipeline import FitResult, fit_log


def _param_defaults() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(FitConfig):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else None  # None: the field's factory
    return out


_PARAMS = _param_defaults()


class CausalRM(BaseEstimator):
    """A reward model fitted on a logged, noisy, selection-biased feedback log (module docstring).

    Parameters: the fields of :class:`causalrm.pipeline.FitConfig` (``method``, ``max_epochs``, ``seed``, ...), by
    keyword, with its defaults; ``backbone_options=None`` stands for ``{}``.
    """

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise TypeError(f"CausalRM got unknown parameter(s) {unknown}; the parameters are FitConfig's fields")
        for name, default in _PARAMS.items():
            setattr(self, name, params.get(name, default))

    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
           for name, default in _PARAMS.items()])

    # ------------------------------------------------------------------------------------------------------------
    def fit_config(self) -> FitConfig:
        """The validated :class:`FitConfig` of the current parameters."""
        params = self.get_params(deep=False)
        if params.get("backbone_options") is None:
            params["backbone_options"] = {}
        try:
            return FitConfig(**params).validate()
        except TypeError as err:
            raise InputError(f"invalid CausalRM parameter: {err}") from err

    def fit(self, log: pl.DataFrame | str | os.PathLike, X: np.ndarray | str | os.PathLike | None = None, *,
            nuisances: Nuisances | None = None, progress: Callable[[int, int, float, float], None] | None = None,
            on_stage: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None,
            ) -> CausalRM:
        """Fit on ``log`` (a polars DataFrame in the canonical schema, or a log file for ``causalrm.io.read_log``).

        ``X``: embeddings aligned with the log's rows (an array, or a ``.safetensors`` / ``.npy`` file from
        ``causalrm embed``), or None to embed with ``embedder``. ``nuisances``: reuse fitted nuisances of this log
        (``pipeline.fit_nuisances`` / ``orchestrate.shared_nuisances``). ``progress``, ``on_stage``,
        ``should_stop``: as in ``pipeline.fit_log``. Returns ``self``.
        """
        config = self.fit_config()
        source = None
        if isinstance(log, (str, os.PathLike)):
            from causalrm.io import read_log

            source = str(log)
            log = read_log(log)
        if not isinstance(log, pl.DataFrame):
            raise InputError(f"log must be a polars DataFrame or a log file, got {type(log).__name__}")
        log = as_impressions(log)  # implicit feedback (copies, clicks): every impression observed
        if isinstance(X, (str, os.PathLike)):
            from causalrm.embeddings import read_embeddings

            X, _ = read_embeddings(X, log)
        result = fit_log(log, X, config, progress=progress, should_stop=should_stop, nuisances=nuisances,
                         on_stage=on_stage)
        self._set_result(result, log, X, source)
        return self

    def _set_result(self, result: FitResult, log: pl.DataFrame, X: np.ndarray | None, source: str | None) -> None:
        self.result_ = result
        self.config_ = result.config
        self.method_ = result.config.method
        self.backbone_ = result.backbone
        self.history_ = result.history
        self.nuisances_ = result.nuisances
        self.split_ = result.split
        self.learned_ = result.learned
        self.choice_ = result.choice
        self.candidates_ = result.candidates
        self.seconds_ = result.seconds
        self.source_ = source
        self._fit_data = (log, X)
        self._reward_model = None

    @classmethod
    def from_result(cls, result: FitResult, log: pl.DataFrame, X: np.ndarray | None = None, *,
                    source: str | None = None) -> CausalRM:
        """A fitted estimator around a :class:`FitResult` of ``log`` (e.g. one of ``orchestrate.fit_methods``'
        results); its parameters are the result's configuration."""
        params = {f.name: getattr(result.config, f.name) for f in dataclasses.fields(FitConfig)}
        est = cls(**params)
        est._set_result(result, log, X, source)
        return est

    # ------------------------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "result_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this CausalRM is not fitted yet; call fit(log) first")

    @property
    def reward_model_(self) -> Any:
        """The fitted model as a ``causalrm.export.RewardModel`` (what ``load_reward_model`` returns for a run)."""
        self._check_fitted()
        if getattr(self, "_reward_model", None) is None:
            from causalrm.export import reward_model_of

            self._reward_model = reward_model_of(self.backbone_, self.config_, device=self.config_.device)
        return self._reward_model

    def score(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """Reward logits z (float32) of each (prompt, response): strings or ``{"role", "content"}`` message lists.

        Not scikit-learn's ``score(X, y)`` (a metric): a reward model's score is its reward, as in TRL and
        ``causalrm.load_reward_model``."""
        return self.reward_model_.score(prompts, responses)

    def score_log(self, log: pl.DataFrame | str | os.PathLike, X: np.ndarray | None = None) -> np.ndarray:
        """Reward logits of every row of ``log`` (a DataFrame or a log file); ``X`` None = embed the rows."""
        self._check_fitted()
        if isinstance(log, (str, os.PathLike)):
            from causalrm.io import read_log

            log = read_log(log)
        return self.result_.score(log, X)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model as a run directory (``causalrm.runs.save_run``: config, weights, metrics,
        nuisances, the fitted log scored); ``causalrm.load_reward_model(path)`` scores as :meth:`score` does."""
        self._check_fitted()
        from causalrm.runs import save_run

        log, X = self._fit_data
        return save_run(self.result_, log, X, path, source=self.source_)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_reward_model", None)
        return state


__all__ = ["CausalRM"]
