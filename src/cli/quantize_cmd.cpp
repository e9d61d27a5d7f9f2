// specq quantize: a model in, a Hugging Face directory out: 4-bit GPTQ (AutoGPTQ layout, W4A16),
// int8 W8A8 with optional SmoothQuant (compressed-tensors layout), or W4A8 QQQ / QoQ (QQQ's export
// and QServe's layouts).
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "io/hf_writer.h"
#include "io/loader.h"
#include "quant/quantize_model.h"
#include "tokenizer/tokenizer.h"

namespace specq::cli {
namespace {

struct QuantizeFlags {
  std::string model, out;
  std::string method = "gptq";
  int bits = 4;
  int group_size = 128;
  bool sym = false;
  bool act_order = false;
  bool static_groups = false;
  double damp = 0.01;
  double alpha = 0.5;
  std::string calib_file, eval_file, text_field = "text", tokenizer;
  std::vector<std::string> calib_ids;
  int calib_tokens = 8192;
  std::vector<std::string> eval_ids;
  int threads = 0;
};

// One progress line on stderr, redrawn in place on a terminal.
void draw_progress(int done, int total, const std::string& what) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  const bool tty = isatty(fileno(stderr)) != 0;
  fmt::print(stderr, "{}quantize [{:=<{}}{: <{}}] {}/{} {}{}", tty ? "\r\033[K" : "", "", filled, "",
             kWidth - filled, done, total, what, tty ? "" : "\n");
  if (tty && done == total && what == "done") fmt::print(stderr, "\n");
  std::fflush(stderr);
}

// Token sequences of a .jsonl file's `field` strings (one per line; blank lines skipped), each
// with the tokenizer's special tokens (BOS) and cut to `max_len` tokens.
std::vector<std::vector<int32_t>> read_jsonl_sequences(const std::string& path, const std::string& field,
                                                       const Tokenizer& tokenizer, int max_len) {
  std::ifstream in(path);
  SPECQ_CHECK(in.good(), "cannot read '{}'", path);
  std::vector<std::vector<int32_t>> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: not a JSON line: {}", path, number, e.what());
    }
    SPECQ_CHECK(j.is_object() && j.contains(field) && j[field].is_string(),
                "{}:{}: expected an object with a string field \"{}\"", path, number, field);
    std::vector<int32_t> ids = tokenizer.encode(j[field].get<std::string>(), /*add_special=*/true);
    if (int(ids.size()) > max_len) ids.resize(size_t(max_len));
    if (ids.size() >= 2) out.push_back(std::move(ids));
  }
  SPECQ_CHECK(!out.empty(), "'{}' has no line with text in \"{}\"", path, field);
  return out;
}

double perplexity_of(Model& model, const std::vector<std::vector<int32_t>>& sequences, int threads) {
  RunnerOptions options;
  options.threads = threads;
  auto runner = make_cpu_runner(model, options);
  // Mean of per-sequence log-perplexities weighted by predicted tokens = perplexity of them all.
  double log_sum = 0.0;
  int64_t tokens = 0;
  for (const auto& seq : sequences) {
    log_sum += std::log(quant::perplexity(*runner, seq)) * double(seq.size() - 1);
    tokens += int64_t(seq.size()) - 1;
  }
  return std::exp(log_sum / double(tokens));
}

}  // namespace

