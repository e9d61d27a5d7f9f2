// The tokenizer of a GGUF file's metadata, on a tiny byte-level vocabulary made here: merges, the
// pre-tokenizer chosen by tokenizer.ggml.pre, control tokens, BOS, the chat template, the errors,
// and the tokenizer files written for a quantized GGUF model.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gguf_writer.h"
#include "io/gguf.h"
#include "io/hf_writer.h"
#include "io/loader.h"
#include "test_files.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace specq {
namespace {

using testing::error_of;
using testing::GgufWriter;

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the others map to 256 + n.
std::string byte_char(int b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int code = b;
  if (!printable) {
    code = 256;
    for (int c = 0; c < b; ++c)
      if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) ++code;
  }
  std::string out;  // UTF-8 of code (< 0x800)
  if (code < 0x80) {
    out += char(code);
  } else {
    out += char(0xC0 | (code >> 6));
    out += char(0x80 | (code & 0x3F));
  }
  return out;
}

// Ids: 0..2 control tokens, 3..258 the 256 bytes, then the merged tokens in merge order.
struct Vocab {
  std::vector<std::string> tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  std::vector<std::string> merges;
  Vocab() {
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
    for (const auto& [left, right] : std::vector<std::pair<std::string, std::string>>{
             {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "w"}, {"1", "2"}, {"12", "3"},
             {"\xC4\xA0", "123"}}) {
      merges.push_back(left + " " + right);
      tokens.push_back(left + right);
    }
  }
  int32_t id(const std::string& token) const {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] == token) return int32_t(i);
    return -1;
  }
};

struct Options {
  std::string model = "gpt2";
  std::string pre = "smollm";
  bool add_bos = false;
  bool with_merges = true;
};

std::string tokenizer_gguf(const Vocab& v, const Options& o) {
  GgufWriter w;
  w.string("tokenizer.ggml.model", o.model);
  w.string("tokenizer.ggml.pre", o.pre);
  w.strings("tokenizer.ggml.tokens", v.tokens);
  std::vector<int32_t> types(v.tokens.size(), 1);
  types[0] = types[1] = types[2] = 3;
  w.i32s("tokenizer.ggml.token_type", types);
  if (o.with_merges) w.strings("tokenizer.ggml.merges", v.merges);
  w.u32("tokenizer.ggml.bos_token_id", 1);
  w.u32("tokenizer.ggml.eos_token_id", 2);
  w.boolean("tokenizer.ggml.add_bos_token", o.add_bos);
  w.string("tokenizer.chat_template",
           "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
           "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
  return w.bytes();
}

GgufHeader header_of(const std::string& bytes) {
  return parse_gguf({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "tok.gguf");
}

TEST(GgufTokenizer, EncodesWithMergesAndControlTokens) {
  const Vocab v;
  const std::string bytes = tokenizer_gguf(v, {});
  const auto tok = make_gguf_tokenizer(header_of(bytes));
  EXPECT_EQ(tok->vocab_size(), int32_t(v.tokens.size()));
  EXPECT_EQ(tok->encode("hello world", false),
            (std::vector<int32_t>{v.id("hello"), v.id("\xC4\xA0w"), v.id("o"), v.id("r"), v.id("l"), v.id("d")}));
  // Control tokens are matched whole in the text and are special.
  EXPECT_EQ(tok->encode("<|im_start|>hello<|im_end|>", false), (std::vector<int32_t>{1, v.id("hello"), 2}));
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(v.id("hello")));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, v.id("hello"), v.id("\xC4\xA0w")}, true), "hello w");
  EXPECT_EQ(tok->decode(tok->encode("caf\xC3\xA9 \n\t x", false)), "caf\xC3\xA9 \n\t x");  // bytes round-trip
  // add_bos_token false: nothing is added.
  EXPECT_EQ(tok->encode("hello", true), (std::vector<int32_t>{v.id("hello")}));
  EXPECT_EQ(tok->bos_token(), "<|im_start|>");
  EXPECT_EQ(tok->eos_token(), "<|im_end|>");
  const std::vector<int32_t> eos = tok->eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), 2), eos.end());
  // The chat template is recognized from the metadata.
  EXPECT_EQ(resolve_chat_template(*tok, std::nullopt).format, ChatFormat::kChatML);
}

