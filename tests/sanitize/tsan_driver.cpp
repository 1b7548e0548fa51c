// ThreadSanitizer driver: many threads on one hrnn::Engine, without the Python interpreter (whose
// own internals TSan cannot follow). Writers put events (and grow the store with new users),
// racers put events for one shared user at once (some are refused as older than what landed),
// readers ask for recommendations and states, a dumper takes snapshots as a model save does.
// Afterwards every user's state equals a sequential replay of the accepted events on a twin engine.
//
// Built and run by .ci/sanitize.sh against libhrnn_core.a compiled with -fsanitize=thread; any
// TSan report makes the process exit non-zero (halt_on_error=1), and so does a lost event.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "hrnn/engine.h"
#include "hrnn/events.h"

namespace {

constexpr int64_t kItems = 300;
constexpr int kHidden = 32;
constexpr int64_t kUsers = 64;
constexpr int64_t kShared = kUsers;  // the racers' user, created before they start
constexpr int kWriters = 4, kReaders = 3, kRacers = 2;

struct Put {
  int64_t user;
  std::vector<int32_t> items;
  std::vector<double> ts;
  std::vector<int64_t> session;  // empty: sessions by the gap rule
};

void fail(const std::string& what) {
  std::fprintf(stderr, "tsan driver: FAILED: %s\n", what.c_str());
  std::exit(1);
}

// A small log: user u has 5 + u % 7 events, one minute apart.
struct Log {
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> items;
  std::vector<double> ts;
  std::vector<uint8_t> news;
  hrnn::EventArrays view() const {
    hrnn::EventArrays ev;
    ev.n_users = static_cast<int64_t>(offsets.size()) - 1;
    ev.n_events = static_cast<int64_t>(items.size());
    ev.offsets = offsets.data(), ev.items = items.data(), ev.timestamps = ts.data();
    ev.new_session = news.data();
    return ev;
  }
};

Log make_log() {
  Log log;
  for (int64_t u = 0; u < kUsers; ++u) {
    for (int j = 0; j < 5 + u % 7; ++j) {
      log.items.push_back(static_cast<int32_t>((u * 13 + j) % kItems));
      log.ts.push_back(1.6e9 + 60.0 * j);
      log.news.push_back(j == 0);
    }
    log.offsets.push_back(static_cast<int64_t>(log.items.size()));
  }
  return log;
}

// Session-start neighbours over the log's sessions (one per user, all ending in user order).
hrnn::NeighborIndex neighbor_index(const Log& log) {
  hrnn::NeighborIndex nb;
  const int64_t n = static_cast<int64_t>(log.offsets.size()) - 1;
  nb.session_offsets = {0};
  std::vector<std::vector<int64_t>> holding(kItems);
  for (int64_t u = 0; u < n; ++u) {
    hrnn::ItemSet s = hrnn::known_items(log.items.data() + log.offsets[u], log.offsets[u + 1] - log.offsets[u]);
    for (int32_t i : s) holding[i].insert(holding[i].begin(), u);  // the most recent session first
    nb.session_items.insert(nb.session_items.end(), s.begin(), s.end());
    nb.session_offsets.push_back(static_cast<int64_t>(nb.session_items.size()));
    nb.recency.push_back(u);
    nb.own_session.push_back(u);
    nb.fit_events.push_back(log.offsets[u + 1] - log.offsets[u]);
  }
  nb.item_offsets = {0};
  for (const auto& h : holding) {
    nb.item_sessions.insert(nb.item_sessions.end(), h.begin(), h.end());
    nb.item_offsets.push_back(static_cast<int64_t>(nb.item_sessions.size()));
  }
  nb.beta = 0.5f;
  nb.validate(kItems);
  return nb;
}

void prepare(hrnn::Engine& e, const Log& log) {
  e.users.build(e.params, log.view(), 1);
  e.neighbors = neighbor_index(log);
  std::vector<float> fallback(kItems);
  for (int64_t i = 0; i < kItems; ++i) fallback[i] = 1.0f / static_cast<float>(i + 1);
  e.set_fallback_scores(fallback);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  const Log log = make_log();
  hrnn::Engine engine(kItems, kHidden, false, 42);
  prepare(engine, log);
  engine.users.ensure(engine.params, kShared + 1);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> n_users{kShared + 1};  // users that exist (grown by the writers)
  std::mutex grow_mu;                    // the writers' own bookkeeping of new user ids
  std::vector<std::vector<Put>> puts(kWriters);
  std::vector<std::vector<Put>> shared_puts(kRacers);
  std::atomic<int64_t> recommends{0}, dumps{0}, states{0}, rejected{0}, clock{0}, raced{0};

  auto writer = [&](int w) {
    std::mt19937_64 rng(w);
    std::vector<std::pair<int64_t, double>> mine;  // (user, its clock)
    for (int64_t u = w; u < kUsers; u += kWriters) mine.emplace_back(u, 2e9);
    while (!stop.load()) {
      if (rng() % 10 == 0) {  // a new user: grow the store under its write lock
        std::lock_guard<std::mutex> lock(grow_mu);
        const int64_t u = n_users.load();
        engine.users.ensure(engine.params, u + 1);
        n_users.store(u + 1);
        mine.emplace_back(u, 2e9);
      }
      Put p;
      auto& [user, clock] = mine[rng() % mine.size()];
      p.user = user;
      const int n = 1 + static_cast<int>(rng() % 3);
      const bool by_session = rng() % 4 == 0;
      for (int j = 0; j < n; ++j) {
        clock += static_cast<double>(rng() % 3) * 1000.0;
        p.items.push_back(rng() % 20 == 0 ? -1 : static_cast<int32_t>(rng() % kItems));
        p.ts.push_back(clock);
        if (by_session) p.session.push_back(static_cast<int64_t>(rng() % 2));
      }
      engine.users.put_events(engine.params, p.user, p.items.data(), p.ts.data(),
                              p.session.empty() ? nullptr : p.session.data(), n, engine.session_gap);
      puts[w].push_back(std::move(p));
      if (rng() % 8 == 0) {  // a stale event (a training user's events start at 1.6e9): rejected
        const int32_t item = 1;
        const double old = 1.0;
        try {
          engine.users.put_events(engine.params, mine[0].first, &item, &old, nullptr, 1, engine.session_gap);
          fail("a stale event was accepted");
        } catch (const std::invalid_argument&) {
          rejected.fetch_add(1);
        }
      }
    }
  };

  // Calls for one user whose time ranges are disjoint but may arrive out of time order: each one
  // lands whole or is refused (computed outside the user's lock, committed only onto the state it
  // started from).
  auto racer = [&](int k) {
    std::mt19937_64 rng(200 + k);
    while (!stop.load()) {
      Put p;
      p.user = kShared;
      const int n = 1 + static_cast<int>(rng() % 40);
      const double t0 = 2e9 + 100.0 * static_cast<double>(clock.fetch_add(1));
      for (int j = 0; j < n; ++j) {
        p.items.push_back(static_cast<int32_t>(rng() % kItems));
        p.ts.push_back(t0 + j);
      }
      try {
        engine.users.put_events(engine.params, kShared, p.items.data(), p.ts.data(), nullptr, n,
                                engine.session_gap);
        shared_puts[k].push_back(std::move(p));
      } catch (const std::invalid_argument&) {
        raced.fetch_add(1);
      }
    }
  };

  auto reader = [&](int r) {
    std::mt19937_64 rng(100 + r);
    hrnn::ItemSet exclude{1, 2, 3}, include;
    for (int32_t i = 0; i < kItems; i += 3) include.push_back(i);
    std::vector<int64_t> users(16);
    std::vector<uint8_t> starts(users.size());
    std::vector<int32_t> items;
    std::vector<float> scores;
    while (!stop.load()) {
      const int64_t known = n_users.load();
      for (auto& u : users) u = rng() % 9 == 0 ? -1 : static_cast<int64_t>(rng() % known);
      hrnn::Query q;
      q.k = 1 + static_cast<int>(rng() % 30);
      q.exclude_interacted = rng() % 2 == 0;
      if (rng() % 3 == 0) q.exclude = &exclude;
      if (rng() % 4 == 0) q.include = &include;
      for (auto& f : starts) f = rng() % 2;  // session starts: the neighbours' votes, from the history
      if (rng() % 2 == 0) q.new_session = starts.data();
      items.assign(users.size() * q.k, 0);
      scores.assign(items.size(), 0.f);
      engine.recommend_batch(users.data(), static_cast<int64_t>(users.size()), q, items.data(), scores.data(), 1);
      for (size_t j = 0; j < items.size(); ++j)
        if (items[j] >= kItems || (items[j] >= 0 && std::isnan(scores[j]))) fail("a bad recommendation");
      recommends.fetch_add(1);
      std::vector<float> u(kHidden), h(kHidden);
      double last_ts;
      int64_t n_events;
      engine.users.state(users[0] < 0 ? 0 : users[0], u.data(), h.data(), &last_ts, &n_events);
      states.fetch_add(1);
    }
  };

  auto dumper = [&] {
    while (!stop.load()) {
      const hrnn::UserArrays a = engine.users.dump();  // what HRNN.save writes
      if (a.history_offsets.size() != static_cast<size_t>(a.n_users) + 1 ||
          a.history_offsets.back() != static_cast<int64_t>(a.history_items.size()))
        fail("a torn snapshot");
      for (int64_t u = 0; u < a.n_users; ++u)
        if (a.history_offsets[u + 1] - a.history_offsets[u] != a.n_events[u] ||
            (a.n_events[u] == 0) != (a.session_start[u] == -1) || a.session_start[u] >= a.n_events[u])
          fail("a torn snapshot");
      dumps.fetch_add(1);
    }
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) threads.emplace_back(writer, w);
  for (int k = 0; k < kRacers; ++k) threads.emplace_back(racer, k);
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, r);
  threads.emplace_back(dumper);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  for (auto& t : threads) t.join();

