// specq generate: one prompt in, generated tokens out (streamed text, or one JSON object).
#include <fmt/core.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/session.h"
#include "cli/spec_flags.h"
#include "core/error.h"
#include "gen/generate.h"

namespace specq::cli {

Command add_generate(CLI::App& app) {
  auto* sub = app.add_subcommand("generate", "Generate text from a prompt");
  auto opts = std::make_shared<SessionFlags>();
  auto prompt_text = std::make_shared<std::optional<std::string>>();
  auto prompt_ids = std::make_shared<std::optional<std::string>>();
  auto gen = std::make_shared<GenerateOptions>();
  auto json = std::make_shared<bool>(false);
  add_session_flags(*sub, *opts);
  sub->add_option("--prompt", *prompt_text, "Prompt text (needs a tokenizer)");
  sub->add_option("--prompt-ids", *prompt_ids, "Prompt as comma-separated token ids; \"\" means BOS alone");
  add_chat_flags(*sub, *opts);
  sub->add_option("--max-new-tokens", gen->max_new_tokens, "Tokens to generate at most")->capture_default_str();
  sub->add_option("--temperature", gen->sampling.temperature, "0 = greedy")->capture_default_str();
  sub->add_option("--top-p", gen->sampling.top_p, "Nucleus sampling mass")->capture_default_str();
  sub->add_option("--top-k", gen->sampling.top_k, "Keep the k most likely tokens (0 = all)")->capture_default_str();
  sub->add_option("--seed", gen->sampling.seed, "Sampling seed")->capture_default_str();
  sub->add_flag("--json", *json, "Print one JSON object instead of streaming text");
  auto spec = std::make_shared<SpecFlags>();
  add_spec_flags(*sub, *spec);

  auto run = [=]() -> int {
    SPECQ_CHECK(prompt_text->has_value() != prompt_ids->has_value(), "give exactly one of --prompt and --prompt-ids");
    gen->sampling.validate();
    SPECQ_CHECK(gen->max_new_tokens >= 0, "--max-new-tokens must be >= 0 (got {})", gen->max_new_tokens);
    Session session = open_session(*opts);
    const std::vector<int32_t> prompt = prompt_ids->has_value()
                                            ? session.ids_prompt(**prompt_ids)
                                            : session.text_prompt(**prompt_text);
    gen->stop_ids = session.stop_ids();
    auto runner = session.make_runner();

    TextStreamer streamer = session.streamer();
    TokenCallback on_token;
    if (!*json) {
      on_token = [&](int32_t id) {
        const std::string piece = streamer.push(id);
        if (!piece.empty()) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
        return true;
      };
    }
    SpecStats spec_stats;
    const GenerateResult result = spec->method == "none" ? generate(*runner, prompt, *gen, on_token)
                                                         : generate_speculative(*spec, session, *runner, prompt,
                                                                                *gen, on_token, spec_stats);
    if (*json) {
      nlohmann::json out = {
          {"token_ids", result.tokens},
          {"text", session.decode(result.tokens)},
          {"prompt_tokens", result.prompt_tokens},
          {"new_tokens", result.tokens.size()},
          {"prefill_seconds", result.prefill_seconds},
          {"decode_seconds", result.decode_seconds},
          {"tokens_per_second", result.tokens_per_second()},
      };
      if (spec->method != "none") add_spec_json(out, spec_stats);
      fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      const std::string rest = streamer.finish();
      std::fwrite(rest.data(), 1, rest.size(), stdout);
      fmt::print("\n");
      fmt::print(stderr, "[{} prompt tokens, {} new tokens, prefill {:.3f} s, decode {:.2f} tok/s]\n",
                 result.prompt_tokens, result.tokens.size(), result.prefill_seconds, result.tokens_per_second());
    }
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
