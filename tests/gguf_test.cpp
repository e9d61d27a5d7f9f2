// The GGUF reader (every metadata type, alignment, every malformed field and every truncation) and
// the block formats: hand-built blocks against the formats' definitions, written here independently
// (values are packed by their position in the block, then compared with the formula).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gguf_writer.h"
#include "io/gguf.h"
#include "io/gguf_dequant.h"
#include "test_files.h"

namespace specq {
namespace {

using testing::error_of;
using testing::GgufWriter;

std::span<const uint8_t> as_bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::string parse_error(const std::string& bytes) {
  return error_of([&] { parse_gguf(as_bytes(bytes), "t.gguf"); });
}

std::string f32_bytes(const std::vector<float>& v) {
  std::string out(v.size() * 4, '\0');
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

TEST(GgufReader, ReadsEveryMetadataTypeAndTensors) {
  GgufWriter w;
  w.raw("u8", 0, GgufWriter::pod<uint8_t>(200));
  w.raw("i8", 1, GgufWriter::pod<int8_t>(-5));
  w.raw("u16", 2, GgufWriter::pod<uint16_t>(60000));
  w.raw("i16", 3, GgufWriter::pod<int16_t>(-30000));
  w.u32("u32", 4000000000u);
  w.i32("i32", -7);
  w.f32("f32", 0.5f);
  w.boolean("bool", true);
  w.string("str", "h\xC3\xA9llo");
  w.raw("u64", 10, GgufWriter::pod<uint64_t>(uint64_t(1) << 40));
  w.raw("i64", 11, GgufWriter::pod<int64_t>(-(int64_t(1) << 40)));
  w.raw("f64", 12, GgufWriter::pod<double>(1e-300));
  w.strings("strs", {"a", "", "ccc"});
  w.i32s("ints", {3, -1});
  w.raw("floats", 9, GgufWriter::pod<uint32_t>(6) + GgufWriter::pod<uint64_t>(2) + GgufWriter::pod(1.5f) +
                         GgufWriter::pod(-2.0f));
  // An array of two arrays of u8.
  const std::string inner = GgufWriter::pod<uint32_t>(0) + GgufWriter::pod<uint64_t>(1) + GgufWriter::pod<uint8_t>(9);
  w.raw("nested", 9, GgufWriter::pod<uint32_t>(9) + GgufWriter::pod<uint64_t>(2) + inner + inner);
  w.u32("general.alignment", 64);
  w.tensor("a", {3}, GgmlType::F32, f32_bytes({1, 2, 3}));
  w.tensor("b", {2, 2}, GgmlType::F16, std::string(8, '\1'));
  const std::string bytes = w.bytes(64);

  const GgufHeader h = parse_gguf(as_bytes(bytes), "t.gguf");
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.alignment, 64u);
  EXPECT_EQ(h.data_offset % 64, 0u);
  EXPECT_EQ(*h.integer("u8"), 200);
  EXPECT_EQ(*h.integer("i8"), -5);
  EXPECT_EQ(*h.integer("u16"), 60000);
  EXPECT_EQ(*h.integer("i16"), -30000);
  EXPECT_EQ(*h.integer("u32"), 4000000000ll);
  EXPECT_EQ(*h.integer("i32"), -7);
  EXPECT_EQ(*h.number("f32"), 0.5);
  EXPECT_EQ(*h.number("u16"), 60000.0);  // integers read as numbers too
  EXPECT_TRUE(*h.boolean("bool"));
  EXPECT_EQ(*h.string("str"), "h\xC3\xA9llo");
  EXPECT_EQ(*h.integer("u64"), int64_t(1) << 40);
  EXPECT_EQ(*h.integer("i64"), -(int64_t(1) << 40));
  EXPECT_EQ(*h.number("f64"), 1e-300);
  EXPECT_EQ(*h.strings("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(*h.integers("ints"), (std::vector<int64_t>{3, -1}));
  EXPECT_EQ(*h.numbers("floats"), (std::vector<double>{1.5, -2.0}));
  const GgufValue* nested = h.value("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[1].ints, (std::vector<int64_t>{9}));
  EXPECT_FALSE(h.integer("absent").has_value());
  EXPECT_EQ(h.strings("absent"), nullptr);
  // Wrong types are errors naming the key.
  EXPECT_NE(error_of([&] { h.integer("str"); }).find("metadata 'str' is a string, expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { h.string("u8"); }).find("'u8'"), std::string::npos);
  EXPECT_NE(error_of([&] { h.strings("ints"); }).find("not an array of strings"), std::string::npos);

  ASSERT_EQ(h.tensors.size(), 2u);
  const GgufTensor* a = h.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->data, as_bytes(bytes).data() + h.data_offset);  // zero-copy
  EXPECT_EQ(a->nbytes, 12u);
  float got[3];
  std::memcpy(got, a->data, 12);
  EXPECT_EQ(got[2], 3.0f);
  const GgufTensor* b = h.find("b");
  EXPECT_EQ(b->dims, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(b->data - a->data, 64);  // the next alignment boundary
  EXPECT_EQ(h.find("c"), nullptr);
}

TEST(GgufReader, VersionTwoAndNoTensors) {
  GgufWriter w;
  w.string("general.architecture", "llama");
  const GgufHeader h = parse_gguf(as_bytes(w.bytes(32, 2)), "t.gguf");
  EXPECT_EQ(h.version, 2u);
  EXPECT_TRUE(h.tensors.empty());
}

// Every strict prefix of a valid file is refused with an Error (ASan builds check no byte past the
// end is read).
TEST(GgufReader, EveryTruncationIsAnError) {
  GgufWriter w;
  w.string("general.architecture", "llama");
  w.strings("tokens", {"a", "bc"});
  w.i32s("types", {1, 3});
  w.f32("eps", 1e-5f);
  w.tensor("x", {32}, GgmlType::Q8_0, std::string(34, '\2'));
  w.tensor("y", {4}, GgmlType::F32, f32_bytes({1, 2, 3, 4}));
  const std::string bytes = w.bytes();
  ASSERT_NO_THROW(parse_gguf(as_bytes(bytes), "t.gguf"));
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string prefix = bytes.substr(0, n);
    EXPECT_NE(parse_error(prefix), "") << "prefix of " << n << " bytes was accepted";
  }
}

std::string header(uint32_t version, uint64_t tensors, uint64_t kv) {
  return "GGUF" + GgufWriter::pod(version) + GgufWriter::pod(tensors) + GgufWriter::pod(kv);
}

TEST(GgufReader, MalformedHeaders) {
  EXPECT_NE(parse_error("GGML" + std::string(20, '\0')).find("not a GGUF file"), std::string::npos);
  EXPECT_NE(parse_error(header(1, 0, 0)).find("version 1"), std::string::npos);
  EXPECT_NE(parse_error(header(0x03000000u, 0, 0)).find("big-endian"), std::string::npos);
  EXPECT_NE(parse_error(header(3, 0, uint64_t(1) << 60)).find("metadata entries cannot fit"), std::string::npos);
  EXPECT_NE(parse_error(header(3, uint64_t(1) << 60, 0)).find("tensor infos cannot fit"), std::string::npos);

  auto with_kv = [](const std::function<void(GgufWriter&)>& add) {
    GgufWriter w;
    add(w);
    return parse_error(w.bytes());
  };
  EXPECT_NE(with_kv([](GgufWriter& w) { w.raw("k", 13, ""); }).find("unknown value type 13"), std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) { w.raw("k", 7, GgufWriter::pod<uint8_t>(2)); }).find("bool byte 2"),
            std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) { w.raw("k", 10, GgufWriter::pod<uint64_t>(~uint64_t(0))); })
                .find("out of the range"), std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) {
              w.u32("k", 1);
              w.u32("k", 2);
            }).find("'k' appears twice"), std::string::npos);
  // A string or array longer than the file.
  EXPECT_NE(with_kv([](GgufWriter& w) { w.raw("k", 8, GgufWriter::pod<uint64_t>(1000) + "abc"); }).find("truncated"),
            std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) {
              w.raw("k", 9, GgufWriter::pod<uint32_t>(8) + GgufWriter::pod<uint64_t>(uint64_t(1) << 61));
            }).find("claims 2305843009213693952 array elements"), std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) { w.raw("k", 9, GgufWriter::pod<uint32_t>(77) + GgufWriter::pod<uint64_t>(0)); })
                .find("array of unknown type 77"), std::string::npos);
  // Arrays nested deeper than the limit.
  EXPECT_NE(with_kv([](GgufWriter& w) {
              std::string v = GgufWriter::pod<uint32_t>(0) + GgufWriter::pod<uint64_t>(0);
              for (int i = 0; i < 6; ++i) v = GgufWriter::pod<uint32_t>(9) + GgufWriter::pod<uint64_t>(1) + v;
              w.raw("k", 9, v);
            }).find("nests arrays deeper"), std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) { w.u32("general.alignment", 24); }).find("not a power of two"),
            std::string::npos);
  EXPECT_NE(with_kv([](GgufWriter& w) { w.i32("general.alignment", 32); }).find("expected a u32"), std::string::npos);
}

