// specq serve's pure parts: request validation, response shapes, stop strings, metrics text,
// and the engine's queue (with a synthetic model).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "gen/generate.h"
#include "io/loader.h"
#include "server/api.h"
#include "server/chat_prompt.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "server/stop_strings.h"
#include "test_util.h"

namespace specq::server {
namespace {

using nlohmann::json;

// The status and the offending field of the ApiError that parsing `body` throws.
std::pair<int, std::string> rejection(const std::string& body, Endpoint endpoint = Endpoint::kCompletion) {
  try {
    parse_completion_request(body, endpoint);
  } catch (const ApiError& e) {
    return {e.status(), e.param()};
  }
  return {0, ""};
}

TEST(ServerApi, ParsesAFullCompletionRequest) {
  const CompletionRequest r = parse_completion_request(
      R"({"model": "m", "prompt": "Hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 42,
          "stop": ["a", "bc"], "stream": true, "stream_options": {"include_usage": true}, "user": "x"})",
      Endpoint::kCompletion);
  EXPECT_EQ(r.prompt, "Hi");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ServerApi, ParsesChatMessagesIncludingTextParts) {
  const CompletionRequest r = parse_completion_request(
      R"({"messages": [{"role": "developer", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}],
          "stop": "x", "max_completion_tokens": 3})",
      Endpoint::kChat);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hello");
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.max_tokens, 3);
  EXPECT_FALSE(r.stream);
}

TEST(ServerApi, RejectsBadRequestsNamingTheField) {
  using P = std::pair<int, std::string>;
  EXPECT_EQ(rejection("{not json"), P(400, ""));
  EXPECT_EQ(rejection("[1, 2]"), P(400, ""));
  EXPECT_EQ(rejection("{}"), P(400, "prompt"));
  EXPECT_EQ(rejection(R"({"prompt": 5})"), P(400, "prompt"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "max_tokens": "3"})"), P(400, "max_tokens"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "max_tokens": 0})"), P(400, "max_tokens"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "max_tokens": 2.5})"), P(400, "max_tokens"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "temperature": -0.1})"), P(400, "temperature"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "temperature": "hot"})"), P(400, "temperature"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "top_p": 0})"), P(400, "top_p"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "top_p": 1.5})"), P(400, "top_p"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "seed": "1"})"), P(400, "seed"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "stop": [1]})"), P(400, "stop"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "stop": [""]})"), P(400, "stop"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "stream": "yes"})"), P(400, "stream"));
  EXPECT_EQ(rejection(R"({"prompt": "a", "n": 2})"), P(400, "n"));
  EXPECT_EQ(rejection(R"({"messages": []})", Endpoint::kChat), P(400, "messages"));
  EXPECT_EQ(rejection(R"({"messages": [{"role": "robot", "content": "x"}]})", Endpoint::kChat),
            P(400, "messages[0].role"));
  EXPECT_EQ(rejection(R"({"messages": [{"role": "user"}]})", Endpoint::kChat), P(400, "messages[0].content"));
}

TEST(ServerApi, ErrorBodyHasTheOpenAiShape) {
  const json body = error_body(ApiError(400, "'top_p' must be in (0, 1]", "top_p", "invalid_value"));
  EXPECT_EQ(body["error"]["message"], "'top_p' must be in (0, 1]");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "top_p");
  EXPECT_EQ(body["error"]["code"], "invalid_value");
  const json server = error_body(ApiError(503, "busy"));
  EXPECT_EQ(server["error"]["type"], "server_error");
  EXPECT_TRUE(server["error"]["param"].is_null());
  EXPECT_TRUE(server["error"]["code"].is_null());
}

