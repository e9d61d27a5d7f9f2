#include "backend/cuda/cuda_common.h"

#include "core/error.h"

namespace specq::cuda {

void fail_cuda(cudaError_t status, const char* what, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(status), cudaGetErrorString(status), what, file, line);
}

void fail_message(const std::string& message) { throw Error(message); }

}  // namespace specq::cuda