TEST(GgufReader, MalformedTensorInfos) {
  auto with_tensor = [](const std::string& name, std::vector<uint64_t> dims, uint32_t type, size_t data_bytes) {
    GgufWriter w;
    w.tensor(name, std::move(dims), GgmlType(type), std::string(data_bytes, '\0'));
    return parse_error(w.bytes());
  };
  EXPECT_NE(with_tensor("t", {32}, 99, 32).find("ggml type 99"), std::string::npos);
  EXPECT_NE(with_tensor("t", {20}, uint32_t(GgmlType::Q4_0), 18).find("not a multiple of its block size 32"),
            std::string::npos);
  EXPECT_NE(with_tensor("t", {1, 1, 1, 1, 1}, 0, 4).find("5 dimensions"), std::string::npos);
  EXPECT_NE(with_tensor("t", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 4).find("overflows"), std::string::npos);
  EXPECT_NE(with_tensor("t", {16}, 0, 32).find("tensor 't' needs bytes [0, 64)"), std::string::npos);

  GgufWriter dup;
  dup.tensor("t", {1}, GgmlType::F32, std::string(4, '\0'));
  dup.tensor("t", {1}, GgmlType::F32, std::string(4, '\0'));
  EXPECT_NE(parse_error(dup.bytes()).find("'t' appears twice"), std::string::npos);

  // Offsets: misaligned, and overlapping (both written by hand into a valid file).
  GgufWriter two;
  two.tensor("a", {8}, GgmlType::F32, std::string(32, '\0'));
  two.tensor("b", {8}, GgmlType::F32, std::string(32, '\0'));
  std::string bytes = two.bytes();
  const size_t b_offset = bytes.find(std::string("\1\0\0\0\0\0\0\0b", 9));  // name length 1, "b"
  ASSERT_NE(b_offset, std::string::npos);
  const size_t offset_field = b_offset + 9 + 4 + 8 + 4;  // name, n_dims, one dim, type
  std::string misaligned = bytes;
  misaligned.replace(offset_field, 8, GgufWriter::pod<uint64_t>(8));
  EXPECT_NE(parse_error(misaligned).find("not a multiple of the alignment 32"), std::string::npos);
  std::string overlapping = bytes;
  overlapping.replace(offset_field, 8, GgufWriter::pod<uint64_t>(0));
  EXPECT_NE(parse_error(overlapping).find("overlap"), std::string::npos);
}

