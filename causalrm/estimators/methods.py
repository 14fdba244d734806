"""The method registry: one :class:`MethodSpec` per estimator, from which everything else is derived.

Notation as in ``causalrm.estimators.losses`` (``z`` logit, ``o`` observed, ``r`` feedback, ``r*`` true label, ``p`` the clipped
propensity, ``q`` a pseudo-label, ``l~`` the noise-corrected surrogate, ``pi(z)`` the forward-corrected probability).

A spec says what an estimator's per-example term is (``term``, with its ``reference``) and what it needs fitted
before training, through four traits:

* ``weighted``: the term carries the weight ``w = o / p`` (needs the propensity);
* ``correction``: ``"none"``, ``"surrogate"`` (``l~``, Natarajan et al. 2013) or ``"forward"`` (``l(pi(z), r)``,
  Patrini et al. 2017): the noise-aware ones need the flip rates rho01, rho10;
* ``imputation``: ``None``, ``"clean"`` (``q = P(r* = 1 | x)``) or ``"noisy"`` (``q = P(r = 1 | x)``): the doubly
  robust term ``e + w (l - e)`` with ``e = l(z, q)`` needs that pseudo-label;
* ``clean_labels``: the term reads ``r*`` (the oracles: simulation only); with ``weighted`` the weight is
  ``o / p_true``, the simulation's true propensity (``oracle-observed``), never an estimate.

A fifth trait, ``nonnegative``, concerns the reduction only: the batch means of the two class parts are reduced by
the non-negative risk of Kiryo et al. (2017) (``causalrm.estimators.pu``) whatever the base loss (``nnpu``, ``causalrm-nnpu``).

``needs``, ``noise_aware`` and ``doubly_robust`` follow from them, so they cannot disagree. The built-in estimators
are computed by the kernel of ``causalrm.estimators.losses.loss_components`` from these traits; a new estimator either fits
that kernel (traits only) or brings its own ``components(logits, t, base)`` returning the ``(..., 2)`` class-split
terms (``t``: the validated inputs of ``losses._prepare``: ``observed``, ``feedback``, ``weight``, ``pseudo_label``,
``true_label``, ``rho01``, ``rho10``, whichever it needs).

Derived from the registry (adding a spec with :func:`register` makes a method usable everywhere, no other file
touched): the losses (``losses.METHODS``, ``WEIGHTED``, ``NOISE_AWARE``, ...), the nuisances a fit needs
(``pipeline.needs_of``), ``auto``'s candidates (``auto_candidate``), the bench's default grid (``bench_default``),
the app's method list (``app``), the CLI's ``--method`` choices, the model card's description and the table in
docs/METHOD.md (:func:`markdown_table`, checked by ``tests/test_methods.py``).

References
----------
* N. Natarajan, I. Dhillon, P. Ravikumar, A. Tewari. Learning with Noisy Labels. NeurIPS 2013.
* H. Li et al. Debiased Recommendation with Noisy Feedback. KDD 2024 (OME-IPS / OME-DR).
* R. Kiryo, G. Niu, M. C. du Plessis, M. Sugiyama. Positive-Unlabeled Learning with Non-Negative Risk Estimator.
  NeurIPS 2017.
* G. Patrini et al. Making Deep Neural Networks Robust to Label Noise: a Loss Correction Approach. CVPR 2017.
* A. K. Menon, B. van Rooyen, C. S. Ong, R. C. Williamson. Learning from Corrupted Binary Labels via Class-Probability
  Estimation. ICML 2015.
* A. Swaminathan, T. Joachims. The Self-Normalized Estimator for Counterfactual Learning. NeurIPS 2015.
* H. Wang et al. CausalRM: Causal-Theoretic Reward Modeling for RLHF from Observational User Feedbacks. 2026.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from causalrm.errors import InputError

#: the pseudo-method that fits the ``auto_candidate`` estimators on shared nuisances and keeps one (causalrm.workflows.selection)
AUTO = "auto"
#: the baseline every debiased model is set against (``auto`` keeps it unless a candidate beats it on evidence)
BASELINE = "naive"
#: ``method``'s default (``training.options.TrainOptions.method``, so ``FitConfig``, ``CausalRM`` and ``causalrm fit``)
DEFAULT_METHOD = AUTO
CORRECTIONS = ("none", "surrogate", "forward")
#: the heads a spec may fix (``MethodSpec.head``): None = the configured one
HEADS = (None, "ranking")
IMPUTATIONS = (None, "clean", "noisy")
#: every nuisance name a spec can need (``nuisances.container.Nuisances.provides``; ``true_label`` is a log column), as the
#: method table reads it
NUISANCES = {"propensity": "propensity", "flip_rates": "flip rates", "pseudo_label": "q = P(r* = 1 given x)",
             "pseudo_label_noisy": "q = P(r = 1 given x)", "true_label": "clean labels"}


@dataclass(frozen=True)
class MethodSpec:
    """One estimator (module docstring).

    name: the ``--method`` value. term: its per-example term (plain text formula). reference: where it comes from.
    description: one sentence for model cards and the app. weighted, correction, imputation, clean_labels: the
    traits (module docstring). self_normalized: reduced by ``sum(o / p)`` instead of N (SNIPS). auto_candidate: one
    of the estimators ``auto`` fits and chooses among (registry order, the baseline ``naive`` first).
    bench_default: in ``causalrm bench``'s default grid. app: offered on the app's Train tab (``clean_labels``
    methods only on logs with clean labels). components: a custom kernel (module docstring), None = the built-in one.
    val_method: the estimator early stopping watches on the val rows when the user names none (None = the method
    itself; the DR variants watch the self-normalised IPS estimate, docs/METHOD.md "Validating the DR variants").
    imputation_learning: ``"jl"`` or ``"mrdr"``: the trainer refits an imputation model of q alongside the reward
    model (``causalrm.estimators.dr``: DR-JL, MRDR); None = q stays the fitted pseudo-label.
    nonnegative: reduced by ``pu.nonnegative_risk`` of the class parts with either base loss (``losses.estimate``;
    without it only "bce" is guarded).
    head: ``None`` (the configured head) or ``"ranking"``: the estimator is fitted on the ranking head
    (``causalrm.config.RANKING_HEAD``: a linear head on standardised embeddings, full batch, early-stopped on the
    IPS-weighted AUROC against the noisy val feedback, its weight decay chosen on the same criterion; docs/METHOD.md
    "Ranking under noise"). Its loss term is that of the spec with the same traits and no head.
    """

    name: str
    term: str
    reference: str
    description: str = ""
    weighted: bool = False
    correction: str = "none"
    imputation: str | None = None
    clean_labels: bool = False
    self_normalized: bool = False
    auto_candidate: bool = False
    bench_default: bool = False
    app: bool = True
    components: Callable[..., Any] | None = None
    val_method: str | None = None
    imputation_learning: str | None = None
    nonnegative: bool = False
    head: str | None = None
    models_votes: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name == AUTO or self.name != self.name.strip() or " " in self.name:
            raise InputError(f"method name {self.name!r}: a non-empty word other than {AUTO!r}")
        if self.correction not in CORRECTIONS:
            raise InputError(f"method {self.name!r}: correction {self.correction!r} not in {CORRECTIONS}")
        if self.imputation not in IMPUTATIONS:
            raise InputError(f"method {self.name!r}: imputation {self.imputation!r} not in {IMPUTATIONS}")
        if self.self_normalized and not self.weighted:
            raise InputError(f"method {self.name!r}: self-normalisation divides by sum(o / p); set weighted=True")
        if self.imputation_learning not in (None, "jl", "mrdr"):
            raise InputError(f"method {self.name!r}: imputation_learning {self.imputation_learning!r} not in "
                             "(None, 'jl', 'mrdr')")
        if self.head not in HEADS:
            raise InputError(f"method {self.name!r}: head {self.head!r} not in {HEADS}")
        if self.imputation_learning is not None and (self.imputation is None or not self.weighted):
            raise InputError(f"method {self.name!r}: a learned imputation needs a weighted DR estimator")

    @property
    def noise_aware(self) -> bool:
        """Uses the flip rates rho01, rho10."""
        return self.correction != "none"

    @property
    def pairwise(self) -> bool:
        """Has a pairwise form for A/B logs (``causalrm.data.pairwise``): the same term on the Bradley-Terry logit
        d = z_a - z_b of a pair (``losses.pairwise_terms``). Every estimator but those with a learned imputation,
        whose imputation model is trained on the reward model's own rows, not on pairs."""
        return self.imputation_learning is None

    @property
    def pointwise(self) -> bool:
        """Has a pointwise form (thumbs, implicit and chat logs): every estimator but those modelling who votes on a
        pair."""
        return not self.models_votes

    @property
    def doubly_robust(self) -> bool:
        """Imputes an error ``e = l(z, q)`` on every row."""
        return self.imputation is not None

    @property
    def needs(self) -> frozenset[str]:
        """What must be fitted (or present in the log, ``true_label``) before training."""
        out = set()
        if self.weighted and not self.clean_labels:
            out.add("propensity")
        if self.noise_aware:
            out.add("flip_rates")
        if self.imputation == "clean":
            out.add("pseudo_label")
        elif self.imputation == "noisy":
            out.add("pseudo_label_noisy")
        if self.clean_labels:
            out.add("true_label")
        return frozenset(out)


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (usable by every entry point at once); returns it. ``replace`` an existing one."""
    if not isinstance(spec, MethodSpec):
        raise InputError(f"register a MethodSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise InputError(f"method {spec.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a registered method (built-ins included: meant for tests and plug-ins that registered one)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> MethodSpec:
    """The spec of ``name``; InputError naming the choices when unknown."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise InputError(f"unknown method {name!r}; choose one of: {', '.join(names())}")
    return spec


