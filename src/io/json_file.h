// JSON input from checkpoints (safetensors headers, config.json, index files), parsed strictly:
// syntax errors and duplicate keys are Errors naming the source, never silently resolved.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "core/error.h"

namespace specq {

// Parses `text`; `source` names it in messages (a file path, or "PATH header").
nlohmann::json parse_json_strict(std::string_view text, const std::string& source);

// Reads and parses a whole file; a missing or unreadable file is an Error.
nlohmann::json read_json_file(const std::string& path);

// config[key] as a T; `fallback` when absent or null; an Error naming `source` and the key when it
// has another type.
template <typename T>
T json_field(const nlohmann::json& config, const char* key, T fallback, const std::string& source) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  try {
    return config[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: field '{}' has the wrong type ({})", source, key, config[key].dump());
  }
}

}  // namespace specq