// ---- block formats -------------------------------------------------------------------------------

std::mt19937 rng(1234);
int random_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// Scales from a small set of dyadic fp16 values, so every product and sum below is exact in fp32
// (whether or not a compiler fuses multiply-adds).
float dyadic() {
  static const float values[] = {0.5f, 0.25f, 1.5f, -0.75f, 0.125f, 2.0f, -1.0f, 0.0625f};
  return values[random_int(0, 7)];
}

void put_f16(std::string& block, size_t at, float v) {
  const uint16_t h = float_to_half(v);
  std::memcpy(block.data() + at, &h, 2);
}

void set_nibble(std::string& block, size_t byte, int which, int value) {
  uint8_t b = uint8_t(block[byte]);
  b = which == 0 ? uint8_t((b & 0xF0) | value) : uint8_t((b & 0x0F) | (value << 4));
  block[byte] = char(b);
}

std::vector<float> dequantize(GgmlType type, const std::string& blocks, int64_t count) {
  std::vector<float> out(static_cast<size_t>(count));
  dequantize_ggml(type, as_bytes(blocks).data(), count, out.data());
  return out;
}

TEST(GgufBlocks, Q4_0) {
  std::string blocks;
  std::vector<float> expected;
  for (int b = 0; b < 3; ++b) {
    std::string block(18, '\0');
    const float d = dyadic();
    put_f16(block, 0, d);
    for (int i = 0; i < 32; ++i) {  // value i: byte 2 + i % 16, low nibble for the first 16
      const int q = random_int(0, 15);
      set_nibble(block, 2 + i % 16, i / 16, q);
      expected.push_back(float(q - 8) * d);
    }
    blocks += block;
  }
  EXPECT_EQ(dequantize(GgmlType::Q4_0, blocks, 96), expected);
}

TEST(GgufBlocks, Q4_1) {
  std::string blocks;
  std::vector<float> expected;
  for (int b = 0; b < 3; ++b) {
    std::string block(20, '\0');
    const float d = dyadic(), m = dyadic() * 3.0f;
    put_f16(block, 0, d);
    put_f16(block, 2, m);
    for (int i = 0; i < 32; ++i) {
      const int q = random_int(0, 15);
      set_nibble(block, 4 + i % 16, i / 16, q);
      expected.push_back(float(q) * d + m);
    }
    blocks += block;
  }
  EXPECT_EQ(dequantize(GgmlType::Q4_1, blocks, 96), expected);
}

