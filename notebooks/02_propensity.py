# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Propensity: estimating who gets observed
#
# **What you will learn**
#
# - how to estimate the propensity $p(x) = P(o = 1 \mid x)$ from an impression log with `PropensityModel`
#   (cross-fitted, logistic or MLP), and how to judge it without ground truth;
# - **overlap**: the distribution of $\hat p$ for observed and unobserved rows;
# - **clipping** and the **effective sample size**: why weights $1/\hat p$ are floored, and what the floor costs
#   (bias) and buys (variance), with `clip_report`;
# - the **calibration curve** of $\hat p$;
# - why a feedback-only log (no impressions without feedback) cannot give propensities, and what the library
#   says when you try.
#
# This notebook isolates selection: the simulated logs have no label noise ($\rho_{01} = \rho_{10} = 0$).

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
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.subplots import make_subplots

from causalrm.data.datasets import load_rated
from causalrm.data.validate import summarize_log
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.errors import InputError
from causalrm.evaluation.unbiasedness import unbiasedness_check
from causalrm.nuisances.propensity import PropensityModel, clip_report
from causalrm.simulation.simulate import simulate
from causalrm.config import FitConfig
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.teaching import setup_notebook

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. A log with selection bias only
#
# Teacher ratings (a fixed function of the embedding, see notebook 01) make the selection a function of $x$
# alone: exactly the setting in which a propensity model *can* be right. We come back to real ratings at the end
# of section 2.

# %%
rated = load_rated("ultrafeedback")
X = embed_log(rated, Embedder(progress=False))
ALPHA = 0.1
log = simulate(rated, alpha=ALPHA, rho01=0.0, rho10=0.0, rating="teacher", embeddings=X, seed=0)

fit_rows = (log["split"] != "test").to_numpy()  # propensities are fitted on train + val impressions only
Xf = X[fit_rows]
o = log["observed"].to_numpy()[fit_rows]
p_true = log["true_propensity"].to_numpy()[fit_rows]
print(f"{fit_rows.sum()} impressions, {o.sum()} observed ({o.mean():.1%}); "
      f"true propensity from {p_true.min():.2g} to {p_true.max():.2g}")

# %% [markdown]
# ## 2. Fitting $\hat p(x)$
#
# `PropensityModel` trains a classifier of "this impression received feedback" on **all** impressions. It is
# **cross-fitted**: the rows are split into folds and each row's $\hat p$ comes from a model that never saw that
# row. An in-sample $\hat p$ would be overconfident (observed rows near 1, unobserved near 0), and the weights
# $1/\hat p$ would collapse towards 1 exactly where they matter.
#
# We fit the paper's MLP (256, 64, LeakyReLU) and a logistic regression, and compare both with the truth, which
# only a simulation knows.

# %%
folds = TRAIN["propensity_folds"]
models = {
    "logistic": PropensityModel(model="logistic", n_folds=folds, clip=0.1).fit(Xf, o),
    "mlp": PropensityModel(model="mlp", n_folds=folds, clip=0.1, max_epochs=30 if FAST else 100).fit(Xf, o),
}
table = []
for name, m in models.items():
    d = m.diagnostics_
    corr = np.corrcoef(np.log(m.propensity_), np.log(p_true))[0, 1]
    table.append({"model": name, "AUC(o)": d.auc, "ECE": d.ece, "Brier": d.brier,
                  "corr(log p_hat, log p)": corr, "ESS": d.ess, "ESS / observed": d.ess_fraction,
                  "max weight": d.max_weight})
pl.DataFrame(table)

# %% [markdown]
# `AUC(o)`, `ECE` and `Brier` need no ground truth: they judge $\hat p$ against $o$ itself. Only the correlation
# with $\log p$ needs the simulation. A scatter shows where the estimate goes wrong (log axes):

