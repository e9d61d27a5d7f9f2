// specq info: what a model is, without running it.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/loader.h"

namespace specq::cli {

Command add_info(CLI::App& app) {
  auto* sub = app.add_subcommand("info", "Describe a model: architecture, shapes, dtypes, parameters, bytes");
  auto model_path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  sub->add_option("--model", *model_path, "Model directory, .gguf file, llama2.c .bin, or synthetic:NAME")->required();
  sub->add_flag("--json", *json, "Print one JSON object");
  auto run = [=]() -> int {
    const Model m = load_model(*model_path);
    validate_weights(m);
    const ModelConfig& c = m.config;
    const char* rope = c.rope_scaling.type == RopeScaling::Type::Llama3   ? "llama3"
                       : c.rope_scaling.type == RopeScaling::Type::Linear ? "linear"
                       : c.rope_scaling.type == RopeScaling::Type::Factors ? "factors"
                                                                          : "none";
    nlohmann::json out = {
        {"source", m.source},
        {"architecture", c.arch_name},
        {"vocab_size", c.vocab_size},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"num_layers", c.num_layers},
        {"num_heads", c.num_heads},
        {"num_kv_heads", c.num_kv_heads},
        {"head_dim", c.head_dim},
        {"rms_norm_eps", c.rms_norm_eps},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", rope},
        {"max_position_embeddings", c.max_position_embeddings},
        {"tie_word_embeddings", c.tie_word_embeddings},
        {"attention_bias", c.attention_bias},
        {"dtype", std::string(dtype_name(c.dtype))},
        {"parameters", m.parameter_count()},
        {"weight_bytes", m.weight_bytes()},
        {"bos_token_id", c.bos_token_id},
        {"eos_token_ids", c.eos_token_ids},
        {"tokenizer", m.tokenizer_path},
    };
    // Linear layers per storage format ("dense", "gptq-int4"), so quantized checkpoints show as such.
    nlohmann::json formats = nlohmann::json::object();
    auto count = [&](const Weight& w) {
      const std::string name(weight_format_name(w.format));
      formats[name] = formats.value(name, 0) + 1;
    };
    for (const LayerWeights& l : m.weights.layers)
      for (const Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) count(*w);
    count(m.weights.lm_head);
    out["linear_formats"] = formats;
    if (*json) {
      fmt::print("{}\n", out.dump());
    } else {
      for (const auto& [key, value] : out.items()) fmt::print("{:<24} {}\n", key, value.dump());
    }
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