TEST(ServerApi, ResponsesAndChunksHaveTheOpenAiShape) {
  const ResponseHeader header{"chatcmpl-1", 123, "m"};
  CompletionOutcome o;
  o.text = "hello";
  o.finish_reason = "stop";
  o.stats.prompt_tokens = 3;
  o.stats.completion_tokens = 2;
  const json chat = completion_response(Endpoint::kChat, header, o);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chat["usage"]["total_tokens"], 5);
  const json first = text_chunk(Endpoint::kChat, header, "", true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = final_chunk(Endpoint::kChat, header, o);
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(last["timings"]["mean_accepted_length"], 1.0);
  const json text = text_chunk(Endpoint::kCompletion, header, "lo", false);
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "lo");
  EXPECT_EQ(usage_chunk(Endpoint::kCompletion, header, o)["choices"].size(), 0u);
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
}

// Feeds pieces one at a time and returns everything emitted.
std::string run_matcher(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += m.push(p);
  return out + m.finish();
}

TEST(StopMatcher, StopsBeforeAStopStringSplitOverPieces) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("abc E"), "abc ");  // "E" could start "END": held back
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("Dxyz"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcher, ReleasesAFalseStart) {
  StopMatcher m({"END"});
  EXPECT_EQ(run_matcher(m, {"a E", "N", "x"}), "a ENx");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo w"});
  EXPECT_EQ(run_matcher(m, {"hel", "lo world"}), "hel");
  EXPECT_TRUE(m.matched());
}

TEST(StopMatcher, WithoutStopsEverythingPassesAtOnce) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.finish(), "");
}

