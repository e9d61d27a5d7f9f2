// specq: one binary, one subcommand per job.
#include <fmt/core.h>

#include <cstdio>
#include <new>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"specq: fast batch-1 LLM inference with quantization and speculative decoding"};
  app.require_subcommand(1);
  const std::vector<specq::cli::Command> commands = {
      specq::cli::add_generate(app),
      specq::cli::add_info(app),
      specq::cli::add_bench(app),
      specq::cli::add_tokenize(app),
      specq::cli::add_quantize(app),
#if defined(SPECQ_HAVE_SERVER)
      specq::cli::add_serve(app),
#endif
      specq::cli::add_eval(app),
      specq::cli::add_report(app),
      specq::cli::add_frspec(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const auto& command : commands)
      if (command.app->parsed()) return command.run();
  } catch (const specq::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "error: out of memory\n");
    return 1;
  }
  return 1;
}