// Q5_0 / Q5_1: the fifth bit of value i is bit i of the little-endian word after the scale(s).
void q5_test(GgmlType type, bool with_min) {
  const size_t header = with_min ? 4 : 2, block_bytes = header + 4 + 16;
  std::string blocks;
  std::vector<float> expected;
  for (int b = 0; b < 3; ++b) {
    std::string block(block_bytes, '\0');
    const float d = dyadic(), m = with_min ? dyadic() * 5.0f : 0.0f;
    put_f16(block, 0, d);
    if (with_min) put_f16(block, 2, m);
    uint32_t high = 0;
    for (int i = 0; i < 32; ++i) {
      const int q = random_int(0, 31);
      set_nibble(block, header + 4 + size_t(i % 16), i / 16, q & 15);
      high |= uint32_t(q >> 4) << i;
      expected.push_back(with_min ? float(q) * d + m : float(q - 16) * d);
    }
    std::memcpy(block.data() + header, &high, 4);
    blocks += block;
  }
  EXPECT_EQ(dequantize(type, blocks, 96), expected);
}

TEST(GgufBlocks, Q5_0) { q5_test(GgmlType::Q5_0, false); }
TEST(GgufBlocks, Q5_1) { q5_test(GgmlType::Q5_1, true); }

TEST(GgufBlocks, Q8_0) {
  std::string blocks;
  std::vector<float> expected;
  for (int b = 0; b < 2; ++b) {
    std::string block(34, '\0');
    const float d = dyadic();
    put_f16(block, 0, d);
    for (int i = 0; i < 32; ++i) {
      const int q = random_int(-128, 127);
      block[size_t(2 + i)] = char(int8_t(q));
      expected.push_back(float(q) * d);
    }
    blocks += block;
  }
  EXPECT_EQ(dequantize(GgmlType::Q8_0, blocks, 64), expected);
}

// Writes the 6-bit scale and min of sub-block s (0..7) into the 12 K-quant scale bytes at `at`.
void put_k_scale_min(std::string& block, size_t at, int s, int scale, int min) {
  auto byte = [&](int i) -> uint8_t& { return reinterpret_cast<uint8_t&>(block[at + size_t(i)]); };
  if (s < 4) {
    byte(s) = uint8_t((byte(s) & 0xC0) | scale);
    byte(s + 4) = uint8_t((byte(s + 4) & 0xC0) | min);
  } else {
    byte(s + 4) = uint8_t((scale & 15) | ((min & 15) << 4));
    byte(s - 4) = uint8_t((byte(s - 4) & 0x3F) | ((scale >> 4) << 6));
    byte(s) = uint8_t((byte(s) & 0x3F) | ((min >> 4) << 6));
  }
}

// Q4_K (five_bits false) and Q5_K: value i of a super-block is in sub-block s = i / 32 at l = i % 32;
// its low 4 bits are nibble s % 2 of byte 32 * (s / 2) + l of the quants, Q5_K's fifth bit is bit s of
// qh byte l; x = d * scale[s] * q - dmin * min[s].
void k_quant_test(GgmlType type, bool five_bits) {
  const size_t block_bytes = five_bits ? 176 : 144, qs_at = five_bits ? 48 : 16;
  std::string blocks;
  std::vector<float> expected;
  for (int b = 0; b < 2; ++b) {
    std::string block(block_bytes, '\0');
    const float d = dyadic(), dmin = dyadic();
    put_f16(block, 0, d);
    put_f16(block, 2, dmin);
    int scales[8], mins[8];
    for (int s = 0; s < 8; ++s) {
      scales[s] = random_int(0, 63);
      mins[s] = random_int(0, 63);
      put_k_scale_min(block, 4, s, scales[s], mins[s]);
    }
    for (int i = 0; i < 256; ++i) {
      const int s = i / 32, l = i % 32;
      const int q = random_int(0, five_bits ? 31 : 15);
      set_nibble(block, qs_at + size_t(32 * (s / 2) + l), s % 2, q & 15);
      if (five_bits && (q & 16)) block[size_t(16 + l)] = char(uint8_t(block[size_t(16 + l)]) | (1 << s));
      expected.push_back(d * float(scales[s]) * float(q) - dmin * float(mins[s]));
    }
    blocks += block;
  }
  EXPECT_EQ(dequantize(type, blocks, 512), expected);
}

