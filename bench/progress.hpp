#pragma once
// A one-line progress indicator on stderr, redrawn in place, shown only when stderr is a
// terminal (never in files, pipes or CI logs). Not thread-safe: update from one thread.

#include <cstddef>
#include <string>

namespace troupe {

class ProgressLine {
 public:
  ProgressLine();
  ~ProgressLine();  // erases the line
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void show(const std::string& text);
  void clear();
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  std::size_t shown_length_ = 0;
};

}  // namespace troupe
