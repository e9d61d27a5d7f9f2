// The EAGLE head on the GPU, beside the CUDA runner whose hidden states it reads (spec/eagle_head.h
// has the math; CpuEagleHead is the reference). It borrows the runner's stream (so its work is
// ordered with the verifier's forwards), embedding and LM head (with an FR-Spec draft vocabulary it
// keeps its own copy of those LM head rows), and the runner's measured linear kernel per layer family. Its own memory is one allocation planned at construction: weights
// (fc fused as [fc1 | fc2] over the input [embedding | feature], q|k|v and gate|up fused), a
// one-layer KV cache, the feature store (verifier hidden states by position, act dtype) and the
// scratch of the largest forward. A forward is one host-to-device copy of its inputs, the kernels,
// and one copy back of the top-k ids and log-probabilities of the logits rows (full logits rows
// only when asked, for sampling drafts).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_runner.h"
#include "backend/cuda/kernels.h"
#include "core/error.h"
#include "spec/eagle_head.h"

namespace specq {
namespace {

using cuda::DeviceBuffer;
using cuda::LinearFamily;

class CudaEagleHead final : public EagleHead {
 public:
  CudaEagleHead(const Model& base, EagleWeights weights, Runner& runner, int max_rows, int max_tokens_per_forward,
                bool borrow_base)
      : config_(base.config), runner_(runner) {
    cuda::DeviceModel* lender = cuda::device_model(runner);
    SPECQ_CHECK(lender != nullptr, "the CUDA EAGLE head needs a CUDA verifier (got a {} runner)",
                runner.device() == Device::Cpu ? "CPU" : "non-CUDA");
    dev_ = lender;
    const ModelConfig& c = config_;
    act_ = dev_->activation_dtype();
    esize_ = dtype_size(act_);
    stream_ = dev_->stream();
    hidden_ = c.hidden_size;
    vocab_ = c.vocab_size;
    max_rows_ = max_rows;
    max_tokens_ = std::min(max_tokens_per_forward, max_rows);
    SPECQ_CHECK(max_tokens_ >= 1, "EAGLE head: bad sizes ({} rows, {} tokens per forward)", max_rows,
                max_tokens_per_forward);
    SPECQ_CHECK(hidden_ % 8 == 0 && c.head_dim % 8 == 0 && c.head_dim <= 128,
                "the CUDA EAGLE head needs hidden_size and head_dim multiples of 8, head_dim <= 128");
    check_weights(weights);
    draft_vocab_ = weights.draft_vocab;
    head_vocab_ = draft_vocab_.empty() ? vocab_ : int(draft_vocab_.size());
    const bool own_draft_head = !draft_vocab_.empty();  // FR-Spec: a private [V, H] LM head of the kept rows
    const int64_t h = hidden_, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size, v = vocab_,
                  hv = head_vocab_;
    const size_t e = esize_, T = size_t(max_tokens_);
    borrowed_ = borrow_base && runner.config().vocab_size == c.vocab_size &&
                runner.config().hidden_size == c.hidden_size && dev_->embedding() != nullptr &&
                dev_->lm_head() != nullptr;
    const Weight& embed_w = base.weights.embed;
    const Weight& head_w = base.weights.lm_head;
    const bool tied =
        (head_w.synthetic && embed_w.synthetic && head_w.seed == embed_w.seed && head_w.data == nullptr) ||
        (head_w.data != nullptr && head_w.data == embed_w.data);
    mask_cap_ = mask_words(max_rows_);
    logits_cap_ = std::min(max_tokens_, cuda::kTopKMax);
    select_cap_ = max_tokens_;

    // ---- plan ----
    cuda::Arena plan;
    const size_t embed_at = borrowed_ ? 0 : plan.take(size_t(v * h) * e);
    const size_t lm_head_at = own_draft_head         ? plan.take(size_t(hv * h) * e)
                              : borrowed_ || tied ? embed_at
                                                  : plan.take(size_t(v * h) * e);
    const size_t fc_at = plan.take(size_t(h * 2 * h) * e);
    const size_t fc_bias_at = plan.take(size_t(h) * 4);
    const size_t qkv_w_at = plan.take(size_t((q + 2 * kv) * h) * e);
    const size_t wo_at = plan.take(size_t(h * q) * e);
    const size_t gate_up_w_at = plan.take(size_t(2 * inter * h) * e);
    const size_t down_at = plan.take(size_t(h * inter) * e);
    const size_t norm_at = plan.take(size_t(h) * 4);
    const size_t inv_freq_at = plan.take(size_t(c.head_dim / 2) * 4);
    const size_t cache_bytes = size_t(max_rows_) * size_t(kv) * e;
    const size_t k_cache_at = plan.take(cache_bytes);
    const size_t v_cache_at = plan.take(cache_bytes);
    const size_t features_at = plan.take(size_t(max_rows_) * size_t(h) * e);
    const size_t cat_at = plan.take(T * size_t(2 * h) * e);
    const size_t x_at = plan.take(T * size_t(h) * 4);
    const size_t xa_at = plan.take(T * size_t(h) * e);
    const size_t qkv_at = plan.take(T * size_t(q + 2 * kv) * e);
    const size_t attn_at = plan.take(T * size_t(q) * e);
    const size_t delta_at = plan.take(T * size_t(h) * e);
    const size_t xn_at = plan.take(T * size_t(h) * e);
    const size_t gate_up_at = plan.take(T * size_t(2 * inter) * e);
    const size_t ffn_at = plan.take(T * size_t(inter) * e);
    const size_t out_at = plan.take(T * size_t(h) * 4);
    const size_t out_act_at = plan.take(T * size_t(h) * e);
    const size_t logits_at = plan.take(size_t(logits_cap_) * size_t(hv) * 4);
    const size_t top_ids_at = plan.take(T * cuda::kTopKMax * 4);
    const size_t top_logp_at = plan.take(T * cuda::kTopKMax * 4);
    const size_t stage_at = plan.take(size_t(select_cap_) * size_t(h) * 4);
    size_t attn_ws = 0;
    for (int n = 1; n <= max_tokens_; ++n)
      attn_ws = std::max(attn_ws, cuda::attention_workspace_bytes(shape(n), dev_->sm_count()));
    const size_t attn_ws_at = plan.take(attn_ws);
    layout_ = input_layout();
    const size_t inputs_at = plan.take(layout_.end);

    size_t free_bytes = 0, total_bytes = 0;
    SPECQ_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
    SPECQ_CHECK(plan.used() <= free_bytes, "the CUDA EAGLE head needs {:.2f} GB; this GPU has {:.2f} GB free",
                double(plan.used()) / 1e9, double(free_bytes) / 1e9);

    // ---- allocate and fill ----
    arena_.allocate(plan.used());
    auto at = [&](size_t offset) { return arena_.get<uint8_t>() + offset; };
    embed_ = borrowed_ ? dev_->embedding() : at(embed_at);
    lm_head_ = borrowed_ && !own_draft_head ? dev_->lm_head() : at(lm_head_at);
    fc_ = at(fc_at);
    fc_bias_ = weights.fc_bias.empty() ? nullptr : reinterpret_cast<float*>(at(fc_bias_at));
    qkv_w_ = at(qkv_w_at);
    wo_ = at(wo_at);
    gate_up_w_ = at(gate_up_w_at);
    down_ = at(down_at);
    ffn_norm_ = reinterpret_cast<float*>(at(norm_at));
    inv_freq_ = reinterpret_cast<float*>(at(inv_freq_at));
    k_cache_ = at(k_cache_at);
    v_cache_ = at(v_cache_at);
    features_ = at(features_at);
    cat_ = at(cat_at);
    x_ = reinterpret_cast<float*>(at(x_at));
    xa_ = at(xa_at);
    qkv_ = at(qkv_at);
    attn_ = at(attn_at);
    delta_ = at(delta_at);
    xn_ = at(xn_at);
    gate_up_ = at(gate_up_at);
    ffn_ = at(ffn_at);
    out_ = reinterpret_cast<float*>(at(out_at));
    out_act_ = at(out_act_at);
    logits_ = reinterpret_cast<float*>(at(logits_at));
    top_ids_d_ = reinterpret_cast<int32_t*>(at(top_ids_at));
    top_logp_d_ = reinterpret_cast<float*>(at(top_logp_at));
    stage_d_ = reinterpret_cast<float*>(at(stage_at));
    attn_ws_ = attn_ws > 0 ? at(attn_ws_at) : nullptr;
    inputs_ = at(inputs_at);

    SPECQ_CUDA(cudaMallocHost(&host_inputs_, layout_.end));
    SPECQ_CUDA(cudaMallocHost(&host_stage_, size_t(select_cap_) * size_t(h) * 4));
    SPECQ_CUDA(cudaMallocHost(&host_top_ids_, T * cuda::kTopKMax * 4));
    SPECQ_CUDA(cudaMallocHost(&host_top_logp_, T * cuda::kTopKMax * 4));
    SPECQ_CUDA(cudaMallocHost(&host_logits_, size_t(logits_cap_) * size_t(v) * 4));
    if (own_draft_head) SPECQ_CUDA(cudaMallocHost(&host_head_logits_, size_t(logits_cap_) * size_t(hv) * 4));

    {
      // Weights through a temporary staging buffer (construction only).
      const size_t staging_bytes = size_t(16) << 20;
      DeviceBuffer staging(staging_bytes), half(size_t(h * h) * e);
      auto upload = [&](const Weight& w, void* dst) {
        cuda::upload_weight(w, dst, act_, staging.get(), staging_bytes, stream_);
      };
      if (!borrowed_) upload(embed_w, const_cast<void*>(embed_));
      if (own_draft_head) {
        std::vector<float> rows;
        upload(gather_lm_head_rows(head_w, draft_vocab_, rows), const_cast<void*>(lm_head_));
        SPECQ_CUDA(cudaStreamSynchronize(stream_));  // before `rows` goes
      } else if (!borrowed_ && lm_head_ != embed_) {
        upload(head_w, const_cast<void*>(lm_head_));
      }
      // fc row o = [fc1 row o | fc2 row o]: each half uploaded whole, then copied into its columns.
      for (int part = 0; part < 2; ++part) {
        upload(part == 0 ? weights.fc1 : weights.fc2, half.get());
        SPECQ_CUDA(cudaMemcpy2DAsync(static_cast<uint8_t*>(fc_) + size_t(part) * size_t(h) * e, size_t(2 * h) * e,
                                     half.get(), size_t(h) * e, size_t(h) * e, size_t(h), cudaMemcpyDeviceToDevice,
                                     stream_));
        SPECQ_CUDA(cudaStreamSynchronize(stream_));  // `half` is refilled next
      }
      auto* qkv = static_cast<uint8_t*>(qkv_w_);
      upload(weights.wq, qkv);
      upload(weights.wk, qkv + size_t(q * h) * e);
      upload(weights.wv, qkv + size_t((q + kv) * h) * e);
      upload(weights.wo, wo_);
      upload(weights.w_gate, gate_up_w_);
      upload(weights.w_up, static_cast<uint8_t*>(gate_up_w_) + size_t(inter * h) * e);
      upload(weights.w_down, down_);
      const std::vector<float> inv_freq = rope_inv_freq(c);
      if (fc_bias_ != nullptr)
        SPECQ_CUDA(cudaMemcpyAsync(fc_bias_, weights.fc_bias.data(), size_t(h) * 4, cudaMemcpyHostToDevice, stream_));
      SPECQ_CUDA(cudaMemcpyAsync(ffn_norm_, weights.ffn_norm.data(), size_t(h) * 4, cudaMemcpyHostToDevice, stream_));
      SPECQ_CUDA(cudaMemcpyAsync(inv_freq_, inv_freq.data(), inv_freq.size() * 4, cudaMemcpyHostToDevice, stream_));
      // Rows never written still enter attention tiles (times zero) and unset features the fc: keep them finite.
      SPECQ_CUDA(cudaMemsetAsync(k_cache_, 0, cache_bytes, stream_));
      SPECQ_CUDA(cudaMemsetAsync(v_cache_, 0, cache_bytes, stream_));
      SPECQ_CUDA(cudaMemsetAsync(features_, 0, size_t(max_rows_) * size_t(h) * e, stream_));
      SPECQ_CUDA(cudaStreamSynchronize(stream_));  // before the host vectors and the staging buffers go
    }
  }

