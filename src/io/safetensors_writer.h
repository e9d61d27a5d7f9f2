// Writes .safetensors files: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {...}} padded with spaces to 8 bytes, then
// the tensor bytes with no holes (the format forbids them). Tensors are laid out by descending
// element size, so every tensor starts aligned to its element size and can be used in place.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace specq {

// "F32", "F16", "BF16", "I8", "U8", "I32", "I64": the format's names of our dtypes.
std::string_view safetensors_dtype_name(DType dtype);

class SafetensorsWriter {
 public:
  // Adds a tensor whose bytes (numel * dtype_size) stay valid until write() returns.
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data);
  // Adds a tensor and keeps its bytes.
  void add_copy(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  bool has(const std::string& name) const;
  size_t size() const { return tensors_.size(); }
  // Writes PATH.tmp, then renames it to PATH, so a failed write never leaves a truncated file.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
  };
  std::vector<Entry> tensors_;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace specq
