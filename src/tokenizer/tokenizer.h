// Text <-> token ids, identical to Hugging Face `tokenizers` for the formats we load:
// tokenizer.json (byte-level BPE as in Llama 3 / GPT-2, SentencePiece-style BPE as in Llama 2 / Mistral)
// and llama2.c's tokenizer.bin. No Python at run time.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace specq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // `path` is a tokenizer.json, a directory holding tokenizer.json (and optionally tokenizer_config.json),
  // a .gguf model (its tokenizer metadata), or a llama2.c tokenizer .bin file. Throws specq::Error on anything it cannot load.
  static std::unique_ptr<Tokenizer> load(const std::string& path);

  // `text` must be valid UTF-8. `add_special` adds what the tokenizer's post-processor adds (e.g. BOS).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;
  // Ids must be in [0, vocab_size()). Bytes that do not form valid UTF-8 come out as U+FFFD, as in HF.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  // Every id that ends a generation: the configured EOS plus the chat template's end-of-turn token.
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // The token's string as stored in the vocabulary (e.g. "Ġthe", "▁the", "<0x0A>").
  virtual std::string id_to_token(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // The Jinja chat template from tokenizer_config.json, if there is one.
  virtual std::optional<std::string> chat_template() const = 0;
  // The configured BOS / EOS token strings ("" when absent), as chat templates use them.
  virtual std::string bos_token() const = 0;
  virtual std::string eos_token() const = 0;

  // Throws specq::Error unless 0 <= id < vocab_size().
  void check_id(int32_t id) const;
};

// Turns ids into text one id at a time. The concatenation of everything returned by next() and flush()
// equals tokenizer.decode(all ids) (SentencePiece's leading-space strip included); text is only returned
// once it is complete UTF-8, so a character split over several byte tokens is never cut in half.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  std::string next(int32_t id);
  // Returns whatever is still held back (an incomplete character at the end of the stream comes out as U+FFFD).
  std::string flush();

 private:
  std::string emit_pending(bool final);

  const Tokenizer& tokenizer_;
  bool skip_special_;
  // ids_ = context ids whose text (context_text_) was already returned, followed by pending ids.
  std::vector<int32_t> ids_;
  std::string context_text_;
};

}  // namespace specq
