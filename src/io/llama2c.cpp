#include "io/llama2c.h"

#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/rope_layout.h"

namespace specq {
namespace {

// Copies the rows of a [heads * head_dim, cols] matrix from llama2.c's interleaved RoPE order into
// the rotate-half order of Hugging Face (io/rope_layout.h).
void permute_rows_to_rotate_half(const float* src, float* dst, int heads, int head_dim, int cols) {
  const std::vector<int64_t> rows = rotate_half_source_rows(heads, head_dim);
  for (size_t r = 0; r < rows.size(); ++r)
    std::memcpy(dst + int64_t(r) * cols, src + rows[r] * cols, sizeof(float) * size_t(cols));
}

}  // namespace

Model load_llama2c(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  SPECQ_CHECK(file->size() >= 28, "'{}' is too short for a llama2.c checkpoint ({} bytes)", path, file->size());
  int32_t hdr[7];
  std::memcpy(hdr, file->data(), sizeof(hdr));
  const int dim = hdr[0], hidden = hdr[1], layers = hdr[2], heads = hdr[3], kv_heads = hdr[4];
  const bool shared_classifier = hdr[5] > 0;
  const int vocab = shared_classifier ? hdr[5] : -hdr[5], seq_len = hdr[6];
  SPECQ_CHECK(dim > 0 && hidden > 0 && layers > 0 && heads > 0 && kv_heads > 0 && vocab > 0 && seq_len > 0 &&
                  dim % heads == 0 && heads % kv_heads == 0 && dim <= (1 << 16) && hidden <= (1 << 18) &&
                  layers <= 1024 && vocab <= (1 << 22),
              "'{}' is not a llama2.c checkpoint: implausible header (dim {}, hidden {}, layers {}, heads {}, "
              "kv_heads {}, vocab {}, seq_len {})",
              path, dim, hidden, layers, heads, kv_heads, hdr[5], seq_len);

  Model m;
  m.source = path;
  ModelConfig& c = m.config;
  c.arch_name = "llama2.c";
  c.vocab_size = vocab;
  c.hidden_size = dim;
  c.intermediate_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position_embeddings = seq_len;
  c.tie_word_embeddings = shared_classifier;
  c.dtype = DType::F32;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};

  const int64_t kv_dim = int64_t(kv_heads) * c.head_dim, head_half = c.head_dim / 2;
  const int64_t L = layers;
  // Sizes (floats) of the arrays in file order.
  const int64_t expected = int64_t(vocab) * dim + L * dim + L * dim * dim + 2 * L * kv_dim * dim + L * dim * dim +
                           L * dim + 3 * L * int64_t(hidden) * dim + dim + 2 * int64_t(seq_len) * head_half +
                           (shared_classifier ? 0 : int64_t(vocab) * dim);
  const size_t needed = 28 + size_t(expected) * 4;
  SPECQ_CHECK(file->size() >= needed, "'{}' is truncated: {} bytes, the header implies {}", path, file->size(),
              needed);

  const float* p = reinterpret_cast<const float*>(file->data() + 28);
  auto take = [&](std::vector<int64_t> shape) {
    Weight w;
    w.dtype = DType::F32;
    w.shape = std::move(shape);
    w.data = p;
    p += w.numel();
    return w;
  };
  m.weights.embed = take({vocab, dim});
  m.weights.layers.resize(size_t(layers));
  auto& ls = m.weights.layers;
  for (auto& l : ls) l.attn_norm = take({dim});
  for (auto& l : ls) l.wq = take({dim, dim});
  for (auto& l : ls) l.wk = take({kv_dim, dim});
  for (auto& l : ls) l.wv = take({kv_dim, dim});
  for (auto& l : ls) l.wo = take({dim, dim});
  for (auto& l : ls) l.ffn_norm = take({dim});
  for (auto& l : ls) l.w_gate = take({hidden, dim});
  for (auto& l : ls) l.w_down = take({dim, hidden});
  for (auto& l : ls) l.w_up = take({hidden, dim});
  m.weights.final_norm = take({dim});
  p += 2 * int64_t(seq_len) * head_half;  // freq_cis_real / imag: recomputed from rope_theta instead
  m.weights.lm_head = shared_classifier ? m.weights.embed : take({vocab, dim});

  // Permuted copies of wq and wk (one owned buffer for all layers).
  const int64_t q_size = int64_t(dim) * dim, k_size = kv_dim * dim;
  auto permuted = std::shared_ptr<float[]>(new float[size_t(L * (q_size + k_size))]);
  float* out = permuted.get();
  for (auto& l : ls) {
    permute_rows_to_rotate_half(static_cast<const float*>(l.wq.data), out, heads, c.head_dim, dim);
    l.wq.data = out;
    out += q_size;
    permute_rows_to_rotate_half(static_cast<const float*>(l.wk.data), out, kv_heads, c.head_dim, dim);
    l.wk.data = out;
    out += k_size;
  }
  m.storage.push_back(std::shared_ptr<const void>(permuted, permuted.get()));
  m.storage.push_back(file);
  return m;
}

}  // namespace specq
