// The per-time-step matrix product of every recurrent kernel. The weight is the same at every step, so it is packed
// once per kernel call into the layout of Eigen's GEMM micro-kernel (gebp) and every step only packs its small
// left operand (the batch) and runs the micro-kernel: Eigen's own GEMM would repack the weight at every step
// (~9% of an LSTM training step at H=512, B=64). A single-row batch uses RowPanels (row_panels.hpp): the
// weight packed into column panels for a register-blocked GEMV. In the row-invariant mode (tuning.hpp) every product,
// float or double, runs on the tile (tile_product.hpp), whose elements do not depend on the rows; one row takes the
// tile's arithmetic on the weight in place (invariant_row_product: the same bits, nothing packed).
// Work is split across the call's threads by blocks of output columns, or by batch rows (split_by_batch); the
// whole-sequence kernels first try to split their time loops by rows (for_row_blocks, parallel.hpp). Nothing is
// allocated per step.
// One home for the recurrent product: a faster micro-kernel replaces it for every cell at once.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "parallel.hpp"
#include "linalg/row_panels.hpp"
#include "linalg/tile_product.hpp"
#include "rnncore/memory.hpp"
#include "rnncore/types.hpp"
#include "tuning.hpp"

namespace rnncore::detail {

/// out [m, N] += a [m, K] · op(W), for the weight W the whole call uses.
///   TransposeW = true:  W is [N, K] row-major and op(W) = W^T   (forward: gates += h · W_hh^T)
///   TransposeW = false: W is [K, N] row-major and op(W) = W     (backward: dh += dG · W_hh)
/// `a` and `out` are row-major with leading dimensions lda and ldo (>= K and N), so gate blocks can be addressed.
template <typename T, bool TransposeW>
class StepProduct {
 public:
  static constexpr index_t kManySteps = index_t(1) << 30;  // `steps` of a product with no known end (a stream)

