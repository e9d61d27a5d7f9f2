// Each subcommand registers its flags on the CLI11 app and returns the function that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace specq::cli {

struct Command {
  CLI::App* app;            // the subcommand, for checking whether it was chosen
  std::function<int()> run; // runs it after parsing; returns the exit code
};

Command add_generate(CLI::App& app);
Command add_info(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_report(CLI::App& app);
Command add_frspec(CLI::App& app);

// "1,2,3" -> ids; "" -> empty. Error on anything that is not a comma-separated integer list.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);

}  // namespace specq::cli
