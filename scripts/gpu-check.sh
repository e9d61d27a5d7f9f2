#!/usr/bin/env bash
# One call on the GPU machine: pcre2 and ICU from the carried Debian .debs (the image lacks their -dev packages),
# build (gpu preset, GPU tests on), CPU + GPU tests, the CUDA benches, the Hugging Face baseline on
# the same card, and a short table last. Logs and JSON go to $OUT.
#   usage (from the repo root, via the device tool with carry [".debs"]):
#     scripts/gpu-check.sh [full|bench|tests|build|w4|spec|eval]   (build: only the specq binary, for profiling;
#     w4: GPU tests, the W4A16 benches next to FP16 and the EAGLE benches, no CPU tests;
#     spec: GPU tests and the EAGLE benches; eval: the EAGLE head test, EAGLE with/without FR-Spec and the
#     Spec-Bench speed run of scripts/eval-speed.sh with its report)
#   SPECQ_ARCHS overrides the CUDA architectures (e.g. 90a to halve the build on an H100).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/specq-gpu-out}
mkdir -p "$OUT"
MODE=${1:-full}
log() { echo "== $(date +%T) $*"; }

# ---- pcre2 and ICU (and pkg-config if missing) unpacked under /opt/specq-debs ----
# The image lacks libpcre2-dev and libicu-dev: the carried .debs (libpcre2-*, libicu-dev, libicu72, pkgconf)
# are unpacked, their .pc files pointed at the unpacked tree, and the libraries put on the loader path.
if ! pkg-config --exists libpcre2-8 icu-uc 2>/dev/null; then
  prefix=/opt/specq-debs
  mkdir -p "$prefix"
  for f in .debs/*.deb; do dpkg -x "$f" "$prefix"; done
  libdir=$prefix/usr/lib/x86_64-linux-gnu
  # pcre2's .pc files say "prefix=/usr", ICU's "prefix = /usr".
  for pc in "$libdir"/pkgconfig/*.pc; do sed -i -E "s#^prefix *=.*#prefix=$prefix/usr#" "$pc"; done
  export PKG_CONFIG_PATH=$libdir/pkgconfig:${PKG_CONFIG_PATH:-}
  export LD_LIBRARY_PATH=$libdir:${LD_LIBRARY_PATH:-}
  export PATH=$prefix/usr/bin:$PATH
  command -v pkg-config >/dev/null || { echo "no pkg-config on this machine"; exit 1; }
  pkg-config --exists libpcre2-8 icu-uc || { echo "pcre2 or ICU missing: carry .debs (see the header)"; exit 1; }
fi
# Tests read ../shared; the device gets the carried copy in .shared (git-ignored).
[[ -d .shared && ! -e ../shared ]] && ln -sfn "$PWD/.shared" ../shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

# ---- build ----
log build
archs=()
[[ -n "${SPECQ_ARCHS:-}" ]] && archs=(-DCMAKE_CUDA_ARCHITECTURES="$SPECQ_ARCHS")
if ! cmake --preset gpu -DSPECQ_GPU_TESTS=ON -DSPECQ_BENCH=OFF "${archs[@]}" >"$OUT/configure.log" 2>&1; then
  tail -40 "$OUT/configure.log"; exit 1
fi
if [[ "$MODE" == "build" ]]; then cmake --build build/gpu -j16 --target specq >"$OUT/build.log" 2>&1; exit $?; fi
if [[ "$MODE" == "eval" ]]; then
  # The EAGLE head test, EAGLE with and without FR-Spec, then the Spec-Bench speed run (AR / EAGLE-2 /
  # EAGLE-2 + FR-Spec / cascade) and its report: the shortest call that covers both.
  cmake --build build/gpu -j16 --target specq gpu_eagle_head_test >"$OUT/build.log" 2>&1 ||
    { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
  SPECQ=build/gpu/specq
  log "gpu_eagle_head_test"
  build/gpu/tests/gpu_eagle_head_test --gtest_filter='CudaEagleHead.*:CudaTopK.*' >"$OUT/gpu_eagle_head_test.log" 2>&1
  echo "exit $? | $(grep -E '^\[  (PASSED|FAILED)|FAILED  \]' "$OUT/gpu_eagle_head_test.log" | tr '\n' ' ')"
  M=synthetic:llama3-8b
  $SPECQ frspec build --model $M --tokenizer ../shared/tokenizers/llama3 --corpus ../shared/data/gsm8k/test.jsonl \
    --vocab-size 32768 --out "$OUT/frspec_32k.safetensors" | tee "$OUT/frspec_build.json"
  for fr in "" "--frspec $OUT/frspec_32k.safetensors"; do
    log "spec bench $M $fr"
    $SPECQ bench --device cuda --model $M --prompt-tokens 512 --new-tokens 128 --tokens-per-forward 1 --repeats 3 \
      --spec eagle --eagle random $fr --json >"$OUT/spec${fr:+_frspec}.json" 2>"$OUT/spec${fr:+_frspec}.err" ||
      tail -3 "$OUT/spec${fr:+_frspec}.err"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); s=d['speculative']; print(f\"{d['tokens_per_second']:.1f} tok/s AR, {s['ms_per_step']:.2f} ms/step, phases {s['phase_ms_per_step']}, projected {s['projected_speedup_by_tau']}\")" "$OUT/spec${fr:+_frspec}.json"
  done
  log "Spec-Bench speed run"
  PER_CATEGORY=${PER_CATEGORY:-1} MAX_NEW=${MAX_NEW:-128} FRSPEC="$OUT/frspec_32k.safetensors" \
    bash scripts/eval-speed.sh $SPECQ "$OUT/spec_bench" >"$OUT/eval.log" 2>&1 || tail -20 "$OUT/eval.log"
  cat "$OUT/spec_bench/report/report.md"
  # The device tool returns at most 8 files: pack the rest, keep the report and its chart beside.
  stage=$(mktemp -d)
  cp "$OUT/spec_bench/report/report.md" "$OUT/spec_bench/report/speedup.svg" "$stage/" 2>/dev/null
  (cd "$OUT" && tar czf "$stage/logs.tgz" ./* && find . -mindepth 1 -delete && mv "$stage"/* .)
  exit 0
fi
# -k 0: a test of another area failing to build here must not hide the CUDA results.
if ! cmake --build build/gpu -j16 -- -k 0 >"$OUT/build.log" 2>&1; then
  echo "build failures:"; grep "^FAILED" "$OUT/build.log"
  [[ -x build/gpu/specq && -x build/gpu/tests/gpu_kernels_test ]] || { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
fi
SPECQ=build/gpu/specq

# ---- tests ----
log tests
[[ "$MODE" == "w4" || "$MODE" == "spec" ]] || (cd build/gpu && ctest -L cpu -j16 --output-on-failure >"$OUT/ctest_cpu.log" 2>&1; tail -3 "$OUT/ctest_cpu.log")
for t in build/gpu/tests/gpu_*; do
  [[ -x "$t" ]] || continue
  "$t" >"$OUT/$(basename "$t").log" 2>&1
  echo "$(basename "$t"): exit $? | $(grep -E '^\[  (PASSED|FAILED)|FAILED  \]|greedy argmax|rows with' "$OUT/$(basename "$t").log" | tr '\n' ' ')"
done
if [[ "$MODE" == "tests" ]]; then (cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz ./*); exit 0; fi

# ---- benches ----
bench() {  # name, args...
  local name=$1; shift
  log "bench $name: $*"
  SPECQ_CUDA_VERBOSE=1 $SPECQ bench --device cuda --json "$@" >"$OUT/bench_$name.json" 2>"$OUT/bench_$name.err"
  echo "exit $?"; tail -12 "$OUT/bench_$name.err"
}
M=synthetic:llama3-8b
W4_COUNTS=1,2,4,8,16,32,64,128,256
if [[ "$MODE" == "full" || "$MODE" == "w4" ]]; then
  bench w4 --model $M@w4a16 --prompt-tokens 512 --new-tokens 128 --tokens-per-forward $W4_COUNTS
fi
if [[ "$MODE" == "full" || "$MODE" == "w4" || "$MODE" == "spec" ]]; then
  # EAGLE-2 with a random head (tau ~1: the per-phase times and the projected speedups are the result).
  for target in "" "@w4a16"; do
    log "spec bench $M$target"
    $SPECQ bench --device cuda --model $M$target --prompt-tokens 512 --new-tokens 128 --tokens-per-forward 1 \
      --repeats 3 --spec eagle --eagle random --json >"$OUT/spec${target//@/_}.json" 2>"$OUT/spec${target//@/_}.err" \
      || tail -3 "$OUT/spec${target//@/_}.err"
  done
fi
if [[ "$MODE" == "spec" ]]; then :
elif [[ "$MODE" == "w4" ]]; then
  bench p512 --model $M --prompt-tokens 512 --new-tokens 64 --tokens-per-forward $W4_COUNTS
  [[ -n "${SPECQ_W4_70B:-}" ]] && bench w4_70b --model synthetic:llama3-70b@w4a16 --prompt-tokens 512 --new-tokens 32 \
    --tokens-per-forward 1,64
else
bench p512 --model $M --prompt-tokens 512 --new-tokens 128 --tokens-per-forward 1,2,4,8,16,32,64,128,256
bench p1024 --model $M --prompt-tokens 1024 --new-tokens 32 --tokens-per-forward 1,16,64,128,256
bench p2048 --model $M --prompt-tokens 2048 --new-tokens 32 --tokens-per-forward 1,64
fi
if [[ "$MODE" == "full" ]]; then
  bench ctx8k --model $M --prompt-tokens 8000 --new-tokens 128 --max-context 8192 --tokens-per-forward 1,64
  bench bf16 --model $M --dtype bf16 --prompt-tokens 512 --new-tokens 64 --tokens-per-forward 1,64
  log "sampled decode (temperature 0.8, top-p 0.9, top-k 50: drawn on the device) vs greedy"
  for t in 0 0.8; do
    $SPECQ generate --device cuda --model $M --prompt-ids 1,2,3,4,5,6,7,8 --max-new-tokens 256 --temperature $t \
      --top-p 0.9 --top-k 50 --json >"$OUT/generate_t$t.json" 2>"$OUT/generate_t$t.err" || tail -3 "$OUT/generate_t$t.err"
  done
  log "70B in f16 (should fail before allocating)"
  $SPECQ bench --device cuda --model synthetic:llama3-70b --prompt-tokens 1 --new-tokens 2 --tokens-per-forward 1 \
    --repeats 1 2>&1 | tail -2 | tee "$OUT/70b.txt"
  log "Hugging Face transformers eager fp16"
  PYTHONUNBUFFERED=1 python3 tools/hf_bench.py --prompt-tokens 512 --new-tokens 64 >"$OUT/hf.json" 2>"$OUT/hf.err" \
    || tail -5 "$OUT/hf.err"
fi

# ---- summary (also in $OUT/summary.txt; every log and JSON in $OUT/logs.tgz) ----
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    try: return json.load(open(os.path.join(out, name)))
    except Exception: return None
gpu = open(os.path.join(out, "gpu.txt")).read().strip()
print(f"\n=== specq CUDA summary on {gpu} ===")
for name in ["p512", "p1024", "p2048", "ctx8k", "bf16", "w4", "w4_70b"]:
    b = load(f"bench_{name}.json")
    if not b: continue
    curve = b["forward_ms_by_tokens"]; one = curve.get("1")
    c = " ".join(f"{k}:{v:.2f}ms({v/one:.2f}x)" for k, v in curve.items()) if one else ""
    print(f"{name:6} decode {b['tokens_per_second']:6.1f} tok/s = {100*b['floor_fraction']:5.1f}% of floor "
          f"({b['floor_tokens_per_second']:.1f} tok/s, copy {b['copy_gb_per_second']:.0f} GB/s) | "
          f"prefill {b['prompt_tokens']} tok: {b['prefill_tokens_per_second']:.0f} tok/s | {c}")
# Linear layers per transformer layer (qkv + o + gate|up(+SwiGLU) + down), from the per-op split.
lin_ops = ["qkv", "wo", "gate_up", "swiglu", "down"]
rows = {}
for name in ["p512", "w4", "w4_70b"]:
    b = load(f"bench_{name}.json")
    if not b or not b.get("op_ms_by_tokens"): continue
    layers = b.get("layers") or (80 if "70b" in name else 32)
    rows[name] = {k: 1e3 * sum(v.get(o, 0.0) for o in lin_ops) / layers for k, v in b["op_ms_by_tokens"].items()}
if rows:
    counts = sorted({int(k) for r in rows.values() for k in r})
    print("linear us per layer by tokens: " + " | ".join(
        f"{name}: " + " ".join(f"{c}:{r[str(c)]:.0f}" for c in counts if str(c) in r) for name, r in rows.items()))
    if "w4" in rows and "p512" in rows:
        w, f = rows["w4"], rows["p512"]
        print("w4a16 vs fp16 (x faster): " + " ".join(f"{c}:{f[str(c)]/w[str(c)]:.2f}" for c in counts
                                                       if str(c) in w and str(c) in f) +
              " | w4a16 n/1: " + " ".join(f"{c}:{w[str(c)]/w['1']:.2f}" for c in counts if str(c) in w))
b = load("bench_p512.json")
if b and b.get("op_ms"):
    tot = sum(b["op_ms"].values())
    print("decode step by op: " + ", ".join(f"{k} {v:.3f}ms ({100*v/tot:.0f}%)" for k, v in b["op_ms"].items()))
for name in ["spec", "spec_w4a16"]:
    d = load(f"{name}.json")
    if not d or "speculative" not in d: continue
    sp = d["speculative"]
    print(f"{name:10} EAGLE random head: {d['tokens_per_second']:.1f} tok/s, {sp['ms_per_step']:.2f} ms/step, "
          f"phases {sp['phase_ms_per_step']}, projected by tau {sp['projected_speedup_by_tau']}")
for t in ["0", "0.8"]:
    g = load(f"generate_t{t}.json")
    if g: print(f"generate temperature {t}: {g['tokens_per_second']:.1f} tok/s over {g['new_tokens']} tokens")
hf = load("hf.json")
if hf: print(f"HF transformers eager fp16: {hf['decode_tokens_per_second']:.1f} tok/s (same card, same shapes)")
if b:
    print(f"ours {b['tokens_per_second']:.1f} tok/s | floor {b['floor_tokens_per_second']:.1f} | "
          f"HF {hf['decode_tokens_per_second'] if hf else float('nan'):.1f} | gpt-fast anchor 155.2 (bf16, H100)")
PY
# The device tool returns at most 8 files: pack the rest.
(cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz --exclude=summary.txt ./* &&
  find . -maxdepth 1 -type f ! -name logs.tgz ! -name summary.txt -delete)
