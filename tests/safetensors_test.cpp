// The safetensors reader: valid files (in memory, on disk, sharded) and every malformed header field.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "test_files.h"

namespace specq {
namespace {

using testing::error_of;
using testing::kHfFixtures;

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The parse error for a file with this header text and `data_bytes` zero bytes of data.
std::string header_error(const std::string& header, size_t data_bytes = 64) {
  const std::string bytes = testing::safetensors_bytes(header, std::string(data_bytes, '\0'));
  return error_of([&] { parse_safetensors(as_bytes(bytes), "f.safetensors"); });
}

TEST(Safetensors, ParsesInMemory) {
  std::string data(32, '\0');
  const float values[4] = {1.0f, -2.0f, 3.5f, 0.25f};
  std::memcpy(data.data() + 8, values, sizeof(values));
  // A scalar (shape []) has one element; a shape with a 0 has none.
  const std::string bytes = testing::safetensors_bytes(
      R"({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]},
          "b": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}, "s": {"dtype": "I64", "shape": [],
          "data_offsets": [24, 32]}, "e": {"dtype": "U8", "shape": [0, 3], "data_offsets": [32, 32]}})",
      data);
  const SafetensorsHeader h = parse_safetensors(as_bytes(bytes), "mem");
  EXPECT_EQ(h.metadata.at("format"), "pt");
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "b");  // sorted by name
  EXPECT_EQ(h.tensors[1].name, "e");
  const SafetensorsTensor* w = h.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w->numel(), 4);
  EXPECT_EQ(w->nbytes, 16u);
  const size_t header_len = bytes.size() - data.size() - 8;
  EXPECT_EQ(w->data, as_bytes(bytes).data() + 8 + header_len + 8);  // zero-copy: points into the input
  float got[4];
  std::memcpy(got, w->data, sizeof(got));
  EXPECT_EQ(got[2], 3.5f);
  EXPECT_EQ(h.find("s")->numel(), 1);
  EXPECT_EQ(h.find("s")->nbytes, 8u);
  EXPECT_EQ(h.find("e")->nbytes, 0u);
  EXPECT_EQ(h.find("missing"), nullptr);
}

TEST(Safetensors, EmptyHeaderIsValid) {
  const std::string bytes = testing::safetensors_bytes("{}", "");
  EXPECT_TRUE(parse_safetensors(as_bytes(bytes), "mem").tensors.empty());
  // Padding spaces after the JSON, as writers add for alignment.
  const std::string padded = testing::safetensors_bytes("{}      ", "");
  EXPECT_TRUE(parse_safetensors(as_bytes(padded), "mem").tensors.empty());
}

TEST(Safetensors, ReadsFixtureFile) {
  const SafetensorsFile file((kHfFixtures / "llama3_gqa_f32" / "model.safetensors").string());
  const SafetensorsTensor* embed = file.find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, DType::F32);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{256, 32}));
  EXPECT_EQ(file.header().metadata.at("format"), "pt");
  EXPECT_EQ(file.header().tensors.size(), 2u + 2u * 9u + 1u);  // embed, lm_head, 9 per layer, final norm
  const SafetensorsTensor* k = file.find("model.layers.1.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 32}));  // 2 KV heads of 16
  EXPECT_GE(k->data, file.mapping()->data());
  EXPECT_LE(k->data + k->nbytes, file.mapping()->data() + file.mapping()->size());
}

TEST(Safetensors, ReadsShardedCheckpoint) {
  const auto dir = kHfFixtures / "qwen2_bias_sharded";
  const SafetensorsCheckpoint ckpt(dir.string());
  EXPECT_EQ(ckpt.shard_count(), 4u);
  EXPECT_EQ(ckpt.mappings().size(), 4u);
  const nlohmann::json index = nlohmann::json::parse(testing::read_file(dir / "model.safetensors.index.json"));
  for (const auto& [name, shard] : index.at("weight_map").items()) {
    ASSERT_NE(ckpt.find(name), nullptr) << name;
    EXPECT_EQ(ckpt.file_of(name), (dir / shard.get<std::string>()).string());
  }
  EXPECT_NE(ckpt.find("model.layers.0.self_attn.q_proj.bias"), nullptr);
  EXPECT_EQ(ckpt.find("nope"), nullptr);
  EXPECT_EQ(ckpt.file_of("nope"), "");
}

