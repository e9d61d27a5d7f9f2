#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace specq {
namespace {

// Arrays of arrays are legal GGUF but never used by models; the limit keeps a crafted file from
// recursing deep enough to exhaust the stack.
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = uint64_t(1) << 20;

// Sequential little-endian reads that never go past the end: every read first checks that the
// bytes it needs are there, so truncation anywhere is a clean Error.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& source) : bytes_(bytes), source_(source) {}

  size_t position() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  void need(uint64_t n, std::string_view what) const {
    SPECQ_CHECK(n <= remaining(), "'{}' is truncated: {} needs {} bytes at offset {}, but only {} remain", source_,
                what, n, pos_, remaining());
  }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));  // the host is little-endian, as the format
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }

  const std::string& source() const { return source_; }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& source_;
  size_t pos_ = 0;
};

// Smallest encoded size of one value of `type` (strings: their length field), used to refuse an
// array count the remaining bytes cannot hold before allocating for it.
uint64_t min_encoded_size(GgufType type) {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: case GgufType::String: return 8;
    case GgufType::Array: return 12;  // element type + count
  }
  return 1;
}

bool known_type(uint32_t t) { return t <= uint32_t(GgufType::F64); }

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}

// Reads one scalar of an integer type (or bool) as int64.
int64_t read_integer(Cursor& in, GgufType type, const std::string& key) {
  switch (type) {
    case GgufType::U8: return in.read<uint8_t>(key);
    case GgufType::I8: return in.read<int8_t>(key);
    case GgufType::U16: return in.read<uint16_t>(key);
    case GgufType::I16: return in.read<int16_t>(key);
    case GgufType::U32: return in.read<uint32_t>(key);
    case GgufType::I32: return in.read<int32_t>(key);
    case GgufType::I64: return in.read<int64_t>(key);
    case GgufType::U64: {
      const uint64_t v = in.read<uint64_t>(key);
      SPECQ_CHECK(v <= uint64_t(std::numeric_limits<int64_t>::max()), "'{}': metadata '{}' holds the u64 {}, which "
                  "is out of the range specq reads", in.source(), key, v);
      return int64_t(v);
    }
    case GgufType::Bool: {
      const uint8_t b = in.read<uint8_t>(key);
      SPECQ_CHECK(b <= 1, "'{}': metadata '{}' holds the bool byte {}, expected 0 or 1", in.source(), key, b);
      return b;
    }
    default: break;
  }
  fail("'{}': metadata '{}': type {} is not an integer", in.source(), key, gguf_type_name(type));
}

GgufValue read_value(Cursor& in, GgufType type, const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::F32: v.number = in.read<float>(key); return v;
    case GgufType::F64: v.number = in.read<double>(key); return v;
    case GgufType::String: v.text = in.read_string(key); return v;
    case GgufType::Array: break;
    default: v.integer = read_integer(in, type, key); return v;
  }
  SPECQ_CHECK(depth < kMaxArrayDepth, "'{}': metadata '{}' nests arrays deeper than {}", in.source(), key,
              kMaxArrayDepth);
  const uint32_t element = in.read<uint32_t>(key);
  SPECQ_CHECK(known_type(element), "'{}': metadata '{}' is an array of unknown type {}", in.source(), key, element);
  v.element_type = GgufType(element);
  v.count = in.read<uint64_t>(key);
  // Each element takes at least min_encoded_size bytes: a count the file cannot hold is refused
  // before anything is allocated for it.
  SPECQ_CHECK(v.count <= in.remaining() / min_encoded_size(v.element_type),
              "'{}' is truncated or corrupt: metadata '{}' claims {} array elements of type {}, more than the {} "
              "remaining bytes can hold", in.source(), key, v.count, gguf_type_name(v.element_type), in.remaining());
  const size_t n = size_t(v.count);
  switch (v.element_type) {
    case GgufType::F32:
      v.floats.reserve(n);
      for (size_t i = 0; i < n; ++i) v.floats.push_back(in.read<float>(key));
      break;
    case GgufType::F64:
      v.floats.reserve(n);
      for (size_t i = 0; i < n; ++i) v.floats.push_back(in.read<double>(key));
      break;
    case GgufType::String:
      v.strings.reserve(n);
      for (size_t i = 0; i < n; ++i) v.strings.push_back(in.read_string(key));
      break;
    case GgufType::Array:
      v.items.reserve(n);
      for (size_t i = 0; i < n; ++i) v.items.push_back(read_value(in, GgufType::Array, key, depth + 1));
      break;
    default:
      v.ints.reserve(n);
      for (size_t i = 0; i < n; ++i) v.ints.push_back(read_integer(in, v.element_type, key));
      break;
  }
  return v;
}

