"""Propensity p(x) = P(o = 1 | x): a cross-fitted classifier of "this impression received feedback".

Notation as in docs/ARCHITECTURE.md: ``X`` (n, d) representations, ``observed`` o in {0, 1}, ``propensity`` p,
``clip`` the floor applied when p_hat is used as a weight: ``weights_ = max(p_hat, clip)`` (the losses use
o / weights_).

Estimator (the CausalRM paper, arXiv 2603.18736, Sec. "nuisance estimates"): an MLP d -> 256 -> 64 -> 1 with LeakyReLU
and a sigmoid output trained on o over *all* impressions, or a standardised logistic regression whose L2 strength C is
chosen by 3-fold cross-validated log loss. ``model="auto"`` (the pipeline's default) cross-fits both and keeps the one
with the lower out-of-fold log loss (a proper scoring rule, so it rewards calibration, which is what a weight 1/p
needs); the other is kept as ``alternative_propensity_``, a second opinion the ``auto`` method selection uses as the
propensity's model uncertainty (``causalrm.workflows.selection``). Cross-fitting: the rows are split
into ``n_folds`` stratified folds and row i's p_hat comes from the model trained on the other folds, so no row's
propensity comes from a model that saw its own o (an in-sample p_hat is overconfident: observed rows get p_hat near 1,
unobserved near 0, and the IPS weights 1/p_hat collapse towards 1 exactly where they matter).
Logged propensities, where the product has them, are used as they are (diagnostics still computed).
The MLP classifier lives in ``causalrm.nuisances.binary_mlp`` and the input checks in ``causalrm.nuisances.checks``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from causalrm.devices import resolve_device
from causalrm.errors import InputError
from causalrm.nuisances.binary_mlp import _MLP, predict_mlp, train_binary_mlp
from causalrm.nuisances.checks import _check_clip, _shape_checked, check_binary, check_features, check_propensity

#: propensity model kinds; "auto" cross-fits the other two and keeps the lower out-of-fold log loss
MODELS: tuple[str, ...] = ("auto", "mlp", "logistic")
FEEDBACK_ONLY_MESSAGE = (
    "feedback-only log: propensities cannot be learned; add logged_propensity or include the impressions without "
    "feedback"
)


# ------------------------------------------------------------------------------------------------- diagnostics
@dataclass
class PropensityDiagnostics:
    """Plain data for reports and plots (``to_dict()`` is JSON-serialisable).

    fraction_clipped: share of all rows with p_hat < clip; fraction_clipped_observed: the same among observed rows
    (where the floor actually changes a weight). auc: ROC AUC of p_hat against o (None when o is constant).
    ece: expected calibration error over ``n_bins`` equal-width bins, sum_b (n_b / n) |mean p_hat_b - mean o_b|.
    brier: mean (p_hat - o)^2. ess: effective sample size (sum w)^2 / sum w^2 over observed rows with
    w = 1 / max(p_hat, clip) (Kish); ess_fraction = ess / n_observed (1 = uniform weights). max_weight: 1 / min
    clipped p_hat over observed rows. auc_ci: 95% interval of the AUC
