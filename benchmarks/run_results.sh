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

# Real feedback: oasst1 emoji reactions, evaluated against the crowd quality label on held-out prompt groups.
name=oasst1_real-feedback
if [[ ! -s "$OUT/$name.json" ]]; then
  echo "== $name"
  causalrm bench --dataset oasst1 --seeds "$SEEDS" --methods "$METHODS" --threads "$THREADS" --quiet \
    --json "$OUT/$name.json" --markdown "$OUT/$name.md" >/dev/null
fi
echo "done: $OUT"
