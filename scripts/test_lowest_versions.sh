#!/usr/bin/env bash
# CI step: install the LOWEST versions pyproject.toml allows for every direct dependency (core and
# the hf, hub, train, openai and leaderboard extras, plus the test tools) into a separate venv, and run the core,
# reward, training and openai-adapter tests there. A floor that is too low fails here; raise it in pyproject.toml.
#
# torch stays the CPU wheel the main CI installs (pip first; uv is told it is already there via
# an override, so it never swaps in another build). Needs only PyPI.
#   bash scripts/test_lowest_versions.sh            # from a clean checkout
#   LOWEST_VENV=/tmp/lowest bash scripts/test_lowest_versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LOWEST_VENV:-.venv-lowest}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "torch==2.13.0" uv
TORCH_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
OVERRIDES="$(mktemp)"
trap 'rm -f "$OVERRIDES"' EXIT
echo "torch==${TORCH_VERSION}" >"$OVERRIDES"
# The transformers floor (5.17, what vLLM <= 0.31 accepts) needs torchvision for images, which cannot be
# installed beside this CPU torch wheel; 5.18 is the lowest that runs without it, so it is checked here.
echo "transformers==5.18.0" >>"$OVERRIDES"

# lowest-direct: each direct requirement at its floor, transitive ones at their newest
"$VENV/bin/uv" pip install --python "$PY" --quiet --resolution lowest-direct --override "$OVERRIDES" \
  -e ".[hf,hub,train,openai,leaderboard]" "pytest>=8" "hypothesis>=6.100" "pandas>=2.2.2"

echo "lowest-direct versions:"
"$PY" - <<'PY'
import importlib.metadata as m
for name in ("numpy", "pycocotools", "pillow", "pydantic", "click", "rich", "tqdm", "pyyaml", "scipy",
             "transformers", "accelerate", "safetensors", "datasets", "huggingface_hub", "trl", "peft",
             "spacy", "spacy-lookups-data", "pycurl", "aiohttp", "xgrammar", "pyicu", "torch"):
    print(f"  {name}=={m.version(name)}")
PY

# (the GRPO step benchmark check is left to the main run: it adds nothing version-specific)
PYTHONPATH="$PWD" "$PY" -m pytest -q -x -p no:cacheprovider tests/core tests/rewards tests/train \
  tests/adapters/test_openai.py \
  --deselect tests/train/test_grpo_smoke.py::test_grpo_step_benchmark_runs_on_cpu "$@"