(``causalrm.nuisances.gates.auc_interval``); when it contains 0.5, no selection on x is detectable. Histograms: counts of p_hat on ``hist_edges`` for observed / unobserved rows.
    Calibration curve: per non-empty bin, mean p_hat vs observed frequency and count.
    """

    source: str
    n_rows: int
    n_observed: int
    clip: float
    fraction_clipped: float
    fraction_clipped_observed: float
    auc: float | None
    auc_ci: tuple[float, float] | None
    ece: float
    brier: float
    ess: float
    ess_fraction: float
    max_weight: float
    hist_edges: list[float]
    hist_observed: list[int]
    hist_unobserved: list[int]
    calibration_predicted: list[float]
    calibration_observed: list[float]
    calibration_count: list[int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """sum_b (n_b / n) |mean(prob_b) - mean(y_b)| over equal-width bins on [0, 1]."""
    pred, obs, count = calibration_curve(prob, y, n_bins)
    n = max(int(np.sum(count)), 1)
    return float(sum(c / n * abs(p - o) for p, o, c in zip(pred, obs, count)))


def calibration_curve(prob: np.ndarray, y: np.ndarray, n_bins: int = 10) -> tuple[list[float], list[float], list[int]]:
    """(mean predicted, observed frequency, count) for each non-empty equal-width bin on [0, 1]."""
    prob = np.asarray(prob, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    idx = np.clip((prob * n_bins).astype(int), 0, n_bins - 1)
    pred, obs, count = [], [], []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            pred.append(float(prob[m].mean()))
            obs.append(float(y[m].mean()))
            count.append(int(m.sum()))
    return pred, obs, count


def log_loss_gap(o: np.ndarray, p_best: np.ndarray, p_other: np.ndarray, z: float = 1.96
                 ) -> tuple[float, tuple[float, float]]:
    """Mean per-row log-loss excess of ``p_other`` over ``p_best`` on the labels o, with a normal 95% interval
    (paired over rows): an interval that reaches 0 means the data cannot tell the two propensity models apart."""
    eps = 1e-12

    def per_row(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, eps, 1 - eps)
        return -(o * np.log(p) + (1 - o) * np.log(1 - p))

    d = per_row(np.asarray(p_other, dtype=np.float64)) - per_row(np.asarray(p_best, dtype=np.float64))
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.inf
    gap = float(d.mean())
    return gap, (gap - z * se, gap + z * se)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (0 for no weights)."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def propensity_diagnostics(
    propensity: np.ndarray, observed: np.ndarray, clip: float, *, source: str = "", n_bins: int = 10
) -> PropensityDiagnostics:
    """Diagnostics of a propensity vector (unclipped p_hat) against the observation indicator."""
    p = np.asarray(propensity, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    clip = _check_clip(clip)
    obs = o == 1
    w = 1.0 / np.maximum(p[obs], clip)
    ess = effective_sample_size(w)
    auc = float(roc_auc_score(o, p)) if 0 < obs.sum() < len(o) else None
    from causalrm.nuisances.gates import auc_interval

    auc_ci = auc_interval(auc, int(obs.sum()), int(len(o) - obs.sum())) if auc is not None else None
    edges = np.linspace(0.0, 1.0, 21)
    pred, freq, count = calibration_curve(p, o, n_bins)
    n_obs = int(obs.sum())
    diag = PropensityDiagnostics(
        source=source,
        n_rows=int(len(p)),
        n_observed=n_obs,
        clip=clip,
        fraction_clipped=float(np.mean(p < clip)),
        fraction_clipped_observed=float(np.mean(p[obs] < clip)) if n_obs else 0.0,
        auc=auc,
        auc_ci=auc_ci,
        ece=expected_calibration_error(p, o, n_bins),
        brier=float(np.mean((p - o) ** 2)),
        ess=ess,
        ess_fraction=ess / n_obs if n_obs else 0.0,
        max_weight=float(w.max()) if n_obs else 0.0,
        hist_edges=[float(e) for e in edges],
        hist_observed=[int(c) for c in np.histogram(p[obs], bins=edges)[0]],
        hist_unobserved=[int(c) for c in np.histogram(p[~obs], bins=edges)[0]],
        calibration_predicted=pred,
        calibration_observed=freq,
        calibration_count=count,
    )
    if n_obs and diag.fraction_clipped_observed > 0.25:
        diag.warnings.append(
            f"{diag.fraction_clipped_observed:.0%} of observed rows have p_hat below the clip {clip:g}: their weights "
            "are capped, which biases IPS/DR towards the naive estimate; consider a lower clip"
        )
    if auc is not None and auc > 0.95:
        diag.warnings.append(
            f"propensity AUC {auc:.3f}: observation is nearly deterministic given x, overlap is weak and the weights "
            "will be extreme"
        )
    if n_obs and diag.ess_fraction < 0.1:
        diag.warnings.append(
            f"effective sample size {ess:.0f} is under 10% of the {n_obs} observed rows: estimates will be noisy"
        )
    return diag


def clip_report(propensity: Any, clip: float, *, observed: Any = None) -> dict[str, Any]:
    """What a floor ``clip`` does to a propensity vector (the app's slider): plain JSON-serialisable dict.

    Keys: clip, n_rows, n_clipped (rows with p < clip), fraction_clipped, max_weight (1 / max(min p, clip)), message;
    with ``observed``: n_observed, n_observed_clipped, fraction_observed_clipped, ess and ess_fraction of the clipped
    weights over observed rows.
    """
    p = check_propensity(propensity, name="propensity")
    clip = _check_clip(clip)
    n_clipped = int(np.sum(p < clip))
    out: dict[str, Any] = {
        "clip": clip,
        "n_rows": int(len(p)),
        "n_clipped": n_clipped,
        "fraction_clipped": n_clipped / len(p),
        "max_weight": float(1.0 / max(float(p.min()), clip)),
    }
    msg = f"clip {clip:g} raises {n_clipped} of {len(p)} propensities ({out['fraction_clipped']:.1%})"
    if observed is not None:
        o = check_binary(observed, "observed", len(p))
        obs = o == 1
        n_oc = int(np.sum(p[obs] < clip))
        w = 1.0 / np.maximum(p[obs], clip)
        ess = effective_sample_size(w)
        out.update(
            n_observed=int(obs.sum()),
            n_observed_clipped=n_oc,
            fraction_observed_clipped=n_oc / max(int(obs.sum()), 1),
            max_weight=float(w.max()) if obs.any() else 1.0,
            ess=ess,
            ess_fraction=ess / max(int(obs.sum()), 1),
        )
        msg += f"; {n_oc} of {int(obs.sum())} observed rows get a capped weight (max weight {out['max_weight']:.1f})"
    out["message"] = msg
    return out


# ------------------------------------------------------------------------------------------------- the estimator
class PropensityModel(BaseEstimator):
    """Cross-fitted propensity p_hat(x) = P(o = 1 | x) with diagnostics.

    p_hat_i = f_{-k(i)}(x_i), where f_{-k} is trained on all folds but row i's fold k(i) (cross-fitting), and f is
    an MLP (``hidden``, LeakyReLU, sigmoid output, log loss, early stopping on an inner 10% split), a standardised
    logistic regression (``model="logistic"``, L2 with ``C``; ``C="cv"`` chooses it once, by 3-fold cross-validated
    log loss over ``causalrm.nuisances.proxy.CS``), or ``model="auto"``: both, keeping the lower out-of-fold log loss. ``weights_ = max(p_hat, clip)``: the losses use o /
    weights_. With ``logged_propensity`` the product's own probabilities are used directly (no model is fitted).
    ``predict_proba`` on new rows averages the ``n_folds`` fold models (no extra refit; each saw (k-1)/k of the rows).

    Fitted attributes: propensity_ (n,) unclipped p_hat, weights_ (n,), diagnostics_ (PropensityDiagnostics),
    models_ (fold models; empty with logged propensities), n_features_in_, source_, model_ (the model kind used),
    C_ (logistic), selection_ (``auto``: out-of-fold log loss of each candidate and the choice; else None),
    alternative_propensity_ (``auto``: the runner-up's cross-fitted p_hat while its out-of-fold log loss is within the
    95% interval of the chosen one's, ``log_loss_gap``; else None), alternative_weights_ (its clipped form).

    ``max_rows`` (large logs): with more rows than this, the fold models are fitted on a seeded subsample of
    ``max_rows`` rows stratified by o (``causalrm.data.rowmatrix.subsample``, gathered by index: a memory-mapped ``X`` is
    never copied whole); subsampled rows get their out-of-fold p_hat, every other row the mean of the fold models
    (out of sample for all of them), predicted in chunks. The model choice (``auto``) compares out-of-fold log loss
    on the subsample. ``fit_rows_`` records the rows used (None = all).
    """

    def __init__(
        self,
        *,
        model: str = "mlp",
        hidden: tuple[int, ...] = (256, 64),
        n_folds: int = 5,
        clip: float = 0.1,
        max_epochs: int = 100,
        patience: int = 5,
        lr: float = 1e-3,
        batch_size: int = 1024,
        loss: str = "bce",
        C: float | str = "cv",
        random_state: int = 0,
        device: str = "cpu",
        max_rows: int | None = None,
    ) -> None:
        self.max_rows = max_rows
        self.model = model
        self.hidden = hidden
        self.n_folds = n_folds
        self.clip = clip
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr = lr
        self.batch_size = batch_size
        self.loss = loss
        self.C = C
        self.random_state = random_state
        self.device = device

    def _check_params(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"propensity model {self.model!r} is unknown: choose one of {', '.join(MODELS)}")
        if self.C != "cv" and not (isinstance(self.C, (int, float)) and self.C > 0):
            raise InputError(f"propensity C must be a positive number or 'cv', got {self.C!r}")
        if self.loss not in ("bce", "mse"):
            raise InputError(f"propensity loss {self.loss!r} is unknown: choose 'bce' or 'mse'")
        if not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise InputError(f"n_folds must be an integer >= 2 for cross-fitting, got {self.n_folds!r}")
        _check_clip(self.clip)
        if int(self.max_epochs) < 1 or int(self.patience) < 1:
            raise InputError("max_epochs and patience must be positive integers")

    def _fit_one(self, kind: str, X: np.ndarray, o: np.ndarray, seed: int) -> Any:
        if kind == "logistic":
            est = make_pipeline(StandardScaler(), LogisticRegression(C=self.C_, max_iter=2000))
            return est.fit(X, o)
        return train_binary_mlp(
            X,
            o,
            hidden=tuple(self.hidden),
            loss=self.loss,
            lr=self.lr,
            batch_size=int(self.batch_size),
            max_epochs=int(self.max_epochs),
            patience=int(self.patience),
            random_state=seed,
            device=str(resolve_device(self.device)),
        )

    def _predict_one(self, model: Any, X: np.ndarray) -> np.ndarray:
        if not isinstance(model, _MLP):
            return model.predict_proba(X)[:, 1].astype(np.float64)
        return predict_mlp(model, X)

    def fit(self, X: Any, observed: Any, logged_propensity: Any = None) -> PropensityModel:
        """Fit on all impressions; ``observed`` is o (0/1), ``logged_propensity`` optional (n,) in (0, 1]."""
        self._check_params()
        self.model_, self.C_ = self.model, None
        self.selection_: dict[str, Any] | None = None
        self.fit_rows_: np.ndarray | None = None
        self.alternative_propensity_: np.ndarray | None = None
        o = check_binary(observed, "observed")
        n = len(o)
        n_obs = int(o.sum())
        if n_obs == 0:
            raise InputError("no row has feedback (observed is all 0): there is nothing to learn from")
        if logged_propensity is not None:
            p = check_propensity(logged_propensity, n=n)
            if X is not None:
                self.n_features_in_ = _shape_checked(X, n)[1]
            self.models_: list[Any] = []
            self.source_ = "logged"
        else:
            if n_obs == n:
                raise InputError(FEEDBACK_ONLY_MESSAGE)
            if X is None:
                raise InputError("X (the embeddings) is required to learn propensities")
            from causalrm.data.rowmatrix import is_lazy, subsample, take_rows

            self.fit_rows_ = subsample(n, self.max_rows, self.random_state, stratify=o)
            o_all = o
            if self.fit_rows_ is not None:
                Xa = check_features(take_rows(X, self.fit_rows_), len(self.fit_rows_))
                o = o_all[self.fit_rows_]
                n_obs = int(o.sum())
            else:
                Xa = check_features(take_rows(X) if is_lazy(X) else X, n)
            self.n_features_in_ = Xa.shape[1]
            minority = min(n_obs, len(o) - n_obs)
            if minority < self.n_folds:
                raise InputError(
                    f"only {minority} rows in the smaller of observed/unobserved: need at least n_folds={self.n_folds}"
                    " to cross-fit propensities; lower n_folds or supply logged_propensity"
                )
            kinds = ("logistic", "mlp") if self.model == "auto" else (self.model,)
            if "logistic" in kinds:
                from causalrm.nuisances.proxy import choose_c

                with threadpool_limits(limits=1, user_api="blas"):
                    Xs = StandardScaler().fit_transform(Xa)
                    self.C_ = choose_c(Xs, o, random_state=self.random_state) if self.C == "cv" else float(self.C)
            fits = {kind: self._cross_fit(kind, Xa, o) for kind in kinds}
            losses = {kind: float(log_loss(o, fits[kind][0], labels=[0, 1])) for kind in kinds}
            if self.fit_rows_ is not None:  # every other row: the fold models' mean, predicted chunk by chunk
                del Xa
                fits = {kind: (self._extend(p_sub, models, X, n), models) for kind, (p_sub, models) in fits.items()}
                o = o_all
            self.model_ = min(kinds, key=losses.__getitem__)
            p, self.models_ = fits[self.model_]
            if self.model == "auto":
                other = next(k for k in kinds if k != self.model_)
                gap, (lo, hi) = log_loss_gap(o, p, fits[other][0])
                self.selection_ = {"criterion": "out-of-fold log loss", "log_loss": losses, "chosen": self.model_,
                                   "runner_up_gap": gap, "runner_up_gap_ci": [lo, hi],
                                   "runner_up_plausible": bool(lo <= 0)}
                # the runner-up is a second opinion only while the data cannot tell it from the chosen model
                self.alternative_propensity_ = fits[other][0] if lo <= 0 else None
            self.source_ = f"cross-fitted {self.model_} ({self.n_folds} folds)"
        self.propensity_ = p
        # the one place p_hat is clipped: the losses receive these (Nuisances.propensity_clipped)
        self.weights_ = np.maximum(np.asarray(p, dtype=np.float64), float(self.clip))
        alt = self.alternative_propensity_
        self.alternative_weights_ = None if alt is None else np.maximum(np.asarray(alt, dtype=np.float64),
                                                                         float(self.clip))
        self.diagnostics_ = propensity_diagnostics(p, o, float(self.clip), source=self.source_)
        return self

    def _extend(self, p_sub: np.ndarray, models: list[Any], X: Any, n: int) -> np.ndarray:
        """p_hat of all ``n`` rows: ``p_sub`` on ``fit_rows_``, the fold models' mean on the others (in chunks)."""
        from causalrm.data.rowmatrix import RowView, predict_blocks

        rest = np.setdiff1d(np.arange(n), self.fit_rows_, assume_unique=True)
        p = np.empty(n, dtype=np.float64)
        p[self.fit_rows_] = p_sub
        if rest.size:
            p[rest] = predict_blocks(lambda block: self._fold_mean(models, block), RowView(X, rest))
        return p

    def _fold_mean(self, models: list[Any], Xa: np.ndarray) -> np.ndarray:
        """p_hat of the rows ``Xa``: the fold models' mean prediction, kept strictly positive (the floor clip acts
        later)."""
        return np.clip(np.mean([self._predict_one(m, Xa) for m in models], axis=0), 1e-6, 1.0)

    def _cross_fit(self, kind: str, Xa: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """Out-of-fold p_hat of every row from ``kind`` models fitted on the other folds, and the fold models."""
        p = np.empty(len(o), dtype=np.float64)
        models = []
        folds = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.random_state)
        for k, (tr, te) in enumerate(folds.split(Xa, o)):
            m = self._fit_one(kind, Xa[tr], o[tr], self.random_state + k)
            p[te] = self._predict_one(m, Xa[te])
            models.append(m)
        # a sigmoid output can underflow to exactly 0: keep p_hat strictly positive (the floor clip acts later)
        return np.clip(p, 1e-6, 1.0), models

    def predict_proba(self, X: Any) -> np.ndarray:
        """p_hat(x) for new rows: the mean of the fold models' predictions (unclipped), shape (n,)."""
        check_is_fitted(self, "propensity_")
        if not self.models_:
            raise InputError(
                "this PropensityModel used logged propensities: it has no model for new rows; fit it without "
                "logged_propensity to predict"
            )
        from causalrm.data.rowmatrix import is_lazy, predict_blocks

        lazy = is_lazy(X)  # memory-mapped: predicted chunk by chunk, never copied whole
        Xa = X if lazy else check_features(X)
        if np.shape(Xa)[1] != self.n_features_in_:
            raise InputError(f"X has {np.shape(Xa)[1]} features but the model was fitted on {self.n_features_in_}")
        if lazy:
            return predict_blocks(lambda block: self._fold_mean(self.models_, check_features(block)), Xa)
        return self._fold_mean(self.models_, Xa)

    def clip_report(self, clip: float | None = None, observed: Any = None) -> dict[str, Any]:
        """``clip_report`` of the fitted p_hat (default: this model's clip)."""
        check_is_fitted(self, "propensity_")
        return clip_report(self.propensity_, self.clip if clip is None else clip, observed=observed)


__all__ = [
    "FEEDBACK_ONLY_MESSAGE",
    "MODELS",
    "PropensityDiagnostics",
    "PropensityModel",
    "calibration_curve",
    "clip_report",
    "effective_sample_size",
    "expected_calibration_error",
    "log_loss_gap",
    "propensity_diagnostics",
    "train_binary_mlp",
]
