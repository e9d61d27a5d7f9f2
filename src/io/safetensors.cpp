#include "io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <string_view>

#include "core/error.h"
#include "io/json_file.h"

namespace specq {
namespace fs = std::filesystem;

namespace {

// Larger headers are refused before parsing: real ones are a few hundred bytes per tensor.
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

constexpr std::string_view kSupportedDTypes = "F32, F16, BF16, I8, U8, I32, I64";

bool parse_dtype(const std::string& name, DType& out) {
  static const std::pair<std::string_view, DType> table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I8", DType::I8},
      {"U8", DType::U8},   {"I32", DType::I32}, {"I64", DType::I64},
  };
  for (const auto& [text, dtype] : table) {
    if (name == text) {
      out = dtype;
      return true;
    }
  }
  return false;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

SafetensorsTensor parse_tensor(const std::string& name, const nlohmann::json& entry, const uint8_t* data_begin,
                               uint64_t data_size, const std::string& source) {
  SPECQ_CHECK(entry.is_object(), "'{}': tensor '{}' is a JSON {}, expected an object", source, name,
              entry.type_name());
  SafetensorsTensor t;
  t.name = name;

  const auto dtype = entry.find("dtype");
  SPECQ_CHECK(dtype != entry.end(), "'{}': tensor '{}' has no dtype", source, name);
  SPECQ_CHECK(dtype->is_string(), "'{}': tensor '{}' has a dtype that is a JSON {}, expected a string", source, name,
              dtype->type_name());
  const std::string& dtype_text = dtype->get_ref<const std::string&>();
  SPECQ_CHECK(parse_dtype(dtype_text, t.dtype), "'{}': tensor '{}' has dtype '{}', which specq does not support ({})",
              source, name, dtype_text, kSupportedDTypes);

  const auto shape = entry.find("shape");
  SPECQ_CHECK(shape != entry.end() && shape->is_array(), "'{}': tensor '{}' has no shape array", source, name);
  // numel and byte size in unsigned 64-bit with explicit overflow checks: a shape of huge dims must
  // not wrap around to a small size that then passes the offset check.
  uint64_t numel = 1;
  for (const nlohmann::json& dim : *shape) {
    SPECQ_CHECK(dim.is_number_unsigned(), "'{}': tensor '{}' has a shape entry {} that is not a non-negative integer",
                source, name, dim.dump());
    const uint64_t d = dim.get<uint64_t>();
    SPECQ_CHECK(d <= uint64_t(std::numeric_limits<int64_t>::max()) && !__builtin_mul_overflow(numel, d, &numel),
                "'{}': tensor '{}' has a shape {} whose element count overflows", source, name, shape->dump());
    t.shape.push_back(int64_t(d));
  }
  uint64_t nbytes = 0;
  SPECQ_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes) &&
                  nbytes <= uint64_t(std::numeric_limits<int64_t>::max()),
              "'{}': tensor '{}' has a shape {} whose byte size overflows", source, name, shape->dump());

