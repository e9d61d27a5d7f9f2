#!/usr/bin/env bash
# Sets up, builds (release) and runs the main job: a generation with $SPECQ_MODEL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cmake --preset release -DSPECQ_TESTS=OFF >/dev/null
cmake --build build/release -j"$SPECQ_JOBS" --target specq
model=${SPECQ_MODEL:-../shared/models/stories260K}
if [ -z "$(./build/release/specq info --model "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokenizer"])')" ]; then
  exec ./build/release/specq generate --model "$model" --prompt-ids "" --max-new-tokens 200 "$@"
fi
exec ./build/release/specq generate --model "$model" --prompt "Once upon a time" --max-new-tokens 200 "$@"
