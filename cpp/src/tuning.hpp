// The tuning table: every threshold that picks a code path or a thread count, and the blocking sizes that shape the
// kernels' loops, in one place. Each entry: its value, its unit, and one line on the measurement behind it (the dated
// figures are in bench/README.md, "The tuning table's measurements"). The code reads these names; nothing else in
// cpp/src hard-codes a threshold. At the end: the runtime knobs that force each path the thresholds choose, and
// the count of the paths taken, so that the tests cover every path whatever the machine's L2 size.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "rnncore/contract.hpp"

namespace rnncore::detail::tuning {

// ---- Threads: how much work repays a fork/join (parallel.hpp and its callers) ----------------------------------

/// flops of a kernel call (forward_flops) below which it runs on one thread (KernelScope). 2 threads made
/// T=100 B<=4 H<=64 calls 5-30% slower: Eigen splits any GEMM above 50k multiply-adds, each fork/join costs µs.
inline constexpr double kMinParallelFlops = 20e6;

/// AdaptiveThreads (parallel.hpp): the one of one thread and the team not running the calls is re-timed once its
/// expected extra cost is 1/kAdaptProbeEvery of the time since (at 32, re-timing a loaded team cost 4-8% against
/// calls all on one thread, the stored team time running low between re-timings); the choice changes when the
/// other is faster by more than kAdaptMargin (without it, and with one fast re-timing enough to switch, timing noise
/// under load put calls on a 2-3x slower team: 1.05-1.15x of one thread on the medium configs); a call's time moves
/// the smoothed one by kAdaptSmoothing;
/// kAdaptKinds kinds of call (size class: flops to a quarter octave; team) are remembered per calling thread.
inline constexpr double kAdaptProbeEvery = 64.0;
inline constexpr double kAdaptMargin = 0.05;
inline constexpr double kAdaptSmoothing = 0.25;
inline constexpr int kAdaptKinds = 16;

/// Pointwise passes (for_each_row): ~8 operations per element (exp, divide, fma…), and from 64k of them (~5 µs) per
/// thread a row split repays its fork/join (~1 µs); at 256k a B=16 H=256 LSTM step's pass ran on one thread.
inline constexpr double kPointwiseOpsPerElement = 8.0;
inline constexpr double kMinPointwiseOpsPerThread = 65536.0;

/// flops of a per-step product (StepProduct) per thread: ~12 µs of GEMM; at 0.5M small 2-thread calls were slower
/// than 1-thread ones (a lower 1M helped GRU H=128 backward only, since superseded by the time-loop row split).
inline constexpr double kMinStepFlopsPerThread = 1 << 21;

/// flops per thread of a whole-call GEMM (project_inputs' Eigen path, tile_gemm): below it one thread does it all.
inline constexpr double kMinGemmFlopsPerThread = 4e6;

/// Every Eigen GEMM's row split (split_output; first measured on project_inputs): each thread takes a band of at
/// least 64 rows (a multiple of 8) whole, its bias fill and its own GEMM: Eigen's parallel GEMM left the bias pass
/// serial and shared its packed blocks with waits (and its blocking made the bits depend on the thread count).
inline constexpr index_t kMinProjectionRowsPerThread = 64;
inline constexpr index_t kProjectionRowAlign = 8;

/// begin_workspace copies the caller's inputs and weights on all threads from 1M scalars per thread, in chunks of
/// whole 16-scalar pieces: one thread copied a GRU H=1024 step's 27 MB while the other waited (1.02-1.06x).
inline constexpr double kMinCopyPerThread = 1 << 20;
inline constexpr index_t kCopyAlign = 16;

/// for_row_blocks: a whole time loop splits by batch rows when every thread gets whole panels of kRowBlockRows rows
/// (an equal number, or at least kMinRowBlockPanelsPerThread each) and the recurrent weight (each thread packs its
/// own) fits in row_split_weight_budget of a core's L2: vs the per-step split, 2 threads, LSTM W_hh 1.08 MB 1.19x,
/// 1.66 MB 0.95-1.0x, 4 MB (streamed from L3 by each thread) 0.78x.
inline constexpr index_t kRowBlockRows = 8;
inline constexpr index_t kMinRowBlockPanelsPerThread = 4;
/// bytes: 2/3 of `l2_bytes` (written as l2 * 2 / 3, the rule's exact arithmetic).
inline double row_split_weight_budget(double l2_bytes) { return l2_bytes * 2 / 3; }

// ---- Paths: which code runs a product ----------------------------------------------------------------------------

/// rows: a float GEMM runs on the 48 x 8 tile (tile_gemm.hpp) from two 8-row panels, else on Eigen (1-row products
/// as GEMVs, unpacked): at M=1 the tile's packing of op(B) made it 10 GFLOP/s against Eigen's 55-75; equal at M=8.
inline constexpr index_t kTileGemmMinRows = 16;

/// steps: a one-row product h · W^T packs W^T into column panels (RowPanels) only for calls of at least this many
/// steps (packing costs about 4 steps); shorter ones take N unpacked dot products. W (backward) is always packed.
inline constexpr index_t kMinStepsToPack = 8;

/// bytes: a per-step tile product on 2+ threads may split by batch panels (each thread its rows against the whole
/// weight, no barrier) when the packed weight fits in half of a core's L2 (split_by_batch; 1.12-1.24x where it
/// balances the work better than the weight panels). The same half-L2 rule orders a tile product's loops
/// (TileProduct::multiply): batch-outer when its weight panels fit (from L2), else weight-outer (each panel read once
/// from L3): B=64 H=512 (4 MB) 158 GFLOP/s weight-outer against 92 batch-outer.
inline double tile_weight_l2_budget(double l2_bytes) { return l2_bytes / 2.0; }

/// K: a tile of at least this depth prefetches the output rows its epilogue reads (a step's slice of the input
/// projection is cold); shorter tiles cannot hide it (K = 64: 0.99x; K >= 128: 1.02-1.09x).
inline constexpr index_t kEpiloguePrefetchMinDepth = 128;

// ---- Blocking: sizes that shape the loops (constexpr in the code, listed here) -----------------------------------

/// The register tile: kTileRows batch rows x kTileColPackets SIMD packets of columns (48 x 8 floats on AVX-512,
/// 24 of 32 vector registers): LSTM B=64 H=512 step 163 -> 184 GFLOP/s over Eigen's 48 x 4.
inline constexpr index_t kTileRows = 8;
/// The tile's rows on 16-register ISAs (AVX2, SSE): 3 packets x 4 rows = 12 accumulators + 3 loads + 1 broadcast,
/// Eigen's gebp shape. Such builds run the tile only in the row-invariant mode (float64 on AVX-512 takes 8 rows).
inline constexpr index_t kTileRowsFewRegisters = 4;
inline constexpr index_t kTileColPackets = 3;
/// k steps ahead a tile prefetches its vector-side panel (16-64 measured the same).
inline constexpr index_t kTilePrefetchDistance = 8;

/// tile_gemm's cache blocking: K per slice (a broadcast panel of 8 x 384 floats, 12 KB, stays in L1), columns per
/// slice (480 x 384 floats, 720 KB, kept in L2), rows packed per slice (bounds the packing buffer). K slices of
/// 128-512 and column blocks of 240-960 were tried; these were best or within noise.
inline constexpr index_t kGemmDepth = 384;
inline constexpr index_t kGemmColBlock = 480;
inline constexpr index_t kGemmRowBlock = 1536;

/// RowPanels (one-row products): SIMD packets of columns per panel, i.e. independent FMA chains (2 FMA ports x 4
/// cycles of latency); 16 chains were 1.4-1.8x slower (the compiler no longer kept them in registers).
inline constexpr index_t kRowPanelPackets = 8;

/// scalars: the unpacked one-row product's column chunks (a multiple of every SIMD width), and the start of every
/// block of Eigen's packed gebp layout (StepProduct).
inline constexpr index_t kGemvAlign = 16;
inline constexpr index_t kPackPad = 64;

// ---- Memory (memory.cpp's block cache) ---------------------------------------------------------------------------

/// bytes: blocks from 64 KiB are cached when freed (below it malloc is fast and keeps its own pages); a request takes
/// an idle block at most a quarter larger; at most 2 GiB idle. Fresh pages cost a training step 13-30%.
inline constexpr std::size_t kSmallestCachedBlock = 64 * 1024;
inline constexpr std::size_t kMaxBlockWasteDivisor = 4;
inline constexpr std::size_t kDefaultCacheLimit = std::size_t(2) << 30;

// ---- Splitting an Eigen GEMM across threads (linalg/gemm.hpp's split_output) -------------------------------------

/// columns: split_output cuts a GEMM's output into bands of whole 48-column strips (rows: whole
/// kProjectionRowAlign-row units of at least kMinProjectionRowsPerThread rows), each a serial GEMM. Not a speed choice
/// but the condition for equal bits on any thread count:
/// Eigen computes an output element with the same micro-kernel wherever a block starts at a multiple of its mr (48
/// floats on AVX-512, 24 on AVX2, half that for doubles; along a row-major output's columns) and nr (4, along its
/// rows). With 16-column strips, 1 and 2 threads differed in the last bits (other micro-kernels on some columns).
inline constexpr index_t kSplitAlign = 48;

}  // namespace rnncore::detail::tuning

