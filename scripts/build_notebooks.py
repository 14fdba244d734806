"""Build the teaching notebooks in ``notebooks/`` from the cell sources below (stored without outputs).

    python scripts/build_notebooks.py            # rewrite notebooks/*.ipynb
    python scripts/build_notebooks.py --check    # exit 1 if a committed notebook differs from this source

The ``.ipynb`` files are committed; edit the cells here and rerun, so that prose and code stay reviewable as Python.
Cell ids are deterministic (``<notebook>-<index>``) so that rebuilding an unchanged notebook changes nothing.
Every notebook reads ``CAUSALRM_FAST=1`` in its first code cell (fewer epochs, seeds and bootstrap draws, for CI:
``CAUSALRM_FAST=1 pytest --nbmake notebooks/``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))


def setup_cell(extra_imports: str) -> nbformat.NotebookNode:
    """The first code cell of every notebook: the CAUSALRM_FAST switch, thread settings, imports."""
    head = '''
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
    '''
    tail = '''

    pio.templates.default = "plotly_white"
    pl.Config.set_tbl_rows(20)
    pl.Config.set_fmt_str_lengths(60)

    # Training settings: the paper's (Adam, lr 5e-4, batch 512, up to 600 epochs, patience 30) or a quick version.
    TRAIN = (dict(max_epochs=40, patience=8, propensity_folds=3, flip_bootstrap=20) if FAST
             else dict(max_epochs=600, patience=30, propensity_folds=5, flip_bootstrap=200))
    N_BOOT = 50 if FAST else 500  # bootstrap resamples for confidence intervals
    print("fast mode" if FAST else "full mode", TRAIN)
    '''
    return code(textwrap.dedent(head).strip("\n") + "\n" + textwrap.dedent(extra_imports).strip("\n")
                + textwrap.dedent(tail).rstrip())


# ======================================================================================================================
# 01 observational feedback
# ======================================================================================================================
def nb01() -> list[nbformat.NotebookNode]:
    return [
        md(r"""
        # 01 · Observational feedback: what an impression log is and why naive reward models learn the wrong thing

        **What you will learn**

        - what an *impression log* is: one row per response shown, with feedback on only a few rows;
        - the paper's semi-synthetic protocol (`causalrm.simulate`), applied to real UltraFeedback responses:
          selection bias (who leaves feedback) and label noise (what the feedback says);
        - how the observed labels differ from the truth: observation rate by rating level, flip rates, label balance;
        - that a *naive* reward model, fitted to the rows with feedback, learns the wrong thing, and why the effect is
          easiest to see with *teacher* ratings on the small CPU embeddings bundled here.

        Notation (used everywhere in this project): $x$ an impression's embedding, $o$ = `observed`,
        $r$ = `feedback` (noisy), $r^*$ = `true_label` (clean), $p(x) = P(o=1 \mid x)$ = `propensity`,
        $\rho_{01} = P(r=0 \mid r^*=1)$, $\rho_{10} = P(r=1 \mid r^*=0)$.
        """),
        setup_cell('''
        from causalrm.datasets import load_rated
        from causalrm.embeddings import Embedder, embed_log
        from causalrm.evaluation import evaluate_scores, sigmoid
        from causalrm.pipeline import FitConfig, fit_log
        from causalrm.simulate import simulate, simulate_with_config, simulation_summary
        from causalrm.validate import summarize_log
        '''),
        md(r"""
        ## 1. The data: rated responses

        UltraFeedback responses, each with a GPT-4 overall rating from 1 to 10 (2,398 rows; the source's own
        train/test split). A rated dataset is *not* feedback: every row has a rating. We will turn it into the kind
        of log a product collects.
        """),
        code('''
        rated = load_rated("ultrafeedback")
        print(rated.shape)
        rated.select("prompt", "response", "rating", "split").head(3)
        '''),
        code('''
        fig = px.histogram(rated, x="rating", color="split", barmode="group", nbins=19,
                           title="UltraFeedback: GPT-4 overall rating per response")
        fig.update_layout(height=350)
        fig.show()
        '''),
        md(r"""
        ## 2. From ratings to an impression log

        A chat product logs every response it shows (an **impression**). For a few of them the user leaves feedback
        (thumbs, copy, upvote). So a real log has, per row: the prompt, the response, `observed` (did feedback
        arrive?) and `feedback` (what it said, null when not observed).

        The paper's protocol (METHOD.md, "The paper's experiment") makes such a log from a rated dataset:

        1. split train / val 80/20 by prompt; the dataset's own **test** split stays clean and fully observed;
        2. **selection**: rescale the rating to $s\in[1,5]$, set $p = \alpha^{5-s}$ and scale so that 20% of rows are
           observed on average; $o \sim \mathrm{Bernoulli}(p)$. Small $\alpha$ = strong bias towards high ratings;
        3. **labels**: $r^* = 1[\text{rating} > \text{median rating level}]$;
        4. **noise** on observed rows: a true positive is logged as 0 with probability $\rho_{01}$, a true negative
           as 1 with probability $\rho_{10}$.

        The simulation also keeps the columns a real product never sees (`true_label`, `true_score`,
        `true_propensity`): we use them *only* to measure what went wrong.

        The embeddings are the bundled all-MiniLM-L6-v2 vectors (shipped with the repository, so this is instant).
        """),
        code('''
        X = embed_log(rated, Embedder(progress=False))  # (n, 384) float32, rows aligned with `rated`
        ALPHA, RHO01, RHO10 = 0.1, 0.2, 0.1
        log, sim = simulate_with_config(rated, alpha=ALPHA, rho01=RHO01, rho10=RHO10, seed=0, dataset="ultrafeedback")
        print(summarize_log(log.filter(pl.col("split") != "test")))  # the observational part: train + val rows
        '''),
        md(r"""
        `summarize_log` is what `causalrm validate` prints; we summarised the train + val rows, the observational part
        of the log (the 400 test rows are clean and fully observed by construction: they are the evaluation set).
        Note its warning: the simulation-only columns are there for evaluation, never for training. Here is what the
        product sees, next to what only the simulation knows:
        """),
        code('''
        VISIBLE = ["response_id", "split", "observed", "feedback"]
        HIDDEN = ["rating", "true_propensity", "true_label"]
        log.select(*VISIBLE, *HIDDEN).head(10)
        '''),
        md(r"""
        ## 3. Who gets observed? Selection bias

        The observation rate rises steeply with the rating: with $\alpha = 0.1$ a response rated 10 is thousands of
        times more likely to receive feedback than one rated 1 ($\alpha^{-4} = 10^4$ before the cap at $p = 1$). Bars: the realised share of observed rows per
        rating level (train + val rows); line: the propensity $p$ the simulation used.
        """),
        code('''
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
        '''),
        md(r"""
        The knob $\alpha$ sets how strong the selection is. The paper's grid runs from 0.5 (mild) to 0.005
        (extreme). Simulating is cheap, so let us look at the propensity curve for a few values:
        """),
        code('''
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
        '''),
        md(r"""
        ## 4. What does the feedback say? Label noise

        Among observed rows, compare the logged `feedback` with the `true_label`. The realised flip rates are close
        to the ones we set, but look at the counts: with strong selection there are very few observed **true
        negatives** at all, so $\rho_{10}$ rests on a handful of rows.
        """),
        code('''
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
        '''),
        md(r"""
        ## 5. Label balance: observed versus true

        Three numbers a naive analysis would confuse: the share of truly good responses among *all* impressions, among
        the *observed* ones, and the share of *positive feedback*. Selection inflates the second; noise pulls the third
        back towards 50/50 a little.
        """),
        code('''
        balance = pl.DataFrame({
            "quantity": ["P(r*=1), all train/val impressions", "P(r*=1 | observed)", "P(r=1 | observed): feedback"],
            "positive share": [tv["true_label"].mean(), obs["true_label"].mean(), obs["feedback"].mean()],
        })
        fig = px.bar(balance, x="quantity", y="positive share", text_auto=".2f", range_y=[0, 1],
                     title="Label balance: the observed rows are not a sample of the impressions")
        fig.update_layout(height=360)
        fig.show()
        '''),
        md(r"""
        ## 6. A naive reward model learns the wrong thing

        The **naive** reward model minimises $\frac1N\sum_i o_i\,\ell(\hat r_i, r_i)$: it fits the rows that have
        feedback as if they were a random sample with clean labels. The **oracle** fits $\ell(\hat r_i, r^*_i)$ on
        every training row: the ceiling no real log can reach. Both use the same MLP head on the same embeddings
        (`causalrm.pipeline.fit_log`), are early-stopped on their own validation estimate, and are scored on the
        clean test split.

        We do this twice:

        - with the **real** GPT-4 ratings. MiniLM embeddings carry little of what GPT-4 rewards (METHOD.md, "Signal
          strength": even the oracle reaches only AUROC ≈ 0.7 / R² ≈ 0.1 here), so differences are small next to
          the sampling noise; and selection on the rating is then partly *unobserved* selection given $x$;
        - with **teacher** ratings (`rating="teacher"`): the same texts and embeddings, but the rating is a fixed random
          function of the embedding. Now the signal is strong and fully contained in $x$, so we can *see* what the
          bias does. Teacher ratings are not real judgments; they are a controlled experiment on real inputs.
        """),
        code('''
        def fit_and_score(lg, method):
            """Fit `method` on the log `lg` and return the reward logits of every row."""
            result = fit_log(lg, X, FitConfig(method=method, seed=0, **TRAIN))
            return result.score(lg, X)

        rows, scored = [], {}
        for mode in ("real", "teacher"):
            lg = simulate(rated, alpha=ALPHA, rho01=RHO01, rho10=RHO10, rating=mode, embeddings=X, seed=0)
            for method in ("naive", "oracle"):
                z = fit_and_score(lg, method)
                ev = evaluate_scores(lg, z, n_boot=N_BOOT)
                m, ci = ev["metrics"], ev["ci"]
                test = (lg["split"] == "test").to_numpy()
                scored[mode, method] = (lg.filter(pl.col("split") == "test"), sigmoid(z[test]))
                rows.append({"ratings": mode, "method": method, "AUROC": m["auroc"],
                             "AUROC 95% CI": f"{ci['auroc'][0]:.3f} to {ci['auroc'][1]:.3f}",
                             "R2": m["r2"], "MSE": m["mse"],
                             "mean predicted P(good)": float(sigmoid(z[test]).mean()),
                             "true P(good) on test": float(lg.filter(pl.col("split") == "test")["true_label"].mean())})
        pl.DataFrame(rows)
        '''),
        md(r"""
        Read the table: the naive model overestimates how good responses are (its mean predicted preference is above
        the true share), because the rows it learned from were selected for being good. Its ranking (AUROC) is also
        clearly worse than the oracle's; with the real ratings it is close to chance (0.5). Where does it go wrong?
        Split the clean test rows into five bins by rating and compare the mean predicted preference with the true
        share of good responses in each bin:
        """),
        code('''
        curves = []
        for (mode, method), (test_log, pred) in scored.items():
            rating = test_log["rating"].to_numpy()
            rank = np.argsort(np.argsort(rating, kind="stable"), kind="stable")
            bins = rank * 5 // len(rating)  # five equal-count bins by rating
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
        '''),
        md(r"""
        The naive curve is far too flat. The low-rated responses, which were hardly ever observed, are scored almost
        as high as the best ones: naive overrates exactly the responses it never saw feedback on, and barely separates
        good from bad. The oracle follows the truth much more closely with teacher ratings, and only loosely with the
        real ones (the weak signal of MiniLM embeddings). A policy optimised against the naive reward would be told
        that bad responses are nearly as good as good ones.

        The next notebooks take the two distortions apart: **02** estimates who gets observed (propensities), **03**
        what the feedback says (flip rates and the noise-corrected loss), **04** puts them together in CausalRM and
        **05** tries it on a real feedback log.

        ## Exercises

        1. Rerun with `ALPHA = 0.5` (the paper's mildest) and `ALPHA = 0.02`. How do the label balance and the naive
           model's mean predicted preference move? Is there a value of $\alpha$ at which naive is as good as oracle?
        2. Set `RHO01 = RHO10 = 0`: only selection bias is left. Is the naive model still wrong? Then set `ALPHA = 1.0`
           with the flip rates back on: only noise is left. Which of the two hurts the ranking (AUROC) and which the
           calibration (MSE)?
        3. With `rating="teacher"`, add `snr=1.0` to `simulate` (a noisy teacher). How far does the oracle fall?
        4. Try `load_rated("wildbench")` (15k responses, no prompt text, its own group split). Does the larger sample
           change the picture for the real ratings?
        5. Think about a product you know: which signals behave like `feedback` here (thumbs, copy, regenerate,
           dwell time)? In which direction is each selected, and how noisy is it?
        """),
    ]


# ======================================================================================================================
# 02 propensity
# ======================================================================================================================
def nb02() -> list[nbformat.NotebookNode]:
    return [
        md(r"""
        # 02 · Propensity: estimating who gets observed

        **What you will learn**

        - how to estimate the propensity $p(x) = P(o = 1 \mid x)$ from an impression log with `PropensityModel`
          (cross-fitted, logistic or MLP), and how to judge it without ground truth;
        - **overlap**: the distribution of $\hat p$ for observed and unobserved rows;
        - **clipping** and the **effective sample size**: why weights $1/\hat p$ are floored, and what the floor costs
          (bias) and buys (variance), with `clip_report`;
        - the **calibration curve** of $\hat p$;
        - why a feedback-only log (no impressions without feedback) cannot give propensities, and what the library
          says when you try.

        This notebook isolates selection: the simulated logs have no label noise ($\rho_{01} = \rho_{10} = 0$).
        """),
        setup_cell('''
        from plotly.subplots import make_subplots

        from causalrm.datasets import load_rated
        from causalrm.embeddings import Embedder, embed_log
        from causalrm.errors import InputError
        from causalrm.evaluation import unbiasedness_check
        from causalrm.pipeline import FitConfig, fit_log
        from causalrm.propensity import PropensityModel, clip_report
        from causalrm.simulate import simulate
        from causalrm.validate import summarize_log
        '''),
        md(r"""
        ## 1. A log with selection bias only

        Teacher ratings (a fixed function of the embedding, see notebook 01) make the selection a function of $x$
        alone: exactly the setting in which a propensity model *can* be right. We come back to real ratings at the end
        of section 2.
        """),
        code('''
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
        '''),
        md(r"""
        ## 2. Fitting $\hat p(x)$

        `PropensityModel` trains a classifier of "this impression received feedback" on **all** impressions. It is
        **cross-fitted**: the rows are split into folds and each row's $\hat p$ comes from a model that never saw that
        row. An in-sample $\hat p$ would be overconfident (observed rows near 1, unobserved near 0), and the weights
        $1/\hat p$ would collapse towards 1 exactly where they matter.

        We fit the paper's MLP (256, 64, LeakyReLU) and a logistic regression, and compare both with the truth, which
        only a simulation knows.
        """),
        code('''
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
        '''),
        md(r"""
        `AUC(o)`, `ECE` and `Brier` need no ground truth: they judge $\hat p$ against $o$ itself. Only the correlation
        with $\log p$ needs the simulation. A scatter shows where the estimate goes wrong (log axes):
        """),
        code('''
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
        '''),
        md(r"""
        Where do the two models go wrong? Group the rows by their true propensity and compare medians:
        """),
        code('''
        band = pl.Series(np.digitize(p_true, [0.01, 0.05, 0.2])).replace_strict(
            {0: "p < 0.01", 1: "0.01 to 0.05", 2: "0.05 to 0.2", 3: "p >= 0.2"})
        p_hats = {f"p_hat {name}": m.propensity_ for name, m in models.items()}
        (pl.DataFrame({"true p band": band, "p": p_true, **p_hats})
           .group_by("true p band")
           .agg(pl.len().alias("rows"), pl.all().exclude("true p band").median())
           .sort("p"))
        '''),
        md(r"""
        In our runs the two models erred in opposite directions. The logistic regression (384 standardised features,
        a few hundred positives, light regularisation) is overconfident: it pushes small propensities far below the
        truth, which would make their weights explode were it not for the clip. The MLP is better calibrated but
        shrinks the extremes towards the mean: with a few hundred observed rows there is little evidence for
        propensities of 0.005. Neither error is visible without the truth, except through calibration (section 5).

        **Real ratings.** When the selection depends on the GPT-4 rating, which MiniLM embeddings capture only weakly,
        the propensity is no longer a function of what the model sees. The estimate then cannot recover it, and worse,
        the key assumption (no unmeasured confounding given $x$) fails: $o$ and $r^*$ both depend on the rating
        beyond $x$.
        """),
        code('''
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
        '''),
        md(r"""
        ## 3. Overlap

        IPS needs **overlap**: every kind of response must have some chance of being observed ($p(x) > 0$). In the
        data, look at the distributions of $\hat p$ for observed and unobserved rows. Where unobserved rows pile up at
        $\hat p \approx 0$ with no observed rows near them, the log holds no feedback for that kind of response and the
        weights of the few observed ones there explode.
        """),
        code('''
        fig = px.histogram(x=best.propensity_, color=np.where(o == 1, "observed", "unobserved"), nbins=50,
                           barmode="overlay", histnorm="probability", opacity=0.6,
                           labels={"x": "p_hat", "color": ""}, title="Overlap: p_hat by observation status")
        fig.add_vline(x=best.clip, line_dash="dash", annotation_text=f"clip {best.clip}")
        fig.update_layout(height=380)
        fig.show()
        '''),
        md(r"""
        ## 4. Clipping and the effective sample size

        IPS weights an observed row by $1/\hat p$. A floor `clip` caps the weights at $1/\text{clip}$ (the paper uses
        0.1). The **effective sample size** $\mathrm{ESS} = (\sum w)^2 / \sum w^2$ over observed rows (Kish) says how
        many equally weighted rows the weighted sample is worth: uniform weights give ESS = number of observed rows; a
        few huge weights give an ESS of a handful. `clip_report` shows what each floor does:
        """),
        code('''
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
        '''),
        md(r"""
        Clipping trades **variance for bias**: a high floor gives calm weights (large ESS) but treats rare responses as
        if they were observed more often than they were, which pulls the estimate back towards the naive one. We can
        measure the bias directly with `unbiasedness_check` (the paper's RQ3): fix a prediction vector, compute each
        estimator's loss value on the log and compare it with the ideal loss on *all* impressions,
        $L_\text{ideal} = \frac1N\sum_i \ell(\hat r_i, r^*_i)$. Here the prediction is "every response has
        P(good) = 0.8", whose loss depends on the label balance, which is exactly what selection distorts. We compare
        IPS, $\frac1N\sum_i \frac{o_i}{\hat p_i}\ell_i$, and its self-normalised form SNIPS, which divides by
        $\sum_i o_i/\hat p_i$ instead of $N$. (The naive value $\frac1N\sum_i o_i\ell_i$ is printed too: it is far
        off mostly because only 20% of the rows contribute a term.)
        """),
        code('''
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
        '''),
        md(r"""
        With the *true* $p$, IPS is unbiased for small floors and becomes biased as the floor rises (the paper's 0.1
        is far from harmless at this selection strength). With $\hat p$ the bias does not vanish at small floors: the
        better-calibrated model shrinks the extreme propensities towards the mean (section 2), so the weights of the
        rarest responses are too small whatever the floor. One replication is noisy; the exercises vary the seed.

        How strong the selection is also decides how much data IPS has left. Using the true propensities of logs
        simulated at several $\alpha$:
        """),
        code('''
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
        '''),
        md(r"""
        ## 5. Calibration

        A propensity is used as a *probability*, so it must be calibrated: among rows with $\hat p \approx 0.3$, about
        30% should be observed. The diagnostics hold the calibration curve (equal-width bins) and its expected
        calibration error (ECE):
        """),
        code('''
        fig = go.Figure()
        for name, m in models.items():
            d = m.diagnostics_
            fig.add_scatter(x=d.calibration_predicted, y=d.calibration_observed, mode="lines+markers",
                            name=f"{name} (ECE {d.ece:.3f})", text=[f"{c} rows" for c in d.calibration_count])
        fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(dash="dot", color="gray"))
        fig.update_layout(title="Calibration of p_hat", xaxis_title="mean p_hat in bin", yaxis_title="observed share",
                          height=400)
        fig.show()
        '''),
        md(r"""
        ## 6. What goes wrong with a feedback-only log

        Many products keep only the rows that got feedback. Then every row has $o = 1$, and $P(o=1 \mid x)$ cannot be
        learned: any constant fits the data perfectly. `summarize_log` warns, and the library refuses to invent
        propensities:
        """),
        code('''
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
        '''),
        md(r"""
        The way out, when the product knows its own logging probabilities (for example because feedback prompts are
        shown at random), is the `logged_propensity` column: it is used as it is, and no model is fitted.
        """),
        code('''
        logged = PropensityModel().fit(X_fb, feedback_only["observed"].to_numpy(),
                                       logged_propensity=feedback_only["true_propensity"].to_numpy())
        print(logged.source_, "| ESS of the logged weights:", round(logged.diagnostics_.ess, 1),
              "of", len(feedback_only), "rows")
        '''),
        md(r"""
        ## Exercises

        1. Rerun with `ALPHA = 0.5` and `ALPHA = 0.02`. How do overlap, the ESS and the share of capped weights change?
        2. The bias curve of section 4 is one replication. Repeat it for `seed` = 0 to 4 and average: is the IPS bias
           with $\hat p$ systematic?
        3. Try `PropensityModel(model="mlp", loss="mse")` (the paper trains with squared error on the sigmoid output).
           Compare AUC, ECE and the correlation with the truth.
        4. Why must propensities be cross-fitted? Predict what the overlap histogram would look like for an in-sample
           $\hat p$ from a very flexible model, and what that does to the IPS weights.
        5. The refusal message of section 6 names two fixes. For your own product, which one can you implement, and
           what would you have to log?
        """),
    ]


# ======================================================================================================================
# 03 noise
# ======================================================================================================================
def nb03() -> list[nbformat.NotebookNode]:
    return [
        md(r"""
        # 03 · Noise: flip rates, the surrogate loss and anchor estimation

        **What you will learn**

        - the class-conditional noise model ($\rho_{01}$, $\rho_{10}$) and the noise-corrected surrogate loss
          $\tilde\ell$ of Natarajan et al. (2013);
        - why $\mathbb E[\tilde\ell(\hat r, r) \mid r^*] = \ell(\hat r, r^*)$, checked numerically with
          `causalrm.losses` on a grid of logits, and why the default base loss is bounded (squared error on
          $\sigma(z)$) rather than cross-entropy;
        - how flip rates are estimated from **anchor points** (`FlipRateEstimator`) and how that fails: an overfit
          proxy, no anchors, and the choice of the quantile $q$;
        - the alternative: a small audited gold subset.

        `torch` is imported here only to hand tensors to `causalrm.losses`, whose functions take tensors.
        """),
        setup_cell('''
        import torch
        from plotly.subplots import make_subplots

        from causalrm.datasets import load_rated
        from causalrm.embeddings import Embedder, embed_log
        from causalrm.evaluation import evaluate_scores, sigmoid
        from causalrm.losses import LossInputs, base_loss, estimate, surrogate_bounds, surrogate_loss
        from causalrm.noise import FlipRateEstimator, ProxyModel, anchor_rates, cross_fitted_proxy
        from causalrm.pipeline import FitConfig, fit_log
        from causalrm.simulate import simulate
        '''),
        md(r"""
        ## 1. The noise model

        The logged feedback $r$ is a noisy copy of the true preference $r^*$, with flip probabilities that depend on
        the class only (not on $x$):

        $$\rho_{01} = P(r = 0 \mid r^* = 1), \qquad \rho_{10} = P(r = 1 \mid r^* = 0), \qquad
          \rho_{01} + \rho_{10} < 1.$$

        The surrogate loss reweights the two pointwise losses $\ell(z, 1)$ and $\ell(z, 0)$ so that the noise cancels
        in expectation (with $D = 1 - \rho_{01} - \rho_{10}$):

        $$\tilde\ell(z, 1) = \frac{(1-\rho_{10})\,\ell(z, 1) - \rho_{01}\,\ell(z, 0)}{D}, \qquad
          \tilde\ell(z, 0) = \frac{(1-\rho_{01})\,\ell(z, 0) - \rho_{10}\,\ell(z, 1)}{D}.$$

        Given $r^* = 1$, the feedback is 1 with probability $1-\rho_{01}$ and 0 with probability $\rho_{01}$, so
        $\mathbb E[\tilde\ell \mid r^*=1] = (1-\rho_{01})\tilde\ell(z,1) + \rho_{01}\tilde\ell(z,0)$; expand and the
        $\ell(z,0)$ terms cancel, leaving $\ell(z,1)$. Let us check it on a grid of logits, for both base losses.
        """),
        code('''
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
        '''),
        code('''
        fig = px.line(pl.concat(curves), x="z", y="loss", color="curve", facet_col="base",
                      title="Clean loss, surrogate, and the surrogate's expectation (it overlaps the clean loss)")
        fig.update_yaxes(matches=None, showticklabels=True)
        fig.update_layout(height=420)
        fig.show()
        '''),
        md(r"""
        Both surrogates are unbiased, but look at their ranges. With **cross-entropy** (`bce`) the surrogate of an
        observed positive, $\tilde\ell(z, 1)$, falls without bound as $z$ grows: the term $-\rho_{01}\ell(z,0)/D$ is
        linear in $z$. A flexible model can then lower its training loss forever by pushing the logits of training rows
        to $\pm\infty$: the authors' own script reached a training loss of about $-3.6\cdot10^4$ while the validation
        loss exploded (METHOD.md, pitfall 1). With **squared error on $\sigma(z)$** (`mse`, the Brier score, the
        default) the surrogate stays within the bounds printed above.

        The same check with sampled feedback, through the estimators themselves: a fixed prediction vector, many rows,
        flips drawn with the rates above. `denoise` (the surrogate, uniform weights) matches the clean `oracle` loss;
        `naive` (the plain loss on noisy labels) does not. Then a model that has *memorised* the noisy feedback
        (logits ±10 matching $r$): the plain cross-entropy surrogate estimate goes negative, impossible for a true
        risk; the library's default guard for `bce` (a non-negative correction per class, Kiryo et al. 2017) holds it
        at zero or above. (With `mse` the surrogate estimate can also dip below zero, but never below the bound printed
        above, so no guard is needed.)
        """),
        code('''
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
        '''),
        md(r"""
        ## 2. Estimating the flip rates from anchor points

        In a real log $\rho_{01}$ and $\rho_{10}$ are unknown. Under class-conditional noise the noisy posterior is an
        affine image of the clean one:

        $$P(r=1 \mid x) = \rho_{10} + (1 - \rho_{01} - \rho_{10})\,P(r^*=1 \mid x).$$

        If some responses are almost surely bad ($P(r^*=1\mid x)\approx 0$, *anchors*) and some almost surely good,
        then $\min_x P(r=1\mid x) = \rho_{10}$ and $\max_x P(r=1\mid x) = 1-\rho_{01}$. `FlipRateEstimator` fits a
        proxy of $P(r=1 \mid x)$ on the observed rows (out-of-fold, calibrated with free plateaus) and reads the rates
        off its $1-q$ and $q$ quantiles ($q = 0.97$ rather than min/max, for robustness).

        We give it its best chance first: teacher ratings (a strong signal in $x$), no selection ($\alpha = 1$) and
        half the rows observed.
        """),
        code('''
        rated = load_rated("ultrafeedback")
        X = embed_log(rated, Embedder(progress=False))

        def flip_fit(lg, **kw):
            """Fit a FlipRateEstimator on the train + val rows of the simulated log `lg`."""
            rows = (lg["split"] != "test").to_numpy()
            est = FlipRateEstimator(n_bootstrap=TRAIN["flip_bootstrap"], **kw)
            return est.fit(X[rows], lg["feedback"].to_numpy()[rows], lg["observed"].to_numpy()[rows]), rows

        easy = simulate(rated, alpha=1.0, rho01=RHO01, rho10=RHO10, observation_rate=0.5, rating="teacher",
                        embeddings=X, seed=0)
        est, rows = flip_fit(easy)
        for rate, true in (("rho01", RHO01), ("rho10", RHO10)):
            lo, hi = est.ci_[rate]
            print(f"{rate}: {getattr(est, rate + '_'):.3f}  95% CI {lo:.3f} to {hi:.3f}   (true {true})")
        print("proxy:", {k: v for k, v in est.diagnostics_["proxy"].items() if k != "asymptotes"})
        '''),
        code('''
        fig = px.histogram(x=est.proxy_scores_, nbins=60, labels={"x": "proxy score f(x) ~ P(r=1 | x), every row"},
                           title="Cross-fitted proxy scores and the anchor quantiles")
        fig.add_vline(x=est.rho10_, line_color="firebrick", annotation_text="estimated rho10")
        fig.add_vline(x=1 - est.rho01_, line_color="firebrick", annotation_text="estimated 1 - rho01")
        fig.add_vline(x=RHO10, line_dash="dot", annotation_text="true rho10", annotation_position="bottom right")
        fig.add_vline(x=1 - RHO01, line_dash="dot", annotation_text="true 1 - rho01", annotation_position="bottom left")
        fig.update_layout(height=380)
        fig.show()
        '''),
        md(r"""
        Even in this friendly setting the intervals are wide: a thousand observed rows and a 384-dimensional linear
        proxy do not pin down the plateaus of $P(r=1 \mid x)$ precisely.

        ## 3. How anchor estimation fails

        **(a) An overfit proxy.** If the proxy scores the rows it was trained on, it reproduces their labels: its
        quantiles sit near 0 and 1, and both rates collapse towards 0 (the authors' script got $\hat\rho_{10}\approx
        0.01$ for a true 0.1). Calibration matters too: plain Platt scaling has tails that run to 0 and 1, so its
        extreme quantiles can sink as well. Compare, on the same observed rows:
        """),
        code('''
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
        '''),
        md(r"""
        The in-sample proxy collapses both rates to about 0. The out-of-fold proxies land near each other, within
        the bootstrap intervals above (with $\alpha = 1$ and half the rows observed, the observed rows are a fair
        sample of $x$, so scoring every row changes little here; part (b) shows where it matters). On a log this small
        the choice of calibration matters less than the sample size
        (on larger synthetic logs the library's tests measured Platt at 0.07 for a true 0.2, the default within 0.03).

        **(b) No anchors.** The method assumes that *some* responses are almost surely good or bad and that the proxy
        can find them. With the real GPT-4 ratings, MiniLM embeddings hardly separate good from bad (notebook 01), so
        the proxy never gets close to the plateaus and the rates come out far too high. Strong selection does similar
        damage: with $\alpha = 0.1$ almost no clearly bad response is ever observed, so there are no negative anchors
        among the observed rows. That is why the library takes the quantiles over *every* row (the proxy scores the
        unobserved impressions too, where the negatives are) and fits the proxy with $1/\hat p$ weights, so the rare
        observed negatives count as much as the impressions they stand for. The estimator warns when its proxy ranks
        the feedback no better than chance (out-of-fold AUC within two standard errors of 0.5), when it is weak
        (below 0.6), or when the rates add up to more than 0.8.
        """),
        code('''
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
            e = fits[name] = flip_fit(lg)[0]
            table.append({"scenario": name,
                          "rho01_hat": e.rho01_, "rho01 CI": "{:.2f} to {:.2f}".format(*e.ci_["rho01"]),
                          "rho10_hat": e.rho10_, "rho10 CI": "{:.2f} to {:.2f}".format(*e.ci_["rho10"]),
                          "proxy AUC": e.diagnostics_["proxy"]["oof_auc"], "warnings": len(e.diagnostics_["warnings"])})
        print(f"true rates: rho01 = {RHO01}, rho10 = {RHO10}")
        pl.DataFrame(table)
        '''),
        md(r"""
        **(c) The choice of $q$.** The quantile trades robustness against bias: $q = 1$ (min/max) is at the mercy of
        one extreme score; a low $q$ moves the "anchors" into the bulk, where $P(r^* = 1 \mid x)$ is not 0 or 1, and
        inflates both rates. The estimator records its estimates over a sweep of $q$ (`diagnostics_["sweep"]`): if they
        move a lot between 0.95 and 0.99, do not trust any single one.
        """),
        code('''
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
        '''),
        md(r"""
        ## 4. The alternative: a small audited subset

        When a product can afford it, a few hundred responses labelled carefully (`gold_label`) give a direct
        estimate, $\hat\rho_{01} = P(r=0 \mid \text{gold}=1)$ and $\hat\rho_{10} = P(r=1 \mid \text{gold}=0)$ on
        observed gold rows, with no assumption about anchors. Its precision is that of a proportion: it depends on how
        many gold rows fall in the smaller class. Here we "audit" random observed rows of the strongly selected log,
        where anchors failed:
        """),
        code('''
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
                         error_y=gold_rows["hi"] - gold_rows["estimate"],
                         error_y_minus=gold_rows["estimate"] - gold_rows["lo"],
                         title="Flip rates from an audited subset (dotted: the truth)")
        fig.add_hline(y=RHO01, line_dash="dot")
        fig.add_hline(y=RHO10, line_dash="dot")
        fig.update_layout(height=380)
        fig.show()
        gold_rows
        '''),
        md(r"""
        $\hat\rho_{10}$ stays imprecise however many rows are audited: under strong selection few observed rows are
        true negatives, and only those inform $\rho_{10}$. Beware of intervals like "0 to 0": with no flip among 8
        audited negatives, every bootstrap resample also has none, yet a true rate of 0.2 would produce that outcome
        one time in six ($0.8^8 \approx 0.17$). Percentile bootstraps of tiny proportions are not to be trusted.

        ## 5. Does the correction help a reward model?

        Finally, train on the friendly log of section 2 (noise, **no selection**, 50% observed), so that only the noise
        matters: `naive` (plain loss on noisy labels), `denoise` with the true flip rates (as if from a large audit), `denoise`
        with anchor estimates, and the `oracle`.
        """),
        code('''
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
        '''),
        md(r"""
        Class-conditional noise barely hurts the *ranking* (AUROC): $P(r=1\mid x)$ is an increasing function of
        $P(r^*=1 \mid x)$, so the naive model still orders responses sensibly. What it gets wrong is the *scale*: with
        $\rho_{01} > \rho_{10}$ it underestimates how many responses are good. The correction moves the mean predicted
        preference and the MAE towards the oracle; on a log this small the gain is modest next to the bootstrap
        intervals (most of the naive → oracle gap here is sample size: the oracle sees a clean label on every row),
        and it is only as good as the rates it is given.

        ## Exercises

        1. Set `RHO01, RHO10 = 0.1, 0.2` (the paper's scenario 2) and rerun the numeric check and section 5.
        2. In section 1, what happens to the `mse` surrogate bounds as $\rho_{01} + \rho_{10}$ approaches 1? Why does
           the library refuse $\rho_{01} + \rho_{10} \ge 1$?
        3. Pass `method="anchor-minmax"` to `FlipRateEstimator` for each scenario of section 3. More or less biased?
           More or less variable (rerun with several `random_state`)?
        4. Try `calibration="isotonic"` in `cross_fitted_proxy`. Where do its extreme quantiles land, and why (hint: its
           end blocks are maxima of suffix means)?
        5. Train `causalrm-dr` on the strongly selected log (`hard`) with the rates of a 100-row audit, then with the
           anchor estimates (see notebook 04 for the full comparison).
        """),
    ]


# ======================================================================================================================
# 04 CausalRM
# ======================================================================================================================
def nb04() -> list[nbformat.NotebookNode]:
    return [
        md(r"""
        # 04 · CausalRM: debiasing and denoising together

        **What you will learn**

        - the estimators side by side: naive, IPS (debias only), denoise (noise correction only), CausalRM-IPS,
          CausalRM-DR and the oracle, all trained with `causalrm.pipeline.fit_log` on one simulated log;
        - how to read results honestly: report the oracle, measure the share of the naive → oracle gap each method
          closes, show confidence intervals, and check the nuisance estimates before blaming (or crediting) the loss;
        - how the methods behave as selection gets stronger (a sweep over $\alpha$) and as noise grows (a sweep over
          $\rho$);
        - how much the rankings of responses change (`compare_rankings`).

        **Why teacher ratings.** With the CPU embeddings bundled here (all-MiniLM-L6-v2), even a model trained on the
        clean labels of every row reaches only AUROC ≈ 0.71 / R² ≈ 0.10 on UltraFeedback's real GPT-4 ratings
        (METHOD.md, "Signal strength"); the paper's embeddings came from an 8B reward model. With such a low ceiling,
        differences between methods drown in sampling noise. In teacher mode the rating is a known function of the
        real embeddings, so the ceiling is high (oracle R² ≈ 0.6) and bias and noise correction can be seen and
        checked. Section 6 shows the real ratings for comparison.
        """),
        setup_cell('''
        from causalrm.bench import BenchConfig, gap_closed, run_bench
        from causalrm.datasets import load_rated
        from causalrm.embeddings import Embedder, embed_log
        from causalrm.evaluation import compare_rankings, evaluate_scores, sigmoid
        from causalrm.losses import METHODS
        from causalrm.pipeline import FitConfig, fit_log, fit_nuisances
        from causalrm.runs import scored_table
        from causalrm.simulate import simulate

        SEEDS = [0] if FAST else [0, 1, 2]
        '''),
        md(r"""
        ## 1. The estimators

        All are means over the $N$ training impressions of a per-row term (`causalrm.losses`); $w_i = o_i/\hat p_i$
        with $\hat p$ clipped below (0.1 by default), $\tilde\ell$ the noise-corrected surrogate of notebook 03,
        $\hat e_i = \ell(\hat r_i, q_i)$ an imputed error from a pseudo-label $q(x) \approx P(r^*=1\mid x)$:

        | method | term | corrects |
        | --- | --- | --- |
        | `naive` | $o_i\,\ell(\hat r_i, r_i)$ | nothing |
        | `ips` | $w_i\,\ell(\hat r_i, r_i)$ | selection (the paper's †) |
        | `denoise` | $o_i\,\tilde\ell(\hat r_i, r_i)$ | noise (the paper's ‡) |
        | `causalrm-ips` | $w_i\,\tilde\ell(\hat r_i, r_i)$ | both |
        | `causalrm-dr` | $\hat e_i + w_i(\tilde\ell(\hat r_i, r_i) - \hat e_i)$ | both; unbiased if $\hat p$ *or* $\hat e$ is right |
        | `oracle` | $\ell(\hat r_i, r^*_i)$ on every row | the ideal loss (simulation only) |

        The base loss $\ell$ is squared error on $\sigma(z)$ (bounded; see notebook 03). Every method is early-stopped
        on its *own* estimate on the validation split: never on clean labels, which a real log does not have.
        """),
        code('''
        print("all methods in the library:", ", ".join(METHODS))
        rated = load_rated("ultrafeedback")
        X = embed_log(rated, Embedder(progress=False))
        COMPARE = ["naive", "ips", "denoise", "causalrm-ips", "causalrm-dr", "oracle"]

        def run_methods(lg, methods, seed=0, rho=(0.2, 0.1), **overrides):
            """Fit each method on the log `lg` with shared nuisances (fitted once, as in the bench).
            Returns ({method: reward logits of every row}, nuisances)."""
            base = FitConfig(rho01=rho[0], rho10=rho[1], seed=seed, **{**TRAIN, **overrides})
            nuisances = fit_nuisances(lg, X, base, methods=methods)
            scores = {m: fit_log(lg, X, base.replace(method=m), nuisances=nuisances).score(lg, X) for m in methods}
            return scores, nuisances

        def metric_rows(lg, scores, **extra):
            """Clean-test metrics (with bootstrap CIs) of each method's scores on the simulated log `lg`."""
            test = (lg["split"] == "test").to_numpy()
            out = []
            for method, z in scores.items():
                ev = evaluate_scores(lg, z, n_boot=N_BOOT)
                m, ci = ev["metrics"], ev["ci"]
                out.append({**extra, "method": method, "R2": m["r2"], "R2 lo": ci["r2"][0], "R2 hi": ci["r2"][1],
                            "AUROC": m["auroc"], "MSE": m["mse"], "mean P(good)": float(sigmoid(z[test]).mean())})
            return out

        def with_gap(table, metric="R2"):
            """Add the share of the naive -> oracle gap each method closes (1 = the oracle, < 0 = worse than naive)."""
            naive = table.filter(pl.col("method") == "naive")[metric].to_numpy()
            oracle = table.filter(pl.col("method") == "oracle")[metric].to_numpy()
            gaps = [gap_closed(np.array([value]), naive, oracle) for value in table[metric]]
            return table.with_columns(pl.Series(f"gap closed ({metric})", gaps))
        '''),
        md(r"""
        ## 2. One log, every method

        Teacher ratings, $\alpha = 0.1$, $\rho_{01} = 0.2$, $\rho_{10} = 0.1$ (the paper's scenario 1). Propensities and
        pseudo-labels are estimated from the log, as they would be in practice. For the flip rates we give the methods
        the true values, as if from a large audit: notebook 03 showed that anchor estimates are unreliable on a log this
        small and this selected, and we want to compare the *estimators* first.
        """),
        code('''
        ALPHA, RHO01, RHO10 = 0.1, 0.2, 0.1
        log = simulate(rated, alpha=ALPHA, rho01=RHO01, rho10=RHO10, rating="teacher", embeddings=X, seed=0)
        truth = float(log.filter(pl.col("split") == "test")["true_label"].mean())
        scores, nuisances = run_methods(log, COMPARE, rho=(RHO01, RHO10))
        table = with_gap(pl.DataFrame(metric_rows(log, scores)))
        print(f"true share of good responses on the test split: {truth:.3f}")
        table
        '''),
        code('''
        def ci_plot(table, title):
            fig = px.scatter(table, x="method", y="R2", error_y=table["R2 hi"] - table["R2"],
                             error_y_minus=table["R2"] - table["R2 lo"], title=title)
            fig.update_layout(height=380)
            fig.show()

        ci_plot(table, f"Clean test R2 with 95% bootstrap CIs (teacher ratings, alpha = {ALPHA}, estimated nuisances)")
        '''),
        md(r"""
        Intervals are bootstraps over the 400 test rows of *one* simulated log and one training run; they leave out
        the variation between training runs and simulations, which the sweeps below average over seeds.

        Do not expect the paper's picture here. On this log (about 400 observed rows, most of them true positives)
        the corrections with *estimated* nuisances close little of the gap, and some do worse than naive: over three
        seeds (docs/RESULTS.md, cell `ultrafeedback_teacher_a0.1_r0.2-0.1`) `ips` was level with naive, `denoise` and
        `causalrm-ips` worse by about 0.08 to 0.14 R², and `causalrm-dr` clearly worse. Look at the `mean P(good)`
        column before concluding anything about the losses.

        ## 3. Diagnose before you conclude

        Three things are going on, and a simulation lets us see each of them.

        **Two biases that partly cancel.** Selection makes the observed rows look better than the impressions
        (predictions too high); with $\rho_{01} > \rho_{10}$ and mostly positive observed rows, noise makes the
        feedback look worse than the truth (predictions too low). Naive suffers both and they partly offset. Correcting
        the noise alone (`denoise`) removes the downward push and *exposes* the selection bias: its mean prediction is
        higher than naive's.

        **Weights that were capped or shrunk.** IPS can only undo the selection it is given weights for. With strong
        selection a sizeable share of observed rows have $\hat p$ below the floor, so their weights are capped
        (notebook 02 measured the bias this leaves), and the smallest true propensities are never estimated that small.

        **An imputation that extrapolates.** CausalRM-DR imputes the error of the ~80% unobserved rows from a
        pseudo-label $q(x)$ fitted on observed rows, which are mostly good responses. Compare its mean with the truth:
        """),
        code('''
        rows = nuisances.rows  # the train + val rows the nuisances were fitted on
        o_rows = log["observed"].to_numpy()[rows] == 1
        r_star = log["true_label"].to_numpy()[rows]
        p_true = log["true_propensity"].to_numpy()[rows]
        q = nuisances.pseudo_label
        pl.DataFrame({
            "check (simulation only)": ["observed rows with p_hat below the clip", "mean weight 1/p over observed rows",
                                        "mean q on observed rows", "mean q on unobserved rows"],
            "estimate": [float(np.mean(nuisances.propensity[o_rows] < 0.1)), float(np.mean(1 / nuisances.weights[o_rows])),
                         float(q[o_rows].mean()), float(q[~o_rows].mean())],
            "truth": [float(np.mean(p_true[o_rows] < 0.1)), float(np.mean(1 / p_true[o_rows])),
                      float(r_star[o_rows].mean()), float(r_star[~o_rows].mean())],
        })
        '''),
        md(r"""
        The pseudo-label learned "responses are good" from the observed rows and applies it to the unobserved ones,
        where far fewer are. DR is unbiased if $\hat p$ *or* $\hat e$ is right; here neither is (the weights are
        capped), so DR inherits the imputation's bias. (The pipeline already fits $q$ with $1/\hat p$ weights,
        `proxy_weighting="propensity"`; with the weights capped at 1/clip = 10 that cannot undo selection this
        strong.)

        **What if the propensities were right?** A product that logs its own probability of asking for feedback can
        supply it as `logged_propensity`; the simulation knows the truth, so we can try exactly that, with a lower floor
        (0.01). This isolates the estimators from the propensity model:
        """),
        code('''
        logged = log.with_columns(logged_propensity=pl.col("true_propensity"))  # as if the product had logged p
        scores_true_p, _ = run_methods(logged, COMPARE, rho=(RHO01, RHO10), clip=0.01)
        table_true_p = with_gap(pl.DataFrame(metric_rows(log, scores_true_p)))
        ci_plot(table_true_p, "Clean test R2 with the true propensities (logged_propensity, clip 0.01)")
        table_true_p
        '''),
        md(r"""
        With the right weights, the debiasing methods (`ips`, `causalrm-ips`) move towards the truth (`mean P(good)`)
        and close part of the gap: in this run CausalRM-IPS closed about an eighth of it and IPS a sixth; over three
        seeds (section 4, $\alpha = 0.1$) CausalRM-IPS with the true propensities averaged R² 0.04 against naive's
        0.00. The rest of the gap
        is sample size: a few hundred observed rows, most of them positive, cannot teach a model what the oracle learns
        from 1,600 clean labels. CausalRM-DR still carries its pseudo-label's bias.

        The lesson generalises: **an unbiased loss is only as good as its nuisances**. Check propensity overlap and
        calibration (notebook 02), flip-rate intervals (notebook 03) and the pseudo-label before reading a table of
        methods.

        ## 4. The bias sweep: stronger selection

        Smaller $\alpha$ means stronger selection towards highly rated responses. Each point is a mean over seeds (the
        simulation, the split and the training all change with the seed); error bars are the standard deviation over
        seeds. Methods use estimated nuisances, plus one line for CausalRM-IPS with the true propensities. (With
        `CAUSALRM_FAST=1` the sweeps run one seed, two grid points and fewer methods.)
        """),
        code('''
        ALPHAS = [0.5, 0.05] if FAST else [0.5, 0.1, 0.02]
        SWEEP_METHODS = (["naive", "causalrm-ips", "oracle"] if FAST
                         else ["naive", "ips", "causalrm-ips", "causalrm-dr", "oracle"])
        rows = []
        for alpha in ALPHAS:
            for seed in SEEDS:
                lg = simulate(rated, alpha=alpha, rho01=RHO01, rho10=RHO10, rating="teacher", embeddings=X, seed=seed)
                rows += metric_rows(lg, run_methods(lg, SWEEP_METHODS, seed=seed)[0], alpha=alpha, seed=seed)
                lg_p = lg.with_columns(logged_propensity=pl.col("true_propensity"))
                true_p = run_methods(lg_p, ["causalrm-ips"], seed=seed, clip=0.01)[0]["causalrm-ips"]
                rows += metric_rows(lg, {"causalrm-ips, true p": true_p}, alpha=alpha, seed=seed)
        bias_sweep = pl.DataFrame(rows)

        def sweep_plot(df, x, title, log_x=False):
            agg = (df.group_by(x, "method")
                     .agg(pl.col("R2").mean().alias("mean R2"), pl.col("R2").std().fill_null(0).alias("sd"),
                          pl.col("AUROC").mean().alias("mean AUROC"), pl.col("mean P(good)").mean())
                     .sort(x, "method"))
            fig = px.line(agg, x=x, y="mean R2", color="method", error_y="sd", markers=True, log_x=log_x, title=title)
            fig.update_layout(height=400)
            fig.show()
            return agg

        sweep_plot(bias_sweep, "alpha", "Clean test R2 against selection strength (smaller alpha = stronger)",
                   log_x=True)
        '''),
        md(r"""
        Naive degrades as selection gets stronger, as in the paper. How much the corrections recover depends on the
        nuisances. In our full runs (three seeds, $\alpha$ = 0.5, 0.1, 0.02): with estimated propensities at a 0.1
        floor, CausalRM fell *below* naive, further as selection strengthened (the diagnosis of section 3); with the
        true propensities it gained a little at $\alpha$ = 0.5 and 0.1 (+0.02 and +0.04 R²) and not at all at
        $\alpha = 0.02$, where so few
        low-rated responses are ever observed (the ESS collapses, notebook 02) that there is almost nothing left to
        reweight. The paper's robustness needs both the data and the nuisance models that an 80,000-row log and an
        8B-parameter embedding provide.

        ## 5. The noise sweep: more flips

        Now fix $\alpha = 0.5$ (mild selection) and scale the flip rates, keeping $\rho_{01} = 2\rho_{10}$. `denoise`
        and the CausalRM estimators are given the true rates.
        """),
        code('''
        RHOS = [(0.0, 0.0), (0.3, 0.15)] if FAST else [(0.0, 0.0), (0.1, 0.05), (0.2, 0.1), (0.3, 0.15), (0.4, 0.2)]
        NOISE_METHODS = (["naive", "denoise", "oracle"] if FAST
                         else ["naive", "denoise", "causalrm-ips", "causalrm-dr", "oracle"])
        rows = []
        for rho01, rho10 in RHOS:
            for seed in SEEDS:
                lg = simulate(rated, alpha=0.5, rho01=rho01, rho10=rho10, rating="teacher", embeddings=X, seed=seed)
                rows += metric_rows(lg, run_methods(lg, NOISE_METHODS, seed=seed, rho=(rho01, rho10))[0],
                                    rho01=rho01, seed=seed)
        noise_sweep = pl.DataFrame(rows)
        sweep_plot(noise_sweep, "rho01", "Clean test R2 against noise (rho10 = rho01 / 2, alpha = 0.5)")
        '''),
        md(r"""
        Without noise the noise-aware methods coincide with their plain versions (the surrogate *is* the plain loss at
        $\rho = 0$: `denoise` equals `naive`). As the flip rates grow every method loses R², naive fastest: at
        $\rho_{01}$ = 0.3 to 0.4, `denoise` and CausalRM-IPS are ahead of it by 0.01 to 0.04, within the seed-to-seed
        spread, while CausalRM-DR falls behind. The surrogate removes bias at the price of variance (it divides by
        $1 - \rho_{01} - \rho_{10}$), and a few hundred observed rows leave little room for that trade.
        Watch `mean P(good)`: `denoise` alone overshoots the truth, because it corrects the noise but not the (mild)
        selection, which the noise had been partly hiding.

        ## 6. The same comparison on the real ratings

        Same protocol, real GPT-4 ratings, estimated propensities and pseudo-labels, true flip rates. This time we use
        the library's benchmark, `causalrm.bench.run_bench`: the code behind `causalrm bench`, which simulates one log
        per seed, fits the nuisances once per seed, trains every method and summarises over seeds, with the share of
        the naive → oracle gap closed and a bootstrap interval over seeds.

        Expect the oracle to be low (R² ≈ 0.1) and naive to rank at about chance. Selection on the real rating is
        almost invisible in $x$ (the propensity model's AUC is near 0.5, notebook 02), so IPS leaves the selection
        where it was, and correcting the noise then exposes it, as in section 3: in our runs the noise-aware methods
        lost R² against naive. This is a property of the signal and of the unmeasured confounding it implies, not a
        verdict on the losses; it is also what a real log with a weak representation would do to them.
        """),
        code('''
        bench = run_bench(
            BenchConfig(dataset="ultrafeedback", rating="real", alpha=ALPHA, rho01=RHO01, rho10=RHO10,
                        seeds=tuple(SEEDS), methods=tuple(COMPARE), fit={"rho01": RHO01, "rho10": RHO10, **TRAIN},
                        n_boot=200),
            data=(rated, X))  # reuse the rows and embeddings loaded above
        print(bench.to_markdown())
        '''),
        md(r"""
        ## 7. Do the rankings change?

        A reward model is used to *rank* responses (best-of-N, RLHF). `compare_rankings` compares two scored logs:
        Kendall's τ between their scores, the overlap of their top-k, agreement on the best response per prompt, each
        model's rank correlation with a gold score (here the teacher rating of the test rows), and the responses whose
        rank moved most. We compare naive with CausalRM-IPS trained with the true propensities (section 3).
        """),
        code('''
        test = (log["split"] == "test").to_numpy()
        test_log = log.filter(pl.col("split") == "test")
        naive_scored = scored_table(test_log, scores["naive"][test])
        causal_scored = scored_table(test_log, scores_true_p["causalrm-ips"][test])
        cmp = compare_rankings(naive_scored, causal_scored, gold=test_log["rating"].to_numpy(), top_k=20,
                               names=("naive", "causalrm-ips"), n_shifts=5)
        print(cmp.format())
        '''),
        code('''
        shifts = pl.DataFrame(cmp.shifts).join(test_log.select("response_id", "rating"), on="response_id",
                                               maintain_order="left")
        shifts.select("rank_a", "rank_b", "shift", "rating", pl.col("prompt").str.slice(0, 60),
                      pl.col("response").str.slice(0, 80))
        '''),
        code('''
        fig = px.scatter(x=naive_scored["reward"], y=causal_scored["reward"], color=test_log["rating"],
                         labels={"x": "naive reward", "y": "CausalRM-IPS reward", "color": "teacher rating"},
                         title=f"Test responses scored by both models (Kendall tau {cmp.kendall:.2f})")
        fig.update_layout(height=420)
        fig.show()
        '''),
        md(r"""
        The two models agree on the broad order but disagree on many individual responses, and the top-k lists differ
        noticeably: enough to change which response a best-of-N sampler would pick. Which of the two is closer to the
        truth is answered by the "vs gold" line (rank correlation with the teacher rating), not by the agreement
        between them; the same caveat as everywhere in this notebook applies: one log, one seed.

        ## Exercises

        1. Add `"snips"`, `"dr"` and `"fcorr"` to `COMPARE`. Where do the self-normalised and the debias-only DR
           estimators land? How does forward correction (`fcorr`) compare with the surrogate (`denoise`)?
        2. In section 2, lower the floor with `run_methods(..., clip=0.02)`. Does IPS with *estimated* propensities gain
           or lose? Relate the answer to the ESS of notebook 02.
        3. Rerun section 2 with `base_loss="bce"` passed to `run_methods`. Does the non-negative guard keep training
           stable? Compare the number of epochs (`fit_log(...).history.epochs`).
        4. Drop the true flip rates: call `run_methods(log, COMPARE, rho=(None, None))` so that they are estimated from
           anchors. How far do the estimates land from (0.2, 0.1), and what happens to the noise-aware methods?
        5. Scale up: simulate from `load_rated("wildbench")` (15k responses; its embeddings are shipped too) with
           teacher ratings. With five times more observed rows, do the estimated nuisances improve, and the methods
           with them?
        6. The command line runs the same experiment: `causalrm bench --dataset ultrafeedback --alpha 0.1 --seeds 0,1,2
           --methods naive,causalrm-dr,oracle`. Compare its numbers with yours.
        """),
    ]


# ======================================================================================================================
# 05 real feedback
# ======================================================================================================================
def nb05() -> list[nbformat.NotebookNode]:
    return [
        md(r"""
        # 05 · Real feedback: oasst1's emoji reactions

        **What you will learn**

        - what a *real* observational feedback log looks like: OpenAssistant (oasst1) assistant replies, with the
          volunteers' 👍/👎 reactions as feedback and their crowd quality labels as gold;
        - how to check, with data, whether the feedback is selected and noisy;
        - how to run CausalRM on such a log with an honest protocol (held-out conversations, a small audited subset for
          the flip rates, evaluation against gold on held-out rows only);
        - what the method's assumptions buy here, and where they may fail.
        """),
        setup_cell('''
        from causalrm.datasets import load_oasst1_log
        from causalrm.embeddings import Embedder, embed_log
        from causalrm.errors import InputError
        from causalrm.evaluation import evaluate_scores, sigmoid
        from causalrm.noise import FlipRateEstimator
        from causalrm.pipeline import FitConfig, fit_log, fit_nuisances
        from causalrm.validate import summarize_log
        '''),
        md(r"""
        ## 1. The log

        One row per assistant message of the oasst1 English validation split (1,241 impressions). `observed` = 1 when
        the message received at least one 👍 or 👎; `feedback` = 1 when 👍 outnumber 👎 (ties count as 0).
        `gold_label` = 1 when the crowd's mean *quality* label is above its median. Read the bundled data's README for
        every detail (`data/README.md`).
        """),
        code('''
        log = load_oasst1_log()
        X = embed_log(log, Embedder(progress=False))
        print(summarize_log(log))
        log.select(pl.col("prompt").str.slice(0, 40), pl.col("response").str.slice(0, 40), "thumbs_up", "thumbs_down",
                   "observed", "feedback", "gold_score", "gold_label").head(5)
        '''),
        md(r"""
        ## 2. Is the feedback selected?

        Compare the observation rate across crowd-quality bins and across conversation depth (0 = first reply,
        2 = reply to a follow-up, ...). If reactions were given at random, both would be flat.
        """),
        code('''
        gold = log.filter(pl.col("gold_score").is_not_null())
        q = gold["gold_score"].to_numpy()
        bins = np.argsort(np.argsort(q, kind="stable"), kind="stable") * 5 // len(q)  # quality quintiles
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
        '''),
        md(r"""
        Here the *observation* depends more on position (first replies get more reactions) than on quality, while the
        *content* of the feedback follows quality closely. Selection on position is visible in $x$ only to the extent
        the prompt text reveals it; everything the embedding cannot see (time of day, who was browsing, the order in
        which replies were shown) is unmeasured.

        ## 3. Is the feedback noisy?

        Treat the gold label as the truth for a moment and read off the implied flip rates on observed rows (a
        `FlipRateEstimator` with `method="gold"` does exactly that).
        """),
        code('''
        obs_gold = log.filter((pl.col("observed") == 1) & pl.col("gold_label").is_not_null())
        print(obs_gold.group_by("gold_label", "feedback").len().pivot(on="feedback", index="gold_label", values="len")
                      .sort("gold_label"))
        all_gold = FlipRateEstimator(method="gold", n_bootstrap=TRAIN["flip_bootstrap"]).fit(
            None, log["feedback"].to_numpy(), log["observed"].to_numpy(), gold_label=log["gold_label"].to_numpy())
        print("implied rho01 = {:.3f} (95% CI {:.3f} to {:.3f}), rho10 = {:.3f} (95% CI {:.3f} to {:.3f})".format(
            all_gold.rho01_, *all_gold.ci_["rho01"], all_gold.rho10_, *all_gold.ci_["rho10"]))
        '''),
        md(r"""
        Replies the crowd rated well rarely end up with more 👎 than 👍 ($\hat\rho_{01}$ small), but about half of
        the replies below the crowd's median still collect more 👍 than 👎 ($\hat\rho_{10}$ large). Part of that is
        not noise at all: "better than the median reply" (gold) and "worth a thumbs-up" (feedback) are different
        questions. The correction will treat the difference as noise and push predictions towards the gold
        definition.

        ## 4. An honest protocol

        - **Held-out conversations.** 30% of the conversation trees form the test split: the model never sees their
          rows, and their gold labels are used only to evaluate.
        - **A small audit.** On the remaining rows, gold is kept on 20% only (as if a team had audited them); it serves
          to estimate the flip rates (`flip_method="gold"`). The rest of the gold is hidden.
        - Train / val are split by prompt inside `fit_log`; early stopping uses each method's own estimate on val.
        """),
        code('''
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
        '''),
        md(r"""
        The nuisances first: propensity diagnostics, and the flip rates from the audit and from anchors.
        """),
        code('''
        config = FitConfig(flip_method="gold", seed=0, **TRAIN)
        METHODS = ["naive", "ips", "denoise", "causalrm-ips", "causalrm-dr"]
        nuisances = fit_nuisances(fit_log_df, X, config, methods=METHODS)
        d = nuisances.propensity_model.diagnostics_
        print(f"propensity: AUC(o) {d.auc:.3f}, ECE {d.ece:.3f}, ESS {d.ess:.0f} of {d.n_observed} observed rows, "
              f"max weight {d.max_weight:.2f}")
        print("flip rates from the audit:   rho01 = {:.3f} (CI {:.3f} to {:.3f}), rho10 = {:.3f} (CI {:.3f} to {:.3f})"
              .format(nuisances.rho01, *nuisances.rho_ci["rho01"], nuisances.rho10, *nuisances.rho_ci["rho10"]))
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
        '''),
        md(r"""
        With 72% of impressions observed, the weights $1/\hat p$ stay small: selection can shift the estimate only a
        little here (the paper's simulations observe 20%). The anchor estimate of $\rho_{01}$ is about twice the
        audit's, and the estimator warns that its proxy is weak: another sign that the embedding does not separate
        good from bad replies well enough for anchors.

        ## 5. Fit and evaluate against gold

        Every method shares the nuisances above. As a reference ceiling (the analogue of the oracle), we also train
        `naive` on a log in which every train/val row is "observed" with its *gold* label as feedback: what the same
        model reaches with clean labels on every row.
        """),
        code('''
        scores = {m: fit_log(fit_log_df, X, config.replace(method=m), nuisances=nuisances).score(log, X)
                  for m in METHODS}
        gold_log = (log.with_columns(split=fit_log_df["split"], observed=pl.lit(1, dtype=pl.Int8),
                                     feedback=pl.col("gold_label").cast(pl.Int8))
                       .filter(pl.col("feedback").is_not_null()))
        gold_fit = fit_log(gold_log, X[log["gold_label"].is_not_null().to_numpy()], config.replace(method="naive"))
        scores["gold ceiling (naive on gold)"] = gold_fit.score(log, X)

        table = []
        for method, z in scores.items():
            ev = evaluate_scores(test_log, z[is_test], n_boot=N_BOOT)
            m, ci = ev["metrics"], ev["ci"]
            table.append({"method": method, "AUROC": m["auroc"], "AUROC lo": ci["auroc"][0], "AUROC hi": ci["auroc"][1],
                          "R2": m["r2"], "R2 lo": ci["r2"][0], "R2 hi": ci["r2"][1], "MSE": m["mse"],
                          "mean P(good)": float(sigmoid(z[is_test]).mean()),
                          "spread (sd of P(good))": float(sigmoid(z[is_test]).std())})
        table = pl.DataFrame(table)
        print(f"evaluated on {ev['n']} held-out rows with gold; true share of gold-positive: "
              f"{test_log['gold_label'].mean():.3f}")
        table
        '''),
        code('''
        fig = px.scatter(table, x="method", y="AUROC", error_y=table["AUROC hi"] - table["AUROC"],
                         error_y_minus=table["AUROC"] - table["AUROC lo"],
                         title="Held-out AUROC against the crowd gold label (95% bootstrap CIs)")
        fig.update_layout(height=380)
        fig.show()
        '''),
        md(r"""
        ## 6. What the assumptions buy, and where they may fail

        Read the table with its intervals: on about 380 held-out replies the AUROC intervals of all methods overlap,
        and even the gold-trained ceiling is modest with MiniLM embeddings. What can be said:

        - **Calibration moves, ranking does not.** Naive predicts roughly the feedback's 73% positive rate, far above
          the gold share, hence its poor MSE and negative R². The noise-corrected methods (`denoise`, `causalrm-ips`,
          `causalrm-dr`) bring the mean prediction to about the gold share, but look at their `spread` column: they
          predict almost the same value for every reply. With $\hat\rho_{10} \approx 0.55$ the surrogate divides by
          $1 - \hat\rho_{01} - \hat\rho_{10} \approx 0.4$; what signal the feedback carries about gold quality is
          then too weak against the noise for early stopping to keep more than the base rate. Their better MSE is that
          of a well-placed constant, not of a better reward model, and their AUROC is no better than naive's.
        - **Selection is invisible to $x$ here.** AUC(o) ≈ 0.5: the embedding does not predict who reacts, so
          $\hat p$ is nearly constant, the weights are all about $1/0.72$, and IPS is naive. A product with 1–5%
          feedback and selection that depends on the response would be in the paper's regime, with large weights and a
          much larger effect, for better or worse.

        The assumptions, one by one:

        - **No unmeasured confounding given $x$.** Who reacts depends on position in the conversation, on time, on
          which volunteers were online, on the reply's rank among siblings: much of this is not in the embedding of
          (prompt, response). IPS can only correct selection that $x$ explains; its AUC(o) above says how little it
          explains.
        - **Class-conditional noise.** The noise model says a flip depends on the true class only. Here, ties are
          coded as 0, a 👍 may reward tone or length rather than quality, and a reply with many readers has more
          chances to collect a 👎: flips almost certainly depend on $x$. The correction is then only approximately
          right.
        - **$\rho_{01} + \rho_{10} < 1$ and well estimated.** The audit gives a direct estimate, but from about a hundred
          observed rows; the anchor estimates disagree with it. The correction divides by $1 - \rho_{01} - \rho_{10}$:
          errors in the rates are amplified.
        - **The gold label is itself a crowd mean.** `gold_score` averages a few volunteers' judgments (`gold_count`);
          `gold_label` thresholds it at the median. It is noisy, and it answers a different question from the one
          users answer with 👍. "Better against gold" means "closer to the crowd's quality rating", no more.
        - **Overlap** ($p(x) > 0$) holds comfortably here; it is the one assumption this log satisfies well.
        """),
        code('''
        print(log["gold_count"].value_counts().sort("gold_count"))
        '''),
        md(r"""
        ## Exercises

        1. Change the audit share from 20% to 5% and 50%. How do the flip-rate intervals and the CausalRM results move?
        2. Use `flip_method="anchor-quantile"` (no audit). Does training still behave? What does the estimator warn?
        3. Use `helpfulness_score` instead of `gold_score` as the gold (threshold it at its median). Do the conclusions
           change?
        4. Drop the deleted messages (`deleted == True`) and the ties (`thumbs_up == thumbs_down`) before fitting.
           Which assumption does each of these filters protect?
        5. Include the earlier turns: set `prompt` to `context + prompt` and re-embed with `embed_log` (about a minute
           on CPU, then cached). Does the propensity model's AUC(o) go up? Why would it?
        6. The library's own real-feedback benchmark uses a different protocol (held-out prompt groups, anchor or
           fixed flip rates, an oracle trained on gold): run `causalrm bench --dataset oasst1 --seeds 0,1,2` (or
           `causalrm.bench.run_bench(BenchConfig(dataset="oasst1"))`) and compare its conclusions with yours.
        """),
    ]


# ======================================================================================================================
# 06 gold audits
# ======================================================================================================================
def nb06() -> list[nbformat.NotebookNode]:
    return [
        md(r"""
        # 06 · Gold audits: how many labels do the intervals need?

        **What you will learn**

        - how `causalrm audit` chooses the rows to label: strata by feedback and by the proxy and propensity scores,
          and a known *inclusion probability* for every proposed row (`causalrm.audit`);
        - why the labelled rows must be weighted by 1 / inclusion probability, for the flip rates and for the models'
          metrics;
        - how wide the intervals are after 100, 300 and 1,000 labels, shown by simulation: we draw the audit many
          times on one simulated log, where the truth is known;
        - how an audited verdict (debiased against naive) compares with the verdict on a clean test split.

        On a real log there are no clean labels: the anchor flip rates fail where the representation is weak, and no
        one can say whether a debiased model is better. A few hundred audited labels settle both. Here the "auditor"
        is the simulation's clean label, so every estimate can be checked against the truth.
        """),
        setup_cell('''
        from causalrm import audit
        from causalrm.demo import debiased_of
        from causalrm.embeddings import Embedder, embed_log
        from causalrm.evaluation import labelled_verdict, sigmoid
        from causalrm.noise import FlipRateEstimator
        from causalrm.pipeline import FitConfig, fit_log
        from causalrm.simulate import simulate_dataset

        SIZES = [100, 300] if FAST else [100, 300, 1000]
        DRAWS = 10 if FAST else 100  # audits drawn per size, to see the spread of the estimates
        '''),
        md(r"""
        ## 1. A log with known truth

        The held-out setting of docs/RESULTS.md: UltraFeedback texts with teacher ratings (a known function of the
        embedding), selection $\alpha = 0.2$, flips $\rho_{01} = 0.15$, $\rho_{10} = 0.25$ on observed rows. The
        *realised* flip rates are those of this one log's observed train/val rows: what an audit of it estimates.
        """),
        code('''
        log, _ = simulate_dataset("ultrafeedback", alpha=0.2, rho01=0.15, rho10=0.25, seed=100, rating="teacher")
        X = embed_log(log, Embedder(progress=False))
        U = audit.auditable_rows(log)  # train/val rows: test rows are never proposed
        obs = log[U.tolist()].filter(pl.col("observed") == 1)
        realised = {"rho01": float((obs.filter(pl.col("true_label") == 1)["feedback"] == 0).mean()),
                    "rho10": float((obs.filter(pl.col("true_label") == 0)["feedback"] == 1).mean())}
        print(f"{len(U)} auditable rows, {obs.height} with feedback; realised flip rates {realised}")
        '''),
        md(r"""
        ## 2. The design

        `audit.design_strata` fits a propensity model and the proxy $f(x) \approx P(r = 1 \mid x)$ on the auditable
        rows and cuts them into strata: thumbs-up rows (`up:1` … `up:4`, `up:1` the lowest $f$, where flipped
        negatives hide), thumbs-down rows (`down:1` the highest $f$) and rows without feedback (`none:*`, by the
        medians of $\hat p$ and $f$). Half of the audit is spread equally over the feedback strata (for the flip
        rates), half in proportion to each stratum's size (for the whole population). Within a stratum the rows are
        drawn at random, so each row's inclusion probability is exactly $n_h / N_h$. `audit.proposal_table` writes
        the label file; `causalrm audit LOG --n 300 --out labels.csv` does both.
        """),
        code('''
        rows, strata = audit.design_strata(log, X, seed=0)
        proposal = audit.proposal_table(log, rows, strata, 300, seed=0)
        (proposal.group_by("audit_stratum").agg(proposed=pl.len(), stratum_rows=pl.col("audit_stratum_rows").first(),
                                                inclusion_probability=pl.col("inclusion_probability").first())
                 .sort("audit_stratum"))
        '''),
        md(r"""
        The proposal of $N$ rows is the first $N$ rows of the proposal of any larger $N$ under the same seed: label
        from the top, and a later, larger audit extends this one.
        """),
        code('''
        larger = audit.proposal_table(log, rows, strata, 600, seed=0)
        print("the 600-row proposal starts with the 300-row one:",
              larger["response_id"].head(300).to_list() == proposal["response_id"].to_list())
        '''),
        md(r"""
        ## 3. Flip rates from the audit, weighted and not

        We label each proposed row with its clean label (a human would fill in `gold_label`), merge the labels into
        the log with `audit.merge_labels` (it attaches each labelled row's inclusion probability and stratum), and
        estimate the rates with `FlipRateEstimator(method="gold")`, once with the design's weights and once
        ignoring them. The audit oversamples thumbs-down rows and the suspicious end of each feedback group, so the
        unweighted estimate is biased; the weighted one is not.
        """),
        code('''
        truth = dict(zip(log["response_id"], log["true_label"].cast(pl.Float64)))
        fb = np.nan_to_num(log["feedback"].cast(pl.Float64).to_numpy()[U])
        o = log["observed"].cast(pl.Float64).to_numpy()[U]


        def labelled(n, draw):
            table = audit.proposal_table(log, rows, strata, n, seed=draw)
            return table.with_columns(gold_label=pl.Series([truth[i] for i in table["response_id"]]))


        def audited_rates(n, draw, weighted=True):
            design = audit.design_columns(audit.merge_labels(log, labelled(n, draw)), U)
            if not weighted:
                design = {"gold_label": design["gold_label"]}
            est = FlipRateEstimator(method="gold", n_bootstrap=200, random_state=draw).fit(None, fb, o, **design)
            return {"n": n, "draw": draw, "weighted": weighted, "rho01": est.rho01_, "rho10": est.rho10_,
                    "rho01_lo": est.ci_["rho01"][0], "rho01_hi": est.ci_["rho01"][1],
                    "rho10_lo": est.ci_["rho10"][0], "rho10_hi": est.ci_["rho10"][1]}


        flips = pl.DataFrame([audited_rates(n, d, w) for n in SIZES for d in range(DRAWS) for w in (True, False)])
        summary = []
        for (n, weighted), g in flips.group_by("n", "weighted"):
            for k in ("rho01", "rho10"):
                err = g[k] - realised[k]
                summary.append({"N": n, "weighted": weighted, "rate": k, "mean error": err.mean(),
                                "within 0.08": (err.abs() < 0.08).mean(),
                                "CI covers": ((g[f"{k}_lo"] <= realised[k]) & (realised[k] <= g[f"{k}_hi"])).mean(),
                                "CI width": (g[f"{k}_hi"] - g[f"{k}_lo"]).mean()})
        pl.DataFrame(summary).sort("rate", "weighted", "N")
        '''),
        code('''
        fig = px.box(flips.filter(pl.col("weighted")).unpivot(index="n", on=["rho01", "rho10"]), x="n", y="value",
                     color="variable", title=f"Weighted gold flip rates over {DRAWS} audits per size (lines: realised)")
        for k, dash in (("rho01", "dot"), ("rho10", "dash")):
            fig.add_hline(y=realised[k], line_dash=dash, annotation_text=f"realised {k}")
        fig.update_layout(height=380, xaxis_type="category", xaxis_title="audited rows N")
        fig.show()
        '''),
        md(r"""
        $\rho_{10}$ is the hard one: it is a share among the *true negatives with feedback*, and under selection on
        quality those are few. On this small log an audit of 1,000 rows takes in every row with feedback (the
        feedback strata are labelled in full), so the rates are exact there and their intervals have width 0; on a
        larger log (exercise 3) the intervals keep shrinking like $1/\sqrt N$.

        ## 4. The audited evaluation

        Fit `auto` with the 300-row audit merged (flip rates from the audit with `flip_method="gold"`; its choice
        decided on the audited val rows), then compare the kept model with naive on the audit, at each size, and on
        the clean test split, which a real log does not have. The audited estimates are for the whole impression
        population: each labelled row weighs 1 / inclusion probability, and the bootstrap resamples within strata.
        Rows the models were trained on are left out once at least 100 audited held-out rows remain.
        """),
        code('''
        table = labelled(max(SIZES), 0)
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
        '''),
        code('''
        fig = px.scatter(verdicts, x="evidence", y="R² difference", error_y=verdicts["hi"] - verdicts["R² difference"],
                         error_y_minus=verdicts["R² difference"] - verdicts["lo"],
                         title=f"{debiased} minus naive: R² difference with its 95% interval")
        fig.add_hline(y=0, line_dash="dot")
        fig.update_layout(height=380)
        fig.show()
        '''),
        md(r"""
        Read the "rows used" column: with 100 and 300 labels fewer than 100 audited rows are held out, so every
        audited row is used (training rows included: they move the difference little); at 1,000 only the held-out
        ones. An audit can say "better" only when its interval excludes 0, and the widths above are what that costs;
        docs/RESULTS.md ("Gold audits") measures them over cells and seeds.

        ## Exercises

        1. Ignore the design: merge a label table without `inclusion_probability`, `audit_stratum` and
           `audit_stratum_rows` (every labelled row then weighs the same). How far do the flip rates and R² move?
        2. Skip every third proposed row (leave its `gold_label` empty). Which inclusion probabilities does
           `merge_labels` give the labelled rows, and are the estimates still unbiased? When would they not be?
        3. Rerun section 3 on WildBench (`simulate_dataset("wildbench", ...)`, about 12,000 auditable rows). Do the
           interval widths depend on the size of the log, or only on N?
        4. Set `audit.FLIP_SHARE = 0.8` before drawing. What happens to the flip-rate intervals, and to the
           evaluation's?
        5. From the command line: `causalrm audit LOG --n 300 --out labels.csv`, label it, then
           `causalrm fit LOG --gold labels.csv --flip-method gold --out runs/audited` and
           `causalrm compare RUN_A RUN_B --gold labels.csv --json compare.json`.
        """),
    ]

NOTEBOOKS = {
    "01_observational_feedback.ipynb": nb01,
    "02_propensity.ipynb": nb02,
    "03_noise.ipynb": nb03,
    "04_causalrm.ipynb": nb04,
    "05_real_feedback.ipynb": nb05,
    "06_gold_audit.ipynb": nb06,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    stem = name.split("_", 1)[0]
    nb.cells = NOTEBOOKS[name]()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"nb{stem}-{i:02d}"
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if notebooks/ differs from this source")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        text = nbformat.writes(build(name)) + "\n"
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run python scripts/build_notebooks.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
