# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Real feedback: oasst1's emoji reactions
#
# **What you will learn**
#
# - what a *real* observational feedback log looks like: OpenAssistant (oasst1) assistant replies, with the
#   volunteers' 👍/👎 reactions as feedback and their crowd quality labels as gold;
# - how to check, with data, whether the feedback is selected and noisy;
# - how to run CausalRM on such a log with an honest protocol (held-out conversations, a small audited subset for
#   the flip rates, evaluation against gold on held-out rows only);
# - what the method's assumptions buy here, and where they may fail.

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

from causalrm.data.datasets import load_oasst1_log
from causalrm.data.validate import summarize_log
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.errors import InputError
from causalrm.nuisances.flip_rates import FlipRateEstimator
from causalrm.nuisances.fit import fit_nuisances
from causalrm.config import FitConfig
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.teaching import equal_count_bins, error_bars, fit_scores, metric_rows, setup_notebook

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. The log
#
# One row per assistant message of the oasst1 English validation split (1,241 impressions). `observed` = 1 when
# the message received at least one 👍 or 👎; `feedback` = 1 when 👍 outnumber 👎 (ties count as 0).
# `gold_label` = 1 when the crowd's mean *quality* label is above its median. Read the bundled data's README for
# every detail (`data/README.md`).

# %%
log = load_oasst1_log()
X = embed_log(log, Embedder(progress=False))
print(summarize_log(log))
log.select(pl.col("prompt").str.slice(0, 40), pl.col("response").str.slice(0, 40), "thumbs_up", "thumbs_down",
           "observed", "feedback", "gold_score", "gold_label").head(5)

# %% [markdown]
# Logs stored as **chat transcripts** read the same way. `data/oasst1_chat.jsonl` holds 200 of these rows in the
# OpenAI / Hugging Face chat format, a `messages` list of `{"role", "content"}` turns ending with the rated assistant
# message. `read_log` makes that message the `response`, renders the turns before it into a readable `prompt` (what
# the MiniLM encoder sees) and keeps them as JSON in `context` (what a chat template needs:
# `causalrm.data.chat.conversation(context, response)`). Malformed conversations are one error line naming the row.

# %%
from causalrm.data.chat import conversation
from causalrm.data.datasets import data_dir
from causalrm.data.io.readers import read_log

chat_log = read_log(data_dir() / "oasst1_chat.jsonl")
print(summarize_log(chat_log).chat)  # conversations, multi-turn contexts, system prompts
row = chat_log.filter(pl.col("context").str.count_matches('"role"') > 1).row(0, named=True)  # a second turn
print(row["prompt"][:300], "...")
[m["role"] for m in conversation(row["context"], row["response"])]

# %% [markdown]
# ## 2. Is the feedback selected?
#
# Compare the observation rate across crowd-quality bins and across conversation depth (0 = first reply,
# 2 = reply to a follow-up, ...). If reactions were given at random, both would be flat.

# %%
gold = log.filter(pl.col("gold_score").is_not_null())
q = gold["gold_score"].to_numpy()
bins = equal_count_bins(q, 5)  # quality quintiles
by_quality = (gold.with_columns(quintile=pl.Series(bins + 1))
                  .group_by("quintile").agg(pl.len(), pl.col("gold_score").mean(),
                                            observed_rate=pl.col("observed").mean(),
                                            positive_feedback=pl.col("feedback").mean())
                  .sort("quintile"))
by_depth = (log.group_by("depth").agg(pl.len(), observed_rate=pl.col("observed").mean(),
                                      positive_feedback=pl.col("feedback").mean()).sort("depth"))
fig = px.bar(by_quality, x="quintile", y=["observed_rate", "positive_feedback"], barmode="group",
             title="By crowd-quality quintile: share observed, and share of positive feedback when observed")
fig.update_layout(height=360)
fig.show()
by_depth

# %% [markdown]
# Here the *observation* depends more on position (first replies get more reactions) than on quality, while the
# *content* of the feedback follows quality closely. Selection on position is visible in $x$ only to the extent
# the prompt text reveals it; everything the embedding cannot see (time of day, who was browsing, the order in
# which replies were shown) is unmeasured.
#
# ## 3. Is the feedback noisy?
#
# Treat the gold label as the truth for a moment and read off the implied flip rates on observed rows (a
# `FlipRateEstimator` with `method="gold"` does exactly that).

# %%
obs_gold = log.filter((pl.col("observed") == 1) & pl.col("gold_label").is_not_null())
print(obs_gold.group_by("gold_label", "feedback").len().pivot(on="feedback", index="gold_label", values="len")
              .sort("gold_label"))
all_gold = FlipRateEstimator(method="gold", n_bootstrap=TRAIN["flip_bootstrap"]).fit(
    None, log["feedback"].to_numpy(), log["observed"].to_numpy(), gold_label=log["gold_label"].to_numpy())