  /// w: the weight, w_rows x w_cols row-major (kept by pointer: it must outlive the product); m: the rows every call
  /// passes (batch B); steps: how many calls the product will serve (setting up a faster layout pays only over many).
  /// unit_gates: 0, or the gate blocks op(W)'s columns are made of (G blocks of equal width) when the cell can
  /// take the product unit by unit: with one row of float the weight is then packed by units where it can be, and
  /// fused() and for_each_unit replace accumulate (row_panels.hpp).
  /// w_stride: the distance between W's rows, when W is a block of columns of a wider matrix (0: w_cols).
  StepProduct(const T* w, index_t w_rows, index_t w_cols, index_t m, index_t steps = kManySteps,
              index_t unit_gates = 0, index_t w_stride = 0)
      : w_(w), w_stride_(w_stride > 0 ? w_stride : w_cols), n_(TransposeW ? w_rows : w_cols),
        k_(TransposeW ? w_cols : w_rows), m_(m), tile_(row_invariant() || (kTileFor<T> && m > 1)) {
    const bool row = m_ == 1 && !tile_;  // a one-row product outside the row-invariant mode
    if (m_ == 0 || n_ == 0 || k_ == 0 || row) {
      parts_ = threads_for(2.0 * m_ * n_ * k_, n_ / kAlign, kMinFlopsPerThread);
      const int pack = forced(Knob::pack_row);  // (the unpacked path reads W as [N, K]: TransposeW only)
      if (row && (!TransposeW || (pack >= 0 ? pack == 1 : steps >= kMinStepsToPack))) {
        // One row: op(W) packed as column panels, so the product is K scaled panel rows added up in registers
        // (full-width FMAs) instead of N dot products that each end in a horizontal reduction.
        const bool by_units = std::is_same_v<T, float> && forced(Knob::fuse_units) != 0 &&
                              RowPanels<T>::can_pack_by_units(n_, unit_gates);
        panels_.pack(w_, w_stride_, n_, k_, TransposeW, by_units ? unit_gates : 0);
        parts_ = threads_for(2.0 * n_ * k_, panels_.panels(), kMinFlopsPerThread);
      }
      if (row && n_ > 0 && k_ > 0)
        count_path(panels_.panels() == 0 ? Path::step_row_unpacked
                                         : panels_.by_units() ? Path::step_row_fused : Path::step_row_panels);
      return;
    }
    if (tile_ && m_ == 1) {  // the row-invariant mode's one row: the tile's arithmetic on W in place, nothing packed
      count_path(Path::step_tile);
      parts_ = threads_for(2.0 * n_ * k_, n_ / Tile<T>::P, kMinFlopsPerThread);
      return;
    }
    if (tile_) {
      count_path(Path::step_tile);
      batch_split_ = forced(Knob::batch_split);
      tiles_.reserve(n_, k_, m_, forced(Knob::weight_in_l2));
      parts_ = threads_for(2.0 * m_ * n_ * k_, tiles_.panels(), kMinFlopsPerThread);
      parallel_chunks(tiles_.panels(), parts_, 1, [&](int, index_t p0, index_t p1) {
        tiles_.pack(w_, w_stride_, TransposeW, p0, p1);
      });
      return;
    }
    // Eigen computes out^T [N, m] (column-major) = Wop [N, K] · a^T [K, m]; block it the way Eigen would, with at
    // least one block of Wop's rows per thread.
    count_path(Path::step_gebp);
    kc_ = k_;
    mc_ = n_;
    nc_ = m_;
    Eigen::internal::computeProductBlockingSizes<T, T>(kc_, mc_, nc_, index_t(1));
    parts_ = threads_for(2.0 * m_ * n_ * k_, (n_ + Traits::mr - 1) / Traits::mr, kMinFlopsPerThread);
    // As many column blocks as Eigen's block size asks for, rounded up to a multiple of the threads so that every
    // thread gets the same share (N = 1024 in blocks of 384 gave 2 threads 2 and 1 blocks). Every block starts at a
    // multiple of gebp's mr (its widest row panel): each column then goes through the same micro-kernel whatever
    // the blocks, so the bits do not depend on the thread count (blocks of whole packets did: LSTM H=200 B=64).
    const index_t blocks = round_up((n_ + mc_ - 1) / mc_, parts_);
    mc_ = round_up((n_ + blocks - 1) / blocks, Traits::mr);
    blocks_n_ = (n_ + mc_ - 1) / mc_;
    blocks_k_ = (k_ + kc_ - 1) / kc_;
    blocks_m_ = (m_ + nc_ - 1) / nc_;
    w_block_ = round_up(kc_ * mc_, kPad);
    a_block_ = round_up(kc_ * round_up(nc_, Traits::nr), kPad);
    packed_w_.resize(blocks_n_ * blocks_k_ * w_block_);
    packed_a_.resize(blocks_k_ * blocks_m_ * a_block_);
    const WMapper w_map(w_, w_stride_);
    parallel_chunks(blocks_n_, parts_, 1, [&](int, index_t i_begin, index_t i_end) {  // each thread packs its blocks
      PackW pack_w;
      for (index_t i = i_begin; i < i_end; ++i)
        for (index_t kb = 0; kb < blocks_k_; ++kb)
          pack_w(packed_w(i, kb), w_map.getSubMapper(i * mc_, kb * kc_), extent(kb, kc_, k_), extent(i, mc_, n_));
    });
  }

  void accumulate(const T* a, index_t lda, T* out, index_t ldo) {
    if (m_ == 0 || n_ == 0) return;
    const int parts = active_parts();
    if (tile_ && m_ == 1) {
      if (k_ > 0)
        parallel_chunks(n_, parts, Tile<T>::P, [&](int, index_t n0, index_t n1) {
          invariant_row_product(w_, w_stride_, TransposeW, a, 1, k_, k_, n0, n1, out, out);
        });
      return;
    }
    if (tile_) {
      tile_accumulate(a, lda, out, ldo, parts);
      return;
    }
    if (m_ == 1) {
      gemv(a, out);
      return;
    }
    const AMapper a_map(a, lda);  // a^T [K, m], column-major with stride lda
    auto multiply = [&](index_t i_begin, index_t i_end) {
      const OutMapper out_map(out, ldo);  // out^T [N, m], column-major with stride ldo
      Kernel kernel;
      for (index_t i = i_begin; i < i_end; ++i)
        for (index_t kb = 0; kb < blocks_k_; ++kb)
          for (index_t j = 0; j < blocks_m_; ++j)
            kernel(out_map.getSubMapper(i * mc_, j * nc_), packed_w(i, kb), packed_a(kb, j), extent(i, mc_, n_),
                   extent(kb, kc_, k_), extent(j, nc_, m_), T(1));
    };
#ifdef _OPENMP
    if (parts > 1 && blocks_m_ == 1) {
      // One team per step: each thread packs a share of a's columns (whole nr-column panels, so the pieces land
      // where one packing call would put them), then all multiply their column blocks of W.
      const index_t panels = (m_ + Traits::nr - 1) / Traits::nr;
#pragma omp parallel num_threads(parts)
      {
        FlushDenormalsScope fp_mode;
        const index_t part = omp_get_thread_num(), team = omp_get_num_threads();  // may be smaller than asked for
        const index_t p0 = panels * part / team, p1 = panels * (part + 1) / team;
        const index_t c0 = std::min(m_, p0 * Traits::nr), c1 = std::min(m_, p1 * Traits::nr);
        PackA pack_a;
        for (index_t kb = 0; c0 < c1 && kb < blocks_k_; ++kb)
          pack_a(packed_a(kb, 0) + c0 * extent(kb, kc_, k_), a_map.getSubMapper(kb * kc_, c0), extent(kb, kc_, k_),
                 c1 - c0);
#pragma omp barrier
        const index_t blocks_per = (blocks_n_ + team - 1) / team;
        multiply(std::min(blocks_n_, part * blocks_per), std::min(blocks_n_, (part + 1) * blocks_per));
      }
      return;
    }
#endif
    PackA pack_a;
    for (index_t kb = 0; kb < blocks_k_; ++kb)
      for (index_t j = 0; j < blocks_m_; ++j)
        pack_a(packed_a(kb, j), a_map.getSubMapper(kb * kc_, j * nc_), extent(kb, kc_, k_), extent(j, nc_, m_));
    parallel_chunks(blocks_n_, parts, 1, [&](int, index_t i_begin, index_t i_end) { multiply(i_begin, i_end); });
  }

