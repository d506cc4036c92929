#!/usr/bin/env bash
# Install everything the test suite needs into .venv (from a clean checkout) and run it.
# Used verbatim by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  # Say what is coming before a silent install: measured on this project's machine (see README).
  echo "run_tests.sh: installing the test environment into .venv: the CPU wheel of torch, transformers, TRL," >&2
  echo "  spaCy, playwright and the dev extras (about 3.2 GB on disk; 8 minutes on a first run here), then" >&2
  echo "  Debian's Chromium if it is missing. Later runs reuse .venv and only check it." >&2
  python3 -m venv .venv
fi
. .venv/bin/activate
echo "run_tests.sh: [1/4] pip" >&2
python -m pip install -q --upgrade pip
# The CPU wheel of torch (an unpinned torch pulls a multi-GB CUDA build); no torchvision.
echo "run_tests.sh: [2/4] torch 2.13.0 (CPU wheel)" >&2
python -m pip install -q "torch==2.13.0"
echo "run_tests.sh: [3/4] regiondial-bench with its dev extras (PyICU builds against Debian's ICU)" >&2
# PyICU (the leaderboard extra: TR39 confusable names) builds against the system ICU
if ! pkg-config --exists icu-uc 2>/dev/null || ! command -v g++ >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libicu-dev pkg-config g++ >/dev/null
fi
python -m pip install -q -e ".[dev]"

# Headless Chromium for the leaderboard's browser test (Debian's package).
echo "run_tests.sh: [4/4] Chromium (Debian's package), then the tests" >&2
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

# The official question files (no licence: read in place, never copied) for the leaderboard's
# refcocoplus/refcocog benches (leaderboard/benches.yaml); override to point elsewhere.
export REGIONDIAL_BENCH_REFCOCOPLUS="${REGIONDIAL_BENCH_REFCOCOPLUS:-$PWD/../shared/upstream_regiondial/refcocoplus.json}"
export REGIONDIAL_BENCH_REFCOCOG="${REGIONDIAL_BENCH_REFCOCOG:-$PWD/../shared/upstream_regiondial/refcocog.json}"

# The committed leaderboard must be what the submissions re-score to.
regiondial leaderboard build --check

python -m pytest "$@"
