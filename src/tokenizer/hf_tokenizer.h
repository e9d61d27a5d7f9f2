// Tokenizers in Hugging Face's tokenizer.json format (the `tokenizers` library's serialization).
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace specq {

// `tokenizer_json` is the text of a tokenizer.json; `config_json` that of tokenizer_config.json, or "" if
// there is none (then there is no chat template and BOS/EOS come from the post-processor only).
std::unique_ptr<Tokenizer> make_hf_tokenizer(std::string_view tokenizer_json, std::string_view config_json);

// The same from parsed JSON (`config` null when there is no tokenizer_config.json); other formats
// (GGUF metadata) describe their tokenizer in these terms.
std::unique_ptr<Tokenizer> make_hf_tokenizer_from_json(const nlohmann::json& spec, const nlohmann::json& config);

}  // namespace specq
