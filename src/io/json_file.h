// JSON input from checkpoints (safetensors headers, config.json, index files), parsed strictly:
// syntax errors and duplicate keys are Errors naming the source, never silently resolved.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace specq {

// Parses `text`; `source` names it in messages (a file path, or "PATH header").
nlohmann::json parse_json_strict(std::string_view text, const std::string& source);

// Reads and parses a whole file; a missing or unreadable file is an Error.
nlohmann::json read_json_file(const std::string& path);

}  // namespace specq
