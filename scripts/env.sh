# Sourced by the scripts: puts nvcc on PATH where the CUDA toolkit is installed but not on PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
export SPECQ_JOBS=${SPECQ_JOBS:-$(nproc)}
