// The only translation unit that includes httplib.h.
#include "server/http_server.h"

#include <fmt/core.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.h"
#include "server/api.h"

namespace specq::server {

using nlohmann::json;

namespace {

// How often a waiting response checks that its client is still connected.
constexpr std::chrono::milliseconds kPollInterval{50};

uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string response_id(Endpoint endpoint) {
  return fmt::format("{}-{:016x}{:08x}", endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl", random_u64(),
                     uint32_t(random_u64()));
}

// Compares without an early exit, so the time taken does not reveal how much of the key matched.
bool same_key(const std::string& given, const std::string& expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= uint8_t(given[i]) ^ uint8_t(expected[i % expected.size()]);
  return diff == 0;
}

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status();
  res.set_content(dump(error_body(error)), "application/json");
}

CompletionOutcome outcome_of(const JobSummary& summary, std::string text) {
  CompletionOutcome o;
  o.text = std::move(text);
  o.finish_reason = summary.end == JobEnd::kStop ? "stop" : "length";
  o.stats = summary.stats;
  return o;
}

// httplib's connection threads: started on demand up to a cap, and the most recently idle thread takes
// the next connection. A steady load keeps reusing a few warm threads (their stacks, their malloc
// arenas) instead of spreading over all of them, which keeps memory flat between bursts.
class ConnectionPool : public httplib::TaskQueue {
 public:
  explicit ConnectionPool(size_t max_threads) : max_threads_(max_threads) {}
  ~ConnectionPool() override { shutdown(); }

  void enqueue(std::function<void()> task) override {
    std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      Worker* worker = idle_.back();
      idle_.pop_back();
      worker->task = std::move(task);
      worker->wake.notify_one();
    } else if (workers_.size() < max_threads_) {
      workers_.push_back(std::make_unique<Worker>());
      Worker* worker = workers_.back().get();
      worker->task = std::move(task);
      worker->thread = std::thread([this, worker] { work(*worker); });
    } else {
      waiting_.push_back(std::move(task));  // every thread busy: the next one to finish takes it
    }
  }

  // Runs what is still waiting, then joins every thread. httplib calls it once the listener has closed.
  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      for (Worker* worker : idle_) worker->wake.notify_one();
    }
    for (auto& worker : workers_)
      if (worker->thread.joinable()) worker->thread.join();
  }

 private:
  struct Worker {
    std::thread thread;
    std::condition_variable wake;
    std::function<void()> task;
  };

  void work(Worker& self) {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!self.task && !waiting_.empty()) {
        self.task = std::move(waiting_.front());
        waiting_.pop_front();
      }
      if (!self.task) {
        if (stopping_) return;
        idle_.push_back(&self);
        self.wake.wait(lock, [&] { return self.task || stopping_; });
        if (!self.task) return;  // stopping; idle_ is not used any more
      }
      std::function<void()> task = std::move(self.task);
      self.task = nullptr;
      lock.unlock();
      task();
      lock.lock();
    }
  }

  const size_t max_threads_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> idle_;  // most recently idle last
  std::deque<std::function<void()>> waiting_;
  bool stopping_ = false;
};

