#include "bench/progress.hpp"

#include <cstdio>

#include <unistd.h>

namespace troupe {

ProgressLine::ProgressLine() : enabled_(isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { clear(); }

void ProgressLine::show(const std::string& text) {
  if (!enabled_) return;
  const std::size_t padding = shown_length_ > text.size() ? shown_length_ - text.size() : 0;
  std::fprintf(stderr, "\r%s%*s", text.c_str(), static_cast<int>(padding), "");
  std::fflush(stderr);
  shown_length_ = text.size();
}

void ProgressLine::clear() {
  if (!enabled_ || shown_length_ == 0) return;
  std::fprintf(stderr, "\r%*s\r", static_cast<int>(shown_length_), "");
  std::fflush(stderr);
  shown_length_ = 0;
}

}  // namespace troupe
