# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Implicit feedback: a copy is not a thumbs-up
#
# **What you will learn**
#
# - what an *implicit* log looks like (an event such as a copy or a click, recorded when it happens, on every
#   impression) and how the library reads it (`causalrm.data.feedback_kinds`, `summarize_log`);
# - why reading "no copy" as a thumbs-down gives a reward model that ranks well but is miscalibrated;
# - why the event rates cannot be learned from the events alone, and what the library says when asked to;
# - how an audit of a few hundred rows gives the rates, with intervals, and how the noise correction (which is
#   uPU here) turns the event model into a calibrated P(good | x);
# - what the method cannot do: events whose rate depends on x, and examination propensities.
#
# Products log many more implicit events than thumbs: a user copies a good answer, or regenerates a bad one. The
# event happened or it did not; its absence is not a verdict. We simulate such a log on UltraFeedback texts with
# teacher ratings (a known function of the embedding), so every estimate can be checked against the truth.

# %%
import os

# Switches. CAUSALRM_FAST=1 (used in CI) shrinks epochs and bootstrap draws so the notebook runs in well under a
# minute; unset it for the full version (about a minute on a laptop CPU).
FAST = os.environ.get("CAUSALRM_FAST", "0") not in ("", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything needed is bundled; never download
# The models here are tiny: one thread is fastest and never oversubscribes a shared CPU (must be set before
# torch is first imported, hence here).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import plotly.express as px
import plotly.io as pio
import polars as pl

from causalrm.data.feedback_kinds import as_impressions
from causalrm.data.validate import summarize_log
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.errors import InputError
from causalrm.evaluation import audit
from causalrm.simulation.simulate import simulate_dataset
from causalrm.workflows.orchestrate import fit_methods
from causalrm.config import FitConfig
from causalrm.workflows.teaching import (
    audited_flip_rates,
    fit_scores,
    metric_rows,
    reliability_table,
    setup_notebook,
    simulated_audit,
)

C, EPS = 0.5, 0.03  # P(copy | good response), P(copy | bad response): the truth of this simulation
AUDIT = 300  # rows labelled by hand in section 4

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. An implicit log
#
# `simulate_dataset(..., feedback_kind="implicit")` draws, on *every* row (train, val and test alike), a copy
# event with probability $c$ for a good response ($r^* = 1$) and $\varepsilon$ for a bad one:
# $e \sim \mathrm{Bernoulli}(c)$ if $r^* = 1$, else $\mathrm{Bernoulli}(\varepsilon)$. The `feedback` column holds 1
# where the copy happened and is *empty* elsewhere; there is no `observed` column. The clean `true_label` is the
# simulation's truth, used for evaluation only.

# %%
raw, sim = simulate_dataset("ultrafeedback", rating="teacher", feedback_kind="implicit", event_rate_good=C,
                            event_rate_bad=EPS, seed=0)
X = embed_log(raw, Embedder(progress=False))
print("columns:", ", ".join(raw.columns))
print("feedback values:", raw["feedback"].value_counts().sort("feedback").rows())
# the realised event rates among good and bad responses (the simulation's truth)
raw.group_by("true_label").agg(rows=pl.len(), events=pl.col("feedback").sum(),
                               event_rate=pl.col("feedback").fill_null(0).mean()).sort("true_label")

# %% [markdown]
# `causalrm.data.io.readers.read_log` detects such a column (only ever 1 or empty, at least 30 events) and reads the log as
# **impressions** (`feedback_kinds.as_impressions`, which we call directly on the simulated table): every row is
# observed, `feedback` is the event (1) or its absence (0), and a `feedback_kind` column marks the reading.
# `summarize_log` (what `causalrm validate` prints) names the kind and what it needs.

# %%
log = as_impressions(raw)
print(summarize_log(log))

# %% [markdown]
# Read as impressions, the event is a *class-conditional noisy label* of $r^*$, with the flip rates of
# notebook 03:
#
# $$\rho_{01} = P(e = 0 \mid r^* = 1) = 1 - c, \qquad \rho_{10} = P(e = 1 \mid r^* = 0) = \varepsilon .$$
#
# A good response that nobody copied is a "flipped" positive, an accidental copy of a bad one a flipped negative.
# Here $\rho_{01}$ is large: most good responses are never copied.
#
# ## 2. "No copy" read as a thumbs-down
#
# The naive reward model fits $\sigma(z) \approx P(e = 1 \mid x) = \varepsilon + (c - \varepsilon)\,\eta(x)$, with
# $\eta(x) = P(r^* = 1 \mid x)$. That is increasing in $\eta$, so it *ranks* responses as the truth does, but its
# values live between $\varepsilon$ and $c$: as a probability of a good response it is wrong. The oracle, trained
# on the clean labels of the training rows, is the ceiling.

# %%
scores = fit_scores(log, X, ["naive", "oracle"], FitConfig(seed=0, **TRAIN))
pl.DataFrame(metric_rows(log, scores, n_boot=N_BOOT)).select("method", "AUROC", "AUROC lo", "AUROC hi", "R2",
                                                              "R2 lo", "R2 hi", "mean P(good)")

# %%
reliability = reliability_table(log, scores)
share_good = float(log.filter(pl.col("split") == "test")["true_label"].mean())
print(f"clean test rows: {share_good:.1%} good; the naive model's mean P(good) there is "
      f"{reliability.filter(pl.col('method') == 'naive')['mean P(good)'].mean():.1%}")
print(reliability.group_by("method").agg(pl.col("ECE").first()).sort("method"))
fig = px.line(reliability, x="mean P(good)", y="share good", color="method", markers=True,
              title="Reliability on the clean test split (10 equal-count bins of σ(z))")
fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line_dash="dot")
fig.update_layout(height=400, xaxis_range=[0, 1], yaxis_range=[0, 1])
fig.show()

