// The W4A16 CUDA kernel against the CPU reference (cpu::linear on the same GptqInt4 weight) for
// token counts 1..256, fp16 and bf16 activations, sym/asym, group/per-channel, act-order, bf16
// scales, and groups that split a packed word.
#include <gtest/gtest.h>

#include "backend/cpu/ops.h"
#include "backend/cuda/gemm_w4a16.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "quant/gptq.h"

namespace specq::cuda::test {
namespace {

struct Case {
  int n, k, group;  // group -1 = per-channel
  bool sym, act_order, bf16_scales;
};

// A quantized matrix made by the project's own quantizer (GPTQ on a random Hessian when act-order).
std::shared_ptr<quant::GptqMatrix> make_matrix(const Case& c) {
  const std::vector<float> w = random_values(size_t(c.n) * c.k, 0.05f);
  quant::QuantOptions o;
  o.group_size = c.group;
  o.sym = c.sym;
  o.act_order = c.act_order;
  o.method = c.act_order ? quant::Method::Gptq : quant::Method::Rtn;
  std::vector<double> h;
  if (c.act_order) {
    const int rows = 2 * c.k;
    std::vector<float> x = random_values(size_t(rows) * c.k);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < c.k; ++i) x[size_t(r) * c.k + i] *= 1.0f + float(i % 7);  // uneven diagonal
    quant::HessianAccumulator acc(c.k);
    acc.add(x.data(), rows);
    h = acc.hessian();
  }
  return std::make_shared<quant::GptqMatrix>(quant::quantize_matrix(w.data(), c.n, c.k, h, o));
}

template <typename T>
DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  SPECQ_CUDA(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return b;
}

void check(const Case& c, DType act) {
  auto matrix = make_matrix(c);
  ASSERT_EQ(matrix->act_order, c.act_order && c.group > 0);
  if (c.bf16_scales)  // the same values, stored as bf16 (round-trip through the fp16 value)
    for (uint16_t& s : matrix->scales) s = float_to_bf16(half_to_float(s));
  Weight host = quant::gptq_weight_view(matrix);
  if (c.bf16_scales) {
    auto q = std::make_shared<QuantizedWeight>(*host.quant);
    q->scales.dtype = DType::BF16;
    host.quant = q;
  }
  DeviceBuffer qweight = to_device(matrix->qweight), qzeros = to_device(matrix->qzeros),
               scales = to_device(matrix->scales), g_idx = to_device(matrix->g_idx);
  W4A16Weight dw;
  dw.qweight = qweight.get<uint32_t>();
  dw.qzeros = qzeros.get<uint32_t>();
  dw.scales = scales.get();
  dw.scale_dtype = c.bf16_scales ? DType::BF16 : DType::F16;
  dw.g_idx = matrix->act_order ? g_idx.get<int32_t>() : nullptr;
  dw.n = c.n;
  dw.k = c.k;
  dw.group_size = matrix->group_size;
  dw.zero_offset = 1;
  for (int m : {1, 2, 7, 8, 9, 16, 33, 64, 100, 256}) {
    std::vector<float> x = random_values(size_t(m) * c.k);
    std::vector<float> bias = random_values(size_t(c.n));
    DeviceBuffer x_d = upload(x, act), b_d = upload(bias, DType::F32);
    std::vector<float> ref(size_t(m) * c.n), scratch(size_t(c.k) * 256);
    cpu::linear(x.data(), m, host, bias.data(), ref.data(), c.n, scratch.data());
    for (const bool fp32_out : {true, false}) {
      DeviceBuffer y = poisoned(size_t(m) * c.n * (fp32_out ? 4 : 2));
      gemm_w4a16(dw, x_d.get(), act, m, b_d.get<float>(), y.get(), fp32_out, nullptr);
      const double err = rel_l2(download(y.get(), ref.size(), fp32_out ? DType::F32 : act), ref);
      EXPECT_LT(err, fp32_out ? 1e-5 : tolerance(act))
          << "n=" << c.n << " k=" << c.k << " group=" << c.group << " sym=" << c.sym << " act_order=" << c.act_order
          << " m=" << m << " fp32_out=" << fp32_out;
    }
  }
}

TEST_P(DtypeTest, W4A16MatchesCpuReference) {
  const Case cases[] = {
      {256, 512, 128, true, false, false},  {96, 256, 32, false, false, false}, {128, 384, -1, true, false, false},
      {64, 256, 64, false, true, false},    {160, 128, 32, true, true, false},  {64, 192, 64, false, false, true},
      {40, 96, 12, false, false, false},    // groups of 12 split packed words
  };
  for (const Case& c : cases) check(c, GetParam());
}

TEST(CudaW4A16, RejectsBadShapes) {
  W4A16Weight w;
  w.n = 64;
  w.k = 100;  // not a multiple of 8
  w.group_size = 100;
  EXPECT_THROW(gemm_w4a16(w, nullptr, DType::F16, 1, nullptr, nullptr, true, nullptr), Error);
}

INSTANTIATE_TEST_SUITE_P(Cuda, DtypeTest, ::testing::Values(DType::F16, DType::BF16), dtype_test_name);

}  // namespace
}  // namespace specq::cuda::test
