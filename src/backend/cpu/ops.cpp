#include "backend/cpu/ops.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPECQ_AVX2 1
#endif

#include "core/dtype.h"
#include "core/error.h"
#include "model/runner.h"

namespace specq::cpu {
namespace {

// A parallel region costs microseconds to open: loops under kMinParallelWork multiply-adds run
// serially (all of stories260K), larger ones on every core. Always the same team size: teams that
// change size from one region to the next put threads to sleep and wake them (measured: stories15M
// shape with 16 threads fell from 1,466 to 321 tok/s with sizes proportional to the work).
constexpr int64_t kMinParallelWork = 1 << 16;

int threads_for(int64_t work) { return work < kMinParallelWork ? 1 : omp_get_max_threads(); }

inline float dot(const float* a, const float* b, int64_t k) {
#if defined(SPECQ_AVX2)
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= k; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float sum = _mm_cvtss_f32(h);
  for (; i < k; ++i) sum += a[i] * b[i];
  return sum;
#else
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < k; ++i) sum += a[i] * b[i];
  return sum;
#endif
}

int32_t dot_int8(const int8_t* a, const int8_t* b, int64_t k) {
  int32_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < k; ++i) sum += int32_t(a[i]) * int32_t(b[i]);
  return sum;
}

// Runs output_rows(first, last, thread_scratch) over [0, N) split evenly across `threads`, each
// with its own K floats of scratch (no parallel region at all for one thread: even an inactive one
// costs a little).
template <class F>
void split_output_rows(int64_t N, int64_t K, int threads, float* scratch, const F& output_rows) {
  if (threads == 1) {
    output_rows(0, N, scratch);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t id = omp_get_thread_num(), count = omp_get_num_threads();
    output_rows(N * id / count, N * (id + 1) / count, scratch + id * K);
  }
}

// W8A8: token-major, so each thread quantizes an input row into its own scratch and reuses it
// for its share of output rows (the rows are re-quantized per thread: K work against N * K).
void linear_int8(const float* in, int n, const Weight& w, const float* bias, float* out, int64_t out_stride,
                 float* scratch, int threads) {
  const int64_t N = w.rows(), K = w.cols();
  const QuantizedWeight& q = *w.quant;
  const auto* weights = static_cast<const int8_t*>(q.qweight.data);
  auto output_rows = [&](int64_t first, int64_t last, float* thread_scratch) {
    auto* qx = reinterpret_cast<int8_t*>(thread_scratch);  // K bytes of K floats
    for (int t = 0; t < n; ++t) {
      const float sx = quantize_row_int8(in + int64_t(t) * K, K, qx);
      for (int64_t o = first; o < last; ++o) {
        const int32_t acc = dot_int8(qx, weights + o * K, K);
        const float sw = load_as_float(q.scales.data, q.scales.dtype, size_t(o));
        // The compiler may fuse the bias add into an FMA (C++ allows it): a rounding less, not more.
        out[t * out_stride + o] = float(acc) * sx * sw + (bias != nullptr ? bias[o] : 0.0f);
      }
    }
  };
  split_output_rows(N, K, threads, scratch, output_rows);
}

// W4A8 (QqqInt4, QoqInt4): each thread expands a block of weight rows into the int8 values the
// kernel multiplies, then quantizes each input row once per block and takes the exact int32 dot
// products. scratch (K floats = 4K bytes per thread) holds kRowBlock weight rows and one input row.
void linear_w4a8(const float* in, int n, const Weight& w, const float* bias, float* out, int64_t out_stride,
                 float* scratch, int threads) {
  constexpr int64_t kRowBlock = 3;
  const int64_t N = w.rows(), K = w.cols();
  const bool needs_sum = w.format == WeightFormat::QoqInt4 && !w.quant->group_scales.present();
  auto output_rows = [&](int64_t first, int64_t last, float* thread_scratch) {
    auto* rows = reinterpret_cast<int8_t*>(thread_scratch);
    int8_t* qx = rows + kRowBlock * K;
    for (int64_t o0 = first; o0 < last; o0 += kRowBlock) {
      const int64_t count = std::min(kRowBlock, last - o0);
      for (int64_t r = 0; r < count; ++r) w4a8_int8_row(w, o0 + r, rows + r * K);
      for (int t = 0; t < n; ++t) {
        const float* x = in + int64_t(t) * K;
        const float sx = quantize_row_int8(x, K, qx);
        // QoQ per-channel: the zero term needs the token's sum of (unquantized) activations.
        double sum = 0.0;
        if (needs_sum)
          for (int64_t k = 0; k < K; ++k) sum += double(x[k]);
        for (int64_t r = 0; r < count; ++r) {
          const int64_t o = o0 + r;
          const int32_t acc = dot_int8(qx, rows + r * K, K);
          const float y = float(acc) * sx * w4a8_output_scale(w, o) - w4a8_output_szero(w, o) * float(sum);
          out[t * out_stride + o] = y + (bias != nullptr ? bias[o] : 0.0f);
        }
      }
    }
  };
  split_output_rows(N, K, threads, scratch, output_rows);
}

}  // namespace

