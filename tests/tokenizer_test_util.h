// Shared by the tokenizer tests: paths to ../shared and the fixtures written by tools/make_tokenizer_goldens.py.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "data/text_file.h"

namespace specq::testing {

inline std::string shared_path(const std::string& relative) { return std::string(SPECQ_SHARED_DIR) + "/" + relative; }
inline std::string fixture_path(const std::string& name) {
  return std::string(SPECQ_FIXTURE_DIR) + "/tokenizer/" + name;
}
inline nlohmann::json load_fixture(const std::string& name) { return nlohmann::json::parse(read_text_file(fixture_path(name))); }

// Resolves a golden case to its text: inline ("text") or a reference into ../shared ("ref").
class SharedTexts {
 public:
  std::string text_of(const nlohmann::json& golden_case) {
    if (golden_case.contains("text")) return golden_case["text"].get<std::string>();
    const auto& ref = golden_case["ref"];
    const auto& records = records_of(ref["file"].get<std::string>());
    const auto& value = records.at(ref["line"].get<size_t>()).at(ref["field"].get<std::string>());
    return value.is_array() ? value.at(ref["index"].get<size_t>()).get<std::string>() : value.get<std::string>();
  }

 private:
  const std::vector<nlohmann::json>& records_of(const std::string& file) {
    auto [it, inserted] = files_.try_emplace(file);
    if (inserted) {
      std::istringstream lines(read_text_file(shared_path(file)));
      for (std::string line; std::getline(lines, line);)
        if (!line.empty()) it->second.push_back(nlohmann::json::parse(line));
    }
    return it->second;
  }
  std::map<std::string, std::vector<nlohmann::json>> files_;
};

}  // namespace specq::testing
