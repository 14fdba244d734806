# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Observational feedback: what an impression log is and why naive reward models learn the wrong thing
#
# **What you will learn**
#
# - what an *impression log* is: one row per response shown, with feedback on only a few rows;
# - the paper's semi-synthetic protocol (`causalrm.simulation.simulate`), applied to real UltraFeedback responses:
#   selection bias (who leaves feedback) and label noise (what the feedback says);
# - how the observed labels differ from the truth: observation rate by rating level, flip rates, label balance;
# - that a *naive* reward model, fitted to the rows with feedback, learns the wrong thing, and why the effect is
#   easiest to see with *teacher* ratings on the small CPU embeddings bundled here.
#
# Notation (used everywhere in this project): $x$ an impression's embedding, $o$ = `observed`,
# $r$ = `feedback` (noisy), $r^*$ = `true_label` (clean), $p(x) = P(o=1 \mid x)$ = `propensity`,
# $\rho_{01} = P(r=0 \mid r^*=1)$, $\rho_{10} = P(r=1 \mid r^*=0)$.

# %%
import os

# Switches. CAUSALRM_FAST=1 (used in CI) shrinks epochs, seeds and bootstrap draws so the notebook runs in
# about a minute; unset it for the full version (a few minutes on a laptop CPU).
FAST = os.environ.get("CAUSALRM_FAST", "0") not in ("", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything needed is bundled; never download
# The models here are tiny: one thread is fastest and never oversubscribes a shared CPU (must be set before
# torch is first imported, hence here).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from causalrm.data.datasets import load_rated
from causalrm.data.validate import summarize_log
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.evaluation.metrics import sigmoid
from causalrm.simulation.simulate import simulate, simulate_with_config, simulation_summary
from causalrm.config import FitConfig
from causalrm.workflows.teaching import equal_count_bins, fit_scores, metric_rows, setup_notebook

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. The data: rated responses
#
# UltraFeedback responses, each with a GPT-4 overall rating from 1 to 10 (2,398 rows; the source's own
# train/test split). A rated dataset is *not* feedback: every row has a rating. We will turn it into the kind
# of log a product collects.

# %%
rated = load_rated("ultrafeedback")
print(rated.shape)
rated.select("prompt", "response", "rating", "split").head(3)

# %%
fig = px.histogram(rated, x="rating", color="split", barmode="group", nbins=19,
                   title="UltraFeedback: GPT-4 overall rating per response")
fig.update_layout(height=350)
fig.show()

# %% [markdown]
# ## 2. From ratings to an impression log
#
# A chat product logs every response it shows (an **impression**). For a few of them the user leaves feedback
# (thumbs, copy, upvote). So a real log has, per row: the prompt, the response, `observed` (did feedback
# arrive?) and `feedback` (what it said, null when not observed).
#
# The paper's protocol (METHOD.md, "The paper's experiment") makes such a log from a rated dataset:
#
# 1. split train / val 80/20 by prompt; the dataset's own **test** split stays clean and fully observed;
# 2. **selection**: rescale the rating to $s\in[1,5]$, set $p = \alpha^{5-s}$ and scale so that 20% of rows are
#    observed on average; $o \sim \mathrm{Bernoulli}(p)$. Small $\alpha$ = strong bias towards high ratings;
# 3. **labels**: $r^* = 1[\text{rating} > \text{median rating level}]$;
# 4. **noise** on observed rows: a true positive is logged as 0 with probability $\rho_{01}$, a true negative
#    as 1 with probability $\rho_{10}$.
#
# The simulation also keeps the columns a real product never sees (`true_label`, `true_score`,
# `true_propensity`): we use them *only* to measure what went wrong.
#
# The embeddings are the bundled all-MiniLM-L6-v2 vectors (shipped with the repository, so this is instant).

# %%
X = embed_log(rated, Embedder(progress=False))  # (n, 384) float32, rows aligned with `rated`
ALPHA, RHO01, RHO10 = 0.1, 0.2, 0.1
log, sim = simulate_with_config(rated, alpha=ALPHA, rho01=RHO01, rho10=RHO10, seed=0, dataset="ultrafeedback")
print(summarize_log(log.filter(pl.col("split") != "test")))  # the observational part: train + val rows

# %% [markdown]
# `summarize_log` is what `causalrm validate` prints; we summarised the train + val rows, the observational part
# of the log (the 400 test rows are clean and fully observed by construction: they are the evaluation set).
# Note its warning: the simulation-only columns are there for evaluation, never for training. Here is what the
# product sees, next to what only the simulation knows:

# %%
VISIBLE = ["response_id", "split", "observed", "feedback"]
HIDDEN = ["rating", "true_propensity", "true_label"]
log.select(*VISIBLE, *HIDDEN).head(10)

# %% [markdown]
# ## 3. Who gets observed? Selection bias
#
# The observation rate rises steeply with the rating: with $\alpha = 0.1$ a response rated 10 is thousands of
# times more likely to receive feedback than one rated 1 ($\alpha^{-4} = 10^4$ before the cap at $p = 1$). Bars: the realised share of observed rows per
# rating level (train + val rows); line: the propensity $p$ the simulation used.

# %%
tv = log.filter(pl.col("split") != "test")  # the observational part of the log (train + val)
by_level = (tv.group_by("rating")
              .agg(rows=pl.len(), observed_rate=pl.col("observed").mean(),
                   propensity=pl.col("true_propensity").mean())
              .sort("rating"))
fig = go.Figure()
fig.add_bar(x=by_level["rating"], y=by_level["observed_rate"], name="observed share (realised)")
fig.add_scatter(x=by_level["rating"], y=by_level["propensity"], mode="lines+markers", name="propensity p")
fig.add_vline(x=sim.label_threshold, line_dash="dot", annotation_text="r* = 1 to the right")
fig.update_layout(title=f"Observation rate by rating (alpha = {ALPHA})", xaxis_title="rating",
                  yaxis_title="P(observed)", height=380)
fig.show()

# %% [markdown]
# The knob $\alpha$ sets how strong the selection is. The paper's grid runs from 0.5 (mild) to 0.005
# (extreme). Simulating is cheap, so let us look at the propensity curve for a few values:

# %%
curves = []
for alpha in (1.0, 0.5, 0.1, 0.02):
    lg = simulate(rated, alpha=alpha, seed=0)
    curves.append(lg.filter(pl.col("split") != "test")
                    .group_by("rating").agg(propensity=pl.col("true_propensity").mean())
                    .with_columns(alpha=pl.lit(str(alpha))))
curves = pl.concat(curves).sort("alpha", "rating")
fig = px.line(curves, x="rating", y="propensity", color="alpha", markers=True, log_y=True,
              title="Propensity by rating for several alpha (mean observation rate fixed at 20%)")
fig.update_layout(height=380)
fig.show()

# %% [markdown]
# ## 4. What does the feedback say? Label noise
#
# Among observed rows, compare the logged `feedback` with the `true_label`. The realised flip rates are close
# to the ones we set, but look at the counts: with strong selection there are very few observed **true
# negatives** at all, so $\rho_{10}$ rests on a handful of rows.

# %%
obs = tv.filter(pl.col("observed") == 1)
confusion = (obs.group_by("true_label", "feedback").len()
                .pivot(on="feedback", index="true_label", values="len")
                .sort("true_label").fill_null(0))
print("observed train/val rows: counts by true_label (rows) and feedback (columns)")
print(confusion)
s = simulation_summary(log)
print(f"realised rho01 = {s['rho01_hat']:.3f} (set {RHO01}) over {s['n_observed_pos']} observed true positives")
rho10_text = "n/a" if s["rho10_hat"] is None else f"{s['rho10_hat']:.3f}"
print(f"realised rho10 = {rho10_text} (set {RHO10}) over {s['n_observed_neg']} observed true negatives")

# %% [markdown]
# ## 5. Label balance: observed versus true
#
# Three numbers a naive analysis would confuse: the share of truly good responses among *all* impressions, among
# the *observed* ones, and the share of *positive feedback*. Selection inflates the second; noise pulls the third
# back towards 50/50 a little.

# %%
balance = pl.DataFrame({
    "quantity": ["P(r*=1), all train/val impressions", "P(r*=1 | observed)", "P(r=1 | observed): feedback"],
    "positive share": [tv["true_label"].mean(), obs["true_label"].mean(), obs["feedback"].mean()],
})
fig = px.bar(balance, x="quantity", y="positive share", text_auto=".2f", range_y=[0, 1],
             title="Label balance: the observed rows are not a sample of the impressions")
fig.update_layout(height=360)
fig.show()


# %% [markdown]
# ## 6. A naive reward model learns the wrong thing
#
# The **naive** reward model minimises $\frac1N\sum_i o_i\,\ell(\hat r_i, r_i)$: it fits the rows that have
# feedback as if they were a random sample with clean labels. The **oracle** fits $\ell(\hat r_i, r^*_i)$ on
# every training row: the ceiling no real log can reach. Both use the same MLP head on the same embeddings
# (`causalrm.workflows.orchestrate.fit_log`), are early-stopped on their own validation estimate, and are scored on the
# clean test split.
#
# We do this twice:
#
# - with the **real** GPT-4 ratings. MiniLM embeddings carry little of what GPT-4 rewards (METHOD.md, "Signal
#   strength": even the oracle reaches only AUROC ≈ 0.7 / R² ≈ 0.1 here), so differences are small next to
#   the sampling noise; and selection on the rating is then partly *unobserved* selection given $x$;
# - with **teacher** ratings (`rating="teacher"`): the same texts and embeddings, but the rating is a fixed random
#   function of the embedding. Now the signal is strong and fully contained in $x$, so we can *see* what the
#   bias does. Teacher ratings are not real judgments; they are a controlled experiment on real inputs.

# %%
rows, scored = [], {}
for mode in ("real", "teacher"):
    lg = simulate(rated, alpha=ALPHA, rho01=RHO01, rho10=RHO10, rating=mode, embeddings=X, seed=0)
    scores = fit_scores(lg, X, ["naive", "oracle"], FitConfig(seed=0, **TRAIN))  # reward logits of every row
    test_log, test = lg.filter(pl.col("split") == "test"), (lg["split"] == "test").to_numpy()
    rows += metric_rows(lg, scores, n_boot=N_BOOT, ratings=mode,
                        **{"true P(good) on test": float(test_log["true_label"].mean())})
    scored.update({(mode, method): (test_log, sigmoid(z[test])) for method, z in scores.items()})
pl.DataFrame(rows)

# %% [markdown]
# Read the table: the naive model overestimates how good responses are (its mean predicted preference is above
# the true share), because the rows it learned from were selected for being good. Its ranking (AUROC) is also
# clearly worse than the oracle's; with the real ratings it is close to chance (0.5). Where does it go wrong?
# Split the clean test rows into five bins by rating and compare the mean predicted preference with the true
# share of good responses in each bin:

# %%
curves = []
for (mode, method), (test_log, pred) in scored.items():
    rating = test_log["rating"].to_numpy()
    bins = equal_count_bins(rating, 5)  # five equal-count bins by rating
    df = pl.DataFrame({"bin": bins, "rating": rating, "pred": pred, "truth": test_log["true_label"]})
    agg = df.group_by("bin").agg(pl.col("rating").mean(), pl.col("pred").mean(), pl.col("truth").mean())
    curves.append(agg.with_columns(ratings=pl.lit(mode), method=pl.lit(method)))
    if method == "oracle":
        curves.append(agg.with_columns(pred=pl.col("truth"), ratings=pl.lit(mode), method=pl.lit("truth")))
curves = pl.concat(curves).sort("ratings", "method", "bin")
fig = px.line(curves, x="rating", y="pred", color="method", facet_col="ratings", markers=True,
              labels={"pred": "mean P(good)", "rating": "mean rating in bin"},
              title="Predicted preference by rating bin on the clean test split")
fig.update_xaxes(matches=None)
fig.update_layout(height=400)
fig.show()

# %% [markdown]
# The naive curve is far too flat. The low-rated responses, which were hardly ever observed, are scored almost
# as high as the best ones: naive overrates exactly the responses it never saw feedback on, and barely separates
# good from bad. The oracle follows the truth much more closely with teacher ratings, and only loosely with the
# real ones (the weak signal of MiniLM embeddings). A policy optimised against the naive reward would be told
# that bad responses are nearly as good as good ones.
#
# The next notebooks take the two distortions apart: **02** estimates who gets observed (propensities), **03**
# what the feedback says (flip rates and the noise-corrected loss), **04** puts them together in CausalRM and
# **05** tries it on a real feedback log.
#
# ## Exercises
#
# 1. Rerun with `ALPHA = 0.5` (the paper's mildest) and `ALPHA = 0.02`. How do the label balance and the naive
#    model's mean predicted preference move? Is there a value of $\alpha$ at which naive is as good as oracle?
# 2. Set `RHO01 = RHO10 = 0`: only selection bias is left. Is the naive model still wrong? Then set `ALPHA = 1.0`
#    with the flip rates back on: only noise is left. Which of the two hurts the ranking (AUROC) and which the
#    calibration (MSE)?
# 3. With `rating="teacher"`, add `snr=1.0` to `simulate` (a noisy teacher). How far does the oracle fall?
# 4. Try `load_rated("wildbench")` (15k responses, no prompt text, its own group split). Does the larger sample
#    change the picture for the real ratings?
# 5. Think about a product you know: which signals behave like `feedback` here (thumbs, copy, regenerate,
#    dwell time)? In which direction is each selected, and how noisy is it?
