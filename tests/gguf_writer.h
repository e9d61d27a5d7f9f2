// Writes GGUF files for tests: metadata of any type, tensors with given bytes, chosen alignment.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace specq::testing {

class GgufWriter {
 public:
  template <typename T>
  static std::string pod(T v) {
    std::string out(sizeof(T), '\0');
    std::memcpy(out.data(), &v, sizeof(T));
    return out;
  }
  static std::string str(const std::string& s) { return pod<uint64_t>(s.size()) + s; }

  // A key with an already encoded value (type id + payload), for odd or broken entries.
  void raw(const std::string& key, uint32_t type, const std::string& payload) {
    kv_ += str(key) + pod(type) + payload;
    ++n_kv_;
  }
  void u32(const std::string& key, uint32_t v) { raw(key, uint32_t(GgufType::U32), pod(v)); }
  void i32(const std::string& key, int32_t v) { raw(key, uint32_t(GgufType::I32), pod(v)); }
  void f32(const std::string& key, float v) { raw(key, uint32_t(GgufType::F32), pod(v)); }
  void boolean(const std::string& key, bool v) { raw(key, uint32_t(GgufType::Bool), pod<uint8_t>(v ? 1 : 0)); }
  void string(const std::string& key, const std::string& v) { raw(key, uint32_t(GgufType::String), str(v)); }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    std::string payload = pod(uint32_t(GgufType::String)) + pod<uint64_t>(v.size());
    for (const std::string& s : v) payload += str(s);
    raw(key, uint32_t(GgufType::Array), payload);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& v) {
    std::string payload = pod(uint32_t(GgufType::I32)) + pod<uint64_t>(v.size());
    for (int32_t x : v) payload += pod(x);
    raw(key, uint32_t(GgufType::Array), payload);
  }

  // dims in ggml order (fastest first); `data` must have the size the type implies.
  void tensor(const std::string& name, std::vector<uint64_t> dims, GgmlType type, std::string data) {
    tensors_.push_back({name, std::move(dims), uint32_t(type), std::move(data)});
  }

  std::string bytes(uint64_t alignment = 32, uint32_t version = 3) const {
    std::string out = "GGUF" + pod(version) + pod<uint64_t>(tensors_.size()) + pod<uint64_t>(n_kv_) + kv_;
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const Tensor& t : tensors_) {
      out += str(t.name) + pod<uint32_t>(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) out += pod(d);
      out += pod(t.type) + pod(offset);
      offsets.push_back(offset);
      offset = (offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    const size_t data_start = out.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(data_start + offsets[i], '\0');
      out += tensors_[i].data;
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::string data;
  };
  std::string kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace specq::testing