  ~CudaEagleHead() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (void* p : {host_inputs_, host_stage_, static_cast<void*>(host_top_ids_), static_cast<void*>(host_top_logp_),
                    static_cast<void*>(host_logits_), static_cast<void*>(host_head_logits_)})
      if (p != nullptr) cudaFreeHost(p);
  }
  CudaEagleHead(const CudaEagleHead&) = delete;
  CudaEagleHead& operator=(const CudaEagleHead&) = delete;

  const ModelConfig& config() const override { return config_; }
  Device device() const override { return Device::Cuda; }
  int max_rows() const override { return max_rows_; }
  int max_tokens_per_forward() const override { return max_tokens_; }
  int max_top_k() const override { return std::min(cuda::kTopKMax, head_vocab_); }

  void set_features(int first_pos, const HiddenRows& rows) override {
    SPECQ_CHECK(first_pos >= 0 && rows.count >= 0 && first_pos + rows.count <= max_rows_,
                "EAGLE head: hidden states of positions [{}, {}) beyond its {} positions", first_pos,
                first_pos + rows.count, max_rows_);
    SPECQ_CHECK(rows.count == 0 || rows.device != nullptr || !rows.host.empty(),
                "EAGLE head: the verifier gave no hidden states");
    SPECQ_CHECK(rows.select.empty() || int(rows.select.size()) >= rows.count, "EAGLE head: {} selected of {} rows",
                rows.select.size(), rows.count);
    const size_t h = size_t(hidden_);
    for (int done = 0; done < rows.count; done += select_cap_) {
      const int len = std::min(select_cap_, rows.count - done);
      SPECQ_CUDA(cudaStreamSynchronize(stream_));  // the pinned buffers may still feed a queued copy
      if (rows.device != nullptr) {
        const float* src = rows.device;
        const int32_t* select = nullptr;
        if (!rows.select.empty()) {
          auto* host_select = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(host_inputs_) + layout_.select);
          for (int r = 0; r < len; ++r) {
            host_select[r] = rows.select[size_t(done + r)];
            SPECQ_CHECK(host_select[r] >= 0, "EAGLE head: hidden row {}", host_select[r]);
          }
          select = reinterpret_cast<const int32_t*>(inputs_ + layout_.select);
          SPECQ_CUDA(cudaMemcpyAsync(inputs_ + layout_.select, host_select, size_t(len) * 4, cudaMemcpyHostToDevice,
                                     stream_));
        } else {
          src += size_t(done) * h;
        }
        cuda::eagle_store_features(src, select, len, hidden_, features_, first_pos + done, act_, stream_);
      } else {
        const size_t available = rows.host.size() / h;
        for (int r = 0; r < len; ++r) {
          const size_t from = rows.select.empty() ? size_t(done + r) : size_t(rows.select[size_t(done + r)]);
          SPECQ_CHECK(from < available, "EAGLE head: hidden row {} of {}", from, available);
          std::memcpy(static_cast<float*>(host_stage_) + size_t(r) * h, rows.host.data() + from * h, h * 4);
        }
        SPECQ_CUDA(cudaMemcpyAsync(stage_d_, host_stage_, size_t(len) * h * 4, cudaMemcpyHostToDevice, stream_));
        cuda::eagle_store_features(stage_d_, nullptr, len, hidden_, features_, first_pos + done, act_, stream_);
      }
    }
    // Another runner's buffer is only valid until its next forward, which our stream does not wait for.
    if (rows.device != nullptr && rows.source != &runner_) SPECQ_CUDA(cudaStreamSynchronize(stream_));
  }

