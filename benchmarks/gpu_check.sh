#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) in one command on a fresh GPU machine; under 8 minutes.
#   OBLIVIATE_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh --quick        # the CPU mode CI runs
# Python, first that applies: ./.venv (made earlier by setup.sh); OBLIVIATE_WHEELS=DIR, a folder of wheels
# installed next to the machine's own python3 and its CUDA torch (a machine without network); else
# `bash setup.sh --dev` (OBLIVIATE_TORCH / OBLIVIATE_TORCH_INDEX choose the CUDA build).
# Other arguments go to gpu_check.py (--budget, --steps, --out, ...); the table also lands in OUT/table.md.
#
# A GPU machine without network whose python3 holds a CUDA torch, transformers, accelerate, peft, ... (the
# device image this project is lent): fetch the rest as wheels where pip works, carry them along:
#   bash benchmarks/gpu_check.sh --fetch-wheels .whl      # here; about 26 MB
#   OBLIVIATE_WHEELS=.whl bash benchmarks/gpu_check.sh    # there
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fetch-wheels" ]; then
  dir=${2:?usage: bash benchmarks/gpu_check.sh --fetch-wheels DIR}
  PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
  # What the check imports and that image lacks (with their own needs), for CPython 3.12 on x86-64 Linux;
  # openai (ULMR's generator only) stays behind.
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" datasets dill multiprocess omegaconf gguf bert-score nltk \
    faiss-cpu pydantic pydantic-core annotated-types typing-inspection hjson
  # Pure-Python packages published as source only: built into wheels here (deepspeed's ops compile there, JIT).
  "$PY" -m pip wheel -q --no-deps -w "$dir" antlr4-python3-runtime==4.9.3 rouge-score deepspeed
  du -sh "$dir"
  exit 0
fi
if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
elif [ -n "${OBLIVIATE_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/obliviate-site "$OBLIVIATE_WHEELS"/*.whl
  export PYTHONPATH="$PWD/src:/tmp/obliviate-site${PYTHONPATH:+:$PYTHONPATH}"
  PY=python3
else
  bash setup.sh --dev
  PY=.venv/bin/python
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
