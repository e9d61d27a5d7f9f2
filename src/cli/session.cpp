#include "cli/session.h"

#include <fmt/format.h>

#include <algorithm>

#include "cli/commands.h"
#include "core/error.h"
#include "io/loader.h"
#include "tokenizer/chat_template.h"

namespace specq::cli {

void add_session_flags(CLI::App& app, SessionFlags& flags) {
  app.add_option("--model", flags.model, "Model directory, .gguf file, llama2.c .bin, or synthetic:NAME")->required();
  app.add_option("--tokenizer", flags.tokenizer, "Tokenizer directory or file (default: next to the model)");
  app.add_option("--device", flags.device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", flags.dtype, "CUDA activation dtype: f16 or bf16")->capture_default_str();
  app.add_option("--max-context", flags.max_context, "KV-cache size in tokens (0 = model limit, at most 4096)");
  app.add_option("--threads", flags.threads, "CPU threads (0 = all cores)");
}

void add_chat_flags(CLI::App& app, SessionFlags& flags) {
  app.add_flag("--chat", flags.chat, "Wrap the prompt in the model's chat template");
  app.add_option("--system", flags.system, "System prompt for --chat");
  app.add_option("--chat-template", flags.chat_template,
                 fmt::format("Chat template override: {}", kChatTemplateNames));
}

TextStreamer::TextStreamer(const Tokenizer* tokenizer) {
  if (tokenizer != nullptr) decoder_.emplace(*tokenizer);
}

std::string TextStreamer::push(int32_t id) { return decoder_ ? decoder_->next(id) : fmt::format("{} ", id); }

std::string TextStreamer::finish() { return decoder_ ? decoder_->flush() : std::string(); }

Session open_session(const SessionFlags& flags) {
  SPECQ_CHECK(flags.max_context >= 0, "--max-context must be >= 0 (got {})", flags.max_context);
  SPECQ_CHECK(flags.threads >= 0, "--threads must be >= 0 (got {})", flags.threads);
  SPECQ_CHECK(flags.dtype == "f16" || flags.dtype == "bf16", "--dtype must be f16 or bf16 (got '{}')", flags.dtype);
  parse_device(flags.device);
  Session s;
  s.flags = flags;
  s.model = load_model(flags.model);
  const std::string tokenizer_path = flags.tokenizer.empty() ? s.model.tokenizer_path : flags.tokenizer;
  if (!tokenizer_path.empty()) {
    s.tokenizer = Tokenizer::load(tokenizer_path);
    SPECQ_CHECK(s.tokenizer->vocab_size() <= s.model.config.vocab_size,
                "tokenizer '{}' has {} tokens but the model's vocabulary has {}", tokenizer_path,
                s.tokenizer->vocab_size(), s.model.config.vocab_size);
  }
  return s;
}

std::unique_ptr<Runner> Session::make_runner() {
  RunnerOptions options;
  options.max_context = flags.max_context;
  options.threads = flags.threads;
  options.activation_dtype = flags.dtype == "bf16" ? DType::BF16 : DType::F16;
  return specq::make_runner(model, parse_device(flags.device), options);
}

std::vector<int32_t> Session::ids_prompt(const std::string& ids) const {
  std::vector<int32_t> prompt = parse_id_list(ids, "--prompt-ids");
  if (prompt.empty()) {
    SPECQ_CHECK(model.config.bos_token_id >= 0, "--prompt-ids is empty and the model has no BOS token");
    prompt.push_back(model.config.bos_token_id);
  }
  for (int32_t id : prompt)
    SPECQ_CHECK(id >= 0 && id < model.config.vocab_size, "--prompt-ids: id {} is outside the vocabulary [0, {})", id,
                model.config.vocab_size);
  return prompt;
}

std::vector<int32_t> Session::text_prompt(const std::string& text) const {
  SPECQ_CHECK(tokenizer != nullptr, "model '{}' has no tokenizer; pass --tokenizer DIR or use --prompt-ids",
              model.source);
  if (!flags.chat) {
    SPECQ_CHECK(flags.system.empty(), "--system needs --chat");
    return tokenizer->encode(text, /*add_special=*/true);
  }
  const ChatTemplateKind kind = resolve_chat_template(
      *tokenizer, flags.chat_template.empty() ? std::nullopt : std::optional<std::string>(flags.chat_template));
  std::vector<ChatMessage> messages;
  if (!flags.system.empty()) messages.push_back({"system", flags.system});
  messages.push_back({"user", text});
  // The rendered text carries its own special tokens (as apply_chat_template(tokenize=True) encodes it).
  const std::string rendered =
      render_chat(kind, messages, /*add_generation_prompt=*/true, tokenizer->bos_token(), tokenizer->eos_token());
  return tokenizer->encode(rendered, /*add_special=*/false);
}

std::string Session::decode(const std::vector<int32_t>& ids) const {
  return tokenizer != nullptr ? tokenizer->decode(ids) : std::string();
}

std::vector<int> Session::stop_ids() const {
  std::vector<int> ids = model.config.eos_token_ids;
  if (tokenizer != nullptr)
    for (int32_t id : tokenizer->eos_ids())
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

}  // namespace specq::cli
