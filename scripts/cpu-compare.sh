#!/usr/bin/env bash
# CPU decode speed of specq vs llama2.c's run.c on the same checkpoints, side by side.
# usage: scripts/cpu-compare.sh RUN_C_SOURCE SPECQ_BINARY [THREADS...]
# run.c comes from llama2.c's public source, fetched outside the repository (it is never committed).
# Both programs time decode with their own clocks (prefill and the first token excluded); we take
# the median of 5 alternating runs of each.
set -euo pipefail
cd "$(dirname "$0")/.."
run_c=$1; specq=$2; shift 2
threads=("${@:-1}")
work=$(mktemp -d)
gcc -O3 -march=native -fopenmp -o "$work/run" "$run_c" -lm
python3 tools/make_llama2c_checkpoint.py --out "$work/stories15m" >/dev/null
cp ../shared/models/stories260K/stories260K.bin ../shared/models/stories260K/tok512.bin "$work/" 2>/dev/null ||
  cp shared-models/stories260K/* "$work/"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
runc_tps() { OMP_NUM_THREADS=$1 "$work/run" "$2" -z "$3" -t 0 -n 256 2>&1 >/dev/null | awk '/achieved/ {print $3}'; }
specq_tps() {
  "$specq" generate --model "$2" --prompt-ids "" --max-new-tokens 255 --threads "$1" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"])'
}

printf '%-12s %8s %14s %14s %8s\n' model threads "run.c tok/s" "specq tok/s" ratio
for t in "${threads[@]}"; do
  for m in stories260K stories15m; do
    if [ "$m" = stories260K ]; then bin="$work/stories260K.bin"; tok="$work/tok512.bin"; model="$work/stories260K.bin"
    else bin="$work/stories15m/model.bin"; tok="$work/stories15m/tokenizer.bin"; model="$work/stories15m"; fi
    a=(); b=()
    for i in 1 2 3 4 5; do a+=("$(runc_tps "$t" "$bin" "$tok")"); b+=("$(specq_tps "$t" "$model")"); done
    ra=$(printf '%s\n' "${a[@]}" | median); rb=$(printf '%s\n' "${b[@]}" | median)
    printf '%-12s %8s %14.1f %14.1f %8.2f\n' "$m" "$t" "$ra" "$rb" "$(awk -v a="$ra" -v b="$rb" 'BEGIN {print b / a}')"
  done
done
rm -rf "$work"
