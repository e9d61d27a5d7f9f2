// The evaluation harness's parts: GSM8K prompt and extraction, HumanEval post-processing and sandboxed
// execution (right, wrong, crashing, looping and escaping completions), question files, the report's
// arithmetic and its SVG.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/answer_file.h"
#include "eval/dataset.h"
#include "eval/gsm8k.h"
#include "eval/humaneval.h"
#include "eval/prompts.h"
#include "eval/report.h"
#include "eval/svg.h"
#include "test_files.h"
#include "test_util.h"

namespace specq::eval {
namespace {

using specq::testing::error_of;
using specq::testing::TempDir;
using specq::testing::write_file;

// ---------------------------------------------------------------- GSM8K

TEST(Gsm8k, PromptIsTheSeedsEightShotText) {
  // The seed's create_demo_text over the Wei et al. exemplars, then "Q: {question}\nA:".
  const std::string expected =
      "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
      "there will be 21 trees. How many trees did the grove workers plant today?\nA: There are 15 trees originally. "
      "Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is "
      "6.\n\n"
      "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\nA: "
      "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.\n\n"
      "Q: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in "
      "total?\nA: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
      "eating 35, they had 74 - 35 = 39. The answer is 39.\n\n"
      "Q: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
      "Jason give to Denny?\nA: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he "
      "gave Denny 20 - 12 = 8. The answer is 8.\n\n"
      "Q: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he "
      "have now?\nA: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more "
      "toys. 5 + 4 = 9. The answer is 9.\n\n"
      "Q: There were nine computers in the server room. Five more computers were installed each day, from monday "
      "to thursday. How many computers are now in the server room?\nA: There were originally 9 computers. For each "
      "of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is "
      "29.\n\n"
      "Q: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many "
      "golf balls did he have at the end of wednesday?\nA: Michael started with 58 golf balls. After losing 23 on "
      "tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.\n\n"
      "Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\nA: Olivia had 23 "
      "dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 "
      "is 8. The answer is 8.\n\n"
      "Q: How many legs do 3 ducks have?\nA:";
  EXPECT_EQ(gsm8k_prompt("How many legs do 3 ducks have?"), expected);
}

TEST(Gsm8k, ExtractionFollowsCleanAnswer) {
  EXPECT_EQ(gsm8k_clean_answer(" She makes 9 * 2 = $18. The answer is 18.\n\nQ: next"), "18");
  EXPECT_EQ(gsm8k_clean_answer("The ANSWER IS 1,234."), "1234");
  EXPECT_EQ(gsm8k_clean_answer("So 5 + 4 = 9, and then 12 more"), "12");  // no trigger: the last number
  EXPECT_EQ(gsm8k_clean_answer("The answer is 5.\n\nQ: ...\nA: The answer is 7."), "5");  // first trigger wins
  // With a trigger only the text up to the next trigger counts, even if it holds no number.
  EXPECT_EQ(gsm8k_clean_answer("The answer is unknown. 3 apples. The answer is 7."), "3");
  EXPECT_EQ(gsm8k_clean_answer("the answer is unclear. The answer is 7."), "[invalid]");
  EXPECT_EQ(gsm8k_clean_answer("the answer is -3.5."), "-3.5");
  EXPECT_EQ(gsm8k_clean_answer("The answer is $18.50 per day"), "18.50");
  EXPECT_EQ(gsm8k_clean_answer("The answer is 8.00"), "8.00");  // exact string match: "8.00" != "8"
  EXPECT_EQ(gsm8k_clean_answer("no digits here"), "[invalid]");
  EXPECT_EQ(gsm8k_clean_answer(""), "[invalid]");
}

TEST(Gsm8k, ReferenceAnswer) {
  EXPECT_EQ(gsm8k_reference_answer("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18"), "18");
  EXPECT_EQ(gsm8k_reference_answer("...\n#### 1,000"), "1000");
  EXPECT_EQ(gsm8k_reference_answer("#### -5"), "-5");
  EXPECT_EQ(gsm8k_reference_answer("no final answer"), "[invalid]");
  // Right and wrong hand-made outputs against one reference.
  const std::string reference = gsm8k_reference_answer("2 + 3 = <<2+3=5>>5\n#### 5");
  EXPECT_EQ(gsm8k_clean_answer("There are 2 + 3 = 5 cars. The answer is 5."), reference);
  EXPECT_NE(gsm8k_clean_answer("There are 2 + 2 = 4 cars. The answer is 4."), reference);
  EXPECT_NE(gsm8k_clean_answer("I think about 2 and 3 and 6"), reference);
}

// ---------------------------------------------------------------- HumanEval

Question has_close_elements() {
  const std::vector<Question> tasks =
      load_questions(Bench::HumanEval, test::shared_path("data/humaneval/HumanEval.jsonl.gz"));
  EXPECT_EQ(tasks.size(), 164u);
  EXPECT_EQ(tasks[0].id, "HumanEval/0");
  return tasks[0];
}

// A completion as a chat model writes it: the whole function, `body` its statements (4-space indented).
std::string completion_with_body(const std::string& body) {
  return "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n" +
         body + "\n```\n\nThis function compares every pair.";
}

const std::string kRightBody =
    "    for i, a in enumerate(numbers):\n"
    "        for j, b in enumerate(numbers):\n"
    "            if i != j and abs(a - b) < threshold:\n"
    "                return True\n"
    "    return False";

TEST(HumanEval, CutAtEndMarkersAndTabs) {
  EXPECT_EQ(humaneval_cut("def f():\n\treturn 1\n```\nExplanation"), "def f():\n    return 1");
  EXPECT_EQ(humaneval_cut("def f():\n    return 1\nif __name__ == '__main__':\n    f()"), "def f():\n    return 1");
  EXPECT_EQ(humaneval_cut("x = 1\nprint(x)\ndef main(): pass"), "x = 1");
  EXPECT_EQ(humaneval_cut("a</s>b<|endoftext|>"), "a");
  EXPECT_EQ(humaneval_cut("no marker"), "no marker");
}

class HumanEvalExec : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { executor_ = new HumanEvalExecutor(3.0); }
  static void TearDownTestSuite() { delete executor_; }
  ExecutionResult run(const std::string& raw) { return executor_->run(task_, humaneval_cut(raw)); }
  Question task_ = has_close_elements();
  static HumanEvalExecutor* executor_;
};
HumanEvalExecutor* HumanEvalExec::executor_ = nullptr;

TEST_F(HumanEvalExec, RightAnswerPasses) {
  const ExecutionResult r = run(completion_with_body(kRightBody));
  EXPECT_TRUE(r.passed) << r.status << ": " << r.detail;
  EXPECT_EQ(r.status, "passed");
  // The sanitizer kept the import and the function, not the prose after the code block.
  EXPECT_NE(r.sanitized.find("from typing import List"), std::string::npos);
  EXPECT_EQ(r.sanitized.find("This function"), std::string::npos);
}

TEST_F(HumanEvalExec, SanitizerDropsProseAndUnusedCode) {
  const std::string raw = "Sure! Here it is:\n" + completion_with_body(kRightBody) +
                          "\n\ndef unused_helper():\n    return 42\n\nassert has_close_elements([], 1.0) is True\n";
  const ExecutionResult r = executor_->run(task_, raw);  // not cut: the sanitizer alone must cope
  EXPECT_TRUE(r.passed) << r.status << ": " << r.detail;
  EXPECT_EQ(r.sanitized.find("unused_helper"), std::string::npos) << r.sanitized;
  EXPECT_EQ(r.sanitized.find("Sure!"), std::string::npos) << r.sanitized;
}

TEST_F(HumanEvalExec, WrongAnswerFails) {
  const ExecutionResult r = run(completion_with_body("    return False"));
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status, "failed");
  EXPECT_NE(r.detail.find("AssertionError"), std::string::npos) << r.detail;
}

