#!/usr/bin/env bash
# Every GPU figure in one command (benchmarks/gpu_suite.py): the hf generation sweep, free vs
# constrained decoding, SAM2 masks/s and one GRPO step, random weights at the 7B / Hiera-L shapes.
#
# On the GPU machine (torch with CUDA and transformers preinstalled, no network): packages that
# its image lacks (pydantic, pycocotools, xgrammar, ...) travel as wheels in .whl/, made here
# beforehand by scripts/gpu_wheels.sh and carried along; they are installed into /tmp/site and
# the project is used from the checkout through PYTHONPATH (no pip install -e).
#
#   bash benchmarks/gpu_suite.sh                    # writes $OUT/gpu_suite.json (or /tmp/gpu_suite/)
#   bash benchmarks/gpu_suite.sh --tiny             # the CPU check (tiny shapes)
#
# Extra arguments go to benchmarks/gpu_suite.py. PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
RESULTS="${OUT:-/tmp/gpu_suite}"
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# only where the interpreter lacks them (a development machine has them all, and cp312 wheels may not fit it)
if ! "$PYTHON" -c "import pydantic, pycocotools, xgrammar" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  SITE="${GPU_SUITE_SITE:-/tmp/site}"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# fail in seconds, not minutes, when the project cannot be imported (the versions go in the JSON)
"$PYTHON" -c "import regiondial_bench.api"
if [ -x "$(command -v nvidia-smi)" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PYTHON" benchmarks/gpu_suite.py --json "$RESULTS/gpu_suite.json" --markdown "$RESULTS/gpu_suite.md" "$@"