TEST(GgufTokenizer, BosIsAddedWhenTheMetadataSaysSo) {
  const Vocab v;
  Options o;
  o.add_bos = true;
  const auto tok = make_gguf_tokenizer(header_of(tokenizer_gguf(v, o)));
  EXPECT_EQ(tok->encode("hello", true), (std::vector<int32_t>{1, v.id("hello")}));
  EXPECT_EQ(tok->encode("hello", false), (std::vector<int32_t>{v.id("hello")}));
}

// SmolLM splits every digit off before BPE; GPT-2's regex keeps " 123" together.
TEST(GgufTokenizer, PreTokenizerFollowsThePreName) {
  const Vocab v;
  Options smollm, gpt2, qwen2;
  gpt2.pre = "gpt-2";
  qwen2.pre = "qwen2";
  const auto digits = make_gguf_tokenizer(header_of(tokenizer_gguf(v, smollm)));
  const auto whole = make_gguf_tokenizer(header_of(tokenizer_gguf(v, gpt2)));
  const auto single = make_gguf_tokenizer(header_of(tokenizer_gguf(v, qwen2)));
  EXPECT_EQ(digits->encode(" 123", false), (std::vector<int32_t>{v.id("\xC4\xA0"), v.id("1"), v.id("2"), v.id("3")}));
  EXPECT_EQ(whole->encode(" 123", false), (std::vector<int32_t>{v.id("\xC4\xA0" "123")}));
  // Qwen2's regex: single digits, and the space stays its own piece before a digit.
  EXPECT_EQ(single->encode(" 123", false), (std::vector<int32_t>{v.id("\xC4\xA0"), v.id("1"), v.id("2"), v.id("3")}));
}

TEST(GgufTokenizer, Errors) {
  const Vocab v;
  auto error = [&](const Options& o) { return error_of([&] { make_gguf_tokenizer(header_of(tokenizer_gguf(v, o))); }); };
  Options llama;
  llama.model = "llama";
  EXPECT_NE(error(llama).find("tokenizer.ggml.model 'llama' is not supported"), std::string::npos);
  Options unknown;
  unknown.pre = "deepseek-coder";
  EXPECT_NE(error(unknown).find("tokenizer.ggml.pre 'deepseek-coder' is not a pre-tokenizer specq knows"),
            std::string::npos);
  Options no_merges;
  no_merges.with_merges = false;
  EXPECT_NE(error(no_merges).find("no tokenizer.ggml.merges"), std::string::npos);
  GgufWriter none;
  none.u32("x", 1);
  const std::string bytes = none.bytes();
  EXPECT_NE(error_of([&] { make_gguf_tokenizer(header_of(bytes)); }).find("has no tokenizer"), std::string::npos);
}

// Tokenizer::load reads a .gguf; the files written for it (by `specq quantize`) load as the same tokenizer.
TEST(GgufTokenizer, LoadsFromFileAndWritesHfFiles) {
  const Vocab v;
  testing::TempDir tmp;
  testing::write_file(tmp / "m.gguf", tokenizer_gguf(v, {}));
  const auto from_gguf = Tokenizer::load((tmp / "m.gguf").string());
  // Any model will do: the tokenizer files are what is checked.
  const Model model = load_model((testing::kHfFixtures / "llama3_gqa_f32").string());
  HfWriteOptions options;
  options.tokenizer_from = (tmp / "m.gguf").string();
  const std::string out = (tmp / "out").string();
  write_hf_model(model, out, options);
  EXPECT_FALSE(std::filesystem::exists(tmp / "out" / "m.gguf"));  // the metadata, not the whole file
  const auto from_files = Tokenizer::load(out);
  for (const std::string text : {"hello world", "<|im_start|>user\n 123<|im_end|>", "\xE2\x82\xAC 9"})
    EXPECT_EQ(from_files->encode(text, false), from_gguf->encode(text, false)) << text;
}

}  // namespace
}  // namespace specq