Command add_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "quantize", "Quantize a model's linear layers: 4-bit GPTQ (AutoGPTQ format), int8 W8A8 (compressed-tensors) "
      "or W4A8 (QQQ, QoQ)");
  auto f = std::make_shared<QuantizeFlags>();
  sub->add_option("--model", f->model, "Input model: Hugging Face directory, .gguf file, llama2.c .bin, or synthetic:NAME")
      ->required();
  sub->add_option("--out", f->out, "Output directory (Hugging Face layout, AutoGPTQ or compressed-tensors tensors)")
      ->required();
  sub->add_option("--method", f->method,
                  "rtn, gptq (4-bit), smoothquant (8-bit W8A8), qqq or qoq (W4A8: smoothing + GPTQ)")
      ->capture_default_str();
  auto* bits = sub->add_option("--bits", f->bits, "Bits per weight: 4 (W4A16) or 8 (W8A8; default for smoothquant)")
                   ->capture_default_str();
  auto* group = sub->add_option("--group-size", f->group_size,
                                "Inputs per scale group; -1 = per output channel (W8A8: always -1; W4A8: 128 or -1)")
                    ->capture_default_str();
  sub->add_option("--alpha", f->alpha, "Smoothing migration strength in [0, 1] (smoothquant, qqq, qoq)")
      ->capture_default_str();
  sub->add_flag("--sym", f->sym, "Symmetric quantization (fixed zero point 8); default asymmetric");
  sub->add_flag("--act-order", f->act_order, "GPTQ: quantize columns by descending Hessian diagonal (desc_act)");
  sub->add_flag("--static-groups", f->static_groups, "With --act-order: groups stay runs of original columns");
  sub->add_option("--damp", f->damp, "GPTQ dampening, a fraction of the mean Hessian diagonal")
      ->capture_default_str();
  sub->add_option("--calib", f->calib_file, "Calibration text: a .jsonl file, one {\"text\": ...} per line");
  sub->add_option("--text-field", f->text_field, "The field of --calib / --eval lines holding the text")
      ->capture_default_str();
  sub->add_option("--tokenizer", f->tokenizer, "Tokenizer for --calib / --eval (default: next to the model)");
  sub->add_option("--eval", f->eval_file, "Held-out text (.jsonl like --calib) whose perplexity is reported");
  sub->add_option("--calib-ids", f->calib_ids,
                  "Calibration sequence as comma-separated token ids; repeat for more sequences");
  sub->add_option("--calib-tokens", f->calib_tokens, "Calibration tokens to use at most")->capture_default_str();
  sub->add_option("--eval-ids", f->eval_ids,
                  "Held-out sequence (token ids) whose perplexity is reported before and after; repeatable");
  sub->add_option("--threads", f->threads, "CPU threads (0 = all cores)");

  auto run = [f, bits, group]() -> int {
    quant::QuantOptions options;
    const quant::Method methods[] = {quant::Method::Rtn, quant::Method::Gptq, quant::Method::SmoothQuant,
                                     quant::Method::Qqq, quant::Method::Qoq};
    const auto method = std::find_if(std::begin(methods), std::end(methods),
                                     [&](quant::Method m) { return f->method == quant::method_name(m); });
    SPECQ_CHECK(method != std::end(methods), "--method must be rtn, gptq, smoothquant, qqq or qoq (got '{}')",
                f->method);
    options.method = *method;
    // SmoothQuant means W8A8; W8A8 weights are per-channel: their defaults follow when not given.
    options.bits = options.method == quant::Method::SmoothQuant && bits->count() == 0 ? 8 : f->bits;
    options.group_size = options.bits == 8 && group->count() == 0 ? -1 : f->group_size;
    options.alpha = f->alpha;
    options.sym = f->sym;
    options.act_order = f->act_order;
    options.static_groups = f->static_groups;
    options.damp = f->damp;
    options.validate();
    SPECQ_CHECK(f->calib_tokens > 0, "--calib-tokens must be positive (got {})", f->calib_tokens);
    SPECQ_CHECK(f->threads >= 0, "--threads must be >= 0 (got {})", f->threads);
    SPECQ_CHECK(options.method == quant::Method::Rtn || !f->calib_ids.empty() || !f->calib_file.empty(),
                "--method {} needs calibration tokens: pass --calib FILE.jsonl or --calib-ids (repeatable)",
                f->method);
    SPECQ_CHECK(f->calib_ids.empty() || f->calib_file.empty(), "give --calib or --calib-ids, not both");

    Model model = load_model(f->model);
    const int context = std::min(model.config.max_position_embeddings, 4096);  // the CPU runner's default
    std::unique_ptr<Tokenizer> tokenizer;
    const std::string tokenizer_path = f->tokenizer.empty() ? model.tokenizer_path : f->tokenizer;
    if (!f->calib_file.empty() || !f->eval_file.empty()) {
      SPECQ_CHECK(!tokenizer_path.empty(), "'{}' has no tokenizer for --calib / --eval text; pass --tokenizer",
                  f->model);
      tokenizer = Tokenizer::load(tokenizer_path);
      SPECQ_CHECK(tokenizer->vocab_size() <= model.config.vocab_size,
                  "tokenizer '{}' has {} tokens but the model's vocabulary has {}", tokenizer_path,
                  tokenizer->vocab_size(), model.config.vocab_size);
    }

    // Calibration: the sequences in order, the last one cut so that the total fits --calib-tokens.
    std::vector<std::vector<int32_t>> candidates;
    if (!f->calib_file.empty()) candidates = read_jsonl_sequences(f->calib_file, f->text_field, *tokenizer, context);
    for (const std::string& text : f->calib_ids) {
      candidates.push_back(parse_id_list(text, "--calib-ids"));
      SPECQ_CHECK(!candidates.back().empty(), "--calib-ids: a calibration sequence is empty");
    }
    std::vector<std::vector<int32_t>> calibration;
    int64_t budget = f->calib_tokens;
    for (std::vector<int32_t>& ids : candidates) {
      if (budget <= 0) break;
      if (int64_t(ids.size()) > budget) ids.resize(size_t(budget));
      budget -= int64_t(ids.size());
      calibration.push_back(std::move(ids));
    }
    std::vector<std::vector<int32_t>> held_out;
    if (!f->eval_file.empty()) held_out = read_jsonl_sequences(f->eval_file, f->text_field, *tokenizer, context);
    for (const std::string& text : f->eval_ids) {
      held_out.push_back(parse_id_list(text, "--eval-ids"));
      SPECQ_CHECK(held_out.back().size() >= 2, "--eval-ids: a held-out sequence needs at least 2 tokens");
    }
    nlohmann::json report = {{"method", f->method}, {"bits", options.bits}, {"group_size", options.group_size}};
    const bool w4a8 = options.method == quant::Method::Qqq || options.method == quant::Method::Qoq;
    if (options.bits == 4 && !w4a8) {
      report["sym"] = f->sym;
      report["act_order"] = f->act_order;
    }
    if (options.method == quant::Method::SmoothQuant || w4a8) report["alpha"] = options.alpha;
    if (!held_out.empty()) report["perplexity_input"] = perplexity_of(model, held_out, f->threads);

    const quant::QuantizeSummary summary =
        quant::quantize_model(model, options, calibration, f->threads, draw_progress);
    SPECQ_CHECK(!summary.quantized.empty(), "no linear layer of '{}' can be stored as {} ({})", f->model,
                options.bits == 8 ? "int8 W8A8" : w4a8 ? "W4A8" : "4-bit GPTQ",
                summary.kept_dense.empty() ? "the model has none" : summary.kept_dense[0].second);
    for (const auto& [name, why] : summary.kept_dense)
      fmt::print(stderr, "kept dense: {}: {}\n", name, why);

    HfWriteOptions write = quant::checkpoint_write_options(options, summary);
    write.tokenizer_from = tokenizer_path;
    write_hf_model(model, f->out, write);

    report["quantized_linears"] = summary.quantized.size();
    report["dense_linears"] = summary.kept_dense.size();
    report["calibration_tokens"] = summary.calibration_tokens;
    report["seconds"] = summary.seconds;
    report["out"] = f->out;
    if (!held_out.empty()) {
      Model reloaded = load_model(f->out);  // what was written, not what is in memory
      report["perplexity_output"] = perplexity_of(reloaded, held_out, f->threads);
    }
    fmt::print("{}\n", report.dump());
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
