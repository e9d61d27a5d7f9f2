#!/usr/bin/env bash
# Spec-Bench speed run of AR vs EAGLE-2 vs cascade on one target, then `specq report` (Markdown tables with
# per-phase times, report.json, speedup.svg). With synthetic: models the acceptance is meaningless (random
# weights) and the report says so; the speed of each phase is what such a run measures.
#   usage: scripts/eval-speed.sh SPECQ_BINARY OUT_DIR [extra `specq eval` flags...]
#   env: TARGET (synthetic:llama3-8b), DRAFT (cascade's middle model, synthetic:llama3.2-1b),
#        TOKENIZER (../shared/tokenizers/llama3), DATA_DIR (../shared/data), DEVICE (cuda),
#        PER_CATEGORY (2: questions per Spec-Bench category), MAX_NEW (256), BENCH (spec_bench),
#        FRSPEC (an FR-Spec token map: adds an EAGLE-2 + FR-Spec run)
set -euo pipefail
specq=${1:?usage: scripts/eval-speed.sh SPECQ_BINARY OUT_DIR [eval flags...]}
out=${2:?usage: scripts/eval-speed.sh SPECQ_BINARY OUT_DIR [eval flags...]}
shift 2
target=${TARGET:-synthetic:llama3-8b}
common=(--bench "${BENCH:-spec_bench}" --model "$target" --tokenizer "${TOKENIZER:-../shared/tokenizers/llama3}"
        --data-dir "${DATA_DIR:-../shared/data}" --device "${DEVICE:-cuda}" --per-category "${PER_CATEGORY:-2}"
        --max-new-tokens "${MAX_NEW:-256}" "$@")
mkdir -p "$out"
"$specq" eval "${common[@]}" --out "$out/ar.jsonl"
"$specq" eval "${common[@]}" --spec eagle --out "$out/eagle2.jsonl"
runs=("$out/ar.jsonl" "$out/eagle2.jsonl")
if [[ -n "${FRSPEC:-}" ]]; then
  "$specq" eval "${common[@]}" --spec eagle --frspec "$FRSPEC" --out "$out/eagle2_frspec.jsonl"
  runs+=("$out/eagle2_frspec.jsonl")
fi
"$specq" eval "${common[@]}" --spec cascade --draft "${DRAFT:-synthetic:llama3.2-1b}" --out "$out/cascade.jsonl"
runs+=("$out/cascade.jsonl")
"$specq" report --baseline "${runs[@]}" --out "$out/report"
