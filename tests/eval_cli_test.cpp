// specq eval and specq report end to end on the CPU with stories260K, a real but tiny model (its answers
// are nonsense: this checks the plumbing, files and schema, not quality), plus resume and data errors.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_files.h"
#include "test_util.h"

namespace specq {
namespace {

using testing::read_file;
using testing::TempDir;

// stories260K has a 512-token context; the GSM8K 8-shot prompt is longer in its 512-token vocabulary, and
// RoPE models run past their trained length (the answers are nonsense either way).
const std::string kModel = "--model " + test::stories260k() + " --max-context 2048 --threads 1";
const std::string kData = "--data-dir " + test::shared_path("data");

std::vector<nlohmann::json> read_lines(const std::filesystem::path& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The FastChat/Spec-Bench answer fields every record must have, one entry per turn.
void expect_answer_schema(const nlohmann::json& r, const std::string& bench, size_t turns) {
  for (const char* key : {"question_id", "category", "answer_id", "model_id", "choices", "tstamp", "bench", "run"})
    EXPECT_TRUE(r.contains(key)) << key << " missing in " << r.dump();
  EXPECT_EQ(r["bench"], bench);
  EXPECT_EQ(r["answer_id"].get<std::string>().size(), 22u);
  const auto& c = r["choices"][0];
  EXPECT_EQ(c["index"], 0);
  for (const char* key : {"turns", "decoding_steps", "new_tokens", "wall_time", "generate_speed", "prompt_tokens",
                          "prefill_time", "accepted_tokens", "stopped_on_eos", "phase_seconds"}) {
    ASSERT_TRUE(c.contains(key) && c[key].is_array()) << key;
    EXPECT_EQ(c[key].size(), turns) << key;
  }
  int64_t steps = 0;
  for (size_t t = 0; t < turns; ++t) {
    EXPECT_GE(c["new_tokens"][t].get<int>(), 1);
    EXPECT_GT(c["wall_time"][t].get<double>(), 0.0);
    EXPECT_EQ(c["decoding_steps"][t].get<int>(), c["new_tokens"][t].get<int>() - 1);  // AR: one token per step
    steps += c["decoding_steps"][t].get<int>();
  }
  EXPECT_EQ(c["accept_lengths"].size(), size_t(steps));
  EXPECT_EQ(r["run"]["chat_template_fallback"], bench != "gsm8k");  // stories260K has no chat template
}

struct BenchCase {
  std::string bench;
  size_t turns;
  int limit;  // GSM8K's 8-shot prompt is ~1,700 stories260K tokens: one question keeps CI fast
};

class EvalEndToEnd : public ::testing::TestWithParam<BenchCase> {};

TEST_P(EvalEndToEnd, WritesAnswersAndAReport) {
  const BenchCase& param = GetParam();
  const TempDir dir;
  const auto a = dir / "ar.jsonl";
  const auto b = dir / "ar_again.jsonl";
  const std::string common = "eval --bench " + param.bench + " " + kModel + " " + kData + " --limit " +
                             std::to_string(param.limit) + " --max-new-tokens 6 --json --exec-timeout 5";
  const auto r1 = test::run_specq(common + " --warmup 1 --out " + a.string());
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_EQ(r1.err, "");  // --json: no progress lines
  const auto summary = nlohmann::json::parse(r1.out);
  EXPECT_EQ(summary["generated"], param.limit);
  EXPECT_GT(summary["tokens_per_second"].get<double>(), 0.0);
  const auto records = read_lines(a);
  ASSERT_EQ(records.size(), size_t(param.limit));
  for (const auto& r : records) expect_answer_schema(r, param.bench, param.turns);
  if (param.bench == "gsm8k") {
    EXPECT_TRUE(records[0]["gsm8k"].contains("correct"));
    EXPECT_EQ(records[0]["gsm8k"]["reference"], "18");
    EXPECT_TRUE(records[0]["run"]["terminators"].empty());  // the seed's GSM8K protocol
    EXPECT_TRUE(summary.contains("accuracy"));
  }
  if (param.bench == "humaneval") {
    EXPECT_EQ(records[0]["humaneval"]["passed"], false);  // six nonsense tokens do not solve HumanEval/0
    EXPECT_TRUE(records[0]["humaneval"].contains("status"));
    EXPECT_EQ(records[0]["question_id"], "HumanEval/0");
  }
  if (param.bench == "mt_bench") {
    EXPECT_EQ(records[0]["question_id"], 81);
  }

  const auto r2 = test::run_specq(common + " --warmup 0 --out " + b.string());
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  const auto out_dir = dir / "report";
  const auto rep = test::run_specq("report --baseline " + a.string() + " " + b.string() + " --out " + out_dir.string());
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  EXPECT_NE(rep.out.find(fmt::format("| ar | overall | {} |", param.limit)), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find(fmt::format("| ar_again | overall | {} |", param.limit)), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("1.00x"), std::string::npos) << rep.out;
  EXPECT_EQ(read_file(out_dir / "report.md"), rep.out);
  const std::string svg = read_file(out_dir / "speedup.svg");
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("ar_again"), std::string::npos);
  const auto report_json = nlohmann::json::parse(read_file(out_dir / "report.json"));
  EXPECT_EQ(report_json["runs"].size(), 2u);
  if (param.bench == "gsm8k" || param.bench == "humaneval") {
    EXPECT_NE(rep.out.find("## Accuracy"), std::string::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(AllBenchmarks, EvalEndToEnd,
                         ::testing::Values(BenchCase{"mt_bench", 2, 2}, BenchCase{"spec_bench", 2, 2},
                                           BenchCase{"gsm8k", 1, 1}, BenchCase{"humaneval", 1, 2}),
                         [](const ::testing::TestParamInfo<BenchCase>& p) { return p.param.bench; });

TEST(EvalCli, ResumeDoesOnlyTheMissingQuestions) {
  const TempDir dir;
  const auto out = dir / "answers.jsonl";
  const std::string common = "eval --bench spec_bench " + kModel + " " + kData + " --max-new-tokens 4 --warmup 0 --out " + out.string();
  const auto first = test::run_specq(common + " --limit 2");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.err.find("2/2 questions"), std::string::npos) << first.err;  // progress on stderr
  EXPECT_NE(first.err.find("ETA"), std::string::npos) << first.err;
  const auto before = read_lines(out);
  const auto second = test::run_specq(common + " --limit 4 --json");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const auto summary = nlohmann::json::parse(second.out);
  EXPECT_EQ(summary["resumed"], 2);
  EXPECT_EQ(summary["generated"], 2);
  const auto after = read_lines(out);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[0], before[0]);  // untouched
  EXPECT_EQ(after[1], before[1]);
  EXPECT_EQ(after[3]["question_id"], 84);
  // A different run (here another token budget) must not be mixed into the same file.
  const auto other = test::run_specq("eval --bench spec_bench " + kModel + " " + kData +
                                     " --max-new-tokens 5 --warmup 0 --limit 4 --out " + out.string());
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("max_new_tokens"), std::string::npos) << other.err;
}

TEST(EvalCli, SyntheticModelTakesATokenizerAndTheReportSaysAcceptanceIsMeaningless) {
  const TempDir dir;
  const auto out = dir / "synthetic.jsonl";
  const auto r = test::run_specq("eval --bench mt_bench --model synthetic:tiny --tokenizer " +
                                 test::shared_path("models/stories260K/tok512.bin") + " " + kData +
                                 " --limit 1 --max-new-tokens 3 --warmup 0 --threads 1 --json --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_lines(out)[0]["run"]["synthetic_model"], true);
  const auto rep = test::run_specq("report --baseline " + out.string());
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  EXPECT_NE(rep.out.find("meaningless"), std::string::npos) << rep.out;
}

TEST(EvalCli, SpeculativeRunRecordsStepsAcceptanceAndPhases) {
  const TempDir dir;
  const auto ar = dir / "ar.jsonl", spec = dir / "draft.jsonl";
  const std::string common = "eval --bench mt_bench " + kModel + " " + kData + " --limit 1 --max-new-tokens 16 --warmup 0 --json";
  ASSERT_EQ(test::run_specq(common + " --out " + ar.string()).exit_code, 0);
  // The model drafting for itself: greedy drafts are always accepted, six per step plus the bonus token.
  const auto r = test::run_specq(common + " --spec draft --draft " + test::stories260k() + " --out " + spec.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto record = read_lines(spec)[0];
  EXPECT_EQ(record["run"]["method"], "draft");
  const auto& c = record["choices"][0];
  const int tokens = c["new_tokens"][0].get<int>(), steps = c["decoding_steps"][0].get<int>();
  EXPECT_LT(steps, tokens - 1);
  EXPECT_EQ(c["accepted_tokens"][0].get<int>(), 7 * steps);
  EXPECT_TRUE(c["phase_seconds"][0].contains("draft"));
  EXPECT_TRUE(c["phase_seconds"][0].contains("verify"));
  // Same greedy tokens as AR: speculation must not change the answer.
  EXPECT_EQ(c["turns"], read_lines(ar)[0]["choices"][0]["turns"]);
  const auto rep = test::run_specq("report --baseline " + ar.string() + " " + spec.string());
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  EXPECT_NE(rep.out.find("| draft | overall | 1 |"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("| 7.00 |"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("## Time per phase"), std::string::npos) << rep.out;
}

TEST(EvalCli, DataErrorsAreClear) {
  const TempDir dir;
  auto r = test::run_specq("eval --bench gsm8k " + kModel + " --data-dir " + dir.path().string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  testing::write_file(dir / "q.jsonl", "{\"question_id\": 1}\n");
  r = test::run_specq("eval --bench mt_bench " + kModel + " --questions " + (dir / "q.jsonl").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("q.jsonl:1: missing field 'category'"), std::string::npos) << r.err;
  r = test::run_specq("eval --bench mmlu " + kModel);
  EXPECT_NE(r.exit_code, 0);
  r = test::run_specq("report --baseline " + (dir / "missing.jsonl").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace specq
