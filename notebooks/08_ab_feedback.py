# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Learning from A/B votes
#
# **What you will learn**
#
# - what an A/B preference log is (one row per pair of responses, a vote for `a`, for `b`, or none) and how the
#   library reads one, TRL's `prompt` / `chosen` / `rejected` files included (`causalrm.data.pairwise`);
# - how such a log is biased: votes are cast mostly where the difference is clear (selection), and unsure users
#   pick the response shown first (position bias, an asymmetric label noise);
# - why every estimator of the earlier notebooks applies unchanged: a pair's Bradley–Terry logit is
#   $z_a - z_b$ of one pointwise reward model;
# - how to fit naive and the default (`auto`), read what `auto` chose, and judge the result on clean test pairs;
# - how to use the pointwise model the pairs trained: score single responses and pick the best of N.
#
# We simulate the votes on WildBench's responses with teacher scores (a known function of the shipped MiniLM
# embeddings; with the real ratings the ceiling is too low to see anything, METHOD.md "Signal strength"), so
# every estimate can be checked against the truth.

# %%
import os

# Switches. CAUSALRM_FAST=1 (used in CI) shrinks epochs and bootstrap draws so the notebook runs in well under a
# minute; unset it for the full version (a few minutes on a laptop CPU).
FAST = os.environ.get("CAUSALRM_FAST", "0") not in ("", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything needed is bundled; never download
# The models here are tiny: one thread is fastest and never oversubscribes a shared CPU (must be set before
# torch is first imported, hence here).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import plotly.express as px
import plotly.io as pio
import polars as pl

from causalrm import CausalRM, FitConfig, fit_methods
from causalrm.data.datasets import load_rated
from causalrm.data.pairwise import describe, pair_features, position_summary, read_pairs
from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.evaluation.metrics import metrics, sigmoid
from causalrm.export.loading import best_of_n
from causalrm.simulation.pairwise import INDEX_A, INDEX_B, simulate_pairs
from causalrm.workflows.teaching import equal_count_bins, metric_rows, setup_notebook

RHO01, RHO10 = 0.10, 0.30  # P(vote b | a better), P(vote a | b better): the truth of this simulation

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. An A/B log
#
# A product shows two responses to one prompt and asks "which is better?". The log has one row per pair:
# `prompt`, `response_a`, `response_b` and `feedback`: `a`, `b` (or 1 = a, 0 = b), or empty when the user did not
# vote. A tie or a skip is no vote: the Bradley–Terry label has no room for "equally good". Where the log records
# which response was shown first (`shown_first`), reading puts that one in position a, so that "a wins" means
# "the first-shown response wins". `read_pairs` does all this (and `read_log` calls it on such a file);
# `describe` is the line `causalrm validate` prints.

# %%
raw = pl.DataFrame({
    "prompt": ["Sort a list in Python", "Sort a list in Python", "Capital of France?", "Capital of France?"],
    "response_a": ["Use sorted(xs).", "Write a bubble sort.", "Paris.", "Lyon."],
    "response_b": ["Write a bubble sort.", "xs.sort() sorts in place.", "Lyon.", "It is Paris."],
    "feedback": ["a", "tie", "A", ""],
    "shown_first": ["a", "a", "b", "a"],
})
pairs = read_pairs(raw)
print(describe(pairs))
print(pairs.select("prompt", "response_a", "response_b", "feedback", "observed", "shown_first"))

# TRL's preference format: every row is a vote; which of chosen / rejected becomes a is drawn per row (seeded), so
# "a wins" is not constant. Such a file records no display order, so it shows no position bias.
trl = read_pairs(pl.DataFrame({"prompt": ["Capital of France?", "Sort a list in Python"],
                               "chosen": ["Paris.", "Use sorted(xs)."],
                               "rejected": ["Lyon.", "Write a bubble sort."]}))
trl.select("prompt", "response_a", "response_b", "feedback")

# %% [markdown]
# In the third row `shown_first` is `b`: the reader swapped the two responses and the vote, so Lyon (shown first)
# is now `response_a` and the vote for Paris reads as 0 (b).
#
# ## 2. A simulated A/B log with position bias
#
# `simulate_pairs` (`causalrm simulate --pairwise`) turns a rated dataset into an A/B log whose truth we know.
# Each WildBench task's ~15 responses are paired at random within the task (a shown first). The true preference
# is $r^* = 1[s_a > s_b]$ for the teacher scores $s$. A user votes on about a quarter of the train / val pairs,
# more often where $|s_a - s_b|$ is large (`selection`: the vote propensity rises by 1.5 on the logit scale per
# standard deviation of $|\Delta s|$). A vote goes to the first-shown a though b is better with probability
# $\rho_{10}$ = `rho10`, to b though a is better with $\rho_{01}$ = `rho01`. The test pairs are clean and fully
# labelled: they are what we evaluate on, never trained on.

# %%
rated = load_rated("wildbench")  # 15,243 responses to 1,024 tasks; WildBench ships no prompt text
X = embed_log(rated, Embedder(progress=False))  # (n, 384), from the shipped embeddings: nothing is downloaded
log, info = simulate_pairs(rated, rating="teacher", embeddings=X, rho01=RHO01, rho10=RHO10, seed=0,
                           dataset="wildbench")
ia, ib = log[INDEX_A].to_numpy(), log[INDEX_B].to_numpy()  # the rated rows of each pair's two responses
Xp = pair_features(X[ia], X[ib])  # a pair's inputs [x_a, x_b]: the X of an A/B log everywhere
train_val = log.filter(pl.col("split") != "test")  # what a product would have logged
print(describe(train_val))
position = position_summary(train_val)
position

# %%
voted = train_val.filter(pl.col("observed") == 1)
bias = (voted.group_by("true_label").agg(pl.len().alias("votes"), pl.col("feedback").mean().alias("share for a"))
        .with_columns(pl.when(pl.col("true_label") == 1).then(pl.lit("a (shown first) is better"))
                      .otherwise(pl.lit("b is better")).alias("truth"),
                      pl.when(pl.col("true_label") == 1).then(1 - RHO01).otherwise(RHO10).alias("simulated"))
        .sort("truth"))
fig = px.bar(bias, x="truth", y="share for a", text_auto=".2f", hover_data=["votes"],
             title=f"Votes for the first-shown response: {position['for_a']:.0%} of {position['votes']:,} votes")
fig.add_scatter(x=bias["truth"], y=bias["simulated"], mode="markers", marker_symbol="line-ew-open",
                marker_size=40, name="simulated P(vote a)")
fig.update_layout(height=380, yaxis_range=[0, 1])
fig.show()
# selection: the vote rate by fifth of |s_a - s_b| (0 = the closest pairs)
gap = np.abs(train_val["true_score_a"].to_numpy() - train_val["true_score_b"].to_numpy())
(train_val.with_columns(pl.Series("|Δ s| fifth", equal_count_bins(gap, 5)))
    .group_by("|Δ s| fifth").agg(pl.len().alias("pairs"), pl.col("observed").mean().alias("vote rate"))
    .sort("|Δ s| fifth"))

# %% [markdown]
# The bar for "b is better" is $P(\text{vote a} \mid \text{b better}) = \rho_{10}$, the bar for "a is better"
# $1 - \rho_{01}$: with no position bias and no noise they would be 0 and 1. The realised rates
# (`position_summary`'s `rho01`, `rho10`, computed here from the simulation's `true_label`; on a real log from an
# audit's `gold_label`) are close to the simulated ones. The vote rate climbs with $|\Delta s|$: the votes we
# have are the easy pairs.
#
# ## 3. The Bradley–Terry view
#
# The reward model stays pointwise, $z = r(\text{prompt}, \text{response})$, and a pair's logit is
# $d = z_a - z_b$ with $P(\text{a preferred}) = \sigma(d)$ (Bradley–Terry). With $d$ in place of $z$ and, per pair,
# $o$ = voted, $r$ = 1[vote for a], $r^*$ = 1[a truly better], an A/B log *is* an impression log, so each estimator
# of notebooks 02–04 applies unchanged (`causalrm.estimators.losses.pairwise_terms`; METHOD.md, "A/B preference
# logs"):
#
# - **noise**: the vote is a class-conditional noisy copy of $r^*$ with $\rho_{01} = P(\text{vote b} \mid
#   \text{a better})$ and $\rho_{10} = P(\text{vote a} \mid \text{b better})$. With a the first-shown response,
#   $\rho_{10} > \rho_{01}$ *is* the position bias, and the noise-corrected surrogate (`denoise`) removes it
#   with asymmetric rates. The rates come from anchors of a proxy of P(vote a) on $x_a - x_b$ (pairs that are
#   clearly one way), as for thumbs in notebook 03;
# - **selection**: IPS weights each vote by $1 / \hat p$, the cross-fitted probability that the pair received a
#   vote; the nuisance models read a pair as $[x_a - x_b, |x_a - x_b|]$.
#
# We fit naive (plain Bradley–Terry on the votes) and `auto`, the default, which fits its candidates on the same
# nuisances and keeps one only on evidence from the validation votes.
#
# One candidate exists for A/B logs only: the **vote model** (`fcorr-gap`). People vote mostly when the difference is
# clear, so *who* votes is evidence of the reward as well: it models $P(\text{vote} \mid \text{pair}) =
# \sigma(c + \beta |d|)$ with the reward model's own $d$ and fits it jointly with the forward-corrected votes, so the
# unvoted pairs count as close calls. That helps only where votes really follow the reward gap; `auto` admits it
# only where the val pairs' votes are likelier on larger gaps of naive's model (METHOD.md, "The vote model" and step
# 7 of "Choosing with `auto`").

# %%
fits = fit_methods(log, Xp, FitConfig(seed=0, **TRAIN), ["naive", "auto"])
nuis = fits["auto"].nuisances
for k, true in (("rho01", RHO01), ("rho10", RHO10)):
    lo, hi = nuis.rho_ci[k]
    print(f"{k}: estimated {getattr(nuis, k):.3f} [{lo:.3f}, {hi:.3f}] from the anchors; realised "
          f"{position[k]:.3f}; simulated {true:.2f}")
for gate in nuis.gates.values():
    print(f"{gate.name} gate: {gate.verdict}")
# a pair's score is the difference of the pointwise scores of its two responses
d = fits["auto"].score(log, Xp)
z = fits["auto"].score(rated, X)  # the same model on single responses
print("z_a - z_b equals the pair's logit:", np.allclose(d, z[ia] - z[ib], atol=1e-4))

# %% [markdown]
# ## 4. Judged on clean test pairs
#
# Three views of each model on the test split (never voted on, every pair labelled with the truth): **pairwise
# accuracy**, the share of test pairs where $\text{sign}(z_a - z_b)$ agrees with the truth; **AUROC** and **R²**
# of $\sigma(z_a - z_b)$ as P(a better) against the clean preference (the calibration the noise correction is
# for); and the **pointwise AUROC** of the rewards $z$ of the test responses against "true score above the
# median", what a ranking of single responses needs.

# %%
test = log["split"].to_numpy() == "test"
rows = np.unique(np.concatenate([ia[test], ib[test]]))
true_score = np.full(rated.height, np.nan)
true_score[ia], true_score[ib] = log["true_score_a"].to_numpy(), log["true_score_b"].to_numpy()
good = (true_score[rows] > np.median(true_score[rows])).astype(float)
scores = {m: fit.score(log, Xp) for m, fit in fits.items()}
table = (pl.DataFrame(metric_rows(log, scores, n_boot=N_BOOT)).select("method", "AUROC", "R2", "R2 lo", "R2 hi")
         .rename({"AUROC": "pair AUROC", "R2": "pair R2", "R2 lo": "pair R2 lo", "R2 hi": "pair R2 hi"}))
table.with_columns(
    pl.Series("pairwise accuracy", [float(np.mean((scores[m][test] > 0) == (log["true_label"].to_numpy()[test] == 1)))
                                    for m in fits]),
    pl.Series("pointwise AUROC", [metrics(good, sigmoid(fit.score(rated[rows], X[rows])))["auroc"]
                                  for fit in fits.values()]))

# %%
choice = fits["auto"].choice
print("auto's candidates:", ", ".join(fits["auto"].candidates))
print(f"auto kept {choice['method']}: {choice['reason']}")

# %% [markdown]
# `auto` fits its candidates (printed above) on the same nuisances and compares each with naive on the debiased
# estimate of the validation votes, at every corner of the flip-rate intervals and for both propensity models. It
# keeps a correction only on that evidence, else it keeps naive, and says why (METHOD.md, "Choosing with auto").
# Nothing here reads the test pairs. Compare the rows above: a better pairwise accuracy or pointwise AUROC than
# naive on one seed may be the noise of one simulated log (RESULTS.md measures ten seeds; section 6).
#
# ## 5. Scoring single responses: best of N
#
# The model trained on pairs is pointwise: it scores a single response with no partner, so it reranks the N
# responses of a prompt, serves as a TRL reward function, and exports like any run. `CausalRM.from_result` wraps a
# fitted result as the scikit-learn estimator; its `score_texts` is what `load_reward_model(run).score` gives
# after `save`. Here, the first test task's responses, best first, then the best-of-N gain over every test task:
# the true score of the top-scored response minus the task's mean. Votes only ever see differences $z_a - z_b$,
# so the rewards are defined up to a constant shift: compare their order with the true scores, not their values.

# %%
model = CausalRM.from_result(fits["auto"], log, Xp)
task = rated[rows].filter(pl.col("pair_id") == rated[rows]["pair_id"][0])
best, task_scores = best_of_n(model.reward_model_, "", task["response"].to_list())
task_truth = true_score[rows][(rated[rows]["pair_id"] == task["pair_id"][0]).to_numpy()]
print(pl.DataFrame({"reward z": task_scores, "true score": task_truth,
                    "response": [r[:70].replace("\n", " ") for r in task["response"]]}).sort("reward z",
                                                                                             descending=True).head(5))

groups = rated[rows]["pair_id"].to_numpy()
gain = {}
for m, fit in fits.items():
    z_rows = fit.score(rated[rows], X[rows])
    picks = [true_score[rows][groups == g][np.argmax(z_rows[groups == g])] - true_score[rows][groups == g].mean()
             for g in np.unique(groups)]
    gain[m] = float(np.mean(picks))
ceiling = float(np.mean([true_score[rows][groups == g].max() - true_score[rows][groups == g].mean()
                         for g in np.unique(groups)]))
print(f"best-of-N gain over {len(np.unique(groups))} test tasks (true score of the pick minus the task mean): "
      + ", ".join(f"{m} {v:+.3f}" for m, v in gain.items()) + f"; the best response in each task: {ceiling:+.3f}")

# %% [markdown]
# ## 6. What the correction buys, and where it does not
#
# Read the tables of this notebook against the ten-seed tables in [RESULTS.md, "A/B preference
# logs"](../docs/RESULTS.md), which run this very cell
# (WildBench, teacher scores, ρ01 0.10, ρ10 0.30, selection 1.5) with the full training:
#
# - **The rates are found.** The anchors on $x_a - x_b$ recover the position bias, a little high on average over
#   the ten seeds (compare the estimate printed in section 3 with the realised rates); `denoise`'s
#   $\sigma(z_a - z_b)$ then estimates P(a truly better), not P(vote a).
# - **Position bias alone, the correction helps.** Where the votes are at random and the first-shown bias is the
#   only distortion, the corrected estimators rank better than naive over ten seeds (the second table there).
# - **With selection on $|\Delta s|$ as well, it neither helps nor hurts** pairwise accuracy or pointwise AUROC:
#   the naive Bradley–Terry ranking is already consistent under noise that does not depend on the content, and the
#   vote propensity on $[x_a - x_b, |x_a - x_b|]$ sees selection on $|w \cdot (x_a - x_b)|$ only weakly, so IPS
#   changes little. `causalrm-dr` is worse there.
# - **It adds no information.** The oracle, trained on the clean preference of every train pair, ranks far better
#   than anything trained on ~1,500 noisy votes: that gap is the number and quality of the votes, which no
#   reweighting recovers.
# - **Not modelled:** a position bias that depends on the content (users defer to the first answer only when both
#   are long), and ties read as half a win. Where the product shows some pairs in both orders, their votes give
#   the rates without the anchors' assumption (METHOD.md, "A/B preference logs": swapped-order duplicates).

# %% [markdown]
# ## Exercises
#
# 1. Set `selection=0` and `rho01=0` in `simulate_pairs` (position bias is then the only distortion). What does
#    `auto` keep, and how do its pairwise accuracy and R² compare with naive's? Repeat with seeds 1 and 2.
# 2. Remove the position bias (`rho01 = rho10 = 0.2`, symmetric noise). Does the pairwise accuracy of naive
#    change? Does its R² of σ(z_a − z_b) as P(a better)? Why would one move and not the other?
# 3. Add `"oracle"` to the methods of section 3. How large is the gap between it and the best method trained on
#    votes, and how does it change with `vote_rate=0.6`?
# 4. Write the simulated train / val pairs as a TRL file (`prompt`, `chosen`, `rejected` from the votes) and read
#    it back with `read_pairs`. What is lost: which columns, and can the position bias still be estimated?
# 5. Give the flip rates by hand (`FitConfig(rho01=RHO01, rho10=RHO10, method="denoise", ...)`) instead of
#    estimating them. Does the model change much? Then give them wrong (`rho10=0.1`): which way does σ(z_a − z_b)
#    move?