# %% [markdown]
# Compare AUROC and R² in the table: AUROC measures only the order of the scores, R² their values as
# probabilities. The naive model's AUROC is well above one half (it orders the responses), while its R² is near
# or below zero and its mean P(good) sits near the share of copied rows, not of good ones. In the reliability
# plot its points lie above the diagonal, their σ(z) in roughly the range of the event rates, $\varepsilon$ to
# $c$: a response it scores at its highest is good much more often than its σ(z) says.
#
# ## 3. The rates are not in the events
#
# To calibrate, we need $c$ and $\varepsilon$. The events alone do not identify them: the log shows only
# $P(e = 1 \mid x) = \varepsilon + (c - \varepsilon)\,\eta(x)$, and any other $(c', \varepsilon', \eta')$ with
# $\varepsilon' + (c' - \varepsilon')\,\eta'(x) = \varepsilon + (c - \varepsilon)\,\eta(x)$ for every $x$ (for
# instance $\varepsilon' = \varepsilon$, $c' = 1$, $\eta' = \eta\,(c - \varepsilon) / (1 - \varepsilon)$: every good
# response copied, but fewer good responses) gives exactly the same log. The anchor estimators of notebook 03
# would need rows that are surely good *and* rows surely bad; a row without a copy is never surely bad. So the
# library refuses to guess.

# %%
try:
    fit_scores(log, X, ["denoise"], FitConfig(seed=0, **TRAIN))
except InputError as err:
    print("InputError:", err)
# auto, the default method, does not refuse: it says what it kept and why
choice = fit_methods(log, X, FitConfig(seed=0, **TRAIN), ["auto"])["auto"].choice
print(f"\nauto kept {choice['method']}: {choice['reason']}")

