// Tokenizers against Hugging Face `tokenizers` goldens (tools/make_tokenizer_goldens.py) and llama2.c.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <ctime>

#include <chrono>
#include <fstream>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/unicode_normalization.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace specq {
namespace {

using testing::fixture_path;
using testing::load_fixture;
using testing::shared_path;
using IdList = std::vector<int32_t>;

const Tokenizer& shared_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) slot = Tokenizer::load(shared_path("tokenizers/" + name));
  return *slot;
}

std::string describe(const nlohmann::json& golden_case) {
  return golden_case.contains("ref") ? golden_case["ref"].dump() : nlohmann::json(golden_case["text"]).dump();
}

// Every golden text: encode (with and without special tokens) and decode must match HF exactly.
void check_goldens(const std::string& name) {
  const Tokenizer& tokenizer = shared_tokenizer(name);
  const nlohmann::json golden = load_fixture(name + "_goldens.json.gz");
  const auto prefix = golden["special_prefix"].get<IdList>();
  const auto suffix = golden["special_suffix"].get<IdList>();
  testing::SharedTexts texts;
  int failures = 0;
  for (const auto& golden_case : golden["cases"]) {
    const std::string text = texts.text_of(golden_case);
    const auto expected = golden_case["ids"].get<IdList>();
    IdList expected_special = prefix;
    expected_special.insert(expected_special.end(), expected.begin(), expected.end());
    expected_special.insert(expected_special.end(), suffix.begin(), suffix.end());
    if (golden_case.contains("ids_special")) expected_special = golden_case["ids_special"].get<IdList>();
    const std::string expected_decoded = golden_case.value("decoded", text);

    const IdList ids = tokenizer.encode(text, false);
    const IdList ids_special = tokenizer.encode(text, true);
    const std::string decoded = tokenizer.decode(expected, false);
    bool ok = ids == expected && ids_special == expected_special && decoded == expected_decoded;
    if (golden_case.contains("decoded_special")) {
      ok = ok && tokenizer.decode(expected_special, false) == golden_case["decoded_special"].get<std::string>() &&
           tokenizer.decode(expected_special, true) == golden_case["decoded_skip_special"].get<std::string>();
    }
    if (!ok && ++failures <= 5) {
      ADD_FAILURE() << name << " mismatch for " << describe(golden_case) << "\n  ids:      " << nlohmann::json(ids).dump()
                    << "\n  expected: " << nlohmann::json(expected).dump() << "\n  decoded:  " << nlohmann::json(decoded).dump()
                    << "\n  expected: " << nlohmann::json(expected_decoded).dump();
    }
  }
  EXPECT_EQ(failures, 0) << "of " << golden["cases"].size() << " " << name << " golden texts";
  EXPECT_GT(golden["cases"].size(), 3000u);
}

TEST(HfTokenizer, Llama3MatchesHuggingFaceOnAllSharedTexts) { check_goldens("llama3"); }
TEST(HfTokenizer, Llama2MatchesHuggingFaceOnAllSharedTexts) { check_goldens("llama2"); }

TEST(HfTokenizer, Llama3Metadata) {
  const Tokenizer& tokenizer = shared_tokenizer("llama3");
  EXPECT_EQ(tokenizer.vocab_size(), 128256);
  EXPECT_EQ(tokenizer.bos_id(), 128000);
  EXPECT_EQ(tokenizer.token_to_id("<|eot_id|>"), 128009);
  EXPECT_EQ(tokenizer.eos_ids(), (IdList{128001, 128009}));  // eos_token + the chat template's end of turn
  EXPECT_TRUE(tokenizer.is_special(128009));
  EXPECT_FALSE(tokenizer.is_special(9906));
  EXPECT_EQ(tokenizer.id_to_token(9906), "Hello");
  ASSERT_TRUE(tokenizer.chat_template().has_value());
  EXPECT_NE(tokenizer.chat_template()->find("<|start_header_id|>"), std::string::npos);
}

TEST(HfTokenizer, Llama2Metadata) {
  const Tokenizer& tokenizer = shared_tokenizer("llama2");
  EXPECT_EQ(tokenizer.vocab_size(), 32000);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_ids(), IdList{2});
  EXPECT_EQ(tokenizer.token_to_id("<0x0A>"), 13);
  EXPECT_FALSE(tokenizer.chat_template().has_value());
}

