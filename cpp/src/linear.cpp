// The dense layer's products (declared in rnncore/linear.hpp): float products from kTileGemmMinRows output rows on
// the tile GEMM (linalg/tile_gemm.hpp, split by 8-row panels), the rest on Eigen's GEMM split by split_output below.
// Either way each output element has the same bits on 1 or more threads.
#include "rnncore/linear.hpp"

#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "linalg/arrays.hpp"
#include "linalg/gemm.hpp"
#include "parallel.hpp"

namespace rnncore {

using namespace detail;

namespace {

/// Eigen's GEMM runs on the calling thread only for the scope (OpenMP's per-thread count, restored on exit): Eigen's
/// own parallel GEMM picks its depth blocks by its thread count, so its sums would round differently on 1 and 2.
class SerialEigen {
 public:
#ifdef _OPENMP
  SerialEigen() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SerialEigen() { omp_set_num_threads(saved_); }
#else
  SerialEigen() = default;
#endif
  SerialEigen(const SerialEigen&) = delete;
  SerialEigen& operator=(const SerialEigen&) = delete;

 private:
  [[maybe_unused]] int saved_ = 1;
};

/// Runs block(r0, r1, c0, c1), a serial Eigen GEMM of the output block [r0, r1) x [c0, c1), over blocks covering an
/// [M, N] output of depth K, one block per thread (at most one per kMinGemmFlopsPerThread): whole 48-row strips
/// when the rows give at least as many blocks as the columns, else whole 48-column strips (kSplitAlign), the last
/// block taking the remainder. Eigen computes an element with the same micro-kernel wherever a block starts on
/// such a boundary, so the bits do not depend on the number of blocks.
template <typename Block>
void split_output(index_t M, index_t N, index_t K, Block&& block) {
  const double flops = 2.0 * double(M) * double(N) * double(K);
  constexpr index_t align = tuning::kSplitAlign;
  const index_t row_units = M / align, col_units = N / align;
  const int by_rows = threads_for(flops, row_units, tuning::kMinGemmFlopsPerThread);
  const int by_cols = threads_for(flops, col_units, tuning::kMinGemmFlopsPerThread);
  const bool split_rows = by_rows >= by_cols;
  const int parts = split_rows ? by_rows : by_cols;
  const index_t units = split_rows ? row_units : col_units;
  auto run = [&](int part) {
    const index_t b0 = units * part / parts * align;
    const index_t b1 = part + 1 == parts ? (split_rows ? M : N) : units * (part + 1) / parts * align;
    const SerialEigen serial;
    if (split_rows)
      block(b0, b1, index_t(0), N);
    else
      block(index_t(0), M, b0, b1);
  };
  if (parts <= 1) {
    run(0);
    return;
  }
#ifdef _OPENMP
  std::exception_ptr failure;  // an exception may not leave the region (std::terminate): the first is rethrown
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part) {
    const FlushDenormalsScope fp_mode;
    try {
      run(part);  // Eigen allocates its packing buffers: may throw std::bad_alloc
    } catch (...) {
#pragma omp critical(rnncore_linear_split)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
#else
  for (int part = 0; part < parts; ++part) run(part);
#endif
}

}  // namespace

template <typename T>
void linear_forward(index_t N, index_t I, index_t O, const T* x, const T* weight, const T* bias, T* y) {
  const KernelScope scope(2.0 * double(N) * double(I) * double(O));
  const ConstMatrixView<T> xs(x, N, I), w(weight, O, I);
  MatrixView<T> ys(y, N, O);
  if (runs_on_tile<T>(N)) {
    if constexpr (kTileFor<T>) {
      tile_gemm<T>(N, O, I, gemm_operand<T>(xs, false), gemm_operand<T>(w, true), y, O, bias, 0);
      return;
    }
  }
  split_output(N, O, I, [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    auto out = ys.block(r0, c0, r1 - r0, c1 - c0);
    const auto product = xs.middleRows(r0, r1 - r0) * w.middleRows(c0, c1 - c0).transpose();
    if (bias) {
      out.rowwise() = ConstRowVectorView<T>(bias + c0, c1 - c0);  // start from the bias and accumulate (no memset)
      out.noalias() += product;
    } else {
      out.noalias() = product;
    }
  });
}

template <typename T>
void linear_backward(index_t N, index_t I, index_t O, const T* x, const T* weight, const T* dy, T* dweight, T* dbias,
                     T* dx) {
  const KernelScope scope((dx ? 4.0 : 2.0) * double(N) * double(I) * double(O));
  const ConstMatrixView<T> xs(x, N, I), w(weight, O, I), g(dy, N, O);
  if (dbias) {
    RowVector<T> sums(O);
    column_sums(g, sums.data());
    RowVectorView<T>(dbias, O) += sums;
  }
  // dweight [O, I] += dy^T · x  (depth N)
  if (runs_on_tile<T>(O)) {
    if constexpr (kTileFor<T>)
      tile_gemm<T>(O, I, N, gemm_operand<T>(g, true), gemm_operand<T>(xs, false), dweight, I, dweight, I);
  } else {
    MatrixView<T> dw(dweight, O, I);
    split_output(O, I, N, [&](index_t r0, index_t r1, index_t c0, index_t c1) {
      dw.block(r0, c0, r1 - r0, c1 - c0).noalias() += g.middleCols(r0, r1 - r0).transpose() * xs.middleCols(c0, c1 - c0);
    });
  }
  if (!dx) return;
  // dx [N, I] = dy · W  (depth O)
  if (runs_on_tile<T>(N)) {
    if constexpr (kTileFor<T>) {
      tile_gemm<T>(N, I, O, gemm_operand<T>(g, false), gemm_operand<T>(w, false), dx, I, nullptr, 0);
      return;
    }
  }
  MatrixView<T> dxs(dx, N, I);
  split_output(N, I, O, [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    dxs.block(r0, c0, r1 - r0, c1 - c0).noalias() = g.middleRows(r0, r1 - r0) * w.middleCols(c0, c1 - c0);
  });
}

template void linear_forward<float>(index_t, index_t, index_t, const float*, const float*, const float*, float*);
template void linear_forward<double>(index_t, index_t, index_t, const double*, const double*, const double*,
                                     double*);
template void linear_backward<float>(index_t, index_t, index_t, const float*, const float*, const float*, float*,
                                     float*, float*);
template void linear_backward<double>(index_t, index_t, index_t, const double*, const double*, const double*,
                                      double*, double*, double*);

}  // namespace rnncore