TEST_F(HumanEvalExec, SyntaxErrorFails) {
  EXPECT_FALSE(run(completion_with_body("    return (((")).passed);
}

TEST_F(HumanEvalExec, EarlyExitDoesNotPass) {
  EXPECT_FALSE(run(completion_with_body("    import os\n    os._exit(0)")).passed);
  EXPECT_FALSE(run(completion_with_body("    import sys\n    sys.exit(0)")).passed);
}

TEST_F(HumanEvalExec, InfiniteLoopTimesOutAndOnlyFailsThatTask) {
  const ExecutionResult r = run(completion_with_body("    while True:\n        pass\n    return False"));
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status, "timed out");
  EXPECT_LT(r.seconds, 10.0);
  EXPECT_TRUE(run(completion_with_body(kRightBody)).passed);  // the next task is unaffected
}

TEST_F(HumanEvalExec, WritesOutsideTheScratchDirectoryAreRefused) {
  const TempDir outside;
  const std::string target = (outside / "escaped.txt").string();
  const std::string writes = "    open('" + target + "', 'w').write('x')\n" + kRightBody;
  const ExecutionResult r = run(completion_with_body(writes));
  EXPECT_FALSE(r.passed);
  EXPECT_NE(r.detail.find("PermissionError"), std::string::npos) << r.detail;
  EXPECT_FALSE(std::filesystem::exists(target));
  // The same through os.open, a rename out of the scratch directory, and a shell.
  const std::string via_os =
      "    import os\n    os.close(os.open('" + target + "', os.O_WRONLY | os.O_CREAT))\n" + kRightBody;
  EXPECT_FALSE(run(completion_with_body(via_os)).passed);
  const std::string via_rename = "    import os\n    open('mine.txt', 'w').write('x')\n    os.rename('mine.txt', '" +
                                 target + "')\n" + kRightBody;
  EXPECT_FALSE(run(completion_with_body(via_rename)).passed);
  const std::string via_shell = "    import os\n    os.system('touch " + target + "')\n" + kRightBody;
  EXPECT_FALSE(run(completion_with_body(via_shell)).passed);
  EXPECT_FALSE(std::filesystem::exists(target));
  // Inside the scratch directory (the working directory) writing is fine.
  EXPECT_TRUE(run(completion_with_body("    open('notes.txt', 'w').write('x')\n" + kRightBody)).passed);
}

