#include "server/engine.h"

#include <fmt/core.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "server/stop_strings.h"

namespace specq::server {

std::optional<JobSummary> Job::wait(std::chrono::milliseconds timeout, std::vector<std::string>& pieces) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return !pending_.empty() || summary_.has_value(); });
  for (std::string& piece : pending_) pieces.push_back(std::move(piece));
  pending_.clear();
  return summary_;
}

bool Job::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void Job::mark_cancelled() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
}

void Job::append(std::string_view text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(mutex_);
    pending_.emplace_back(text);
  }
  changed_.notify_all();
}

void Job::finish(JobSummary summary) {
  {
    std::lock_guard lock(mutex_);
    if (summary_) return;
    summary_ = std::move(summary);
  }
  changed_.notify_all();
}

GenerateFn plain_generation(Runner& runner) {
  return [&runner](std::span<const int32_t> prompt, const GenerateOptions& options, const TokenCallback& on_token,
                   double& mean_accepted_length) {
    mean_accepted_length = 1.0;  // one token per target forward
    return generate(runner, prompt, options, on_token);
  };
}

Engine::Engine(GenerateFn generate_fn, int max_context, const Tokenizer& tokenizer, std::vector<int> stop_ids,
               size_t max_queue, Metrics& metrics)
    : generate_(std::move(generate_fn)),
      tokenizer_(tokenizer),
      stop_ids_(std::move(stop_ids)),
      max_queue_(max_queue),
      metrics_(metrics),
      max_context_(max_context),
      // OpenMP's thread count is a per-thread setting: the CPU runner sized its scratch for the count
      // of the thread that built it, so the engine thread must use the same count.
      thread_([this, threads = omp_get_max_threads()] {
        omp_set_num_threads(threads);
        loop();
      }) {}

Engine::~Engine() {
  stop_accepting(/*cancel_accepted=*/true);
  {
    std::lock_guard lock(mutex_);
    exiting_ = true;
  }
  work_.notify_all();
  thread_.join();
}

Engine::Admission Engine::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) return Admission::kShuttingDown;
    if (queue_.size() >= max_queue_) return Admission::kQueueFull;
    queue_.push_back(job);
  }
  work_.notify_one();
  return Admission::kAccepted;
}

void Engine::cancel(const std::shared_ptr<Job>& job) {
  job->mark_cancelled();  // the running job sees this at its next token
  bool was_queued = false;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) {
      queue_.erase(it);
      was_queued = true;
    }
    if (queue_.empty() && current_ == nullptr) idle_.notify_all();
  }
  if (was_queued) {
    job->finish({JobEnd::kCancelled, {}, {}});
    metrics_.add_generation({}, "cancelled");
  }
}

size_t Engine::queue_length() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

bool Engine::running() const {
  std::lock_guard lock(mutex_);
  return current_ != nullptr;
}

void Engine::stop_accepting(bool cancel_accepted) {
  std::vector<std::shared_ptr<Job>> to_cancel;
  {
    std::lock_guard lock(mutex_);
    accepting_ = false;
    if (cancel_accepted) {
      to_cancel.assign(queue_.begin(), queue_.end());
      if (current_) to_cancel.push_back(current_);
    }
  }
  for (const auto& job : to_cancel) cancel(job);
}

void Engine::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return queue_.empty() && current_ == nullptr; });
}

void Engine::loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return exiting_ || !queue_.empty(); });
      if (queue_.empty()) return;  // exiting with nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      current_ = job;
    }
    run(*job);
    {
      std::lock_guard lock(mutex_);
      current_ = nullptr;
      if (queue_.empty()) idle_.notify_all();
    }
  }
}

void Engine::run(Job& job) {
  const JobSpec& spec = job.spec();
  GenerateOptions options;
  options.max_new_tokens = spec.max_tokens;
  options.sampling = spec.sampling;
  options.stop_ids = stop_ids_;

  StreamDecoder decoder(tokenizer_);
  StopMatcher matcher(spec.stop);
  auto is_stop_id = [&](int32_t id) { return std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end(); };
  auto on_token = [&](int32_t id) {
    if (job.cancelled()) return false;
    if (is_stop_id(id)) return true;  // generate() ends on it; its text is not part of the answer
    job.append(matcher.push(decoder.next(id)));
    return !matcher.matched();
  };

  JobSummary summary;
  try {
    double mean_accepted_length = 1.0;
    const GenerateResult result = generate_(spec.prompt, options, on_token, mean_accepted_length);
    if (!matcher.matched()) job.append(matcher.push(decoder.flush()));
    if (!matcher.matched()) job.append(matcher.finish());
    summary.stats.prompt_tokens = result.prompt_tokens;
    summary.stats.completion_tokens = int(result.tokens.size());
    summary.stats.prefill_seconds = result.prefill_seconds;
    summary.stats.decode_seconds = result.decode_seconds;
    summary.stats.tokens_per_second = result.tokens_per_second();
    summary.stats.mean_accepted_length = mean_accepted_length;
    if (job.cancelled())
      summary.end = JobEnd::kCancelled;
    else if (matcher.matched() || result.stopped_on_eos)
      summary.end = JobEnd::kStop;
    else
      summary.end = JobEnd::kLength;
    metrics_.add_generation(summary.stats, summary.end == JobEnd::kCancelled ? "cancelled"
                                           : summary.end == JobEnd::kStop    ? "stop"
                                                                             : "length");
  } catch (const std::exception& e) {
    // A failure inside the runner is the server's fault, not the request's: report it and go on.
    fmt::print(stderr, "specq serve: generation failed: {}\n", e.what());
    summary.end = JobEnd::kError;
    summary.error = e.what();
    metrics_.add_generation(summary.stats, "error");
  }
  job.finish(std::move(summary));
}

}  // namespace specq::server
