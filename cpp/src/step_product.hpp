// The per-time-step matrix product of every recurrent kernel, set up once per kernel call so that the time loop
// allocates nothing: Eigen's GEMM, called with a packing buffer ("blocking space") allocated once, or its GEMV when the
// batch is a single row. One home for the recurrent product, so that a faster one (pre-packed weights, a
// register-blocked micro-kernel) replaces it everywhere at once.
#pragma once

#include <Eigen/Core>

#include "rnncore/types.hpp"

namespace rnncore::detail {

/// out [m, N] += a [m, K] · op(W), for the weight W the whole call uses.
///   TransposeW = true:  W is [N, K] row-major and op(W) = W^T   (forward: gates += h · W_hh^T)
///   TransposeW = false: W is [K, N] row-major and op(W) = W     (backward: dh += dG · W_hh)
/// `a` and `out` are row-major with leading dimensions lda and ldo (>= K and N), so gate blocks can be addressed.
template <typename T, bool TransposeW>
class StepProduct {
 public:
  /// w: the weight, w_rows x w_cols row-major; max_m: the most rows any call will pass (the batch B).
  StepProduct(const T* w, index_t w_rows, index_t w_cols, index_t max_m)
      : w_(w),
        w_stride_(w_cols),
        n_(TransposeW ? w_rows : w_cols),
        k_(TransposeW ? w_cols : w_rows),
        blocking_(max_m, n_, k_, 1, true) {
    blocking_.allocateAll();
  }

  void accumulate(const T* a, index_t m, index_t lda, T* out, index_t ldo) {
    if (m == 0 || n_ == 0) return;
    if (m == 1) {  // one row: matrix-vector product (no packing at all)
      Eigen::Map<RowVector<T>> out_row(out, n_);
      const Eigen::Map<const RowVector<T>> a_row(a, k_);
      if constexpr (TransposeW)
        out_row.noalias() += a_row * ConstMatrixView<T>(w_, n_, k_).transpose();
      else
        out_row.noalias() += a_row * ConstMatrixView<T>(w_, k_, n_);
      return;
    }
    Product::run(m, n_, k_, a, lda, w_, w_stride_, out, 1, ldo, T(1), blocking_, nullptr);
  }

 private:
  using Product = Eigen::internal::general_matrix_matrix_product<
      index_t, T, Eigen::RowMajor, false, T, TransposeW ? Eigen::ColMajor : Eigen::RowMajor, false, Eigen::RowMajor, 1>;
  using Blocking = Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                                        Eigen::Dynamic, 1, false>;
  const T* w_;
  index_t w_stride_, n_, k_;
  Blocking blocking_;
};

}  // namespace rnncore::detail
