// Test helpers for building (broken) checkpoints on disk: a temporary directory, whole-file I/O, a
// minimal safetensors writer/reader (tests make their bad inputs from the good fixtures), and
// error_of() to look at an Error's message.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"

namespace specq::testing {

namespace fs = std::filesystem;

inline const fs::path kHfFixtures = fs::path(SPECQ_FIXTURE_DIR) / "hf";

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "specq-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// Copies fixture `name` into `dest`/`name` and returns the copy's path.
inline fs::path copy_fixture(const std::string& name, const fs::path& dest) {
  const fs::path out = dest / name;
  fs::copy(kHfFixtures / name, out, fs::copy_options::recursive);
  return out;
}

// A safetensors file as its header object and its data section, for editing.
struct SafetensorsParts {
  nlohmann::json header;
  std::string data;
};

inline std::string u64_le(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((v >> (8 * i)) & 0xff);
  return out;
}

inline std::string safetensors_bytes(const std::string& header_text, const std::string& data) {
  return u64_le(header_text.size()) + header_text + data;
}

inline std::string safetensors_bytes(const SafetensorsParts& parts) {
  return safetensors_bytes(parts.header.dump(), parts.data);
}

inline SafetensorsParts split_safetensors(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  return {nlohmann::json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

// The message of the specq::Error that f() throws; "" if it throws none (other exceptions propagate).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace specq::testing
