#include "server/api.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace specq::server {

using nlohmann::json;

ApiError::ApiError(int status, std::string message, std::string param, std::string code)
    : std::runtime_error(std::move(message)), status_(status), param_(std::move(param)), code_(std::move(code)) {}

std::string ApiError::type() const { return status_ >= 500 ? "server_error" : "invalid_request_error"; }

json error_body(const ApiError& error) {
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  return {{"error",
           {{"message", error.what()}, {"type", error.type()}, {"param", or_null(error.param())},
            {"code", or_null(error.code())}}}};
}

namespace {

[[noreturn]] void bad_field(const std::string& field, const std::string& message) {
  throw ApiError(400, fmt::format("'{}' {}", field, message), field, "invalid_value");
}

[[noreturn]] void bad_type(const std::string& field, const std::string& expected) {
  throw ApiError(400, fmt::format("'{}' must be {}", field, expected), field, "invalid_type");
}

// Returns the field when present and not null.
const json* find(const json& body, const char* field) {
  auto it = body.find(field);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_field(const json& value, const char* field) {
  if (!value.is_number()) bad_type(field, "a number");
  const double x = value.get<double>();
  if (!std::isfinite(x)) bad_field(field, "must be finite");
  return x;
}

int64_t integer_field(const json& value, const char* field) {
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) bad_field(field, "is too large");
    return int64_t(value.get<uint64_t>());
  }
  if (!value.is_number_integer()) bad_type(field, "an integer");
  return value.get<int64_t>();
}

bool bool_field(const json& value, const char* field) {
  if (!value.is_boolean()) bad_type(field, "a boolean");
  return value.get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts joined.
std::string message_content(const json& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_type(field, "a string or an array of text parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad_type(field, "an array of {\"type\": \"text\", \"text\": string} parts (only text is supported)");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatTurn> parse_messages(const json& body) {
  const json* messages = find(body, "messages");
  if (messages == nullptr) throw ApiError(400, "'messages' is required", "messages", "missing_required_parameter");
  if (!messages->is_array()) bad_type("messages", "an array");
  if (messages->empty()) bad_field("messages", "must not be empty");
  std::vector<ChatTurn> turns;
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad_type(where, "an object");
    const json* role = find(m, "role");
    if (role == nullptr || !role->is_string()) bad_type(where + ".role", "a string");
    ChatTurn turn{role->get<std::string>(), ""};
    if (turn.role == "developer") turn.role = "system";  // OpenAI's newer name for the system role
    if (turn.role != "system" && turn.role != "user" && turn.role != "assistant")
      bad_field(where + ".role", fmt::format("must be system, user or assistant (got '{}')", turn.role));
    const json* content = find(m, "content");
    if (content == nullptr) bad_type(where + ".content", "a string");
    turn.content = message_content(*content, where + ".content");
    turns.push_back(std::move(turn));
  }
  return turns;
}

std::string parse_prompt(const json& body) {
  const json* prompt = find(body, "prompt");
  if (prompt == nullptr) throw ApiError(400, "'prompt' is required", "prompt", "missing_required_parameter");
  if (prompt->is_string()) return prompt->get<std::string>();
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) return (*prompt)[0].get<std::string>();
  bad_type("prompt", "a string (or an array holding one string)");
}

std::vector<std::string> parse_stop(const json& body) {
  const json* stop = find(body, "stop");
  if (stop == nullptr) return {};
  std::vector<std::string> stops;
  if (stop->is_string()) {
    stops.push_back(stop->get<std::string>());
  } else if (stop->is_array()) {
    for (const json& s : *stop) {
      if (!s.is_string()) bad_type("stop", "a string or an array of strings");
      stops.push_back(s.get<std::string>());
    }
  } else {
    bad_type("stop", "a string or an array of strings");
  }
  constexpr size_t kMaxStops = 16;
  if (stops.size() > kMaxStops) bad_field("stop", fmt::format("may hold at most {} strings", kMaxStops));
  for (const std::string& s : stops)
    if (s.empty()) bad_field("stop", "must not contain empty strings");
  return stops;
}

// Features clients send with neutral defaults; any other value would silently change the answer.
void reject_unsupported(const json& body) {
  auto must_be = [&](const char* field, const json& neutral) {
    const json* value = find(body, field);
    if (value != nullptr && *value != neutral)
      throw ApiError(400, fmt::format("'{}' = {} is not supported by this server", field, value->dump()), field,
                     "unsupported_value");
  };
  must_be("n", 1);
  must_be("best_of", 1);
  must_be("echo", false);
  must_be("presence_penalty", 0);
  must_be("frequency_penalty", 0);
  must_be("logit_bias", json::object());
  must_be("suffix", "");
  must_be("tools", json::array());
  const json* logprobs = find(body, "logprobs");
  if (logprobs != nullptr && *logprobs != false && *logprobs != 0)
    throw ApiError(400, "'logprobs' is not supported by this server", "logprobs", "unsupported_value");
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body_text, Endpoint endpoint) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw ApiError(400, "the request body is not valid JSON", "", "invalid_json");
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_json");

  CompletionRequest r;
  r.endpoint = endpoint;
  if (const json* model = find(body, "model")) {
    if (!model->is_string()) bad_type("model", "a string");
    r.model = model->get<std::string>();
  }
  if (endpoint == Endpoint::kChat)
    r.messages = parse_messages(body);
  else
    r.prompt = parse_prompt(body);
  reject_unsupported(body);

  // max_completion_tokens is the chat API's newer name for max_tokens.
  for (const char* field : {"max_tokens", "max_completion_tokens"}) {
    if (const json* value = find(body, field)) {
      const int64_t n = integer_field(*value, field);
      if (n < 1) bad_field(field, fmt::format("must be >= 1 (got {})", n));
      r.max_tokens = int(std::min<int64_t>(n, std::numeric_limits<int>::max()));
    }
  }
  if (const json* value = find(body, "temperature")) {
    const double t = number_field(*value, "temperature");
    if (t < 0.0 || t > 2.0) bad_field("temperature", fmt::format("must be in [0, 2] (got {})", t));
    r.sampling.temperature = float(t);
  }
  if (const json* value = find(body, "top_p")) {
    const double p = number_field(*value, "top_p");
    if (!(p > 0.0 && p <= 1.0)) bad_field("top_p", fmt::format("must be in (0, 1] (got {})", p));
    r.sampling.top_p = float(p);
  }
  if (const json* value = find(body, "top_k")) {  // an extension llama.cpp and vLLM also accept
    const int64_t k = integer_field(*value, "top_k");
    if (k < 0 || k > std::numeric_limits<int>::max()) bad_field("top_k", fmt::format("must be >= 0 (got {})", k));
    r.sampling.top_k = int(k);
  }
  if (const json* value = find(body, "seed")) {
    r.sampling.seed = uint64_t(integer_field(*value, "seed"));
    r.seed_given = true;
  }
  r.stop = parse_stop(body);
  if (const json* value = find(body, "stream")) r.stream = bool_field(*value, "stream");
  if (const json* options = find(body, "stream_options")) {
    if (!options->is_object()) bad_type("stream_options", "an object");
    if (const json* usage = find(*options, "include_usage")) r.include_usage = bool_field(*usage, "stream_options.include_usage");
  }
  return r;
}

