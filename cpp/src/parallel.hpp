// Splitting one kernel call's work across its threads (rnncore::set_num_threads), with OpenMP when built with it.
// Work too small to repay a fork/join (about a microsecond) stays on the calling thread.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>
#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"
#include "rnncore/runtime.hpp"
#include "tuning.hpp"

namespace rnncore::detail {

/// Per calling thread: which of one thread and the team (set_num_threads's threads) ran each kind of kernel call
/// faster, measured. A kind of call is keyed by its size class — its flops to a quarter octave (±9%) — and the team
/// size, and timed as seconds per flop: a training loop repeats the same few sizes, and batches of varying lengths
/// (a seq2seq's source and target lengths change every batch) share their class's measurement instead of each
/// paying a fresh untimed and timed team call, which under load cost a scheduler slice each (a README training loop
/// took 6.3 s on 2 threads against 2.6 s on one). Each call runs on the faster of the two as measured (the team first, then one thread, to time both), and
/// the other is re-timed once its expected extra cost is at most 1/kAdaptProbeEvery of the time spent since its last
/// timing: a core kept busy by another process delays the team's every fork/join by a scheduler slice, which made 2
/// threads up to 8x slower than 1 (bench/README.md, "Threads under load"); on an idle machine the team stays faster.
class AdaptiveThreads {
  struct Entry {
    int size_class = std::numeric_limits<int>::min();
    int team = 0;
    bool pair = false;           // a run_pair call (together vs in turn), else one kernel call (team vs one)
    double seconds[2] = {0, 0};  // smoothed wall time per flop: [0] one thread, [1] the team; 0 = not timed
    double since_probe = 0;      // calls on the chosen since the other was last timed
    bool team_chosen = true;     // the team runs the calls (one thread re-timed now and then), else one thread
    bool first_pair = true;      // until both are timed once
    bool warm = false;           // the kind's first call (page faults, cold caches: up to 3x here) is not timed
  };

 public:
  /// The choice for one call: its kind's entry and whether it runs on the team.
  struct Choice {
    Entry* entry;
    bool team;     // on the team, else on one thread
    bool probe;    // a first timing or a re-timing of the slower one
    double flops;  // the call's, to turn its time into a rate
  };

  /// The choice for a call of `flops` on a team of `team` threads (`pair`: run_pair's two calls, a kind of their own).
  Choice choose(double flops, int team, bool pair = false) {
    Entry& e = find(size_class(flops), team, pair);
    if (e.seconds[1] <= 0) return {&e, true, true, flops};   // not timed yet: the team first
    if (e.seconds[0] <= 0) return {&e, false, true, flops};  // then one thread
    if (e.first_pair) {                                // both timed once: the faster runs the calls
      e.team_chosen = e.seconds[1] < e.seconds[0];
      e.first_pair = false;
    }
    double chosen = e.seconds[e.team_chosen], other = e.seconds[!e.team_chosen];
    if (other * (1 + tuning::kAdaptMargin) < chosen) {  // the other is faster by more than the noise
      e.team_chosen = !e.team_chosen;
      e.since_probe = 0;
      std::swap(chosen, other);
    }
    // Re-time the other once the calls on the chosen since its last timing took kAdaptProbeEvery x its extra time.
    const double extra = std::max(other - chosen, tuning::kAdaptMargin * chosen);
    const bool probe = e.since_probe * chosen >= tuning::kAdaptProbeEvery * extra;
    e.since_probe = probe ? 0 : e.since_probe + 1;
    return {&e, probe != e.team_chosen, probe, flops};
  }

  /// The call given `choice` took `call_seconds`. The kind's first call only warms up; a first timing or a slower
  /// re-timing replaces the old rate (it may be long stale); a faster re-timing moves it halfway (one lucky call under load does not switch the calls to a
  /// slower team: it takes two); the chosen one's time is smoothed.
  static void record(Choice choice, double call_seconds) {
    const double seconds = call_seconds / std::max(choice.flops, 1.0);  // per flop: calls of one class compare
    if (!choice.entry->warm) {  // a cold first timing would keep the calls off the team for hundreds of calls
      choice.entry->warm = true;
      return;
    }
    double& t = choice.entry->seconds[choice.team ? 1 : 0];
    if (!choice.probe) t += tuning::kAdaptSmoothing * (seconds - t);
    else t = t <= 0 || seconds >= t ? seconds : (t + seconds) / 2;
  }