TEST(ChatPrompt, PlainLayout) {
  const ChatPrompt p = plain_chat_prompt({{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Who?"}});
  EXPECT_EQ(p.text, "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Who?\nAssistant:");
  EXPECT_TRUE(p.add_special);
  EXPECT_EQ(p.stops, std::vector<std::string>{"\nUser:"});
}

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.count_response(200);
  m.count_response(200);
  m.count_response(503);
  GenerationStats s;
  s.completion_tokens = 10;
  s.decode_seconds = 0.5;
  s.tokens_per_second = 18.0;
  m.add_generation(s, "length");
  const std::string text = m.render(3, 1);
  EXPECT_NE(text.find("specq_requests_total{status=\"200\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("specq_requests_total{status=\"503\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("specq_generated_tokens_total 10\n"), std::string::npos);
  EXPECT_NE(text.find("specq_generations_total{end=\"length\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("specq_tokens_per_second 18.000\n"), std::string::npos);
  EXPECT_NE(text.find("specq_mean_accepted_length 1.0000\n"), std::string::npos);
  EXPECT_NE(text.find("specq_queue_length 3\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE specq_requests_total counter\n"), std::string::npos);
}

// The engine against stories260K: output equals plain generation, the queue bound holds, cancel works.
class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = load_model(test::stories260k());
    tokenizer_ = Tokenizer::load(model_.tokenizer_path);
    runner_ = new_runner();
  }
  std::unique_ptr<Runner> new_runner() {
    RunnerOptions options;
    options.threads = 1;
    return make_runner(model_, Device::Cpu, options);
  }
  std::vector<int32_t> prompt(const std::string& text) const { return tokenizer_->encode(text, true); }
  JobSpec story(int max_tokens) const {
    JobSpec spec;
    spec.prompt = prompt("Once upon a time");
    spec.max_tokens = max_tokens;
    return spec;
  }
  std::vector<int> stop_ids() const { return model_.config.eos_token_ids; }

  Model model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Runner> runner_;
};

// Wraps a runner; forward() waits while the gate is closed, so a test can hold the engine busy.
class GatedRunner : public Runner {
 public:
  explicit GatedRunner(Runner& inner) : inner_(inner) {}
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }
  const ModelConfig& config() const override { return inner_.config(); }
  Device device() const override { return inner_.device(); }
  int max_context() const override { return inner_.max_context(); }
  int max_tokens_per_forward() const override { return inner_.max_tokens_per_forward(); }
  ForwardResult forward(const ForwardRequest& request) override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return open_; });
    lock.unlock();
    return inner_.forward(request);
  }
  void compact_kv(std::span<const int32_t> src_rows, int dst_start) override { inner_.compact_kv(src_rows, dst_start); }
  double measure_copy_bandwidth() override { return inner_.measure_copy_bandwidth(); }
  size_t weight_bytes() const override { return inner_.weight_bytes(); }

 private:
  Runner& inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
};

std::string drain(Job& job, JobSummary& summary) {
  std::vector<std::string> pieces;
  for (;;) {
    if (auto s = job.wait(std::chrono::milliseconds(50), pieces)) {
      summary = *s;
      std::string text;
      for (const auto& piece : pieces) text += piece;
      return text;
    }
  }
}

TEST_F(EngineTest, GreedyTextMatchesDecodeOfPlainGeneration) {
  Metrics metrics;
  Engine engine(plain_generation(*runner_), runner_->max_context(), *tokenizer_, stop_ids(), 4, metrics);
  JobSpec spec = story(20);
  auto job = std::make_shared<Job>(spec);
  ASSERT_EQ(engine.submit(job), Engine::Admission::kAccepted);
  JobSummary summary;
  const std::string text = drain(*job, summary);
  EXPECT_EQ(summary.end, JobEnd::kLength);
  EXPECT_EQ(summary.stats.completion_tokens, 20);

  auto reference_runner = new_runner();
  GenerateOptions options;
  options.max_new_tokens = 20;
  const GenerateResult reference = generate(*reference_runner, spec.prompt, options);
  EXPECT_EQ(text, tokenizer_->decode(reference.tokens));
}

TEST_F(EngineTest, StopStringEndsTheAnswer) {
  Metrics metrics;
  Engine engine(plain_generation(*runner_), runner_->max_context(), *tokenizer_, stop_ids(), 4, metrics);
  JobSpec spec = story(20);
  auto full_job = std::make_shared<Job>(spec);
  engine.submit(full_job);
  JobSummary summary;
  const std::string full = drain(*full_job, summary);
  ASSERT_GT(full.size(), 12u);
  const std::string stop = full.substr(8, 3);
  spec.stop = {stop};
  auto stopped_job = std::make_shared<Job>(spec);
  engine.submit(stopped_job);
  const std::string stopped = drain(*stopped_job, summary);
  EXPECT_EQ(summary.end, JobEnd::kStop);
  EXPECT_EQ(stopped, full.substr(0, full.find(stop)));
}

TEST_F(EngineTest, FullQueueRefusesAndCancelledJobsLeaveIt) {
  Metrics metrics;
  GatedRunner gated(*runner_);  // closed: the first job's prefill waits, so the engine stays busy
  Engine engine(plain_generation(gated), gated.max_context(), *tokenizer_, stop_ids(), 2, metrics);
  const JobSpec spec = story(8);
  auto running = std::make_shared<Job>(spec);
  ASSERT_EQ(engine.submit(running), Engine::Admission::kAccepted);
  while (!engine.running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto a = std::make_shared<Job>(spec), b = std::make_shared<Job>(spec), c = std::make_shared<Job>(spec);
  EXPECT_EQ(engine.submit(a), Engine::Admission::kAccepted);
  EXPECT_EQ(engine.submit(b), Engine::Admission::kAccepted);
  EXPECT_EQ(engine.submit(c), Engine::Admission::kQueueFull);
  EXPECT_EQ(engine.queue_length(), 2u);
  engine.cancel(a);
  EXPECT_EQ(engine.queue_length(), 1u);
  JobSummary summary;
  drain(*a, summary);
  EXPECT_EQ(summary.end, JobEnd::kCancelled);
  // Still inside the gated prefill: cancelling now ends both the running and the waiting job.
  engine.stop_accepting(/*cancel_accepted=*/true);
  EXPECT_EQ(engine.submit(c), Engine::Admission::kShuttingDown);
  EXPECT_EQ(engine.queue_length(), 0u);
  gated.open();
  drain(*running, summary);
  EXPECT_EQ(summary.end, JobEnd::kCancelled);
  EXPECT_LE(summary.stats.completion_tokens, 1);
  drain(*b, summary);
  EXPECT_EQ(summary.end, JobEnd::kCancelled);
  engine.wait_idle();
}

}  // namespace
}  // namespace specq::server