def is_method(name: Any) -> bool:
    return isinstance(name, str) and name in _REGISTRY


def specs() -> tuple[MethodSpec, ...]:
    """Every registered spec, in registration order."""
    return tuple(_REGISTRY.values())


def names(*, auto: bool = False) -> tuple[str, ...]:
    """Registered method names (registration order), with ``auto`` first when ``auto``."""
    return ((AUTO,) if auto else ()) + tuple(_REGISTRY)


def where(**traits: Any) -> tuple[str, ...]:
    """Names of the specs whose attributes (or properties) equal ``traits``, e.g. ``where(noise_aware=True)``."""
    return tuple(s.name for s in _REGISTRY.values() if all(getattr(s, k) == v for k, v in traits.items()))


def applies(name: str, *, pairs: bool) -> bool:
    """Whether ``name`` has a form for the log: its pairwise form on an A/B log (``pairs``), else its pointwise one."""
    spec = get(name)
    return spec.pairwise if pairs else spec.pointwise


def auto_candidates() -> tuple[str, ...]:
    """The estimators ``auto`` fits, the baseline first (``causalrm.workflows.selection``): ("naive", "ips", "denoise",
    "causalrm-ips") for the built-ins. Not CausalRM-DR: it was left out when its pseudo-labels were fitted on the val
    rows' feedback too (its training loss had seen the evidence that would select it, and the validation estimates
    favoured it where the clean test said otherwise: docs/RESULTS.md, "auto and the gates"); with the train-only
    imputation a DR variant can be named in ``FitConfig.auto_candidates``."""
    out = where(auto_candidate=True)
    return tuple(sorted(out, key=lambda m: m != BASELINE))


