#include "quant/quantize_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/timer.h"
#include "io/synthetic.h"
#include "io/qoq_checkpoint.h"
#include "io/qqq_checkpoint.h"
#include "io/w8a8_checkpoint.h"
#include "quant/qoq.h"
#include "quant/qqq.h"
#include "quant/smoothquant.h"

namespace specq::quant {
namespace {

// Runs `ids` from position 0 in chunks the runner accepts; `rows` picks which rows give logits,
// `on_logits(first_position, logits)` sees them.
void run_sequence(Runner& runner, std::span<const int32_t> ids, ForwardRequest::Rows rows,
                  const std::function<void(int, const ForwardResult&)>& on_logits) {
  const int chunk = runner.max_tokens_per_forward();
  std::vector<int32_t> positions;
  for (int start = 0; start < int(ids.size()); start += chunk) {
    const int n = std::min(chunk, int(ids.size()) - start);
    positions.resize(size_t(n));
    std::iota(positions.begin(), positions.end(), start);
    ForwardRequest request;
    request.tokens = ids.subspan(size_t(start), size_t(n));
    request.positions = positions;
    request.cache_len = start;
    request.logits_rows = rows;
    const ForwardResult result = runner.forward(request);
    if (on_logits) on_logits(start, result);
  }
}

// Checks calibration sequences against the model; returns their total tokens.
int64_t check_calibration(const std::vector<std::vector<int32_t>>& calibration, const Runner& runner,
                          const ModelConfig& c) {
  int64_t tokens = 0;
  for (const auto& seq : calibration) {
    SPECQ_CHECK(!seq.empty(), "a calibration sequence is empty");
    SPECQ_CHECK(int(seq.size()) <= runner.max_context(),
                "a calibration sequence has {} tokens, more than the model's context of {}", seq.size(),
                runner.max_context());
    for (int32_t id : seq)
      SPECQ_CHECK(id >= 0 && id < c.vocab_size, "calibration token id {} is outside the vocabulary [0, {})", id,
                  c.vocab_size);
    tokens += int64_t(seq.size());
  }
  return tokens;
}

// SmoothQuant's smoothing (quant/smoothquant.h): one calibration pass over the unquantized model
// for the activation ranges, then the factors folded into the weights. Dense linears are smoothed
// too (the function is unchanged), so the pass does not need every linear to be quantizable.
void smooth(Model& model, const QuantOptions& options, const std::vector<std::vector<int32_t>>& calibration,
            int threads, QuantizeSummary& summary, const std::function<void(const std::string&)>& stage) {
  const ModelConfig& c = model.config;
  SPECQ_CHECK(!calibration.empty(), "--method {} needs calibration tokens (--calib or --calib-ids)",
              method_name(options.method));
  std::vector<LayerRanges> ranges(size_t(c.num_layers));
  {
    RunnerOptions ro;
    ro.threads = threads;
    ro.observe_linear_input = [&](const LinearInput& in) { observe_ranges(ranges, in); };
    auto runner = make_cpu_runner(model, ro);
    summary.calibration_tokens = check_calibration(calibration, *runner, c);
    stage("calibration forward");
    for (const auto& seq : calibration) run_sequence(*runner, seq, ForwardRequest::Rows::None, nullptr);
  }
  stage("smoothing");
  smooth_model(model, ranges, options.alpha);
}

// One matrix in the method's 4-bit format: GptqInt4 (rtn, gptq), QqqInt4 or QoqInt4.
Weight quantize_4bit(const float* dense, int64_t n, int64_t k, const std::vector<double>& hessian,
                     const QuantOptions& options) {
  if (options.method == Method::Qqq) return quantize_qqq(dense, n, k, hessian, options);
  if (options.method == Method::Qoq) return quantize_qoq(dense, n, k, hessian, options);
  return gptq_weight_view(std::make_shared<const GptqMatrix>(quantize_matrix(dense, n, k, hessian, options)));
}

// W8A8: (SmoothQuant: one calibration pass over the unquantized model for the activation ranges,
// then smoothing folded into the weights) and int8 per-channel RTN of every block linear. Unlike
// GPTQ no layer depends on its predecessors' quantization, so one pass serves all layers.
void quantize_w8a8(Model& model, const QuantOptions& options, const std::vector<std::vector<int32_t>>& calibration,
                   int threads, const std::vector<BlockLinear>& to_quantize, QuantizeSummary& summary,
                   const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  const int total = int(to_quantize.size());
  if (options.method == Method::SmoothQuant) {
    SPECQ_CHECK(int(to_quantize.size()) == 7 * c.num_layers,
                "SmoothQuant folds its factors into neighbouring linears, so every block linear must be quantizable "
                "({})", summary.kept_dense.empty() ? "" : summary.kept_dense[0].second);
    smooth(model, options, calibration, threads, summary, [&](const std::string& what) {
      if (progress) progress(0, total, what);
    });
  }
  std::vector<float> dense;
  int done = 0;
  for (const BlockLinear& lin : to_quantize) {
    if (progress) progress(done, total, lin.name);
    Weight& w = *lin.weight;
    dense.resize(size_t(w.numel()));
    cpu::to_float(w.data, w.dtype, w.numel(), dense.data());
    *lin.weight = int8_weight_view(std::make_shared<const Int8Matrix>(quantize_int8(dense.data(), w.rows(), w.cols())));
    summary.quantized.push_back(lin.name);
    ++done;
  }
}

}  // namespace

std::vector<BlockLinear> block_linears(Model& model, int layer) {
  LayerWeights& l = model.weights.layers[size_t(layer)];
  const std::string p = fmt::format("model.layers.{}.", layer);
  return {{p + "self_attn.q_proj", &l.wq, LinearSlot::Qkv},   {p + "self_attn.k_proj", &l.wk, LinearSlot::Qkv},
          {p + "self_attn.v_proj", &l.wv, LinearSlot::Qkv},   {p + "self_attn.o_proj", &l.wo, LinearSlot::O},
          {p + "mlp.gate_proj", &l.w_gate, LinearSlot::GateUp}, {p + "mlp.up_proj", &l.w_up, LinearSlot::GateUp},
          {p + "mlp.down_proj", &l.w_down, LinearSlot::Down}};
}

QuantizeSummary quantize_model(Model& model, const QuantOptions& options,
                               const std::vector<std::vector<int32_t>>& calibration, int threads,
                               const ProgressFn& progress) {
  options.validate();
  Stopwatch clock;
  materialize_synthetic(model);
  validate_weights(model);
  const ModelConfig& c = model.config;
  // GPTQ, QQQ and QoQ run GPTQ's column loop on each layer's Hessians; QQQ and QoQ smooth first.
  const bool gptq = options.method == Method::Gptq || options.method == Method::Qqq || options.method == Method::Qoq;

  QuantizeSummary summary;
  std::vector<std::vector<BlockLinear>> to_quantize(size_t(c.num_layers));
  int total = 0;
  for (int l = 0; l < c.num_layers; ++l) {
    for (const BlockLinear& lin : block_linears(model, l)) {
      SPECQ_CHECK(!lin.weight->quantized(), "'{}' is already quantized ({}); quantize an unquantized model",
                  lin.name, weight_format_name(lin.weight->format));
      const std::string why = incompatibility(lin.weight->rows(), lin.weight->cols(), options);
      if (why.empty()) {
        to_quantize[size_t(l)].push_back(lin);
        ++total;
      } else {
        summary.kept_dense.emplace_back(lin.name, why);
      }
    }
  }

  if (options.bits == 8) {
    std::vector<BlockLinear> all;
    for (const auto& layer : to_quantize) all.insert(all.end(), layer.begin(), layer.end());
    quantize_w8a8(model, options, calibration, threads, all, summary, progress);
    if (progress) progress(total, total, "done");
    summary.seconds = clock.seconds();
    return summary;
  }

  if (options.method == Method::Qqq || options.method == Method::Qoq)
    smooth(model, options, calibration, threads, summary, [&](const std::string& what) {
      if (progress) progress(0, total, what);
    });

  std::unique_ptr<Runner> runner;
  int observed_layer = -1;
  std::map<LinearSlot, HessianAccumulator> hessians;
  if (gptq && total > 0) {
    SPECQ_CHECK(!calibration.empty(), "--method {} needs calibration tokens (--calib or --calib-ids)",
                method_name(options.method));
    RunnerOptions ro;
    ro.threads = threads;
    ro.observe_linear_input = [&](const LinearInput& in) {
      if (in.layer != observed_layer) return;
      auto it = hessians.find(in.slot);
      if (it != hessians.end()) it->second.add(in.rows, in.n);
    };
    runner = make_cpu_runner(model, ro);
    summary.calibration_tokens = check_calibration(calibration, *runner, c);
  }

  int done = 0;
  std::vector<float> dense;
  for (int l = 0; l < c.num_layers; ++l) {
    if (to_quantize[size_t(l)].empty()) continue;
    if (runner) {
      hessians.clear();
      for (const BlockLinear& lin : to_quantize[size_t(l)]) hessians.try_emplace(lin.slot, lin.weight->cols());
      observed_layer = l;
      if (progress) progress(done, total, fmt::format("layer {}: calibration forward", l));
      for (const auto& seq : calibration) run_sequence(*runner, seq, ForwardRequest::Rows::None, nullptr);
      observed_layer = -1;
    }
    for (const BlockLinear& lin : to_quantize[size_t(l)]) {
      if (progress) progress(done, total, lin.name);
      Weight& w = *lin.weight;
      dense.resize(size_t(w.numel()));
      cpu::to_float(w.data, w.dtype, w.numel(), dense.data());
      const std::vector<double> h = runner ? hessians.at(lin.slot).hessian() : std::vector<double>{};
      w = quantize_4bit(dense.data(), w.rows(), w.cols(), h, options);  // the runner reads it in place:
                                                                        // later layers see it
      summary.quantized.push_back(lin.name);
      ++done;
    }
  }
  if (progress) progress(done, total, "done");
  summary.seconds = clock.seconds();
  return summary;
}

HfWriteOptions checkpoint_write_options(const QuantOptions& options, const QuantizeSummary& summary) {
  HfWriteOptions write;
  // QQQ's and QoQ's configs have no list of dense linears: their tensors (.weight) say so.
  if (options.method == Method::Qqq) {
    write.quantization_config = qqq_config_json(options.group_size);
    return write;
  }
  if (options.method == Method::Qoq) {
    write.quantization_config = qoq_config_json(options.group_size);
    return write;
  }
  if (options.bits == 8) {
    // compressed-tensors lists the modules it leaves dense by name.
    std::vector<std::string> ignore = {"lm_head"};
    for (const auto& [name, why] : summary.kept_dense) ignore.push_back(name);
    write.quantization_config = w8a8_config_json(ignore);
    return write;
  }
  GptqConfig config;
  config.bits = options.bits;
  config.group_size = options.group_size;
  config.sym = options.sym;
  config.desc_act = options.act_order;
  config.static_groups = options.static_groups;
  config.v2 = false;
  write.quantization_config = gptq_config_json(config);
  // transformers/optimum's list of the block's quantized modules (the others load dense).
  const std::string layers = "model.layers.";
  std::vector<std::string> dense_in_block;
  for (const auto& [name, why] : summary.kept_dense)
    dense_in_block.push_back(name.substr(name.find('.', layers.size()) + 1));  // "mlp.down_proj"
  if (!dense_in_block.empty()) {
    std::vector<std::string> quantized;
    for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      if (std::find(dense_in_block.begin(), dense_in_block.end(), name) == dense_in_block.end())
        quantized.emplace_back(name);
    write.quantization_config["modules_in_block_to_quantize"] = {quantized};
  }
  return write;
}

double perplexity(Runner& runner, std::span<const int32_t> ids) {
  SPECQ_CHECK(ids.size() >= 2, "perplexity needs at least 2 tokens (got {})", ids.size());
  SPECQ_CHECK(int(ids.size()) <= runner.max_context(), "{} tokens do not fit the context of {}", ids.size(),
              runner.max_context());
  const int64_t vocab = runner.config().vocab_size;
  double nll = 0.0;
  run_sequence(runner, ids, ForwardRequest::Rows::All, [&](int start, const ForwardResult& result) {
    const int rows = int(result.logits.size() / size_t(vocab));
    for (int r = 0; r < rows; ++r) {
      const int pos = start + r;
      if (pos + 1 >= int(ids.size())) break;
      const float* logits = result.logits.data() + int64_t(r) * vocab;
      const float top = *std::max_element(logits, logits + vocab);
      double sum = 0.0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - double(top));
      nll += std::log(sum) + double(top) - double(logits[ids[size_t(pos) + 1]]);
    }
  });
  return std::exp(nll / double(ids.size() - 1));
}

}  // namespace specq::quant