TEST(HfTokenizer, LoadsFromFilePathToo) {
  const auto tokenizer = Tokenizer::load(shared_path("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(tokenizer->encode("Hello world", false), (IdList{9906, 1917}));
}

TEST(HfTokenizer, RejectsInvalidUtf8) {
  for (const char* name : {"llama3", "llama2"}) {
    EXPECT_THROW(shared_tokenizer(name).encode("ab\xC3(", false), Error);
    EXPECT_THROW(shared_tokenizer(name).encode("\xED\xA0\x80", false), Error);  // surrogate
    EXPECT_THROW(shared_tokenizer(name).encode("\xC0\xAF", false), Error);      // overlong
  }
}

TEST(HfTokenizer, DecodeRejectsOutOfRangeIds) {
  const Tokenizer& tokenizer = shared_tokenizer("llama3");
  EXPECT_THROW(tokenizer.decode(IdList{1, 128256}), Error);
  EXPECT_THROW(tokenizer.decode(IdList{-1}), Error);
  EXPECT_THROW(tokenizer.id_to_token(1 << 20), Error);
}

TEST(HfTokenizer, DecodeSkipsSpecialTokensOnRequest) {
  const Tokenizer& tokenizer = shared_tokenizer("llama3");
  const IdList ids{128000, 9906, 1917, 128009};
  EXPECT_EQ(tokenizer.decode(ids, false), "<|begin_of_text|>Hello world<|eot_id|>");
  EXPECT_EQ(tokenizer.decode(ids, true), "Hello world");
}

TEST(HfTokenizer, ByteLevelDecodeReplacesIncompleteUtf8) {
  const Tokenizer& tokenizer = shared_tokenizer("llama3");
  const IdList euro = tokenizer.encode("€", false);  // one token holding three bytes, or several byte tokens
  const IdList broken = tokenizer.encode("\xC3\xA9", false);
  EXPECT_EQ(tokenizer.decode(euro), "€");
  EXPECT_EQ(tokenizer.decode(broken), "é");
  // A lone lead byte (token for byte 0xE2) is one U+FFFD, as Rust's from_utf8_lossy gives.
  const auto lone = tokenizer.token_to_id("\xC3\xA2");  // "â" is the byte-level character for byte 0xE2
  ASSERT_TRUE(lone.has_value());
  EXPECT_EQ(tokenizer.decode(IdList{*lone}), "\xEF\xBF\xBD");
}

// NFC, NFD, NFKC, NFKD and a Sequence that strips accents, each on the same small byte-level BPE, against HF
// `tokenizers` on texts with combining marks, ligatures, full-width and other compatibility characters.
TEST(HfTokenizer, UnicodeNormalizersMatchHf) {
  const nlohmann::json golden = load_fixture("normalizer_goldens.json");
  std::map<std::string, std::unique_ptr<Tokenizer>> tokenizers;
  for (const auto& [name, normalizer] : golden["normalizers"].items()) {
    nlohmann::json spec = golden["tokenizer"];
    spec["normalizer"] = normalizer;
    tokenizers[name] = make_hf_tokenizer(spec.dump(), "");
  }
  size_t changed = 0;
  for (const auto& golden_case : golden["cases"]) {
    const Tokenizer& tokenizer = *tokenizers.at(golden_case["normalizer"].get<std::string>());
    const std::string text = golden_case["text"].get<std::string>();
    const IdList ids = tokenizer.encode(text, false);
    EXPECT_EQ(ids, golden_case["ids"].get<IdList>()) << golden_case["normalizer"] << " " << nlohmann::json(text).dump();
    EXPECT_EQ(tokenizer.decode(ids), golden_case["decoded"].get<std::string>()) << golden_case["normalizer"] << " "
                                                                                 << nlohmann::json(text).dump();
    changed += golden_case["decoded"] != golden_case["text"];
  }
  EXPECT_EQ(golden["cases"].size(), 85u);
  EXPECT_GE(changed, 40u);  // most texts are ones the normalizers rewrite
}

TEST(UnicodeNormalization, Forms) {
  EXPECT_EQ(unicode_normalize("A\u030A e\u0301", NormalizationForm::kNFC), "\u00C5 \u00E9");
  EXPECT_EQ(unicode_normalize("\u00C5", NormalizationForm::kNFD), "A\u030A");
  EXPECT_EQ(unicode_normalize("\uFB01 \uFF11\uFF12 x\u00B2", NormalizationForm::kNFKC), "fi 12 x2");
  EXPECT_EQ(unicode_normalize("\uFB01", NormalizationForm::kNFC), "\uFB01");  // compatibility mappings need NFK*
  EXPECT_EQ(unicode_normalize("\u00BD", NormalizationForm::kNFKD), "1\u20442");
  EXPECT_EQ(unicode_normalize("plain ascii", NormalizationForm::kNFKD), "plain ascii");
  EXPECT_EQ(unicode_normalize("", NormalizationForm::kNFC), "");
  EXPECT_EQ(normalization_form("NFKC"), NormalizationForm::kNFKC);
  EXPECT_THROW(normalization_form("NFX"), Error);
}

// Malformed / unsupported tokenizer.json files fail with a message, never a crash.
TEST(HfTokenizer, MalformedJsonIsAnError) {
  auto expect_error = [](const std::string& json, const std::string& message_part) {
    try {
      make_hf_tokenizer(json, "");
      ADD_FAILURE() << "no error for " << json;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(message_part), std::string::npos) << error.what();
    }
  };
  const std::string bpe = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";
  expect_error("{", "not valid JSON");
  expect_error("[]", "JSON object");
  expect_error("{}", "no \"model\"");
  expect_error(R"({"model": {"type": "Unigram", "vocab": []}})", "unsupported model type \"Unigram\"");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {}}})", "unsupported model type \"WordPiece\"");
  expect_error(R"({"pre_tokenizer": {"type": "BertPreTokenizer"}, )" + bpe + "}", "unsupported pre_tokenizer type");
  expect_error(R"({"normalizer": {"type": "BertNormalizer"}, )" + bpe + "}", "unsupported normalizer type \"BertNormalizer\"");
  expect_error(R"({"decoder": {"type": "WordPiece"}, )" + bpe + "}", "unsupported decoder type");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})", "not in the vocabulary");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})", "must be an integer");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 1e50}, "merges": []}})", "must be an integer");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}})", "out of range");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 5000000}, "merges": []}})", "far beyond");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}})", "must be \"a b\"");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [[1, 2]]}})", "malformed");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}})", "not of the form");
  expect_error(R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"}, )" + bpe + "}",
               "does not compile");
}

