// The seed's converted W4A16 checkpoints (Marlin tiles, io/marlin_checkpoint.h): the layout's index
// maps against a packer written literally from seed-spec 2.3, and a whole model converted the way
// SpecMQuant's convert_w4a16.py does it (q|k|v and gate|up fused, Marlin-packed, scales permuted,
// g_idx and qzeros dropped) loading into exactly the GPTQ checkpoint it came from.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "core/error.h"
#include "io/json_file.h"
#include "io/loader.h"
#include "io/marlin_checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/marlin_layout.h"
#include "quant/quantize_model.h"
#include "spec_test_util.h"
#include "test_util.h"

namespace specq {
namespace {

namespace fs = std::filesystem;

// seed-spec 2.3, step by step: codes [K][N] (uint4) -> 16x16 tiles -> perm per 1024 -> 8 per word.
std::vector<int32_t> marlin_pack_literal(const std::vector<uint8_t>& codes, int64_t K, int64_t N) {
  std::vector<int> perm;
  for (int i = 0; i < 32; ++i) {
    std::vector<int> perm1;
    const int col = i / 4;
    for (int block : {0, 1})
      for (int row : {2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4 + 4), 2 * (i % 4 + 4) + 1})
        perm1.push_back(16 * row + col + 8 * block);
    for (int j = 0; j < 4; ++j)
      for (int p : perm1) perm.push_back(p + 256 * j);
  }
  const int interleave[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  std::vector<int> interleaved(perm.size());
  for (size_t g = 0; g < perm.size() / 8; ++g)
    for (int t = 0; t < 8; ++t) interleaved[g * 8 + size_t(t)] = perm[g * 8 + size_t(interleave[t])];
  std::vector<int32_t> out(size_t(K / 16 * 2 * N), 0);
  for (int64_t kb = 0; kb < K / 16; ++kb) {
    std::vector<uint8_t> tiled(size_t(16 * N));  // [N/16 tiles][16 k][16 n]
    for (int64_t t = 0; t < N / 16; ++t)
      for (int64_t kk = 0; kk < 16; ++kk)
        for (int64_t nn = 0; nn < 16; ++nn)
          tiled[size_t(t * 256 + kk * 16 + nn)] = codes[size_t((kb * 16 + kk) * N + t * 16 + nn)];
    std::vector<uint8_t> permuted(tiled.size());
    for (size_t c = 0; c < tiled.size(); c += 1024)
      for (size_t j = 0; j < 1024; ++j) permuted[c + j] = tiled[c + size_t(interleaved[j])];
    for (int64_t w = 0; w < 2 * N; ++w) {
      uint32_t word = 0;
      for (int i = 0; i < 8; ++i) word |= uint32_t(permuted[size_t(w * 8 + i)]) << (4 * i);
      out[size_t(kb * 2 * N + w)] = int32_t(word);
    }
  }
  return out;
}

// Scales [G][N] permuted in runs of 64 (grouped) or 32 (per-channel), as the converter does.
std::vector<uint16_t> permute_scales_literal(const std::vector<uint16_t>& scales, bool per_channel) {
  std::vector<int> perm;
  if (per_channel) {
    for (int i = 0; i < 4; ++i)
      for (int j : {0, 1, 8, 9, 16, 17, 24, 25}) perm.push_back(2 * i + j);
  } else {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) perm.push_back(i + 8 * j);
  }
  std::vector<uint16_t> out(scales.size());
  for (size_t c = 0; c < scales.size(); c += perm.size())
    for (size_t j = 0; j < perm.size(); ++j) out[c + j] = scales[c + size_t(perm[j])];
  return out;
}

TEST(MarlinLayout, IndexMapsMatchTheLiteralPacking) {
  std::mt19937 rng(5);
  for (const auto& [K, N] : {std::pair<int64_t, int64_t>{16, 64}, {64, 192}, {48, 1024}}) {
    std::vector<uint8_t> codes(size_t(K * N));
    for (uint8_t& c : codes) c = uint8_t(rng() % 16);
    const std::vector<int32_t> b = marlin_pack_literal(codes, K, N);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) {
        const marlin::NibblePos p = marlin::nibble_position(n, k, N, marlin::Layout::Fp16);
        ASSERT_EQ((uint32_t(b[size_t(p.word)]) >> p.shift) & 15u, codes[size_t(k * N + n)])
            << "K " << K << " N " << N << " (" << n << ", " << k << ")";
      }
  }
  std::vector<uint16_t> scales(3 * 128);
  std::iota(scales.begin(), scales.end(), uint16_t(0));
  const std::vector<uint16_t> grouped = permute_scales_literal(scales, false);
  for (int64_t g = 0; g < 3; ++g)
    for (int64_t n = 0; n < 128; ++n)
      EXPECT_EQ(grouped[size_t(g * 128 + marlin::group_scale_column(n))], scales[size_t(g * 128 + n)]);
  const std::vector<uint16_t> channel = permute_scales_literal({scales.begin(), scales.begin() + 128}, true);
  for (int64_t n = 0; n < 128; ++n) EXPECT_EQ(channel[size_t(marlin::channel_scale_index(n))], scales[size_t(n)]);
}

