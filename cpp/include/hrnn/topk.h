// Exact top-k by partial selection: a min-heap of the k best (score, item) pairs, best first out; and
// the k-th largest of a stream of values.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace hrnn {

class TopK {
 public:
  explicit TopK(int k = 0) { reset(k); }
  void reset(int k) {
    k_ = k;
    heap_.clear();
    heap_.reserve(k);
  }
  // The score a new item must beat to enter (-inf while the heap is not full).
  float threshold() const {
    return static_cast<int>(heap_.size()) < k_ ? -std::numeric_limits<float>::infinity() : heap_.front().s;
  }
  void push(float s, int32_t i) {
    if (k_ <= 0 || std::isnan(s)) return;
    if (static_cast<int>(heap_.size()) < k_) {
      heap_.push_back({s, i});
      std::push_heap(heap_.begin(), heap_.end(), Worse{});
    } else if (better(Entry{s, i}, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), Worse{});
      heap_.back() = {s, i};
      std::push_heap(heap_.begin(), heap_.end(), Worse{});
    }
  }
  // Writes the k best, best first; slots beyond the number pushed get item -1 and score -inf.
  void write(int32_t* items, float* scores) {
    std::sort_heap(heap_.begin(), heap_.end(), Worse{});  // ascending by "worse" = best first
    for (int j = 0; j < k_; ++j) {
      const bool have = j < static_cast<int>(heap_.size());
      items[j] = have ? heap_[j].i : -1;
      scores[j] = have ? heap_[j].s : -std::numeric_limits<float>::infinity();
    }
    heap_.clear();
  }

 private:
  struct Entry {
    float s;
    int32_t i;
  };
  // a ranks before b: higher score, then lower item index (deterministic ties).
  static bool better(const Entry& a, const Entry& b) { return a.s > b.s || (a.s == b.s && a.i < b.i); }
  struct Worse {  // the heap order (a functor, so that the heap operations inline it)
    bool operator()(const Entry& a, const Entry& b) const { return better(a, b); }
  };
  int k_ = 0;
  std::vector<Entry> heap_;
};

// The k-th largest of the values pushed (-inf while fewer than k): a min-heap of the k largest.
class KthLargest {
 public:
  void reset(int k) {
    k_ = k;
    heap_.clear();
    heap_.reserve(k);
  }
  float value() const {
    return static_cast<int>(heap_.size()) < k_ ? -std::numeric_limits<float>::infinity() : heap_.front();
  }
  void push(float x) {
    if (k_ <= 0 || std::isnan(x)) return;
    if (static_cast<int>(heap_.size()) < k_) {
      heap_.push_back(x);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
      return;
    }
    if (!(x > heap_.front())) return;
    size_t i = 0;  // x replaces the smallest and sifts down
    const size_t n = heap_.size();
    for (size_t c = 1; c < n; i = c, c = 2 * c + 1) {
      if (c + 1 < n && heap_[c + 1] < heap_[c]) ++c;
      if (!(heap_[c] < x)) break;
      heap_[i] = heap_[c];
    }
    heap_[i] = x;
  }
  const std::vector<float>& values() const { return heap_; }

 private:
  int k_ = 0;
  std::vector<float> heap_;
};

}  // namespace hrnn
