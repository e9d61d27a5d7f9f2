// Server counters, rendered in the Prometheus text exposition format for GET /metrics.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace specq::server {

struct GenerationStats {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  double tokens_per_second = 0.0;
  // Tokens accepted per target-model forward: 1.0 for plain autoregressive decoding; the speculative
  // engine reports its own.
  double mean_accepted_length = 1.0;
};

class Metrics {
 public:
  void count_response(int status);
  // `end`: how the generation ended ("stop", "length", "cancelled" or "error").
  void add_generation(const GenerationStats& stats, const std::string& end);
  // `queue_length`: requests waiting; `running`: 1 while the engine decodes.
  std::string render(size_t queue_length, int running) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, uint64_t> responses_by_status_;
  std::map<std::string, uint64_t> generations_by_end_;
  uint64_t prompt_tokens_ = 0;
  uint64_t completion_tokens_ = 0;
  double decode_steps_ = 0.0;  // target forwards that produced the completion tokens
  double prefill_seconds_ = 0.0;
  double decode_seconds_ = 0.0;
  double last_tokens_per_second_ = 0.0;
};

}  // namespace specq::server
