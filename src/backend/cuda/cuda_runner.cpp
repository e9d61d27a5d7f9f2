// The CUDA backend: the shared Llama forward (model/llama_forward.h) on fp16/bf16 activations.
// Memory is planned once at construction (weights with q|k|v and gate|up fused, KV cache,
// activations for the largest forward, workspaces) in one arena; nothing is allocated per step.
// Each (token count, logits rows) shape is captured once as a CUDA graph whose kernels read the
// step's ids, positions, cache_len and mask from fixed device buffers, so a step is one small
// host-to-device copy, one graph launch and the copy of its results.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_runner.h"
#include "backend/cuda/gemm_w4a16.h"
#include "backend/cuda/kernels.h"
#include "core/error.h"
#include "io/synthetic.h"
#include "model/llama_forward.h"
#include "model/runner.h"
#include "quant/w4a16_tiles.h"

namespace specq {
namespace {

using cuda::DeviceBuffer;

constexpr size_t kAlign = 256;
constexpr size_t kCublasWorkspace = size_t(32) << 20;
constexpr size_t kStagingBytes = size_t(64) << 20;

using cuda::Arena;

struct CudaAct {
  void* ptr = nullptr;
  int64_t dim = 0;
  size_t elem = 2;  // bytes per element (4 for the fp32 residual stream)
  void* row(int t) const { return static_cast<uint8_t*>(ptr) + size_t(t) * size_t(dim) * elem; }
};

struct CudaLinear {
  void* w = nullptr;  // dense [rows, cols] of the activation dtype; null when w4 is set
  const float* bias = nullptr;
  int rows = 0, cols = 0;
  const char* name = "";  // op family in op_profile
  int family = 0;         // index of its kernel table (LinearFamily)
  bool w4 = false;        // GptqInt4 weights as W4A16 tiles (gate|up: SwiGLU-interleaved)
  cuda::W4A16Weight tiles = {};
};

// Arena bytes of the W4A16 tiles of GptqInt4 parts stacked (W4A16Tiles, without packing them).
struct W4Sizes {
  size_t tiles = 0, scales = 0, perm = 0;
};
W4Sizes w4_sizes(std::initializer_list<const Weight*> parts, bool swiglu) {
  int64_t rows = 0;
  for (const Weight* w : parts) rows += w->rows();
  const QuantizedWeight& q = *(*parts.begin())->quant;
  const int64_t k = (*parts.begin())->cols(), groups = k / q.group_size;
  const int64_t row_tiles = swiglu ? (rows / 2 + 7) / 8 : (rows + 15) / 16;
  return {size_t(row_tiles) * size_t((k + 63) / 64) * 512, size_t(row_tiles * groups * 16 * (q.sym ? 2 : 4)),
          q.act_order ? size_t(k) * 4 : 0};
}

// Formats of fused parts must agree: one kernel runs the fused matrix.
bool all_w4(std::initializer_list<const Weight*> parts, const std::string& what) {
  const bool first = (*parts.begin())->format == WeightFormat::GptqInt4;
  for (const Weight* w : parts) {
    SPECQ_CHECK(w->format == WeightFormat::Dense || w->format == WeightFormat::GptqInt4,
                "{} has {} weights, which the CUDA backend does not run yet; use --device cpu", what,
                weight_format_name(w->format));
    SPECQ_CHECK((w->format == WeightFormat::GptqInt4) == first,
                "{}: fused parts mix dense and 4-bit weights, which the CUDA backend cannot fuse", what);
  }
  return first;
}

// Linear layers with their own measured kernel table: their shapes differ enough (split-K for the
// narrow ones, fp32 output for the LM head) that one layer's winner is not another's.
enum LinearFamily { kQkvFamily, kWoFamily, kGateUpFamily, kDownFamily, kLmHeadFamily, kFamilies };

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error {} in {}", cublasGetStatusName(status), what);
}

class CudaRunner final : public Runner, public cuda::DeviceModel {
 public:
  CudaRunner(Model& model, const RunnerOptions& options) : model_(model), config_(model.config) {
    validate_weights(model_);
    const ModelConfig& c = config_;
    act_ = options.activation_dtype;
    SPECQ_CHECK(act_ == DType::F16 || act_ == DType::BF16, "CUDA activations must be f16 or bf16 (got {})",
                dtype_name(act_));
    SPECQ_CHECK(c.head_dim % 8 == 0 && c.head_dim <= 128,
                "the CUDA backend needs head_dim a multiple of 8 up to 128 (got {})", c.head_dim);
    SPECQ_CHECK(c.hidden_size % 8 == 0, "the CUDA backend needs hidden_size a multiple of 8 (got {})", c.hidden_size);
    SPECQ_CHECK(!model_.weights.lm_head.quantized(), "'{}' has a {} lm_head, which the CUDA backend does not run yet",
                model_.source, weight_format_name(model_.weights.lm_head.format));
    max_context_ = options.max_context > 0 ? options.max_context : std::min(c.max_position_embeddings, 4096);
    max_tokens_ = options.max_tokens_per_forward > 0 ? options.max_tokens_per_forward : 512;
    max_tokens_ = std::min(max_tokens_, max_context_);
    esize_ = dtype_size(act_);

    int device = 0;
    SPECQ_CUDA(cudaGetDevice(&device));
    SPECQ_CUDA(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device));