  void forward(const EagleStep& step) override {
    const ModelConfig& c = config_;
    const int n = int(step.tokens.size()), committed = step.committed, row0 = step.row0;
    SPECQ_CHECK(n >= 1 && n <= max_tokens_ && step.positions.size() == step.tokens.size() &&
                    step.features.size() == step.tokens.size(),
                "EAGLE head: bad forward of {} inputs", n);
    SPECQ_CHECK(committed >= 0 && committed <= row0 && row0 + n <= max_rows_,
                "EAGLE head: rows [{}, {}) exceed its cache of {} rows", row0, row0 + n, max_rows_);
    SPECQ_CHECK(step.logits_from >= 0 && step.logits_from <= n && step.top_k >= 0 && step.top_k <= max_top_k(),
                "EAGLE head: bad logits rows from {} or top-k {} (the CUDA head's limit: {})", step.logits_from,
                step.top_k, max_top_k());
    const int rows = n - step.logits_from;
    SPECQ_CHECK(!step.logits_to_host || rows <= logits_cap_,
                "EAGLE head: {} logits rows to the host; the CUDA head returns at most {}", rows, logits_cap_);
    if (step.mask != nullptr)
      SPECQ_CHECK(step.mask_stride >= mask_words(row0 + n - committed) && step.mask_stride <= mask_cap_,
                  "EAGLE head: mask stride {} words for {} rows", step.mask_stride, row0 + n - committed);
    for (int t = 0; t < n; ++t) {
      const int32_t token = step.tokens[size_t(t)], f = step.features[size_t(t)];
      SPECQ_CHECK(token >= 0 && token < vocab_, "EAGLE head: token {} out of range", token);
      SPECQ_CHECK(f < max_rows_ && -1 - f < prev_rows_, "EAGLE head: feature source {} out of range", f);
      SPECQ_CHECK(step.positions[size_t(t)] >= 0, "EAGLE head: negative position {}", step.positions[size_t(t)]);
    }

    // Inputs: one copy into the device block.
    SPECQ_CUDA(cudaStreamSynchronize(stream_));  // the pinned block may still feed a queued copy
    auto* host = static_cast<uint8_t*>(host_inputs_);
    const int32_t header[4] = {committed, row0, row0 - committed, step.mask != nullptr ? 1 : 0};
    std::memcpy(host, header, sizeof(header));
    std::memcpy(host + layout_.tokens, step.tokens.data(), size_t(n) * 4);
    std::memcpy(host + layout_.positions, step.positions.data(), size_t(n) * 4);
    std::memcpy(host + layout_.sources, step.features.data(), size_t(n) * 4);
    size_t end = layout_.sources + size_t(n) * 4;
    if (step.mask != nullptr) {
      const size_t words = size_t(n) * size_t(step.mask_stride);
      std::memcpy(host + layout_.mask, step.mask, words * 8);
      end = layout_.mask + words * 8;
    }
    SPECQ_CUDA(cudaMemcpyAsync(inputs_, host, end, cudaMemcpyHostToDevice, stream_));

    const auto* header_d = reinterpret_cast<const int32_t*>(inputs_);
    const auto* tokens_d = reinterpret_cast<const int32_t*>(inputs_ + layout_.tokens);
    const auto* positions_d = reinterpret_cast<const int32_t*>(inputs_ + layout_.positions);
    const auto* sources_d = reinterpret_cast<const int32_t*>(inputs_ + layout_.sources);
    const auto* mask_d = reinterpret_cast<const uint64_t*>(inputs_ + layout_.mask);
    const int64_t h = hidden_, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;

    // e = fc([embed(x) | feature]) + bias, the fp32 residual stream; attention reads it unnormalised.
    cuda::eagle_gather_inputs(embed_, tokens_d, sources_d, features_, out_act_, n, hidden_, cat_, act_, stream_);
    dev_->linear(LinearFamily::Down, fc_, fc_bias_, cat_, x_, true, n, int(h), int(2 * h));
    cuda::convert(x_, DType::F32, xa_, act_, int64_t(n) * h, stream_);
    dev_->linear(LinearFamily::Qkv, qkv_w_, nullptr, xa_, qkv_, false, n, int(q + 2 * kv), int(h));
    const cuda::StepInputs rope_step{tokens_d, positions_d, header_d + 1, header_d + 3, mask_d};  // K/V to row0 + t
    cuda::rope_store_kv(qkv_, act_, n, c.num_heads, c.num_kv_heads, c.head_dim, rope_step, inv_freq_, k_cache_,
                        v_cache_, stream_);
    const cuda::StepInputs attn_step{tokens_d,     positions_d, header_d, header_d + 3, mask_d,
                                     header_d + 2, step.mask != nullptr ? step.mask_stride : 0};
    cuda::attention(qkv_, act_, k_cache_, v_cache_, shape(n), attn_step, attn_, attn_ws_, dev_->sm_count(), stream_);
    dev_->linear(LinearFamily::Wo, wo_, nullptr, attn_, delta_, false, n, int(h), int(q));
    // a = e + attn; o = a + MLP(RMSNorm(a)).
    cuda::add_rmsnorm(x_, delta_, ffn_norm_, c.rms_norm_eps, xn_, act_, n, int(h), stream_);
    dev_->gate_up_swiglu(gate_up_w_, xn_, gate_up_, ffn_, n, int(inter), int(h));
    dev_->linear(LinearFamily::Down, down_, nullptr, ffn_, delta_, false, n, int(h), int(inter));
    cuda::eagle_residual_out(x_, delta_, out_, out_act_, int64_t(n) * h, act_, stream_);

    // Logits rows in chunks of the logits buffer; top-k of each row.
    const int k = step.top_k;
    for (int r0 = step.logits_from; r0 < n; r0 += logits_cap_) {
      const int len = std::min(logits_cap_, n - r0);
      const void* in = static_cast<uint8_t*>(out_act_) + size_t(r0) * size_t(h) * esize_;
      dev_->linear(LinearFamily::LmHead, lm_head_, nullptr, in, logits_, true, len, head_vocab_, int(h));
      if (k > 0)
        cuda::top_k_logprobs(logits_, len, head_vocab_, k, top_ids_d_ + size_t(r0) * size_t(k),
                             top_logp_d_ + size_t(r0) * size_t(k), stream_);
    }
    if (k > 0 && rows > 0) {
      const size_t first = size_t(step.logits_from) * size_t(k), count = size_t(rows) * size_t(k);
      SPECQ_CUDA(
          cudaMemcpyAsync(host_top_ids_ + first, top_ids_d_ + first, count * 4, cudaMemcpyDeviceToHost, stream_));
      SPECQ_CUDA(
          cudaMemcpyAsync(host_top_logp_ + first, top_logp_d_ + first, count * 4, cudaMemcpyDeviceToHost, stream_));
    }
    float* const host_rows = draft_vocab_.empty() ? host_logits_ : host_head_logits_;
    if (step.logits_to_host && rows > 0)
      SPECQ_CUDA(cudaMemcpyAsync(host_rows, logits_, size_t(rows) * size_t(head_vocab_) * 4, cudaMemcpyDeviceToHost,
                                 stream_));
    SPECQ_CUDA(cudaStreamSynchronize(stream_));
    if (!draft_vocab_.empty()) {  // back to target ids, and logits over the whole vocabulary
      if (k > 0)
        for (size_t j = size_t(step.logits_from) * size_t(k); j < size_t(n) * size_t(k); ++j)
          host_top_ids_[j] = draft_vocab_[size_t(host_top_ids_[j])];
      if (step.logits_to_host)
        for (int r = 0; r < rows; ++r) {
          float* full = host_logits_ + size_t(r) * size_t(vocab_);
          std::fill_n(full, vocab_, -std::numeric_limits<float>::infinity());
          for (int j = 0; j < head_vocab_; ++j)
            full[draft_vocab_[size_t(j)]] = host_head_logits_[size_t(r) * size_t(head_vocab_) + size_t(j)];
        }
    }
    prev_rows_ = n;
    top_k_ = k;
    logits_from_ = step.logits_from;
    logits_on_host_ = step.logits_to_host;
  }