# %%
# Choose by calibration (ECE), which needs no ground truth; the rest of the notebook uses this model.
best_name = min(models, key=lambda name: models[name].diagnostics_.ece)
best = models[best_name]
fig = px.scatter(x=p_true, y=best.propensity_, color=np.where(o == 1, "observed", "unobserved"),
                 log_x=True, log_y=True, opacity=0.5,
                 labels={"x": "true propensity p", "y": "estimated p_hat", "color": ""},
                 title=f"Cross-fitted p_hat ({best_name}, the better calibrated) against the truth")
fig.add_scatter(x=[p_true.min(), 1], y=[p_true.min(), 1], mode="lines", name="p_hat = p",
                line=dict(dash="dot", color="gray"))
fig.add_hline(y=0.1, line_dash="dash", annotation_text="clip 0.1")
fig.update_layout(height=420)
fig.show()

# %% [markdown]
# Where do the two models go wrong? Group the rows by their true propensity and compare medians:

# %%
band = pl.Series(np.digitize(p_true, [0.01, 0.05, 0.2])).replace_strict(
    {0: "p < 0.01", 1: "0.01 to 0.05", 2: "0.05 to 0.2", 3: "p >= 0.2"})
p_hats = {f"p_hat {name}": m.propensity_ for name, m in models.items()}
(pl.DataFrame({"true p band": band, "p": p_true, **p_hats})
   .group_by("true p band")
   .agg(pl.len().alias("rows"), pl.all().exclude("true p band").median())
   .sort("p"))

# %% [markdown]
# In our runs the two models erred in opposite directions. The logistic regression (384 standardised features,
# a few hundred positives, light regularisation) is overconfident: it pushes small propensities far below the
# truth, which would make their weights explode were it not for the clip. The MLP is better calibrated but
# shrinks the extremes towards the mean: with a few hundred observed rows there is little evidence for
# propensities of 0.005. Neither error is visible without the truth, except through calibration (section 5).
#
# **Real ratings.** When the selection depends on the GPT-4 rating, which MiniLM embeddings capture only weakly,
# the propensity is no longer a function of what the model sees. The estimate then cannot recover it, and worse,
# the key assumption (no unmeasured confounding given $x$) fails: $o$ and $r^*$ both depend on the rating
# beyond $x$.

# %%
log_real = simulate(rated, alpha=ALPHA, rho01=0.0, rho10=0.0, rating="real", seed=0)
o_real = log_real["observed"].to_numpy()[fit_rows]
p_real = log_real["true_propensity"].to_numpy()[fit_rows]
m_real = PropensityModel(model="logistic", n_folds=folds).fit(Xf, o_real)
m_teacher = models["logistic"]
print(f"real ratings:    AUC(o) = {m_real.diagnostics_.auc:.3f}, "
      f"corr(log p_hat, log p) = {np.corrcoef(np.log(m_real.propensity_), np.log(p_real))[0, 1]:.3f}")
print(f"teacher ratings: AUC(o) = {m_teacher.diagnostics_.auc:.3f}, "
      f"corr(log p_hat, log p) = {np.corrcoef(np.log(m_teacher.propensity_), np.log(p_true))[0, 1]:.3f}"
      "   (both: cross-fitted logistic)")

# %% [markdown]
# ## 3. Overlap
#
# IPS needs **overlap**: every kind of response must have some chance of being observed ($p(x) > 0$). In the
# data, look at the distributions of $\hat p$ for observed and unobserved rows. Where unobserved rows pile up at
# $\hat p \approx 0$ with no observed rows near them, the log holds no feedback for that kind of response and the
# weights of the few observed ones there explode.

# %%
fig = px.histogram(x=best.propensity_, color=np.where(o == 1, "observed", "unobserved"), nbins=50,
                   barmode="overlay", histnorm="probability", opacity=0.6,
                   labels={"x": "p_hat", "color": ""}, title="Overlap: p_hat by observation status")
fig.add_vline(x=best.clip, line_dash="dash", annotation_text=f"clip {best.clip}")
fig.update_layout(height=380)
fig.show()