// Reads one tensor info; its offset (relative to the data section) goes to `offset`.
GgufTensor read_tensor_info(Cursor& in, size_t index, uint64_t& offset) {
  GgufTensor t;
  t.name = in.read_string(fmt::format("the name of tensor #{}", index));
  const uint32_t n_dims = in.read<uint32_t>(t.name);
  SPECQ_CHECK(n_dims <= kMaxDims, "'{}': tensor '{}' has {} dimensions, at most {} are allowed", in.source(), t.name,
              n_dims, kMaxDims);
  uint64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t dim = in.read<uint64_t>(t.name);
    SPECQ_CHECK(dim <= uint64_t(std::numeric_limits<int64_t>::max()) && !__builtin_mul_overflow(numel, dim, &numel) &&
                    numel <= uint64_t(std::numeric_limits<int64_t>::max()),
                "'{}': tensor '{}' has dimensions whose element count overflows", in.source(), t.name);
    t.dims.push_back(int64_t(dim));
  }
  t.type = in.read<uint32_t>(t.name);
  const std::optional<GgmlTypeTraits> traits = ggml_type_traits(t.type);
  SPECQ_CHECK(traits.has_value(), "'{}': tensor '{}' has ggml type {}, which specq does not know", in.source(), t.name,
              t.type);
  // Blocks run along the first dimension: a row must hold whole blocks.
  const int64_t row = t.dims.empty() ? 1 : t.dims[0];
  SPECQ_CHECK(row % traits->block_elements == 0, "'{}': tensor '{}' of type {} has rows of {} values, not a multiple "
              "of its block size {}", in.source(), t.name, traits->name, row, traits->block_elements);
  uint64_t nbytes = 0;
  SPECQ_CHECK(!__builtin_mul_overflow(numel / uint64_t(traits->block_elements), uint64_t(traits->block_bytes), &nbytes),
              "'{}': tensor '{}' has a byte size that overflows", in.source(), t.name);
  t.nbytes = size_t(nbytes);
  offset = in.read<uint64_t>(t.name);
  return t;
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "?";
}

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::F32: return GgmlTypeTraits{"F32", 1, 4};
    case GgmlType::F16: return GgmlTypeTraits{"F16", 1, 2};
    case GgmlType::Q4_0: return GgmlTypeTraits{"Q4_0", 32, 18};
    case GgmlType::Q4_1: return GgmlTypeTraits{"Q4_1", 32, 20};
    case GgmlType::Q5_0: return GgmlTypeTraits{"Q5_0", 32, 22};
    case GgmlType::Q5_1: return GgmlTypeTraits{"Q5_1", 32, 24};
    case GgmlType::Q8_0: return GgmlTypeTraits{"Q8_0", 32, 34};
    case GgmlType::Q8_1: return GgmlTypeTraits{"Q8_1", 32, 36};
    case GgmlType::Q2_K: return GgmlTypeTraits{"Q2_K", 256, 84};
    case GgmlType::Q3_K: return GgmlTypeTraits{"Q3_K", 256, 110};
    case GgmlType::Q4_K: return GgmlTypeTraits{"Q4_K", 256, 144};
    case GgmlType::Q5_K: return GgmlTypeTraits{"Q5_K", 256, 176};
    case GgmlType::Q6_K: return GgmlTypeTraits{"Q6_K", 256, 210};
    case GgmlType::Q8_K: return GgmlTypeTraits{"Q8_K", 256, 292};
    case GgmlType::I8: return GgmlTypeTraits{"I8", 1, 1};
    case GgmlType::I16: return GgmlTypeTraits{"I16", 1, 2};
    case GgmlType::I32: return GgmlTypeTraits{"I32", 1, 4};
    case GgmlType::I64: return GgmlTypeTraits{"I64", 1, 8};
    case GgmlType::F64: return GgmlTypeTraits{"F64", 1, 8};
    case GgmlType::BF16: return GgmlTypeTraits{"BF16", 1, 2};
  }
  return std::nullopt;
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

