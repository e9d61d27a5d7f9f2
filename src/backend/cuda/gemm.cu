// Linear layers for many tokens through cuBLAS (tensor cores, fp32 accumulation): at these sizes
// the library is at the hardware limit. Row-major y[n, rows] = x[n, cols] W[rows, cols]^T is the
// column-major product y^T = W^T(op T) x^T.
#include <cublas_v2.h>

#include <algorithm>

#include "backend/cuda/device_types.cuh"
#include "backend/cuda/kernels.h"

namespace specq::cuda {
namespace {

template <typename OutT>
__global__ void add_bias_kernel(OutT* y, const float* bias, int n, int rows) {
  chain_start();
  const int64_t total = int64_t(n) * rows;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<OutT>(to_f32<OutT>(y[i]) + bias[i % rows]);
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail_message(std::string("cuBLAS error ") + cublasGetStatusName(status) + " (" + cublasGetStatusString(status) +
                ") in " + what);
}

}  // namespace

void gemm(void* cublas_handle, const void* w, const void* x, const float* bias, void* y, bool y_fp32, DType act, int n,
          int rows, int cols, cudaStream_t stream) {
  const cudaDataType_t in_type = act == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const cudaDataType_t out_type = y_fp32 ? CUDA_R_32F : in_type;
  const float one = 1.0f, zero = 0.0f;
  check_cublas(cublasGemmEx(static_cast<cublasHandle_t>(cublas_handle), CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one,
                            w, in_type, cols, x, in_type, cols, &zero, y, out_type, rows, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  if (bias == nullptr) return;
  const int grid = int(std::min<int64_t>((int64_t(n) * rows + 255) / 256, 4096));
  if (y_fp32) {
    launch_chained(add_bias_kernel<float>, dim3(unsigned(grid)), dim3(256), 0, stream, static_cast<float*>(y), bias, n,
                   rows);
  } else {
    dispatch_act(act, [&](auto t) {
      using T = decltype(t);
      launch_chained(add_bias_kernel<T>, dim3(unsigned(grid)), dim3(256), 0, stream, static_cast<T*>(y), bias, n, rows);
    });
  }
  SPECQ_CUDA_LAUNCHED();
}

}  // namespace specq::cuda
