# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Noise: flip rates, the surrogate loss and anchor estimation
#
# **What you will learn**
#
# - the class-conditional noise model ($\rho_{01}$, $\rho_{10}$) and the noise-corrected surrogate loss
#   $\tilde\ell$ of Natarajan et al. (2013);
# - why $\mathbb E[\tilde\ell(\hat r, r) \mid r^*] = \ell(\hat r, r^*)$, checked numerically with
#   `causalrm.estimators.losses` on a grid of logits, and why the default base loss is bounded (squared error on
#   $\sigma(z)$) rather than cross-entropy;
# - how flip rates are estimated from **anchor points** (`FlipRateEstimator`) and how that fails: an overfit
#   proxy, no anchors, and the choice of the quantile $q$;
# - the alternative: a small audited gold subset.
#
# `torch` is imported here only to hand tensors to `causalrm.estimators.losses`, whose functions take tensors.

# %%
import os

# Switches. CAUSALRM_FAST=1 (used in CI) shrinks epochs, seeds and bootstrap draws so the notebook runs in
# about a minute; unset it for the full version (a few minutes on a laptop CPU).
FAST = os.environ.get("CAUSALRM_FAST", "0") not in ("", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything needed is bundled; never download
# The models here are tiny: one thread is fastest and never oversubscribes a shared CPU (must be set before
# torch is first imported, hence here).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import plotly.express as px
import plotly.io as pio
import polars as pl
import torch

from causalrm.data.datasets import load_rated
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.estimators.losses import LossInputs, estimate
from causalrm.estimators.base_losses import base_loss, surrogate_bounds, surrogate_loss
from causalrm.evaluation.metrics import evaluate_scores, sigmoid
from causalrm.nuisances.flip_rates import FlipRateEstimator, anchor_rates
from causalrm.nuisances.proxy import ProxyModel, cross_fitted_proxy
from causalrm.simulation.simulate import simulate
from causalrm.config import FitConfig
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.teaching import error_bars, fit_flip_rates, setup_notebook

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. The noise model
#
# The logged feedback $r$ is a noisy copy of the true preference $r^*$, with flip probabilities that depend on
# the class only (not on $x$):
#
# $$\rho_{01} = P(r = 0 \mid r^* = 1), \qquad \rho_{10} = P(r = 1 \mid r^* = 0), \qquad
#   \rho_{01} + \rho_{10} < 1.$$
#
# The surrogate loss reweights the two pointwise losses $\ell(z, 1)$ and $\ell(z, 0)$ so that the noise cancels
# in expectation (with $D = 1 - \rho_{01} - \rho_{10}$):
#
# $$\tilde\ell(z, 1) = \frac{(1-\rho_{10})\,\ell(z, 1) - \rho_{01}\,\ell(z, 0)}{D}, \qquad
#   \tilde\ell(z, 0) = \frac{(1-\rho_{01})\,\ell(z, 0) - \rho_{10}\,\ell(z, 1)}{D}.$$
#
# Given $r^* = 1$, the feedback is 1 with probability $1-\rho_{01}$ and 0 with probability $\rho_{01}$, so
# $\mathbb E[\tilde\ell \mid r^*=1] = (1-\rho_{01})\tilde\ell(z,1) + \rho_{01}\tilde\ell(z,0)$; expand and the
# $\ell(z,0)$ terms cancel, leaving $\ell(z,1)$. Let us check it on a grid of logits, for both base losses.

# %%
RHO01, RHO10 = 0.2, 0.1
z = torch.linspace(-8, 8, 321, dtype=torch.float64)
ones, zeros = torch.ones_like(z), torch.zeros_like(z)
checks, curves = [], []
for base in ("mse", "bce"):
    clean1, clean0 = base_loss(z, ones, base), base_loss(z, zeros, base)
    sur1 = surrogate_loss(z, ones, RHO01, RHO10, base)   # l~(z, r=1)
    sur0 = surrogate_loss(z, zeros, RHO01, RHO10, base)  # l~(z, r=0)
    expect1 = (1 - RHO01) * sur1 + RHO01 * sur0          # E[l~ | r* = 1]
    expect0 = RHO10 * sur1 + (1 - RHO10) * sur0          # E[l~ | r* = 0]
    checks.append({"base": base,
                   "max |E[l~|r*=1] - l(z,1)|": float((expect1 - clean1).abs().max()),
                   "max |E[l~|r*=0] - l(z,0)|": float((expect0 - clean0).abs().max()),
                   "min l~ on the grid": float(torch.minimum(sur1, sur0).min())})
    for name, v in (("l(z,1) clean", clean1), ("l~(z,1) surrogate", sur1), ("E[l~ | r*=1]", expect1),
                    ("l(z,0) clean", clean0), ("l~(z,0) surrogate", sur0)):
        curves.append(pl.DataFrame({"z": z.numpy(), "loss": v.numpy(), "curve": name, "base": base}))
print("mse surrogate bounds:", tuple(round(b, 3) for b in surrogate_bounds(RHO01, RHO10)))
pl.DataFrame(checks)

# %%
fig = px.line(pl.concat(curves), x="z", y="loss", color="curve", facet_col="base",
              title="Clean loss, surrogate, and the surrogate's expectation (it overlaps the clean loss)")
fig.update_yaxes(matches=None, showticklabels=True)
fig.update_layout(height=420)
fig.show()

# %% [markdown]
# Both surrogates are unbiased, but look at their ranges. With **cross-entropy** (`bce`) the surrogate of an
# observed positive, $\tilde\ell(z, 1)$, falls without bound as $z$ grows: the term $-\rho_{01}\ell(z,0)/D$ is
# linear in $z$. A flexible model can then lower its training loss forever by pushing the logits of training rows
# to $\pm\infty$: the authors' own script reached a training loss of about $-3.6\cdot10^4$ while the validation
# loss exploded (METHOD.md, pitfall 1). With **squared error on $\sigma(z)$** (`mse`, the Brier score, the
# default) the surrogate stays within the bounds printed above.
#
# The same check with sampled feedback, through the estimators themselves: a fixed prediction vector, many rows,
# flips drawn with the rates above. `denoise` (the surrogate, uniform weights) matches the clean `oracle` loss;
# `naive` (the plain loss on noisy labels) does not. Then a model that has *memorised* the noisy feedback
# (logits ±10 matching $r$): the plain cross-entropy surrogate estimate goes negative, impossible for a true
# risk; the library's default guard for `bce` (a non-negative correction per class, Kiryo et al. 2017) holds it
# at zero or above. (With `mse` the surrogate estimate can also dip below zero, but never below the bound printed
# above, so no guard is needed.)

# %%
rng = np.random.default_rng(0)
n = 200_000
r_star = (rng.random(n) < 0.4).astype(float)
flip = rng.random(n) < np.where(r_star == 1, RHO01, RHO10)
r = np.where(flip, 1 - r_star, r_star)
inputs = LossInputs(feedback=r, observed=np.ones(n), propensity=np.ones(n), true_label=r_star).to()
logits = torch.as_tensor(rng.normal(0.0, 2.0, n), dtype=torch.float32)  # some fixed reward model
memorised = torch.as_tensor(np.where(r == 1, 10.0, -10.0), dtype=torch.float32)
rows = []
for base in ("mse", "bce"):
    for name, zz in (("random model", logits), ("memorised the feedback", memorised)):
        rows.append({"base": base, "predictions": name,
                     "oracle (clean)": float(estimate("oracle", zz, inputs, base=base)),
                     "naive": float(estimate("naive", zz, inputs, base=base)),
                     "denoise, plain": float(estimate("denoise", zz, inputs, rho01=RHO01, rho10=RHO10,
                                                      base=base, nonneg=False)),
                     "denoise, default": float(estimate("denoise", zz, inputs, rho01=RHO01, rho10=RHO10,
                                                        base=base))})
pl.DataFrame(rows)

# %% [markdown]
# ## 2. Estimating the flip rates from anchor points
#
# In a real log $\rho_{01}$ and $\rho_{10}$ are unknown. Under class-conditional noise the noisy posterior is an
# affine image of the clean one:
#
# $$P(r=1 \mid x) = \rho_{10} + (1 - \rho_{01} - \rho_{10})\,P(r^*=1 \mid x).$$
#
# If some responses are almost surely bad ($P(r^*=1\mid x)\approx 0$, *anchors*) and some almost surely good,
# then $\min_x P(r=1\mid x) = \rho_{10}$ and $\max_x P(r=1\mid x) = 1-\rho_{01}$. `FlipRateEstimator` fits a
# proxy of $P(r=1 \mid x)$ on the observed rows (out-of-fold, calibrated with free plateaus) and reads the rates
# off its $1-q$ and $q$ quantiles ($q = 0.97$ rather than min/max, for robustness).
#
# We give it its best chance first: teacher ratings (a strong signal in $x$), no selection ($\alpha = 1$) and
# half the rows observed.

# %%
rated = load_rated("ultrafeedback")
X = embed_log(rated, Embedder(progress=False))

easy = simulate(rated, alpha=1.0, rho01=RHO01, rho10=RHO10, observation_rate=0.5, rating="teacher",
                embeddings=X, seed=0)
est, rows = fit_flip_rates(easy, X, n_bootstrap=TRAIN["flip_bootstrap"])  # fitted on the train + val rows
for rate, true in (("rho01", RHO01), ("rho10", RHO10)):
    lo, hi = est.ci_[rate]
    print(f"{rate}: {getattr(est, rate + '_'):.3f}  95% CI {lo:.3f} to {hi:.3f}   (true {true})")
print("proxy:", {k: v for k, v in est.diagnostics_["proxy"].items() if k != "asymptotes"})

# %%
fig = px.histogram(x=est.proxy_scores_, nbins=60, labels={"x": "proxy score f(x) ~ P(r=1 | x), every row"},
                   title="Cross-fitted proxy scores and the anchor quantiles")
fig.add_vline(x=est.rho10_, line_color="firebrick", annotation_text="estimated rho10")
fig.add_vline(x=1 - est.rho01_, line_color="firebrick", annotation_text="estimated 1 - rho01")
fig.add_vline(x=RHO10, line_dash="dot", annotation_text="true rho10", annotation_position="bottom right")
fig.add_vline(x=1 - RHO01, line_dash="dot", annotation_text="true 1 - rho01", annotation_position="bottom left")
fig.update_layout(height=380)
fig.show()

# %% [markdown]
# Even in this friendly setting the intervals are wide: a thousand observed rows and a 384-dimensional linear
# proxy do not pin down the plateaus of $P(r=1 \mid x)$ precisely.
#
# ## 3. How anchor estimation fails
#
# **(a) An overfit proxy.** If the proxy scores the rows it was trained on, it reproduces their labels: its
# quantiles sit near 0 and 1, and both rates collapse towards 0 (the authors' script got $\hat\rho_{10}\approx
# 0.01$ for a true 0.1). Calibration matters too: plain Platt scaling has tails that run to 0 and 1, so its
# extreme quantiles can sink as well. Compare, on the same observed rows:

# %%
obs_rows = rows & (easy["observed"] == 1).to_numpy()
X_obs, r_obs = X[obs_rows], easy["feedback"].to_numpy()[obs_rows].astype(float)
variants = {
    "in-sample, nearly unregularised, uncalibrated":
        ProxyModel(C=1e4, calibration="none").fit(X_obs, r_obs).predict_proba(X_obs),
    "out-of-fold, Platt (sigmoid) calibration":
        cross_fitted_proxy(X_obs, r_obs, np.ones(len(r_obs)), calibration="sigmoid")[0],
    "out-of-fold, free plateaus, observed rows only": cross_fitted_proxy(X_obs, r_obs, np.ones(len(r_obs)))[0],
    "cross-fitted over every row (the default)": est.proxy_scores_,
}
pl.DataFrame([{"proxy": name, "rho01_hat": anchor_rates(s, 0.97)[0], "rho10_hat": anchor_rates(s, 0.97)[1]}
              for name, s in variants.items()]).with_columns(true_rho01=pl.lit(RHO01), true_rho10=pl.lit(RHO10))

# %% [markdown]
# The in-sample proxy collapses both rates to about 0. The out-of-fold proxies land near each other, within
# the bootstrap intervals above (with $\alpha = 1$ and half the rows observed, the observed rows are a fair
# sample of $x$, so scoring every row changes little here; part (b) shows where it matters). On a log this small
# the choice of calibration matters less than the sample size
# (on larger synthetic logs the library's tests measured Platt at 0.07 for a true 0.2, the default within 0.03).
#
# **(b) No anchors.** The method assumes that *some* responses are almost surely good or bad and that the proxy
# can find them. With the real GPT-4 ratings, MiniLM embeddings hardly separate good from bad (notebook 01), so
# the proxy never gets close to the plateaus and the rates come out far too high. Strong selection does similar
# damage: with $\alpha = 0.1$ almost no clearly bad response is ever observed, so there are no negative anchors
# among the observed rows. That is why the library takes the quantiles over *every* row (the proxy scores the
# unobserved impressions too, where the negatives are) and fits the proxy with $1/\hat p$ weights, so the rare
# observed negatives count as much as the impressions they stand for. The estimator warns when its proxy ranks
# the feedback no better than chance (out-of-fold AUC within two standard errors of 0.5), when it is weak
# (below 0.6), or when the rates add up to more than 0.8.

# %%
scenarios = {
    "teacher, alpha 1, 50% observed": easy,
    "teacher, alpha 1, 20% observed": simulate(rated, alpha=1.0, rho01=RHO01, rho10=RHO10, rating="teacher",
                                               embeddings=X, seed=0),
    "teacher, alpha 0.1, 20% observed": simulate(rated, alpha=0.1, rho01=RHO01, rho10=RHO10, rating="teacher",
                                                 embeddings=X, seed=0),
    "real ratings, alpha 1, 50% observed": simulate(rated, alpha=1.0, rho01=RHO01, rho10=RHO10,
                                                    observation_rate=0.5, seed=0),
}
fits, table = {}, []
for name, lg in scenarios.items():
    e = fits[name] = fit_flip_rates(lg, X, n_bootstrap=TRAIN["flip_bootstrap"])[0]
    table.append({"scenario": name,
                  "rho01_hat": e.rho01_, "rho01 CI": "{:.2f} to {:.2f}".format(*e.ci_["rho01"]),
                  "rho10_hat": e.rho10_, "rho10 CI": "{:.2f} to {:.2f}".format(*e.ci_["rho10"]),
                  "proxy AUC": e.diagnostics_["proxy"]["oof_auc"], "warnings": len(e.diagnostics_["warnings"])})
print(f"true rates: rho01 = {RHO01}, rho10 = {RHO10}")
pl.DataFrame(table)

# %% [markdown]
# **(c) The choice of $q$.** The quantile trades robustness against bias: $q = 1$ (min/max) is at the mercy of
# one extreme score; a low $q$ moves the "anchors" into the bulk, where $P(r^* = 1 \mid x)$ is not 0 or 1, and
# inflates both rates. The estimator records its estimates over a sweep of $q$ (`diagnostics_["sweep"]`): if they
# move a lot between 0.95 and 0.99, do not trust any single one.

# %%
sweep = []
for name, e in fits.items():
    s = e.diagnostics_["sweep"]
    for rate in ("rho01", "rho10"):
        sweep.append(pl.DataFrame({"q": s["q"], "estimate": s[rate], "rate": rate, "scenario": name}))
fig = px.line(pl.concat(sweep), x="q", y="estimate", color="scenario", facet_col="rate", markers=True,
              title="Anchor estimates against the quantile q (dotted: the truth)")
fig.add_hline(y=RHO01, line_dash="dot", col=1)
fig.add_hline(y=RHO10, line_dash="dot", col=2)
fig.update_layout(height=420, legend=dict(orientation="h", y=-0.25))
fig.show()

# %% [markdown]
# ## 4. The alternative: a small audited subset
#
# When a product can afford it, a few hundred responses labelled carefully (`gold_label`) give a direct
# estimate, $\hat\rho_{01} = P(r=0 \mid \text{gold}=1)$ and $\hat\rho_{10} = P(r=1 \mid \text{gold}=0)$ on
# observed gold rows, with no assumption about anchors. Its precision is that of a proportion: it depends on how
# many gold rows fall in the smaller class. Here we "audit" random observed rows of the strongly selected log,
# where anchors failed:

# %%
hard = scenarios["teacher, alpha 0.1, 20% observed"]
rows_h = (hard["split"] != "test").to_numpy()
fb_h, o_h = hard["feedback"].to_numpy()[rows_h], hard["observed"].to_numpy()[rows_h]
truth_h = hard["true_label"].to_numpy()[rows_h].astype(float)
candidates = np.flatnonzero(o_h == 1)
gold_rows = []
for n_gold in (50, 100, 200, len(candidates)):
    pick = np.random.default_rng(1).choice(candidates, size=min(n_gold, len(candidates)), replace=False)
    gold = np.full(len(o_h), np.nan)
    gold[pick] = truth_h[pick]
    g = FlipRateEstimator(method="gold", n_bootstrap=TRAIN["flip_bootstrap"])
    g.fit(None, fb_h, o_h, gold_label=gold)
    for rate in ("rho01", "rho10"):
        lo, hi = g.ci_[rate]
        gold_rows.append({"gold rows": len(pick), "rate": rate, "estimate": getattr(g, rate + "_"),
                          "lo": lo, "hi": hi, "gold negatives": g.diagnostics_["n_gold_negative"]})
gold_rows = pl.DataFrame(gold_rows)
fig = px.scatter(gold_rows, x="gold rows", y="estimate", color="rate", log_x=True,
                 **error_bars(gold_rows, "estimate", lo="lo", hi="hi"),
                 title="Flip rates from an audited subset (dotted: the truth)")
fig.add_hline(y=RHO01, line_dash="dot")
fig.add_hline(y=RHO10, line_dash="dot")
fig.update_layout(height=380)
fig.show()
gold_rows

# %% [markdown]
# $\hat\rho_{10}$ stays imprecise however many rows are audited: under strong selection few observed rows are
# true negatives, and only those inform $\rho_{10}$. Beware of intervals like "0 to 0": with no flip among 8
# audited negatives, every bootstrap resample also has none, yet a true rate of 0.2 would produce that outcome
# one time in six ($0.8^8 \approx 0.17$). Percentile bootstraps of tiny proportions are not to be trusted.
#
# ## 5. Does the correction help a reward model?
#
# Finally, train on the friendly log of section 2 (noise, **no selection**, 50% observed), so that only the noise
# matters: `naive` (plain loss on noisy labels), `denoise` with the true flip rates (as if from a large audit), `denoise`
# with anchor estimates, and the `oracle`.

# %%
noisy = easy
configs = {
    "naive": FitConfig(method="naive", **TRAIN),
    "denoise, true rates": FitConfig(method="denoise", rho01=RHO01, rho10=RHO10, **TRAIN),
    "denoise, anchor estimates": FitConfig(method="denoise", **TRAIN),
    "oracle": FitConfig(method="oracle", **TRAIN),
}
results = []
for name, cfg in configs.items():
    res = fit_log(noisy, X, cfg)
    zz = res.score(noisy, X)
    ev = evaluate_scores(noisy, zz, n_boot=N_BOOT)
    test = (noisy["split"] == "test").to_numpy()
    results.append({"model": name, "rho01 used": res.nuisances.rho01, "rho10 used": res.nuisances.rho10,
                    "MSE": ev["metrics"]["mse"], "MAE": ev["metrics"]["mae"], "R2": ev["metrics"]["r2"],
                    "R2 95% CI": "{:.3f} to {:.3f}".format(*ev["ci"]["r2"]),
                    "AUROC": ev["metrics"]["auroc"], "mean P(good)": float(sigmoid(zz[test]).mean())})
truth = float(noisy.filter(pl.col("split") == "test")["true_label"].mean())
print(f"true share of good responses on test: {truth:.3f}")
pl.DataFrame(results)

# %% [markdown]
# Class-conditional noise barely hurts the *ranking* (AUROC): $P(r=1\mid x)$ is an increasing function of
# $P(r^*=1 \mid x)$, so the naive model still orders responses sensibly. What it gets wrong is the *scale*: with
# $\rho_{01} > \rho_{10}$ it underestimates how many responses are good. The correction moves the mean predicted
# preference and the MAE towards the oracle; on a log this small the gain is modest next to the bootstrap
# intervals (most of the naive → oracle gap here is sample size: the oracle sees a clean label on every row),
# and it is only as good as the rates it is given.
#
# ## Exercises
#
# 1. Set `RHO01, RHO10 = 0.1, 0.2` (the paper's scenario 2) and rerun the numeric check and section 5.
# 2. In section 1, what happens to the `mse` surrogate bounds as $\rho_{01} + \rho_{10}$ approaches 1? Why does
#    the library refuse $\rho_{01} + \rho_{10} \ge 1$?
# 3. Pass `method="anchor-minmax"` to `FlipRateEstimator` for each scenario of section 3. More or less biased?
#    More or less variable (rerun with several `random_state`)?
# 4. Try `calibration="isotonic"` in `cross_fitted_proxy`. Where do its extreme quantiles land, and why (hint: its
#    end blocks are maxima of suffix means)?
# 5. Train `causalrm-dr` on the strongly selected log (`hard`) with the rates of a 100-row audit, then with the
#    anchor estimates (see notebook 04 for the full comparison).