def plain(*, weighted: bool, noise_aware: bool) -> str:
    """The plain estimator with these traits (surrogate correction, no imputation, no self-normalisation, no
    non-negative reduction, no clean labels), the first registered: naive, ips, denoise or causalrm-ips. What stands
    for a method when a nuisance is missing or not needed (``auto``'s reference estimate, its nuisance fallbacks)."""
    found = where(weighted=weighted, correction="surrogate" if noise_aware else "none", imputation=None,
                  self_normalized=False, nonnegative=False, clean_labels=False, components=None, head=None)
    if not found:
        raise InputError(f"no registered plain estimator with weighted={weighted}, noise_aware={noise_aware}")
    return found[0]


def nuisance_fallbacks() -> tuple[tuple[str, ...], ...]:
    """What ``auto`` fits, after the baseline, when its candidates' nuisances cannot all be fitted, in order: the
    propensity alone, the flip rates alone, nothing (a feedback-only log has no propensity; an implicit log without
    event rates no flip rates)."""
    return ((plain(weighted=True, noise_aware=False),), (plain(weighted=False, noise_aware=True),), ())


def lacking(methods: str | list[str] | tuple[str, ...], provided: set[str] | frozenset[str]) -> set[str]:
    """The nuisances ``methods`` need fitted that ``provided`` (``Nuisances.provides()``) lacks; ``true_label`` is a
    log column, never fitted. The one comparison of needs and fitted nuisances."""
    return needs_of(methods) - {"true_label"} - set(provided)


