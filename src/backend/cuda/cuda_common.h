// Shared by every CUDA source: error checks that turn CUDA failures into specq::Error, and the
// element types the kernels are templated on (activations and weights are fp16 or bf16).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "core/dtype.h"

// fmt (core/error.h) does not build under nvcc, so nothing here includes it: .cu files report
// through these two functions, defined in cuda_common.cpp, which throw specq::Error.
namespace specq::cuda {

[[noreturn]] void fail_cuda(cudaError_t status, const char* what, const char* file, int line);
[[noreturn]] void fail_message(const std::string& message);

}  // namespace specq::cuda

// Checks a CUDA runtime call; a failure becomes specq::Error naming the call and the CUDA error.
#define SPECQ_CUDA(call)                                                              \
  do {                                                                                \
    const cudaError_t specq_status_ = (call);                                         \
    if (specq_status_ != cudaSuccess)                                                 \
      ::specq::cuda::fail_cuda(specq_status_, #call, __FILE__, __LINE__);            \
  } while (0)

// Checks the launch just made (bad configuration, missing kernel image).
#define SPECQ_CUDA_LAUNCHED() SPECQ_CUDA(cudaGetLastError())

namespace specq::cuda {

// Hands out 256-byte-aligned offsets into one allocation planned up front: every slice is counted
// first, then one buffer of used() bytes is allocated and the offsets become pointers.
class Arena {
 public:
  static constexpr size_t kAlign = 256;
  size_t take(size_t bytes) {
    const size_t at = used_;
    used_ = (used_ + bytes + kAlign - 1) / kAlign * kAlign;
    return at;
  }
  size_t used() const { return used_; }

 private:
  size_t used_ = 0;
};

// Device memory owned by one object; freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { allocate(bytes); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(other.bytes_) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  void allocate(size_t bytes) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = bytes;
    if (bytes > 0) SPECQ_CUDA(cudaMalloc(&ptr_, bytes));
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace specq::cuda