json usage_json(const CompletionOutcome& o) {
  const GenerationStats& s = o.stats;
  return {{"prompt_tokens", s.prompt_tokens},
          {"completion_tokens", s.completion_tokens},
          {"total_tokens", s.prompt_tokens + s.completion_tokens}};
}

json timings_json(const CompletionOutcome& o) {
  const GenerationStats& s = o.stats;
  return {{"prefill_seconds", s.prefill_seconds},
          {"decode_seconds", s.decode_seconds},
          {"tokens_per_second", s.tokens_per_second},
          {"mean_accepted_length", s.mean_accepted_length}};
}

namespace {

json envelope(Endpoint endpoint, const ResponseHeader& h, bool chunk) {
  const char* object = endpoint == Endpoint::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                   : "text_completion";
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

json choice(Endpoint endpoint, std::string_view text, const json& finish_reason, bool chunk, bool first) {
  json c = {{"index", 0}};
  if (endpoint == Endpoint::kCompletion) {
    c["text"] = text;
    c["logprobs"] = nullptr;
  } else if (chunk) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    c["delta"] = delta;
    c["logprobs"] = nullptr;
  } else {
    c["message"] = {{"role", "assistant"}, {"content", text}};
    c["logprobs"] = nullptr;
  }
  c["finish_reason"] = finish_reason;
  return c;
}

}  // namespace

json completion_response(Endpoint endpoint, const ResponseHeader& header, const CompletionOutcome& outcome) {
  json r = envelope(endpoint, header, false);
  r["choices"] = json::array({choice(endpoint, outcome.text, outcome.finish_reason, false, false)});
  r["usage"] = usage_json(outcome);
  r["timings"] = timings_json(outcome);
  return r;
}

json text_chunk(Endpoint endpoint, const ResponseHeader& header, std::string_view text, bool first) {
  json r = envelope(endpoint, header, true);
  r["choices"] = json::array({choice(endpoint, text, nullptr, true, first)});
  return r;
}

json final_chunk(Endpoint endpoint, const ResponseHeader& header, const CompletionOutcome& outcome) {
  json r = envelope(endpoint, header, true);
  r["choices"] = json::array({choice(endpoint, "", outcome.finish_reason, true, false)});
  r["timings"] = timings_json(outcome);
  return r;
}

json usage_chunk(Endpoint endpoint, const ResponseHeader& header, const CompletionOutcome& outcome) {
  json r = envelope(endpoint, header, true);
  r["choices"] = json::array();
  r["usage"] = usage_json(outcome);
  return r;
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& payload) { return "data: " + dump(payload) + "\n\n"; }

}  // namespace specq::server