  std::span<const int32_t> top_ids(int i) const override {
    check_logits_row(i, top_k_ > 0, "top-k");
    return {host_top_ids_ + size_t(i) * size_t(top_k_), size_t(top_k_)};
  }
  std::span<const float> top_logp(int i) const override {
    check_logits_row(i, top_k_ > 0, "top-k");
    return {host_top_logp_ + size_t(i) * size_t(top_k_), size_t(top_k_)};
  }
  std::span<const float> logits(int i) const override {
    check_logits_row(i, logits_on_host_, "logits");
    return {host_logits_ + size_t(i - logits_from_) * size_t(vocab_), size_t(vocab_)};
  }
  std::vector<float> output(int i) const override {
    SPECQ_CHECK(i >= 0 && i < prev_rows_, "EAGLE head: output row {} of {}", i, prev_rows_);
    std::vector<float> row(static_cast<size_t>(hidden_));
    SPECQ_CUDA(cudaMemcpyAsync(row.data(), out_ + size_t(i) * size_t(hidden_), size_t(hidden_) * 4,
                               cudaMemcpyDeviceToHost, stream_));
    SPECQ_CUDA(cudaStreamSynchronize(stream_));
    return row;
  }

 private:
  // Device input block: header {committed, row0, row0 - committed, has_mask}, tokens[T],
  // positions[T], feature sources[T], mask[T][mask words of max_rows], hidden-row select[T].
  struct InputLayout {
    size_t tokens, positions, sources, mask, select, end;
  };
  InputLayout input_layout() const {
    const size_t T = size_t(max_tokens_);
    InputLayout l{};
    l.tokens = 16;
    l.positions = l.tokens + T * 4;
    l.sources = l.positions + T * 4;
    l.mask = (l.sources + T * 4 + 7) / 8 * 8;
    l.select = l.mask + T * size_t(mask_cap_) * 8;
    l.end = l.select + size_t(select_cap_) * 4;
    return l;
  }