float quantize_row_int8(const float* x, int64_t k, int8_t* q) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < k; ++i) {
    amax = std::max(amax, std::fabs(x[i]));
    finite = finite && std::isfinite(x[i]);
  }
  const float scale = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  if (!(scale > 0.0f)) {  // all zero (scale 0) or not finite (NaN): codes 0
    std::fill_n(q, k, int8_t(0));
    return scale;
  }
  for (int64_t i = 0; i < k; ++i) q[i] = int8_t(std::clamp(std::nearbyint(x[i] / scale), -127.0f, 127.0f));
  return scale;
}

void to_float(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::F32:
      std::copy_n(static_cast<const float*>(src), n, dst);
      return;
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      int64_t i = 0;
#if defined(__F16C__) && defined(SPECQ_AVX2)
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
#endif
      for (; i < n; ++i) dst[i] = half_to_float(h[i]);
      return;
    }
    case DType::BF16: {
      const auto* b = static_cast<const uint16_t*>(src);
      auto* out = reinterpret_cast<uint32_t*>(dst);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = uint32_t(b[i]) << 16;
      return;
    }
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = 0.0f;
  }
}

void rmsnorm(const float* x, const float* w, float eps, float* out, int n, int dim) {
  for (int t = 0; t < n; ++t) {
    const float* row = x + int64_t(t) * dim;
    float* o = out + int64_t(t) * dim;
    const float r = 1.0f / std::sqrt(dot(row, row, dim) / float(dim) + eps);
#pragma omp simd
    for (int i = 0; i < dim; ++i) o[i] = row[i] * r * w[i];
  }
}

void add_rmsnorm(float* x, const float* delta, const float* w, float eps, float* out, int n, int dim) {
  if (delta != nullptr) {
    const int64_t total = int64_t(n) * dim;
#pragma omp simd
    for (int64_t i = 0; i < total; ++i) x[i] += delta[i];
  }
  rmsnorm(x, w, eps, out, n, dim);
}

void linear(const float* in, int n, const Weight& w, const float* bias, float* out, int64_t out_stride,
            float* scratch) {
  const int64_t N = w.rows(), K = w.cols();
  const size_t esize = dtype_size(w.dtype);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const bool convert = w.dtype != DType::F32;  // dense fp16/bf16 rows are converted first
  const int64_t work = N * K * n;
  if (w.format == WeightFormat::Int8PerChannel)
    return linear_int8(in, n, w, bias, out, out_stride, scratch, threads_for(work));
  if (is_w4a8(w.format)) return linear_w4a8(in, n, w, bias, out, out_stride, scratch, threads_for(work));
  auto output_rows = [&](int64_t first, int64_t last, float* row_buffer) {
    for (int64_t o = first; o < last; ++o) {
      const float* row;
      if (w.quantized()) {
        dequantize_row(w, o, row_buffer);  // fp32 math on exactly the format's values
        row = row_buffer;
      } else if (convert) {
        to_float(base + size_t(o) * size_t(K) * esize, w.dtype, K, row_buffer);
        row = row_buffer;
      } else {
        row = reinterpret_cast<const float*>(base) + o * K;
      }
      const float b = bias != nullptr ? bias[o] : 0.0f;
      for (int t = 0; t < n; ++t) out[t * out_stride + o] = dot(in + int64_t(t) * K, row, K) + b;
    }
  };
  split_output_rows(N, K, threads_for(work), scratch, output_rows);  // scratch: each thread's row
}

void rope(float* vec, int64_t stride, int n, int heads, int head_dim, const int32_t* positions,
          const float* inv_freq) {
  const int half = head_dim / 2;
  for (int t = 0; t < n; ++t) {
    for (int c = 0; c < half; ++c) {
      // float angle as Hugging Face computes it (position * inv_freq in fp32), cos/sin in double.
      const float angle = float(positions[t]) * inv_freq[c];
      const float cs = float(std::cos(double(angle))), sn = float(std::sin(double(angle)));
      for (int h = 0; h < heads; ++h) {
        float* v = vec + t * stride + int64_t(h) * head_dim;
        const float a = v[c], b = v[c + half];
        v[c] = a * cs - b * sn;
        v[c + half] = b * cs + a * sn;
      }
    }
  }
}

void attention(const float* q, int64_t q_stride, const float* k_cache, const float* v_cache, int cache_len, int n,
               std::span<const uint64_t> tree_mask, int heads, int kv_heads, int head_dim, float* out,
               float* scores) {
  attention_rows(q, q_stride, k_cache, v_cache, cache_len, cache_len + n, n,
                 tree_mask.empty() ? nullptr : tree_mask.data(), mask_words(n), heads, kv_heads, head_dim, out,
                 scores);
}

