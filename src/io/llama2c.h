// llama2.c checkpoints: the legacy "version 0" export (7 int32 header, fp32 arrays), as used by
// karpathy/tinyllamas (stories260K, stories15M, ...).
#pragma once
#include <string>

#include "model/weights.h"

namespace specq {

// Loads a llama2.c .bin; weights stay in the memory map except q/k, which are permuted from
// llama2.c's interleaved RoPE pairs to the rotate-half layout the forward uses.
Model load_llama2c(const std::string& path);

}  // namespace specq