// One generation response being written.
struct Reply {
  std::shared_ptr<Job> job;
  Endpoint endpoint;
  ResponseHeader header;
  bool include_usage = false;
  bool first_chunk = true;
  std::vector<std::string> pieces;  // non-streamed: the answer so far
};

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  Metrics& metrics;
  const Tokenizer& tokenizer;
  ChatRenderer render_chat;
  ServerOptions options;
  int64_t started = std::time(nullptr);
  httplib::Server http;
  std::atomic<bool> draining{false};
  std::atomic<int> open_replies{0};  // generation responses not yet fully written
  std::atomic<bool> run_called{false};

  Impl(Engine& e, Metrics& m, const Tokenizer& t, ChatRenderer r, ServerOptions o)
      : engine(e), metrics(m), tokenizer(t), render_chat(std::move(r)), options(std::move(o)) {
    setup();
  }

  void setup() {
    const size_t threads = options.max_queue + 1 + options.spare_threads;
    http.new_task_queue = [threads] { return new ConnectionPool(threads); };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_keep_alive_max_count(1000);
    http.set_logger([this](const httplib::Request&, const httplib::Response& res) { metrics.count_response(res.status); });
    // Fills in an OpenAI error object for the errors httplib answers itself (404, 413, bad HTTP).
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                        httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string message, code;
      switch (res.status) {
        case 404: message = fmt::format("unknown route: {} {}", req.method, req.path), code = "not_found"; break;
        case 413:
          message = fmt::format("the request body is larger than {} bytes", options.max_body_bytes);
          code = "request_too_large";
          break;
        case 400: message = "malformed HTTP request"; break;
        default: message = fmt::format("HTTP error {}", res.status); break;
      }
      send_error(res, ApiError(res.status, message, "", code));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string message = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, message));
    });

    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kChatPageHtml, "text/html; charset=utf-8");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const bool ok = !draining;
      res.status = ok ? 200 : 503;
      res.set_content(dump({{"status", ok ? "ok" : "shutting_down"}}), "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(engine.queue_length(), engine.running() ? 1 : 0),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
      json model = {{"id", options.model_id}, {"object", "model"}, {"created", started}, {"owned_by", "specq"},
                    {"max_context", engine.max_context()}};
      res.set_content(dump({{"object", "list"}, {"data", json::array({model})}}), "application/json");
    }));
    for (const auto& [path, endpoint] : {std::pair{"/v1/chat/completions", Endpoint::kChat},
                                         std::pair{"/v1/completions", Endpoint::kCompletion}}) {
      http.Post(path, [this, endpoint = endpoint](const httplib::Request& req, httplib::Response& res,
                                                  const httplib::ContentReader& reader) {
        std::string body;
        const BodyRead read = read_body(reader, res, body);
        guarded([&](const httplib::Request&, httplib::Response&) {
          if (read == BodyRead::kTooLarge)
            throw ApiError(413, fmt::format("the request body is larger than {} bytes", options.max_body_bytes), "",
                           "request_too_large");
          if (read == BodyRead::kFailed) throw ApiError(400, "the request body could not be read", "", "invalid_body");
          generate(body, res, endpoint);
        })(req, res);
      });
    }
  }

  enum class BodyRead { kOk, kTooLarge, kFailed };

  // Reads the whole body. httplib 0.11 enforces its limit (setting 413) only on bodies sent with a
  // Content-Length, so chunked bodies are counted here; past the limit the rest is read and dropped,
  // which bounds memory and leaves the connection usable for the 413.
  BodyRead read_body(const httplib::ContentReader& reader, const httplib::Response& res, std::string& body) const {
    bool fits = true;
    const bool read = reader([&](const char* data, size_t length) {
      fits = fits && body.size() + length <= options.max_body_bytes;
      if (fits) body.append(data, length);
      return true;
    });
    if (!fits || (!read && res.status == 413)) return BodyRead::kTooLarge;
    return read ? BodyRead::kOk : BodyRead::kFailed;
  }

  // Wraps an API route: checks the key when one is set and turns ApiError into an error response.
  httplib::Server::Handler guarded(httplib::Server::Handler handler) {
    return [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      try {
        if (!options.api_key.empty()) {
          const std::string auth = req.get_header_value("Authorization");
          const std::string prefix = "Bearer ";
          if (auth.rfind(prefix, 0) != 0)
            throw ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", "", "invalid_api_key");
          if (!same_key(auth.substr(prefix.size()), options.api_key))
            throw ApiError(401, "incorrect API key", "", "invalid_api_key");
        }
        handler(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      }
    };
  }

  void generate(const std::string& body, httplib::Response& res, Endpoint endpoint) {
    const CompletionRequest request = parse_completion_request(body, endpoint);
    JobSpec spec;
    spec.stop = request.stop;
    std::string text = request.prompt;
    bool add_special = true;
    if (endpoint == Endpoint::kChat) {
      ChatPrompt chat;
      try {
        chat = render_chat(request.messages);
      } catch (const Error& e) {  // e.g. a template that demands alternating roles
        throw ApiError(400, e.what(), "messages", "invalid_value");
      }
      text = std::move(chat.text);
      add_special = chat.add_special;
      spec.stop.insert(spec.stop.end(), chat.stops.begin(), chat.stops.end());
    }
    const char* prompt_field = endpoint == Endpoint::kChat ? "messages" : "prompt";
    try {
      spec.prompt = tokenizer.encode(text, add_special);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), prompt_field, "invalid_value");
    }
    const int context = engine.max_context();
    if (spec.prompt.empty()) throw ApiError(400, "the prompt is empty", prompt_field, "invalid_value");
    if (int(spec.prompt.size()) >= context)
      throw ApiError(400,
                     fmt::format("the prompt has {} tokens; the context holds {} (prompt plus at least one new token)",
                                 spec.prompt.size(), context),
                     prompt_field, "context_length_exceeded");
    // Without max_tokens, generation may run to the end of the context.
    spec.max_tokens = request.max_tokens.value_or(context - int(spec.prompt.size()));
    spec.sampling = request.sampling;
    if (!request.seed_given) spec.sampling.seed = random_u64();

    auto reply = std::make_shared<Reply>();
    reply->job = std::make_shared<Job>(std::move(spec));
    reply->endpoint = endpoint;
    reply->header = {response_id(endpoint), std::time(nullptr), request.model.empty() ? options.model_id : request.model};
    reply->include_usage = request.include_usage;

    if (draining) throw ApiError(503, "the server is shutting down", "", "shutting_down");
    switch (engine.submit(reply->job)) {
      case Engine::Admission::kAccepted: break;
      case Engine::Admission::kQueueFull:
        throw ApiError(503, fmt::format("the server is busy: {} requests are waiting", options.max_queue), "",
                       "queue_full");
      case Engine::Admission::kShuttingDown: throw ApiError(503, "the server is shutting down", "", "shutting_down");
    }
    ++open_replies;
    // The releaser runs once the response is done with, written or not: a reply that never got to
    // the end (client gone, write failed) must not keep the engine busy.
    auto release = [this, reply](bool) {
      engine.cancel(reply->job);
      --open_replies;
    };
    if (request.stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream", [this, reply](size_t, httplib::DataSink& sink) { return stream_step(*reply, sink); },
          release);
    } else {
      res.set_chunked_content_provider(
          "application/json", [this, reply](size_t, httplib::DataSink& sink) { return whole_step(*reply, sink); },
          release);
    }
  }

  // One turn of a streamed reply: send what the engine produced since the last turn.
  // Returning false drops the connection (the releaser then cancels the job).
  bool stream_step(Reply& reply, httplib::DataSink& sink) {
    std::vector<std::string> pieces;
    const std::optional<JobSummary> summary = reply.job->wait(kPollInterval, pieces);
    if (!sink.is_writable()) return false;
    std::string out;
    if (reply.first_chunk && reply.endpoint == Endpoint::kChat && pieces.empty()) pieces.emplace_back();
    for (const std::string& piece : pieces) {
      out += sse_event(text_chunk(reply.endpoint, reply.header, piece, reply.first_chunk));
      reply.first_chunk = false;
    }
    if (summary) {
      if (summary->end == JobEnd::kCancelled) return false;
      if (summary->end == JobEnd::kError) {
        out += sse_event(error_body(ApiError(500, "generation failed: " + summary->error)));
      } else {
        const CompletionOutcome outcome = outcome_of(*summary, {});
        out += sse_event(final_chunk(reply.endpoint, reply.header, outcome));
        if (reply.include_usage) out += sse_event(usage_chunk(reply.endpoint, reply.header, outcome));
      }
      out += kSseDone;
      if (!sink.write(out.data(), out.size())) return false;
      sink.done();
      return true;
    }
    return out.empty() || sink.write(out.data(), out.size());
  }

  // One turn of a whole (non-streamed) reply: wait, checking the client is still there, then send all.
  bool whole_step(Reply& reply, httplib::DataSink& sink) {
    const std::optional<JobSummary> summary = reply.job->wait(kPollInterval, reply.pieces);
    if (!summary) return sink.is_writable();
    // The 200 status is already on the wire; a generation that did not finish can only be cut off.
    if (summary->end == JobEnd::kCancelled || summary->end == JobEnd::kError) return false;
    std::string text;
    for (const std::string& piece : reply.pieces) text += piece;
    const std::string body = dump(completion_response(reply.endpoint, reply.header, outcome_of(*summary, text)));
    if (!sink.write(body.data(), body.size())) return false;
    sink.done();
    return true;
  }
};

