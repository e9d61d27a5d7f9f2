// llama2.c's tokenizer.bin format: int32 max_token_length, then per token float32 score, int32 length, bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <span>

#include "tokenizer/tokenizer.h"

namespace specq {

std::unique_ptr<Tokenizer> make_llama2c_tokenizer(std::span<const uint8_t> file_bytes);

}  // namespace specq
