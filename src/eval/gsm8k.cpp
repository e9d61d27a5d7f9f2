#include "eval/gsm8k.h"

#include <array>
#include <cctype>
#include <optional>
#include <vector>

namespace specq::eval {
namespace {

struct Exemplar {
  const char* question;
  const char* chain;
  const char* answer;
};

// Wei et al. (2022), chain-of-thought prompting, GSM8K exemplars, verbatim.
constexpr std::array<Exemplar, 8> kExemplars = {{
    {"There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6.",
     "6"},
    {"If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.", "5"},
    {"Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39.",
     "39"},
    {"Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8.",
     "8"},
    {"Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9.",
     "9"},
    {"There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29.",
     "29"},
    {"Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls.",
     "33"},
    {"Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8.",
     "8"},
}};

constexpr std::string_view kTrigger = "the answer is";  // "The answer is", lower-cased like the text

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python's re.findall(r"-?\d+\.?\d*", text) over ASCII digits.
std::vector<std::string> find_numbers(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    size_t j = i;
    if (text[j] == '-') ++j;
    if (j < text.size() && is_digit(text[j])) {
      while (j < text.size() && is_digit(text[j])) ++j;
      if (j < text.size() && text[j] == '.') ++j;
      while (j < text.size() && is_digit(text[j])) ++j;
      out.emplace_back(text.substr(start, j - start));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

}  // namespace

const std::string& gsm8k_exemplars() {
  static const std::string text = [] {
    std::string demo;
    for (const Exemplar& e : kExemplars)
      demo += std::string("Q: ") + e.question + "\nA: " + e.chain + " The answer is " + e.answer + ".\n\n";
    return demo;
  }();
  return text;
}

std::string gsm8k_prompt(std::string_view question) {
  return gsm8k_exemplars() + "Q: " + std::string(question) + "\nA:";
}

std::string gsm8k_clean_answer(std::string_view model_output) {
  std::string lower(model_output);
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  // Python's split: with the trigger present, keep the piece between its first and second occurrence.
  const size_t first = lower.find(kTrigger);
  const bool has_trigger = first != std::string::npos;
  std::string piece = lower;
  if (has_trigger) {
    const size_t begin = first + kTrigger.size();
    const size_t second = lower.find(kTrigger, begin);
    piece = lower.substr(begin, second == std::string::npos ? std::string::npos : second - begin);
  }
  std::string no_commas;
  for (char c : piece)
    if (c != ',') no_commas += c;
  const std::vector<std::string> numbers = find_numbers(no_commas);
  if (numbers.empty()) return std::string(kGsm8kInvalid);
  std::string pred = has_trigger ? numbers.front() : numbers.back();
  if (pred.back() == '.') pred.pop_back();
  return pred;
}

std::string gsm8k_reference_answer(std::string_view answer) {
  // The seed's r"#### (\-?[0-9\.\,]+)": the first "#### " followed by that character class.
  size_t at = 0;
  while ((at = answer.find("#### ", at)) != std::string_view::npos) {
    size_t i = at + 5;
    std::string number;
    while (i < answer.size() && (is_digit(answer[i]) || answer[i] == '.' || answer[i] == ',' ||
                                 (answer[i] == '-' && number.empty()))) {
      if (answer[i] != ',') number += answer[i];
      ++i;
    }
    if (!number.empty() && number != "-") return number;
    at += 5;
  }
  return std::string(kGsm8kInvalid);
}

}  // namespace specq::eval