HttpServer::HttpServer(Engine& engine, Metrics& metrics, const Tokenizer& tokenizer, ChatRenderer render_chat,
                       ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, metrics, tokenizer, std::move(render_chat), std::move(options))) {}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const ServerOptions& o = impl_->options;
  if (o.port == 0) {
    const int port = impl_->http.bind_to_any_port(o.host);
    SPECQ_CHECK(port > 0, "cannot listen on {} (any port)", o.host);
    return port;
  }
  SPECQ_CHECK(impl_->http.bind_to_port(o.host, o.port), "cannot listen on {}:{} (in use, or not an address here)",
              o.host, o.port);
  return o.port;
}

bool HttpServer::run() {
  impl_->run_called = true;
  return impl_->http.listen_after_bind();
}

void HttpServer::shutdown() {
  impl_->draining = true;
  impl_->engine.stop_accepting(/*cancel_accepted=*/false);
  impl_->engine.wait_idle();
  // The engine is done; give the last replies time to reach their clients before the listener closes
  // (closing it stops httplib's response writers).
  for (int i = 0; i < 200 && impl_->open_replies > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // stop() does nothing until the listen loop has started; wait for it briefly when run() was called.
  for (int i = 0; i < 200 && impl_->run_called && !impl_->http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->http.stop();
}

void HttpServer::cancel_generations() { impl_->engine.stop_accepting(/*cancel_accepted=*/true); }

}  // namespace specq::server
