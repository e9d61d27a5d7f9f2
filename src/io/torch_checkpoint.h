// PyTorch state dicts saved by torch.save (the zip format: <prefix>/data.pkl plus one stored entry
// per storage), or one bare tensor (its name is then ""), read in place without executing anything: the pickle is interpreted by a small VM
// that knows only the opcodes such files use and builds only dicts, tuples, lists, scalars, strings
// and tensors. The only callables it accepts are collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 and torch._utils._rebuild_parameter; any other global is an Error.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace specq {

struct TorchTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapped file (contiguous, row-major)
};

// The tensors of a torch.save file held in memory (data pointers point into `bytes`); `source` names
// it in errors.
std::vector<TorchTensor> parse_torch_checkpoint(std::span<const uint8_t> bytes, const std::string& source);

class TorchCheckpoint {
 public:
  explicit TorchCheckpoint(const std::string& path);
  const TorchTensor* find(const std::string& name) const;  // nullptr if absent
  const std::vector<TorchTensor>& tensors() const { return tensors_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<TorchTensor> tensors_;
};

}  // namespace specq
