#include <charconv>

#include "cli/commands.h"
#include "core/error.h"

namespace specq::cli {

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string_view item(text.data() + start, end - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    int32_t value = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    SPECQ_CHECK(!item.empty() && ec == std::errc() && ptr == item.data() + item.size(),
                "{}: '{}' is not a comma-separated list of token ids", flag, text);
    ids.push_back(value);
    start = end + 1;
  }
  return ids;
}

}  // namespace specq::cli
