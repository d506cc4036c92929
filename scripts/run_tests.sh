#!/usr/bin/env bash
# Install everything the test suite needs into .venv (from a clean checkout) and run it.
# Used verbatim by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU wheel of torch (an unpinned torch pulls a multi-GB CUDA build); no torchvision.
python -m pip install -q "torch==2.13.0"
# PyICU (the leaderboard extra) builds against the system ICU
if ! pkg-config --exists icu-uc 2>/dev/null || ! command -v g++ >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libicu-dev pkg-config g++ >/dev/null
fi
python -m pip install -q -e ".[dev]"

# Headless Chromium for the leaderboard's browser test (Debian's package).
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