TEST(HfTokenizer, MergesInBothSpellings) {
  for (const std::string merges : {R"(["a b", "ab c"])", R"([["a", "b"], ["ab", "c"]])"}) {
    const auto tokenizer = make_hf_tokenizer(
        R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, "merges": )" + merges + "}}", "");
    EXPECT_EQ(tokenizer->encode("abcab", false), (IdList{4, 3})) << merges;
  }
}

// A long word must not take quadratic time (Llama 2 has no pre-tokenizer: a whole text is one word).
// CPU seconds of this thread (not wall time: CI machines are shared and sanitizer builds are slow).
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

TEST(HfTokenizer, LongWordsAreFast) {
  for (const char* name : {"llama3", "llama2"}) {
    const Tokenizer& tokenizer = shared_tokenizer(name);
    auto encode_seconds = [&](size_t length) {
      const std::string word(length, 'a');
      const double start = thread_cpu_seconds();
      const IdList ids = tokenizer.encode(word, false);
      const double seconds = thread_cpu_seconds() - start;
      EXPECT_EQ(tokenizer.decode(ids), word) << name;
      return seconds;
    };
    // A 300-character word: microseconds. The best of several runs, so that a first-call cost (page faults,
    // lazy per-thread match data) or a preempted slice on a shared CI machine does not decide it.
    double best = 1e9;
    for (int run = 0; run < 7; ++run) best = std::min(best, encode_seconds(300));
    EXPECT_LT(best, 1e-3) << name;
    // Ten times the length must cost far less than the hundred times a quadratic merge would.
    const double short_word = std::max(encode_seconds(20000), 1e-4), long_word = encode_seconds(200000);
    EXPECT_LT(long_word / short_word, 30.0) << name << ": " << short_word << " s vs " << long_word << " s";
  }
}