TEST_F(HumanEvalExec, NoNetwork) {
  const std::string connects =
      "    import socket\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n" + kRightBody;
  const ExecutionResult r = run(completion_with_body(connects));
  EXPECT_FALSE(r.passed);
}

// ---------------------------------------------------------------- question files

TEST(Questions, LoadsTheSharedSets) {
  const auto mt = load_questions(Bench::MtBench, default_question_file(Bench::MtBench, test::shared_path("data")));
  ASSERT_EQ(mt.size(), 80u);
  EXPECT_EQ(mt[0].id, 81);
  EXPECT_EQ(mt[0].category, "writing");
  EXPECT_EQ(mt[0].turns.size(), 2u);
  const auto spec = load_questions(Bench::SpecBench, test::shared_path("data/spec_bench/question.jsonl"));
  EXPECT_EQ(spec.size(), 480u);
  const auto gsm = load_questions(Bench::Gsm8k, test::shared_path("data/gsm8k/test.jsonl"));
  ASSERT_EQ(gsm.size(), 1319u);
  EXPECT_EQ(gsm8k_reference_answer(gsm[0].reference), "18");
}

TEST(Questions, BadFilesGiveClearErrors) {
  const TempDir dir;
  EXPECT_NE(error_of([&] { load_questions(Bench::MtBench, (dir / "none.jsonl").string()); }).find("does not exist"),
            std::string::npos);
  write_file(dir / "bad.jsonl", "{\"question_id\": 1, \"category\": \"x\", \"turns\": [\"a\"]}\n{not json\n");
  EXPECT_NE(error_of([&] { load_questions(Bench::MtBench, (dir / "bad.jsonl").string()); }).find("bad.jsonl:2"),
            std::string::npos);
  write_file(dir / "field.jsonl", "{\"question_id\": 1, \"category\": \"x\"}\n");
  EXPECT_NE(error_of([&] { load_questions(Bench::MtBench, (dir / "field.jsonl").string()); }).find("'turns'"),
            std::string::npos);
  write_file(dir / "gsm.jsonl", "{\"question\": \"q\", \"answer\": \"no final\"}\n");
  EXPECT_NE(error_of([&] { load_questions(Bench::Gsm8k, (dir / "gsm.jsonl").string()); }).find("####"),
            std::string::npos);
  write_file(dir / "empty.jsonl", "\n");
  EXPECT_NE(error_of([&] { load_questions(Bench::Gsm8k, (dir / "empty.jsonl").string()); }).find("no questions"),
            std::string::npos);
  write_file(dir / "bad.jsonl.gz", "not gzip at all");
  EXPECT_NE(error_of([&] { load_questions(Bench::HumanEval, (dir / "bad.jsonl.gz").string()); }), "");
}

// ---------------------------------------------------------------- report

nlohmann::json record(int id, const std::string& category, std::vector<double> tokens, std::vector<double> seconds,
                      std::vector<int> steps) {
  nlohmann::json turns = nlohmann::json::array();
  std::vector<int> accepted;
  for (size_t i = 0; i < tokens.size(); ++i) {
    turns.push_back("text");
    accepted.push_back(int(tokens[i]) - 1);
  }
  return {{"question_id", id},
          {"category", category},
          {"bench", "spec_bench"},
          {"model_id", "m"},
          {"choices",
           {{{"index", 0},
             {"turns", turns},
             {"new_tokens", tokens},
             {"wall_time", seconds},
             {"decoding_steps", steps},
             {"accepted_tokens", accepted}}}}};
}

