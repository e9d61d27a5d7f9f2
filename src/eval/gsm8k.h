// GSM8K as the seed evaluates it (seed-spec 5.3): the 8-shot chain-of-thought prompt of Wei et al.
// (in the GSM8K-eval formatting), no chat template, and the seed's `clean_answer` extraction compared
// by exact string equality with the number after "#### " in the reference answer.
#pragma once
#include <string>
#include <string_view>

namespace specq::eval {

// The eight exemplars, "Q: {question}\nA: {chain} The answer is {answer}.\n\n" each.
const std::string& gsm8k_exemplars();

// Exemplars + "Q: {question}\nA:". The seed tokenizes this with the tokenizer's BOS added.
std::string gsm8k_prompt(std::string_view question);

// The seed's clean_answer: lower-case; split on "the answer is"; with a split, the first number of the
// text between the first and second occurrence, else the last number of the whole text; commas removed;
// a trailing "." dropped. "[invalid]" when there is no number. Numbers are ASCII digits (the seed's
// Python regex also takes other Unicode decimal digits; model output practically never has them).
std::string gsm8k_clean_answer(std::string_view model_output);

// The number after "#### " in a GSM8K answer, commas removed; "[invalid]" when there is none.
std::string gsm8k_reference_answer(std::string_view answer);

inline constexpr std::string_view kGsm8kInvalid = "[invalid]";

}  // namespace specq::eval
