#include "hrnn/user_store.h"

#include <cmath>
#include <cstring>
#include <string>

#include "hrnn/advance.h"
#include "hrnn/errors.h"
#include "hrnn/memory.h"

namespace hrnn {

void UserStore::build(const Params& P, const EventArrays& ev, int num_threads) {
  ev.validate(P.n_items);
  UserArrays a;
  a.n_users = ev.n_users, a.H = P.H;
  a.U.resize(static_cast<size_t>(ev.n_users) * P.H);
  a.Hs.resize(a.U.size());
  compute_states(P, ev, a.U.data(), a.Hs.data(), num_threads);
  a.last_ts.resize(ev.n_users);
  a.n_events.resize(ev.n_users);
  a.last_session.assign(ev.n_users, kNoSession);
  a.session_start.assign(ev.n_users, -1);
  for (int64_t u = 0; u < ev.n_users; ++u) {
    a.n_events[u] = ev.offsets[u + 1] - ev.offsets[u];
    a.last_ts[u] = a.n_events[u] > 0 ? ev.timestamps[ev.offsets[u + 1] - 1] : 0.0;
    // A user's first event starts a session whether flagged or not, as compute_states has it.
    for (int64_t e = ev.offsets[u + 1] - 1; e >= ev.offsets[u] && a.session_start[u] < 0; --e)
      if (ev.new_session[e] || e == ev.offsets[u]) a.session_start[u] = e - ev.offsets[u];
  }
  a.history_offsets.assign(ev.offsets, ev.offsets + ev.n_users + 1);
  a.history_items.assign(ev.items, ev.items + ev.n_events);
  a.history_ts.assign(ev.timestamps, ev.timestamps + ev.n_events);
  load(std::move(a));
}

void UserStore::load(UserArrays a) {
  const size_t n = static_cast<size_t>(a.n_users), H = static_cast<size_t>(a.H);
  require(a.n_users >= 0 && a.H > 0, "user store: bad sizes");
  require(a.U.size() == n * H && a.Hs.size() == n * H && a.last_ts.size() == n && a.n_events.size() == n &&
              a.last_session.size() == n && a.history_offsets.size() == n + 1,
          "user store: array sizes do not match the number of users");
  require(a.history_offsets[0] == 0 && a.history_offsets[n] == static_cast<int64_t>(a.history_items.size()) &&
              a.history_ts.size() == a.history_items.size(),
          "user store: history offsets do not match the history");
  for (size_t u = 0; u < n; ++u)  // all offsets checked before any is used
    require(a.history_offsets[u] <= a.history_offsets[u + 1], "user store: history offsets must be non-decreasing");
  require(a.session_start.size() == n, "user store: one session start per user is needed");
  for (size_t u = 0; u < n; ++u) {
    const int64_t length = a.history_offsets[u + 1] - a.history_offsets[u], s = a.session_start[u];
    // put_events tells a user's first event by its count: it must be the history's.
    require(a.n_events[u] == length, "user store: a user's event count must be its history's length");
    require(length == 0 ? s == -1 : (s >= 0 && s < length),
            "user store: a session start must lie in its user's history (-1 without one)");
  }
  std::deque<Record> users(n);
  for (size_t u = 0; u < n; ++u) {
    Record& r = users[u];
    r.state.resize(2 * H);
    std::copy(a.U.begin() + u * H, a.U.begin() + (u + 1) * H, r.state.begin());
    std::copy(a.Hs.begin() + u * H, a.Hs.begin() + (u + 1) * H, r.state.begin() + H);
    r.last_ts = a.last_ts[u];
    r.n_events = a.n_events[u];
    r.last_session = a.last_session[u];
    r.session_start = a.session_start[u];
    const int64_t b = a.history_offsets[u], e = a.history_offsets[u + 1];
    r.items.assign(a.history_items.begin() + b, a.history_items.begin() + e);
    r.ts.assign(a.history_ts.begin() + b, a.history_ts.begin() + e);
    r.seen = known_items(r.items.data(), e - b);
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  H_ = a.H;
  users_.swap(users);
  ++generation_;
}

void UserStore::clear() {
  std::deque<Record> gone;
  std::unique_lock<std::shared_mutex> lock(mu_);
  gone.swap(users_);
  ++generation_;
  lock.unlock();
}

UserArrays UserStore::dump() const {
  std::unique_lock<std::shared_mutex> lock(mu_);  // exclusive: a consistent snapshot of everyone
  UserArrays a;
  const size_t n = users_.size(), H = static_cast<size_t>(H_);
  a.n_users = static_cast<int64_t>(n);
  a.H = H_;
  a.U.resize(n * H);
  a.Hs.resize(n * H);
  a.last_ts.resize(n);
  a.n_events.resize(n);
  a.last_session.resize(n);
  a.session_start.resize(n);
  a.history_offsets.assign(1, 0);
  for (size_t u = 0; u < n; ++u) {
    const Record& r = users_[u];
    std::copy(r.state.begin(), r.state.begin() + H, a.U.begin() + u * H);
    std::copy(r.state.begin() + H, r.state.end(), a.Hs.begin() + u * H);
    a.last_ts[u] = r.last_ts;
    a.n_events[u] = r.n_events;
    a.last_session[u] = r.last_session;
    a.session_start[u] = r.session_start;
    a.history_items.insert(a.history_items.end(), r.items.begin(), r.items.end());
    a.history_ts.insert(a.history_ts.end(), r.ts.begin(), r.ts.end());
    a.history_offsets.push_back(static_cast<int64_t>(a.history_items.size()));
  }
  return a;
}

int64_t UserStore::size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return static_cast<int64_t>(users_.size());
}

void UserStore::check_user(int64_t user) const {
  if (user < 0 || user >= static_cast<int64_t>(users_.size()))
    throw std::out_of_range("user index out of range: " + std::to_string(user));
}

void UserStore::ensure(const Params& P, int64_t n) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (H_ == 0) H_ = P.H;
  require(H_ == P.H, "user store and model disagree on the hidden dimension");
  const int64_t old = static_cast<int64_t>(users_.size());
  if (n <= old) return;
  // A count that could never fit (or whose size would wrap around) is refused before anything grows.
  const double bytes = static_cast<double>(n - old) * (sizeof(Record) + 2.0 * H_ * sizeof(float));
  require(physical_memory() <= 0 || bytes <= physical_memory(),
          "too many users for the user store: " + std::to_string(n));
  users_.resize(static_cast<size_t>(n));
  for (int64_t u = old; u < n; ++u) {
    std::vector<float>& s = users_[u].state;
    s.assign(2 * static_cast<size_t>(H_), 0.f);
    std::copy(P.d.u0.begin(), P.d.u0.end(), s.begin());
  }
}

