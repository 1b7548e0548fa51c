// A model as the Python layer holds it: parameters, the training state, every user's state, and the
// queries answered from them.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "hrnn/accelerator.h"
#include "hrnn/neighbors.h"
#include "hrnn/params.h"
#include "hrnn/scoring.h"
#include "hrnn/trainer.h"
#include "hrnn/transitions.h"
#include "hrnn/user_store.h"

namespace hrnn {

struct Query {
  int k = 25;
  bool exclude_interacted = false;
  const ItemSet* exclude = nullptr;  // sorted
  const ItemSet* include = nullptr;  // sorted
  // nullptr, or one flag per row: that row's query starts a new session (Engine::session_start_*).
  const uint8_t* new_session = nullptr;
  ScoreKernels kernels = ScoreKernels::Auto;
};

class Engine {
 public:
  Engine(int64_t n_items, int hidden, bool tied, uint64_t seed);

  Params params;
  UserStore users;
  Transitions transitions;  // the query-time transition prior (off until set)
  double session_gap = 1800.0;
  // How the queries flagged new_session are answered: the state of session_start_state at this mix,
  // and a transition prior with the user's last items as sources (true) or without (false).
  float session_start_mix = 0.f;
  bool session_start_sources = false;
  // The second expert of the queries flagged new_session (off until its beta is set above 0).
  // Set while no query runs (fit and load set it on an engine nobody queries yet), as the
  // transition prior and the session-start setting above are: queries read it without a lock.
  NeighborIndex neighbors;

  // Training. start_training builds the sampler and the optimizer state (discarding any earlier).
  void start_training(const TrainConfig& cfg, const double* popularity);
  EpochStats train_epoch(const EventArrays& ev, const float* weights, const std::vector<int64_t>& users,
                         const Trainer::StopFn& should_stop);
  void end_training() { trainer_.reset(); }

  // To be called after the parameters change (the scoring table is rebuilt on the next query).
  void params_changed();

  // The device engine that trains (from the next start_training on) and answers recommend_batch;
  // nullptr: the CPU does.
  void set_accelerator(std::shared_ptr<Accelerator> a);
  std::shared_ptr<Accelerator> accelerator() const;

  // Replaces the transition prior (see Transitions::set); popularity has one entry per item.
  void set_transitions(float weight, std::vector<int64_t> offsets, std::vector<int32_t> successors,
                       std::vector<float> counts, std::vector<float> out, const double* popularity,
                       std::vector<float> repeat_curve);

  // Scores for users without a state (popular items), one per item.
  void set_fallback_scores(std::vector<float> scores);

  // Memory of the table that scoring reads (built now if it is not yet), in bytes.
  int64_t scoring_table_bytes() const { return scoring_table(0)->bytes(); }
  // Builds that table now, on num_threads: else the first query after a fit or a load does, and
  // the queries that arrive meanwhile wait for it.
  void prepare_queries(int num_threads) const { scoring_table(num_threads); }
  bool queries_prepared() const {
    std::lock_guard<std::mutex> lock(table_mu_);
    return table_ != nullptr;
  }

  // The top k of each of n users (user < 0 or without events: the fallback scores), over
  // num_threads threads. A row flagged in q.new_session is scored from the session-start state.
  void recommend_batch(const int64_t* users, int64_t n, const Query& q, int32_t* items, float* scores,
                       int num_threads) const;

 private:
  std::shared_ptr<const ScoringTable> scoring_table(int num_threads) const;  // built on num_threads
  // The answers of the given rows (session starts with votes) from the mixture with the votes;
  // takes those rows' exclusions and boosts (moved out).
  void mix_neighbors(const std::vector<int64_t>& rows, const float* hs, std::vector<ItemSet>& excl,
                     std::vector<Boosts>& boosts, const std::vector<SparseItems>& votes, const Query& q,
                     int32_t* items, float* scores, int num_threads) const;
  // Every item's bias in the query scores (Transitions::item_bias), built once per parameters.
  std::shared_ptr<const std::vector<float>> item_bias() const;
  std::shared_ptr<const std::vector<float>> bias_locked() const;  // with table_mu_ held

  std::unique_ptr<Trainer> trainer_;
  std::shared_ptr<Accelerator> accel_;  // guarded by table_mu_
  std::vector<float> fallback_;
  mutable std::mutex table_mu_;
  mutable std::shared_ptr<const ScoringTable> table_;
  mutable std::shared_ptr<const std::vector<float>> bias_;  // guarded by table_mu_
};

}  // namespace hrnn
