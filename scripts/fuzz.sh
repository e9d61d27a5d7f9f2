#!/usr/bin/env bash
# Builds the asan preset's libFuzzer targets and runs each for SECONDS (default 60).
# A target NAME gets a fresh corpus in build/asan/fuzz-corpus/NAME, seeded by fuzz/**/NAME_seeds.py
# when one exists (seeds are made from the test fixtures, nothing binary is committed). A crash
# leaves its input in build/asan/fuzz-artifacts/ and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
source scripts/env.sh

cmake --preset asan >/dev/null
# Every executable target under fuzz/ (the tokenizer's included) is a fuzzer.
mapfile -t targets < <(cmake --build build/asan --target help | sed -n 's/^\([A-Za-z0-9_]*_fuzz\): .*/\1/p' | sort -u)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets (configure the asan preset with SPECQ_FUZZ=ON)" >&2
  exit 1
fi
cmake --build build/asan -j"$SPECQ_JOBS" --target "${targets[@]}"

artifacts=build/asan/fuzz-artifacts
mkdir -p "$artifacts"
for name in "${targets[@]}"; do
  binary=$(find build/asan/fuzz -type f -name "$name" -perm -u+x | head -n 1)
  corpus=build/asan/fuzz-corpus/$name
  rm -rf "$corpus"
  mkdir -p "$corpus"
  seeds=$(find fuzz -name "${name}_seeds.py" | head -n 1)
  [ -n "$seeds" ] && python3 "$seeds" "$corpus"
  echo "== $name: ${seconds}s, $(ls "$corpus" | wc -l) seeds"
  # detect_leaks=0: LeakSanitizer needs ptrace, which containers often forbid.
  ASAN_OPTIONS=detect_leaks=0 "$binary" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/$name-"
done
