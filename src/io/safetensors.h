// safetensors checkpoints, read in place: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the tensor bytes. Every field an
// attacker controls is validated; each problem is an Error naming the file (and tensor).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace specq {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the parsed bytes; nbytes == numel * dtype_size
  size_t nbytes = 0;
  int64_t numel() const;
};

struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;  // "__metadata__", string to string
  std::vector<SafetensorsTensor> tensors;       // sorted by name, names unique
  const SafetensorsTensor* find(const std::string& name) const;  // nullptr if absent
};

// Parses a whole safetensors file held in memory; tensor data pointers point into `bytes`.
// `source` names the bytes in error messages (the file path).
SafetensorsHeader parse_safetensors(std::span<const uint8_t> bytes, const std::string& source);

// One memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const SafetensorsHeader& header() const { return header_; }
  const SafetensorsTensor* find(const std::string& name) const { return header_.find(name); }
  const std::string& path() const { return file_->path(); }
  std::shared_ptr<const MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  SafetensorsHeader header_;
};

// The tensors of a Hugging Face model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file), each shard opened once.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir);
  // The tensor, or nullptr if the checkpoint has none of that name.
  const SafetensorsTensor* find(const std::string& name) const;
  // Where `name` lives (for messages); "" if absent.
  std::string file_of(const std::string& name) const;
  std::vector<std::shared_ptr<const MappedFile>> mappings() const;
  size_t shard_count() const { return shards_.size(); }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> index into shards_
};

}  // namespace specq
