#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "data/text_file.h"
#include "io/gguf.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/llama2c_tokenizer.h"
#include "tokenizer/utf8.h"

namespace specq {

namespace {

std::string read_config_beside(const std::filesystem::path& tokenizer_json) {
  const auto config = tokenizer_json.parent_path() / "tokenizer_config.json";
  return std::filesystem::exists(config) ? read_text_file(config.string()) : std::string();
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path location(path);
  SPECQ_CHECK(fs::exists(location), "tokenizer path {} does not exist", path);
  if (fs::is_directory(location)) {
    const fs::path json_path = location / "tokenizer.json";
    SPECQ_CHECK(fs::exists(json_path), "directory {} has no tokenizer.json", path);
    return make_hf_tokenizer(read_text_file(json_path.string()), read_config_beside(json_path));
  }
  if (location.extension() == ".json") return make_hf_tokenizer(read_text_file(path), read_config_beside(location));
  if (location.extension() == ".gguf") return make_gguf_tokenizer(GgufFile(path).header());
  const MappedFile file(path);
  return make_llama2c_tokenizer({file.data(), file.size()});
}

void Tokenizer::check_id(int32_t id) const {
  SPECQ_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range [0, {})", id, vocab_size());
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::next(int32_t id) {
  // Validate before keeping it, so one bad id does not poison later calls.
  tokenizer_.check_id(id);
  ids_.push_back(id);
  return emit_pending(false);
}

std::string StreamDecoder::flush() { return emit_pending(true); }

std::string StreamDecoder::emit_pending(bool final) {
  if (ids_.empty()) return {};
  const std::string text = tokenizer_.decode(ids_, skip_special_);
  // A trailing U+FFFD means the last character is (so far) incomplete; wait for more ids.
  if (!final && text.ends_with(utf8::kReplacementChar)) return {};
  // Decoding is context-sensitive only at the edges (leading-space strip, byte runs), so the text of the
  // context ids is a prefix of the text with the new ids appended.
  if (!text.starts_with(context_text_)) {
    if (!final) return {};
  }
  std::string fresh = text.starts_with(context_text_) ? text.substr(context_text_.size()) : text;
  // Keep as context the shortest run of trailing ids whose text is non-empty and starts with a whole
  // character: a skipped BOS alone would make the next word look like the start of the text, and the tail
  // bytes of a character alone would start a byte run that can never become valid again.
  size_t keep_from = ids_.size() - 1;
  context_text_ = tokenizer_.decode(std::span(ids_).subspan(keep_from), skip_special_);
  while (keep_from > 0 && (context_text_.empty() || context_text_.starts_with(utf8::kReplacementChar))) {
    --keep_from;
    context_text_ = tokenizer_.decode(std::span(ids_).subspan(keep_from), skip_special_);
  }
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(keep_from));
  if (final) {
    ids_.clear();
    context_text_.clear();
  }
  return fresh;
}

}  // namespace specq