print("implied rho01 = {:.3f} (95% CI {:.3f} to {:.3f}), rho10 = {:.3f} (95% CI {:.3f} to {:.3f})".format(
    all_gold.rho01_, *all_gold.ci_["rho01"], all_gold.rho10_, *all_gold.ci_["rho10"]))

# %% [markdown]
# Replies the crowd rated well rarely end up with more 👎 than 👍 ($\hat\rho_{01}$ small), but about half of
# the replies below the crowd's median still collect more 👍 than 👎 ($\hat\rho_{10}$ large). Part of that is
# not noise at all: "better than the median reply" (gold) and "worth a thumbs-up" (feedback) are different
# questions. The correction will treat the difference as noise and push predictions towards the gold
# definition.
#
# ## 4. An honest protocol
#
# - **Held-out conversations.** 30% of the conversation trees form the test split: the model never sees their
#   rows, and their gold labels are used only to evaluate.
# - **A small audit.** On the remaining rows, gold is kept on 20% only (as if a team had audited them); it serves
#   to estimate the flip rates (`flip_method="gold"`). The rest of the gold is hidden.
# - Train / val are split by prompt inside `fit_log`; early stopping uses each method's own estimate on val.

# %%
rng = np.random.default_rng(0)
trees = log["message_tree_id"].unique().sort().to_numpy()
test_trees = rng.choice(trees, size=int(0.3 * len(trees)), replace=False)
is_test = log["message_tree_id"].is_in(test_trees.tolist()).to_numpy()
audited = (~is_test) & (rng.random(log.height) < 0.2)
fit_log_df = log.with_columns(
    # null split = let fit_log split train / val by prompt; "test" rows are never read in fitting
    split=pl.when(pl.Series(is_test)).then(pl.lit("test")).otherwise(pl.lit(None, dtype=pl.String)),
    gold_label=pl.when(pl.Series(audited)).then(pl.col("gold_label")).otherwise(None),
)
test_log = log.filter(pl.Series(is_test))  # full gold, evaluation only
print(f"test rows {is_test.sum()} ({len(test_trees)} conversations); audited rows {audited.sum()}; "
      f"audited and observed {int((audited & (log['observed'] == 1).to_numpy()).sum())}")

# %% [markdown]
# The nuisances first: propensity diagnostics, and the flip rates from the audit and from anchors.

# %%
config = FitConfig(flip_method="gold", seed=0, **TRAIN)
METHODS = ["naive", "ips", "denoise", "causalrm-ips", "causalrm-dr"]
nuisances = fit_nuisances(fit_log_df, X, config, methods=METHODS)
d = nuisances.propensity_model.diagnostics_
print(f"propensity: AUC(o) {d.auc:.3f}, ECE {d.ece:.3f}, ESS {d.ess:.0f} of {d.n_observed} observed rows, "
      f"max weight {d.max_weight:.2f}")
print("flip rates from the audit:   rho01 = {:.3f} (CI {:.3f} to {:.3f}), rho10 = {:.3f} (CI {:.3f} to {:.3f})"
      .format(nuisances.rho01, *nuisances.rho_ci["rho01"], nuisances.rho10, *nuisances.rho_ci["rho10"]))
print("flip-rate gate:", nuisances.gates["flip_rates"].verdict)
rows = nuisances.rows
try:
    anchors = FlipRateEstimator(n_bootstrap=TRAIN["flip_bootstrap"]).fit(
        X[rows], fit_log_df["feedback"].to_numpy()[rows], fit_log_df["observed"].to_numpy()[rows])
    print("flip rates from anchors:     rho01 = {:.3f}, rho10 = {:.3f}, proxy AUC {:.3f}".format(
        anchors.rho01_, anchors.rho10_, anchors.diagnostics_["proxy"]["oof_auc"]))
    for w in anchors.diagnostics_["warnings"]:
        print("  warning:", w)
except InputError as err:  # the estimator refuses rates that add up to 1 or more
    print("anchors refused:", err)

# %% [markdown]
# With 72% of impressions observed, the weights $1/\hat p$ stay small: selection can shift the estimate only a
# little here (the paper's simulations observe 20%). The anchor estimate of $\rho_{01}$ is about twice the
# audit's, and the estimator warns that its proxy is weak: another sign that the embedding does not separate
# good from bad replies well enough for anchors.
#
# ## 5. Fit and evaluate against gold
#
# Every method shares the nuisances above. Where the flip-rate gate above refuses the audited rates as too
# imprecise (a small audit: read its verdict), a user would label more rows; here the noise-aware methods are
# trained anyway (`force_noise_correction=True`) to show what the correction does with the rates it has.
# As a reference ceiling (the analogue of the oracle), we also train
# `naive` on a log in which every train/val row is "observed" with its *gold* label as feedback: what the same
# model reaches with clean labels on every row.

# %%
scores = fit_scores(fit_log_df, X, METHODS, config.replace(force_noise_correction=True),  # {method: logits}
                    nuisances=nuisances)
