// One engine thread decodes one sequence at a time; requests wait in a bounded FIFO queue.
// HTTP threads submit Jobs and read their text as it is produced; either side can end a job early.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gen/generate.h"
#include "model/runner.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace specq::server {

struct JobSpec {
  std::vector<int32_t> prompt;
  int max_tokens = 1;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // stop strings; the answer ends before the first one
};

enum class JobEnd { kStop, kLength, kCancelled, kError };

struct JobSummary {
  JobEnd end = JobEnd::kLength;
  std::string error;  // with kError
  GenerationStats stats;
};

// One request's generation. The engine appends text and finishes it; the HTTP side waits and cancels.
class Job {
 public:
  explicit Job(JobSpec spec) : spec_(std::move(spec)) {}
  const JobSpec& spec() const { return spec_; }

  // Waits up to `timeout` for new text or the end. New pieces (one per append(), so a stream can send
  // one event per token even when it fell behind) are moved to the end of `pieces`; the summary is
  // returned once the job has ended and all of its text has been handed over.
  std::optional<JobSummary> wait(std::chrono::milliseconds timeout, std::vector<std::string>& pieces);
  bool cancelled() const;

  void append(std::string_view text);  // engine side
  void finish(JobSummary summary);     // engine side; at most once

 private:
  friend class Engine;
  void mark_cancelled();

  JobSpec spec_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> pending_;
  std::optional<JobSummary> summary_;
  bool cancelled_ = false;
};

// One generation on the engine thread: plain generate() or a speculative one. Same contract as
// generate(); sets `mean_accepted_length` (tokens per target forward; 1 for plain decoding).
using GenerateFn = std::function<GenerateResult(std::span<const int32_t> prompt, const GenerateOptions& options,
                                                const TokenCallback& on_token, double& mean_accepted_length)>;

// Plain autoregressive generation with `runner`.
GenerateFn plain_generation(Runner& runner);

class Engine {
 public:
  // `max_context`: the runner's; `stop_ids`: tokens that end a generation (not part of the answer's text).
  Engine(GenerateFn generate, int max_context, const Tokenizer& tokenizer, std::vector<int> stop_ids,
         size_t max_queue, Metrics& metrics);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  enum class Admission { kAccepted, kQueueFull, kShuttingDown };
  // Queues the job unless max_queue jobs are already waiting (the running one does not count).
  Admission submit(const std::shared_ptr<Job>& job);
  // Ends the job: dropped from the queue if waiting, stopped at the next token if running. Idempotent.
  void cancel(const std::shared_ptr<Job>& job);

  size_t queue_length() const;
  bool running() const;
  int max_context() const { return max_context_; }

  // Refuses new jobs from now on; with `cancel_accepted` also ends the waiting and running ones.
  void stop_accepting(bool cancel_accepted);
  // Blocks until no job is waiting or running.
  void wait_idle();

 private:
  void loop();
  void run(Job& job);

  GenerateFn generate_;
  const Tokenizer& tokenizer_;
  std::vector<int> stop_ids_;
  size_t max_queue_;
  Metrics& metrics_;
  int max_context_;

  mutable std::mutex mutex_;
  std::condition_variable work_;  // a job arrived, or exiting
  std::condition_variable idle_;  // the queue emptied and nothing runs
  std::deque<std::shared_ptr<Job>> queue_;
  std::shared_ptr<Job> current_;
  bool accepting_ = true;
  bool exiting_ = false;
  std::thread thread_;
};

}  // namespace specq::server