  /// Whether the product is a row product packed by units: the cell then steps with for_each_unit.
  bool fused() const { return panels_.by_units(); }

  /// fused() only: the product of the row a [K] with op(W), handed to unit(j, sums) unit packet by unit packet
  /// (sums[g]: gate block g's columns j … j+P-1, see RowPanels::for_each_unit), split across threads by panels.
  template <typename Unit>
  void for_each_unit(const T* a, Unit&& unit) {
    parallel_chunks(panels_.panels(), active_parts(), 1, [&](int, index_t p0, index_t p1) {
      panels_.for_each_unit(a, p0, p1, reverse_, unit);
    });
    reverse_ = !reverse_;
  }

 private:
  /// The tile path (float on AVX-512; every product in the row-invariant mode): each thread packs a share of the batch panels, then multiplies them by the whole weight
  /// (split_by_batch), or, after a barrier, the whole batch by its share of the weight panels.
  void tile_accumulate(const T* a, index_t lda, T* out, index_t ldo, int parts) {
    const index_t batch = tiles_.batch_panels(), panels = tiles_.panels();
#ifdef _OPENMP
    if (parts > 1) {
#pragma omp parallel num_threads(parts)
      {
        FlushDenormalsScope fp_mode;
        const index_t part = omp_get_thread_num(), team = omp_get_num_threads();  // may be smaller than asked for
        const index_t q0 = batch * part / team, q1 = batch * (part + 1) / team;
        tiles_.pack_batch(a, lda, q0, q1);
        if (split_by_batch(team)) {
          tiles_.multiply(out, ldo, 0, panels, q0, q1);
        } else {
#pragma omp barrier
          tiles_.multiply(out, ldo, panels * part / team, panels * (part + 1) / team, 0, batch);
        }
      }
      return;
    }
#endif
    tiles_.pack_batch(a, lda, 0, batch);
    tiles_.multiply(out, ldo, 0, panels, 0, batch);
  }

  /// Whether a team of `team` threads splits the tile product by batch panels (each thread packs its own rows and
  /// multiplies them by the whole weight; no barrier) instead of by weight panels (the batch packed by all, then
  /// each thread's columns): when the whole weight fits in half of a core's L2 (each core then keeps all of it) and
  /// the rows divide the work more evenly (tuning.hpp). N = 512 (LSTM H = 128) is 11 weight panels, split 5 + 6;
  /// B = 32 is 4 batch panels, split 2 + 2.
  /// (The whole-sequence kernels now split such shapes' time loops by rows before a step is reached, for_row_blocks
  /// in parallel.hpp; this split serves the streaming Stepper's steps and the time loops that cannot.)
  bool split_by_batch(index_t team) const {
    const index_t batch = tiles_.batch_panels(), panels = tiles_.panels();
    if (batch_split_ >= 0) return batch_split_ == 1 && batch >= team;  // forced (tuning.hpp)
    if (batch < team || !tiles_.weight_fits_half_l2()) return false;
    index_t by_panels = 0, by_batch = 0;  // the largest share of tile packets either way gives one thread
    for (index_t part = 0; part < team; ++part) {
      by_panels = std::max(by_panels, tiles_.packets(panels * part / team, panels * (part + 1) / team) * batch);
      by_batch = std::max(by_batch, (batch * (part + 1) / team - batch * part / team) * tiles_.packets(0, panels));
    }
    return by_batch < by_panels;
  }