    // ---- plan every byte before allocating any ----
    Arena plan;
    const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
    const Weight& emb = model_.weights.embed;
    const Weight& head = model_.weights.lm_head;
    lm_head_tied_ = (head.synthetic && emb.synthetic && head.seed == emb.seed) ||
                    (head.data != nullptr && head.data == emb.data);
    // A linear's arena slots: the dense matrix, or (4-bit) its tiles, scales and act-order permutation.
    struct LinearPlan {
      bool w4 = false;
      size_t at = 0, scales = 0, perm = 0;
    };
    auto plan_linear = [&](std::initializer_list<const Weight*> parts, bool swiglu, const std::string& what) {
      LinearPlan lp;
      lp.w4 = all_w4(parts, "'" + model_.source + "' " + what);
      if (!lp.w4) {
        size_t bytes = 0;
        for (const Weight* w : parts) bytes += size_t(w->numel()) * esize_;
        lp.at = plan.take(bytes);
        return lp;
      }
      const W4Sizes sz = w4_sizes(parts, swiglu);
      lp.at = plan.take(sz.tiles);
      lp.scales = plan.take(sz.scales);
      lp.perm = sz.perm > 0 ? plan.take(sz.perm) : 0;
      has_w4_ = true;
      return lp;
    };
    struct LayerPlan {
      size_t attn_norm, ffn_norm, qkv_bias;
      LinearPlan qkv, wo, gate_up, down;
    };
    const size_t embed_at = plan.take(size_t(c.vocab_size) * h * esize_);
    const size_t head_at = lm_head_tied_ ? embed_at : plan.take(size_t(c.vocab_size) * h * esize_);
    std::vector<LayerPlan> lp(size_t(c.num_layers));
    for (int l = 0; l < c.num_layers; ++l) {
      LayerPlan& p = lp[size_t(l)];
      const LayerWeights& w = model_.weights.layers[size_t(l)];
      const std::string layer = fmt::format("layer {}", l);
      p.attn_norm = plan.take(h * 4);
      p.ffn_norm = plan.take(h * 4);
      p.qkv = plan_linear({&w.wq, &w.wk, &w.wv}, false, layer + " q/k/v");
      p.qkv_bias = c.attention_bias ? plan.take(size_t(q + 2 * kv) * 4) : 0;
      p.wo = plan_linear({&w.wo}, false, layer + " o_proj");
      p.gate_up = plan_linear({&w.w_gate, &w.w_up}, true, layer + " gate/up");
      p.down = plan_linear({&w.w_down}, false, layer + " down_proj");
    }
    const size_t final_norm_at = plan.take(h * 4);
    weight_bytes_ = plan.used();
    layer_cache_bytes_ = size_t(max_context_) * kv * esize_;
    const size_t k_cache_at = plan.take(layer_cache_bytes_ * size_t(c.num_layers));
    const size_t v_cache_at = plan.take(layer_cache_bytes_ * size_t(c.num_layers));
    const size_t weights_and_kv = plan.used();

    const size_t T = size_t(max_tokens_);
    const size_t x_at = plan.take(T * h * 4);
    const size_t xn_at = plan.take(T * h * esize_);
    const size_t qkv_at = plan.take(T * size_t(q + 2 * kv) * esize_);
    const size_t attn_at = plan.take(T * q * esize_);
    const size_t delta_at = plan.take(T * h * esize_);
    const size_t gate_up_at = plan.take(T * 2 * inter * esize_);
    const size_t ffn_at = plan.take(T * inter * esize_);
    const size_t logits_at = plan.take(T * size_t(c.vocab_size) * 4);
    const size_t hidden_at = plan.take(T * h * 4);
    const size_t argmax_at = plan.take(T * 4);
    const size_t sampled_at = plan.take(T * 4);
    size_t attn_ws = 0;
    for (int n = 1; n <= max_tokens_; ++n)
      attn_ws = std::max(attn_ws, cuda::attention_workspace_bytes(shape(n), sm_count_));
    const size_t attn_ws_at = plan.take(attn_ws);
    const size_t cublas_ws_at = plan.take(kCublasWorkspace);
    const size_t skinny_ws_at = plan.take(cuda::skinny_gemm_workspace_bytes(sm_count_));
    const size_t w4_ws_at =
        has_w4_ ? plan.take(cuda::w4a16_workspace_bytes(max_tokens_, int(std::max({h, q, inter})), sm_count_)) : 0;
    const size_t staging_at = plan.take(kStagingBytes);
    input_bytes_ = input_layout(max_tokens_).end;
    const size_t inputs_at = plan.take(input_bytes_);
    const size_t src_rows_at = plan.take(T * 4);
    const size_t inv_freq_at = plan.take(size_t(c.head_dim / 2) * 4);

    size_t free_bytes = 0, total_bytes = 0;
    SPECQ_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (plan.used() > free_bytes) {
      fail("{} in {} needs {:.1f} GB of weights + KV ({:.1f} GB with activations and workspaces); this GPU has "
           "{:.1f} GB free",
           model_.source, dtype_name(act_), double(weights_and_kv) / 1e9, double(plan.used()) / 1e9,
           double(free_bytes) / 1e9);
    }

    // ---- allocate and fill ----
    arena_.allocate(plan.used());
    auto at = [&](size_t offset) { return arena_.get<uint8_t>() + offset; };
    SPECQ_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    staging_ = at(staging_at);

    embed_ = at(embed_at);
    upload(emb, embed_, act_);
    lm_head_ = {at(head_at), nullptr, c.vocab_size, int(h), "lm_head", kLmHeadFamily, false, {}};
    if (!lm_head_tied_) upload(head, lm_head_.w, act_);
    layers_.resize(size_t(c.num_layers));
    for (int l = 0; l < c.num_layers; ++l) {
      const LayerWeights& w = model_.weights.layers[size_t(l)];
      const LayerPlan& p = lp[size_t(l)];
      Layer& L = layers_[size_t(l)];
      L.attn_norm = reinterpret_cast<float*>(at(p.attn_norm));
      L.ffn_norm = reinterpret_cast<float*>(at(p.ffn_norm));
      upload(w.attn_norm, L.attn_norm, DType::F32);
      upload(w.ffn_norm, L.ffn_norm, DType::F32);
      const std::string layer = fmt::format("model.layers.{}.", l);
      L.qkv = {nullptr, nullptr, int(q + 2 * kv), int(h), "qkv", kQkvFamily, false, {}};
      upload_linear(L.qkv, p.qkv, {&w.wq, &w.wk, &w.wv}, false, layer + "self_attn.qkv");
      if (c.attention_bias) {
        L.qkv.bias = reinterpret_cast<float*>(at(p.qkv_bias));
        upload_fused({&w.bq, &w.bk, &w.bv}, at(p.qkv_bias), DType::F32);
      }
      L.wo = {nullptr, nullptr, int(h), int(q), "wo", kWoFamily, false, {}};
      upload_linear(L.wo, p.wo, {&w.wo}, false, layer + "self_attn.o_proj");
      L.gate_up = {nullptr, nullptr, int(2 * inter), int(h), "gate_up", kGateUpFamily, false, {}};
      upload_linear(L.gate_up, p.gate_up, {&w.w_gate, &w.w_up}, true, layer + "mlp.gate_up");
      L.down = {nullptr, nullptr, int(h), int(inter), "down", kDownFamily, false, {}};
      upload_linear(L.down, p.down, {&w.w_down}, false, layer + "mlp.down_proj");
      L.k_cache = at(k_cache_at) + size_t(l) * layer_cache_bytes_;
      L.v_cache = at(v_cache_at) + size_t(l) * layer_cache_bytes_;
    }
    final_norm_ = reinterpret_cast<float*>(at(final_norm_at));
    upload(model_.weights.final_norm, final_norm_, DType::F32);
    k_cache_base_ = at(k_cache_at);
    v_cache_base_ = at(v_cache_at);
    // Cache rows never written still enter attention tiles (times zero): keep them finite.
    SPECQ_CUDA(cudaMemsetAsync(k_cache_base_, 0, layer_cache_bytes_ * size_t(c.num_layers) * 2, stream_));

