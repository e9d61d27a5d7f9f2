#include "model/config.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace specq {

void ModelConfig::validate() const {
  SPECQ_CHECK(vocab_size > 0, "config: vocab_size must be positive (got {})", vocab_size);
  SPECQ_CHECK(hidden_size > 0, "config: hidden_size must be positive (got {})", hidden_size);
  SPECQ_CHECK(intermediate_size > 0, "config: intermediate_size must be positive (got {})", intermediate_size);
  SPECQ_CHECK(num_layers > 0, "config: num_hidden_layers must be positive (got {})", num_layers);
  SPECQ_CHECK(num_heads > 0, "config: num_attention_heads must be positive (got {})", num_heads);
  SPECQ_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0,
              "config: num_key_value_heads ({}) must divide num_attention_heads ({})", num_kv_heads, num_heads);
  SPECQ_CHECK(head_dim > 0 && head_dim % 2 == 0, "config: head_dim must be positive and even (got {})", head_dim);
  SPECQ_CHECK(rms_norm_eps > 0.0f, "config: rms_norm_eps must be positive");
  SPECQ_CHECK(rope_theta > 0.0f, "config: rope_theta must be positive");
  SPECQ_CHECK(max_position_embeddings > 0, "config: max_position_embeddings must be positive");
  SPECQ_CHECK(rope_scaling.factor > 0.0f, "config: rope scaling factor must be positive");
  if (rope_scaling.type == RopeScaling::Type::Factors) {
    SPECQ_CHECK(rope_scaling.freq_factors.size() == size_t(head_dim / 2),
                "config: {} RoPE frequency factors for head_dim {} (expected {})", rope_scaling.freq_factors.size(),
                head_dim, head_dim / 2);
    for (float f : rope_scaling.freq_factors)
      SPECQ_CHECK(f > 0.0f && std::isfinite(f), "config: RoPE frequency factor {} is not a positive number", f);
  }
}

std::vector<float> rope_inv_freq(const ModelConfig& config) {
  const int half = config.head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    // Same expression as Hugging Face: theta ** (2i / d) in double, then inverted.
    inv_freq[i] = float(1.0 / std::pow(double(config.rope_theta), double(2 * i) / config.head_dim));
  }
  const RopeScaling& s = config.rope_scaling;
  if (s.type == RopeScaling::Type::Linear) {
    for (float& f : inv_freq) f /= s.factor;
  } else if (s.type == RopeScaling::Type::Factors) {
    for (int i = 0; i < half; ++i) inv_freq[i] /= s.freq_factors[size_t(i)];
  } else if (s.type == RopeScaling::Type::Llama3) {
    // Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    const double low_wavelen = s.original_max_position / s.low_freq_factor;
    const double high_wavelen = s.original_max_position / s.high_freq_factor;
    for (float& f : inv_freq) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = float(f / s.factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = float((1.0 - smooth) * f / s.factor + smooth * f);
      }
    }
  }
  return inv_freq;
}

}  // namespace specq
