// Whole-file reads for data sets and configs; ".gz" files are decompressed transparently.
#pragma once
#include <string>

namespace specq {

// Throws specq::Error if the file cannot be read or is a corrupt gzip stream.
std::string read_text_file(const std::string& path);

}  // namespace specq