  static AdaptiveThreads& of_this_thread() {
    thread_local AdaptiveThreads table;
    return table;
  }

 private:
  /// The size class of a call of `flops`: log2(flops) in quarter octaves.
  static int size_class(double flops) { return static_cast<int>(std::floor(4.0 * std::log2(std::max(flops, 1.0)))); }

  Entry& find(int size_class, int team, bool pair) {
    for (Entry& e : entries_)
      if (e.size_class == size_class && e.team == team && e.pair == pair) return e;
    Entry& e = entries_[next_];  // a new kind of call replaces the oldest
    next_ = (next_ + 1) % tuning::kAdaptKinds;
    e = Entry{};
    e.size_class = size_class;
    e.team = team;
    e.pair = pair;
    return e;
  }
  Entry entries_[tuning::kAdaptKinds];
  int next_ = 0;
};

/// Whether the calling thread's kernels are held to one thread (run_pair's two threads each run one call alone).
inline thread_local bool one_thread_only = false;

/// Holds the calling thread's kernels to one thread for the scope (restored on exit).
class OneThreadScope {
 public:
  OneThreadScope() : saved_(one_thread_only) { one_thread_only = true; }
  ~OneThreadScope() { one_thread_only = saved_; }
  OneThreadScope(const OneThreadScope&) = delete;
  OneThreadScope& operator=(const OneThreadScope&) = delete;

