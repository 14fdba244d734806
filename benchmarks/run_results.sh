#!/usr/bin/env bash
# Reproduce every table of docs/RESULTS.md. Outputs go to runs/bench/ (git-ignored) (JSON + one markdown file per cell).
# CPU only; the shipped all-MiniLM-L6-v2 embeddings make the bundled texts instant. On a shared machine pass
# THREADS=1 (default) so torch/BLAS do not oversubscribe the cores. SEEDS, DATASETS, ALPHAS, RATINGS override the grid;
# CONTROL=0 skips the synthetic control.
#   bash benchmarks/run_results.sh                 # everything (about an hour on 2 busy cores)
#   DATASETS=ultrafeedback bash benchmarks/run_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-runs/bench}
SEEDS=${SEEDS:-0,1,2}
THREADS=${THREADS:-1}
DATASETS=${DATASETS:-"ultrafeedback wildbench"}
ALPHAS=${ALPHAS:-"0.5 0.1"}
RATINGS=${RATINGS:-"real teacher"}
METHODS=naive,ips,denoise,causalrm-ips,causalrm-dr,oracle
mkdir -p "$OUT"

for dataset in $DATASETS; do
  for rating in $RATINGS; do
    for alpha in $ALPHAS; do
      for scenario in "0.2 0.1" "0.1 0.2"; do
        set -- $scenario
        name="${dataset}_${rating}_a${alpha}_r${1}-${2}"
        [[ -s "$OUT/$name.json" ]] && { echo "skip $name (exists)"; continue; }
        echo "== $name"
        causalrm bench --dataset "$dataset" --rating "$rating" --alpha "$alpha" --rho01 "$1" --rho10 "$2" \
          --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
          --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
      done
    done
  done
done

# Control: a synthetic dataset where the assumptions hold and the signal is strong (linear score on 32 Gaussian
# features, 20,000 rows): the estimators should order as in the paper here.
if [[ "${CONTROL:-1}" == 1 ]]; then
  for alpha in $ALPHAS; do
    for scenario in "0.2 0.1" "0.1 0.2"; do
      set -- $scenario
      name="synthetic_a${alpha}_r${1}-${2}"
      [[ -s "$OUT/$name.json" ]] && { echo "skip $name (exists)"; continue; }
      echo "== $name"
      causalrm bench --dataset synthetic:20000x32 --alpha "$alpha" --rho01 "$1" --rho10 "$2" \
        --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
        --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
    done
  done
fi

# Ablation: the true flip rates handed to the estimators (simulation truth: not available on a real log).
for dataset in $DATASETS; do
  for alpha in $ALPHAS; do
    name="${dataset}_teacher_a${alpha}_r0.2-0.1_true-rates"
    [[ -s "$OUT/$name.json" ]] && { echo "skip $name (exists)"; continue; }
    echo "== $name"
    causalrm bench --dataset "$dataset" --rating teacher --alpha "$alpha" --rho01 0.2 --rho10 0.1 --fixed-rates \
      --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
      --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
  done
done

# Investigation (UltraFeedback, teacher ratings, scenario 1): early stopping every debiased method on the
# CausalRM-IPS estimate instead of its own (DR's own estimate leans on its pseudo-labels), and a lower clip.
if [[ " $DATASETS " == *" ultrafeedback "* ]]; then
  for spec in "0.5 val-ips --val-method causalrm-ips" "0.1 val-ips --val-method causalrm-ips" "0.1 clip0.02 --clip 0.02"; do
    set -- $spec
    name="ultrafeedback_teacher_a${1}_r0.2-0.1_${2}"
    [[ -s "$OUT/$name.json" ]] && { echo "skip $name (exists)"; continue; }
    echo "== $name"
    causalrm bench --dataset ultrafeedback --rating teacher --alpha "$1" --rho01 0.2 --rho10 0.1 "$3" "$4" \
      --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
      --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
  done
fi
# Investigation: which difference from the synthetic control matters? The control at the embedding's dimension
# (384 Gaussian features, linear score), and WildBench's real MiniLM embeddings with a *linear* teacher.
if [[ "${CONTROL:-1}" == 1 ]]; then
  name=synthetic384_a0.1_r0.2-0.1
  if [[ ! -s "$OUT/$name.json" ]]; then
    echo "== $name"
    causalrm bench --dataset synthetic:20000x384 --alpha 0.1 --rho01 0.2 --rho10 0.1 \
      --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
      --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
  fi
fi
if [[ " $DATASETS " == *" wildbench "* ]]; then
  name=wildbench_teacher-linear_a0.1_r0.2-0.1
  if [[ ! -s "$OUT/$name.json" ]]; then
    echo "== $name"
    causalrm bench --dataset wildbench --rating teacher --teacher linear --alpha 0.1 --rho01 0.2 --rho10 0.1 \
      --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
      --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
  fi
fi

# Real feedback: oasst1 emoji reactions, evaluated against the crowd quality label on held-out prompt groups.
name=oasst1_real-feedback
if [[ ! -s "$OUT/$name.json" ]]; then
  echo "== $name"
  causalrm bench --dataset oasst1 --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
    --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
fi
# Real feedback with flip rates from the audited gold labels of the train/val rows (FlipRateEstimator "gold").
name=oasst1_real-feedback_gold-rates
if [[ ! -s "$OUT/$name.json" ]]; then
  echo "== $name"
  causalrm bench --dataset oasst1 --flip-method gold --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" \
    --quiet --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
fi

# One compact table over every cell (R² mean ± std over seeds, gap closed, mean estimated flip rates).
python - "$OUT" > "$OUT/summary.md" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
methods = ["naive", "ips", "denoise", "causalrm-ips", "causalrm-dr", "oracle"]
gapped = ["ips", "denoise", "causalrm-ips", "causalrm-dr"]
cells = [(os.path.basename(p)[:-5], json.load(open(p))) for p in sorted(glob.glob(os.path.join(out, "*.json")))]


def r2(s, m):
    e = s.get(m)
    return "–" if not e or e["r2"]["mean"] is None else f"{e['r2']['mean']:.3f} ± {e['r2']['std']:.3f}"


def gap(s, m):
    g = (s.get(m) or {}).get("gap_closed")
    if not g or g["value"] is None:
        return "–"
    lo, hi = g["ci"]
    return f"{g['value']:+.0%} [{lo:+.0%}, {hi:+.0%}]" if lo is not None else f"{g['value']:+.0%}"


print("R² on the clean test split (mean ± std over seeds)\n")
print("| cell | " + " | ".join(methods) + " |")
print("|" + "---|" * (len(methods) + 1))
for name, d in cells:
    print(f"| {name} | " + " | ".join(r2(d["summary"], m) for m in methods) + " |")
print("\nShare of the naive -> oracle R² gap closed [95% bootstrap CI over seeds]; mean estimated flip rates\n")
print("| cell | " + " | ".join(gapped) + " | rho01 / rho10 est. |")
print("|" + "---|" * (len(gapped) + 2))
for name, d in cells:
    rho = [(n["rho01_hat"], n["rho10_hat"]) for n in d["nuisances"] if n.get("rho01_hat") is not None]
    rh = f"{sum(a for a, _ in rho) / len(rho):.2f} / {sum(b for _, b in rho) / len(rho):.2f}" if rho else "–"
    print(f"| {name} | " + " | ".join(gap(d["summary"], m) for m in gapped) + f" | {rh} |")
PY
echo "done: $OUT (summary: $OUT/summary.md)"