TEST(GgufBlocks, Q4_K) { k_quant_test(GgmlType::Q4_K, false); }
TEST(GgufBlocks, Q5_K) { k_quant_test(GgmlType::Q5_K, true); }

// Q6_K: value i is in half h = i / 128 at r = i % 128, quarter g = r / 32, l = r % 32. Its low 4 bits
// are nibble g / 2 of ql byte 64h + l + 32 (g % 2), its high 2 bits bits 2g, 2g+1 of qh byte
// 128 + 32h + l, its scale the int8 at 192 + i / 16; x = d * scale * (q - 32), d at byte 208.
TEST(GgufBlocks, Q6_K) {
  std::string blocks;
  std::vector<float> expected;
  for (int b = 0; b < 2; ++b) {
    std::string block(210, '\0');
    const float d = dyadic();
    put_f16(block, 208, d);
    int scales[16];
    for (int s = 0; s < 16; ++s) {
      scales[s] = random_int(-128, 127);
      block[size_t(192 + s)] = char(int8_t(scales[s]));
    }
    for (int i = 0; i < 256; ++i) {
      const int h = i / 128, r = i % 128, g = r / 32, l = r % 32;
      const int q = random_int(0, 63);
      set_nibble(block, size_t(64 * h + l + 32 * (g % 2)), g / 2, q & 15);
      const size_t qh = size_t(128 + 32 * h + l);
      block[qh] = char(uint8_t(block[qh]) | ((q >> 4) << (2 * g)));
      expected.push_back(d * float(scales[i / 16]) * float(q - 32));
    }
    blocks += block;
  }
  EXPECT_EQ(dequantize(GgmlType::Q6_K, blocks, 512), expected);
}

TEST(GgufBlocks, FloatTypes) {
  const std::vector<float> values = {1.0f, -2.5f, 65504.0f, 0.0f, -0.0f, 6.1035156e-05f, 1e-7f, 3.140625f};
  std::string f16, bf16;
  std::vector<float> expected_f16, expected_bf16;
  for (float v : values) {
    const uint16_t h = float_to_half(v), b = float_to_bf16(v);
    f16 += GgufWriter::pod(h);
    bf16 += GgufWriter::pod(b);
    expected_f16.push_back(half_to_float(h));
    expected_bf16.push_back(bf16_to_float(b));
  }
  EXPECT_EQ(dequantize(GgmlType::F16, f16, 8), expected_f16);
  EXPECT_EQ(dequantize(GgmlType::BF16, bf16, 8), expected_bf16);
  EXPECT_EQ(dequantize(GgmlType::F32, f32_bytes(values), 8), values);
  EXPECT_NE(error_of([] {
              float out[256];
              dequantize_ggml(GgmlType::Q2_K, nullptr, 256, out);
            }).find("Q2_K cannot be dequantized"), std::string::npos);
}

// Q4_0 as GptqInt4: every value the same as dequantizing the blocks, with rows taken in the given order.
TEST(GgufBlocks, Q4_0RepacksExactlyAsGptq) {
  const int64_t n = 16, k = 64;
  std::string rows;
  for (int64_t i = 0; i < n * k / 32; ++i) {
    std::string block(18, '\0');
    put_f16(block, 0, float(random_int(1, 1000)) * 0.001f);  // any fp16 scale: repacking is exact
    for (int j = 2; j < 18; ++j) block[size_t(j)] = char(random_int(0, 255));
    rows += block;
  }
  const std::vector<float> dense = dequantize(GgmlType::Q4_0, rows, n * k);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) order[size_t(r)] = (r * 5) % n;  // a permutation (5 and 16 are coprime)
  for (const bool permuted : {false, true}) {
    const RepackedQ4_0 packed =
        repack_q4_0_as_gptq(as_bytes(rows).data(), n, k, permuted ? std::span<const int64_t>(order) : std::span<const int64_t>());
    Weight w;
    w.format = WeightFormat::GptqInt4;
    w.dtype = DType::F16;
    w.shape = {n, k};
    w.quant = packed.quant;
    ASSERT_NO_THROW(validate_quantized("w", w, n, k));
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < n; ++r) {
      dequantize_row(w, r, row.data());
      const int64_t source = permuted ? order[size_t(r)] : r;
      for (int64_t c = 0; c < k; ++c) ASSERT_EQ(row[size_t(c)], dense[size_t(source * k + c)]) << r << "," << c;
    }
  }
  EXPECT_NE(error_of([&] { repack_q4_0_as_gptq(as_bytes(rows).data(), 12, 64, {}); }).find("N % 8 == 0"),
            std::string::npos);
}

}  // namespace
}  // namespace specq
