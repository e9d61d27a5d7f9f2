// Every CUDA kernel against the CPU reference (backend/cpu/ops.h) on fresh random inputs, with the
// output poisoned beforehand, in fp16 and bf16.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "backend/cpu/ops.h"
#include "backend/cuda/kernels.h"
#include "../chi_square.h"
#include "gen/sampler.h"
#include "core/synthetic_rng.h"
#include "cuda_test_util.h"
#include "model/config.h"
#include "model/runner.h"

namespace specq::cuda::test {
namespace {

constexpr cudaStream_t kStream = nullptr;

Weight host_weight(const std::vector<float>& values, int64_t rows, int64_t cols) {
  Weight w;
  w.dtype = DType::F32;
  w.shape = {rows, cols};
  w.data = values.data();
  return w;
}

TEST_P(DtypeTest, SyntheticFillMatchesHost) {
  const DType act = GetParam();
  const int64_t count = 100003;
  DeviceBuffer out = poisoned(size_t(count) * 2);
  // Rounded through the other 16-bit type first, as a bf16 checkpoint runs on fp16 activations.
  const DType stored = act == DType::F16 ? DType::BF16 : DType::F16;
  fill_synthetic(out.get(), act, count, 77, 1000, 0.5f, 0.25f, stored, kStream);
  const std::vector<float> got = download(out.get(), size_t(count), act);
  for (int64_t i = 0; i < count; ++i) {
    const float stored_value = from_bits(to_bits(synthetic_value(77, uint64_t(1000 + i), 0.5f, 0.25f), stored), stored);
    ASSERT_EQ(got[size_t(i)], from_bits(to_bits(stored_value, act), act));
  }
}

TEST_P(DtypeTest, EmbedGathersRows) {
  const DType act = GetParam();
  const int vocab = 1000, hidden = 256, n = 9;
  std::vector<float> table = random_values(size_t(vocab) * hidden);
  DeviceBuffer table_d = upload(table, act);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = int32_t(rng()() % vocab);
  DeviceBuffer ids_d(ids.size() * 4);
  SPECQ_CUDA(cudaMemcpy(ids_d.get(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  DeviceBuffer x = poisoned(size_t(n) * hidden * 4);
  embed(table_d.get(), act, ids_d.get<int32_t>(), n, hidden, x.get<float>(), kStream);
  const std::vector<float> got = download(x.get(), size_t(n) * hidden, DType::F32);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < hidden; ++i) ASSERT_EQ(got[size_t(t) * hidden + i], table[size_t(ids[t]) * hidden + i]);
}

TEST_P(DtypeTest, AddRmsnormMatchesCpu) {
  const DType act = GetParam();
  for (const int dim : {4096, 8192, 288, 64, 100}) {  // 100: the strided path
    const int n = 5;
    std::vector<float> x = random_values(size_t(n) * dim, 3.0f);
    std::vector<float> delta = random_values(size_t(n) * dim);
    std::vector<float> w = random_values(size_t(dim));
    DeviceBuffer x_d = upload(x, DType::F32), delta_d = upload(delta, act), w_d = upload(w, DType::F32);
    DeviceBuffer out = poisoned(size_t(n) * dim * 2);
    add_rmsnorm(x_d.get<float>(), delta_d.get(), w_d.get<float>(), 1e-5f, out.get(), act, n, dim, kStream);
    std::vector<float> ref(x.size());
    cpu::add_rmsnorm(x.data(), delta.data(), w.data(), 1e-5f, ref.data(), n, dim);
    EXPECT_LT(rel_l2(download(x_d.get(), x.size(), DType::F32), x), 1e-6) << "dim " << dim;
    EXPECT_LT(rel_l2(download(out.get(), ref.size(), act), ref), tolerance(act)) << "dim " << dim;
  }
}

TEST_P(DtypeTest, RopeStoresKvLikeCpu) {
  const DType act = GetParam();
  for (const bool llama3 : {false, true}) {
    ModelConfig c;
    c.head_dim = 128;
    c.rope_theta = 500000.0f;
    if (llama3) c.rope_scaling = {RopeScaling::Type::Llama3, 32.0f, 1.0f, 4.0f, 8192, {}};
    const int n = 7, heads = 8, kv_heads = 2, hd = c.head_dim, cache_len = 13, rows = 40;
    const int q_dim = heads * hd, kv_dim = kv_heads * hd, stride = q_dim + 2 * kv_dim;
    std::vector<float> qkv = random_values(size_t(n) * stride);
    DeviceBuffer qkv_d = upload(qkv, act);
    std::vector<int32_t> positions(n);
    for (int32_t& p : positions) p = int32_t(rng()() % 100000);
    std::vector<float> inv_freq = rope_inv_freq(c);
    DeviceBuffer inv_d = upload(inv_freq, DType::F32);
    DeviceBuffer pos_d(size_t(n) * 4), len_d(4);
    SPECQ_CUDA(cudaMemcpy(pos_d.get(), positions.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
    SPECQ_CUDA(cudaMemcpy(len_d.get(), &cache_len, 4, cudaMemcpyHostToDevice));
    DeviceBuffer k_cache = poisoned(size_t(rows) * kv_dim * 2), v_cache = poisoned(size_t(rows) * kv_dim * 2);
    StepInputs step{nullptr, pos_d.get<int32_t>(), len_d.get<int32_t>(), nullptr, nullptr};
    rope_store_kv(qkv_d.get(), act, n, heads, kv_heads, hd, step, inv_d.get<float>(), k_cache.get(), v_cache.get(),
                  kStream);
    std::vector<float> ref = qkv;
    cpu::rope(ref.data(), stride, n, heads, hd, positions.data(), inv_freq.data());
    cpu::rope(ref.data() + q_dim, stride, n, kv_heads, hd, positions.data(), inv_freq.data());
    EXPECT_LT(rel_l2(download(qkv_d.get(), qkv.size(), act), ref), tolerance(act)) << "llama3 " << llama3;
    const std::vector<float> k_got = download(k_cache.get(), size_t(rows) * kv_dim, act);
    const std::vector<float> v_got = download(v_cache.get(), size_t(rows) * kv_dim, act);
    std::vector<float> k_ref, v_ref, k_new, v_new;
    for (int t = 0; t < n; ++t) {
      const float* row = ref.data() + size_t(t) * stride;
      k_ref.insert(k_ref.end(), row + q_dim, row + q_dim + kv_dim);
      v_ref.insert(v_ref.end(), row + q_dim + kv_dim, row + stride);
      k_new.insert(k_new.end(), k_got.begin() + (cache_len + t) * kv_dim, k_got.begin() + (cache_len + t + 1) * kv_dim);
      v_new.insert(v_new.end(), v_got.begin() + (cache_len + t) * kv_dim, v_got.begin() + (cache_len + t + 1) * kv_dim);
    }
    EXPECT_LT(rel_l2(k_new, k_ref), tolerance(act));
    EXPECT_EQ(rel_l2(v_new, v_ref), 0.0);
  }
}

enum class Linear { Gemv, Skinny, Cublas };
const char* linear_name(Linear k) { return k == Linear::Gemv ? "gemv" : k == Linear::Skinny ? "skinny" : "gemm"; }

int sm_count() {
  int device = 0, count = 0;
  SPECQ_CUDA(cudaGetDevice(&device));
  SPECQ_CUDA(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

// handle: the cuBLAS handle (Cublas) or the skinny GEMM's cleared workspace (Skinny).
void check_linear(DType act, int n, int rows, int cols, bool with_bias, Linear kernel, void* handle) {
  std::vector<float> w = random_values(size_t(rows) * cols, std::sqrt(3.0f / float(cols)));
  std::vector<float> x = random_values(size_t(n) * cols);
  std::vector<float> bias = with_bias ? random_values(size_t(rows)) : std::vector<float>{};
  DeviceBuffer w_d = upload(w, act), x_d = upload(x, act), b_d = upload(bias, DType::F32);
  for (const bool fp32_out : {false, true}) {
    DeviceBuffer y = poisoned(size_t(n) * rows * (fp32_out ? 4 : 2));
    const float* b = with_bias ? b_d.get<float>() : nullptr;
    if (kernel == Linear::Gemv) gemv(w_d.get(), x_d.get(), b, y.get(), fp32_out, act, n, rows, cols, kStream);
    else if (kernel == Linear::Skinny)
      skinny_gemm(w_d.get(), x_d.get(), b, y.get(), fp32_out, act, n, rows, cols, false, handle, sm_count(), kStream);
    else gemm(handle, w_d.get(), x_d.get(), b, y.get(), fp32_out, act, n, rows, cols, kStream);
    std::vector<float> ref(size_t(n) * rows), scratch(size_t(cols) * 256);
    const Weight wt = host_weight(w, rows, cols);
    cpu::linear(x.data(), n, wt, with_bias ? bias.data() : nullptr, ref.data(), rows, scratch.data());
    const double err = rel_l2(download(y.get(), ref.size(), fp32_out ? DType::F32 : act), ref);
    EXPECT_LT(err, fp32_out ? 1e-4 : tolerance(act))
        << linear_name(kernel) << " n=" << n << " rows=" << rows << " cols=" << cols << " fp32 " << fp32_out;
  }
}

TEST_P(DtypeTest, GemvMatchesCpu) {
  for (int n = 1; n <= kGemvMaxTokens; ++n) {
    check_linear(GetParam(), n, 1000, 4096, n % 2 == 0, Linear::Gemv, nullptr);
    check_linear(GetParam(), n, 333, 172, n == 3, Linear::Gemv, nullptr);  // width not a multiple of 8
  }
}

TEST_P(DtypeTest, GemvSwigluMatchesCpu) {
  const DType act = GetParam();
  for (const auto& [inter, cols] : {std::pair{1000, 4096}, std::pair{86, 172}}) {
    for (int n = 1; n <= kGemvMaxTokens; ++n) {
      std::vector<float> w = random_values(size_t(2 * inter) * cols, std::sqrt(3.0f / float(cols)));
      std::vector<float> x = random_values(size_t(n) * cols);
      DeviceBuffer w_d = upload(w, act), x_d = upload(x, act);
      DeviceBuffer y = poisoned(size_t(n) * inter * 2);
      gemv_swiglu(w_d.get(), x_d.get(), y.get(), act, n, inter, cols, kStream);
      std::vector<float> gate_up(size_t(n) * 2 * inter), ref(size_t(n) * inter), scratch(size_t(cols) * 256);
      cpu::linear(x.data(), n, host_weight(w, 2 * inter, cols), nullptr, gate_up.data(), 2 * inter, scratch.data());
      cpu::swiglu(gate_up.data(), n, inter, ref.data());
      EXPECT_LT(rel_l2(download(y.get(), ref.size(), act), ref), tolerance(act)) << "n=" << n << " inter=" << inter;
    }
  }
}

TEST_P(DtypeTest, GemmMatchesCpu) {
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  for (const int n : {1, 9, 64, 200}) check_linear(GetParam(), n, 1024, 4096, n == 9, Linear::Cublas, handle);
  cublasDestroy(handle);
}

// Every token-count width (16/32/64/128), split-K (few row tiles, long K) and not (many tiles),
// ragged rows and K, bias, fp32 output; the workspace is reused across calls as in the runner.
TEST_P(DtypeTest, SkinnyGemmMatchesCpu) {
  DeviceBuffer workspace(skinny_gemm_workspace_bytes(sm_count()));
  skinny_gemm_clear_workspace(workspace.get(), sm_count(), kStream);
  for (const int n : {2, 8, 9, 16, 17, 33, 64, 65, 100, 128}) {
    check_linear(GetParam(), n, 1024, 4096, n % 3 == 0, Linear::Skinny, workspace.get());       // split-K
    check_linear(GetParam(), n, 4096 * 4 + 72, 512, n == 9, Linear::Skinny, workspace.get());  // no split, ragged rows
  }
  check_linear(GetParam(), 40, 300, 1000, true, Linear::Skinny, workspace.get());  // K not a multiple of 64
  check_linear(GetParam(), 7, 6144, 4096, false, Linear::Skinny, workspace.get());  // Llama-3-8B qkv
}

TEST_P(DtypeTest, SkinnyGemmSwigluMatchesCpu) {
  const DType act = GetParam();
  DeviceBuffer workspace(skinny_gemm_workspace_bytes(sm_count()));
  skinny_gemm_clear_workspace(workspace.get(), sm_count(), kStream);
  for (const auto& [inter, cols] : {std::pair{1000, 4096}, std::pair{14336, 512}, std::pair{96, 160}}) {
    for (const int n : {2, 5, 24, 64, 128}) {
      std::vector<float> w = random_values(size_t(2) * inter * cols, std::sqrt(3.0f / float(cols)));
      std::vector<float> x = random_values(size_t(n) * cols);
      DeviceBuffer w_d = upload(w, act), x_d = upload(x, act);
      DeviceBuffer y = poisoned(size_t(n) * inter * 2);
      skinny_gemm(w_d.get(), x_d.get(), nullptr, y.get(), false, act, n, 2 * inter, cols, true, workspace.get(),
                  sm_count(), kStream);
      std::vector<float> gate_up(size_t(n) * 2 * inter), ref(size_t(n) * inter), scratch(size_t(cols) * 256);
      cpu::linear(x.data(), n, host_weight(w, 2 * inter, cols), nullptr, gate_up.data(), 2 * inter, scratch.data());
      cpu::swiglu(gate_up.data(), n, inter, ref.data());
      EXPECT_LT(rel_l2(download(y.get(), ref.size(), act), ref), tolerance(act)) << "n=" << n << " inter=" << inter;
    }
  }
}

// Random tree: each node's parent comes before it; a row sees its ancestors and itself.
std::vector<uint64_t> random_tree_mask(int n) {
  const int words = mask_words(n);
  std::vector<uint64_t> mask(size_t(n) * words, 0);
  for (int i = 0; i < n; ++i) {
    if (i > 0) {
      const int parent = int(rng()() % uint32_t(i));
      for (int w = 0; w < words; ++w) mask[size_t(i) * words + w] = mask[size_t(parent) * words + w];
    }
    mask[size_t(i) * words + i / 64] |= uint64_t(1) << (i % 64);
  }
  return mask;
}

struct AttentionCase {
  int n, cache_len, heads, kv_heads, head_dim;
  bool tree;
};

void check_attention(DType act, const AttentionCase& k, int sm_count) {
  const int total = k.cache_len + k.n, rows = total + 64;
  const int q_dim = k.heads * k.head_dim, kv_dim = k.kv_heads * k.head_dim, stride = q_dim + 2 * kv_dim;
  std::vector<float> qkv = random_values(size_t(k.n) * stride, 2.0f);
  std::vector<float> k_cache = random_values(size_t(rows) * kv_dim, 2.0f), v_cache = random_values(size_t(rows) * kv_dim);
  DeviceBuffer qkv_d = upload(qkv, act), k_d = upload(k_cache, act), v_d = upload(v_cache, act);
  const std::vector<uint64_t> mask = k.tree ? random_tree_mask(k.n) : std::vector<uint64_t>{};
  const int32_t header[2] = {k.cache_len, k.tree ? 1 : 0};
  DeviceBuffer header_d(8), mask_d(std::max<size_t>(mask.size() * 8, 8));
  SPECQ_CUDA(cudaMemcpy(header_d.get(), header, 8, cudaMemcpyHostToDevice));
  if (!mask.empty()) SPECQ_CUDA(cudaMemcpy(mask_d.get(), mask.data(), mask.size() * 8, cudaMemcpyHostToDevice));
  const AttentionShape shape{k.n, k.heads, k.kv_heads, k.head_dim, rows};
  DeviceBuffer workspace(std::max<size_t>(attention_workspace_bytes(shape, sm_count), 8));
  DeviceBuffer out = poisoned(size_t(k.n) * q_dim * 2);
  const StepInputs step{nullptr, nullptr, header_d.get<int32_t>(), header_d.get<int32_t>() + 1,
                        mask_d.get<uint64_t>()};
  attention(qkv_d.get(), act, k_d.get(), v_d.get(), shape, step, out.get(), workspace.get(), sm_count, kStream);
  std::vector<float> ref(size_t(k.n) * q_dim), scores(size_t(256) * size_t(total));
  cpu::attention(qkv.data(), stride, k_cache.data(), v_cache.data(), k.cache_len, k.n, mask, k.heads, k.kv_heads,
                 k.head_dim, ref.data(), scores.data());
  EXPECT_LT(rel_l2(download(out.get(), ref.size(), act), ref), 1.5 * tolerance(act))
      << "n=" << k.n << " cache=" << k.cache_len << " heads=" << k.heads << "/" << k.kv_heads << " d=" << k.head_dim
      << " tree=" << k.tree;
}

TEST_P(DtypeTest, AttentionMatchesCpu) {
  int device = 0, sm_count = 0;
  SPECQ_CUDA(cudaGetDevice(&device));
  SPECQ_CUDA(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  const AttentionCase cases[] = {
      {1, 0, 32, 8, 128, false},    {1, 700, 32, 8, 128, false},  {1, 5000, 32, 8, 128, false},
      {3, 129, 32, 8, 128, false},  {64, 1024, 32, 8, 128, true}, {200, 0, 32, 8, 128, false},
      {256, 37, 32, 8, 128, true},  {100, 300, 14, 2, 64, true},  {17, 40, 6, 6, 48, false},
      {130, 10, 4, 2, 16, true},    {512, 512, 32, 8, 128, false}, {1, 300, 64, 8, 128, false},
      {2, 1000, 32, 8, 128, true},  {1, 77, 6, 6, 48, false},      {5, 20, 4, 2, 8, true},
      {1, 9, 4, 2, 8, false},       {8, 3000, 32, 8, 128, true},  {4, 7000, 32, 8, 128, true},
      {3, 2000, 14, 2, 64, false},  {128, 1024, 32, 8, 128, true}, {60, 33, 6, 6, 48, true},
  };
  for (const AttentionCase& k : cases) check_attention(GetParam(), k, sm_count);
}

// The EAGLE head's draft levels: n queries that are new rows q0 .. q0 + n - 1 after the committed
// ones, each seeing the committed rows and the earlier uncommitted rows its mask allows (masks of
// a stride wider than needed; more than 64 uncommitted rows), or causal without a mask.
struct OffsetCase {
  int n, committed, q0, heads, kv_heads, head_dim;
  bool masked;
};

void check_attention_offset(DType act, const OffsetCase& k, int sm_count) {
  const int total = k.committed + k.q0 + k.n, rows = total + 64, span = k.q0 + k.n;
  const int q_dim = k.heads * k.head_dim, kv_dim = k.kv_heads * k.head_dim, stride = q_dim + 2 * kv_dim;
  std::vector<float> qkv = random_values(size_t(k.n) * stride, 2.0f);
  std::vector<float> k_cache = random_values(size_t(rows) * kv_dim, 2.0f);
  std::vector<float> v_cache = random_values(size_t(rows) * kv_dim);
  DeviceBuffer qkv_d = upload(qkv, act), k_d = upload(k_cache, act), v_d = upload(v_cache, act);
  const int words = mask_words(span) + 1;
  std::vector<uint64_t> mask(size_t(k.n) * words, 0);
  for (int t = 0; t < k.n; ++t) {
    for (int j = 0; j < k.q0; ++j)
      if (rng()() % 3 == 0) mask[size_t(t) * words + j / 64] |= uint64_t(1) << (j % 64);
    const int self = k.q0 + t;
    mask[size_t(t) * words + self / 64] |= uint64_t(1) << (self % 64);
  }
  const int32_t header[3] = {k.committed, k.masked ? 1 : 0, k.q0};
  DeviceBuffer header_d(12), mask_d(mask.size() * 8);
  SPECQ_CUDA(cudaMemcpy(header_d.get(), header, 12, cudaMemcpyHostToDevice));
  SPECQ_CUDA(cudaMemcpy(mask_d.get(), mask.data(), mask.size() * 8, cudaMemcpyHostToDevice));
  const AttentionShape shape{k.n, k.heads, k.kv_heads, k.head_dim, rows};
  DeviceBuffer workspace(std::max<size_t>(attention_workspace_bytes(shape, sm_count), 8));
  DeviceBuffer out = poisoned(size_t(k.n) * q_dim * 2);
  const StepInputs step{nullptr,
                        nullptr,
                        header_d.get<int32_t>(),
                        header_d.get<int32_t>() + 1,
                        mask_d.get<uint64_t>(),
                        header_d.get<int32_t>() + 2,
                        k.masked ? words : 0};
  attention(qkv_d.get(), act, k_d.get(), v_d.get(), shape, step, out.get(), workspace.get(), sm_count, kStream);
  std::vector<float> ref(size_t(k.n) * q_dim), scores(size_t(256) * size_t(total));
  cpu::attention_rows(qkv.data(), stride, k_cache.data(), v_cache.data(), k.committed, total, k.n,
                      k.masked ? mask.data() : nullptr, words, k.heads, k.kv_heads, k.head_dim, ref.data(),
                      scores.data());
  EXPECT_LT(rel_l2(download(out.get(), ref.size(), act), ref), 1.5 * tolerance(act))
      << "n=" << k.n << " committed=" << k.committed << " q0=" << k.q0 << " heads=" << k.heads << "/" << k.kv_heads
      << " d=" << k.head_dim << " masked=" << k.masked;
}

TEST_P(DtypeTest, AttentionWithQueryOffsetMatchesCpuRows) {
  int device = 0, sm_count = 0;
  SPECQ_CUDA(cudaGetDevice(&device));
  SPECQ_CUDA(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  const OffsetCase cases[] = {
      {12, 24, 60, 4, 2, 16, true},   {16, 24, 64, 32, 8, 128, true}, {10, 100, 50, 32, 8, 128, true},
      {1, 30, 5, 32, 8, 128, true},   {4, 0, 70, 4, 2, 16, true},     {8, 40, 20, 32, 8, 128, false},
      {3, 2000, 130, 32, 8, 128, true}, {32, 7, 96, 32, 8, 128, true}, {2, 500, 0, 32, 8, 128, true},
  };
  for (const OffsetCase& k : cases) check_attention_offset(GetParam(), k, sm_count);
}

TEST_P(DtypeTest, SwigluMatchesCpu) {
  const DType act = GetParam();
  const int n = 3, inter = 14336;
  std::vector<float> gate_up = random_values(size_t(n) * 2 * inter, 4.0f);
  DeviceBuffer in = upload(gate_up, act);
  DeviceBuffer out = poisoned(size_t(n) * inter * 2);
  swiglu(in.get(), out.get(), act, n, inter, kStream);
  std::vector<float> ref(size_t(n) * inter);
  cpu::swiglu(gate_up.data(), n, inter, ref.data());
  EXPECT_LT(rel_l2(download(out.get(), ref.size(), act), ref), tolerance(act));
}

INSTANTIATE_TEST_SUITE_P(Cuda, DtypeTest, ::testing::Values(DType::F16, DType::BF16), dtype_test_name);

// The device sampler against its CPU reference at Llama-3's vocabulary (the same cut and the same
// Gumbel-max draw; a near-tie of float sums at a top-p cut may flip one row), and its draws against
// the exact distribution by chi-square.
TEST(CudaKernels, SampleRowsMatchesCpuReference) {
  const int rows = 48, vocab = 128256;
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(size_t(rows) * vocab);
  for (float& l : logits) l = normal(rng());
  DeviceBuffer logits_d = upload(logits, DType::F32);
  struct Case { float temperature; int top_k; float top_p; };
  for (const Case c : {Case{1.0f, 0, 1.0f}, Case{0.6f, 50, 1.0f}, Case{1.0f, 0, 0.9f}, Case{0.8f, 40, 0.95f}}) {
    const DrawParams params{c.temperature, c.top_k, c.top_p, 0, 77, 1000};
    DeviceBuffer params_d(sizeof(DrawParams)), out = poisoned(size_t(rows) * 4);
    SPECQ_CUDA(cudaMemcpy(params_d.get(), &params, sizeof(params), cudaMemcpyHostToDevice));
    sample_rows(logits_d.get<float>(), rows, vocab, params_d.get<DrawParams>(), out.get<int32_t>(), kStream);
    std::vector<int32_t> got(static_cast<size_t>(rows));
    SPECQ_CUDA(cudaMemcpy(got.data(), out.get(), size_t(rows) * 4, cudaMemcpyDeviceToHost));
    int same = 0;
    for (int r = 0; r < rows; ++r)
      same += got[size_t(r)] == cpu::sample_counter_based(logits.data() + size_t(r) * vocab, vocab, params,
                                                          params.draw + uint64_t(r));
    EXPECT_GE(same, rows - 1) << "T=" << c.temperature << " k=" << c.top_k << " p=" << c.top_p;
  }
}

TEST(CudaKernels, SampleRowsFollowsTheDistribution) {
  const int vocab = 64, rows = 1 << 16;
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> row(static_cast<size_t>(vocab));
  for (float& l : row) l = normal(rng());
  std::vector<float> logits;
  for (int r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());
  DeviceBuffer logits_d = upload(logits, DType::F32);
  SamplingOptions options;
  options.temperature = 0.9f;
  options.top_k = 20;
  options.top_p = 0.9f;
  std::vector<float> probs(static_cast<size_t>(vocab));
  Sampler(options, vocab).distribution(row, probs);
  const DrawParams params{options.temperature, options.top_k, options.top_p, 0, 3, 0};
  DeviceBuffer params_d(sizeof(DrawParams)), out(size_t(rows) * 4);
  SPECQ_CUDA(cudaMemcpy(params_d.get(), &params, sizeof(params), cudaMemcpyHostToDevice));
  sample_rows(logits_d.get<float>(), rows, vocab, params_d.get<DrawParams>(), out.get<int32_t>(), kStream);
  std::vector<int32_t> got(static_cast<size_t>(rows));
  SPECQ_CUDA(cudaMemcpy(got.data(), out.get(), size_t(rows) * 4, cudaMemcpyDeviceToHost));
  std::vector<int64_t> counts(size_t(vocab), 0);
  for (const int32_t t : got) ++counts[size_t(t)];
  const specq::test::ChiSquare chi = specq::test::chi_square(counts, std::vector<double>(probs.begin(), probs.end()));
  EXPECT_GT(chi.p_value, 1e-4) << "chi2 " << chi.statistic << " dof " << chi.dof;
}

TEST(CudaKernels, ArgmaxTakesSmallestTiedIndex) {
  const int rows = 3, vocab = 128256;
  std::vector<float> logits = random_values(size_t(rows) * vocab);
  logits[size_t(0) * vocab + 90000] = 5.0f;
  logits[size_t(0) * vocab + 70000] = 5.0f;  // tie: 70000 wins
  logits[size_t(1) * vocab + 3] = 7.0f;
  logits[size_t(2) * vocab + vocab - 1] = 9.0f;
  DeviceBuffer in = upload(logits, DType::F32);
  DeviceBuffer out = poisoned(rows * 4);
  argmax_rows(in.get<float>(), rows, vocab, out.get<int32_t>(), kStream);
  std::vector<int32_t> got(rows);
  SPECQ_CUDA(cudaMemcpy(got.data(), out.get(), rows * 4, cudaMemcpyDeviceToHost));
  for (int r = 0; r < rows; ++r) EXPECT_EQ(got[size_t(r)], cpu::argmax(logits.data() + size_t(r) * vocab, vocab));
  EXPECT_EQ(got[0], 70000);
}

TEST(CudaKernels, CompactKvMovesRowsInOrder) {
  const int layers = 3, rows = 60, kv_dim = 64;
  std::vector<float> k = random_values(size_t(layers) * rows * kv_dim), v = random_values(size_t(layers) * rows * kv_dim);
  DeviceBuffer k_d = upload(k, DType::F16), v_d = upload(v, DType::F16);
  const std::vector<int32_t> src = {9, 10, 12, 13, 20, 21, 40};  // sources overlap later destinations
  const int dst_start = 8;
  DeviceBuffer src_d(src.size() * 4);
  SPECQ_CUDA(cudaMemcpy(src_d.get(), src.data(), src.size() * 4, cudaMemcpyHostToDevice));
  compact_kv(k_d.get(), v_d.get(), DType::F16, layers, int64_t(rows) * kv_dim, kv_dim, src_d.get<int32_t>(),
             int(src.size()), dst_start, kStream);
  for (std::vector<float>* cache : {&k, &v})
    for (int l = 0; l < layers; ++l)
      for (size_t i = 0; i < src.size(); ++i)
        std::copy_n(cache->begin() + (size_t(l) * rows + size_t(src[i])) * kv_dim, kv_dim,
                    cache->begin() + (size_t(l) * rows + dst_start + i) * kv_dim);
  EXPECT_EQ(rel_l2(download(k_d.get(), k.size(), DType::F16), k), 0.0);
  EXPECT_EQ(rel_l2(download(v_d.get(), v.size(), DType::F16), v), 0.0);
}

}  // namespace
}  // namespace specq::cuda::test
