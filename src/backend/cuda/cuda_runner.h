// What a CUDA runner lends to code that runs beside it on the same device (the CUDA EAGLE head):
// its stream, activation dtype, the device copies of the embedding and LM head, and its linear
// layers' measured kernel choice. Work queued on stream() is ordered with the runner's forwards, so
// a borrower may read the runner's buffers (ForwardResult::device_hidden) without extra syncs.
#pragma once
#include <cuda_runtime.h>

#include "core/dtype.h"
#include "model/runner.h"

namespace specq::cuda {

// Which kernel table a linear layer uses (the runner measures one per family at load).
enum class LinearFamily { Qkv, Wo, GateUp, Down, LmHead };

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  virtual DType activation_dtype() const = 0;
  virtual cudaStream_t stream() const = 0;
  virtual int sm_count() const = 0;
  // [vocab_size, hidden_size] of activation_dtype(), on the device; valid while the runner lives.
  virtual const void* embedding() const = 0;
  virtual const void* lm_head() const = 0;
  // y[n, rows] = x[n, cols] W^T (+ bias) on stream(), with the kernel the runner measured fastest for
  // `family` at n tokens (cuBLAS where that kernel cannot run this shape). w is [rows, cols] of
  // activation_dtype(); y is fp32 when y_fp32, else activation_dtype().
  virtual void linear(LinearFamily family, const void* w, const float* bias, const void* x, void* y, bool y_fp32,
                      int n, int rows, int cols) = 0;
  // ffn[n, inter] = silu(gate) * up with w = [gate rows; up rows] ([2 inter, cols]): fused into the
  // linear kernel where the measured one can, else through gate_up ([n, 2 inter] scratch).
  virtual void gate_up_swiglu(const void* w, const void* x, void* gate_up, void* ffn, int n, int inter, int cols) = 0;
};

// The runner's lendings, or null when it is not a CUDA runner.
DeviceModel* device_model(Runner& runner);

// Uploads one weight into dst as `dtype` (F32, F16, BF16) on `stream`: generated on the device when
// synthetic, else copied through `staging` (staging_bytes of device memory) and converted; returns
// once the copy is done (the host bytes may go).
void upload_weight(const Weight& w, void* dst, DType dtype, void* staging, size_t staging_bytes, cudaStream_t stream);

}  // namespace specq::cuda
