// The merge loop both BPE flavours share: a text split into symbols (UTF-8 characters by
// their lead byte), kept as a linked list; candidate pairs of neighbours wait in a priority
// queue; the best pair merges (leftmost on a tie), its new neighbour pairs are queued, and
// stale entries (a side that changed since) are skipped when popped. O(n log n) in symbols.
// Header-only; no shared state.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "model/unicode.hpp"

namespace troupe {

struct BpeSymbol {
  uint32_t begin = 0;  // byte offset in the text
  uint32_t len = 0;    // 0 once merged into its left neighbour
  int32_t prev = -1;
  int32_t next = -1;
};

// Splits text into one symbol per UTF-8 character (a truncated last character keeps the
// bytes that remain).
inline void split_symbols(std::string_view text, std::vector<BpeSymbol>& symbols) {
  symbols.clear();
  uint32_t pos = 0;
  const auto n = static_cast<uint32_t>(text.size());
  while (pos < n) {
    const auto len = static_cast<uint32_t>(
        std::min<std::size_t>(utf8_lead_length(static_cast<uint8_t>(text[pos])), n - pos));
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({pos, len, index - 1, pos + len < n ? index + 1 : -1});
    pos += len;
  }
}

// Merges symbols while pair_priority(left_text, right_text) gives a priority (greater merges
// first); std::nullopt means the pair never merges.
template <typename Priority, typename PairPriority>
void merge_symbols(std::string_view text, std::vector<BpeSymbol>& symbols, PairPriority pair_priority) {
  struct Candidate {
    Priority priority;
    int32_t left, right;
    uint32_t left_len, right_len;
  };
  auto lower = [](const Candidate& a, const Candidate& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::vector<Candidate> queue;
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const BpeSymbol& l = symbols[left];
    const BpeSymbol& r = symbols[right];
    const std::optional<Priority> priority =
        pair_priority(text.substr(l.begin, l.len), text.substr(r.begin, r.len));
    if (!priority) return;
    queue.push_back({*priority, left, right, l.len, r.len});
    std::push_heap(queue.begin(), queue.end(), lower);
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) consider(i - 1, i);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), lower);
    const Candidate c = queue.back();
    queue.pop_back();
    BpeSymbol& l = symbols[c.left];
    BpeSymbol& r = symbols[c.right];
    if (l.len != c.left_len || r.len != c.right_len || l.len == 0 || r.len == 0) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
}

}  // namespace troupe