void UserStore::set_last_sessions(const int64_t* sessions, int64_t n) {
  std::unique_lock<std::shared_mutex> structure(mu_);
  require(n == static_cast<int64_t>(users_.size()),
          "one last session per user is needed: got " + std::to_string(n) + " for " +
              std::to_string(users_.size()) + " users");
  for (int64_t u = 0; u < n; ++u) users_[u].last_session = sessions[u];
}

void UserStore::put_events(const Params& P, int64_t user, const int32_t* items, const double* ts,
                           const int64_t* session, int64_t n, double session_gap) {
  for (int64_t i = 0; i < n; ++i) {
    require(items[i] >= -1 && items[i] < P.n_items, "item index out of range: " + std::to_string(items[i]));
    require(std::isfinite(ts[i]), "timestamps must be finite");
    require(i == 0 || ts[i] >= ts[i - 1], "timestamps must be in time order within one put_events call");
  }
  std::vector<float> state, gaps(n);
  std::vector<uint8_t> news(n);
  // The steps run outside every lock, so that a long call holds up neither the queries of the
  // other users on its stripe nor the creation of users or a save: on a copy of the state,
  // committed only if no other call for this user landed meanwhile and the store was not rebuilt
  // or reloaded (else redone from what is there then).
  for (;;) {
    int64_t had, prev_session, start = -1;  // start: this call's last session start
    double prev_ts;
    uint64_t generation;
    {
      std::shared_lock<std::shared_mutex> structure(mu_);
      check_user(user);
      generation = generation_;
      const Record& r = users_[user];
      std::lock_guard<std::mutex> lock(stripe(user));
      state = r.state;
      had = r.n_events;
      prev_ts = r.last_ts;
      prev_session = r.last_session;
    }
    if (n == 0) return;
    if (had > 0 && ts[0] < prev_ts)
      invalid("timestamp " + std::to_string(ts[0]) + " is older than this user's last event (" +
              std::to_string(prev_ts) + "); events must arrive in time order");
    for (int64_t i = 0; i < n; ++i) {
      const bool first = had == 0 && i == 0;
      const double gap = first ? 0.0 : ts[i] - prev_ts;
      gaps[i] = static_cast<float>(gap);
      const bool by_session = session != nullptr && prev_session != kNoSession;
      // In double, as fit's session boundaries: a gap a hair above session_gap must not round to it.
      news[i] = first || gap > session_gap || (by_session && session[i] != prev_session);
      if (news[i]) start = i;
      prev_ts = ts[i];
      prev_session = session ? session[i] : kNoSession;
    }
    require(state.size() == 2 * static_cast<size_t>(P.H), "user store and model disagree on the hidden dimension");
    advance(P, state.data(), state.data() + P.H, had == 0, items, gaps.data(), news.data(), n);
    std::shared_lock<std::shared_mutex> structure(mu_);
    if (generation_ != generation) continue;
    Record& r = users_[user];
    std::lock_guard<std::mutex> lock(stripe(user));
    if (r.n_events != had) continue;
    r.state.swap(state);
    r.last_ts = ts[n - 1];
    r.last_session = prev_session;
    r.n_events = had + n;
    if (start >= 0) r.session_start = static_cast<int64_t>(r.items.size()) + start;
    r.items.insert(r.items.end(), items, items + n);
    r.ts.insert(r.ts.end(), ts, ts + n);
    insert_items(r.seen, items, n);
    return;
  }
}

