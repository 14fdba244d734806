"""``CausalRM``: a scikit-learn-style estimator of reward models from impression logs.

    from causalrm import CausalRM, load_reward_model

    rm = CausalRM(method="causalrm-ips", max_epochs=200, seed=0).fit("log.parquet")   # or a polars DataFrame
    rm.score_texts(["How do I sort a list?"], ["Use sorted(xs)."])   # reward logits z
    rm.predict(log)                                                   # reward logits z of every row of a log
    rm.score(log)                  # minus the debiased validation estimate on the log's rows (higher is better)
    rm.save("runs/ips")                                               # a run directory
    load_reward_model("runs/ips").score(...)                          # the same rewards as score_texts

Conventions (scikit-learn's): the constructor takes keyword arguments only and stores them unchanged; they are the
fields of :class:`causalrm.config.FitConfig` (one source: the constructor's signature, the defaults, ``get_params``
/ ``set_params`` and ``sklearn.base.clone`` are all derived from it), validated in :meth:`CausalRM.fit`, which
returns ``self``. What fitting learned has a trailing underscore: ``config_`` (the validated configuration; with
``method="auto"`` the chosen method's), ``method_``, ``backbone_``, ``history_``, ``nuisances_``, ``split_``,
``learned_`` (the learning gate), ``choice_`` and ``candidates_`` (``auto``), ``seconds_``, ``result_`` (the
:class:`~causalrm.workflows.pipeline.FitResult`).

Rewards are reward logits z everywhere (the predicted preference is sigma(z)). :meth:`CausalRM.predict` (scikit-learn's
name) and :meth:`CausalRM.score_log` give the rewards of a log's rows (``X``: precomputed embeddings);
:meth:`CausalRM.score_texts` takes texts (strings or ``{"role", "content"}`` message lists), embeds them with the
configured embedder and is the scoring path of ``causalrm.load_reward_model`` (``RewardModel.score``: the in-memory
model is the one a saved run loads as). :meth:`CausalRM.score` is scikit-learn's higher-is-better score and needs no
clean labels (its docstring). :meth:`CausalRM.save` writes a run directory (``causalrm.workflows.runs.save_run``).

scikit-learn's model selection works on an impression log (a polars DataFrame; scikit-learn indexes its rows):
``GridSearchCV(CausalRM(method="naive"), {"max_epochs": [2, 5]}, cv=GroupKFold(2)).fit(log, groups=prompts)``,
``cross_val_score(CausalRM(...), log, groups=prompts, cv=GroupKFold(2))``. Group the folds by prompt so that no
prompt's responses are split between a fit and its score. Each fold's fit keeps the log's ``split`` column: its
``train`` / ``val`` rows keep their roles, its ``test`` rows are never read, and where the fold has no ``val`` rows a
seeded share of its prompt groups (``val_fraction``) becomes the validation split for early stopping
(``causalrm.data.splits.resolve_split``). Each fold embeds its rows with ``embedder`` (the shipped vectors of the bundled
datasets' texts are read from the cache), since ``X`` is not split with the log.

``CausalRM`` is what ``causalrm fit`` runs (the command line is its constructor's parameters, ``FitConfig``'s field
metadata, plus where the log and the run live); several methods on shared nuisances are
``causalrm.workflows.orchestrate.fit_methods``.
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

from causalrm.config import FitConfig
from causalrm.data.feedback_kinds import as_impressions
from causalrm.errors import InputError
from causalrm.nuisances.container import Nuisances
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.pipeline import FitResult


def _param_defaults() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(FitConfig):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else None  # None: the field's factory
    return out


_PARAMS = _param_defaults()


def _check_no_target(y: Any) -> None:
    if y is not None:
        raise InputError("CausalRM learns from the log's feedback column and takes no y; pass the log alone "
                         "(embeddings by keyword: X=...)")


def _read(log: pl.DataFrame | str | os.PathLike) -> pl.DataFrame:
    """The log as impressions: a file read with ``causalrm.data.io.readers.read_log``; implicit feedback (copies, clicks) with
    every impression observed (``feedback_kinds.as_impressions``)."""
    if isinstance(log, (str, os.PathLike)):
        from causalrm.data.io.readers import read_log

        log = read_log(log)
    if not isinstance(log, pl.DataFrame):
        raise InputError(f"log must be a polars DataFrame or a log file, got {type(log).__name__}")
    return as_impressions(log)


class CausalRM(BaseEstimator):
    """A reward model fitted on a logged, noisy, selection-biased feedback log (module docstring).

    Parameters: the fields of :class:`causalrm.config.FitConfig` (``method``, ``max_epochs``, ``seed``, ...), by
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

    def fit(self, log: pl.DataFrame | str | os.PathLike, y: None = None, *,
            X: np.ndarray | str | os.PathLike | None = None, nuisances: Nuisances | None = None,
            progress: Callable[[int, int, float, float], None] | None = None,
            on_stage: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None,
            ) -> CausalRM:
        """Fit on ``log`` (a polars DataFrame in the canonical schema, or a log file for ``causalrm.data.io.readers.read_log``).

        ``y``: scikit-learn's target, always None (the labels are the log's ``feedback`` column). The rows' roles come
        from the log's ``split`` column (``causalrm.data.splits.resolve_split``: test rows never read, val rows drawn by
        prompt group where none are marked).
        ``X``: embeddings aligned with the log's rows (an array, or a ``.safetensors`` / ``.npy`` file from
        ``causalrm embed``), or None to embed with ``embedder``. ``nuisances``: reuse fitted nuisances of this log
        (``nuisances.fit.fit_nuisances`` / ``orchestrate.shared_nuisances``). ``progress``, ``on_stage``,
        ``should_stop``: as in ``orchestrate.fit_log``. Returns ``self``.
        """
        _check_no_target(y)
        config = self.fit_config()
        source = str(log) if isinstance(log, (str, os.PathLike)) else None
        log = _read(log)
        if isinstance(X, (str, os.PathLike)):
            from causalrm.embeddings.files import read_embeddings

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
        """The fitted model as a ``causalrm.export.reward_models.RewardModel`` (what ``load_reward_model`` returns for a run)."""
        self._check_fitted()
        if getattr(self, "_reward_model", None) is None:
            from causalrm.export.reward_models import reward_model_of

            self._reward_model = reward_model_of(self.backbone_, self.config_, device=self.config_.device)
        return self._reward_model

    def score_texts(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """Reward logits z (float32) of each (prompt, response): strings or ``{"role", "content"}`` message lists
        (``load_reward_model(run).score`` gives the same of a saved run)."""
        return self.reward_model_.score(prompts, responses)

    def score_log(self, log: pl.DataFrame | str | os.PathLike, X: np.ndarray | None = None) -> np.ndarray:
        """Reward logits of every row of ``log`` (a DataFrame or a log file); ``X`` None = embed the rows."""
        self._check_fitted()
        if isinstance(log, (str, os.PathLike)):
            from causalrm.data.io.readers import read_log

            log = read_log(log)
        return self.result_.score(log, X)

    def predict(self, log: pl.DataFrame | str | os.PathLike, X: np.ndarray | None = None) -> np.ndarray:
        """scikit-learn's name for :meth:`score_log`: one reward logit z per row of ``log`` (sigma(z) is the
        predicted preference)."""
        return self.score_log(log, X)

    def score(self, log: pl.DataFrame | str | os.PathLike, y: None = None, *, X: np.ndarray | None = None) -> float:
        """Higher is better, and no clean labels needed: minus the fitted method's own debiased validation estimate
        (the early-stopping criterion, ``config_.validation_method``) of the model on the rows of ``log``.

        Where those rows carry audited ``gold_label`` values, it is the audited estimate instead: minus the mean base
        loss (``base_loss``) of z against ``gold_label`` over the labelled rows, weighted by 1 /
        ``inclusion_probability`` (1 where the column is missing). Otherwise the nuisances the estimate needs (propensity, flip rates,
        pseudo-labels) are fitted on these rows with the fit's settings, so that models scored on the same log are
        compared on the same nuisances; a method without nuisances (naive) reads the observed feedback. Rows with
        ``split`` "test" are not read, as in :meth:`fit`. Values are comparable between models of one method (e.g. a
        grid over training options), not across methods (each estimates the risk its own way). ``y``: always None.
        """
        import torch

        from causalrm.data import schema
        from causalrm.estimators import losses
        from causalrm.estimators.base_losses import base_loss
        from causalrm.estimators.methods import get as get_spec
        from causalrm.nuisances.container import loss_inputs, needs_of
        from causalrm.nuisances.fit import fit_nuisances
        from causalrm.nuisances.flip_rates import design_columns

        _check_no_target(y)
        self._check_fitted()
        log = _read(log)
        split = (log[schema.SPLIT].cast(pl.String).fill_null("").to_numpy() if schema.SPLIT in log.columns
                 else np.full(log.height, "", dtype=object))
        rows = np.flatnonzero(split != schema.TEST)
        if rows.size == 0:
            raise InputError("score(log): every row has split 'test'; score reads the rows a fit reads (split train, "
                             "val or empty)")
        config = self.config_
        val_method = config.validation_method
        needs_X = self.backbone_.needs_embeddings or bool(needs_of(val_method) - {"true_label"})
        if X is None and needs_X:
            from causalrm.embeddings.embedder import Embedder, embed_log

            X = embed_log(log, Embedder(model=config.embedder, progress=False))
        z = self.result_.score(log, X)[rows]
        audit = design_columns(log, rows)
        gold = audit["gold_label"]
        if gold is not None and np.isfinite(gold).any():
            labelled = np.isfinite(gold)
            pi = audit["inclusion_probability"]
            w = np.ones(int(labelled.sum())) if pi is None else 1.0 / np.nan_to_num(pi[labelled], nan=1.0)
            loss = base_loss(torch.as_tensor(z[labelled], dtype=torch.float64),
                             torch.as_tensor(gold[labelled], dtype=torch.float64), config.base_loss)
            return -float(np.sum(w * loss.numpy()) / np.sum(w))
        roles = np.where(split == schema.TEST, schema.TEST, schema.TRAIN).astype(object)
        nuisances = fit_nuisances(log, X, config, methods=[val_method], split=roles)
        noise_aware = get_spec(val_method).noise_aware
        tcfg = config.train_config(rho01=nuisances.rho01 if noise_aware else 0.0,
                                   rho10=nuisances.rho10 if noise_aware else 0.0)
        inputs = loss_inputs(log, nuisances, val_method, np.ones(rows.size, dtype=bool))
        value = losses.estimate(val_method, torch.as_tensor(z, dtype=torch.float32), inputs, rho01=tcfg.rho01,
                                rho10=tcfg.rho10, base=tcfg.base_loss, nonneg=tcfg.nonneg)
        return -float(value)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model as a run directory (``causalrm.workflows.runs.save_run``: config, weights, metrics,
        nuisances, the fitted log scored); ``causalrm.load_reward_model(path)`` scores as :meth:`score_texts` does."""
        self._check_fitted()
        from causalrm.workflows.runs import save_run

        log, X = self._fit_data
        return save_run(self.result_, log, X, path, source=self.source_)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_reward_model", None)
        return state


__all__ = ["CausalRM"]
