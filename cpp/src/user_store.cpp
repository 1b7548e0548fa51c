#include "hrnn/user_store.h"

#include <cmath>
#include <cstring>
#include <string>

#include "hrnn/advance.h"
#include "hrnn/errors.h"

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
  for (int64_t u = 0; u < ev.n_users; ++u) {
    a.n_events[u] = ev.offsets[u + 1] - ev.offsets[u];
    a.last_ts[u] = a.n_events[u] > 0 ? ev.timestamps[ev.offsets[u + 1] - 1] : 0.0;
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
  std::vector<std::vector<int32_t>> hist(n);
  std::vector<std::vector<double>> hist_ts(n);
  std::vector<ItemSet> seen(n);
  for (size_t u = 0; u < n; ++u) {
    const int64_t b = a.history_offsets[u], e = a.history_offsets[u + 1];
    hist[u].assign(a.history_items.begin() + b, a.history_items.begin() + e);
    hist_ts[u].assign(a.history_ts.begin() + b, a.history_ts.begin() + e);
    seen[u] = known_items(hist[u].data(), e - b);
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  H_ = a.H;
  U_ = std::move(a.U);
  Hs_ = std::move(a.Hs);
  last_ts_ = std::move(a.last_ts);
  n_events_ = std::move(a.n_events);
  last_session_ = std::move(a.last_session);
  history_ = std::move(hist);
  history_ts_ = std::move(hist_ts);
  seen_ = std::move(seen);
}

UserArrays UserStore::dump() const {
  std::unique_lock<std::shared_mutex> lock(mu_);  // exclusive: a consistent snapshot of everyone
  UserArrays a;
  a.n_users = static_cast<int64_t>(n_events_.size());
  a.H = H_;
  a.U = U_, a.Hs = Hs_, a.last_ts = last_ts_, a.n_events = n_events_, a.last_session = last_session_;
  a.history_offsets.assign(1, 0);
  for (size_t u = 0; u < history_.size(); ++u) {
    a.history_items.insert(a.history_items.end(), history_[u].begin(), history_[u].end());
    a.history_ts.insert(a.history_ts.end(), history_ts_[u].begin(), history_ts_[u].end());
    a.history_offsets.push_back(static_cast<int64_t>(a.history_items.size()));
  }
  return a;
}

int64_t UserStore::size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return static_cast<int64_t>(n_events_.size());
}

void UserStore::check_user(int64_t user) const {
  if (user < 0 || user >= static_cast<int64_t>(n_events_.size()))
    throw std::out_of_range("user index out of range: " + std::to_string(user));
}

void UserStore::ensure(const Params& P, int64_t n) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (H_ == 0) H_ = P.H;
  require(H_ == P.H, "user store and model disagree on the hidden dimension");
  const int64_t old = static_cast<int64_t>(n_events_.size());
  if (n <= old) return;
  // Two vectors of n * H floats: refuse a count whose product would wrap around.
  require(n <= static_cast<int64_t>(U_.max_size() / static_cast<size_t>(H_)),
          "too many users for the user store: " + std::to_string(n));
  U_.resize(static_cast<size_t>(n) * H_);
  for (int64_t u = old; u < n; ++u) std::copy(P.d.u0.begin(), P.d.u0.end(), U_.begin() + u * H_);
  Hs_.resize(static_cast<size_t>(n) * H_, 0.f);
  last_ts_.resize(n, 0.0);
  n_events_.resize(n, 0);
  last_session_.resize(n, kNoSession);
  history_.resize(n);
  history_ts_.resize(n);
  seen_.resize(n);
}

void UserStore::set_last_sessions(const int64_t* sessions, int64_t n) {
  std::unique_lock<std::shared_mutex> structure(mu_);
  require(n == static_cast<int64_t>(last_session_.size()),
          "one last session per user is needed: got " + std::to_string(n) + " for " +
              std::to_string(last_session_.size()) + " users");
  last_session_.assign(sessions, sessions + n);
}

void UserStore::put_events(const Params& P, int64_t user, const int32_t* items, const double* ts,
                           const int64_t* session, int64_t n, double session_gap) {
  for (int64_t i = 0; i < n; ++i) {
    require(items[i] >= -1 && items[i] < P.n_items, "item index out of range: " + std::to_string(items[i]));
    require(std::isfinite(ts[i]), "timestamps must be finite");
    require(i == 0 || ts[i] >= ts[i - 1], "timestamps must be in time order within one put_events call");
  }
  std::shared_lock<std::shared_mutex> structure(mu_);
  check_user(user);
  std::lock_guard<std::mutex> lock(stripe(user));
  const int H = H_;
  const int64_t had = n_events_[user];
  if (n == 0) return;
  if (had > 0 && ts[0] < last_ts_[user])
    invalid("timestamp " + std::to_string(ts[0]) + " is older than this user's last event (" +
            std::to_string(last_ts_[user]) + "); events must arrive in time order");
  std::vector<float> gaps(n);
  std::vector<uint8_t> news(n);
  double prev_ts = last_ts_[user];
  int64_t prev_session = last_session_[user];
  for (int64_t i = 0; i < n; ++i) {
    const bool first = had == 0 && i == 0;
    const double gap = first ? 0.0 : ts[i] - prev_ts;
    gaps[i] = static_cast<float>(gap);
    const bool by_session = session != nullptr && prev_session != kNoSession;
    // In double, as fit's session boundaries: a gap a hair above session_gap must not round to it.
    news[i] = first || gap > session_gap || (by_session && session[i] != prev_session);
    prev_ts = ts[i];
    prev_session = session ? session[i] : kNoSession;
  }
  float* u = U_.data() + user * H;
  float* h = Hs_.data() + user * H;
  advance(P, u, h, had == 0, items, gaps.data(), news.data(), n);
  last_ts_[user] = ts[n - 1];
  last_session_[user] = prev_session;
  n_events_[user] = had + n;
  history_[user].insert(history_[user].end(), items, items + n);
  history_ts_[user].insert(history_ts_[user].end(), ts, ts + n);
  insert_items(seen_[user], items, n);
}

bool UserStore::read(int64_t user, float* h, ItemSet* seen, int64_t recent,
                     std::vector<int32_t>* recent_items, std::vector<double>* recent_ts) const {
  std::shared_lock<std::shared_mutex> structure(mu_);
  check_user(user);
  std::lock_guard<std::mutex> lock(stripe(user));
  std::memcpy(h, Hs_.data() + user * H_, sizeof(float) * H_);
  if (seen) *seen = seen_[user];
  if (recent_items && recent_ts) {
    const auto& it = history_[user];
    const auto& ts = history_ts_[user];
    const size_t first = it.size() > static_cast<size_t>(recent) ? it.size() - recent : 0;
    recent_items->assign(it.begin() + first, it.end());
    recent_ts->assign(ts.begin() + first, ts.end());
  }
  return n_events_[user] > 0;
}

void UserStore::state(int64_t user, float* u, float* h, double* last_ts, int64_t* n_events) const {
  std::shared_lock<std::shared_mutex> structure(mu_);
  check_user(user);
  std::lock_guard<std::mutex> lock(stripe(user));
  std::memcpy(u, U_.data() + user * H_, sizeof(float) * H_);
  std::memcpy(h, Hs_.data() + user * H_, sizeof(float) * H_);
  *last_ts = last_ts_[user];
  *n_events = n_events_[user];
}

}  // namespace hrnn