namespace rnncore::detail {

/// Runtime overrides of the path choices above, for the tests (rnncore._core._tuning_set). Each is auto (-1: the
/// thresholds decide), off (0) or on (1); read once per kernel call or product set-up, never inside a loop.
///   parallel:     KernelScope gives the call set_num_threads's threads (on) or one (off), whatever its flops
///   adapt_threads: a call the thresholds give the team (parallel auto) runs on one thread (on) or on the team
///                 (off: the thresholds alone, as before the measurement); auto: the faster as measured
///   row_split:    for_row_blocks splits a time loop by batch rows (on: whenever each thread gets a panel) or not
///   batch_split:  a per-step tile product on 2+ threads splits by batch panels (on: when each thread gets one)
///                 or by weight panels (off)                                                   [tile builds only]
///   weight_in_l2: a tile product's loops run batch-outer (on: the weight is taken as L2-resident) or
///                 weight-outer (off: streamed, with the next panel's prefetch)                [tile builds only]
///   tile_gemm:    the GEMM helpers (linalg/gemm.hpp) run on the tile (on: any rows) or on Eigen [tile builds only]
///   pack_row:     a one-row product h · W^T packs W^T into panels (on: however few the steps) or takes unpacked
///                 dot products (off); the backward's dh · W is always packed
///   fuse_units:   a one-row float product is packed by units for the cell's fused update (auto/on: where the
///                 shapes allow) or packed plainly and followed by the row pass (off)
/// The row-invariant mode (end of this file) overrides tile_gemm, pack_row and fuse_units: every product on the tile.
enum class Knob : int {
  parallel, row_split, batch_split, weight_in_l2, tile_gemm, pack_row, fuse_units, adapt_threads, count
};
inline constexpr const char* kKnobNames[] = {"parallel",  "row_split", "batch_split", "weight_in_l2",
                                             "tile_gemm", "pack_row",  "fuse_units",  "adapt_threads"};
inline std::atomic<int> knob_values[int(Knob::count)] = {-1, -1, -1, -1, -1, -1, -1, -1};

/// A knob's setting: -1 auto, 0 off, 1 on.
inline int forced(Knob knob) { return knob_values[int(knob)].load(std::memory_order_relaxed); }

/// The paths the thresholds and knobs choose, counted once per kernel call (time loops, GEMMs) or product set-up
/// (per-step products), so the tests can check which ran: relaxed atomic adds, never per step.
enum class Path : int {
  one_block,          // for_row_blocks: the whole batch in one block (steps split their own work)
  row_split,          // for_row_blocks: one block of batch rows per thread
  step_row_fused,     // one-row product packed by units (the cell's update on the product's registers)
  step_row_panels,    // one-row product on column panels, then the row pass
  step_row_unpacked,  // one-row product as N unpacked dot products
  step_tile,          // batched per-step product on the 48 x 8 tile
  step_gebp,          // batched per-step product on Eigen's gebp micro-kernel
  gemm_tile,          // a GEMM helper's product on the tile GEMM
  gemm_eigen,         // a GEMM helper's product on Eigen
  adapt_team,         // KernelScope: a call the thresholds give the team ran on it (measured faster, or forced)
  adapt_one,          // KernelScope: such a call ran on one thread (measured faster, or forced)
  pair_together,      // run_pair: two independent calls (a bidirectional layer's directions) at once, one thread each
  pair_in_turn,       // run_pair: the two calls one after the other (on one thread, or each as KernelScope chooses)
  count
};
inline constexpr const char* kPathNames[] = {"one_block",         "row_split", "step_row_fused",
                                             "step_row_panels",   "step_row_unpacked", "step_tile",
                                             "step_gebp",         "gemm_tile", "gemm_eigen",
                                             "adapt_team",        "adapt_one", "pair_together",
                                             "pair_in_turn"};
inline std::atomic<std::int64_t> path_counts[int(Path::count)] = {};

inline void count_path(Path path) { path_counts[int(path)].fetch_add(1, std::memory_order_relaxed); }

/// The row-invariant mode (docs/design.md §4, rnncore.ops.row_invariant): while it is on, every product (StepProduct,
/// the GEMM helpers) runs on the tile of tile_product.hpp, which computes each output element as one fixed sequence
/// (acc = fma(w, a, acc) over k in order, out = base + acc) from that row's inputs alone, so a row's bits do not
/// depend on the rows beside it or the thread count. Per calling thread; the parallel launchers (parallel.hpp,
/// split_output, StepProduct's regions) carry it into their workers. Read once per kernel call or product set-up.
inline thread_local bool row_invariant_mode = false;

inline bool row_invariant() { return row_invariant_mode; }

/// Sets the calling thread's row-invariant mode for the scope (restored on exit).
class RowInvariantScope {
 public:
  explicit RowInvariantScope(bool on) : saved_(row_invariant_mode) { row_invariant_mode = on; }
  ~RowInvariantScope() { row_invariant_mode = saved_; }
  RowInvariantScope(const RowInvariantScope&) = delete;
  RowInvariantScope& operator=(const RowInvariantScope&) = delete;

 private:
  bool saved_;
};

static_assert(sizeof(kKnobNames) / sizeof(*kKnobNames) == std::size_t(Knob::count), "a name per knob");
static_assert(sizeof(kPathNames) / sizeof(*kPathNames) == std::size_t(Path::count), "a name per path");

}  // namespace rnncore::detail
