// Helpers for the GPU tests: fresh random inputs rounded to the activation dtype (so the CPU
// reference sees exactly what the kernel sees), NaN-poisoned outputs, relative L2 error.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/cuda_common.h"
#include "core/dtype.h"

namespace specq::cuda::test {

inline std::mt19937& rng() {
  static std::mt19937 generator(std::random_device{}());
  return generator;
}

inline std::vector<float> random_values(size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng());
  return v;
}

inline uint16_t to_bits(float v, DType act) { return act == DType::F16 ? float_to_half(v) : float_to_bf16(v); }
inline float from_bits(uint16_t b, DType act) { return act == DType::F16 ? half_to_float(b) : bf16_to_float(b); }

// Rounds `values` to the dtype in place and returns a device copy (F32, F16 or BF16).
inline DeviceBuffer upload(std::vector<float>& values, DType dtype) {
  DeviceBuffer buffer(values.size() * dtype_size(dtype));
  if (dtype == DType::F32) {
    SPECQ_CUDA(cudaMemcpy(buffer.get(), values.data(), values.size() * 4, cudaMemcpyHostToDevice));
    return buffer;
  }
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    bits[i] = to_bits(values[i], dtype);
    values[i] = from_bits(bits[i], dtype);
  }
  SPECQ_CUDA(cudaMemcpy(buffer.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
  return buffer;
}

inline std::vector<float> download(const void* device, size_t count, DType dtype) {
  std::vector<float> out(count);
  SPECQ_CUDA(cudaDeviceSynchronize());
  if (dtype == DType::F32) {
    SPECQ_CUDA(cudaMemcpy(out.data(), device, count * 4, cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<uint16_t> bits(count);
  SPECQ_CUDA(cudaMemcpy(bits.data(), device, count * 2, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < count; ++i) out[i] = from_bits(bits[i], dtype);
  return out;
}

// All-ones bytes: NaN in fp32, fp16 and bf16, so an element the kernel never wrote fails the check.
inline DeviceBuffer poisoned(size_t bytes) {
  DeviceBuffer buffer(bytes);
  SPECQ_CUDA(cudaMemset(buffer.get(), 0xff, bytes));
  return buffer;
}

// ||got - ref|| / ||ref||; infinity when any element is not finite.
inline double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// Tolerances for outputs rounded to the activation dtype (8 vs 11 mantissa bits).
inline double tolerance(DType act) { return act == DType::F16 ? 2e-3 : 1.2e-2; }

class DtypeTest : public ::testing::TestWithParam<DType> {};

inline std::string dtype_test_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_name(info.param));
}

}  // namespace specq::cuda::test
