// One error type for everything a user can cause (bad files, bad flags, bad shapes).
// The CLI catches it, prints "error: <message>" once and exits non-zero.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace specq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace specq

// Checks a condition that user input can violate; the message says what is wrong with the input.
#define SPECQ_CHECK(cond, ...)             \
  do {                                     \
    if (!(cond)) ::specq::fail(__VA_ARGS__); \
  } while (0)
