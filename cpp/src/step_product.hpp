// The per-time-step matrix product of every recurrent kernel, set up once per kernel call so that the time loop
// allocates nothing: Eigen's GEMM, called with packing buffers ("blocking spaces") allocated once, or its GEMV when
// the batch is a single row; split by output columns across the call's threads when the product is large enough.
// One home for the recurrent product, so that a faster one (pre-packed weights, a register-blocked micro-kernel)
// replaces it everywhere at once.
#pragma once

#include <Eigen/Core>
#include <memory>
#include <vector>

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
  /// w: the weight, w_rows x w_cols row-major; m: the rows every call passes (the batch B).
  StepProduct(const T* w, index_t w_rows, index_t w_cols, index_t m)
      : w_(w),
        w_stride_(w_cols),
        n_(TransposeW ? w_rows : w_cols),
        k_(TransposeW ? w_cols : w_rows),
        m_(m),
        parts_(threads_for(2.0 * m * n_ * k_, n_ / kAlign, kMinFlopsPerThread)),
        chunk_(chunk_size(n_, parts_, kAlign)) {
    if (m_ > 1)
      for (int p = 0; p < parts_; ++p) {
        blocking_.push_back(std::make_unique<Blocking>(m_, std::min(chunk_, n_ - p * chunk_), k_, 1, true));
        blocking_.back()->allocateAll();
      }
  }

  void accumulate(const T* a, index_t lda, T* out, index_t ldo) {
    if (m_ == 0 || n_ == 0) return;
    parallel_chunks(n_, parts_, kAlign, [&](int part, index_t n0, index_t n1) {
      const index_t n = n1 - n0;
      // The columns n0..n1 of op(W): rows n0..n1 of W when transposed, columns n0..n1 otherwise.
      const T* w_part = TransposeW ? w_ + n0 * w_stride_ : w_ + n0;
      if (m_ == 1) {  // one row: matrix-vector product (no packing at all)
        Eigen::Map<RowVector<T>> out_row(out + n0, n);
        const Eigen::Map<const RowVector<T>> a_row(a, k_);
        if constexpr (TransposeW)
          out_row.noalias() += a_row * ConstMatrixView<T>(w_part, n, k_).transpose();
        else
          out_row.noalias() += a_row * ConstStridedView(w_part, k_, n, Eigen::OuterStride<>(w_stride_));
      } else {
        Product::run(m_, n, k_, a, lda, w_part, w_stride_, out + n0, 1, ldo, T(1), *blocking_[part], nullptr);
      }
    });
  }

 private:
  static constexpr index_t kAlign = 16;                // columns per chunk: a multiple of every SIMD width
  static constexpr double kMinFlopsPerThread = 1 << 19;  // ~5 µs of GEMM: below that a fork/join does not pay
  using ConstStridedView = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
  using Product = Eigen::internal::general_matrix_matrix_product<
      index_t, T, Eigen::RowMajor, false, T, TransposeW ? Eigen::ColMajor : Eigen::RowMajor, false, Eigen::RowMajor, 1>;
  using Blocking = Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                                        Eigen::Dynamic, 1, false>;
  const T* w_;
  index_t w_stride_, n_, k_, m_;
  int parts_;
  index_t chunk_;
  std::vector<std::unique_ptr<Blocking>> blocking_;  // one packing space per thread
};

}  // namespace rnncore::detail
