#!/usr/bin/env bash
# Set up the CausalRM Workbench in ./.venv, then run one thing:
#   bash scripts/setup.sh app     install the app (UI) and notebooks extras, launch the workbench on the bundled sample
#                                 (http://127.0.0.1:7860)
#   bash scripts/setup.sh test    install the app, notebooks and test extras (and Debian's chromium for the browser
#                                 test), run the tests
# TORCH_SPEC overrides the PyTorch requirement installed first (default: torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-app}"
shift || true

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# PyTorch first, so no other package pulls a multi-GB CUDA build by accident.
python -c "import torch" 2>/dev/null || pip install -q "${TORCH_SPEC:-torch==2.13.0}"

# Install the project with EXTRAS once: a stamp in .venv (named after the extras) records the hash of pyproject.toml
# it was installed from, so later launches skip pip until pyproject.toml changes. An install with more extras counts:
# `setup.sh app` after `setup.sh test` installs nothing.
install_once() {
  local extras="$1" key stamp have extra missing
  key=$(python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
  for stamp in .venv/.causalrm-installed-*; do
    [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]] || continue
    have="-${stamp#.venv/.causalrm-installed-}-"
    missing=0
    for extra in ${extras//,/ }; do
      [[ "$have" == *"-$extra-"* ]] || missing=1
    done
    if [[ $missing -eq 0 ]]; then
      return
    fi
  done
  pip install -q -e ".[${extras}]"
  echo "$key" > ".venv/.causalrm-installed-${extras//,/-}"
}

case "$mode" in
  app)
    install_once app,notebooks
    exec causalrm app "$@"
    ;;
  test)
    install_once app,notebooks,dev,trl
    if [[ ! -x /usr/bin/chromium ]]; then
      if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
      else
        echo "note: /usr/bin/chromium is missing; the browser test will fail (install Debian's chromium)" >&2
      fi
    fi
    # Notebooks run through nbmake with CAUSALRM_FAST=1 (fewer epochs and seeds, same code paths).
    export CAUSALRM_FAST=1
    exec python -m pytest -n 2 --dist loadfile --nbmake tests notebooks "$@"
    ;;
  *)
    echo "usage: bash scripts/setup.sh app|test [extra args]" >&2
    exit 2
    ;;
esac