 private:
  bool saved_;
};

/// The team a kernel called on this thread may use: set_num_threads's, or 1 inside run_pair.
inline int available_team() { return one_thread_only ? 1 : get_num_threads(); }

/// Set at every kernel's entry, for the calling thread only: flush-to-zero, and the threads this call may use —
/// rnncore::set_num_threads's value when the call's work (in flops) repays a fork/join (tuning.hpp's
/// kMinParallelFlops; the parallel knob forces either way) and the team has been measured faster than one thread
/// for this kind of call (AdaptiveThreads; the adapt_threads knob forces either way), else 1. The thread count is
/// OpenMP's per-thread setting, which Eigen's own GEMMs read too, so concurrent calls from several Python threads
/// each get their own; the caller's setting is restored on exit.
class KernelScope {
 public:
  explicit KernelScope(double flops) {
#ifdef _OPENMP
    saved_threads_ = omp_get_max_threads();
    const int force = forced(Knob::parallel), team = available_team();
    bool use_team = force < 0 ? flops >= tuning::kMinParallelFlops : force == 1;
    if (force < 0 && use_team && team > 1) {
      const int adapt = forced(Knob::adapt_threads);
      if (adapt < 0) {
        choice_ = AdaptiveThreads::of_this_thread().choose(flops, team);
        use_team = choice_.team;
        start_ = std::chrono::steady_clock::now();
      } else {
        use_team = adapt == 0;
      }
      count_path(use_team ? Path::adapt_team : Path::adapt_one);
    }
    omp_set_num_threads(use_team ? team : 1);
#else
    (void)flops;
#endif
  }
  ~KernelScope() {
#ifdef _OPENMP
    if (choice_.entry != nullptr)
      AdaptiveThreads::record(choice_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    omp_set_num_threads(saved_threads_);
#endif
  }
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;

 private:
  FlushDenormalsScope fp_mode_;
  int saved_threads_ = 1;
  AdaptiveThreads::Choice choice_{nullptr, false, false, 0.0};  // entry set when this call's thread count is measured
  std::chrono::steady_clock::time_point start_;
};

/// How many threads a piece of work of `work` scalar operations, divisible into `parts` independent pieces, gets:
/// at most one per `min_work_per_thread` (each caller's row of tuning.hpp).
inline int threads_for(double work, index_t parts, double min_work_per_thread) {
#ifdef _OPENMP
  const int available = omp_get_max_threads();
#else
  const int available = 1;
#endif
  const auto by_work = static_cast<index_t>(work / min_work_per_thread);
  return static_cast<int>(std::max<index_t>(1, std::min<index_t>({available, parts, by_work})));
}

/// The size of each of `parts` contiguous chunks of [0, n): a multiple of `align` (the last chunk may be shorter).
inline index_t chunk_size(index_t n, index_t parts, index_t align) {
  return ((n + parts - 1) / parts + align - 1) / align * align;
}

/// Runs body(part, begin, end) on the contiguous chunks of [0, n) given by chunk_size, one per thread (`parts`
/// threads). Every worker runs with flush-to-zero set, like the calling thread.
template <typename Body>
void parallel_chunks(index_t n, int parts, index_t align, Body&& body) {
  if (parts <= 1) {
    body(0, index_t(0), n);
    return;
  }
  const index_t chunk = chunk_size(n, parts, align);
#ifdef _OPENMP
  std::exception_ptr failure;  // an exception may not leave the region (std::terminate): the first is rethrown
  const bool row_mode = row_invariant();  // a body may set up products: its workers take the caller's mode
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part) {
    FlushDenormalsScope fp_mode;
    const RowInvariantScope rows(row_mode);
    const index_t begin = std::min(n, part * chunk), end = std::min(n, begin + chunk);
    try {
      if (begin < end) body(part, begin, end);  // a body may allocate (row scratch), so it may throw std::bad_alloc
    } catch (...) {
#pragma omp critical(rnncore_chunks)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
#else
  for (int part = 0; part < parts; ++part) {
    const index_t begin = std::min(n, part * chunk), end = std::min(n, begin + chunk);
    if (begin < end) body(part, begin, end);
  }
#endif
}

/// Runs body(b0, b1) over blocks of batch rows [b0, b1) covering [0, B): one block per thread when the whole time
/// loop splits by rows, else one block [0, B) on the calling thread (whose steps then split their products and
/// pointwise passes across the threads). A time loop splits by rows when every thread gets whole 8-row panels (an
/// equal number, or at least 4 each) and the recurrent weight, `weight_bytes` (each thread packs its own copy), fits
/// in 2/3 of a core's L2 (tuning.hpp; the row_split knob forces either way): each thread then takes its rows through
/// every step with no synchronisation, where the per-step split forks or meets at a barrier 2-3 times a step. Inside
/// a block the kernel runs on one thread.
template <typename Body>
void for_row_blocks(index_t B, double weight_bytes, Body&& body) {
#ifdef _OPENMP
  constexpr index_t kPanelRows = tuning::kRowBlockRows;
  const index_t team = omp_get_max_threads(), panels = B / kPanelRows;
  static const double l2_bytes = double(Eigen::l2CacheSize());
  const int force = forced(Knob::row_split);
  const bool split = team > 1 && panels >= team &&
                     (force >= 0 ? force == 1
                                 : (panels % team == 0 || panels >= tuning::kMinRowBlockPanelsPerThread * team) &&
                                       weight_bytes <= tuning::row_split_weight_budget(l2_bytes));
  count_path(split ? Path::row_split : Path::one_block);
  if (split) {
    std::exception_ptr failure;  // an exception may not leave the region (std::terminate): the first is rethrown
    const bool row_mode = row_invariant();  // each block sets up its own products, in the caller's mode
#pragma omp parallel num_threads(int(team))
    {
      FlushDenormalsScope fp_mode;
      const RowInvariantScope rows(row_mode);
      omp_set_num_threads(1);  // this thread's block runs serially
      const index_t part = omp_get_thread_num(), parts = omp_get_num_threads();  // may be fewer than asked for
      const index_t b0 = panels * part / parts * kPanelRows;
      const index_t b1 = part + 1 == parts ? B : panels * (part + 1) / parts * kPanelRows;
      try {
        body(b0, b1);  // allocates (its products' packed weights), so it may throw std::bad_alloc
      } catch (...) {
#pragma omp critical(rnncore_row_blocks)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return;
  }
#else
  (void)weight_bytes;
  count_path(Path::one_block);
#endif
  body(index_t(0), B);
}

/// Runs first() and second(), two independent kernel calls of `flops` together (a bidirectional layer's two
/// directions), at once on two threads, each call alone on its thread (OneThreadScope), when set_num_threads gives
/// exactly 2 and the pair would take the team as one call of `flops` would (KernelScope's thresholds and knobs) and
/// has been measured faster so than in turn on one thread (AdaptiveThreads, under a key of its own); else one after
/// the other: on one thread when measured slower together, else (another team size, below the threshold, or forced)
/// each call on the team as KernelScope chooses. A team of 3 or more keeps each direction on the whole team (its rows
/// split): two directions on one thread each would leave cores idle, and halves of the team would need nested
/// OpenMP regions. Together, both calls' scratch is held at once (in turn the second reuses the first's blocks).
/// Either way each call computes what it computes alone (the kernels' bits do not depend on their thread count).
/// Why: a small layer (the course's H = 32 encoder) gains nothing from splitting one direction's rows (its steps are
/// a few microseconds: the split runs it on one thread), while its two directions share no data at all.
template <typename First, typename Second>
void run_pair(double flops, First&& first, Second&& second) {
#ifdef _OPENMP
  const int team = available_team(), force = forced(Knob::parallel);
  bool together = team == 2 && (force < 0 ? flops >= tuning::kMinParallelFlops : force == 1);
  AdaptiveThreads::Choice choice{nullptr, false, false, 0.0};
  std::chrono::steady_clock::time_point start;
  if (together && force < 0) {
    const int adapt = forced(Knob::adapt_threads);
    if (adapt < 0) {
      choice = AdaptiveThreads::of_this_thread().choose(flops, team, true);
      together = choice.team;
      start = std::chrono::steady_clock::now();
    } else {
      together = adapt == 0;
    }
  }
  count_path(together ? Path::pair_together : Path::pair_in_turn);
  if (together) {
    std::exception_ptr failure;  // an exception may not leave the region (std::terminate): the first is rethrown
    const bool row_mode = row_invariant();
#pragma omp parallel num_threads(2)
    {
      FlushDenormalsScope fp_mode;
      const RowInvariantScope rows(row_mode);
      const OneThreadScope alone;
      const int part = omp_get_thread_num(), parts = omp_get_num_threads();  // may be one thread
      try {
        if (part == 0) first();
        if (part == 1 || parts == 1) second();
      } catch (...) {
#pragma omp critical(rnncore_pair)
        if (!failure) failure = std::current_exception();
      }
    }
    if (choice.entry != nullptr)
      AdaptiveThreads::record(choice, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (failure) std::rethrow_exception(failure);
    return;
  }
  if (choice.entry != nullptr) {  // the measured choice's other side: in turn on this thread alone, timed
    const OneThreadScope alone;    // (a team probe inside would make both sides slow under load, and it is
    first();                       // never faster than the two at once where two threads are free)
    second();
    AdaptiveThreads::record(choice, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return;
  }
#else
  (void)flops;
  count_path(Path::pair_in_turn);
#endif
  first();
  second();
}

}  // namespace rnncore::detail

namespace rnncore::detail {

/// Runs row(b) for every sample row b in [0, B), split across threads when the rows are many and wide enough.
/// `row_width` is the number of elements one row's pointwise work touches (e.g. G*H).
template <typename Row>
void for_each_row(index_t B, index_t row_width, Row&& row) {
  const int parts = threads_for(tuning::kPointwiseOpsPerElement * B * row_width, B, tuning::kMinPointwiseOpsPerThread);
  parallel_chunks(B, parts, 1, [&](int, index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) row(b);
  });
}

}  // namespace rnncore::detail