TEST(HfTokenizer, EncodeIsThreadSafe) {
  const Tokenizer& tokenizer = shared_tokenizer("llama3");
  const std::string text = "The quick brown fox jumps over the lazy dog. 1234567 你好 👨‍👩‍👧";
  const IdList expected = tokenizer.encode(text, true);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (tokenizer.encode(text, true) != expected) ++mismatches;
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// Stream decoding: the concatenated pieces equal decode(all ids), and every piece is whole UTF-8.
void check_stream(const Tokenizer& tokenizer, const IdList& ids, bool skip_special, const std::string& label) {
  StreamDecoder stream(tokenizer, skip_special);
  std::string streamed;
  for (const int32_t id : ids) {
    const std::string piece = stream.next(id);
    EXPECT_EQ(utf8::first_invalid(piece), std::string::npos) << label;
    streamed += piece;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, tokenizer.decode(ids, skip_special)) << label;
}

TEST(StreamDecoder, MatchesFullDecode) {
  for (const char* name : {"llama3", "llama2"}) {
    const Tokenizer& tokenizer = shared_tokenizer(name);
    const nlohmann::json golden = load_fixture(std::string(name) + "_goldens.json.gz");
    testing::SharedTexts texts;
    size_t index = 0;
    for (const auto& golden_case : golden["cases"]) {
      // Every hand-written case, and a sample of the shared texts to keep the test quick.
      if (!golden_case.contains("text") && index++ % 25 != 0) continue;
      const IdList ids = tokenizer.encode(texts.text_of(golden_case), true);
      check_stream(tokenizer, ids, false, describe(golden_case));
      check_stream(tokenizer, ids, true, describe(golden_case));
    }
  }
}

TEST(StreamDecoder, HoldsBackSplitCharacters) {
  const Tokenizer& tokenizer = shared_tokenizer("llama2");
  // "𝔘" is not in the Llama 2 vocabulary: it encodes as four byte-fallback tokens.
  const IdList ids = tokenizer.encode("a𝔘", false);
  ASSERT_EQ(ids.size(), 5u);
  StreamDecoder stream(tokenizer);
  EXPECT_EQ(stream.next(ids[0]), "a");
  EXPECT_EQ(stream.next(ids[1]), "");
  EXPECT_EQ(stream.next(ids[2]), "");
  EXPECT_EQ(stream.next(ids[3]), "");
  EXPECT_EQ(stream.next(ids[4]), "𝔘");
  EXPECT_THROW(stream.next(32000), Error);
}

// llama2.c tokenizer (tok512.bin) against a transcription of run.c's encode/decode in the golden script.
TEST(Llama2cTokenizer, EncodesLikeLlama2c) {
  const auto tokenizer = Tokenizer::load(shared_path("models/stories260K/tok512.bin"));
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_ids(), IdList{2});
  const nlohmann::json golden = load_fixture("llama2c_goldens.json");
  for (const auto& golden_case : golden["cases"]) {
    EXPECT_EQ(tokenizer->encode(golden_case["text"].get<std::string>(), golden_case["bos"].get<bool>()),
              golden_case["ids"].get<IdList>())
        << golden_case.dump();
  }
  EXPECT_EQ(tokenizer->encode("Once upon a time", true), (IdList{1, 403, 407, 261, 378}));
}

TEST(Llama2cTokenizer, DecodesGreedyStory) {
  const auto tokenizer = Tokenizer::load(shared_path("models/stories260K/tok512.bin"));
  std::ifstream in(shared_path("models/stories260K/greedy_from_bos_256.json"));
  const auto ids = nlohmann::json::parse(in)["ids"].get<IdList>();
  const std::string text = tokenizer->decode(ids, true);
  EXPECT_TRUE(text.starts_with("Once upon a time, there was a little girl named Lily.")) << text.substr(0, 80);
  EXPECT_EQ(text, load_fixture("llama2c_goldens.json")["greedy_decoded"].get<std::string>());
  IdList with_bos{1};
  with_bos.insert(with_bos.end(), ids.begin(), ids.end());
  EXPECT_EQ(tokenizer->decode(with_bos, true), text);
  check_stream(*tokenizer, with_bos, true, "greedy story");
}

TEST(Llama2cTokenizer, RejectsTruncatedFile) {
  const std::string path = ::testing::TempDir() + "/truncated_tok.bin";
  {
    std::ofstream out(path, std::ios::binary);
    const int32_t header[3] = {7, 0, 100};  // max length 7, score 0, then a token length of 100
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
  }
  EXPECT_THROW(Tokenizer::load(path), Error);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer"), Error);
}

}  // namespace
}  // namespace specq
