// The W4A16 tile packing (quant/w4a16_tiles.h) on the host: every packed value unpacks to exactly
// the GptqInt4 definition (dequantize_row), for sym/asym, group and per-channel, act-order, fused
// parts and the SwiGLU interleave; the layout is pinned against hand-computed words; shapes the
// kernel cannot run are clear errors.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "core/synthetic_rng.h"
#include "gptq_test_util.h"
#include "io/synthetic.h"
#include "quant/gptq.h"
#include "quant/w4a16_tiles.h"

namespace specq {
namespace {

std::shared_ptr<quant::GptqMatrix> random_matrix(int n, int k, int group, bool sym, bool act_order, uint32_t seed) {
  std::mt19937 rng(seed);
  return test::random_gptq_matrix(n, k, group, sym, act_order, rng);
}

// The stacked parts' rows dequantized by the format's definition, rounded as the kernel rounds
// (scale to the activation dtype; (q - z) exact).
std::vector<float> expected_row(const std::vector<Weight>& parts, int row, DType act) {
  for (const Weight& w : parts) {
    if (row < w.rows()) {
      const QuantizedWeight& q = *w.quant;
      std::vector<float> out(size_t(w.cols()));
      for (int64_t k = 0; k < w.cols(); ++k) {
        const int g = q.group_of(k);
        const auto* qw = static_cast<const uint32_t*>(q.qweight.data);
        const auto* qz = static_cast<const uint32_t*>(q.qzeros.data);
        const int v = int((qw[(k / 8) * w.rows() + row] >> (4 * (k % 8))) & 15u);
        const int z = int((qz[g * (w.rows() / 8) + row / 8] >> (4 * (row % 8))) & 15u) + q.zero_offset;
        const float s = load_as_float(q.scales.data, q.scales.dtype, size_t(g) * w.rows() + row);
        auto round = [&](float f) {
          return act == DType::F16 ? half_to_float(float_to_half(f)) : bf16_to_float(float_to_bf16(f));
        };
        out[size_t(k)] = float(v - z) * round(s);
      }
      return out;
    }
    row -= int(w.rows());
  }
  ADD_FAILURE() << "row out of range";
  return {};
}

void expect_unpacks(const std::vector<Weight>& parts, DType act, bool swiglu) {
  std::vector<const Weight*> ptrs;
  for (const Weight& w : parts) ptrs.push_back(&w);
  const W4A16Tiles t = pack_w4a16_tiles(ptrs, act, swiglu, "test");
  std::vector<float> got(size_t(t.k));
  for (int row = 0; row < t.rows; ++row) {
    unpack_w4a16_row(t, row, got.data());
    const std::vector<float> want = expected_row(parts, row, act);
    for (int k = 0; k < t.k; ++k) ASSERT_EQ(got[size_t(k)], want[size_t(k)]) << "row " << row << " input " << k;
    // With fp16 scales the tiles hold exactly the GptqInt4 values.
    if (act == DType::F16 && parts[0].quant->scales.dtype == DType::F16) {
      std::vector<float> exact(size_t(t.k));
      int r = row;
      const Weight* w = &parts[0];
      for (const Weight& p : parts) {
        w = &p;
        if (r < p.rows()) break;
        r -= int(p.rows());
      }
      dequantize_row(*w, r, exact.data());
      for (int k = 0; k < t.k; ++k) ASSERT_EQ(got[size_t(k)], exact[size_t(k)]);
    }
  }
}

struct Case {
  int n, k, group;
  bool sym, act_order;
};

class TilesTest : public ::testing::TestWithParam<Case> {};

TEST_P(TilesTest, UnpackEqualsTheFormatDefinition) {
  const Case c = GetParam();
  const auto m = random_matrix(c.n, c.k, c.group, c.sym, c.act_order, 7);
  const std::vector<Weight> one = {quant::gptq_weight_view(m)};
  for (const DType act : {DType::F16, DType::BF16}) expect_unpacks(one, act, false);
}

INSTANTIATE_TEST_SUITE_P(Shapes, TilesTest,
                         ::testing::Values(Case{64, 128, 32, true, false}, Case{48, 256, 128, false, false},
                                           Case{40, 192, -1, true, false}, Case{32, 128, 16, false, false},
                                           Case{64, 256, 64, true, true}, Case{24, 96, 32, false, true},
                                           Case{8, 80, 16, true, false}));

TEST(W4A16Tiles, FusedPartsAndSwigluInterleave) {
  // Fused q/k/v: rows stacked; padded rows of the last tile unpack to nothing (and stay zero).
  const auto a = random_matrix(32, 128, 64, true, false, 1), b = random_matrix(16, 128, 64, true, false, 2),
             c = random_matrix(8, 128, 64, true, false, 3);
  expect_unpacks({quant::gptq_weight_view(a), quant::gptq_weight_view(b), quant::gptq_weight_view(c)}, DType::F16,
                 false);
  // gate|up: tile t holds gate rows 8t..8t+7 then the same up rows.
  const auto gate = random_matrix(40, 64, 32, false, false, 4), up = random_matrix(40, 64, 32, false, false, 5);
  const std::vector<Weight> gu = {quant::gptq_weight_view(gate), quant::gptq_weight_view(up)};
  expect_unpacks(gu, DType::BF16, true);
  const W4A16Tiles t = pack_w4a16_tiles(std::vector<const Weight*>{&gu[0], &gu[1]}, DType::BF16, true, "gu");
  EXPECT_EQ(t.row_tiles, 5);
  EXPECT_EQ(t.source_row(1, 3), 11);
  EXPECT_EQ(t.source_row(1, 11), 40 + 11);
}

TEST(W4A16Tiles, LayoutOfOneBlockIsPinned) {
  // q[k][n] = (k + 3 n) % 16 in a [16, 64] symmetric matrix: lane 5 (gid 1, tig 1), word 2 holds
  // inputs 16 + 8 .. 16 + 11 of rows 1 and 9 in the documented bit positions.
  auto m = std::make_shared<quant::GptqMatrix>();
  m->n = 16;
  m->k = 64;
  m->group_size = 64;
  m->sym = true;
  m->qweight.assign(size_t(64 / 8) * 16, 0);
  for (int k = 0; k < 64; ++k)
    for (int n = 0; n < 16; ++n)
      m->qweight[size_t(k / 8) * 16 + n] |= int32_t(uint32_t((k + 3 * n) % 16) << (4 * (k % 8)));
  m->qzeros.assign(2, int32_t(0x77777777));  // v1 zeros: stored 7 = zero 8
  m->scales.assign(16, float_to_half(1.0f));
  const Weight w = quant::gptq_weight_view(m);
  const std::vector<const Weight*> parts = {&w};
  const W4A16Tiles t = pack_w4a16_tiles(parts, DType::F16, false, "pinned");
  auto q = [](int k, int n) { return uint32_t((k + 3 * n) % 16); };
  const int kb = 16 * 1 + 4 * 2;
  const uint32_t want = q(kb, 1) | q(kb, 9) << 4 | q(kb + 2, 1) << 8 | q(kb + 2, 9) << 12 | q(kb + 1, 1) << 16 |
                        q(kb + 1, 9) << 20 | q(kb + 3, 1) << 24 | q(kb + 3, 9) << 28;
  EXPECT_EQ(t.tiles[5 * 4 + 2], want);
}

TEST(W4A16Tiles, SyntheticPartsMatchTheirDefinition) {
  Model m = make_synthetic_model("tiny@w4a16-g32");
  const Weight& wq = m.weights.layers[0].wq;
  ASSERT_EQ(wq.format, WeightFormat::GptqInt4);
  Weight made = wq;
  made.quant = synthetic_gptq_parts(wq);
  validate_quantized("wq", made, made.rows(), made.cols());
  const auto* words = static_cast<const uint32_t*>(made.quant->qweight.data);
  EXPECT_EQ(words[3], synthetic_word(wq.seed, 3));
  expect_unpacks({made}, DType::F16, false);
}

TEST(W4A16Tiles, ShapesTheKernelCannotRunAreErrors) {
  const auto g8 = random_matrix(16, 64, 8, true, false, 9);  // groups of 8: not a multiple of 16
  const Weight w = quant::gptq_weight_view(g8);
  EXPECT_THROW(pack_w4a16_tiles(std::vector<const Weight*>{&w}, DType::F16, false, "g8"), Error);
  const auto a = random_matrix(16, 128, 32, true, true, 10), b = random_matrix(16, 128, 32, true, true, 11);
  const Weight wa = quant::gptq_weight_view(a), wb = quant::gptq_weight_view(b);
  if (a->g_idx != b->g_idx) {  // different act-order permutations cannot share one input order
    EXPECT_THROW(pack_w4a16_tiles(std::vector<const Weight*>{&wa, &wb}, DType::F16, false, "qk"), Error);
  }
  EXPECT_THROW(pack_w4a16_tiles(std::vector<const Weight*>{&wa}, DType::F32, false, "f32"), Error);
}

}  // namespace
}  // namespace specq
