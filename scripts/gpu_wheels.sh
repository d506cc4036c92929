#!/usr/bin/env bash
# Wheels for the GPU machine (benchmarks/gpu_suite.sh installs them there from .whl/).
#
# Its image has torch, transformers 5.17, peft, accelerate, numpy, scipy, pillow, tokenizers,
# click, rich, tqdm and pyyaml, and no network; the project also needs pydantic and pycocotools,
# and constrained decoding needs xgrammar. Run this here (PyPI reachable), then carry .whl with
# the device call. Pinned to the versions the test suite runs with; CPython 3.12, x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-python3 -m pip}"
mkdir -p .whl
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing_extensions==4.16.0 pycocotools==2.0.11 xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2
ls -la .whl
du -sh .whl
