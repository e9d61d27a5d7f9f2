// specq serve's HTTP side: OpenAI-compatible routes over cpp-httplib (included by http_server.cpp only).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "server/chat_prompt.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace specq::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                      // 0 = any free port
  std::string api_key;                  // "" = no key needed
  size_t max_queue = 32;                // requests waiting for the engine before 503
  size_t max_body_bytes = 1024 * 1024;  // larger bodies get 413
  // Connection threads beyond those that wait on the engine (max_queue + 1): enough that health
  // checks, metrics and queue-full answers never wait behind generations.
  size_t spare_threads = 32;
  std::string model_id;                 // the name /v1/models lists
};

class HttpServer {
 public:
  HttpServer(Engine& engine, Metrics& metrics, const Tokenizer& tokenizer, ChatRenderer render_chat,
             ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0). Throws Error.
  int bind();
  // Serves until shutdown() has finished; false when the listener failed instead.
  bool run();
  // Graceful stop, callable from any thread: new generation requests get 503, accepted ones run to
  // the end and their responses are written, then the listener closes and run() returns.
  void shutdown();
  // Makes a shutdown in progress quick: ends the waiting and running generations now.
  void cancel_generations();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The chat page served at "/": static HTML and JavaScript (chat_page.cpp).
extern const char* const kChatPageHtml;

}  // namespace specq::server
