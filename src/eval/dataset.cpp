#include "eval/dataset.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "data/text_file.h"
#include "io/json_file.h"

namespace specq::eval {
namespace {

std::string string_field(const nlohmann::json& record, const char* key, const std::string& where) {
  SPECQ_CHECK(record.contains(key), "{}: missing field '{}'", where, key);
  SPECQ_CHECK(record[key].is_string(), "{}: field '{}' is not a string", where, key);
  return record[key].get<std::string>();
}

Question parse_record(Bench bench, const nlohmann::json& record, size_t index, const std::string& where) {
  SPECQ_CHECK(record.is_object(), "{}: expected a JSON object", where);
  Question q;
  switch (bench) {
    case Bench::MtBench:
    case Bench::SpecBench: {
      SPECQ_CHECK(record.contains("question_id"), "{}: missing field 'question_id'", where);
      q.id = record["question_id"];
      SPECQ_CHECK(q.id.is_number_integer() || q.id.is_string(), "{}: 'question_id' is not an integer or string",
                  where);
      q.category = string_field(record, "category", where);
      SPECQ_CHECK(record.contains("turns") && record["turns"].is_array() && !record["turns"].empty(),
                  "{}: field 'turns' must be a non-empty list of strings", where);
      for (const auto& turn : record["turns"]) {
        SPECQ_CHECK(turn.is_string(), "{}: field 'turns' must be a non-empty list of strings", where);
        q.turns.push_back(turn.get<std::string>());
      }
      break;
    }
    case Bench::Gsm8k:
      q.id = index;
      q.category = "gsm8k";
      q.turns = {string_field(record, "question", where)};
      q.reference = string_field(record, "answer", where);
      SPECQ_CHECK(q.reference.find("#### ") != std::string::npos, "{}: 'answer' has no \"#### N\" final answer",
                  where);
      break;
    case Bench::HumanEval:
      q.id = string_field(record, "task_id", where);
      q.category = "humaneval";
      q.turns = {string_field(record, "prompt", where)};
      q.entry_point = string_field(record, "entry_point", where);
      q.test = string_field(record, "test", where);
      break;
  }
  return q;
}

}  // namespace

Bench parse_bench(std::string_view name) {
  if (name == "mt_bench") return Bench::MtBench;
  if (name == "spec_bench") return Bench::SpecBench;
  if (name == "gsm8k") return Bench::Gsm8k;
  if (name == "humaneval") return Bench::HumanEval;
  fail("unknown benchmark '{}' (expected mt_bench, spec_bench, gsm8k or humaneval)", name);
}

std::string bench_name(Bench bench) {
  switch (bench) {
    case Bench::MtBench: return "mt_bench";
    case Bench::SpecBench: return "spec_bench";
    case Bench::Gsm8k: return "gsm8k";
    case Bench::HumanEval: return "humaneval";
  }
  return "";
}

std::string default_question_file(Bench bench, const std::string& data_dir) {
  const std::filesystem::path dir(data_dir);
  switch (bench) {
    case Bench::MtBench: return (dir / "mt_bench" / "question.jsonl").string();
    case Bench::SpecBench: return (dir / "spec_bench" / "question.jsonl").string();
    case Bench::Gsm8k: return (dir / "gsm8k" / "test.jsonl").string();
    case Bench::HumanEval: return (dir / "humaneval" / "HumanEval.jsonl.gz").string();
  }
  return "";
}

std::vector<Question> load_questions(Bench bench, const std::string& path) {
  SPECQ_CHECK(std::filesystem::is_regular_file(path), "question file '{}' does not exist (give --questions FILE or "
              "--data-dir DIR)", path);
  const std::string text = read_text_file(path);
  std::vector<Question> questions;
  std::set<std::string> ids;
  size_t line_number = 0, begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = fmt::format("{}:{}", path, line_number);
    Question q = parse_record(bench, parse_json_strict(line, where), questions.size(), where);
    SPECQ_CHECK(ids.insert(q.id.dump()).second, "{}: question id {} appears twice", where, q.id.dump());
    questions.push_back(std::move(q));
  }
  SPECQ_CHECK(!questions.empty(), "question file '{}' holds no questions", path);
  return questions;
}

}  // namespace specq::eval
