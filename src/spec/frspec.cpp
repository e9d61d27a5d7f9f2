#include "spec/frspec.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "io/torch_checkpoint.h"

namespace specq {

void TokenFrequencies::add(std::span<const int32_t> ids) {
  for (const int32_t id : ids) {
    SPECQ_CHECK(id >= 0 && size_t(id) < counts.size(), "token id {} outside the vocabulary of {}", id, counts.size());
    ++counts[size_t(id)];
  }
  tokens += ids.size();
  ++documents;
}

std::vector<int32_t> frequency_ranked_vocab(const TokenFrequencies& frequencies, int size,
                                            std::span<const int32_t> forced) {
  const int vocab = int(frequencies.counts.size());
  SPECQ_CHECK(size >= 1 && size <= vocab, "--vocab-size must be in [1, {}] (got {})", vocab, size);
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Stable on ids ascending, so equal counts (unseen ids included) keep id order.
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return frequencies.counts[size_t(a)] > frequencies.counts[size_t(b)];
  });
  order.resize(size_t(size));
  std::vector<int32_t> missing;
  for (const int32_t id : forced) {
    SPECQ_CHECK(id >= 0 && id < vocab, "forced token id {} outside the vocabulary of {}", id, vocab);
    if (std::find(order.begin(), order.end(), id) == order.end() &&
        std::find(missing.begin(), missing.end(), id) == missing.end())
      missing.push_back(id);
  }
  SPECQ_CHECK(missing.size() <= order.size(), "--vocab-size {} cannot hold the {} end-of-sequence ids", size,
              missing.size());
  std::copy(missing.begin(), missing.end(), order.end() - std::ptrdiff_t(missing.size()));
  return order;
}

void validate_token_map(std::span<const int32_t> ids, int vocab_size, const std::string& source) {
  SPECQ_CHECK(!ids.empty(), "token map '{}' is empty", source);
  SPECQ_CHECK(ids.size() <= size_t(vocab_size), "token map '{}' has {} ids; the vocabulary has {}", source,
              ids.size(), vocab_size);
  std::vector<bool> seen(size_t(vocab_size), false);
  for (const int32_t id : ids) {
    SPECQ_CHECK(id >= 0 && id < vocab_size, "token map '{}': id {} outside the vocabulary of {}", source, id,
                vocab_size);
    SPECQ_CHECK(!seen[size_t(id)], "token map '{}': id {} appears twice", source, id);
    seen[size_t(id)] = true;
  }
}

namespace {

std::vector<int32_t> ids_from_tensor(DType dtype, const std::vector<int64_t>& shape, const uint8_t* data,
                                     const std::string& source) {
  SPECQ_CHECK(shape.size() == 1, "token map '{}' must be a 1-D tensor (got {} dimensions)", source, shape.size());
  SPECQ_CHECK(dtype == DType::I64 || dtype == DType::I32, "token map '{}' must hold int64 or int32 ids (got {})",
              source, dtype_name(dtype));
  std::vector<int32_t> ids(static_cast<size_t>(shape[0]));
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t v = 0;
    if (dtype == DType::I64) {
      std::memcpy(&v, data + i * 8, 8);
    } else {
      int32_t w = 0;
      std::memcpy(&w, data + i * 4, 4);
      v = w;
    }
    SPECQ_CHECK(v >= 0 && v <= INT32_MAX, "token map '{}': id {} is not a token id", source, v);
    ids[i] = int32_t(v);
  }
  return ids;
}

}  // namespace

std::vector<int32_t> load_token_map(const std::string& path, int vocab_size) {
  std::error_code ec;
  SPECQ_CHECK(std::filesystem::is_regular_file(path, ec), "token map '{}' not found", path);
  std::vector<int32_t> ids;
  if (std::filesystem::path(path).extension() == ".safetensors") {
    const SafetensorsFile file(path);
    const SafetensorsTensor* t = file.find("token_map");
    if (t == nullptr && file.header().tensors.size() == 1) t = &file.header().tensors.front();
    SPECQ_CHECK(t != nullptr, "token map '{}' has no tensor 'token_map'", path);
    ids = ids_from_tensor(t->dtype, t->shape, t->data, path);
  } else {
    const TorchCheckpoint file(path);
    SPECQ_CHECK(file.tensors().size() == 1, "token map '{}' must hold one tensor of ids (it holds {})", path,
                file.tensors().size());
    const TorchTensor& t = file.tensors().front();
    ids = ids_from_tensor(t.dtype, t.shape, t.data, path);
  }
  validate_token_map(ids, vocab_size, path);
  return ids;
}

void save_token_map(const std::string& path, std::span<const int32_t> ids,
                    const std::vector<std::pair<std::string, std::string>>& metadata) {
  SPECQ_CHECK(std::filesystem::path(path).extension() == ".safetensors",
              "--out '{}': token maps are written as .safetensors", path);
  std::vector<uint8_t> bytes(ids.size() * 8);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t v = ids[i];
    std::memcpy(bytes.data() + i * 8, &v, 8);
  }
  SafetensorsWriter writer;
  writer.add_copy("token_map", DType::I64, {int64_t(ids.size())}, std::move(bytes));
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  writer.write(path);
}

}  // namespace specq
