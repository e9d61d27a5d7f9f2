#include "io/hf_writer.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors_writer.h"
#include "tokenizer/gguf_tokenizer.h"

namespace specq {
namespace fs = std::filesystem;

namespace {

const char* torch_dtype(DType t) {
  switch (t) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  SPECQ_CHECK(out.good(), "writing '{}' failed", path.string());
}

void add_dense(SafetensorsWriter& st, const std::string& name, const Weight& w) {
  SPECQ_CHECK(w.data != nullptr, "tensor '{}' has no host bytes to write", name);
  st.add(name, w.dtype, w.shape, w.data);
}

void add_linear(SafetensorsWriter& st, const std::string& prefix, const Weight& w) {
  if (!w.quantized()) return add_dense(st, prefix + ".weight", w);
  const QuantizedWeight& q = *w.quant;
  switch (w.format) {
    case WeightFormat::GptqInt4:
      SPECQ_CHECK(q.zero_offset == 1, "'{}' holds gptq_v2 zero points; only v1 (gptq) checkpoints are written",
                  prefix);
      for (const auto& [suffix, t] : {std::pair<const char*, const StoredTensor*>{".qweight", &q.qweight},
                                      {".qzeros", &q.qzeros}, {".scales", &q.scales}, {".g_idx", &q.g_idx}}) {
        if (t->present()) st.add(prefix + suffix, t->dtype, t->shape, t->data);
      }
      return;
    case WeightFormat::Int8PerChannel:
      // compressed-tensors layout; QServe's [N] scales are the same bytes as [N, 1].
      st.add(prefix + ".weight", q.qweight.dtype, q.qweight.shape, q.qweight.data);
      st.add(prefix + ".weight_scale", q.scales.dtype, {w.rows(), 1}, q.scales.data);
      return;
    case WeightFormat::QqqInt4:  // QQQ's export names and shapes
      st.add(prefix + ".B", q.qweight.dtype, q.qweight.shape, q.qweight.data);
      st.add(prefix + ".s_channel", q.scales.dtype, {1, w.rows()}, q.scales.data);
      if (q.group_scales.present())
        st.add(prefix + ".s_group", q.group_scales.dtype, q.group_scales.shape, q.group_scales.data);
      return;
    case WeightFormat::QoqInt4: {  // QServe's names and shapes
      const bool grouped = q.group_scales.present();
      st.add(prefix + ".qweight", q.qweight.dtype, q.qweight.shape, q.qweight.data);
      st.add(prefix + ".s1_scales", q.scales.dtype, q.scales.shape, q.scales.data);
      if (grouped) st.add(prefix + ".s2_scales", q.group_scales.dtype, q.group_scales.shape, q.group_scales.data);
      st.add(prefix + (grouped ? ".s2_zeros" : ".s1_szeros"), q.qzeros.dtype, q.qzeros.shape, q.qzeros.data);
      return;
    }
    case WeightFormat::Dense:
      break;
  }
  fail("'{}' has format {}, which cannot be written", prefix, weight_format_name(w.format));
}

}  // namespace

nlohmann::json hf_config_json(const ModelConfig& c) {
  const bool qwen = c.arch == Arch::Qwen2;
  nlohmann::json j = {
      {"architectures", {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", qwen ? "qwen2" : "llama"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"hidden_act", "silu"},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"max_position_embeddings", c.max_position_embeddings},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"torch_dtype", torch_dtype(c.dtype)},
  };
  if (!qwen) j["attention_bias"] = c.attention_bias;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  const RopeScaling& r = c.rope_scaling;
  SPECQ_CHECK(r.type != RopeScaling::Type::Factors, "the model's RoPE scaling is a table of per-frequency factors "
              "(a GGUF rope_freqs tensor), which a Hugging Face config.json cannot express");
  if (r.type == RopeScaling::Type::Linear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"type", "linear"}, {"factor", r.factor}};
  } else if (r.type == RopeScaling::Type::Llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", r.factor},
                         {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position_embeddings", r.original_max_position}};
  }
  return j;
}

void write_hf_model(const Model& model, const std::string& out_dir, const HfWriteOptions& options) {
  const ModelConfig& c = model.config;
  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  SPECQ_CHECK(fs::is_directory(dir, ec), "cannot create output directory '{}'", out_dir);

  const ModelWeights& w = model.weights;
  SafetensorsWriter st;
  bool any_quantized = false;
  add_dense(st, "model.embed_tokens.weight", w.embed);
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    const std::string p = fmt::format("model.layers.{}.", l);
    add_dense(st, p + "input_layernorm.weight", lw.attn_norm);
    add_dense(st, p + "post_attention_layernorm.weight", lw.ffn_norm);
    const std::pair<const char*, const Weight*> linears[] = {
        {"self_attn.q_proj", &lw.wq}, {"self_attn.k_proj", &lw.wk},   {"self_attn.v_proj", &lw.wv},
        {"self_attn.o_proj", &lw.wo}, {"mlp.gate_proj", &lw.w_gate}, {"mlp.up_proj", &lw.w_up},
        {"mlp.down_proj", &lw.w_down}};
    for (const auto& [name, weight] : linears) {
      add_linear(st, p + name, *weight);
      any_quantized = any_quantized || weight->quantized();
    }
    if (c.attention_bias) {
      add_dense(st, p + "self_attn.q_proj.bias", lw.bq);
      add_dense(st, p + "self_attn.k_proj.bias", lw.bk);
      add_dense(st, p + "self_attn.v_proj.bias", lw.bv);
    }
  }
  add_dense(st, "model.norm.weight", w.final_norm);
  if (!c.tie_word_embeddings) add_linear(st, "lm_head", w.lm_head);
  st.set_metadata("format", "pt");
  st.write((dir / "model.safetensors").string());

  nlohmann::json config = hf_config_json(c);
  if (any_quantized) {
    SPECQ_CHECK(options.quantization_config.is_object(),
                "the model has quantized linears but no quantization config");
    config["quantization_config"] = options.quantization_config;
  }
  write_text(dir / "config.json", config.dump(2) + "\n");

  nlohmann::json generation = nlohmann::json::object();
  if (c.bos_token_id >= 0) generation["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) generation["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) generation["eos_token_id"] = c.eos_token_ids;
  write_text(dir / "generation_config.json", generation.dump(2) + "\n");

  if (!options.tokenizer_from.empty() && fs::path(options.tokenizer_from).extension() == ".gguf") {
    // A GGUF model carries its tokenizer as metadata: written out as the files HF loaders read.
    const HfTokenizerFiles files = gguf_tokenizer_files(GgufFile(options.tokenizer_from).header());
    try {
      write_text(dir / "tokenizer.json", files.tokenizer.dump(1) + "\n");
      write_text(dir / "tokenizer_config.json", files.config.dump(1) + "\n");
    } catch (const nlohmann::json::exception& e) {
      fail("'{}': its tokenizer cannot be written as JSON: {}", options.tokenizer_from, e.what());
    }
  } else if (!options.tokenizer_from.empty()) {
    const fs::path from(options.tokenizer_from);
    std::vector<fs::path> files;
    if (fs::is_directory(from, ec)) {
      for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                               "tokenizer.model", "tok512.bin", "tokenizer.bin"})
        if (fs::is_regular_file(from / name, ec)) files.push_back(from / name);
    } else if (fs::is_regular_file(from, ec)) {
      files.push_back(from);
    }
    for (const fs::path& f : files) {
      fs::copy_file(f, dir / f.filename(), fs::copy_options::overwrite_existing, ec);
      SPECQ_CHECK(!ec, "cannot copy '{}' to '{}': {}", f.string(), out_dir, ec.message());
    }
  }
}

}  // namespace specq