AnswerFile answer_file(const std::string& path, std::vector<nlohmann::json> records) {
  AnswerFile f;
  f.path = path;
  f.records = std::move(records);
  return f;
}

TEST(Report, SpeedupIsARatioOfMeansOfPerQuestionSpeeds) {
  // Baseline: 10 tok/s and 30 tok/s -> mean 20 (total tokens / total time would be 100/6 = 16.7).
  const auto base = answer_file("base.jsonl", {record(1, "writing", {50}, {5}, {49}), record(2, "qa", {50}, {50.0 / 30}, {49})});
  // Run: 40 and 40 tok/s -> speedup 2.0; the writing question has two turns.
  const auto fast = answer_file("fast.jsonl", {record(1, "writing", {40, 40}, {1, 1}, {20, 20}), record(2, "qa", {80}, {2}, {40})});
  std::vector<RunStats> runs = {summarize(base), summarize(fast)};
  add_speedups(runs, runs[0]);
  ASSERT_EQ(runs[1].groups.size(), 3u);  // mt_bench (writing is an MT-Bench category), qa, overall
  EXPECT_EQ(runs[1].groups[0].group, "mt_bench");
  EXPECT_NEAR(runs[0].overall().tokens_per_second, 20.0, 1e-9);
  EXPECT_NEAR(*runs[1].overall().speedup, 2.0, 1e-9);
  EXPECT_NEAR(*runs[1].groups[0].speedup, 4.0, 1e-9);
  EXPECT_NEAR(*runs[0].overall().speedup, 1.0, 1e-9);
  // Mean accepted length: (39 + 39 + 79) accepted over (20 + 20 + 40) steps.
  EXPECT_NEAR(runs[1].overall().mean_accepted_length, 157.0 / 80.0, 1e-9);
  const std::string md = report_markdown(runs, runs[0]);
  EXPECT_NE(md.find("| fast | overall | 2 | 40.00 | 2.00x | 1.96 |"), std::string::npos) << md;
}

TEST(Report, SyntheticModelsAreFlagged) {
  auto r = record(1, "qa", {10}, {1}, {9});
  r["run"] = {{"synthetic_model", true}};
  std::vector<RunStats> runs = {summarize(answer_file("s.jsonl", {r}))};
  add_speedups(runs, runs[0]);
  EXPECT_NE(report_markdown(runs, runs[0]).find("meaningless"), std::string::npos);
}

TEST(Report, AnswerFileResumeToleratesATruncatedLastLine) {
  const TempDir dir;
  const std::string line = record(1, "qa", {10}, {1}, {9}).dump();
  write_file(dir / "a.jsonl", line + "\n" + line.substr(0, line.size() / 2));
  const AnswerFile f = read_answer_file((dir / "a.jsonl").string(), true);
  EXPECT_EQ(f.records.size(), 1u);
  EXPECT_TRUE(f.truncated_tail);
  EXPECT_EQ(f.valid_bytes, line.size() + 1);
  write_file(dir / "b.jsonl", line.substr(0, line.size() / 2) + "\n" + line + "\n");
  EXPECT_NE(error_of([&] { read_answer_file((dir / "b.jsonl").string(), true); }).find("b.jsonl:1"), std::string::npos);
  write_file(dir / "c.jsonl", "{\"question_id\": 1, \"category\": \"qa\", \"choices\": [{\"turns\": [\"a\"]}]}\n");
  EXPECT_NE(error_of([&] { read_answer_file((dir / "c.jsonl").string(), true); }).find("new_tokens"), std::string::npos);
}

TEST(Svg, ChartHasABarPerRunAndEscapesText) {
  const std::string svg = bar_chart_svg("A <b> & c", "speedup", {{"ar", 1.0}, {"eagle<2>", 2.5}}, 1.0);
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("A &lt;b&gt; &amp; c"), std::string::npos);
  EXPECT_NE(svg.find("eagle&lt;2&gt;"), std::string::npos);
  EXPECT_NE(svg.find("2.50x"), std::string::npos);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);  // the 1.0 line
  EXPECT_NE(svg.find("transform=\"rotate(-90"), std::string::npos);  // the y-axis label, upright
  size_t rects = 0;
  for (size_t at = svg.find("<rect"); at != std::string::npos; at = svg.find("<rect", at + 1)) ++rects;
  EXPECT_EQ(rects, 3u);  // background + two bars
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

}  // namespace
}  // namespace specq::eval
