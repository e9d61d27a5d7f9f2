#include "tokenizer/gguf_tokenizer.h"

#include <nlohmann/json.hpp>

#include <set>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"

namespace specq {
namespace {

using json = nlohmann::json;

// llama.cpp names the pre-tokenizer of a byte-level BPE vocabulary (tokenizer.ggml.pre) after the
// model it was converted from; these are the pre_tokenizer sections of those models' own
// tokenizer.json, so encoding matches transformers. Names not listed are refused: a wrong split
// would silently produce different ids.
struct PreTokenizer {
  std::string_view name;
  std::string_view json;
  bool ignore_merges;  // Llama 3's BPE emits a pre-token that is itself a token without merging
};

constexpr std::string_view kGpt2ByteLevel =
    R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";
// Qwen2 and Llama 3 split with one regex, then ByteLevel maps bytes without its own regex; they differ
// only in how many digits make a piece.
constexpr std::string_view kQwen2 = R"({"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})";
constexpr std::string_view kLlama3 = R"({"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})";
// SmolLM / StarCoder: every digit on its own, then GPT-2's split.
constexpr std::string_view kSmolLM = R"({"type": "Sequence", "pretokenizers": [
  {"type": "Digits", "individual_digits": true},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})";

const PreTokenizer kPreTokenizers[] = {
    {"gpt-2", kGpt2ByteLevel, false},  {"gpt2", kGpt2ByteLevel, false},     {"smollm", kSmolLM, false},
    {"starcoder", kSmolLM, false},     {"qwen2", kQwen2, false},            {"llama-bpe", kLlama3, true},
    {"llama3", kLlama3, true},
};

const PreTokenizer& find_pre_tokenizer(std::string_view pre, const std::string& source) {
  for (const PreTokenizer& p : kPreTokenizers)
    if (p.name == pre) return p;
  std::string known;
  for (const PreTokenizer& p : kPreTokenizers) known += (known.empty() ? "" : ", ") + std::string(p.name);
  fail("'{}': tokenizer.ggml.pre '{}' is not a pre-tokenizer specq knows ({}); pass --tokenizer DIR with the "
       "model's tokenizer.json", source, pre, known);
}

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
constexpr int64_t kControl = 3, kUserDefined = 4;

}  // namespace

std::string gguf_pre_tokenizer_json(std::string_view pre, const std::string& source) {
  return std::string(find_pre_tokenizer(pre, source).json);
}

HfTokenizerFiles gguf_tokenizer_files(const GgufHeader& h) {
  const std::optional<std::string> model = h.string("tokenizer.ggml.model");
  SPECQ_CHECK(model.has_value(), "'{}' has no tokenizer (no tokenizer.ggml.model metadata); pass --tokenizer DIR",
              h.source);
  SPECQ_CHECK(*model == "gpt2", "'{}': tokenizer.ggml.model '{}' is not supported (only 'gpt2', byte-level BPE); pass "
              "--tokenizer DIR with the model's tokenizer.json", h.source, *model);
  const std::vector<std::string>* tokens = h.strings("tokenizer.ggml.tokens");
  const std::vector<std::string>* merges = h.strings("tokenizer.ggml.merges");
  SPECQ_CHECK(tokens != nullptr && !tokens->empty(), "'{}' has no tokenizer.ggml.tokens", h.source);
  SPECQ_CHECK(merges != nullptr, "'{}' has no tokenizer.ggml.merges (a byte-level BPE needs them)", h.source);
  const std::vector<int64_t>* types = h.integers("tokenizer.ggml.token_type");
  SPECQ_CHECK(types == nullptr || types->size() == tokens->size(), "'{}': tokenizer.ggml.token_type has {} entries "
              "for {} tokens", h.source, types ? types->size() : 0, tokens->size());
  const PreTokenizer& pre = find_pre_tokenizer(h.string("tokenizer.ggml.pre").value_or("gpt-2"), h.source);
  const int64_t n = int64_t(tokens->size());
  auto token_of = [&](const char* key) -> std::optional<std::string> {
    const std::optional<int64_t> id = h.integer(key);
    if (!id) return std::nullopt;
    SPECQ_CHECK(*id >= 0 && *id < n, "'{}': {} = {} is not a token id (the vocabulary has {})", h.source, key, *id, n);
    return (*tokens)[size_t(*id)];
  };

  json spec = json::object();
  json vocab = json::object();
  json added = json::array();
  for (int64_t id = 0; id < n; ++id) {
    const std::string& token = (*tokens)[size_t(id)];
    SPECQ_CHECK(!vocab.contains(token), "'{}': token {:?} appears twice in tokenizer.ggml.tokens", h.source, token);
    vocab[token] = id;
    const int64_t type = types ? (*types)[size_t(id)] : 1;
    // Control and user-defined tokens are matched in the raw text before BPE, as HF's added tokens.
    if (type == kControl || type == kUserDefined)
      added.push_back({{"id", id}, {"content", token}, {"special", type == kControl}, {"lstrip", false},
                       {"rstrip", false}, {"single_word", false}, {"normalized", false}});
  }
  json model_spec = {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", *merges},
                     {"ignore_merges", pre.ignore_merges}, {"byte_fallback", false}, {"dropout", nullptr},
                     {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}};
  spec["model"] = std::move(model_spec);
  spec["added_tokens"] = std::move(added);
  spec["normalizer"] = nullptr;
  spec["pre_tokenizer"] = json::parse(pre.json);
  spec["decoder"] = {{"type", "ByteLevel"}};
  const std::optional<std::string> bos = token_of("tokenizer.ggml.bos_token_id");
  if (bos && h.boolean("tokenizer.ggml.add_bos_token").value_or(false)) {
    // BOS before every encoded sequence, as the HF post-processor of such models does.
    const int64_t bos_id = *h.integer("tokenizer.ggml.bos_token_id");
    spec["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", *bos}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens", {{*bos, {{"id", *bos}, {"ids", {bos_id}}, {"tokens", {*bos}}}}}}};
  }
  SPECQ_CHECK(!h.boolean("tokenizer.ggml.add_eos_token").value_or(false), "'{}': tokenizer.ggml.add_eos_token is "
              "set, which specq's tokenizer does not do", h.source);

  json config = json::object();
  if (bos) config["bos_token"] = *bos;
  if (const std::optional<std::string> eos = token_of("tokenizer.ggml.eos_token_id")) config["eos_token"] = *eos;
  if (const std::optional<std::string> chat = h.string("tokenizer.chat_template")) config["chat_template"] = *chat;
  return {std::move(spec), std::move(config)};
}

std::unique_ptr<Tokenizer> make_gguf_tokenizer(const GgufHeader& h) {
  const HfTokenizerFiles files = gguf_tokenizer_files(h);
  try {
    return make_hf_tokenizer_from_json(files.tokenizer, files.config);
  } catch (const Error& e) {
    fail("'{}': tokenizer metadata: {}", h.source, e.what());
  }
}

}  // namespace specq
