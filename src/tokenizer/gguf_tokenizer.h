// The tokenizer a GGUF file describes in its `tokenizer.*` metadata, built as the equivalent
// Hugging Face tokenizer (tokenizer.json + tokenizer_config.json terms) so that one BPE serves both.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace specq {

// Supports tokenizer.ggml.model "gpt2" (byte-level BPE) with the pre-tokenizers (tokenizer.ggml.pre)
// whose Hugging Face regexes are known: see kPreTokenizers in the .cpp. Anything else is an Error
// naming the file and the value.
std::unique_ptr<Tokenizer> make_gguf_tokenizer(const GgufHeader& header);

// The same tokenizer as the contents of a tokenizer.json and a tokenizer_config.json (what
// make_gguf_tokenizer builds from, and what `specq quantize` writes next to a quantized GGUF model).
struct HfTokenizerFiles {
  nlohmann::json tokenizer;
  nlohmann::json config;
};
HfTokenizerFiles gguf_tokenizer_files(const GgufHeader& header);

// The Hugging Face pre_tokenizer JSON (as text) for a llama.cpp pre-tokenizer name; Error if unknown.
std::string gguf_pre_tokenizer_json(std::string_view pre, const std::string& source);

}  // namespace specq
