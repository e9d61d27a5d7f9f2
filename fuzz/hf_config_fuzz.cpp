// Feeds arbitrary bytes to config.json parsing (strict JSON, then the field checks). Anything but a
// valid config must end in specq::Error; a valid one must pass ModelConfig::validate.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/json_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json json = specq::parse_json_strict(text, "fuzz input");
    specq::ModelConfig config = specq::parse_hf_config(json, "fuzz input");
    specq::apply_generation_config(json, "fuzz input", config);
    config.validate();
    // The derived sizes and the RoPE table must be computable for any accepted config.
    if (specq::rope_inv_freq(config).size() != size_t(config.head_dim / 2)) __builtin_trap();
  } catch (const specq::Error&) {
    // Rejected input.
  }
  return 0;
}
