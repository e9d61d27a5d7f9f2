#include "spec/eagle_loader.h"

#include <fmt/ranges.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"

namespace specq {
namespace {

// One tensor of either checkpoint format.
struct TensorRef {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
};

// Weights are used in place; a tensor whose bytes are misaligned for its dtype is copied.
Weight view(const TensorRef& t, EagleWeights& w) {
  Weight out;
  out.dtype = t.dtype;
  out.shape = t.shape;
  out.data = t.data;
  if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) != 0) {
    auto copy = std::make_shared<std::vector<uint8_t>>(t.data, t.data + out.nbytes());
    w.storage.push_back(std::shared_ptr<const void>(copy, copy->data()));
    out.data = copy->data();
  }
  return out;
}

std::vector<float> to_vector(const TensorRef& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  cpu::to_float(t.data, t.dtype, n, v.data());
  return v;
}

}  // namespace

EagleWeights load_eagle_weights(const std::string& dir, const ModelConfig& base) {
  EagleWeights w;
  std::function<std::optional<TensorRef>(const std::string&)> lookup;
  const std::filesystem::path torch_file = std::filesystem::path(dir) / "pytorch_model.bin";
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "model.safetensors", ec) &&
      !std::filesystem::exists(std::filesystem::path(dir) / "model.safetensors.index.json", ec) &&
      std::filesystem::exists(torch_file, ec)) {
    const auto checkpoint = std::make_shared<TorchCheckpoint>(torch_file.string());
    w.storage.push_back(checkpoint);  // the views below point into its mapped file
    lookup = [checkpoint](const std::string& name) -> std::optional<TensorRef> {
      const TorchTensor* t = checkpoint->find(name);
      if (t == nullptr) return std::nullopt;
      return TensorRef{t->dtype, t->shape, t->data};
    };
  } else {
    const auto checkpoint = std::make_shared<SafetensorsCheckpoint>(dir);
    w.storage.push_back(checkpoint);
    lookup = [checkpoint](const std::string& name) -> std::optional<TensorRef> {
      const SafetensorsTensor* t = checkpoint->find(name);
      if (t == nullptr) return std::nullopt;
      return TensorRef{t->dtype, t->shape, t->data};
    };
  }
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    const std::optional<TensorRef> t = lookup(name);
    SPECQ_CHECK(t.has_value(), "EAGLE checkpoint '{}' has no tensor '{}'", dir, name);
    SPECQ_CHECK(t->shape == shape, "EAGLE checkpoint '{}': '{}' has shape [{}], expected [{}] for this base model",
                dir, name, fmt::join(t->shape, ", "), fmt::join(shape, ", "));
    SPECQ_CHECK(t->dtype == DType::F32 || t->dtype == DType::F16 || t->dtype == DType::BF16,
                "EAGLE checkpoint '{}': '{}' is not a floating-point tensor", dir, name);
    return *t;
  };
  const int64_t h = base.hidden_size, inter = base.intermediate_size;

  // fc.weight [H, 2H] multiplies concat(embedding, feature): split its columns into two [H, H] halves.
  const TensorRef fc = get("fc.weight", {h, 2 * h});
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
  if (lookup("fc.bias").has_value()) w.fc_bias = to_vector(get("fc.bias", {h}));

  const std::string layer = "layers.0.";
  w.wq = view(get(layer + "self_attn.q_proj.weight", {base.q_dim(), h}), w);
  w.wk = view(get(layer + "self_attn.k_proj.weight", {base.kv_dim(), h}), w);
  w.wv = view(get(layer + "self_attn.v_proj.weight", {base.kv_dim(), h}), w);
  w.wo = view(get(layer + "self_attn.o_proj.weight", {h, base.q_dim()}), w);
  w.ffn_norm = to_vector(get(layer + "post_attention_layernorm.weight", {h}));
  w.w_gate = view(get(layer + "mlp.gate_proj.weight", {inter, h}), w);
  w.w_up = view(get(layer + "mlp.up_proj.weight", {inter, h}), w);
  w.w_down = view(get(layer + "mlp.down_proj.weight", {h, inter}), w);
  return w;
}

}  // namespace specq
