// The OpenAI-compatible wire format: request parsing with validation, response and chunk building,
// and the error object. Pure functions over JSON, so the HTTP layer stays thin and this stays testable.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gen/sampler.h"
#include "server/metrics.h"

namespace specq::server {

// A failure the client caused (or must be told about), answered as {"error": {...}} with `status`.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {});
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // "invalid_request_error" for 4xx, "server_error" for 5xx, as OpenAI does.
  std::string type() const;

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// {"error": {"message", "type", "param", "code"}}; empty param/code come out as null.
nlohmann::json error_body(const ApiError& error);

enum class Endpoint { kChat, kCompletion };

struct ChatTurn {
  std::string role;  // system | user | assistant
  std::string content;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletion;
  std::string model;              // echoed back; one model is served whatever the name
  std::vector<ChatTurn> messages; // chat
  std::string prompt;             // completions
  std::optional<int> max_tokens;  // absent: until a stop or the end of the context
  SamplingOptions sampling;
  bool seed_given = false;        // without a seed, sampling draws a fresh one per request
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage: a final chunk with usage
};

// Parses and validates a request body; throws ApiError(400) naming the offending field.
CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint);

// What a finished generation reports back to the client.
struct CompletionOutcome {
  std::string text;
  std::string finish_reason;  // "stop" | "length"
  GenerationStats stats;
};

// The identity every chunk of one response repeats.
struct ResponseHeader {
  std::string id;       // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

nlohmann::json usage_json(const CompletionOutcome& outcome);
// specq's extension next to usage: the speeds the chat page shows.
nlohmann::json timings_json(const CompletionOutcome& outcome);

// The whole non-streamed response ("chat.completion" or "text_completion").
nlohmann::json completion_response(Endpoint endpoint, const ResponseHeader& header, const CompletionOutcome& outcome);

// One streamed chunk carrying `text`. Chat: the first chunk also carries role "assistant".
nlohmann::json text_chunk(Endpoint endpoint, const ResponseHeader& header, std::string_view text, bool first);
// The chunk that ends the choice: empty text/delta, finish_reason, and timings.
nlohmann::json final_chunk(Endpoint endpoint, const ResponseHeader& header, const CompletionOutcome& outcome);
// With include_usage: the extra last chunk, no choices, usage filled.
nlohmann::json usage_chunk(Endpoint endpoint, const ResponseHeader& header, const CompletionOutcome& outcome);

// "data: <json>\n\n"
std::string sse_event(const nlohmann::json& payload);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// JSON text safe for the wire: invalid UTF-8 is replaced, never thrown on.
std::string dump(const nlohmann::json& value);

}  // namespace specq::server
