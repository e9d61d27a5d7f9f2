#include "spec/eagle_loader.h"

#include <fmt/ranges.h>

#include <cstring>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace specq {
namespace {

Weight view(const SafetensorsTensor& t) {
  Weight w;
  w.dtype = t.dtype;
  w.shape = t.shape;
  w.data = t.data;
  return w;
}

std::vector<float> to_vector(const SafetensorsTensor& t) {
  std::vector<float> v(size_t(t.numel()));
  cpu::to_float(t.data, t.dtype, t.numel(), v.data());
  return v;
}

}  // namespace

EagleWeights load_eagle_weights(const std::string& dir, const ModelConfig& base) {
  const auto checkpoint = std::make_shared<SafetensorsCheckpoint>(dir);
  auto get = [&](const std::string& name, std::vector<int64_t> shape) -> const SafetensorsTensor& {
    const SafetensorsTensor* t = checkpoint->find(name);
    SPECQ_CHECK(t != nullptr, "EAGLE checkpoint '{}' has no tensor '{}'", dir, name);
    SPECQ_CHECK(t->shape == shape, "EAGLE checkpoint '{}': '{}' has shape [{}], expected [{}] for this base model",
                dir, name, fmt::join(t->shape, ", "), fmt::join(shape, ", "));
    SPECQ_CHECK(t->dtype == DType::F32 || t->dtype == DType::F16 || t->dtype == DType::BF16,
                "EAGLE checkpoint '{}': '{}' is not a floating-point tensor", dir, name);
    return *t;
  };
  const int64_t h = base.hidden_size, inter = base.intermediate_size;
  EagleWeights w;
  w.storage.push_back(checkpoint);  // the views below point into its mapped files

  // fc.weight [H, 2H] multiplies concat(embedding, feature): split its columns into two [H, H] halves.
  const SafetensorsTensor& fc = get("fc.weight", {h, 2 * h});
  const size_t esize = dtype_size(fc.dtype), half_row = size_t(h) * esize;
  auto halves = std::make_shared<std::vector<uint8_t>>(2 * size_t(h) * half_row);
  for (int64_t r = 0; r < h; ++r) {
    std::memcpy(halves->data() + size_t(r) * half_row, fc.data + size_t(r) * 2 * half_row, half_row);
    std::memcpy(halves->data() + (size_t(h) + size_t(r)) * half_row, fc.data + size_t(r) * 2 * half_row + half_row,
                half_row);
  }
  w.storage.push_back(std::shared_ptr<const void>(halves, halves->data()));
  for (Weight* part : {&w.fc1, &w.fc2}) {
    part->dtype = fc.dtype;
    part->shape = {h, h};
  }
  w.fc1.data = halves->data();
  w.fc2.data = halves->data() + size_t(h) * half_row;
  if (checkpoint->find("fc.bias") != nullptr) w.fc_bias = to_vector(get("fc.bias", {h}));

  const std::string layer = "layers.0.";
  w.wq = view(get(layer + "self_attn.q_proj.weight", {base.q_dim(), h}));
  w.wk = view(get(layer + "self_attn.k_proj.weight", {base.kv_dim(), h}));
  w.wv = view(get(layer + "self_attn.v_proj.weight", {base.kv_dim(), h}));
  w.wo = view(get(layer + "self_attn.o_proj.weight", {h, base.q_dim()}));
  w.ffn_norm = to_vector(get(layer + "post_attention_layernorm.weight", {h}));
  w.w_gate = view(get(layer + "mlp.gate_proj.weight", {inter, h}));
  w.w_up = view(get(layer + "mlp.up_proj.weight", {inter, h}));
  w.w_down = view(get(layer + "mlp.down_proj.weight", {h, inter}));
  return w;
}

}  // namespace specq
