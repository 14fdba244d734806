# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Gold audits: how many labels do the intervals need?
#
# **What you will learn**
#
# - how `causalrm audit` chooses the rows to label: strata by feedback and by the proxy and propensity scores,
#   and a known *inclusion probability* for every proposed row (`causalrm.evaluation.audit`);
# - why the labelled rows must be weighted by 1 / inclusion probability, for the flip rates and for the models'
#   metrics;
# - how wide the intervals are after 100, 300 and 1,000 labels, shown by simulation: we draw the audit many
#   times on one simulated log, where the truth is known;
# - how an audited verdict (debiased against naive) compares with the verdict on a clean test split.
#
# On a real log there are no clean labels: the anchor flip rates fail where the representation is weak, and no
# one can say whether a debiased model is better. A few hundred audited labels settle both. Here the "auditor"
# is the simulation's clean label, so every estimate can be checked against the truth.

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
import plotly.io as pio
import polars as pl

from causalrm.embeddings.embedder import Embedder, embed_log
from causalrm.evaluation import audit
from causalrm.evaluation.metrics import sigmoid
from causalrm.evaluation.verdicts import labelled_verdict
from causalrm.simulation.simulate import simulate_dataset
from causalrm.workflows.demo import debiased_of
from causalrm.config import FitConfig
from causalrm.workflows.orchestrate import fit_log
from causalrm.workflows.teaching import audited_flip_rates, error_bars, setup_notebook, simulated_audit

SIZES = [100, 300] if FAST else [100, 300, 1000]
DRAWS = 10 if FAST else 100  # audits drawn per size, to see the spread of the estimates

pio.templates.default = "plotly_white"
# Training settings (FitConfig keywords): the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a
# quick version; N_BOOT bootstrap resamples for confidence intervals. It also sets polars' table display.
TRAIN, N_BOOT = setup_notebook(FAST)
print("fast mode" if FAST else "full mode", TRAIN)

# %% [markdown]
# ## 1. A log with known truth
#
# The held-out setting of docs/RESULTS.md: UltraFeedback texts with teacher ratings (a known function of the
# embedding), selection $\alpha = 0.2$, flips $\rho_{01} = 0.15$, $\rho_{10} = 0.25$ on observed rows. The
# *realised* flip rates are those of this one log's observed train/val rows: what an audit of it estimates.

# %%
log, _ = simulate_dataset("ultrafeedback", alpha=0.2, rho01=0.15, rho10=0.25, seed=100, rating="teacher")
X = embed_log(log, Embedder(progress=False))
U = audit.auditable_rows(log)  # train/val rows: test rows are never proposed
obs = log[U.tolist()].filter(pl.col("observed") == 1)
realised = {"rho01": float((obs.filter(pl.col("true_label") == 1)["feedback"] == 0).mean()),
            "rho10": float((obs.filter(pl.col("true_label") == 0)["feedback"] == 1).mean())}
print(f"{len(U)} auditable rows, {obs.height} with feedback; realised flip rates {realised}")

# %% [markdown]
# ## 2. The design
#
# `audit.design_strata` fits a propensity model and the proxy $f(x) \approx P(r = 1 \mid x)$ on the auditable
# rows and cuts them into strata: thumbs-up rows (`up:1` … `up:4`, `up:1` the lowest $f$, where flipped
# negatives hide), thumbs-down rows (`down:1` the highest $f$) and rows without feedback (`none:*`, by the
# medians of $\hat p$ and $f$). Half of the audit is spread equally over the feedback strata (for the flip
# rates), half in proportion to each stratum's size (for the whole population). Within a stratum the rows are
# drawn at random, so each row's inclusion probability is exactly $n_h / N_h$. `audit.proposal_table` writes
# the label file; `causalrm audit LOG --n 300 --out labels.csv` does both.

# %%
rows, strata = audit.design_strata(log, X, seed=0)
proposal = audit.proposal_table(log, rows, strata, 300, seed=0)
(proposal.group_by("audit_stratum").agg(proposed=pl.len(), stratum_rows=pl.col("audit_stratum_rows").first(),
                                        inclusion_probability=pl.col("inclusion_probability").first())
         .sort("audit_stratum"))

# %% [markdown]
# The proposal of $N$ rows is the first $N$ rows of the proposal of any larger $N$ under the same seed: label
# from the top, and a later, larger audit extends this one.

# %%
larger = audit.proposal_table(log, rows, strata, 600, seed=0)
print("the 600-row proposal starts with the 300-row one:",
      larger["response_id"].head(300).to_list() == proposal["response_id"].to_list())

# %% [markdown]
# ## 3. Flip rates from the audit, weighted and not
#
# We label each proposed row with its clean label (a human would fill in `gold_label`), merge the labels into
# the log with `audit.merge_labels` (it attaches each labelled row's inclusion probability and stratum), and
# estimate the rates with `FlipRateEstimator(method="gold")`, once with the design's weights and once
# ignoring them. The audit oversamples thumbs-down rows and the suspicious end of each feedback group, so the
# unweighted estimate is biased; the weighted one is not.

