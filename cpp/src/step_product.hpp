// The per-time-step matrix product of every recurrent kernel. The weight is the same at every step, so it is packed
// once per kernel call into the layout of Eigen's GEMM micro-kernel (gebp) and every step only packs its small
// left operand (the batch) and runs the micro-kernel: Eigen's own GEMM would repack the weight at every step
// (measured: ~9% of an LSTM training step at H=512, B=64). A single-row batch uses Eigen's GEMV instead (no packing).
// Work is split across the call's threads by blocks of output columns. Nothing is allocated per step.
// One home for the recurrent product: a faster micro-kernel replaces it for every cell at once.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "parallel.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

/// out [m, N] += a [m, K] · op(W), for the weight W the whole call uses.
///   TransposeW = true:  W is [N, K] row-major and op(W) = W^T   (forward: gates += h · W_hh^T)
///   TransposeW = false: W is [K, N] row-major and op(W) = W     (backward: dh += dG · W_hh)
/// `a` and `out` are row-major with leading dimensions lda and ldo (>= K and N), so gate blocks can be addressed.
template <typename T, bool TransposeW>
class StepProduct {
 public:
  /// w: the weight, w_rows x w_cols row-major (kept by pointer: it must outlive the product); m: the rows every call
  /// passes (batch B); steps: how many calls the product will serve (setting up a faster layout pays only over many).
  StepProduct(const T* w, index_t w_rows, index_t w_cols, index_t m, index_t steps = kManySteps)
      : w_(w), w_stride_(w_cols), n_(TransposeW ? w_rows : w_cols), k_(TransposeW ? w_cols : w_rows), m_(m) {
    if (m_ <= 1 || n_ == 0 || k_ == 0) {
      parts_ = threads_for(2.0 * m_ * n_ * k_, n_ / kAlign, kMinFlopsPerThread);
      if (m_ == 1 && TransposeW && steps >= kMinStepsToTranspose) {
        // One row: keep op(W) = W^T as a row-major [K, N] copy, so the product is K scaled rows of length N added
        // up (full-width FMAs) instead of N dot products that each end in a horizontal reduction.
        w_transposed_.resize(k_ * n_);
        transpose_into(w_transposed_.data());
      }
      return;
    }
    // Eigen computes out^T [N, m] (column-major) = Wop [N, K] · a^T [K, m]; block it the way Eigen would, with at
    // least one block of Wop's rows per thread.
    kc_ = k_;
    mc_ = n_;
    nc_ = m_;
    Eigen::internal::computeProductBlockingSizes<T, T>(kc_, mc_, nc_, index_t(1));
    parts_ = threads_for(2.0 * m_ * n_ * k_, (n_ + Traits::mr - 1) / Traits::mr, kMinFlopsPerThread);
    mc_ = std::min(mc_, round_up((n_ + parts_ - 1) / parts_, Traits::mr));
    blocks_n_ = (n_ + mc_ - 1) / mc_;
    blocks_k_ = (k_ + kc_ - 1) / kc_;
    blocks_m_ = (m_ + nc_ - 1) / nc_;
    w_block_ = round_up(kc_ * mc_, kPad);
    a_block_ = round_up(kc_ * round_up(nc_, Traits::nr), kPad);
    packed_w_.resize(blocks_n_ * blocks_k_ * w_block_);
    packed_a_.resize(blocks_k_ * blocks_m_ * a_block_);
    const WMapper w_map(w_, w_stride_);
    PackW pack_w;
    for (index_t i = 0; i < blocks_n_; ++i)
      for (index_t kb = 0; kb < blocks_k_; ++kb)
        pack_w(packed_w(i, kb), w_map.getSubMapper(i * mc_, kb * kc_), extent(kb, kc_, k_), extent(i, mc_, n_));
  }

