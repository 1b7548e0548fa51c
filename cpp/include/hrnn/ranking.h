// Next-item ranks for evaluation and early stopping: each user's held-out events are predicted one
// by one from the state left by everything before them, against the whole catalogue.
#pragma once
#include <cstdint>
#include <vector>

#include "hrnn/events.h"
#include "hrnn/neighbors.h"
#include "hrnn/params.h"
#include "hrnn/transitions.h"

namespace hrnn {

// prefix and test have the same users. For each user, the state is advanced over its prefix events
// (from the learned initial state), then every test event is ranked before it is consumed:
// ranks[j] = 1 + the number of items that score strictly higher than test item j (ties count in the
// item's favour), 0 for an item the model does not know (-1). Users with test events need a
// non-empty prefix. Scores are those of a query: the repeat boosts and the transition prior included,
// the prior under each of `weights` (finite, >= 0; tr's own weight makes them a query's scores): ranks
// is [weights.size()][test.n_events], one row per weight, all from one pass over the catalogue.
void next_item_ranks(const Params& P, const Transitions& tr, const EventArrays& prefix, const EventArrays& test,
                     const std::vector<float>& weights, int32_t* ranks, int num_threads);

// The rank, as in next_item_ranks, of each user's first test event (a session's first) when a query
// flagged new_session asks for it after the prefix, under each of `options` (the session-start mix,
// and whether the prior keeps its sources: Engine::session_start_*; tr's own weight): ranks is
// [options.size()][test.n_users], 0 for a user without test events or an unknown first item. With
// `nb` (whose own sessions are the prefix's), each option is ranked under each of `betas` (in
// [0, 1)) as the neighbours' share of the mixture, the votes for the neighbours of the prefix's last
// session: ranks is then [options.size()][betas.size()][test.n_users].
void session_start_ranks(const Params& P, const Transitions& tr, const EventArrays& prefix, const EventArrays& test,
                         const std::vector<std::pair<float, bool>>& options, int32_t* ranks, int num_threads,
                         const NeighborIndex* nb = nullptr, const std::vector<float>& betas = {0.f});

}  // namespace hrnn