  using Traits = Eigen::internal::gebp_traits<T, T>;
  // Column-major view of the problem: Wop = op(W)^T is W itself (row-major) or W^T (column-major view of W).
  using WMapper = Eigen::internal::const_blas_data_mapper<T, index_t, TransposeW ? Eigen::RowMajor : Eigen::ColMajor>;
  using AMapper = Eigen::internal::const_blas_data_mapper<T, index_t, Eigen::ColMajor>;
  using OutMapper = Eigen::internal::blas_data_mapper<T, index_t, Eigen::ColMajor, Eigen::Unaligned, 1>;
  using PackW = Eigen::internal::gemm_pack_lhs<T, index_t, WMapper, Traits::mr, Traits::LhsProgress,
                                               typename Traits::LhsPacket4Packing,
                                               TransposeW ? Eigen::RowMajor : Eigen::ColMajor>;
  using PackA = Eigen::internal::gemm_pack_rhs<T, index_t, AMapper, Traits::nr, Eigen::ColMajor>;
  using Kernel = Eigen::internal::gebp_kernel<T, T, index_t, OutMapper, Traits::mr, Traits::nr, false, false>;
  using Storage = Buffer<T>;  // block cache (memory.hpp): 64-byte aligned, reused by the next call of the same size

  static constexpr index_t kMinStepsToPack = tuning::kMinStepsToPack;
  static constexpr index_t kAlign = tuning::kGemvAlign;  // GEMV column chunks: a multiple of every SIMD width
  static constexpr index_t kPad = tuning::kPackPad;      // packed blocks start on a 64-scalar boundary
  static constexpr double kMinFlopsPerThread = tuning::kMinStepFlopsPerThread;

  static index_t round_up(index_t v, index_t to) { return (v + to - 1) / to * to; }
  /// Size of block `b` of a dimension of `total` cut into blocks of `block`.
  static index_t extent(index_t b, index_t block, index_t total) { return std::min(block, total - b * block); }
  T* packed_w(index_t i, index_t kb) { return packed_w_.data() + (i * blocks_k_ + kb) * w_block_; }
  T* packed_a(index_t kb, index_t j) { return packed_a_.data() + (kb * blocks_m_ + j) * a_block_; }

  /// One batch row: out [N] += a [K] · op(W), split by output columns across threads.
  void gemv(const T* a, T* out) {
    const int parts = active_parts();
    if (panels_.panels() > 0) {
      parallel_chunks(panels_.panels(), parts, 1, [&](int, index_t p0, index_t p1) {
        panels_.accumulate(a, out, p0, p1, reverse_);
      });
      reverse_ = !reverse_;  // the next step starts with the panels this one read last
      return;
    }
    // A few steps of out += a · W^T: N dot products with W's rows, nothing packed.
    parallel_chunks(n_, parts, kAlign, [&](int, index_t n0, index_t n1) {
      Eigen::Map<RowVector<T>> out_row(out + n0, n1 - n0);
      const Eigen::Map<const RowVector<T>> a_row(a, k_);
      out_row.noalias() +=
          a_row * Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>(w_ + n0 * w_stride_, n1 - n0, k_,
                                                                          Eigen::OuterStride<>(w_stride_))
                      .transpose();
    });
  }

  const T* w_;
  index_t w_stride_, n_, k_, m_;
  int parts_ = 1;  // threads the work was laid out for (at construction)

  /// The threads a step may use: the layout's, but never more than the calling kernel allows now (a Stepper builds
  /// its products once and steps under each call's own rnncore.set_num_threads setting).
  int active_parts() const {
#ifdef _OPENMP
    return std::max(1, std::min(parts_, omp_get_max_threads()));
#else
    return 1;
#endif
  }
  index_t kc_ = 0, mc_ = 0, nc_ = 0, blocks_n_ = 0, blocks_k_ = 0, blocks_m_ = 0, w_block_ = 0, a_block_ = 0;
  Storage packed_w_, packed_a_;
  RowPanels<T> panels_;
  bool reverse_ = false;
  int batch_split_ = -1;  // the batch_split knob at set-up: -1 auto (split_by_batch decides), 0 never, 1 always
  bool tile_;             // runs on the tile: kTileFor<T> from two rows, or any product in the row-invariant mode
  TileProduct<T> tiles_;
};

}  // namespace rnncore::detail