# %% [markdown]
# The way out is the one the messages name: audited labels, or rates the product team knows.
#
# ## 4. An audit gives the rates
#
# `causalrm audit LOG --n 300` proposes rows to label (notebook 06): here the strata are the copied rows
# (`up:*`) and the others (`down:*`), each cut by the proxy score, with a known inclusion probability per row.
# We label them with the clean label, as a careful auditor would, and estimate the gold flip rates weighted by
# 1 / inclusion probability.

# %%
rows, strata = audit.design_strata(log, X, seed=0)
labels = simulated_audit(log, rows, strata, AUDIT, seed=0)
rates = audited_flip_rates(log, labels, n_bootstrap=200 if FAST else 1000)
tv = log.filter(pl.col("split") != "test")
realised = {"rho01": float((tv.filter(pl.col("true_label") == 1)["feedback"] == 0).mean()),
            "rho10": float((tv.filter(pl.col("true_label") == 0)["feedback"] == 1).mean())}
pl.DataFrame([{"rate": k, "truth": truth, "realised (train + val)": realised[k], "audit estimate": rates[k],
               "95% lo": rates[f"{k}_lo"], "95% hi": rates[f"{k}_hi"]}
              for k, truth in (("rho01", 1 - C), ("rho10", EPS))])

# %% [markdown]
# Compare each estimate and its interval with the realised rate (what the audit of this log estimates) and the
# truth. ρ₁₀ is the rate of accidental copies among bad responses: rare events, so its interval is wide in
# relative terms.
#
# ## 5. The correction with the audited rates
#
# Merged into the log (`audit.merge_labels`), the labels give the rates to every noise-aware method
# (`flip_method="gold"`). With $\varepsilon = 0$ the noise-corrected loss of `denoise` is exactly the unbiased PU
# risk of du Plessis et al. (2015), with $\pi = P(e = 1) / c$ the share of good responses, $P$ the copied rows and
# $U$ all impressions:
#
# $$\frac1n \sum_i \tilde\ell(z_i, e_i) = \pi\, \mathbb E_P[\ell(z, 1)] + \mathbb E_U[\ell(z, 0)]
#   - \pi\, \mathbb E_P[\ell(z, 0)] ,$$
#
# and with $\varepsilon > 0$ it is its generalisation to accidental events (`causalrm.estimators.pu`). `nnpu` clips each
# class's risk at zero (Kiryo et al. 2017), against a flexible model that drives one below zero. `auto` picks by
# the audited validation rows. The same correction runs with rates the user gives instead of an audit:
# `FitConfig(rho01=1 - c, rho10=eps)` (`causalrm fit --event-rate C --accidental-rate EPS`).

# %%
audited = audit.merge_labels(log, labels)
base = FitConfig(seed=0, flip_method="gold", **TRAIN)
# every method past the gates (to measure it), but auto with its gates as a user would run it
fits = fit_methods(audited, X, base, ["naive", "denoise", "nnpu", "oracle", "auto"],
                   config_for=lambda m: base.replace(method=m, force_noise_correction=m != "auto"))
print("auto kept", fits["auto"].choice["method"], "-", fits["auto"].choice["reason"][:300])
scores = {m: fit.score(audited, X) for m, fit in fits.items()}
given = fit_scores(log, X, ["denoise"], FitConfig(seed=0, rho01=1 - C, rho10=EPS, **TRAIN))  # no audit: c, eps given
scores["denoise (rates given)"] = given["denoise"]
pl.DataFrame(metric_rows(audited, scores, n_boot=N_BOOT)).select("method", "AUROC", "R2", "R2 lo", "R2 hi",
                                                                  "mean P(good)")

# %%
reliability = reliability_table(audited, {m: scores[m] for m in ("naive", "denoise", "nnpu", "oracle")})
print(reliability.group_by("method").agg(pl.col("ECE").first()).sort("method"))
fig = px.line(reliability, x="mean P(good)", y="share good", color="method", markers=True,
              title="Reliability after the correction (clean test split, 10 equal-count bins of σ(z))")
fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line_dash="dot")
fig.update_layout(height=400, xaxis_range=[0, 1], yaxis_range=[0, 1])
fig.show()

# %% [markdown]
# Read the two tables: with the audited rates, compare the R², the mean P(good) and the ECE of `denoise` with
# the naive model's and the oracle's, and its AUROC with the naive one's. The correction is meant to rescale the
# event model into P(good | x), not to find a better ranking; the gap to the oracle that remains is that of
# learning from one noisy bit per row instead of the clean label. With long training (unset `CAUSALRM_FAST`) a
# flexible model can drive the corrected risk of one class below zero and grow overconfident, σ(z) pushed towards
# 0 and 1 (points left of and above the diagonal at the bottom, below it at the top): that is what `nnpu` guards
# against, so compare its row and its curve with `denoise`'s. The rates given by hand do the same as the audited
# ones when they are right; the audit is how to know that they are.
#
# ## 6. What it cannot do
#
# - **Events whose rate depends on x.** The correction assumes $c$ and $\varepsilon$ are the same for every
#   response (class-conditional noise; "selected completely at random" in PU terms). If long code answers are
#   copied more than equally good prose, $c(x)$ varies, the event model ranks by $c(x)\,\eta(x)$, and no constant
#   rate repairs it (Bekker & Davis 2018, "selected at random"). An audit spread over $x$ shows it: audited rates
#   that differ by stratum.
# - **Examination.** A response lower on the page is seen less often; its missing copy says even less. The
#   simulator draws such a position model (`examination=η`: $e_i$ = 1 / (1 + position)^η, written to
#   `logged_propensity`), but fitting does not use an examination propensity yet. The methods that would weight
#   by it (`ips`, `causalrm-ips`) refuse; `naive`, `denoise` and `auto` do not read the column and count every
#   impression as seen, so under examination their rates mix $c$ with the examination probability.

# %%
examined, _ = simulate_dataset("ultrafeedback", rating="teacher", feedback_kind="implicit", event_rate_good=C,
                               event_rate_bad=EPS, examination=1.0, seed=0)
print("logged_propensity (examination) quantiles:",
      np.quantile(examined["logged_propensity"].to_numpy(), [0, 0.5, 1]).round(2).tolist())
try:
    fit_scores(as_impressions(examined), X, ["causalrm-ips"], FitConfig(seed=0, rho01=1 - C, rho10=EPS, **TRAIN))
except InputError as err:
    print("InputError:", err)

# %% [markdown]
# ## Exercises
#
# 1. Set `C = 0.35` (the simulator's default). The audited $1 - \hat\rho_{01} - \hat\rho_{10}$ comes closer to
#    the gate of `auto` (its choice reason names it): what does `auto` keep, and what does forced `denoise` score?
# 2. Give wrong rates by hand: `FitConfig(rho01=0.3, rho10=EPS)` when the truth is `1 - C`. Which way does
#    `mean P(good)` move, and does AUROC change?
# 3. Audit 100 and 1,000 rows instead of 300. How wide are the rate intervals, and how far does the `denoise` R²
#    move?
# 4. Build a selected-at-random log: after simulating, drop the events of half the good responses whose
#    `teacher_score` is below its median (`pl.when(...)`), then rerun sections 4 and 5. Do the audited rates
#    differ between the `up:*` and `down:*` strata? Does the correction still calibrate?
# 5. Mixed logs: `simulate_dataset(..., feedback_kind="mixed", regenerate_rate_good=0.05,
#    regenerate_rate_bad=0.3)` keeps the explicit thumbs in `feedback` and adds `copied` and `regenerated`
#    columns. How often does a copied response get a thumbs-down?
# 6. On the synthetic control, where the representation is the truth's own (`causalrm.workflows.bench.synthetic_rated`,
#    `simulate_with_config(rated, embeddings=X, rating="teacher", feedback_kind="implicit", ...)`), how close do
#    `denoise` and the oracle come?