  void accumulate(const T* a, index_t lda, T* out, index_t ldo) {
    if (m_ == 0 || n_ == 0) return;
    if (m_ == 1) {
      gemv(a, out);
      return;
    }
    const AMapper a_map(a, lda);  // a^T [K, m], column-major with stride lda
    PackA pack_a;
    for (index_t kb = 0; kb < blocks_k_; ++kb)
      for (index_t j = 0; j < blocks_m_; ++j)
        pack_a(packed_a(kb, j), a_map.getSubMapper(kb * kc_, j * nc_), extent(kb, kc_, k_), extent(j, nc_, m_));
    parallel_chunks(blocks_n_, parts_, 1, [&](int, index_t i_begin, index_t i_end) {
      const OutMapper out_map(out, ldo);  // out^T [N, m], column-major with stride ldo
      Kernel kernel;
      for (index_t i = i_begin; i < i_end; ++i)
        for (index_t kb = 0; kb < blocks_k_; ++kb)
          for (index_t j = 0; j < blocks_m_; ++j)
            kernel(out_map.getSubMapper(i * mc_, j * nc_), packed_w(i, kb), packed_a(kb, j), extent(i, mc_, n_),
                   extent(kb, kc_, k_), extent(j, nc_, m_), T(1));
    });
  }

 private:
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
  using Buffer = Eigen::Matrix<T, Eigen::Dynamic, 1>;  // aligned for the micro-kernel's packet loads

  static constexpr index_t kManySteps = index_t(1) << 30;
  static constexpr index_t kMinStepsToTranspose = 8;     // the transposed copy costs about as much as ~4 steps
  static constexpr index_t kAlign = 16;                  // GEMV column chunks: a multiple of every SIMD width
  static constexpr index_t kPad = 64;                    // packed blocks start on a 64-scalar boundary
  static constexpr double kMinFlopsPerThread = 1 << 21;  // ~12 µs of GEMM: below that a fork/join does not pay

  static index_t round_up(index_t v, index_t to) { return (v + to - 1) / to * to; }
  /// Size of block `b` of a dimension of `total` cut into blocks of `block`.
  static index_t extent(index_t b, index_t block, index_t total) { return std::min(block, total - b * block); }
  T* packed_w(index_t i, index_t kb) { return packed_w_.data() + (i * blocks_k_ + kb) * w_block_; }
  T* packed_a(index_t kb, index_t j) { return packed_a_.data() + (kb * blocks_m_ + j) * a_block_; }

  /// W [N, K] (row-major, stride w_stride_) into dst [K, N], in 16 x 16 tiles so that reads and writes both stay
  /// in cache lines (Eigen's plain transposed assignment walks one side with a stride and cost ~10% of a short
  /// B=1 call).
  void transpose_into(T* dst) const {
    constexpr index_t tile = 16;
    for (index_t n0 = 0; n0 < n_; n0 += tile)
      for (index_t k0 = 0; k0 < k_; k0 += tile) {
        const index_t n1 = std::min(n_, n0 + tile), k1 = std::min(k_, k0 + tile);
        for (index_t n = n0; n < n1; ++n)
          for (index_t k = k0; k < k1; ++k) dst[k * n_ + n] = w_[n * w_stride_ + k];
      }
  }

  /// One batch row: out [N] += a [K] · op(W), split by output columns across threads.
  void gemv(const T* a, T* out) const {
    using StridedView = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
    parallel_chunks(n_, parts_, kAlign, [&](int, index_t n0, index_t n1) {
      Eigen::Map<RowVector<T>> out_row(out + n0, n1 - n0);
      const Eigen::Map<const RowVector<T>> a_row(a, k_);
      if (TransposeW && w_transposed_.size() == 0) {  // a few steps: N dot products with W's rows, no copy
        out_row.noalias() += a_row * ConstMatrixView<T>(w_ + n0 * w_stride_, n1 - n0, k_).transpose();
        return;
      }
      // op(W) as row-major [K, N]: W itself, or the transposed copy made at construction.
      const T* w_rows = TransposeW ? w_transposed_.data() : w_;
      const index_t stride = TransposeW ? n_ : w_stride_;
      out_row.noalias() += a_row * StridedView(w_rows + n0, k_, n1 - n0, Eigen::OuterStride<>(stride));
    });
  }

  const T* w_;
  index_t w_stride_, n_, k_, m_;
  int parts_ = 1;
  index_t kc_ = 0, mc_ = 0, nc_ = 0, blocks_n_ = 0, blocks_k_ = 0, blocks_m_ = 0, w_block_ = 0, a_block_ = 0;
  Buffer packed_w_, packed_a_, w_transposed_;
};

}  // namespace rnncore::detail
