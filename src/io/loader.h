// Finds out what a model path is and loads it, with no conversion step:
//   synthetic:NAME                      seeded random weights of a real shape (io/synthetic.h)
//   DIR with config.json                Hugging Face checkpoint (io/hf_model.h)
//   FILE.gguf, or DIR holding one       llama.cpp GGUF model (io/gguf_model.h)
//   DIR with a llama2.c .bin, or a .bin llama2.c checkpoint (io/llama2c.h)
#pragma once
#include <string>

#include "model/weights.h"

namespace specq {

Model load_model(const std::string& path);

}  // namespace specq