  cuda::AttentionShape shape(int n) const {
    return {n, config_.num_heads, config_.num_kv_heads, config_.head_dim, max_rows_};
  }

  void check_logits_row(int i, bool available, const char* what) const {
    SPECQ_CHECK(available && i >= logits_from_ && i < prev_rows_,
                "EAGLE head: no {} for row {} of the last forward (logits rows [{}, {}))", what, i, logits_from_,
                prev_rows_);
  }

  void check_weights(const EagleWeights& w) const {
    validate_eagle_weights(w, config_);
    for (const Weight* t : {&w.fc1, &w.fc2, &w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down})
      SPECQ_CHECK(!t->quantized(), "the CUDA EAGLE head runs float weights only (got {})",
                  weight_format_name(t->format));
  }

  ModelConfig config_;
  Runner& runner_;
  cuda::DeviceModel* dev_ = nullptr;
  DType act_ = DType::F16;
  size_t esize_ = 2;
  cudaStream_t stream_ = nullptr;
  int hidden_ = 0, vocab_ = 0, max_rows_ = 0, max_tokens_ = 0;
  int head_vocab_ = 0;                 // rows of lm_head_ (the draft vocabulary's size, or vocab_)
  std::vector<int32_t> draft_vocab_;   // target id of each draft LM head row; empty = the whole vocabulary
  int mask_cap_ = 1, logits_cap_ = 1, select_cap_ = 1;
  bool borrowed_ = false;
  InputLayout layout_{};