  // Sequential replay on a twin engine: every accepted call, in each user's order.
  hrnn::Engine twin(kItems, kHidden, false, 42);
  prepare(twin, log);
  twin.users.ensure(twin.params, n_users.load());
  int64_t n_puts = 0;
  std::vector<Put> landed;  // the shared user's accepted calls, in time order (the order they landed in)
  for (auto& ps : shared_puts) landed.insert(landed.end(), ps.begin(), ps.end());
  std::sort(landed.begin(), landed.end(), [](const Put& a, const Put& b) { return a.ts[0] < b.ts[0]; });
  puts.push_back(std::move(landed));
  for (const auto& ps : puts) {
    for (const auto& p : ps) {
      twin.users.put_events(twin.params, p.user, p.items.data(), p.ts.data(),
                            p.session.empty() ? nullptr : p.session.data(),
                            static_cast<int64_t>(p.items.size()), twin.session_gap);
      ++n_puts;
    }
  }
  if (engine.users.size() != twin.users.size()) fail("user counts differ");
  std::vector<float> u1(kHidden), h1(kHidden), u2(kHidden), h2(kHidden);
  for (int64_t u = 0; u < engine.users.size(); ++u) {
    double t1, t2;
    int64_t n1, n2;
    engine.users.state(u, u1.data(), h1.data(), &t1, &n1);
    twin.users.state(u, u2.data(), h2.data(), &t2, &n2);
    if (n1 != n2 || t1 != t2 || std::memcmp(u1.data(), u2.data(), sizeof(float) * kHidden) != 0 ||
        std::memcmp(h1.data(), h2.data(), sizeof(float) * kHidden) != 0)
      fail("user " + std::to_string(u) + " differs from the sequential replay");
  }
  if (engine.users.dump().session_start != twin.users.dump().session_start)
    fail("session starts differ from the sequential replay");
  std::printf("tsan driver: ok: %lld puts (%lld stale ones rejected, %lld racing ones refused), %lld users, "
              "%lld batches, %lld states, %lld dumps\n",
              static_cast<long long>(n_puts), static_cast<long long>(rejected.load()),
              static_cast<long long>(raced.load()),
              static_cast<long long>(engine.users.size()), static_cast<long long>(recommends.load()),
              static_cast<long long>(states.load()), static_cast<long long>(dumps.load()));
  if (n_puts < 100 || recommends.load() < 10 || dumps.load() < 2) fail("too little work done");
  return 0;
}
