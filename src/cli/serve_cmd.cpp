// specq serve: an OpenAI-compatible HTTP server over one loaded model (src/server/).
#include <fmt/core.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/session.h"
#include "cli/spec_flags.h"
#include "core/error.h"
#include "server/chat_prompt.h"
#include "server/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "tokenizer/chat_template.h"

namespace specq::cli {

namespace {

// The name /v1/models lists: the model directory's or file's name.
std::string model_id(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();
  const std::string name = p.filename().string();
  return name.empty() ? path : name;
}

// The model's chat template when its tokenizer has one (or --chat-template names one), else the plain
// layout. A template we cannot render falls back to the plain layout with a warning.
server::ChatRenderer chat_renderer(const Tokenizer& tokenizer, const std::string& override_name) {
  if (override_name.empty() && !tokenizer.chat_template()) return server::plain_chat_prompt;
  ChatTemplateKind kind;
  try {
    kind = resolve_chat_template(tokenizer, override_name.empty() ? std::nullopt : std::optional(override_name));
  } catch (const Error& e) {
    if (!override_name.empty()) throw;
    fmt::print(stderr, "specq serve: warning: {}; chat requests get the plain layout (docs/SERVER.md)\n", e.what());
    return server::plain_chat_prompt;
  }
  return [&tokenizer, kind](const std::vector<server::ChatTurn>& turns) {
    std::vector<ChatMessage> messages;
    for (const auto& turn : turns) messages.push_back({turn.role, turn.content});
    server::ChatPrompt prompt;
    prompt.text = render_chat(kind, messages, /*add_generation_prompt=*/true, tokenizer.bos_token(),
                              tokenizer.eos_token());
    prompt.add_special = false;  // the rendered text carries its own special tokens, as in `generate --chat`
    return prompt;
  };
}

// Waits up to 200 ms for SIGINT or SIGTERM (blocked in every thread, so only this wait sees them).
bool wait_for_signal(const sigset_t& signals) {
  const timespec timeout{0, 200'000'000};
  return sigtimedwait(&signals, nullptr, &timeout) > 0;
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API with a chat page");
  auto flags = std::make_shared<SessionFlags>();
  auto options = std::make_shared<server::ServerOptions>();
  auto spec = std::make_shared<SpecFlags>();
  add_session_flags(*sub, *flags);
  add_spec_flags(*sub, *spec);
  sub->add_option("--chat-template", flags->chat_template,
                  fmt::format("Chat template override: {} (default: the tokenizer's, else a plain layout)", kChatTemplateNames));
  sub->add_option("--host", options->host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", options->port, "Port to listen on (0 = any free port)")->capture_default_str();
  sub->add_option("--api-key", options->api_key, "Require 'Authorization: Bearer KEY' on /v1 routes")
      ->envname("SPECQ_API_KEY");
  sub->add_option("--max-queue", options->max_queue, "Requests that may wait for the engine; more get 503")
      ->capture_default_str();
  sub->add_option("--max-body-bytes", options->max_body_bytes, "Largest request body; larger ones get 413")
      ->capture_default_str();

  auto run = [=]() -> int {
    SPECQ_CHECK(options->port >= 0 && options->port <= 65535, "--port must be in [0, 65535] (got {})", options->port);
    SPECQ_CHECK(options->max_queue >= 1, "--max-queue must be >= 1");
    SPECQ_CHECK(options->max_body_bytes >= 1, "--max-body-bytes must be >= 1");
    // Block the stop signals before any thread starts, so every thread inherits the mask and the
    // main thread alone receives them through sigtimedwait.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    Session session = open_session(*flags);
    SPECQ_CHECK(session.tokenizer != nullptr, "model '{}' has no tokenizer; pass --tokenizer", flags->model);
    auto runner = session.make_runner();
    server::GenerateFn generate_fn = server::plain_generation(*runner);
    if (spec->method == "cascade") {
      // A cascade's middle level samples with the request's settings, so its chain is built per request.
      generate_fn = [&, spec](std::span<const int32_t> prompt, const GenerateOptions& gen, const TokenCallback& on_token,
                              double& mean_accepted_length) {
        SpecStats stats;
        GenerateResult result = generate_speculative(*spec, session, *runner, prompt, gen, on_token, stats);
        mean_accepted_length = stats.mean_accepted_length();
        return result;
      };
    } else if (spec->method != "none") {
      // EAGLE and draft-model chains do not depend on sampling: built once, used by the engine thread.
      auto decoder = std::make_shared<SpeculativeDecoder>(*spec, session, *runner, SamplingOptions{});
      generate_fn = [decoder](std::span<const int32_t> prompt, const GenerateOptions& gen, const TokenCallback& on_token,
                              double& mean_accepted_length) {
        SpecStats stats;
        GenerateResult result = decoder->generate(prompt, gen, on_token, stats);
        mean_accepted_length = stats.mean_accepted_length();
        return result;
      };
    }
    {  // One token now: a bad --spec/--draft/--eagle fails here, before the server listens.
      GenerateOptions probe;
      probe.max_new_tokens = 1;
      double unused = 0.0;
      generate_fn(session.tokenizer->encode("Hello", /*add_special=*/true), probe, {}, unused);
    }
    server::Metrics metrics;
    server::Engine engine(generate_fn, runner->max_context(), *session.tokenizer, session.stop_ids(),
                          options->max_queue, metrics);
    server::ServerOptions server_options = *options;
    server_options.model_id = model_id(flags->model);
    server::HttpServer http(engine, metrics, *session.tokenizer,
                            chat_renderer(*session.tokenizer, flags->chat_template), server_options);
    const int port = http.bind();
    fmt::print("specq serve: {} on http://{}:{} (context {} tokens, queue {})\n", server_options.model_id,
               options->host, port, engine.max_context(), options->max_queue);
    std::fflush(stdout);

    std::atomic<bool> listener_done{false};
    std::atomic<bool> listener_failed{false};
    std::thread listener([&] {
      listener_failed = !http.run();
      listener_done = true;
    });
    while (!listener_done && !wait_for_signal(signals)) {
    }
    if (!listener_done) {
      fmt::print(stderr, "specq serve: stopping: finishing accepted requests (signal again to cancel them)\n");
      std::atomic<bool> stopped{false};
      std::thread stopper([&] {
        http.shutdown();
        stopped = true;
      });
      bool cancelled = false;
      while (!stopped) {
        if (wait_for_signal(signals) && !cancelled) {
          fmt::print(stderr, "specq serve: cancelling the remaining requests\n");
          http.cancel_generations();
          cancelled = true;
        }
      }
      stopper.join();
    }
    listener.join();
    SPECQ_CHECK(!listener_failed, "the listener on {}:{} failed", options->host, port);
    fmt::print(stderr, "specq serve: stopped\n");
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
