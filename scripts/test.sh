#!/usr/bin/env bash
# The test suite, as CI runs it: release build with warnings as errors (CUDA sources compiled when
# nvcc exists, GPU tests not run), all CPU tests; then ASan+UBSan build, its tests, and the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The server tests' clients (tests/server/test_server.py): the official openai package, requests, Selenium.
python3 -c "import openai, requests, selenium" 2>/dev/null ||
  python3 -m pip install --quiet openai selenium requests ||
  python3 -m pip install --quiet --break-system-packages openai selenium requests
source scripts/env.sh
fuzz_seconds=${SPECQ_FUZZ_SECONDS:-60}

cmake --preset ci >/dev/null
cmake --build build/ci -j"$SPECQ_JOBS"
ctest --test-dir build/ci -L cpu --output-on-failure -j"$SPECQ_JOBS"

cmake --preset asan >/dev/null
cmake --build build/asan -j"$SPECQ_JOBS"
ASAN_OPTIONS=detect_leaks=0 ctest --test-dir build/asan -L cpu --output-on-failure -j"$SPECQ_JOBS"
if [ -x scripts/fuzz.sh ] || [ -f scripts/fuzz.sh ]; then
  bash scripts/fuzz.sh "$fuzz_seconds"
fi
