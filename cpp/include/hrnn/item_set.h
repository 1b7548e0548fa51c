// A set of item indices as a sorted vector with each item once: what a query excludes, and the
// items of a user's history that the prior rules out.
#pragma once
#include <algorithm>
#include <cstdint>
#include <iterator>
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

// Adds the known items of items[0, n): one at a time for a few, else as one merge (inserting each
// into a large set moves its tail every time: 200,000 new items in one call took 1.9 s).
inline void insert_items(ItemSet& s, const int32_t* items, int64_t n) {
  if (n < 64) {
    for (int64_t i = 0; i < n; ++i) insert_item(s, items[i]);
    return;
  }
  const ItemSet add = known_items(items, n);
  ItemSet out;
  out.reserve(s.size() + add.size());
  std::set_union(s.begin(), s.end(), add.begin(), add.end(), std::back_inserter(out));
  s.swap(out);
}

}  // namespace hrnn
