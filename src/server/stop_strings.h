// Stop strings over text that arrives a piece at a time.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace specq::server {

// Text that could still turn into a stop string is held back until later pieces decide; once a stop
// string appears, the text before it is final and everything from the stop string on is dropped.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds a piece; returns the text that is now safe to emit (never part of a stop string).
  std::string push(std::string_view piece);
  // No more pieces: returns whatever is still held back (empty after a match).
  std::string finish();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet emitted
  bool matched_ = false;
};

}  // namespace specq::server