// A GPTQ matrix's codes [K][N] (uint4) and scales [G][N].
void gptq_codes(const Weight& w, std::vector<uint8_t>& codes, std::vector<uint16_t>& scales) {
  const QuantizedWeight& q = *w.quant;
  const int64_t N = w.rows(), K = w.cols();
  const auto* qw = static_cast<const uint32_t*>(q.qweight.data);
  codes.resize(size_t(K * N));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) codes[size_t(k * N + n)] = uint8_t((qw[(k / 8) * N + n] >> (4 * (k % 8))) & 15u);
  const auto* s = static_cast<const uint16_t*>(q.scales.data);
  scales.assign(s, s + q.scales.numel());
}

struct Converted {
  fs::path gptq_dir, marlin_dir;
};

// Quantizes a random model (RTN, 4-bit symmetric) into a GPTQ checkpoint, then converts it as
// convert_w4a16.py does into the seed's layout.
Converted convert(const std::string& name, int group_size) {
  const fs::path root = fs::temp_directory_path() / ("specq_marlin_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(root);
  Model model = test::toy_model(50, 64, 2, 17, 1.0f);  // q 64, kv 32: q|k|v 128, gate|up 256, o and down 64
  quant::QuantOptions options;
  options.method = quant::Method::Rtn;
  options.group_size = group_size;
  const quant::QuantizeSummary summary = quant::quantize_model(model, options, {}, 1, nullptr);
  EXPECT_EQ(summary.kept_dense.size(), 0u);
  Converted out{root / "gptq", root / "marlin"};
  write_hf_model(model, out.gptq_dir.string(), quant::checkpoint_write_options(options, summary));

  fs::create_directories(out.marlin_dir);
  fs::copy_file(out.gptq_dir / "config.json", out.marlin_dir / "config.json");
  SafetensorsWriter writer;
  std::vector<std::vector<int32_t>> words;
  std::vector<std::vector<uint16_t>> scale_rows;
  words.reserve(16);
  scale_rows.reserve(16);
  auto add_dense = [&](const std::string& tensor, const Weight& w) { writer.add(tensor, w.dtype, w.shape, w.data); };
  auto add_fused = [&](const std::string& prefix, std::vector<const Weight*> parts) {
    const int64_t K = parts[0]->cols();
    int64_t N = 0;
    for (const Weight* w : parts) N += w->rows();
    std::vector<uint8_t> codes(size_t(K * N));
    std::vector<uint16_t> scales;
    int64_t first = 0;
    for (const Weight* w : parts) {
      std::vector<uint8_t> part_codes;
      std::vector<uint16_t> part_scales;
      gptq_codes(*w, part_codes, part_scales);
      const int64_t n = w->rows(), groups = int64_t(part_scales.size()) / n;
      for (int64_t k = 0; k < K; ++k)
        std::copy_n(part_codes.begin() + k * n, n, codes.begin() + k * N + first);
      scales.resize(size_t(groups * N));
      for (int64_t g = 0; g < groups; ++g)
        std::copy_n(part_scales.begin() + g * n, n, scales.begin() + g * N + first);
      first += n;
    }
    words.push_back(marlin_pack_literal(codes, K, N));
    scale_rows.push_back(permute_scales_literal(scales, group_size < 0));
    writer.add(prefix + ".qweight", DType::I32, {K / 16, 2 * N}, words.back().data());
    writer.add(prefix + ".scales", DType::F16, {int64_t(scales.size()) / N, N}, scale_rows.back().data());
  };
  add_dense("model.embed_tokens.weight", model.weights.embed);
  add_dense("model.norm.weight", model.weights.final_norm);
  add_dense("lm_head.weight", model.weights.lm_head);
  for (int l = 0; l < model.config.num_layers; ++l) {
    const LayerWeights& lw = model.weights.layers[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_dense(p + "input_layernorm.weight", lw.attn_norm);
    add_dense(p + "post_attention_layernorm.weight", lw.ffn_norm);
    add_fused(p + "self_attn.qkv_proj", {&lw.wq, &lw.wk, &lw.wv});
    add_fused(p + "self_attn.o_proj", {&lw.wo});
    add_fused(p + "mlp.gate_up_proj", {&lw.w_gate, &lw.w_up});
    add_fused(p + "mlp.down_proj", {&lw.w_down});
  }
  writer.write((out.marlin_dir / "model_gptq.safetensors").string());
  return out;
}

void expect_same_parts(const Weight& a, const Weight& b, const std::string& what) {
  ASSERT_EQ(a.format, WeightFormat::GptqInt4) << what;
  ASSERT_EQ(b.format, WeightFormat::GptqInt4) << what;
  ASSERT_EQ(a.shape, b.shape) << what;
  const QuantizedWeight &qa = *a.quant, &qb = *b.quant;
  EXPECT_EQ(qa.group_size, qb.group_size) << what;
  auto bytes_equal = [](const StoredTensor& x, const StoredTensor& y) {
    return x.shape == y.shape && x.dtype == y.dtype &&
           std::memcmp(x.data, y.data, size_t(x.numel()) * dtype_size(x.dtype)) == 0;
  };
  EXPECT_TRUE(bytes_equal(qa.qweight, qb.qweight)) << what << " qweight";
  EXPECT_TRUE(bytes_equal(qa.scales, qb.scales)) << what << " scales";
  // Zero points: 8 everywhere (v1 stores 7) in both.
  EXPECT_EQ(qa.zero_offset, qb.zero_offset) << what;
  EXPECT_TRUE(bytes_equal(qa.qzeros, qb.qzeros)) << what << " qzeros";
}

TEST(MarlinCheckpoint, LoadsExactlyTheGptqCheckpointItCameFrom) {
  for (const int group_size : {32, -1}) {
    const Converted c = convert("g" + std::to_string(group_size), group_size);
    Model gptq = load_model(c.gptq_dir.string()), marlin = load_model(c.marlin_dir.string());
    for (size_t l = 0; l < gptq.weights.layers.size(); ++l) {
      const LayerWeights &a = gptq.weights.layers[l], &b = marlin.weights.layers[l];
      const std::string at = "group " + std::to_string(group_size) + " layer " + std::to_string(l);
      expect_same_parts(a.wq, b.wq, at + " q");
      expect_same_parts(a.wk, b.wk, at + " k");
      expect_same_parts(a.wv, b.wv, at + " v");
      expect_same_parts(a.wo, b.wo, at + " o");
      expect_same_parts(a.w_gate, b.w_gate, at + " gate");
      expect_same_parts(a.w_up, b.w_up, at + " up");
      expect_same_parts(a.w_down, b.w_down, at + " down");
    }
    const std::vector<int32_t> ids{1, 7, 3, 44, 12, 9, 0, 31};
    EXPECT_EQ(test::all_logits(gptq, ids), test::all_logits(marlin, ids)) << "group " << group_size;
    fs::remove_all(c.gptq_dir.parent_path());
  }
}

TEST(MarlinCheckpoint, RefusesWhatTheConverterCannotKeep) {
  const Converted c = convert("bad", 32);
  const fs::path config_path = c.marlin_dir / "config.json";
  const nlohmann::json original = read_json_file(config_path.string());
  auto expect_error = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& message) {
    nlohmann::json config = original;
    edit(config);
    std::ofstream(config_path) << config.dump(2);
    try {
      load_model(c.marlin_dir.string());
      ADD_FAILURE() << "loaded despite: " << message;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  // True act-order: the converter dropped g_idx, so these weights would be silently wrong.
  expect_error([](nlohmann::json& j) { j["quantization_config"]["desc_act"] = true; }, "desc_act");
  expect_error([](nlohmann::json& j) { j["quantization_config"]["sym"] = false; }, "symmetric");
  expect_error([](nlohmann::json& j) { j["quantization_config"]["group_size"] = 64; }, ".scales");
  expect_error([](nlohmann::json& j) { j.erase("quantization_config"); }, "quantization_config");
  // With static groups, act-order keeps g_idx = k / g: it loads.
  nlohmann::json config = original;
  config["quantization_config"]["desc_act"] = true;
  config["quantization_config"]["static_groups"] = true;
  std::ofstream(config_path) << config.dump(2);
  EXPECT_NO_THROW(load_model(c.marlin_dir.string()));
  fs::remove_all(c.gptq_dir.parent_path());
}

}  // namespace
}  // namespace specq
