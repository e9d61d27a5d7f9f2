#include "server/metrics.h"

#include <fmt/format.h>

namespace specq::server {

void Metrics::count_response(int status) {
  std::lock_guard lock(mutex_);
  ++responses_by_status_[status];
}

void Metrics::add_generation(const GenerationStats& s, const std::string& end) {
  std::lock_guard lock(mutex_);
  ++generations_by_end_[end];
  prompt_tokens_ += uint64_t(s.prompt_tokens);
  completion_tokens_ += uint64_t(s.completion_tokens);
  if (s.mean_accepted_length > 0.0) decode_steps_ += s.completion_tokens / s.mean_accepted_length;
  prefill_seconds_ += s.prefill_seconds;
  decode_seconds_ += s.decode_seconds;
  if (s.tokens_per_second > 0.0) last_tokens_per_second_ = s.tokens_per_second;
}

std::string Metrics::render(size_t queue_length, int running) const {
  std::lock_guard lock(mutex_);
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  metric("specq_requests_total", "counter", "HTTP responses sent, by status code.");
  for (const auto& [status, count] : responses_by_status_)
    out += fmt::format("specq_requests_total{{status=\"{}\"}} {}\n", status, count);
  metric("specq_generations_total", "counter",
         "Generations the engine ran, by how they ended (cancelled: the client left or the server stopped).");
  for (const auto& [end, count] : generations_by_end_)
    out += fmt::format("specq_generations_total{{end=\"{}\"}} {}\n", end, count);
  metric("specq_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
  out += fmt::format("specq_prompt_tokens_total {}\n", prompt_tokens_);
  metric("specq_generated_tokens_total", "counter", "Tokens generated.");
  out += fmt::format("specq_generated_tokens_total {}\n", completion_tokens_);
  metric("specq_prefill_seconds_total", "counter", "Seconds spent in prefill.");
  out += fmt::format("specq_prefill_seconds_total {:.6f}\n", prefill_seconds_);
  metric("specq_decode_seconds_total", "counter", "Seconds spent decoding (first to last generated token).");
  out += fmt::format("specq_decode_seconds_total {:.6f}\n", decode_seconds_);
  metric("specq_tokens_per_second", "gauge", "Decode speed of the last finished generation.");
  out += fmt::format("specq_tokens_per_second {:.3f}\n", last_tokens_per_second_);
  metric("specq_mean_accepted_length", "gauge",
         "Generated tokens per target forward over all generations (1 for plain decoding; 0 before any).");
  out += fmt::format("specq_mean_accepted_length {:.4f}\n",
                     decode_steps_ > 0.0 ? double(completion_tokens_) / decode_steps_ : 0.0);
  metric("specq_queue_length", "gauge", "Requests waiting for the engine.");
  out += fmt::format("specq_queue_length {}\n", queue_length);
  metric("specq_requests_running", "gauge", "Requests the engine is decoding now.");
  out += fmt::format("specq_requests_running {}\n", running);
  return out;
}

}  // namespace specq::server
