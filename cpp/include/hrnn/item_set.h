// A set of item indices as a sorted vector with each item once: what a query excludes, and the
// items of a user's history that the prior rules out.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hrnn {

using ItemSet = std::vector<int32_t>;

// The known items (>= 0) of items[0, n).
inline ItemSet known_items(const int32_t* items, int64_t n) {
  ItemSet s;
  s.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    if (items[i] >= 0) s.push_back(items[i]);
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

// Adds a known item (unknown ones, < 0, are left out).
inline void insert_item(ItemSet& s, int32_t item) {
  if (item < 0) return;
  const auto at = std::lower_bound(s.begin(), s.end(), item);
  if (at == s.end() || *at != item) s.insert(at, item);
}

// Adds the known items of items[0, n): the new ones in one merge (inserting each into a large set
// moves its tail every time: 200,000 new items in one call took 1.9 s), none when all are there.
inline void insert_items(ItemSet& s, const int32_t* items, int64_t n) {
  if (n == 1) return insert_item(s, items[0]);
  ItemSet add = known_items(items, n);
  add.erase(std::remove_if(add.begin(), add.end(),
                           [&s](int32_t i) { return std::binary_search(s.begin(), s.end(), i); }),
            add.end());
  if (add.empty()) return;
  const auto old = static_cast<std::ptrdiff_t>(s.size());
  s.insert(s.end(), add.begin(), add.end());
  std::inplace_merge(s.begin(), s.begin() + old, s.end());
}

}  // namespace hrnn
