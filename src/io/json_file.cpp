#include "io/json_file.h"

#include <set>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"

namespace specq {

nlohmann::json parse_json_strict(std::string_view text, const std::string& source) {
  // The parser keeps the last of two equal keys; a stack of key sets (one per open object) catches
  // them instead, since a duplicate tensor name or field means the file is ambiguous.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto track = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text.begin(), text.end(), track);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{} is not valid JSON (syntax error at byte {})", source, e.byte);
  } catch (const nlohmann::json::exception&) {  // e.g. a number too large for a double
    fail("{} is not valid JSON (a value is out of range)", source);
  }
  SPECQ_CHECK(duplicate.empty(), "{} has the key '{}' twice in one object", source, duplicate);
  return value;
}

nlohmann::json read_json_file(const std::string& path) {
  const MappedFile file(path);
  const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
  return parse_json_strict(text, fmt::format("'{}'", path));
}

}  // namespace specq
