#include "io/safetensors_writer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace specq {

std::string_view safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
  SPECQ_CHECK(!name.empty() && name != "__metadata__", "safetensors: '{}' is not a valid tensor name", name);
  SPECQ_CHECK(!has(name), "safetensors: tensor '{}' added twice", name);
  int64_t numel = 1;
  for (int64_t d : shape) {
    SPECQ_CHECK(d >= 0, "safetensors: tensor '{}' has a negative dimension", name);
    numel *= d;
  }
  SPECQ_CHECK(data != nullptr || numel == 0, "safetensors: tensor '{}' has no data", name);
  tensors_.push_back({name, dtype, std::move(shape), data, size_t(numel) * dtype_size(dtype)});
}

void SafetensorsWriter::add_copy(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                 std::vector<uint8_t> bytes) {
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add(name, dtype, std::move(shape), owned->data());
  SPECQ_CHECK(tensors_.back().nbytes == owned->size(), "safetensors: tensor '{}' has {} bytes, its shape needs {}",
              name, owned->size(), tensors_.back().nbytes);
  owned_.push_back(std::move(owned));
}

bool SafetensorsWriter::has(const std::string& name) const {
  return std::any_of(tensors_.begin(), tensors_.end(), [&](const Entry& e) { return e.name == name; });
}

void SafetensorsWriter::write(const std::string& path) const {
  std::vector<const Entry*> order;
  for (const Entry& e : tensors_) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return dtype_size(a->dtype) != dtype_size(b->dtype) ? dtype_size(a->dtype) > dtype_size(b->dtype)
                                                        : a->name < b->name;
  });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const Entry* e : order) {
    header[e->name] = {{"dtype", safetensors_dtype_name(e->dtype)},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->nbytes}}};
    offset += e->nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  SPECQ_CHECK(f != nullptr, "cannot write '{}'", tmp);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  bool ok = std::fwrite(length, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const Entry* e : order)
    ok = ok && (e->nbytes == 0 || std::fwrite(e->data, 1, e->nbytes, f) == e->nbytes);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail("writing '{}' failed (disk full?)", path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  SPECQ_CHECK(!ec, "cannot rename '{}' to '{}': {}", tmp, path, ec.message());
}

}  // namespace specq