void attention_rows(const float* q, int64_t q_stride, const float* k_cache, const float* v_cache, int committed,
                    int rows, int n, const uint64_t* mask, int mask_stride, int heads, int kv_heads, int head_dim,
                    float* out, float* scores) {
  const int group = heads / kv_heads;
  const int64_t kv_dim = int64_t(kv_heads) * head_dim;
  const int total = rows;
  const int first_query = rows - n - committed;  // the first query's index among the uncommitted rows
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int64_t work = int64_t(n) * heads * total * head_dim;
  const int threads = threads_for(work);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if (threads > 1)
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* s = scores + int64_t(omp_get_thread_num()) * total;
      const float* qh = q + t * q_stride + int64_t(h) * head_dim;
      const int64_t kv_off = int64_t(h / group) * head_dim;
      auto visible = [&](int j) {  // uncommitted row committed + j as seen from query t
        if (mask == nullptr) return j <= first_query + t;
        return ((mask[size_t(t) * size_t(mask_stride) + size_t(j / 64)] >> (j % 64)) & 1u) != 0;
      };
      float max_score = -std::numeric_limits<float>::infinity();
      for (int r = 0; r < total; ++r) {
        if (r >= committed && !visible(r - committed)) {
          s[r] = -std::numeric_limits<float>::infinity();
          continue;
        }
        s[r] = dot(qh, k_cache + r * kv_dim + kv_off, head_dim) * scale;
        max_score = std::max(max_score, s[r]);
      }
      float* o = out + (int64_t(t) * heads + h) * head_dim;
      std::fill_n(o, head_dim, 0.0f);
      float sum = 0.0f;
      for (int r = 0; r < total; ++r) {
        if (s[r] == -std::numeric_limits<float>::infinity()) continue;
        const float p = std::exp(s[r] - max_score);
        sum += p;
        const float* vr = v_cache + r * kv_dim + kv_off;
#pragma omp simd
        for (int i = 0; i < head_dim; ++i) o[i] += p * vr[i];
      }
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      for (int i = 0; i < head_dim; ++i) o[i] *= inv;
    }
  }
}

void swiglu(const float* gate_up, int n, int inter, float* out) {
  for (int t = 0; t < n; ++t) {
    const float* g = gate_up + int64_t(t) * 2 * inter;
    const float* u = g + inter;
    float* o = out + int64_t(t) * inter;
    for (int i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

int32_t argmax(const float* values, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (values[i] > values[best]) best = i;
  return best;
}

void top_k_logprobs(const float* logits, int n, int k, int32_t* ids, float* logp, int32_t* scratch) {
  SPECQ_CHECK(k >= 1 && k <= n, "top-k of {} out of {} values", k, n);
  const float top = *std::max_element(logits, logits + n);
  double total = 0.0;
  for (int v = 0; v < n; ++v) total += std::exp(double(logits[v] - top));
  const float log_total = float(std::log(total)) + top;
  std::iota(scratch, scratch + n, 0);
  std::partial_sort(scratch, scratch + k, scratch + n, [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < k; ++i) {
    ids[i] = scratch[i];
    logp[i] = std::min(0.0f, logits[scratch[i]] - log_total);
  }
}

// Sorting, not radix selection: an independent route to the same cuts as the CUDA kernel.
int32_t sample_counter_based(const float* logits, int n, const DrawParams& params, uint64_t draw) {
  const float row_max = *std::max_element(logits, logits + n);
  const float inv_t = 1.0f / params.temperature;
  std::vector<uint32_t> keys(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) keys[size_t(i)] = order_key(logits[i]);
  std::vector<int32_t> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return keys[size_t(a)] > keys[size_t(b)]; });
  uint32_t cut = 0;
  if (params.top_k > 0 && params.top_k < n) cut = keys[size_t(order[size_t(params.top_k - 1)])];
  if (params.top_p < 1.0f) {
    auto mass = [&](int32_t i) { return double(std::exp((logits[i] - row_max) * inv_t)); };
    double total = 0.0;
    for (int32_t i : order)
      if (keys[size_t(i)] >= cut) total += mass(i);
    double running = 0.0;
    for (int32_t i : order) {
      running += mass(i);
      if (running >= double(params.top_p) * total) {
        cut = std::max(cut, keys[size_t(i)]);
        break;
      }
    }
  }
  int32_t best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i) {
    if (keys[size_t(i)] < cut) continue;
    const double score = double((logits[i] - row_max) * inv_t) + gumbel_noise(params.seed, draw, uint32_t(i));
    if (score > best_score) {
      best_score = score;
      best = i;
    }
  }
  return best;
}

}  // namespace specq::cpu