gold_log = (log.with_columns(split=fit_log_df["split"], observed=pl.lit(1, dtype=pl.Int8),
                             feedback=pl.col("gold_label").cast(pl.Int8))
               .filter(pl.col("feedback").is_not_null()))
gold_fit = fit_log(gold_log, X[log["gold_label"].is_not_null().to_numpy()], config.replace(method="naive"))
scores["gold ceiling (naive on gold)"] = gold_fit.score(log, X)

table = pl.DataFrame(metric_rows(test_log, {m: z[is_test] for m, z in scores.items()}, n_boot=N_BOOT))
print(f"evaluated on {test_log['gold_label'].is_not_null().sum()} held-out rows with gold; true share of "
      f"gold-positive: {test_log['gold_label'].mean():.3f}")
table

# %%
fig = px.scatter(table, x="method", y="AUROC", **error_bars(table, "AUROC"),
                 title="Held-out AUROC against the crowd gold label (95% bootstrap CIs)")
fig.update_layout(height=380)
fig.show()

# %% [markdown]
# ## 6. What the assumptions buy, and where they may fail
#
# Read the table with its intervals: on about 380 held-out replies the AUROC intervals of all methods overlap,
# and even the gold-trained ceiling is modest with MiniLM embeddings. What can be said:
#
# - **Calibration moves, ranking does not.** Naive predicts roughly the feedback's 73% positive rate, far above
#   the gold share, hence its poor MSE and negative R². The noise-corrected methods (`denoise`, `causalrm-ips`,
#   `causalrm-dr`) bring the mean prediction to about the gold share, but look at their `sd P(good)` column: they
#   predict almost the same value for every reply. With $\hat\rho_{10} \approx 0.55$ the surrogate divides by
#   $1 - \hat\rho_{01} - \hat\rho_{10} \approx 0.4$; what signal the feedback carries about gold quality is
#   then too weak against the noise for early stopping to keep more than the base rate. Their better MSE is that
#   of a well-placed constant, not of a better reward model, and their AUROC is no better than naive's.
# - **Selection is invisible to $x$ here.** AUC(o) ≈ 0.5: the embedding does not predict who reacts, so
#   $\hat p$ is nearly constant, the weights are all about $1/0.72$, and IPS is naive. A product with 1–5%
#   feedback and selection that depends on the response would be in the paper's regime, with large weights and a
#   much larger effect, for better or worse.
#
# The assumptions, one by one:
#
# - **No unmeasured confounding given $x$.** Who reacts depends on position in the conversation, on time, on
#   which volunteers were online, on the reply's rank among siblings: much of this is not in the embedding of
#   (prompt, response). IPS can only correct selection that $x$ explains; its AUC(o) above says how little it
#   explains.
# - **Class-conditional noise.** The noise model says a flip depends on the true class only. Here, ties are
#   coded as 0, a 👍 may reward tone or length rather than quality, and a reply with many readers has more
#   chances to collect a 👎: flips almost certainly depend on $x$. The correction is then only approximately
#   right.
# - **$\rho_{01} + \rho_{10} < 1$ and well estimated.** The audit gives a direct estimate, but from about a hundred
#   observed rows; the anchor estimates disagree with it. The correction divides by $1 - \rho_{01} - \rho_{10}$:
#   errors in the rates are amplified.
# - **The gold label is itself a crowd mean.** `gold_score` averages a few volunteers' judgments (`gold_count`);
#   `gold_label` thresholds it at the median. It is noisy, and it answers a different question from the one
#   users answer with 👍. "Better against gold" means "closer to the crowd's quality rating", no more.
# - **Overlap** ($p(x) > 0$) holds comfortably here; it is the one assumption this log satisfies well.

# %%
print(log["gold_count"].value_counts().sort("gold_count"))

# %% [markdown]
# ## Exercises
#
# 1. Change the audit share from 20% to 5% and 50%. How do the flip-rate intervals and the CausalRM results move?
# 2. Use `flip_method="anchor-quantile"` (no audit). Does training still behave? What does the estimator warn?
# 3. Use `helpfulness_score` instead of `gold_score` as the gold (threshold it at its median). Do the conclusions
#    change?
# 4. Drop the deleted messages (`deleted == True`) and the ties (`thumbs_up == thumbs_down`) before fitting.
#    Which assumption does each of these filters protect?
# 5. Include the earlier turns: set `prompt` to `context + prompt` and re-embed with `embed_log` (about a minute
#    on CPU, then cached). Does the propensity model's AUC(o) go up? Why would it?
# 6. The library's own real-feedback benchmark uses a different protocol (held-out prompt groups, anchor or
#    fixed flip rates, an oracle trained on gold): run `causalrm bench --dataset oasst1 --seeds 0,1,2` (or
#    `causalrm.workflows.bench.run_bench(BenchConfig(dataset="oasst1"))`) and compare its conclusions with yours.
