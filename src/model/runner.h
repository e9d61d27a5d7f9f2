// A model placed on a device with its memory planned once: weights, KV cache, activations.
// Everything above (generation, speculation) talks to this interface only.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/sampling_draw.h"
#include "model/config.h"
#include "model/weights.h"

namespace specq {

enum class Device { Cpu, Cuda };
Device parse_device(const std::string& name);  // "cpu" | "cuda", Error otherwise

// Words of one tree-mask row for n new tokens.
constexpr int mask_words(int n) { return (n + 63) / 64; }

// The one forward primitive: run n new tokens at explicit positions. Their K/V go to cache rows
// [cache_len, cache_len + n); every new token sees all committed rows [0, cache_len) plus the new
// tokens its mask row allows (bit j of row i: token i sees new token j). An empty mask is causal
// (a chain). Plain decode is n = 1; a speculative tree is any n with its ancestor mask.
struct ForwardRequest {
  std::span<const int32_t> tokens;
  std::span<const int32_t> positions;
  int cache_len = 0;
  std::span<const uint64_t> tree_mask;  // empty, or n * mask_words(n) words
  enum class Rows { None, Last, All };
  Rows logits_rows = Rows::Last;  // which rows produce logits (and argmax)
  bool logits_to_host = true;     // false: only argmax comes back (greedy); logits may be empty
  Rows hidden_rows = Rows::None;  // which rows return their final hidden state (EAGLE drafters need them)
  bool hidden_to_host = true;     // false: a device runner keeps them on the device (ForwardResult::device_hidden)
  // Set: every logits row is also sampled where the logits are (ForwardResult::sampled), so sampled
  // decoding on a GPU copies ids, not logits. Row r uses draw device_draw->draw + r.
  const DrawParams* device_draw = nullptr;
};

struct ForwardResult {
  std::span<const float> logits;    // [rows][vocab], fp32 on the host
  std::span<const int32_t> argmax;  // [rows], ties go to the smallest id
  std::span<const float> hidden;    // [hidden rows][hidden_size], fp32 on the host: after the final norm
  // The same rows in the device memory of a CUDA runner (fp32), valid until its next forward; null on
  // the CPU. A CUDA EAGLE head reads them there, with no copy to the host.
  const float* device_hidden = nullptr;
  std::span<const int32_t> sampled; // [rows] when the request set device_draw
};

// The linear layers of a transformer block (q|k|v and gate|up share their input).
enum class LinearSlot { Qkv, O, GateUp, Down };

// The input rows of one linear layer during a forward (calibration for quantization).
struct LinearInput {
  int layer = 0;
  LinearSlot slot = LinearSlot::Qkv;
  const float* rows = nullptr;  // n rows of dim fp32 values
  int n = 0;
  int64_t dim = 0;
};

struct RunnerOptions {
  int max_context = 0;            // KV-cache rows; 0 = min(max_position_embeddings, 4096)
  int max_tokens_per_forward = 0; // largest n; 0 = 512 (prefill is chunked to this)
  int threads = 0;                // CPU threads; 0 = all cores
  DType activation_dtype = DType::F16;  // CUDA only: F16 or BF16
  // CPU only: sees the input of every block linear before it runs (the quantizer's Hessians).
  std::function<void(const LinearInput&)> observe_linear_input;
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual const ModelConfig& config() const = 0;
  virtual Device device() const = 0;
  virtual int max_context() const = 0;
  virtual int max_tokens_per_forward() const = 0;
  virtual ForwardResult forward(const ForwardRequest& request) = 0;
  // Keeps the accepted rows of a speculative step: row src_rows[i] moves to dst_start + i
  // (src_rows ascending, src_rows[i] >= dst_start + i), in every layer.
  virtual void compact_kv(std::span<const int32_t> src_rows, int dst_start) = 0;
  // Bytes per second of a large copy on this device (bytes read + bytes written): the floor's unit.
  virtual double measure_copy_bandwidth() = 0;
  // Bytes a forward of one token must read from device memory (all weights).
  virtual size_t weight_bytes() const = 0;
  // Device milliseconds per op family (embed, qkv, attention, ...) of one forward of this request
  // (run for real: its K/V rows are written), in first-seen order; empty where there are no timers.
  virtual std::vector<std::pair<std::string, double>> op_profile(const ForwardRequest&) { return {}; }
};

// Checks a request against the runner's limits; throws Error with a clear message.
void validate_request(const Runner& runner, const ForwardRequest& request);

std::unique_ptr<Runner> make_cpu_runner(Model& model, const RunnerOptions& options);
std::unique_ptr<Runner> make_cuda_runner(Model& model, const RunnerOptions& options);  // Error without CUDA
std::unique_ptr<Runner> make_runner(Model& model, Device device, const RunnerOptions& options);

}  // namespace specq
