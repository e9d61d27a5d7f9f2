// GGUF files (llama.cpp's format, versions 2 and 3, little-endian), read in place: a header
// ("GGUF", version, tensor count, metadata count), typed metadata key/values, tensor infos (name,
// dims, ggml type, offset), then the tensor data from the first `general.alignment` boundary after
// the header. Every count, length and offset is checked against the bytes that are really there, so
// a truncated or crafted file is an Error naming the file (and key or tensor), never a crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"

namespace specq {

// Metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GgufType type);

// One metadata value. Scalars use the field of their kind; arrays fill the vector of their element
// kind (integers and bools in `ints`, floats in `floats`, strings in `strings`, arrays in `items`).
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType element_type = GgufType::U8;  // arrays only
  int64_t integer = 0;                   // integer types and bool; u64 values must fit in int64
  double number = 0.0;                   // f32 / f64
  std::string text;                      // string
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> items;
  uint64_t count = 0;  // arrays: element count
};

// Tensor element types (ggml_type ids). Those listed have a known block layout, so their byte size
// can be checked; which of them a model may use is the model loader's business.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
struct GgmlTypeTraits {
  std::string_view name;
  int64_t block_elements = 0;  // values per block (1 for plain types)
  int64_t block_bytes = 0;     // bytes per block
};
// nullopt for a type id this reader does not know.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type);

struct GgufTensor {
  std::string name;
  uint32_t type = 0;           // a GgmlType with known traits
  std::vector<int64_t> dims;   // ggml order: dims[0] varies fastest (a matrix's columns)
  const uint8_t* data = nullptr;  // inside the parsed bytes
  size_t nbytes = 0;
  int64_t numel() const;
  GgmlType ggml_type() const { return GgmlType(type); }
};

struct GgufHeader {
  std::string source;  // the file, for messages
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // where tensor data starts in the file
  std::map<std::string, GgufValue> metadata;
  std::vector<GgufTensor> tensors;  // in file order, names unique
  std::map<std::string, size_t, std::less<>> index;  // name -> position in `tensors`

  const GgufTensor* find(std::string_view name) const;  // nullptr if absent
  const GgufValue* value(const std::string& key) const;  // nullptr if absent

  // Typed metadata getters: nullopt / nullptr when the key is absent; an Error naming the file and
  // key when it holds another type (or an integer out of range of the int the caller wants).
  std::optional<int64_t> integer(const std::string& key) const;     // any integer type
  std::optional<double> number(const std::string& key) const;       // f32, f64 or any integer
  std::optional<bool> boolean(const std::string& key) const;
  std::optional<std::string> string(const std::string& key) const;
  const std::vector<std::string>* strings(const std::string& key) const;  // array of strings
  const std::vector<int64_t>* integers(const std::string& key) const;     // array of integers
  const std::vector<double>* numbers(const std::string& key) const;       // array of floats
};

// Parses a whole GGUF file held in memory; tensor data pointers point into `bytes`.
GgufHeader parse_gguf(std::span<const uint8_t> bytes, const std::string& source);

// One memory-mapped .gguf file.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  const GgufHeader& header() const { return header_; }
  std::shared_ptr<const MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  GgufHeader header_;
};

}  // namespace specq