# %% [markdown]
# ## 4. Clipping and the effective sample size
#
# IPS weights an observed row by $1/\hat p$. A floor `clip` caps the weights at $1/\text{clip}$ (the paper uses
# 0.1). The **effective sample size** $\mathrm{ESS} = (\sum w)^2 / \sum w^2$ over observed rows (Kish) says how
# many equally weighted rows the weighted sample is worth: uniform weights give ESS = number of observed rows; a
# few huge weights give an ESS of a handful. `clip_report` shows what each floor does:

# %%
floors = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
reports = []
for source, p in (("estimated p_hat", best.propensity_), ("true p", p_true)):
    for c in floors:
        r = clip_report(p, c, observed=o)
        reports.append({"propensity": source, "clip": c, "observed rows capped": r["fraction_observed_clipped"],
                        "max weight": r["max_weight"], "ESS": r["ess"], "ESS / observed": r["ess_fraction"]})
reports = pl.DataFrame(reports)
print(clip_report(best.propensity_, 0.1, observed=o)["message"])
reports.filter(pl.col("propensity") == "estimated p_hat")

# %% [markdown]
# Clipping trades **variance for bias**: a high floor gives calm weights (large ESS) but treats rare responses as
# if they were observed more often than they were, which pulls the estimate back towards the naive one. We can
# measure the bias directly with `unbiasedness_check` (the paper's RQ3): fix a prediction vector, compute each
# estimator's loss value on the log and compare it with the ideal loss on *all* impressions,
# $L_\text{ideal} = \frac1N\sum_i \ell(\hat r_i, r^*_i)$. Here the prediction is "every response has
# P(good) = 0.8", whose loss depends on the label balance, which is exactly what selection distorts. We compare
# IPS, $\frac1N\sum_i \frac{o_i}{\hat p_i}\ell_i$, and its self-normalised form SNIPS, which divides by
# $\sum_i o_i/\hat p_i$ instead of $N$. (The naive value $\frac1N\sum_i o_i\ell_i$ is printed too: it is far
# off mostly because only 20% of the rows contribute a term.)

# %%
predictions = {"always 0.8": np.full(len(p_true), 0.8)}
bias = []
for source, p in (("estimated p_hat", best.propensity_), ("true p", p_true)):
    for c in floors:
        check = unbiasedness_check(log, predictions, methods=("naive", "ips", "snips"), propensity=p, clip=c)
        for row in check:
            bias.append({"propensity": source, "clip": c, "method": row["method"], "delta": row["delta"]})
bias = pl.DataFrame(bias)

fig = make_subplots(rows=1, cols=2, subplot_titles=("ESS / observed rows", "estimate minus ideal loss"))
for source, dash in (("estimated p_hat", "solid"), ("true p", "dot")):
    r = reports.filter(pl.col("propensity") == source)
    fig.add_scatter(x=r["clip"], y=r["ESS / observed"], name=f"ESS, {source}", line=dict(dash=dash),
                    row=1, col=1)
    for method in ("ips", "snips"):
        b = bias.filter((pl.col("propensity") == source) & (pl.col("method") == method))
        fig.add_scatter(x=b["clip"], y=b["delta"], name=f"{method}, {source}", line=dict(dash=dash),
                        row=1, col=2)
fig.add_hline(y=0.0, line_color="gray", row=1, col=2)
fig.update_xaxes(type="log", title_text="clip")
fig.update_layout(height=420, title="Clipping: variance (ESS) against bias")
fig.show()
naive = bias.filter(pl.col("method") == "naive")["delta"][0]
print(f"naive estimate minus ideal loss: {naive:.3f}")

# %% [markdown]
# With the *true* $p$, IPS is unbiased for small floors and becomes biased as the floor rises (the paper's 0.1
# is far from harmless at this selection strength). With $\hat p$ the bias does not vanish at small floors: the
# better-calibrated model shrinks the extreme propensities towards the mean (section 2), so the weights of the
# rarest responses are too small whatever the floor. One replication is noisy; the exercises vary the seed.
#
# How strong the selection is also decides how much data IPS has left. Using the true propensities of logs
# simulated at several $\alpha$:

# %%
ess_rows = []
for alpha in (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01):
    lg = simulate(rated, alpha=alpha, rho01=0.0, rho10=0.0, seed=0)
    p_a = lg["true_propensity"].to_numpy()[fit_rows]
    o_a = lg["observed"].to_numpy()[fit_rows]
    for c in (0.001, 0.1):
        ess = clip_report(p_a, c, observed=o_a)["ess_fraction"]
        ess_rows.append({"alpha": alpha, "clip": str(c), "ESS / observed": ess})
fig = px.line(pl.DataFrame(ess_rows), x="alpha", y="ESS / observed", color="clip", markers=True, log_x=True,
              title="Stronger selection (smaller alpha) leaves fewer effective rows")
fig.update_layout(height=360)
fig.show()

# %% [markdown]
# ## 5. Calibration
#
# A propensity is used as a *probability*, so it must be calibrated: among rows with $\hat p \approx 0.3$, about
# 30% should be observed. The diagnostics hold the calibration curve (equal-width bins) and its expected
# calibration error (ECE):

# %%
fig = go.Figure()
for name, m in models.items():
    d = m.diagnostics_
    fig.add_scatter(x=d.calibration_predicted, y=d.calibration_observed, mode="lines+markers",
                    name=f"{name} (ECE {d.ece:.3f})", text=[f"{c} rows" for c in d.calibration_count])
fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(dash="dot", color="gray"))
fig.update_layout(title="Calibration of p_hat", xaxis_title="mean p_hat in bin", yaxis_title="observed share",
                  height=400)
fig.show()

# %% [markdown]
# ## 6. What goes wrong with a feedback-only log
#
# Many products keep only the rows that got feedback. Then every row has $o = 1$, and $P(o=1 \mid x)$ cannot be
# learned: any constant fits the data perfectly. `summarize_log` warns, and the library refuses to invent
# propensities:

# %%
feedback_only = log.filter((pl.col("split") != "test") & (pl.col("observed") == 1))
X_fb = X[((log["split"] != "test") & (log["observed"] == 1)).to_numpy()]
print(summarize_log(feedback_only).warnings[0])
try:
    PropensityModel().fit(X_fb, feedback_only["observed"].to_numpy())
except InputError as err:
    print("PropensityModel:", err)
try:
    fit_log(feedback_only, X_fb, FitConfig(method="causalrm-ips", **TRAIN))
except InputError as err:
    print("fit_log:", err)

# %% [markdown]
# The way out, when the product knows its own logging probabilities (for example because feedback prompts are
# shown at random), is the `logged_propensity` column: it is used as it is, and no model is fitted.

# %%
logged = PropensityModel().fit(X_fb, feedback_only["observed"].to_numpy(),
                               logged_propensity=feedback_only["true_propensity"].to_numpy())
print(logged.source_, "| ESS of the logged weights:", round(logged.diagnostics_.ess, 1),
      "of", len(feedback_only), "rows")

# %% [markdown]
# ## Exercises
#
# 1. Rerun with `ALPHA = 0.5` and `ALPHA = 0.02`. How do overlap, the ESS and the share of capped weights change?
# 2. The bias curve of section 4 is one replication. Repeat it for `seed` = 0 to 4 and average: is the IPS bias
#    with $\hat p$ systematic?
# 3. Try `PropensityModel(model="mlp", loss="mse")` (the paper trains with squared error on the sigmoid output).
#    Compare AUC, ECE and the correlation with the truth.
# 4. Why must propensities be cross-fitted? Predict what the overlap histogram would look like for an in-sample
#    $\hat p$ from a very flexible model, and what that does to the IPS weights.
# 5. The refusal message of section 6 names two fixes. For your own product, which one can you implement, and
#    what would you have to log?