def against_baseline(trained: Sequence[str], choice: Mapping[str, Any] | None = None) -> str | None:
    """The model to set against the baseline: with ``auto``'s ``choice`` record, its kept method, or (it kept the
    baseline) the fitted candidate it ranked best; else among ``trained`` (the baseline and clean-label references
    left out) ``auto`` when trained, else the most debiased by traits (weighted, then noise-aware, then doubly
    robust; registry order breaks ties). None when there is none."""
    if choice is not None:
        if choice["method"] != BASELINE:
            return choice["method"]
        fitted = {m: c for m, c in choice["candidates"].items() if c.get("fitted") and m != BASELINE}
        if not fitted:
            return None
        key = "gold_mse" if any("gold_mse" in c for c in fitted.values()) else "central"
        return min(fitted, key=lambda m: fitted[m][key])
    others = [m for m in trained if m != BASELINE and (m == AUTO or (is_method(m) and not get(m).clean_labels))]
    if AUTO in others:
        return AUTO
    order = list(_REGISTRY)
    return min(others, key=lambda m: (-get(m).weighted, -get(m).noise_aware, -get(m).doubly_robust,
                                      order.index(m)), default=None)


def bench_defaults() -> tuple[str, ...]:
    return where(bench_default=True)


def app_methods(*, clean_labels: bool = False) -> tuple[str, ...]:
    """The app's Train-tab choices: ``auto``, then the ``app`` specs (those reading clean labels only when the log
    has them), registration order."""
    return (AUTO,) + tuple(s.name for s in _REGISTRY.values() if s.app and not s.clean_labels) + tuple(
        s.name for s in _REGISTRY.values() if s.app and s.clean_labels and clean_labels)


def validation_method(method: str, val_method: str | None = None) -> str:
    """The estimator early stopping watches: ``val_method`` when given, else the spec's ``val_method``, else
    ``method`` itself (``auto`` and unknown names: ``val_method or method``)."""
    if val_method:
        return val_method
    spec = _REGISTRY.get(method)
    return (spec.val_method if spec is not None else None) or method