  DeviceBuffer arena_;
  const void* embed_ = nullptr;
  const void* lm_head_ = nullptr;
  void *fc_ = nullptr, *qkv_w_ = nullptr, *wo_ = nullptr, *gate_up_w_ = nullptr, *down_ = nullptr;
  float *fc_bias_ = nullptr, *ffn_norm_ = nullptr, *inv_freq_ = nullptr;
  void *k_cache_ = nullptr, *v_cache_ = nullptr, *features_ = nullptr;
  void *cat_ = nullptr, *xa_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr, *delta_ = nullptr, *xn_ = nullptr;
  void *gate_up_ = nullptr, *ffn_ = nullptr, *out_act_ = nullptr, *attn_ws_ = nullptr;
  float *x_ = nullptr, *out_ = nullptr, *logits_ = nullptr, *top_logp_d_ = nullptr, *stage_d_ = nullptr;
  int32_t* top_ids_d_ = nullptr;
  uint8_t* inputs_ = nullptr;

  void* host_inputs_ = nullptr;
  void* host_stage_ = nullptr;
  int32_t* host_top_ids_ = nullptr;
  float* host_top_logp_ = nullptr;
  float* host_logits_ = nullptr;
  float* host_head_logits_ = nullptr;  // [logits_cap_][head_vocab_], with a draft vocabulary

  // The last forward: its input count, top-k, first logits row and whether its logits came back.
  int prev_rows_ = 0, top_k_ = 0, logits_from_ = 0;
  bool logits_on_host_ = false;
};

}  // namespace

std::unique_ptr<EagleHead> make_cuda_eagle_head(const Model& base, EagleWeights weights, Runner& runner, int max_rows,
                                                int max_tokens_per_forward, bool borrow_base_weights) {
  return std::make_unique<CudaEagleHead>(base, std::move(weights), runner, max_rows, max_tokens_per_forward,
                                         borrow_base_weights);
}

}  // namespace specq
