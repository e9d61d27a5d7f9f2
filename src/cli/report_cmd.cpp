// specq report: speed, speedup, acceptance and accuracy tables from answer files, as Markdown and an SVG chart.
#include <fmt/core.h>

#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/error.h"
#include "eval/report.h"

namespace specq::cli {
namespace {

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  SPECQ_CHECK(out.good(), "cannot write {}", path.string());
}

}  // namespace

Command add_report(CLI::App& app) {
  auto* sub = app.add_subcommand("report", "Tables and a speedup chart from answer files");
  auto baseline_path = std::make_shared<std::string>();
  auto run_paths = std::make_shared<std::vector<std::string>>();
  auto out_dir = std::make_shared<std::string>();
  sub->add_option("--baseline", *baseline_path, "Answer file of the baseline (e.g. AR)")->required();
  sub->add_option("runs", *run_paths, "Answer files to compare with the baseline");
  sub->add_option("--out", *out_dir, "Folder for report.md, report.json and speedup.svg (default: print only)");
  auto run = [=]() -> int {
    std::vector<eval::RunStats> runs;
    runs.push_back(eval::summarize(eval::read_answer_file(*baseline_path, /*must_exist=*/true)));
    for (const std::string& path : *run_paths)
      runs.push_back(eval::summarize(eval::read_answer_file(path, /*must_exist=*/true)));
    // Two files with one name (in different folders) get their position appended to stay apart in the table.
    for (size_t i = 0; i < runs.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (runs[j].label == runs[i].label) runs[i].label += fmt::format("#{}", i + 1);
    for (size_t i = 1; i < runs.size(); ++i)
      SPECQ_CHECK(runs[i].bench == runs[0].bench, "'{}' is a {} answer file but the baseline is {}", runs[i].path,
                  runs[i].bench.empty() ? "foreign" : runs[i].bench, runs[0].bench.empty() ? "foreign" : runs[0].bench);
    const eval::RunStats baseline = runs.front();
    eval::add_speedups(runs, baseline);
    const std::string markdown = eval::report_markdown(runs, runs.front());
    fmt::print("{}", markdown);
    if (!out_dir->empty()) {
      const std::filesystem::path dir(*out_dir);
      std::filesystem::create_directories(dir);
      write_file(dir / "report.md", markdown);
      write_file(dir / "speedup.svg", eval::speedup_chart(runs, runs.front()));
      write_file(dir / "report.json", eval::report_json(runs, runs.front()).dump(2) + "\n");
      fmt::print(stderr, "wrote {}, {} and {}\n", (dir / "report.md").string(), (dir / "speedup.svg").string(),
                 (dir / "report.json").string());
    }
    return 0;
  };
  return {sub, run};
}

}  // namespace specq::cli