    x_ = {at(x_at), h, 4};
    xn_ = {at(xn_at), h, esize_};
    qkv_ = {at(qkv_at), q + 2 * kv, esize_};
    attn_ = {at(attn_at), q, esize_};
    delta_ = {at(delta_at), h, esize_};
    gate_up_ = {at(gate_up_at), 2 * inter, esize_};
    ffn_ = {at(ffn_at), inter, esize_};
    logits_ = reinterpret_cast<float*>(at(logits_at));
    hidden_ = reinterpret_cast<float*>(at(hidden_at));
    argmax_ = reinterpret_cast<int32_t*>(at(argmax_at));
    sampled_ = reinterpret_cast<int32_t*>(at(sampled_at));
    attn_workspace_ = attn_ws > 0 ? at(attn_ws_at) : nullptr;
    skinny_workspace_ = at(skinny_ws_at);
    cuda::skinny_gemm_clear_workspace(skinny_workspace_, sm_count_, stream_);
    if (has_w4_) {
      w4_workspace_ = at(w4_ws_at);
      cuda::w4a16_clear_workspace(w4_workspace_, sm_count_, stream_);
    }
    inputs_ = at(inputs_at);
    src_rows_ = reinterpret_cast<int32_t*>(at(src_rows_at));
    const std::vector<float> inv_freq = rope_inv_freq(c);
    inv_freq_ = reinterpret_cast<float*>(at(inv_freq_at));
    SPECQ_CUDA(cudaMemcpyAsync(inv_freq_, inv_freq.data(), inv_freq.size() * 4, cudaMemcpyHostToDevice, stream_));

    SPECQ_CUDA(cudaMallocHost(&host_inputs_, input_bytes_));
    SPECQ_CUDA(cudaMallocHost(&host_argmax_, T * 4));
    SPECQ_CUDA(cudaMallocHost(&host_sampled_, T * 4));
    SPECQ_CUDA(cudaMallocHost(&host_logits_, T * size_t(c.vocab_size) * 4));
    SPECQ_CUDA(cudaMallocHost(&host_hidden_, T * size_t(h) * 4));

    check_cublas(cublasCreate(&cublas_), "cublasCreate");
    check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
    check_cublas(cublasSetWorkspace(cublas_, at(cublas_ws_at), kCublasWorkspace), "cublasSetWorkspace");
    check_cublas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    choose_linear_kernels();
    SPECQ_CUDA(cudaStreamSynchronize(stream_));
  }