def needs_of(methods: str | list[str] | tuple[str, ...]) -> set[str]:
    """Union of what ``methods`` need (``auto`` stands for its candidates)."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    out: set[str] = set()
    for m in methods:
        for name in (auto_candidates() if m == AUTO else (m,)):
            out |= get(name).needs
    return out


def description(name: str) -> str:
    """One sentence on ``name`` (model cards, the app); empty for an unknown name."""
    spec = _REGISTRY.get(name)
    return (spec.description or f"{spec.name}: {spec.term} ({spec.reference}).") if spec is not None else ""


# --------------------------------------------------------------------------------------------------------------------
# docs
# --------------------------------------------------------------------------------------------------------------------
TABLE_BEGIN = "<!-- method table: generated from causalrm.estimators.methods (markdown_table); tests/test_methods.py checks it -->"
TABLE_END = "<!-- end of method table -->"


def markdown_table(methods: Sequence[str] | None = None) -> str:
    """The estimators (``methods``, default every registered one) as a markdown table: docs/METHOD.md carries the
    full one between ``TABLE_BEGIN`` and ``TABLE_END``, the teaching notebooks print their methods'. Every table of
    methods is this one."""
    rows = ["| method | per-example term | needs | noise-aware | weighted | DR | early-stops on | reference |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    yes = {True: "yes", False: ""}
    for s in (_REGISTRY.values() if methods is None else [get(m) for m in methods]):
        needs = ", ".join(text for n, text in NUISANCES.items() if n in s.needs) or "–"
        stop = "its IPS-weighted val AUROC" if s.head == "ranking" else f"`{s.val_method}`" if s.val_method else "itself"
        rows.append(f"| `{s.name}` | {s.term} | {needs} | {yes[s.noise_aware]} | {yes[s.weighted]} | "
                    f"{yes[s.doubly_robust]} | {stop} | {s.reference} |")
    return "\n".join(rows)


def replace_table(text: str) -> str:
    """``text`` (docs/METHOD.md) with the generated table between the markers (InputError when they are missing)."""
    start, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if start < 0 or end < start:
        raise InputError("no method-table markers in the text")
    return text[: start + len(TABLE_BEGIN)] + "\n" + markdown_table() + "\n" + text[end:]


# --------------------------------------------------------------------------------------------------------------------
# the DR variants (causalrm.estimators.dr: formulas and references)
# --------------------------------------------------------------------------------------------------------------------
def _lazy_kernel(kind: str, surrogate: bool) -> Callable[..., Any]:
    def components(logits: Any, t: dict[str, Any], base: str) -> Any:
        from causalrm.estimators.dr import kernel

        return kernel(kind, surrogate=surrogate)(logits, t, base)

    components.__name__ = f"{kind}_components"
    return components


def _dr_variants() -> tuple[MethodSpec, ...]:
    """Each DR variant in a debias-only form and a ``causalrm-`` (noise-corrected) form; every one early-stops on
    the self-normalised IPS estimate of its observed error (``snips`` / ``causalrm-snips``)."""
    variants = (
        ("dr-cf", "e^ + (o/p)(E - e^), e^ = l(z, q) cross-fitted", "DR with cross-fitted imputation "
         "(Chernozhukov et al. 2018)", "cross-fitted pseudo-labels, early-stopped on SNIPS", {}),
        ("dr-jl", "e^ + (o/p)(E - e^), q refitted each step on sum_O (E - e^)^2 / p", "DR-JL (Wang et al. ICML 2019)",
         "joint learning: an imputation model refitted on the observed errors, weight 1/p",
         {"imputation_learning": "jl"}),
        ("mrdr", "e^ + (o/p)(E - e^), q refitted each step on sum_O (1 - p)/p^2 (E - e^)^2",
         "MRDR (Guo et al. SIGIR 2021)", "joint learning with the variance-minimising weight (1 - p)/p^2",
         {"imputation_learning": "mrdr"}),
        ("tdr", "e^* + (o/p)(E - e^*), e^* = e^ + eps (1/p - 1), eps least squares on the observed rows",
         "TDR (Li et al. ICLR 2023)", "targeted DR: one fluctuation step removes the in-sample imputation bias",
         {"kernel": "tdr"}),
        ("sdr", "e^ + N v (E - e^) / sum v, v = o/p tilted to balance e^", "stabilised DR (Li, Zheng & Wu ICLR 2023)",
         "stabilised DR: balanced, self-normalised weights", {"kernel": "sdr"}),
    )
    out = []
    for name, term, ref, what, extra in variants:
        for noise in (False, True):
            kind = extra.get("kernel")
            E = "l~(z, r)" if noise else "l(z, r)"
            out.append(MethodSpec(
                ("causalrm-" if noise else "") + name, term.replace("E", E), ref,
                (f"CausalRM-{name.upper()}: the noise-corrected surrogate loss, doubly robust ({what}; corrects "
                 "user-feedback noise and selection bias)." if noise else
                 f"{name.upper()}: doubly robust, debias-only ({what})."),
                weighted=True, correction="surrogate" if noise else "none", imputation="clean" if noise else "noisy",
                val_method="causalrm-snips" if noise else "snips", app=noise,
                imputation_learning=extra.get("imputation_learning"),
                components=None if kind is None else _lazy_kernel(kind, noise)))
    return tuple(out)


def _vote_gap_kernel(logits: Any, t: dict[str, Any], base: str) -> Any:
    from causalrm.estimators.vote_gap import components

    return components(logits, t, base)


# --------------------------------------------------------------------------------------------------------------------
# the built-in estimators (causalrm.estimators.losses module docstring)
# --------------------------------------------------------------------------------------------------------------------
for _spec in (
    MethodSpec("naive", "o l(z, r)", "biased by selection and noise",
               "Naive: binary feedback on the rows that have it, taken at face value (biased by selection and "
               "noise).", auto_candidate=True, bench_default=True),
    MethodSpec("ips", "(o/p) l(z, r)", "debias-only (the paper's dagger)",
               "IPS: inverse-propensity weighted feedback (corrects selection bias only).",
               weighted=True, auto_candidate=True, bench_default=True),
    MethodSpec("snips", "(o/p) l(z, r), reduced by sum(o/p) instead of N", "Swaminathan & Joachims 2015",
               "SNIPS: self-normalised inverse-propensity weighting (corrects selection bias only).",
               weighted=True, self_normalized=True, app=False),
    MethodSpec("dr", "e + (o/p)(l(z, r) - e), e = l(z, q)", "doubly robust, debias-only",
               "DR: doubly robust estimator with imputed errors (corrects selection bias only).",
               weighted=True, imputation="noisy"),
    MethodSpec("fcorr", "o l(pi(z), r), pi = (1 - rho01) s + rho10 (1 - s)", "forward correction, Patrini 2017",
               "F-correction: forward loss correction for class-conditional label noise (no selection correction).",
               correction="forward", app=False),
    MethodSpec("fcorr-ips", "(o/p) l(pi(z), r)", "forward correction (Patrini 2017) with IPS weights",
               "F-correction-IPS: the forward-corrected loss weighted by inverse propensities (corrects label noise "
               "through the model of the noisy label, and selection bias).",
               weighted=True, correction="forward", app=False),
    MethodSpec("fcorr-dr", "f + (o/p)(l(pi(z), r) - f), f = l(pi(z), q)",
               "forward correction (Patrini 2017), doubly robust",
               "F-correction-DR: the forward-corrected loss, doubly robust with q = P(r = 1 | x) imputed (corrects "
               "label noise through the model of the noisy label, and selection bias).",
               weighted=True, correction="forward", imputation="noisy", app=False, val_method="fcorr-ips"),
    MethodSpec("denoise", "o l~(z, r)", "denoise-only (the paper's double dagger)",
               "Denoise-only: the noise-corrected surrogate loss of Natarajan et al. (2013), uniform weights.",
               correction="surrogate", auto_candidate=True, bench_default=True),
    MethodSpec("causalrm-ips", "(o/p) l~(z, r)", "CausalRM-IPS (Li et al. 2024 OME-IPS)",
               "CausalRM-IPS: the noise-corrected surrogate loss weighted by inverse propensities (corrects both "
               "user-feedback noise and selection bias).",
               weighted=True, correction="surrogate", auto_candidate=True, bench_default=True),
    MethodSpec("causalrm-dr", "e + (o/p)(l~(z, r) - e), e = l(z, q)",
               "CausalRM-DR (Li et al. 2024 OME-DR)",
               "CausalRM-DR: doubly robust estimator on the noise-corrected surrogate loss with imputed errors "
               "(corrects both user-feedback noise and selection bias; unbiased when the flip rates are right and "
               "either the propensity or the imputation model is).",
               weighted=True, correction="surrogate", imputation="clean", bench_default=True),
    MethodSpec("causalrm-snips", "(o/p) l~(z, r), reduced by sum(o/p) instead of N",
               "self-normalised CausalRM-IPS (Swaminathan & Joachims 2015)",
               "CausalRM-SNIPS: the noise-corrected surrogate loss with self-normalised inverse-propensity weights; "
               "the validation criterion of the DR variants.",
               weighted=True, correction="surrogate", self_normalized=True, app=False),
    MethodSpec("nnpu", "o l~(z, r), reduced by max(0, R1) + max(0, R0): R1, R0 the batch means of its l(z, 1) and "
               "l(z, 0) parts", "nnPU (Kiryo et al. 2017) on the surrogate's class parts (uPU is `denoise`)",
               "nnPU: the noise-corrected surrogate loss, uniform weights, each class's risk clamped at zero "
               "(Kiryo et al. 2017's non-negative PU risk, generalised to class-conditional noise; for implicit "
               "feedback read with rho01 = 1 - c, rho10 = accidental events).",
               correction="surrogate", nonnegative=True),
    MethodSpec("causalrm-nnpu", "(o/p) l~(z, r), reduced by max(0, R1) + max(0, R0)",
               "nnPU (Kiryo et al. 2017) with IPS weights (uPU: `causalrm-ips`)",
               "CausalRM-nnPU: the noise-corrected surrogate loss weighted by inverse propensities, each class's "
               "risk clamped at zero (Kiryo et al. 2017's non-negative PU risk; corrects feedback noise and "
               "selection bias).",
               weighted=True, correction="surrogate", nonnegative=True),
    *_dr_variants(),
    MethodSpec("naive-rank", "o l(z, r) on the ranking head", "naive, with capacity chosen for ranking "
               "(Menon et al. 2015: the noisy AUROC is affine in the clean one)",
               "Naive on the ranking head: feedback at face value, a linear head on standardised embeddings stopped "
               "at its best IPS-weighted AUROC against the noisy val feedback.",
               head="ranking", auto_candidate=True),
    MethodSpec("fcorr-rank", "o l(pi(z), r) on the ranking head",
               "forward correction (Patrini 2017), capacity chosen for ranking (Menon et al. 2015)",
               "F-correction on the ranking head: the forward-corrected likelihood, a linear head on standardised "
               "embeddings stopped at its best IPS-weighted AUROC against the noisy val feedback (corrects label "
               "noise; ranks well under it).",
               correction="forward", head="ranking", auto_candidate=True),
    MethodSpec("fcorr-gap", "o l(pi(d), r) + l(sigma(c + beta abs(d)), o) on the ranking head, d = z_a - z_b",
               "a selection model of the votes (Heckman 1979) with the forward correction (Patrini 2017)",
               "F-correction with the vote model, A/B logs only: who votes is modelled too, votes likelier on larger "
               "reward gaps, so the unvoted pairs count as close calls (a linear head on standardised embeddings, "
               "stopped at its best IPS-weighted AUROC against the noisy val votes).",
               correction="forward", head="ranking", auto_candidate=True, models_votes=True,
               components=_vote_gap_kernel),
    MethodSpec("oracle", "l(z, r*) on every row", "the ideal loss (simulation only)",
               "Oracle: clean labels on every row (simulation reference, not a deployable method).",
               clean_labels=True, bench_default=True),
    MethodSpec("oracle-observed", "(o/p_true) l(z, r*)", "a fair ceiling (simulation only)",
               "Oracle on the observed rows: the clean labels of the rows that received feedback, weighted by the "
               "true propensity (the ceiling of any correction of noise and selection on this log).",
               weighted=True, clean_labels=True, bench_default=True, app=False),
):
    register(_spec)
del _spec


__all__ = ["AUTO", "BASELINE", "DEFAULT_METHOD", "MethodSpec", "against_baseline", "app_methods", "applies",
           "auto_candidates", "bench_defaults", "description", "get", "is_method", "lacking", "markdown_table", "names",
           "needs_of", "nuisance_fallbacks", "plain", "register", "replace_table", "specs", "unregister",
           "validation_method", "where"]
