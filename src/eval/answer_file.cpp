#include "eval/answer_file.h"

#include <filesystem>
#include <random>

#include "core/error.h"
#include "data/text_file.h"
#include "io/json_file.h"

namespace specq::eval {
namespace {

void check_number_list(const nlohmann::json& choice, const char* key, size_t turns, const std::string& where) {
  SPECQ_CHECK(choice.contains(key) && choice[key].is_array() && choice[key].size() == turns,
              "{}: choices[0].{} must be a list with one number per turn", where, key);
  for (const auto& v : choice[key]) SPECQ_CHECK(v.is_number(), "{}: choices[0].{} holds a non-number", where, key);
}

}  // namespace

void check_answer_record(const nlohmann::json& record, const std::string& where) {
  SPECQ_CHECK(record.is_object(), "{}: an answer record must be a JSON object", where);
  SPECQ_CHECK(record.contains("question_id"), "{}: missing field 'question_id'", where);
  SPECQ_CHECK(record.contains("category") && record["category"].is_string(), "{}: missing field 'category'", where);
  SPECQ_CHECK(record.contains("choices") && record["choices"].is_array() && !record["choices"].empty(),
              "{}: missing or empty 'choices'", where);
  const auto& choice = record["choices"][0];
  SPECQ_CHECK(choice.is_object() && choice.contains("turns") && choice["turns"].is_array() && !choice["turns"].empty(),
              "{}: choices[0].turns must be a non-empty list", where);
  const size_t turns = choice["turns"].size();
  check_number_list(choice, "new_tokens", turns, where);
  check_number_list(choice, "wall_time", turns, where);
  check_number_list(choice, "decoding_steps", turns, where);
}

AnswerFile read_answer_file(const std::string& path, bool must_exist) {
  AnswerFile file;
  file.path = path;
  if (!std::filesystem::exists(path)) {
    SPECQ_CHECK(!must_exist, "answer file '{}' does not exist", path);
    return file;
  }
  const std::string text = read_text_file(path);
  size_t begin = 0, line_number = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    const bool complete = end != std::string::npos;
    if (!complete) end = text.size();
    const std::string_view line(text.data() + begin, end - begin);
    ++line_number;
    const std::string where = fmt::format("{}:{}", path, line_number);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      nlohmann::json record;
      try {
        record = parse_json_strict(line, where);
      } catch (const Error&) {
        // A run killed mid-write leaves a partial last line; anything else is a damaged file.
        if (!complete) {
          file.truncated_tail = true;
          break;
        }
        throw;
      }
      check_answer_record(record, where);
      if (!file.records.empty() && record.contains("bench") && file.records.front().contains("bench"))
        SPECQ_CHECK(record["bench"] == file.records.front()["bench"], "{}: the file mixes benchmarks ({} and {})",
                    where, file.records.front()["bench"].dump(), record["bench"].dump());
      file.records.push_back(std::move(record));
    }
    begin = complete ? end + 1 : end;
    file.valid_bytes = begin;
  }
  return file;
}

std::string new_answer_id() {
  static constexpr std::string_view kAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  static std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<size_t> pick(0, kAlphabet.size() - 1);
  std::string id;
  for (int i = 0; i < 22; ++i) id += kAlphabet[pick(rng)];
  return id;
}

}  // namespace specq::eval