# %%
# simulated_audit: the proposal of n rows, labelled with the clean label; audited_flip_rates: merge_labels, then
# FlipRateEstimator(method="gold") on the auditable rows, with or without the design's weights
flips = pl.DataFrame([
    {"n": n, "draw": d, "weighted": w,
     **audited_flip_rates(log, simulated_audit(log, rows, strata, n, seed=d), weighted=w, seed=d)}
    for n in SIZES for d in range(DRAWS) for w in (True, False)])
summary = []
for (n, weighted), g in flips.group_by("n", "weighted"):
    for k in ("rho01", "rho10"):
        err = g[k] - realised[k]
        summary.append({"N": n, "weighted": weighted, "rate": k, "mean error": err.mean(),
                        "within 0.08": (err.abs() < 0.08).mean(),
                        "CI covers": ((g[f"{k}_lo"] <= realised[k]) & (realised[k] <= g[f"{k}_hi"])).mean(),
                        "CI width": (g[f"{k}_hi"] - g[f"{k}_lo"]).mean()})
pl.DataFrame(summary).sort("rate", "weighted", "N")

# %%
fig = px.box(flips.filter(pl.col("weighted")).unpivot(index="n", on=["rho01", "rho10"]), x="n", y="value",
             color="variable", title=f"Weighted gold flip rates over {DRAWS} audits per size (lines: realised)")
for k, dash in (("rho01", "dot"), ("rho10", "dash")):
    fig.add_hline(y=realised[k], line_dash=dash, annotation_text=f"realised {k}")
fig.update_layout(height=380, xaxis_type="category", xaxis_title="audited rows N")
fig.show()

# %% [markdown]
# $\rho_{10}$ is the hard one: it is a share among the *true negatives with feedback*, and under selection on
# quality those are few. On this small log an audit of 1,000 rows takes in every row with feedback (the
# feedback strata are labelled in full), so the rates are exact there and their intervals have width 0; on a
# larger log (exercise 3) the intervals keep shrinking like $1/\sqrt N$.
#
# ## 4. The audited evaluation
#
# Fit `auto` with the 300-row audit merged (flip rates from the audit with `flip_method="gold"`; its choice
# decided on the audited val rows), then compare the kept model with naive on the audit, at each size, and on
# the clean test split, which a real log does not have. The audited estimates are for the whole impression
# population: each labelled row weighs 1 / inclusion probability, and the bootstrap resamples within strata.
# Rows the models were trained on are left out once at least 100 audited held-out rows remain.

# %%
table = simulated_audit(log, rows, strata, max(SIZES), seed=0)
result = fit_log(audit.merge_labels(log, table.head(300)), X, FitConfig(flip_method="gold", seed=0, **TRAIN))
print("auto kept", result.choice["method"], "-", result.choice["reason"][:200])
debiased = debiased_of(result)  # the kept model, or the best debiased candidate when auto kept naive
probs = {m: sigmoid(result.candidates[m].score(log, X)) for m in ("naive", debiased)}
verdicts = [{"evidence": "clean test split", **labelled_verdict(log, probs["naive"], probs[debiased],
                                                                baseline="naive", debiased=debiased,
                                                                n_boot=N_BOOT)}]
for n in SIZES:
    verdicts.append({"evidence": f"audit of {n}", **labelled_verdict(
        audit.merge_labels(log, table.head(n)), probs["naive"], probs[debiased], baseline="naive",
        debiased=debiased, split=result.split, label="gold_label", n_boot=N_BOOT)})
verdicts = pl.DataFrame([{"evidence": v["evidence"], "rows used": v["n"], "R² difference": v["difference"],
                          "lo": v["ci95"][0], "hi": v["ci95"][1]} for v in verdicts])
verdicts

# %%
fig = px.scatter(verdicts, x="evidence", y="R² difference",
                 **error_bars(verdicts, "R² difference", lo="lo", hi="hi"),
                 title=f"{debiased} minus naive: R² difference with its 95% interval")
fig.add_hline(y=0, line_dash="dot")
fig.update_layout(height=380)
fig.show()

# %% [markdown]
# Read the "rows used" column: with 100 and 300 labels fewer than 100 audited rows are held out, so every
# audited row is used (training rows included: they move the difference little); at 1,000 only the held-out
# ones. An audit can say "better" only when its interval excludes 0, and the widths above are what that costs;
# docs/RESULTS.md ("Gold audits") measures them over cells and seeds.
#
# ## Exercises
#
# 1. Ignore the design: merge a label table without `inclusion_probability`, `audit_stratum` and
#    `audit_stratum_rows` (every labelled row then weighs the same). How far do the flip rates and R² move?
# 2. Skip every third proposed row (leave its `gold_label` empty). Which inclusion probabilities does
#    `merge_labels` give the labelled rows, and are the estimates still unbiased? When would they not be?
# 3. Rerun section 3 on WildBench (`simulate_dataset("wildbench", ...)`, about 12,000 auditable rows). Do the
#    interval widths depend on the size of the log, or only on N?
# 4. Set `audit.FLIP_SHARE = 0.8` before drawing. What happens to the flip-rate intervals, and to the
#    evaluation's?
# 5. From the command line: `causalrm audit LOG --n 300 --out labels.csv`, label it, then
#    `causalrm fit LOG --gold labels.csv --flip-method gold --out runs/audited` and
#    `causalrm compare RUN_A RUN_B --gold labels.csv --json compare.json`.