TEST(Safetensors, FileLevelErrors) {
  EXPECT_EQ(error_of([] { parse_safetensors(as_bytes("abc"), "f.safetensors"); }),
            "'f.safetensors' is not a safetensors file: 3 bytes is too short for the header length");
  const std::string huge_len = testing::u64_le(1000) + "{}";
  EXPECT_EQ(error_of([&] { parse_safetensors(as_bytes(huge_len), "f.safetensors"); }),
            "'f.safetensors' is not a valid safetensors file: its header length 1000 exceeds the 2 bytes that "
            "follow (truncated or not safetensors)");
  const std::string max_len = testing::u64_le(~uint64_t(0)) + "{}";
  EXPECT_NE(error_of([&] { parse_safetensors(as_bytes(max_len), "f.safetensors"); }), "");
  EXPECT_EQ(error_of([] { SafetensorsFile("/nonexistent/model.safetensors"); }),
            "cannot open '/nonexistent/model.safetensors': No such file or directory");
}

TEST(Safetensors, HeaderErrors) {
  EXPECT_EQ(header_error("{\"a\": "),
            "'f.safetensors' (safetensors header) is not valid JSON (syntax error at byte 7)");
  EXPECT_EQ(header_error("[1, 2]"), "'f.safetensors': safetensors header is a JSON array, expected an object");
  EXPECT_EQ(header_error("{\"x\": 1e999}"),
            "'f.safetensors' (safetensors header) is not valid JSON (a value is out of range)");
  EXPECT_EQ(header_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                             "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})"),
            "'f.safetensors' (safetensors header) has the key 'a' twice in one object");
  EXPECT_EQ(header_error(R"({"a": {"dtype": "F32", "dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})"),
            "'f.safetensors' (safetensors header) has the key 'dtype' twice in one object");
  EXPECT_EQ(header_error(R"({"__metadata__": [1]})"),
            "'f.safetensors': __metadata__ is a JSON array, expected an object");
  EXPECT_EQ(header_error(R"({"__metadata__": {"k": 1}})"),
            "'f.safetensors': __metadata__ entry 'k' is a JSON number, expected a string");
  EXPECT_EQ(header_error(R"({"a": [0, 4]})"), "'f.safetensors': tensor 'a' is a JSON array, expected an object");
}

TEST(Safetensors, DtypeErrors) {
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})"),
            "'f.safetensors': tensor 'w' has dtype 'F64', which specq does not support "
            "(F32, F16, BF16, I8, U8, I32, I64)");
  EXPECT_NE(header_error(R"({"w": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}})").find("'BOOL'"),
            std::string::npos);
  EXPECT_EQ(header_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})"),
            "'f.safetensors': tensor 'w' has no dtype");
  EXPECT_EQ(header_error(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})"),
            "'f.safetensors': tensor 'w' has a dtype that is a JSON number, expected a string");
}

TEST(Safetensors, ShapeErrors) {
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})"),
            "'f.safetensors': tensor 'w' has no shape array");
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 4]}})"),
            "'f.safetensors': tensor 'w' has no shape array");
  for (const char* dim : {"-1", "1.5", "\"2\"", "null", "[1]"}) {
    EXPECT_EQ(header_error(fmt::format(R"({{"w": {{"dtype": "F32", "shape": [{}], "data_offsets": [0, 4]}}}})", dim)),
              fmt::format("'f.safetensors': tensor 'w' has a shape entry {} that is not a non-negative integer",
                          nlohmann::json::parse(dim).dump()));
  }
  // 2^32 * 2^32 elements wraps to 0 in 64 bits; 2^62 F32 elements is 2^64 bytes, which wraps to 0 too.
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
            "'f.safetensors': tensor 'w' has a shape [4294967296,4294967296] whose element count overflows");
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})"),
            "'f.safetensors': tensor 'w' has a shape [4611686018427387904] whose byte size overflows");
  EXPECT_EQ(header_error(R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})"),
            "'f.safetensors': tensor 'w' has a shape [18446744073709551615] whose element count overflows");
}