bool UserStore::read(int64_t user, float* u, float* h, ItemSet* seen, int64_t recent,
                     std::vector<int32_t>* recent_items, std::vector<double>* recent_ts,
                     int64_t* history_length, int64_t* session_start) const {
  std::shared_lock<std::shared_mutex> structure(mu_);
  check_user(user);
  std::lock_guard<std::mutex> lock(stripe(user));
  const Record& r = users_[user];
  if (u) std::memcpy(u, r.state.data(), sizeof(float) * H_);
  std::memcpy(h, r.state.data() + H_, sizeof(float) * H_);
  if (seen) *seen = r.seen;
  if (recent_items && recent_ts) {
    const size_t first = r.items.size() > static_cast<size_t>(recent) ? r.items.size() - recent : 0;
    recent_items->assign(r.items.begin() + first, r.items.end());
    recent_ts->assign(r.ts.begin() + first, r.ts.end());
  }
  if (history_length) *history_length = static_cast<int64_t>(r.items.size());
  if (session_start) *session_start = r.session_start;
  return r.n_events > 0;
}

void UserStore::state(int64_t user, float* u, float* h, double* last_ts, int64_t* n_events) const {
  std::shared_lock<std::shared_mutex> structure(mu_);
  check_user(user);
  std::lock_guard<std::mutex> lock(stripe(user));
  const Record& r = users_[user];
  std::memcpy(u, r.state.data(), sizeof(float) * H_);
  std::memcpy(h, r.state.data() + H_, sizeof(float) * H_);
  *last_ts = r.last_ts;
  *n_events = r.n_events;
}

}  // namespace hrnn
