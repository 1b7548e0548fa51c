// Every user's state (user state u, session state h, clock, session, history), safe to read and
// update from many threads at once: a user's record is read and written under a striped lock (an
// update computes outside it and commits onto the state it started from), growth of the store
// (which never moves the users already there) takes the exclusive side of a shared lock, so readers
// never see a torn state.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "hrnn/events.h"
#include "hrnn/item_set.h"
#include "hrnn/params.h"

namespace hrnn {

constexpr int64_t kNoSession = INT64_MIN;

struct UserArrays {  // the store's content, for model files and bulk loads
  int64_t n_users = 0;
  int H = 0;
  std::vector<float> U, Hs;
  std::vector<double> last_ts;
  std::vector<int64_t> n_events, last_session;
  // Where each user's last session starts in its history (-1: a user without events). Sessions end
  // at a gap or a SESSION_ID change.
  std::vector<int64_t> session_start;
  std::vector<int64_t> history_offsets;  // CSR of every user's item history, in time order
  std::vector<int32_t> history_items;
  std::vector<double> history_ts;
};

class UserStore {
 public:
  // Replaces the content: states computed from the events (same step as training).
  void build(const Params& P, const EventArrays& ev, int num_threads);
  void load(UserArrays a);  // validated: throws std::invalid_argument
  UserArrays dump() const;

  int64_t size() const;
  // Removes every user, freeing their records outside the lock.
  void clear();
  // Grows the store to n users; new users have no events (u = u0, h = 0).
  void ensure(const Params& P, int64_t n);
  // Applies a user's new events atomically. A session starts after a gap beyond session_gap and,
  // with session ids (nullptr: none; else one per event), where the id changes. Throws
  // std::invalid_argument, changing nothing, when the events are out of time order (among
  // themselves or before the user's last event) or an item is out of range.
  void put_events(const Params& P, int64_t user, const int32_t* items, const double* ts, const int64_t* session,
                  int64_t n, double session_gap);
  // Copies h (and u unless nullptr) and returns true when the user has at least one event; copies
  // the items of its history (sorted, each once, unknown items left out) and its last `recent` events
  // (items, timestamps), the length of its whole history and where its last session starts in it
  // when asked.
  bool read(int64_t user, float* u, float* h, ItemSet* seen, int64_t recent = 0,
            std::vector<int32_t>* recent_items = nullptr, std::vector<double>* recent_ts = nullptr,
            int64_t* history_length = nullptr, int64_t* session_start = nullptr) const;
  void state(int64_t user, float* u, float* h, double* last_ts, int64_t* n_events) const;
  // Every user's last session id (n == size(), kNoSession = none known), as the training table
  // had them: a real-time event with another id starts a new session.
  void set_last_sessions(const int64_t* sessions, int64_t n);

 private:
  // One user's state and history. Records live in a deque: a new user appends one and never moves
  // the others, so creating a user costs the same with a million users as with ten.
  struct Record {
    std::vector<float> state;  // u (H floats), then h (H floats)
    double last_ts = 0.0;
    int64_t n_events = 0, last_session = kNoSession;
    int64_t session_start = -1;  // the last session's first event in `items` (-1: no events)
    std::vector<int32_t> items;  // the history, in time order
    std::vector<double> ts;
    // The known items, sorted, each once: kept up to date so that a query that rules out or
    // excludes a long history does not sort it every time.
    ItemSet seen;
  };
  std::mutex& stripe(int64_t user) const { return stripes_[static_cast<uint64_t>(user) % stripes_.size()]; }
  void check_user(int64_t user) const;
  mutable std::shared_mutex mu_;
  mutable std::array<std::mutex, 64> stripes_;
  int H_ = 0;
  std::deque<Record> users_;
  uint64_t generation_ = 0;  // changes when build or load replaces every record
};

}  // namespace hrnn
