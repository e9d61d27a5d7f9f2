// The W4A16 CUDA kernel against CPU references on fresh random inputs: the tiles' own values
// (unpack_w4a16_row) and cpu::linear on the GptqInt4 weight (the format's definition; differs by
// the scale's rounding to the activation dtype). Every compiled tile shape and split count, token counts 1..256, fp16 and bf16, sym/asym,
// group/per-channel, act-order, fused parts, SwiGLU, bias, fp32 output; and every Llama-3 8B and
// 70B layer shape on sampled rows.
#include <gtest/gtest.h>

#include <random>

#include "backend/cpu/ops.h"
#include "backend/cuda/gemm_w4a16.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "../gptq_test_util.h"
#include "io/synthetic.h"
#include "quant/gptq.h"
#include "quant/w4a16_tiles.h"

namespace specq::cuda::test {
namespace {

int sm_count() {
  int device = 0, count = 0;
  SPECQ_CUDA(cudaGetDevice(&device));
  SPECQ_CUDA(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

std::shared_ptr<quant::GptqMatrix> random_matrix(int n, int k, int group, bool sym, bool act_order) {
  return specq::test::random_gptq_matrix(n, k, group, sym, act_order, rng());
}

// The packed matrix on the device, with the buffers that own it.
struct DeviceTiles {
  W4A16Tiles host;
  DeviceBuffer tiles, scales, perm;
  W4A16Weight w;
};

std::unique_ptr<DeviceTiles> to_device(const std::vector<Weight>& parts, DType act, bool swiglu) {
  auto d = std::make_unique<DeviceTiles>();
  std::vector<const Weight*> ptrs;
  for (const Weight& p : parts) ptrs.push_back(&p);
  d->host = pack_w4a16_tiles(ptrs, act, swiglu, "test");
  const W4A16Tiles& t = d->host;
  d->tiles = DeviceBuffer(t.tiles.size() * 4);
  d->scales = DeviceBuffer(t.scales.size() * 2);
  SPECQ_CUDA(cudaMemcpy(d->tiles.get(), t.tiles.data(), t.tiles.size() * 4, cudaMemcpyHostToDevice));
  SPECQ_CUDA(cudaMemcpy(d->scales.get(), t.scales.data(), t.scales.size() * 2, cudaMemcpyHostToDevice));
  if (!t.perm.empty()) {
    d->perm = DeviceBuffer(t.perm.size() * 4);
    SPECQ_CUDA(cudaMemcpy(d->perm.get(), t.perm.data(), t.perm.size() * 4, cudaMemcpyHostToDevice));
  }
  d->w = {d->tiles.get(), d->scales.get(), t.perm.empty() ? nullptr : d->perm.get<int32_t>(), t.rows, t.row_tiles,
          t.k, t.chunks, t.group_size, t.groups, t.sym, t.swiglu};
  return d;
}

// y rows `rows_checked` (all when empty) from the tiles' values in double precision.
std::vector<float> reference(const W4A16Tiles& t, const std::vector<float>& x, int n, const std::vector<float>& bias,
                             const std::vector<int>& rows_checked) {
  const int out_rows = t.swiglu ? t.rows / 2 : t.rows;
  std::vector<float> y(size_t(n) * out_rows, 0.0f);
  std::vector<float> w(size_t(t.k)), w2(size_t(t.k));
  auto dot = [&](const std::vector<float>& wr, int tok) {
    double s = 0.0;
    for (int k = 0; k < t.k; ++k) s += double(wr[size_t(k)]) * x[size_t(tok) * t.k + k];
    return s;
  };
  for (int r = 0; r < out_rows; ++r) {
    if (!rows_checked.empty() && std::find(rows_checked.begin(), rows_checked.end(), r) == rows_checked.end()) continue;
    unpack_w4a16_row(t, r, w.data());
    if (t.swiglu) unpack_w4a16_row(t, out_rows + r, w2.data());
    for (int tok = 0; tok < n; ++tok) {
      double v = dot(w, tok) + (bias.empty() ? 0.0 : bias[size_t(r)]);
      if (t.swiglu) {
        const double up = dot(w2, tok);
        v = v / (1.0 + std::exp(-v)) * up;
      }
      y[size_t(tok) * out_rows + r] = float(v);
    }
  }
  return y;
}

double rel_l2_rows(const std::vector<float>& got, const std::vector<float>& ref, int n, int out_rows,
                   const std::vector<int>& rows) {
  std::vector<float> g, r;
  for (int tok = 0; tok < n; ++tok)
    for (const int row : rows) {
      g.push_back(got[size_t(tok) * out_rows + row]);
      r.push_back(ref[size_t(tok) * out_rows + row]);
    }
  return rel_l2(g, r);
}

struct Run {
  int n;
  W4A16Config config;
};

// Every compiled shape with every split choice at each token count, plus the default config.
std::vector<Run> runs_for(const W4A16Weight& w, std::initializer_list<int> counts, int sms) {
  std::vector<Run> runs;
  for (const int n : counts) {
    runs.push_back({n, w4a16_default_config(w, n, sms)});
    for (W4A16Config c : w4a16_shapes())
      for (const int s : w4a16_split_choices(c, w, n, sms)) {
        c.splits = s;
        runs.push_back({n, c});
      }
  }
  return runs;
}

void check_all_shapes(const std::vector<Weight>& parts, DType act, bool swiglu, bool with_bias, const char* what) {
  const int sms = sm_count();
  auto d = to_device(parts, act, swiglu);
  const W4A16Tiles& t = d->host;
  const int out_rows = swiglu ? t.rows / 2 : t.rows;
  DeviceBuffer ws(w4a16_workspace_bytes(256, t.k, sms));
  w4a16_clear_workspace(ws.get(), sms, nullptr);
    for (const int n : {1, 2, 7, 8, 9, 16, 33, 64, 100, 256}) {
    std::vector<float> x = random_values(size_t(n) * t.k);
    std::vector<float> bias = with_bias ? random_values(size_t(out_rows)) : std::vector<float>{};
    DeviceBuffer x_d = upload(x, act);
    DeviceBuffer b_d = with_bias ? upload(bias, DType::F32) : DeviceBuffer(4);
    const std::vector<float> ref = reference(t, x, n, bias, {});
    for (const Run& run : runs_for(d->w, {n}, sms)) {
      for (const bool fp32_out : {false, true}) {
        if (fp32_out && swiglu) continue;
        DeviceBuffer y = poisoned(size_t(n) * out_rows * (fp32_out ? 4 : 2));
        gemm_w4a16(d->w, x_d.get(), act, n, with_bias ? b_d.get<float>() : nullptr, y.get(), fp32_out, run.config,
                   ws.get(), sms, nullptr);
        const double err = rel_l2(download(y.get(), ref.size(), fp32_out ? DType::F32 : act), ref);
        // fp32 output: exact up to summation order, or (kernels that scale before the MMA) the
        // product's rounding to the activation dtype.
        EXPECT_LT(err, fp32_out ? 1e-3 : tolerance(act))
            << what << " n=" << n << " config=" << run.config.name() << " fp32_out=" << fp32_out;
      }
    }
  }
}

struct Case {
  int n, k, group;  // group -1 = per-channel
  bool sym, act_order;
};

TEST_P(DtypeTest, W4A16EveryShapeMatchesTheTiles) {
  const Case cases[] = {{256, 512, 128, true, false}, {96, 256, 32, false, false}, {128, 384, -1, true, false},
                        {64, 256, 64, false, true},   {160, 128, 32, true, true},  {40, 208, 16, true, false}};
  for (const Case& c : cases) {
    const auto m = random_matrix(c.n, c.k, c.group, c.sym, c.act_order);
    check_all_shapes({quant::gptq_weight_view(m)}, GetParam(), false, true, "single");
  }
  // Fused q/k/v with a bias, and SwiGLU over an interleaved gate|up.
  const auto q = random_matrix(64, 256, 64, true, false), k = random_matrix(16, 256, 64, true, false),
             v = random_matrix(16, 256, 64, true, false);
  check_all_shapes({quant::gptq_weight_view(q), quant::gptq_weight_view(k), quant::gptq_weight_view(v)}, GetParam(),
                   false, true, "qkv");
  const auto gate = random_matrix(136, 256, 128, false, false), up = random_matrix(136, 256, 128, false, false);
  check_all_shapes({quant::gptq_weight_view(gate), quant::gptq_weight_view(up)}, GetParam(), true, false, "swiglu");
}

// The kernel against the format's own definition (cpu::linear on the GptqInt4 weight).
TEST_P(DtypeTest, W4A16MatchesCpuLinear) {
  const DType act = GetParam();
  const int sms = sm_count();
  const auto m = random_matrix(192, 512, 128, false, true);
  const Weight host = quant::gptq_weight_view(m);
  auto d = to_device({host}, act, false);
  DeviceBuffer ws(w4a16_workspace_bytes(64, 512, sms));
  w4a16_clear_workspace(ws.get(), sms, nullptr);
  for (const int n : {1, 5, 64}) {
    std::vector<float> x = random_values(size_t(n) * 512);
    DeviceBuffer x_d = upload(x, act);
    std::vector<float> ref(size_t(n) * 192), scratch(size_t(512) * 256);
    cpu::linear(x.data(), n, host, nullptr, ref.data(), 192, scratch.data());
    DeviceBuffer y = poisoned(ref.size() * 4);
    gemm_w4a16(d->w, x_d.get(), act, n, nullptr, y.get(), true, w4a16_default_config(d->w, n, sms), ws.get(), sms,
               nullptr);
    // bf16 scales carry 8 mantissa bits: the per-weight error stays below 2^-8 relative.
    EXPECT_LT(rel_l2(download(y.get(), ref.size(), DType::F32), ref), act == DType::F16 ? 1e-3 : 6e-3) << "n=" << n;
  }
}

// Llama-3 8B and 70B layer shapes (synthetic 4-bit weights, group 128) on 48 sampled rows.
TEST_P(DtypeTest, W4A16LlamaLayerShapes) {
  const DType act = GetParam();
  const int sms = sm_count();
  struct Shape {
    int rows, k;
    bool swiglu;
  };
  const Shape shapes[] = {{6144, 4096, false}, {4096, 4096, false}, {2 * 14336, 4096, true}, {4096, 14336, false},
                          {10240, 8192, false}, {8192, 8192, false}, {2 * 28672, 8192, true}, {8192, 28672, false}};
  uint64_t seed = 0x7e57;
  for (const Shape& s : shapes) {
    std::vector<Weight> parts;
    for (int p = 0; p < (s.swiglu ? 2 : 1); ++p) {
      Weight w;
      w.format = WeightFormat::GptqInt4;
      w.synthetic = true;
      w.seed = ++seed;
      w.scale = std::sqrt(3.0f / float(s.k));
      w.shape = {s.swiglu ? s.rows / 2 : s.rows, s.k};
      auto q = std::make_shared<QuantizedWeight>();
      q->group_size = 128;
      q->sym = true;
      w.quant = q;
      w.quant = synthetic_gptq_parts(w);
      parts.push_back(w);
    }
    auto d = to_device(parts, act, s.swiglu);
    const int out_rows = s.swiglu ? s.rows / 2 : s.rows;
    std::vector<int> rows;
    std::mt19937 pick{uint32_t(seed)};
    for (int i = 0; i < 48; ++i) rows.push_back(int(pick() % uint32_t(out_rows)));
    rows.push_back(out_rows - 1);
    DeviceBuffer ws(w4a16_workspace_bytes(256, s.k, sms));
    w4a16_clear_workspace(ws.get(), sms, nullptr);
    for (const int n : {1, 8, 16, 64, 256}) {
      std::vector<float> x = random_values(size_t(n) * s.k);
      DeviceBuffer x_d = upload(x, act);
      const std::vector<float> ref = reference(d->host, x, n, {}, rows);
      DeviceBuffer y = poisoned(size_t(n) * out_rows * 2);
      gemm_w4a16(d->w, x_d.get(), act, n, nullptr, y.get(), false, w4a16_default_config(d->w, n, sms), ws.get(), sms,
                 nullptr);
      const std::vector<float> got = download(y.get(), size_t(n) * out_rows, act);
      EXPECT_LT(rel_l2_rows(got, ref, n, out_rows, rows), tolerance(act))
          << s.rows << "x" << s.k << " n=" << n;
      for (const float v : got) ASSERT_TRUE(std::isfinite(v)) << "unwritten output at " << s.rows << "x" << s.k;
    }
  }
}

TEST(CudaW4A16, RejectsBadShapes) {
  W4A16Weight w;
  w.rows = 64;
  w.k = 100;  // not a multiple of 16
  w.group_size = 100;
  DeviceBuffer ws(1024);
  EXPECT_THROW(gemm_w4a16(w, ws.get(), DType::F16, 1, nullptr, ws.get(), true, W4A16Config{}, ws.get(), 1, nullptr),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Cuda, DtypeTest, ::testing::Values(DType::F16, DType::BF16), dtype_test_name);

}  // namespace
}  // namespace specq::cuda::test
