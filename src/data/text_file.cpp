#include "data/text_file.h"

#include <zlib.h>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace specq {

namespace {

std::string gunzip_file(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  SPECQ_CHECK(file != nullptr, "cannot open {}", path);
  std::string contents;
  char buffer[1 << 16];
  int read = 0;
  while ((read = gzread(file, buffer, sizeof(buffer))) > 0) contents.append(buffer, static_cast<size_t>(read));
  int error_code = Z_OK;
  const std::string message = read < 0 ? gzerror(file, &error_code) : "";
  gzclose(file);
  SPECQ_CHECK(read == 0, "{} is not a valid gzip file: {}", path, message);
  return contents;
}

}  // namespace

std::string read_text_file(const std::string& path) {
  if (path.size() > 3 && path.ends_with(".gz")) return gunzip_file(path);
  std::ifstream in(path, std::ios::binary);
  SPECQ_CHECK(in.good(), "cannot open {}", path);
  std::ostringstream contents;
  contents << in.rdbuf();
  SPECQ_CHECK(!in.bad(), "error reading {}", path);
  return contents.str();
}

}  // namespace specq