  ~CudaRunner() override {
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    for (cudaEvent_t e : profile_events_) cudaEventDestroy(e);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (host_inputs_ != nullptr) cudaFreeHost(host_inputs_);
    if (host_argmax_ != nullptr) cudaFreeHost(host_argmax_);
    if (host_sampled_ != nullptr) cudaFreeHost(host_sampled_);
    if (host_logits_ != nullptr) cudaFreeHost(host_logits_);
    if (host_hidden_ != nullptr) cudaFreeHost(host_hidden_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  const ModelConfig& config() const override { return config_; }
  Device device() const override { return Device::Cuda; }
  int max_context() const override { return max_context_; }
  int max_tokens_per_forward() const override { return max_tokens_; }
  size_t weight_bytes() const override { return weight_bytes_; }

  // ---- cuda::DeviceModel: what the CUDA EAGLE head borrows ----
  DType activation_dtype() const override { return act_; }
  cudaStream_t stream() const override { return stream_; }
  int sm_count() const override { return sm_count_; }
  const void* embedding() const override { return embed_; }
  const void* lm_head() const override { return lm_head_.w; }

  void linear(cuda::LinearFamily family, const void* w, const float* bias, const void* x, void* y, bool y_fp32, int n,
              int rows, int cols) override {
    const CudaLinear lin = borrowed_linear(family, w, bias, rows, cols);
    run_linear(borrowed_kernel(lin, n), lin, x, y, y_fp32, n, false);
  }

  void gate_up_swiglu(const void* w, const void* x, void* gate_up, void* ffn, int n, int inter, int cols) override {
    const CudaLinear lin = borrowed_linear(cuda::LinearFamily::GateUp, w, nullptr, 2 * inter, cols);
    const LinearKernel kernel = borrowed_kernel(lin, n);
    if (inter % 2 == 0 && kernel != LinearKernel::Cublas) {  // fuses_swiglu() for this shape
      run_linear(kernel, lin, x, ffn, false, n, true);
      return;
    }
    run_linear(kernel, lin, x, gate_up, false, n, false);
    cuda::swiglu(gate_up, ffn, act_, n, inter, stream_);
  }

  ForwardResult forward(const ForwardRequest& request) override {
    validate_request(*this, request);
    const int n = int(request.tokens.size());
    stage_inputs(request);
    const int rows = logits_rows(request, n);
    const int key = ((n * 3 + int(request.logits_rows)) * 3 + int(request.hidden_rows)) * 2 +
                    (request.device_draw != nullptr ? 1 : 0);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      // First forward of this shape: run it eagerly (loads modules, lets cuBLAS pick its kernels),
      // then capture the same work. Replaying it rewrites the same cache rows with the same values.
      run_forward(request, n);
      SPECQ_CUDA(cudaStreamSynchronize(stream_));
      cudaGraph_t graph = nullptr;
      SPECQ_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
      run_forward(request, n);
      SPECQ_CUDA(cudaStreamEndCapture(stream_, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      SPECQ_CUDA(made);
      it = graphs_.emplace(key, exec).first;
    }
    SPECQ_CUDA(cudaGraphLaunch(it->second, stream_));
    return finish(request, rows);
  }

  // The forward with an event pair around each op, captured as one graph and replayed, so the
  // times are the device's (an eager run would time the host's launches instead).
  std::vector<std::pair<std::string, double>> op_profile(const ForwardRequest& request) override {
    validate_request(*this, request);
    const int n = int(request.tokens.size());
    forward(request);  // warm: modules loaded, cuBLAS kernels chosen
    stage_inputs(request);
    const size_t events_needed = size_t(config_.num_layers) * 20 + 16;
    while (profile_events_.size() < events_needed) {
      cudaEvent_t e = nullptr;
      SPECQ_CUDA(cudaEventCreate(&e));
      profile_events_.push_back(e);
    }
    profiling_ = true;
    profile_marks_.clear();
    cudaGraph_t graph = nullptr;
    SPECQ_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    try {
      run_forward(request, n);
    } catch (...) {
      profiling_ = false;
      cudaStreamEndCapture(stream_, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    profiling_ = false;
    SPECQ_CUDA(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    SPECQ_CUDA(made);
    const cudaError_t launched = cudaGraphLaunch(exec, stream_);
    const cudaError_t synced = cudaStreamSynchronize(stream_);
    cudaGraphExecDestroy(exec);
    SPECQ_CUDA(launched);
    SPECQ_CUDA(synced);
    std::vector<std::pair<std::string, double>> totals;
    for (const Mark& mark : profile_marks_) {
      float ms = 0.0f;
      SPECQ_CUDA(cudaEventElapsedTime(&ms, profile_events_[mark.start], profile_events_[mark.start + 1]));
      auto found = std::find_if(totals.begin(), totals.end(), [&](const auto& e) { return e.first == mark.op; });
      if (found == totals.end()) totals.emplace_back(mark.op, double(ms));
      else found->second += double(ms);
    }
    return totals;
  }

  void compact_kv(std::span<const int32_t> src_rows, int dst_start) override {
    const int count = int(src_rows.size());
    SPECQ_CHECK(count <= max_tokens_, "compact_kv: {} rows exceed the planned maximum of {}", count, max_tokens_);
    for (int i = 0; i < count; ++i) {
      const int64_t src = src_rows[size_t(i)], dst = dst_start + int64_t(i);
      SPECQ_CHECK(src >= dst && src < max_context_, "compact_kv: bad source row {} for destination {}", src, dst);
      SPECQ_CHECK(i == 0 || src_rows[size_t(i)] > src_rows[size_t(i - 1)], "compact_kv: source rows must ascend");
    }
    if (count == 0) return;
    std::memcpy(host_inputs_, src_rows.data(), size_t(count) * 4);
    SPECQ_CUDA(cudaMemcpyAsync(src_rows_, host_inputs_, size_t(count) * 4, cudaMemcpyHostToDevice, stream_));
    cuda::compact_kv(k_cache_base_, v_cache_base_, act_, config_.num_layers,
                     int64_t(layer_cache_bytes_ / esize_), config_.kv_dim(), src_rows_, count, dst_start, stream_);
    SPECQ_CUDA(cudaStreamSynchronize(stream_));
  }

  double measure_copy_bandwidth() override {
    size_t free_bytes = 0, total_bytes = 0;
    SPECQ_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
    const size_t bytes = std::min(size_t(512) << 20, free_bytes / 4) / kAlign * kAlign;
    DeviceBuffer a(bytes), b(bytes);
    SPECQ_CUDA(cudaMemsetAsync(a.get(), 1, bytes, stream_));
    cudaEvent_t start = nullptr, stop = nullptr;
    SPECQ_CUDA(cudaEventCreate(&start));
    SPECQ_CUDA(cudaEventCreate(&stop));
    float best_ms = 1e30f;
    for (int rep = 0; rep < 12; ++rep) {
      SPECQ_CUDA(cudaEventRecord(start, stream_));
      SPECQ_CUDA(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream_));
      SPECQ_CUDA(cudaEventRecord(stop, stream_));
      SPECQ_CUDA(cudaEventSynchronize(stop));
      float ms = 0.0f;
      SPECQ_CUDA(cudaEventElapsedTime(&ms, start, stop));
      if (rep >= 2) best_ms = std::min(best_ms, ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 2.0 * double(bytes) / (double(best_ms) * 1e-3);
  }

  // ---- backend interface of llama_forward ----
  using Act = CudaAct;
  CudaAct& act_x() { return x_; }
  CudaAct& act_xn() { return xn_; }
  CudaAct& act_qkv() { return qkv_; }
  CudaAct& act_attn() { return attn_; }
  CudaAct& act_delta() { return delta_; }
  CudaAct& act_gate_up() { return gate_up_; }
  CudaAct& act_ffn() { return ffn_; }
  const float* norm(int l, NormSlot slot) const {
    return slot == NormSlot::Attention ? layers_[size_t(l)].attn_norm : layers_[size_t(l)].ffn_norm;
  }
  const float* final_norm() const { return final_norm_; }
  const CudaLinear& qkv(int l) const { return layers_[size_t(l)].qkv; }
  const CudaLinear& wo(int l) const { return layers_[size_t(l)].wo; }
  const CudaLinear& gate_up(int l) const { return layers_[size_t(l)].gate_up; }
  const CudaLinear& down(int l) const { return layers_[size_t(l)].down; }

  void embed(CudaAct& out, int n) {
    Profile p(*this, "embed");
    cuda::embed(embed_, act_, step().tokens, n, config_.hidden_size, static_cast<float*>(out.ptr), stream_);
  }

  void add_rmsnorm(CudaAct& x, const CudaAct* delta, const float* w, CudaAct& out, int n) {
    Profile p(*this, "add_rmsnorm");
    cuda::add_rmsnorm(static_cast<float*>(x.ptr), delta != nullptr ? delta->ptr : nullptr, w, config_.rms_norm_eps,
                      out.ptr, act_, n, int(x.dim), stream_);
  }

  void linear(const CudaLinear& lin, const CudaAct& in, CudaAct& out, int n) {
    Profile p(*this, lin.name);
    const LinearKernel kernel = linear_kernel(lin, n);
    if (&out == &gate_up_ && fuses_swiglu(kernel, lin)) {
      // These kernels apply SwiGLU in their epilogue and write the FFN input directly.
      run_linear(kernel, lin, in.ptr, ffn_.ptr, false, n, true);
      swiglu_fused_ = true;
      return;
    }
    run_linear(kernel, lin, in.ptr, out.ptr, false, n, false);
  }

  void rope_store_kv(int l, CudaAct& qkv_act, int n) {
    Profile p(*this, "rope_kv");
    const Layer& L = layers_[size_t(l)];
    cuda::rope_store_kv(qkv_act.ptr, act_, n, config_.num_heads, config_.num_kv_heads, config_.head_dim, step(),
                        inv_freq_, L.k_cache, L.v_cache, stream_);
  }

  void attention(int l, const CudaAct& qkv_act, CudaAct& out, int n) {
    Profile p(*this, "attention");
    const Layer& L = layers_[size_t(l)];
    cuda::attention(qkv_act.ptr, act_, L.k_cache, L.v_cache, shape(n), step(), out.ptr, attn_workspace_, sm_count_,
                    stream_);
  }

  void swiglu(const CudaAct& gate_up_act, CudaAct& out, int n) {
    if (std::exchange(swiglu_fused_, false)) return;
    Profile p(*this, "swiglu");
    cuda::swiglu(gate_up_act.ptr, out.ptr, act_, n, config_.intermediate_size, stream_);
  }

  void lm_head(const CudaAct& xn, int n) {
    Profile p(*this, "lm_head");
    // Final hidden states (after the norm) for drafters that read them, as fp32.
    if (const int hidden_rows = rows_of(request_->hidden_rows, n); hidden_rows > 0)
      cuda::convert(xn.row(n - hidden_rows), act_, hidden_, DType::F32, int64_t(hidden_rows) * xn.dim, stream_);
    const int rows = logits_rows(*request_, n);
    if (rows == 0) return;
    run_linear(linear_kernel(lm_head_, rows), lm_head_, xn.row(n - rows), logits_, true, rows, false);
    cuda::argmax_rows(logits_, rows, config_.vocab_size, argmax_, stream_);
    if (request_->device_draw != nullptr)
      cuda::sample_rows(logits_, rows, config_.vocab_size, step_draw(), sampled_, stream_);
  }

 private:
  struct Layer {
    float* attn_norm = nullptr;
    float* ffn_norm = nullptr;
    CudaLinear qkv, wo, gate_up, down;
    void* k_cache = nullptr;
    void* v_cache = nullptr;
  };

  // Device input block: cache_len, has_mask, the sampling parameters, tokens[T], positions[T],
  // mask[T][mask_words(T)].
  struct InputLayout {
    size_t draw, tokens, positions, mask, end;
  };
  static InputLayout input_layout(int max_tokens) {
    InputLayout l{};
    l.draw = 8;
    l.tokens = l.draw + sizeof(DrawParams);
    l.positions = l.tokens + size_t(max_tokens) * 4;
    l.mask = (l.positions + size_t(max_tokens) * 4 + 7) / 8 * 8;
    l.end = l.mask + size_t(max_tokens) * size_t(mask_words(max_tokens)) * 8;
    return l;
  }

  // Event pairs around each op while op_profile runs; free otherwise.
  struct Mark {
    const char* op;
    size_t start;
  };
  class Profile {
   public:
    Profile(CudaRunner& r, const char* op) : runner_(r) {
      if (!runner_.profiling_) return;
      const size_t start = runner_.profile_marks_.size() * 2;
      SPECQ_CHECK(start + 2 <= runner_.profile_events_.size(), "op_profile: more ops than planned events");
      runner_.profile_marks_.push_back({op, start});
      // External: a real timing record inside the captured graph, not a capture-internal dependency.
      SPECQ_CUDA(cudaEventRecordWithFlags(runner_.profile_events_[start], runner_.stream_, cudaEventRecordExternal));
      stop_ = runner_.profile_events_[start + 1];
    }
    ~Profile() {
      if (stop_ != nullptr) cudaEventRecordWithFlags(stop_, runner_.stream_, cudaEventRecordExternal);
    }
    Profile(const Profile&) = delete;
    Profile& operator=(const Profile&) = delete;

   private:
    CudaRunner& runner_;
    cudaEvent_t stop_ = nullptr;
  };

  cuda::AttentionShape shape(int n) const {
    return {n, config_.num_heads, config_.num_kv_heads, config_.head_dim, max_context_};
  }

  cuda::StepInputs step() const {
    const InputLayout l = input_layout(max_tokens_);
    uint8_t* base = inputs_;
    return {reinterpret_cast<const int32_t*>(base + l.tokens), reinterpret_cast<const int32_t*>(base + l.positions),
            reinterpret_cast<const int32_t*>(base), reinterpret_cast<const int32_t*>(base + 4),
            reinterpret_cast<const uint64_t*>(base + l.mask)};
  }

  const DrawParams* step_draw() const {
    return reinterpret_cast<const DrawParams*>(inputs_ + input_layout(max_tokens_).draw);
  }

  static int rows_of(ForwardRequest::Rows rows, int n) {
    using Rows = ForwardRequest::Rows;
    return rows == Rows::None ? 0 : rows == Rows::Last ? 1 : n;
  }
  static int logits_rows(const ForwardRequest& r, int n) { return rows_of(r.logits_rows, n); }

  void stage_inputs(const ForwardRequest& r) {
    const int n = int(r.tokens.size());
    const InputLayout l = input_layout(max_tokens_);
    auto* base = static_cast<uint8_t*>(host_inputs_);
    const int32_t header[2] = {r.cache_len, r.tree_mask.empty() ? 0 : 1};
    std::memcpy(base, header, sizeof(header));
    const DrawParams no_draw{};
    std::memcpy(base + l.draw, r.device_draw != nullptr ? r.device_draw : &no_draw, sizeof(DrawParams));
    std::memcpy(base + l.tokens, r.tokens.data(), size_t(n) * 4);
    std::memcpy(base + l.positions, r.positions.data(), size_t(n) * 4);
    size_t end = l.positions + size_t(n) * 4;
    if (!r.tree_mask.empty()) {
      std::memcpy(base + l.mask, r.tree_mask.data(), r.tree_mask.size() * 8);
      end = l.mask + r.tree_mask.size() * 8;
    }
    SPECQ_CUDA(cudaMemcpyAsync(inputs_, host_inputs_, end, cudaMemcpyHostToDevice, stream_));
  }

  void run_forward(const ForwardRequest& request, int n) {
    request_ = &request;
    llama_forward(*this, config_.num_layers, n);
    request_ = nullptr;
  }

  ForwardResult finish(const ForwardRequest& request, int rows) {
    const size_t vocab = size_t(config_.vocab_size);
    ForwardResult result;
    if (rows > 0) {
      SPECQ_CUDA(cudaMemcpyAsync(host_argmax_, argmax_, size_t(rows) * 4, cudaMemcpyDeviceToHost, stream_));
      if (request.device_draw != nullptr)
        SPECQ_CUDA(cudaMemcpyAsync(host_sampled_, sampled_, size_t(rows) * 4, cudaMemcpyDeviceToHost, stream_));
      if (request.logits_to_host)
        SPECQ_CUDA(cudaMemcpyAsync(host_logits_, logits_, size_t(rows) * vocab * 4, cudaMemcpyDeviceToHost, stream_));
    }
    const int hidden_rows = rows_of(request.hidden_rows, int(request.tokens.size()));
    const size_t hidden_values = size_t(hidden_rows) * size_t(config_.hidden_size);
    if (hidden_rows > 0 && request.hidden_to_host)
      SPECQ_CUDA(cudaMemcpyAsync(host_hidden_, hidden_, hidden_values * 4, cudaMemcpyDeviceToHost, stream_));
    SPECQ_CUDA(cudaStreamSynchronize(stream_));
    if (request.hidden_to_host) result.hidden = std::span<const float>(host_hidden_, hidden_values);
    if (hidden_rows > 0) result.device_hidden = hidden_;
    result.argmax = std::span<const int32_t>(host_argmax_, size_t(rows));
    if (request.device_draw != nullptr) result.sampled = std::span<const int32_t>(host_sampled_, size_t(rows));
    if (request.logits_to_host) result.logits = std::span<const float>(host_logits_, size_t(rows) * vocab);
    return result;
  }

  enum class LinearKernel { Gemv, Skinny, Cublas, W4a16 };
  static const char* kernel_name(LinearKernel k) {
    return k == LinearKernel::Gemv ? "gemv" : k == LinearKernel::Skinny ? "skinny" : k == LinearKernel::W4a16 ? "w4a16"
                                                                                                          : "cuBLAS";
  }

  static bool can_run(LinearKernel k, const CudaLinear& lin, int n) {
    if (lin.w4 != (k == LinearKernel::W4a16)) return false;
    if (k == LinearKernel::W4a16) return true;
    if (k == LinearKernel::Gemv) return n <= cuda::kGemvMaxTokens;
    if (k == LinearKernel::Skinny) return n >= 2 && n <= cuda::kSkinnyMaxTokens && lin.cols % 8 == 0;
    return true;
  }

  bool fuses_swiglu(LinearKernel k, const CudaLinear& lin) const {
    if (k == LinearKernel::W4a16) return lin.tiles.swiglu;  // its tiles interleave gate and up rows
    return k != LinearKernel::Cublas && lin.bias == nullptr && config_.intermediate_size % 2 == 0;
  }

  LinearKernel linear_kernel(const CudaLinear& lin, int n) const {
    if (lin.w4) return LinearKernel::W4a16;
    const std::vector<LinearKernel>& table = kernel_by_tokens_[size_t(lin.family)];
    return size_t(n) < table.size() ? table[size_t(n)] : LinearKernel::Cublas;
  }

  // A borrower's (dense) weight runs with the table of the runner's layer family of the same role.
  // Where that kernel cannot run it (another shape, or the family's layers are W4A16): the GEMV up
  // to its token limit, then the skinny GEMM, then cuBLAS (unmeasured for this weight).
  static CudaLinear borrowed_linear(cuda::LinearFamily family, const void* w, const float* bias, int rows, int cols) {
    static constexpr int kFamilyOf[] = {kQkvFamily, kWoFamily, kGateUpFamily, kDownFamily, kLmHeadFamily};
    return {const_cast<void*>(w), bias, rows, cols, "borrowed", kFamilyOf[int(family)]};
  }
  LinearKernel borrowed_kernel(const CudaLinear& lin, int n) const {
    const LinearKernel k = linear_kernel(lin, n);
    if (can_run(k, lin, n)) return k;
    for (const LinearKernel other : {LinearKernel::Gemv, LinearKernel::Skinny})
      if (can_run(other, lin, n)) return other;
    return LinearKernel::Cublas;
  }

  // The measured W4A16 tile shape for n tokens (the largest rung's past the table).
  cuda::W4A16Config w4_config(const CudaLinear& lin, int n) const {
    const std::vector<cuda::W4A16Config>& table = w4_config_by_tokens_[size_t(lin.family)];
    if (table.empty()) return cuda::w4a16_default_config(lin.tiles, n, sm_count_);  // layer 0 of the family is dense
    return table[std::min(size_t(n), table.size() - 1)];
  }

  // y = x W^T with the given kernel; swiglu: w is [gate; up] and out receives silu(gate) * up.
  void run_linear(LinearKernel kernel, const CudaLinear& lin, const void* in, void* out, bool out_fp32, int n,
                  bool swiglu) {
    switch (kernel) {
      case LinearKernel::Gemv:
        if (swiglu) cuda::gemv_swiglu(lin.w, in, out, act_, n, lin.rows / 2, lin.cols, stream_);
        else cuda::gemv(lin.w, in, lin.bias, out, out_fp32, act_, n, lin.rows, lin.cols, stream_);
        return;
      case LinearKernel::Skinny:
        cuda::skinny_gemm(lin.w, in, lin.bias, out, out_fp32, act_, n, lin.rows, lin.cols, swiglu, skinny_workspace_,
                          sm_count_, stream_);
        return;
      case LinearKernel::W4a16:
        cuda::gemm_w4a16(lin.tiles, in, act_, n, lin.bias, out, out_fp32, w4_config(lin, n), w4_workspace_, sm_count_,
                         stream_);
        return;
      case LinearKernel::Cublas:
        break;
    }
    cuda::gemm(cublas_, lin.w, in, lin.bias, out, out_fp32, act_, n, lin.rows, lin.cols, stream_);
  }

  // The linear kernel for each layer family and token count comes from measurement, not a guess:
  // at load, every kernel that can run a count is timed on layer 0's weights (gate|up including its
  // SwiGLU, fused or not) at a ladder of counts; each count up to the next rung takes that rung's
  // winner. SPECQ_CUDA_VERBOSE=1 prints the table.
  void choose_linear_kernels() {
    const int top = std::min(max_tokens_, has_w4_ ? 256 : cuda::kSkinnyMaxTokens);
    const ModelConfig& c = config_;
    for (CudaAct* input : {&xn_, &attn_, &ffn_})
      cuda::fill_synthetic(input->ptr, act_, int64_t(top) * input->dim, 99, 0, 0.0f, 1.0f, act_, stream_);
    cudaEvent_t start = nullptr, stop = nullptr;
    SPECQ_CUDA(cudaEventCreate(&start));
    SPECQ_CUDA(cudaEventCreate(&stop));
    const bool verbose = std::getenv("SPECQ_CUDA_VERBOSE") != nullptr;
    struct Candidate {
      const CudaLinear* lin;
      const void* in;
      void* out;
      bool out_fp32;
    };
    const Layer& L = layers_[0];
    const Candidate families[kFamilies] = {{&L.qkv, xn_.ptr, qkv_.ptr, false},
                                           {&L.wo, attn_.ptr, delta_.ptr, false},
                                           {&L.gate_up, xn_.ptr, gate_up_.ptr, false},
                                           {&L.down, ffn_.ptr, delta_.ptr, false},
                                           {&lm_head_, xn_.ptr, logits_, true}};
    for (int f = 0; f < kFamilies; ++f) {
      const Candidate& cand = families[f];
      const CudaLinear& lin = *cand.lin;
      auto time_ms = [&](LinearKernel kernel, int n) {
        const bool fused = f == kGateUpFamily && fuses_swiglu(kernel, lin);
        float best = 1e30f;
        for (int rep = 0; rep < 6; ++rep) {
          SPECQ_CUDA(cudaEventRecord(start, stream_));
          run_linear(kernel, lin, cand.in, fused ? ffn_.ptr : cand.out, cand.out_fp32, n, fused);
          if (f == kGateUpFamily && !fused) cuda::swiglu(gate_up_.ptr, ffn_.ptr, act_, n, c.intermediate_size, stream_);
          SPECQ_CUDA(cudaEventRecord(stop, stream_));
          SPECQ_CUDA(cudaEventSynchronize(stop));
          float ms = 0.0f;
          SPECQ_CUDA(cudaEventElapsedTime(&ms, start, stop));
          if (rep > 0) best = std::min(best, ms);
        }
        return best;
      };
      if (lin.w4) {
        choose_w4_configs(f, lin, top, verbose, [&](int n) { return time_ms(LinearKernel::W4a16, n); });
        continue;
      }
      std::vector<LinearKernel>& table = kernel_by_tokens_[size_t(f)];
      table.assign(size_t(top) + 1, LinearKernel::Cublas);
      int covered = 0;
      for (const int rung : {1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128}) {
        const int n = std::min(rung, top);
        if (n <= covered) break;
        LinearKernel best = LinearKernel::Cublas;
        float best_ms = time_ms(LinearKernel::Cublas, n);
        std::string line = fmt::format("cuBLAS {:.1f}", best_ms * 1e3);
        for (const LinearKernel k : {LinearKernel::Gemv, LinearKernel::Skinny}) {
          if (!can_run(k, lin, n)) continue;
          const float ms = time_ms(k, n);
          line += fmt::format(", {} {:.1f}", kernel_name(k), ms * 1e3);
          if (ms < best_ms) {
            best = k;
            best_ms = ms;
          }
        }
        for (int i = covered + 1; i <= n; ++i) table[size_t(i)] = best;
        covered = n;
        if (verbose)
          fmt::print(stderr, "specq cuda: {} at {} tokens: {} us -> {}\n", lin.name, n, line, kernel_name(best));
      }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }

  // W4A16 tile shapes, like the kernel table: every compiled shape and split count that suits a rung
  // is timed on layer 0 and the fastest serves the counts up to that rung.
  template <typename TimeMs>
  void choose_w4_configs(int family, const CudaLinear& lin, int top, bool verbose, TimeMs&& time_ms) {
    std::vector<cuda::W4A16Config>& table = w4_config_by_tokens_[size_t(family)];
    table.assign(size_t(top) + 1, cuda::w4a16_default_config(lin.tiles, 1, sm_count_));
    int covered = 0;
    for (const int rung : {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256}) {
      const int n = std::min(rung, top);
      if (n <= covered) break;
      cuda::W4A16Config best = cuda::w4a16_default_config(lin.tiles, n, sm_count_);
      float best_ms = 1e30f;
      std::string line;
      for (cuda::W4A16Config shape : cuda::w4a16_shapes()) {
        const int tokens = 8 * shape.token_tiles;
        if (tokens > std::max(8, 2 * n) || 4 * tokens < n) continue;  // far too wide or too narrow a tile
        for (const int splits : cuda::w4a16_split_choices(shape, lin.tiles, n, sm_count_)) {
          shape.splits = splits;
          for (int i = covered + 1; i <= n; ++i) table[size_t(i)] = shape;
          const float ms = time_ms(n);
          if (verbose) line += fmt::format(" {} {:.1f}", shape.name(), ms * 1e3);
          if (ms < best_ms) {
            best_ms = ms;
            best = shape;
          }
        }
      }
      for (int i = covered + 1; i <= n; ++i) table[size_t(i)] = best;
      covered = n;
      if (verbose)
        fmt::print(stderr, "specq cuda: {} (w4a16) at {} tokens:{} us -> {}\n", lin.name, n, line, best.name());
    }
  }

  // A linear's weights into its planned slots: dense (converted to the activation dtype), or
  // GptqInt4 parts packed into W4A16 tiles on the host (synthetic ones made first) and copied.
  void upload_linear(CudaLinear& lin, const auto& plan, std::initializer_list<const Weight*> parts, bool swiglu,
                     const std::string& name) {
    uint8_t* base = arena_.get<uint8_t>();
    if (!plan.w4) {
      lin.w = base + plan.at;
      upload_fused(parts, lin.w, act_);
      return;
    }
    std::vector<std::shared_ptr<const QuantizedWeight>> made;
    std::vector<Weight> views;
    views.reserve(parts.size());
    for (const Weight* w : parts) {
      views.push_back(*w);
      if (w->synthetic && !w->quant->qweight.present()) views.back().quant = synthetic_gptq_parts(*w);
    }
    std::vector<const Weight*> ptrs;
    for (const Weight& v : views) ptrs.push_back(&v);
    const W4A16Tiles t = pack_w4a16_tiles(ptrs, act_, swiglu, name);
    lin.w4 = true;
    lin.tiles.tiles = base + plan.at;
    lin.tiles.scales = base + plan.scales;
    lin.tiles.perm = t.perm.empty() ? nullptr : reinterpret_cast<const int32_t*>(base + plan.perm);
    lin.tiles.rows = t.rows;
    lin.tiles.row_tiles = t.row_tiles;
    lin.tiles.k = t.k;
    lin.tiles.chunks = t.chunks;
    lin.tiles.group_size = t.group_size;
    lin.tiles.groups = t.groups;
    lin.tiles.sym = t.sym;
    lin.tiles.swiglu = t.swiglu;
    SPECQ_CUDA(cudaMemcpyAsync(base + plan.at, t.tiles.data(), t.tiles.size() * 4, cudaMemcpyHostToDevice, stream_));
    SPECQ_CUDA(cudaMemcpyAsync(base + plan.scales, t.scales.data(), t.scales.size() * 2, cudaMemcpyHostToDevice, stream_));
    if (!t.perm.empty())
      SPECQ_CUDA(cudaMemcpyAsync(base + plan.perm, t.perm.data(), t.perm.size() * 4, cudaMemcpyHostToDevice, stream_));
    SPECQ_CUDA(cudaStreamSynchronize(stream_));
  }

  // Uploads one weight into dst as `dtype`: generated on the device when synthetic, else copied
  // through the staging buffer and converted.
  void upload(const Weight& w, void* dst, DType dtype) { upload_part(w, dst, dtype); }

  void upload_fused(std::initializer_list<const Weight*> parts, void* dst, DType dtype) {
    auto* out = static_cast<uint8_t*>(dst);
    for (const Weight* w : parts) {
      upload_part(*w, out, dtype);
      out += size_t(w->numel()) * dtype_size(dtype);
    }
  }

  void upload_part(const Weight& w, void* dst, DType dtype) {
    cuda::upload_weight(w, dst, dtype, staging_, kStagingBytes, stream_);
  }

  Model& model_;
  ModelConfig config_;
  DType act_ = DType::F16;
  size_t esize_ = 2;
  int sm_count_ = 1;
  int max_context_ = 0;
  int max_tokens_ = 0;
  size_t weight_bytes_ = 0;
  size_t layer_cache_bytes_ = 0;
  size_t input_bytes_ = 0;
  bool lm_head_tied_ = false;

  DeviceBuffer arena_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* embed_ = nullptr;
  CudaLinear lm_head_;
  std::vector<Layer> layers_;
  float* final_norm_ = nullptr;
  void* k_cache_base_ = nullptr;
  void* v_cache_base_ = nullptr;
  CudaAct x_, xn_, qkv_, attn_, delta_, gate_up_, ffn_;
  float* logits_ = nullptr;
  float* hidden_ = nullptr;  // [rows][hidden] fp32 final hidden states, when a request asks
  int32_t* argmax_ = nullptr;
  int32_t* sampled_ = nullptr;
  void* attn_workspace_ = nullptr;
  void* skinny_workspace_ = nullptr;
  uint8_t* inputs_ = nullptr;
  int32_t* src_rows_ = nullptr;
  float* inv_freq_ = nullptr;
  void* staging_ = nullptr;

  void* host_inputs_ = nullptr;
  int32_t* host_argmax_ = nullptr;
  int32_t* host_sampled_ = nullptr;
  float* host_logits_ = nullptr;
  float* host_hidden_ = nullptr;

  std::array<std::vector<LinearKernel>, kFamilies> kernel_by_tokens_;  // [family][n]; cuBLAS past the end
  std::array<std::vector<cuda::W4A16Config>, kFamilies> w4_config_by_tokens_;  // [family][n] for 4-bit linears
  bool has_w4_ = false;
  void* w4_workspace_ = nullptr;
  std::map<int, cudaGraphExec_t> graphs_;
  const ForwardRequest* request_ = nullptr;
  bool swiglu_fused_ = false;  // the gate|up kernel already wrote ffn_ (swiglu() has nothing to do)

  bool profiling_ = false;
  std::vector<Mark> profile_marks_;
  std::vector<cudaEvent_t> profile_events_;
};

}  // namespace

std::unique_ptr<Runner> make_cuda_runner(Model& model, const RunnerOptions& options) {
  return std::make_unique<CudaRunner>(model, options);
}

cuda::DeviceModel* cuda::device_model(Runner& runner) { return dynamic_cast<CudaRunner*>(&runner); }

void cuda::upload_weight(const Weight& w, void* dst, DType dtype, void* staging, size_t staging_bytes,
                         cudaStream_t stream) {
  const int64_t count = w.numel();
  if (w.synthetic && w.data == nullptr) {
    cuda::fill_synthetic(dst, dtype, count, w.seed, 0, w.offset, w.scale, w.dtype, stream);
    return;
  }
  const size_t src_size = dtype_size(w.dtype);
  if (w.dtype == dtype) {
    SPECQ_CUDA(cudaMemcpyAsync(dst, w.data, size_t(count) * src_size, cudaMemcpyHostToDevice, stream));
    SPECQ_CUDA(cudaStreamSynchronize(stream));
    return;
  }
  const int64_t per_chunk = int64_t(staging_bytes / src_size);
  for (int64_t first = 0; first < count; first += per_chunk) {
    const int64_t len = std::min(per_chunk, count - first);
    SPECQ_CUDA(cudaMemcpyAsync(staging, static_cast<const uint8_t*>(w.data) + size_t(first) * src_size,
                               size_t(len) * src_size, cudaMemcpyHostToDevice, stream));
    cuda::convert(staging, w.dtype, static_cast<uint8_t*>(dst) + size_t(first) * dtype_size(dtype), dtype, len, stream);
    SPECQ_CUDA(cudaStreamSynchronize(stream));
  }
}

}  // namespace specq