  const auto offsets = entry.find("data_offsets");
  SPECQ_CHECK(offsets != entry.end() && offsets->is_array() && offsets->size() == 2 &&
                  (*offsets)[0].is_number_unsigned() && (*offsets)[1].is_number_unsigned(),
              "'{}': tensor '{}' needs data_offsets [begin, end] of two non-negative integers", source, name);
  const uint64_t begin = (*offsets)[0].get<uint64_t>(), end = (*offsets)[1].get<uint64_t>();
  SPECQ_CHECK(begin <= end, "'{}': tensor '{}' has data_offsets [{}, {}] with end before begin", source, name, begin,
              end);
  SPECQ_CHECK(end <= data_size, "'{}': tensor '{}' has data_offsets [{}, {}] beyond the {} data bytes of the file",
              source, name, begin, end, data_size);
  SPECQ_CHECK(end - begin == nbytes,
              "'{}': tensor '{}' has {} data bytes, but its shape {} and dtype {} need {} bytes", source, name,
              end - begin, shape->dump(), dtype_text, nbytes);
  t.data = data_begin + begin;
  t.nbytes = size_t(nbytes);
  return t;
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const SafetensorsTensor* SafetensorsHeader::find(const std::string& name) const {
  const auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                                   [](const SafetensorsTensor& t, const std::string& n) { return t.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

SafetensorsHeader parse_safetensors(std::span<const uint8_t> bytes, const std::string& source) {
  SPECQ_CHECK(bytes.size() >= 8, "'{}' is not a safetensors file: {} bytes is too short for the header length",
              source, bytes.size());
  const uint64_t header_len = read_u64_le(bytes.data());
  const uint64_t rest = bytes.size() - 8;
  SPECQ_CHECK(header_len <= rest,
              "'{}' is not a valid safetensors file: its header length {} exceeds the {} bytes that follow "
              "(truncated or not safetensors)",
              source, header_len, rest);
  SPECQ_CHECK(header_len <= kMaxHeaderBytes, "'{}': safetensors header of {} bytes exceeds the limit of {} bytes",
              source, header_len, kMaxHeaderBytes);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), size_t(header_len));
  const nlohmann::json header = parse_json_strict(text, fmt::format("'{}' (safetensors header)", source));
  SPECQ_CHECK(header.is_object(), "'{}': safetensors header is a JSON {}, expected an object", source,
              header.type_name());

  const uint8_t* data_begin = bytes.data() + 8 + header_len;
  const uint64_t data_size = rest - header_len;
  SafetensorsHeader out;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      SPECQ_CHECK(value.is_object(), "'{}': __metadata__ is a JSON {}, expected an object", source,
                  value.type_name());
      for (const auto& [meta_key, meta_value] : value.items()) {
        SPECQ_CHECK(meta_value.is_string(), "'{}': __metadata__ entry '{}' is a JSON {}, expected a string", source,
                    meta_key, meta_value.type_name());
        out.metadata.emplace(meta_key, meta_value.get<std::string>());
      }
      continue;
    }
    out.tensors.push_back(parse_tensor(key, value, data_begin, data_size, source));
  }
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.name < b.name; });

  // Tensors must not share bytes: overlapping ranges mean a corrupt (or crafted) file. An empty
  // tensor (QQQ's per-channel s_group is [0]) may sit at the offset where the next one starts.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const SafetensorsTensor& t : out.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
    return a->data != b->data ? a->data < b->data : a->nbytes < b->nbytes;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsTensor& prev = *by_offset[i - 1];
    SPECQ_CHECK(by_offset[i]->data >= prev.data + prev.nbytes, "'{}': tensors '{}' and '{}' overlap in the file",
                source, prev.name, by_offset[i]->name);
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_shared<const MappedFile>(path)) {
  header_ = parse_safetensors(std::span<const uint8_t>(file_->data(), file_->size()), path);
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) {
  const fs::path root(dir);
  // model_gptq.safetensors: the name SpecMQuant's converters give their one file (io/marlin_checkpoint.h).
  fs::path single = root / "model.safetensors";
  const fs::path index = root / "model.safetensors.index.json", seed_converted = root / "model_gptq.safetensors";
  std::error_code ec;
  if (!fs::exists(single, ec) && !fs::exists(index, ec) && fs::exists(seed_converted, ec)) single = seed_converted;
  if (fs::exists(single, ec)) {
    shards_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const SafetensorsTensor& t : shards_[0]->header().tensors) shard_of_.emplace(t.name, 0);
    return;
  }
  SPECQ_CHECK(fs::exists(index, ec), "'{}' has neither model.safetensors nor model.safetensors.index.json", dir);

  const std::string index_path = index.string();
  const nlohmann::json json = read_json_file(index_path);
  SPECQ_CHECK(json.is_object(), "'{}' is a JSON {}, expected an object", index_path, json.type_name());
  const auto weight_map = json.find("weight_map");
  SPECQ_CHECK(weight_map != json.end() && weight_map->is_object(), "'{}' has no \"weight_map\" object", index_path);
  std::map<std::string, size_t> shard_index;  // shard file name -> index into shards_
  for (const auto& [name, file] : weight_map->items()) {
    SPECQ_CHECK(file.is_string(), "'{}': weight_map entry '{}' is a JSON {}, expected a file name", index_path, name,
                file.type_name());
    const std::string& file_name = file.get_ref<const std::string&>();
    // Shards are files beside the index; a path that leaves the directory is refused.
    const fs::path relative(file_name);
    const bool escapes =
        relative.empty() || relative.is_absolute() ||
        std::any_of(relative.begin(), relative.end(), [](const fs::path& part) { return part == ".."; });
    SPECQ_CHECK(!escapes, "'{}': weight_map entry '{}' names the shard '{}', which is not a file inside '{}'",
                index_path, name, file_name, dir);
    auto [it, inserted] = shard_index.emplace(file_name, shards_.size());
    if (inserted) shards_.push_back(std::make_unique<SafetensorsFile>((root / relative).string()));
    SPECQ_CHECK(shards_[it->second]->find(name) != nullptr,
                "'{}' puts tensor '{}' in '{}', but that shard does not contain it", index_path, name, file_name);
    shard_of_.emplace(name, it->second);
  }
}

const SafetensorsTensor* SafetensorsCheckpoint::find(const std::string& name) const {
  const auto it = shard_of_.find(name);
  return it == shard_of_.end() ? nullptr : shards_[it->second]->find(name);
}

std::string SafetensorsCheckpoint::file_of(const std::string& name) const {
  const auto it = shard_of_.find(name);
  return it == shard_of_.end() ? std::string() : shards_[it->second]->path();
}

std::vector<std::shared_ptr<const MappedFile>> SafetensorsCheckpoint::mappings() const {
  std::vector<std::shared_ptr<const MappedFile>> out;
  for (const auto& shard : shards_) out.push_back(shard->mapping());
  return out;
}

}  // namespace specq