TEST(Safetensors, OffsetErrors) {
  const std::string need_two =
      "'f.safetensors': tensor 'w' needs data_offsets [begin, end] of two non-negative integers";
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1]}})"), need_two);
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})"), need_two);
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})"), need_two);
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})"), need_two);
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})"), need_two);
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})"),
            "'f.safetensors': tensor 'w' has data_offsets [8, 4] with end before begin");
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [62, 66]}})"),
            "'f.safetensors': tensor 'w' has data_offsets [62, 66] beyond the 64 data bytes of the file");
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [1],
                                   "data_offsets": [18446744073709551615, 18446744073709551615]}})"),
            "'f.safetensors': tensor 'w' has data_offsets [18446744073709551615, 18446744073709551615] beyond the "
            "64 data bytes of the file");
  EXPECT_EQ(header_error(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}})"),
            "'f.safetensors': tensor 'w' has 16 data bytes, but its shape [2,3] and dtype F32 need 24 bytes");
  EXPECT_EQ(header_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})"),
            "'f.safetensors': tensors 'a' and 'b' overlap in the file");
}

TEST(Safetensors, IndexErrors) {
  testing::TempDir tmp;
  EXPECT_EQ(error_of([&] { SafetensorsCheckpoint{tmp.path().string()}; }),
            fmt::format("'{}' has neither model.safetensors nor model.safetensors.index.json", tmp.path().string()));
  const auto dir = testing::copy_fixture("qwen2_bias_sharded", tmp.path());
  const auto index_path = dir / "model.safetensors.index.json";
  const nlohmann::json good = nlohmann::json::parse(testing::read_file(index_path));
  auto error_with = [&](const nlohmann::json& index) {
    testing::write_file(index_path, index.dump());
    return error_of([&] { SafetensorsCheckpoint{dir.string()}; });
  };
  nlohmann::json index = good;
  index.erase("weight_map");
  EXPECT_EQ(error_with(index), fmt::format("'{}' has no \"weight_map\" object", index_path.string()));
  index = good;
  index["weight_map"]["model.norm.weight"] = 3;
  EXPECT_EQ(error_with(index),
            fmt::format("'{}': weight_map entry 'model.norm.weight' is a JSON number, expected a file name",
                        index_path.string()));
  for (const char* shard : {"../model-00001-of-00004.safetensors", "/etc/passwd", ""}) {
    index = good;
    index["weight_map"]["model.norm.weight"] = shard;
    EXPECT_EQ(error_with(index),
              fmt::format("'{}': weight_map entry 'model.norm.weight' names the shard '{}', which is not a file "
                          "inside '{}'",
                          index_path.string(), shard, dir.string()));
  }
  // Point the final norm at the embedding's shard, which does not hold it.
  const std::string other = good["weight_map"]["model.embed_tokens.weight"];
  ASSERT_NE(other, good["weight_map"]["model.norm.weight"].get<std::string>());
  index = good;
  index["weight_map"]["model.norm.weight"] = other;
  EXPECT_EQ(error_with(index),
            fmt::format("'{}' puts tensor 'model.norm.weight' in '{}', but that shard does not contain it",
                        index_path.string(), other));
  index = good;
  index["weight_map"]["model.norm.weight"] = "missing.safetensors";
  EXPECT_EQ(error_with(index),
            fmt::format("cannot open '{}': No such file or directory", (dir / "missing.safetensors").string()));
  testing::write_file(index_path, "{");
  EXPECT_NE(error_of([&] { SafetensorsCheckpoint{dir.string()}; }).find("is not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace specq