const GgufTensor* GgufHeader::find(std::string_view name) const {
  const auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

const GgufValue* GgufHeader::value(const std::string& key) const {
  const auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufHeader::integer(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return std::nullopt;
  SPECQ_CHECK(is_integer_type(v->type), "'{}': metadata '{}' is a {}, expected an integer", source, key,
              gguf_type_name(v->type));
  return v->integer;
}

std::optional<double> GgufHeader::number(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return std::nullopt;
  if (is_integer_type(v->type)) return double(v->integer);
  SPECQ_CHECK(v->type == GgufType::F32 || v->type == GgufType::F64, "'{}': metadata '{}' is a {}, expected a number",
              source, key, gguf_type_name(v->type));
  return v->number;
}

std::optional<bool> GgufHeader::boolean(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return std::nullopt;
  SPECQ_CHECK(v->type == GgufType::Bool, "'{}': metadata '{}' is a {}, expected a bool", source, key,
              gguf_type_name(v->type));
  return v->integer != 0;
}

std::optional<std::string> GgufHeader::string(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return std::nullopt;
  SPECQ_CHECK(v->type == GgufType::String, "'{}': metadata '{}' is a {}, expected a string", source, key,
              gguf_type_name(v->type));
  return v->text;
}

const std::vector<std::string>* GgufHeader::strings(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return nullptr;
  SPECQ_CHECK(v->type == GgufType::Array && v->element_type == GgufType::String,
              "'{}': metadata '{}' is not an array of strings", source, key);
  return &v->strings;
}

const std::vector<int64_t>* GgufHeader::integers(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return nullptr;
  SPECQ_CHECK(v->type == GgufType::Array && is_integer_type(v->element_type),
              "'{}': metadata '{}' is not an array of integers", source, key);
  return &v->ints;
}

const std::vector<double>* GgufHeader::numbers(const std::string& key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return nullptr;
  SPECQ_CHECK(v->type == GgufType::Array && (v->element_type == GgufType::F32 || v->element_type == GgufType::F64),
              "'{}': metadata '{}' is not an array of floats", source, key);
  return &v->floats;
}

GgufHeader parse_gguf(std::span<const uint8_t> bytes, const std::string& source) {
  Cursor in(bytes, source);
  SPECQ_CHECK(bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0,
              "'{}' is not a GGUF file (it does not start with \"GGUF\")", source);
  in.read<uint32_t>("the magic");
  GgufHeader h;
  h.source = source;
  h.version = in.read<uint32_t>("the version");
  // A big-endian file (v3 allows them) shows its version byte-swapped.
  SPECQ_CHECK(h.version != 0x02000000u && h.version != 0x03000000u,
              "'{}' is a big-endian GGUF file, which specq does not read", source);
  SPECQ_CHECK(h.version == 2 || h.version == 3, "'{}' is GGUF version {}; specq reads versions 2 and 3", source,
              h.version);
  const uint64_t n_tensors = in.read<uint64_t>("the tensor count");
  const uint64_t n_kv = in.read<uint64_t>("the metadata count");
  // Minimal encodings: a key/value is a key length, a type and a 1-byte value; a tensor info a name
  // length, a dimension count, a type and an offset.
  SPECQ_CHECK(n_kv <= in.remaining() / 13, "'{}' is truncated or corrupt: {} metadata entries cannot fit in {} bytes",
              source, n_kv, in.remaining());
  SPECQ_CHECK(n_tensors <= in.remaining() / 24, "'{}' is truncated or corrupt: {} tensor infos cannot fit in {} bytes",
              source, n_tensors, in.remaining());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = in.read_string(fmt::format("the key of metadata entry #{}", i));
    const uint32_t type = in.read<uint32_t>(key);
    SPECQ_CHECK(known_type(type), "'{}': metadata '{}' has unknown value type {}", source, key, type);
    GgufValue v = read_value(in, GgufType(type), key, 0);
    SPECQ_CHECK(!h.metadata.contains(key), "'{}': metadata key '{}' appears twice", source, key);
    h.metadata.emplace(std::move(key), std::move(v));
  }
  if (const GgufValue* a = h.value("general.alignment")) {
    SPECQ_CHECK(a->type == GgufType::U32, "'{}': general.alignment is a {}, expected a u32", source,
                gguf_type_name(a->type));
    const uint64_t align = uint64_t(a->integer);
    SPECQ_CHECK(align > 0 && (align & (align - 1)) == 0 && align <= kMaxAlignment,
                "'{}': general.alignment {} is not a power of two up to {}", source, align, kMaxAlignment);
    h.alignment = align;
  }

  h.tensors.reserve(size_t(n_tensors));
  std::vector<uint64_t> offsets(static_cast<size_t>(n_tensors));
  for (size_t i = 0; i < offsets.size(); ++i) {
    h.tensors.push_back(read_tensor_info(in, i, offsets[i]));
    SPECQ_CHECK(h.index.emplace(h.tensors.back().name, i).second, "'{}': tensor '{}' appears twice", source,
                h.tensors.back().name);
  }

  // Tensor data starts at the first alignment boundary after the tensor infos.
  const uint64_t header_end = in.position();
  h.data_offset = (header_end + h.alignment - 1) / h.alignment * h.alignment;
  SPECQ_CHECK(h.tensors.empty() || h.data_offset <= bytes.size(),
              "'{}' is truncated: its tensor data would start at offset {}, past the end ({} bytes)", source,
              h.data_offset, bytes.size());
  const uint64_t data_size = h.tensors.empty() ? 0 : bytes.size() - h.data_offset;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    GgufTensor& t = h.tensors[i];
    const uint64_t offset = offsets[i];
    SPECQ_CHECK(offset % h.alignment == 0, "'{}': tensor '{}' starts at data offset {}, not a multiple of the "
                "alignment {}", source, t.name, offset, h.alignment);
    SPECQ_CHECK(offset <= data_size && t.nbytes <= data_size - offset,
                "'{}' is truncated: tensor '{}' needs bytes [{}, {}) of the data section, which has {} bytes", source,
                t.name, offset, offset + uint64_t(t.nbytes), data_size);
    t.data = bytes.data() + h.data_offset + offset;
  }

  // Tensors must not share bytes: overlapping ranges mean a corrupt (or crafted) file.
  std::vector<const GgufTensor*> order;
  for (const GgufTensor& t : h.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const GgufTensor* a, const GgufTensor* b) { return a->data < b->data; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& prev = *order[i - 1];
    SPECQ_CHECK(order[i]->data >= prev.data + prev.nbytes, "'{}': tensors '{}' and '{}' overlap in the file", source,
                prev.name, order[i]->name);
  }
  return h;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_shared<const MappedFile>(path)) {
  header_ = parse_gguf(std::span<const uint8_t>(file_->data(), file_->size()), path);
}

}  // namespace specq
