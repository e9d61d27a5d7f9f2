#include "io/loader.h"

#include <filesystem>
#include <optional>
#include <vector>

#include "core/error.h"
#include "io/gguf_model.h"
#include "io/hf_model.h"
#include "io/llama2c.h"
#include "io/synthetic.h"

namespace specq {
namespace fs = std::filesystem;

namespace {

// In a llama2.c model directory: the checkpoint (.bin that is not a tokenizer) and its tokenizer.
Model load_llama2c_directory(const fs::path& dir) {
  std::vector<fs::path> checkpoints, tokenizers;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".bin") continue;
    const std::string name = entry.path().filename().string();
    (name.rfind("tok", 0) == 0 ? tokenizers : checkpoints).push_back(entry.path());
  }
  SPECQ_CHECK(!checkpoints.empty(), "'{}' holds no config.json and no llama2.c .bin checkpoint", dir.string());
  SPECQ_CHECK(checkpoints.size() == 1, "'{}' holds {} .bin checkpoints; pass the file itself", dir.string(),
              checkpoints.size());
  Model m = load_llama2c(checkpoints[0].string());
  if (tokenizers.size() == 1) m.tokenizer_path = tokenizers[0].string();
  return m;
}

// The one .gguf file in a directory without config.json; nullopt if there is none, an Error if
// there are several (which one is meant is not ours to guess).
std::optional<fs::path> single_gguf(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ".gguf") found.push_back(entry.path());
  if (found.empty()) return std::nullopt;
  SPECQ_CHECK(found.size() == 1, "'{}' holds {} .gguf files; pass the file itself", dir.string(), found.size());
  return found[0];
}

}  // namespace

Model load_model(const std::string& path) {
  if (path.rfind("synthetic:", 0) == 0) return make_synthetic_model(path.substr(10));
  std::error_code ec;
  const fs::path p(path);
  SPECQ_CHECK(fs::exists(p, ec), "model path '{}' does not exist", path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "config.json", ec)) return load_hf_directory(path);
    if (const std::optional<fs::path> gguf = single_gguf(p)) return load_gguf(gguf->string());
    SPECQ_CHECK(!fs::exists(p / "model.safetensors", ec) && !fs::exists(p / "model.safetensors.index.json", ec),
                "'{}' holds safetensors weights but no config.json", path);
    return load_llama2c_directory(p);
  }
  // A file of a Hugging Face directory stands for the directory.
  if (p.filename() == "config.json" || p.extension() == ".safetensors") {
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    return load_hf_directory(dir.string());
  }
  if (p.extension() == ".gguf") return load_gguf(path);
  SPECQ_CHECK(p.extension() == ".bin",
              "'{}' is not a model: expected a Hugging Face directory, a .gguf, a llama2.c .bin or synthetic:NAME", path);
  Model m = load_llama2c(path);
  for (const char* name : {"tok512.bin", "tokenizer.bin"}) {
    if (fs::exists(p.parent_path() / name, ec)) {
      m.tokenizer_path = (p.parent_path() / name).string();
      break;
    }
  }
  return m;
}

}  // namespace specq
