// The kernels' GEMM helpers over row-major Eigen matrices and maps: out = op(a) · op(b) (+ a bias row) and
// out += op(a) · op(b) (multiply_into, multiply_add_into: the recurrent kernels and the dense layer), the input
// projection of every step at once (project_inputs) and column sums in a fixed order (column_sums). Float products
// from kTileGemmMinRows rows run on the 48 x 8 tile GEMM (tile_gemm.hpp) where the build has it, the rest on Eigen's
// GEMM split into bands of whole 8-row units or 48-column strips (split_output). Either way every output element
// has the same bits on any thread count.
#pragma once

#include <exception>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "linalg/arrays.hpp"
#include "linalg/tile_gemm.hpp"
#include "parallel.hpp"
#include "rnncore/types.hpp"
#include "tuning.hpp"

namespace rnncore::detail {

// The kernels' large GEMMs run on the 48 x 8 tile (tile_gemm.hpp) where kTileFor<T> (float on AVX-512-class
// builds) from tuning::kTileGemmMinRows output rows, else on Eigen's GEMM (the tile is 1.05-1.55x Eigen's rate on
// the bench grid's LSTM shapes; bench/README.md). In the row-invariant mode (tuning.hpp) every GEMM runs on the
// tile, for every scalar type and build: Eigen's kernels round an element differently by the product's size.

/// Whether a GEMM of scalar T with `rows` output rows runs on the tile (else on Eigen); counted, and forced by the
/// tile_gemm knob (tuning.hpp). Always true in the row-invariant mode; else false where the build has no tile for T.
template <typename T>
bool runs_on_tile(index_t rows) {
  bool tile = false;
  if (row_invariant()) {
    tile = true;  // the row-invariant mode: every row through the tile's one sequence per element (tuning.hpp)
  } else if constexpr (kTileFor<T>) {
    const int force = forced(Knob::tile_gemm);
    tile = force < 0 ? rows >= tuning::kTileGemmMinRows : force == 1 && rows > 0;
  }
  count_path(tile ? Path::gemm_tile : Path::gemm_eigen);
  return tile;
}

/// A row-major Eigen matrix or map (rows outerStride() apart) as a GEMM operand, transposed or not.
template <typename T, typename Matrix>
GemmOperand<T> gemm_operand(const Matrix& m, bool transposed) {
  static_assert(Matrix::IsRowMajor && Matrix::InnerStrideAtCompileTime == 1,
                "the tile GEMM reads row-major operands with contiguous rows");
  return {m.data(), static_cast<index_t>(m.outerStride()), transposed};
}

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
/// [M, N] output of depth K, one block per thread (at most one per kMinGemmFlopsPerThread): bands of whole 8-row
/// units (kProjectionRowAlign, at least kMinProjectionRowsPerThread rows each) when the rows give at least as many
/// blocks as the columns, else bands of whole 48-column strips (kSplitAlign); the last block takes the remainder.
/// Eigen computes an element with the same micro-kernel wherever a block starts at a multiple of its nr (4) along a
/// row-major output's rows and of its mr (24 or 48 floats, 12 or 24 doubles) along its columns, and a serial GEMM's
/// depth blocks depend on K only, so the bits do not depend on the number of blocks (the thread count).
template <typename Block>
void split_output(index_t M, index_t N, index_t K, Block&& block) {
  const double flops = 2.0 * double(M) * double(N) * double(K);
  constexpr index_t row_align = tuning::kProjectionRowAlign, col_align = tuning::kSplitAlign;
  const int by_rows = threads_for(flops, M / tuning::kMinProjectionRowsPerThread, tuning::kMinGemmFlopsPerThread);
  const int by_cols = threads_for(flops, N / col_align, tuning::kMinGemmFlopsPerThread);
  const bool split_rows = by_rows >= by_cols;
  const int parts = split_rows ? by_rows : by_cols;
  const index_t align = split_rows ? row_align : col_align, units = (split_rows ? M : N) / align;
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
  const bool row_mode = row_invariant();  // the caller's mode in every worker (a block may choose a path)
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part) {
    const FlushDenormalsScope fp_mode;
    const RowInvariantScope rows(row_mode);
    try {
      run(part);  // Eigen allocates its packing buffers: may throw std::bad_alloc
    } catch (...) {
#pragma omp critical(rnncore_split_output)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
#else
  for (int part = 0; part < parts; ++part) run(part);
#endif
}

/// How a GEMM helper's output starts before the product is added (the tile's GemmTarget base, for Eigen).
enum class GemmStart { zero, bias, accumulate };

/// out [M, N] = start + op(a) · op(b), every matrix row-major (out may have a row stride); op(X) = X^T where
/// TransposeA / TransposeB say. start: zero, the row bias [N] broadcast over the rows, or out itself (accumulate).
/// The tile (runs_on_tile) or Eigen split by split_output: either way equal bits on any thread count.
template <bool TransposeA, bool TransposeB, GemmStart Start, typename Out, typename A, typename B>
void gemm_into(Out& out, const A& a, const B& b, const typename Out::Scalar* bias) {
  using T = typename Out::Scalar;
  const index_t M = out.rows(), N = out.cols(), K = TransposeA ? a.rows() : a.cols();
  eigen_assert((TransposeA ? a.cols() : a.rows()) == M && (TransposeB ? b.rows() : b.cols()) == N);
  eigen_assert(K == (TransposeB ? b.cols() : b.rows()));
  if (runs_on_tile<T>(M)) {
    if (M == 1 && K > 0 && row_invariant()) {
      // One row in the row-invariant mode: the tile GEMM's arithmetic and depth slices on b in place (packing all of
      // op(b) for one row cost a decode step of one source 2-3x).
      const GemmOperand<T> x = gemm_operand<T>(a, TransposeA), w = gemm_operand<T>(b, TransposeB);
      const T* base = Start == GemmStart::accumulate ? out.data() : Start == GemmStart::bias ? bias : nullptr;
      const index_t depth = balanced(K, TileGemmBlocking<T>{}.depth, 1);
      parallel_chunks(N, threads_for(2.0 * N * K, N / Tile<T>::P, tuning::kMinGemmFlopsPerThread), Tile<T>::P,
                      [&](int, index_t n0, index_t n1) {
                        invariant_row_product(w.data, w.stride, w.transposed, x.data, x.transposed ? x.stride : 1, K,
                                              depth, n0, n1, out.data(), base);
                      });
      return;
    }
    const index_t ldo = out.outerStride();
    const T* base = Start == GemmStart::accumulate ? out.data() : Start == GemmStart::bias ? bias : nullptr;
    tile_gemm<T>(M, N, K, gemm_operand<T>(a, TransposeA), gemm_operand<T>(b, TransposeB), out.data(), ldo, base,
                 Start == GemmStart::accumulate ? ldo : 0);
    return;
  }
  split_output(M, N, K, [&](index_t r0, index_t r1, index_t c0, index_t c1) {
    auto dst = out.block(r0, c0, r1 - r0, c1 - c0);
    const auto lhs = [&] {  // rows [r0, r1) of op(a)
      if constexpr (TransposeA)
        return a.middleCols(r0, r1 - r0).transpose();
      else
        return a.middleRows(r0, r1 - r0);
    }();
    const auto rhs = [&] {  // columns [c0, c1) of op(b)
      if constexpr (TransposeB)
        return b.middleRows(c0, c1 - c0).transpose();
      else
        return b.middleCols(c0, c1 - c0);
    }();
    if constexpr (Start == GemmStart::zero) {
      dst.noalias() = lhs * rhs;
    } else {
      if constexpr (Start == GemmStart::bias)
        dst.rowwise() = ConstRowVectorView<T>(bias + c0, c1 - c0);  // start from the bias and accumulate: Eigen's
      dst.noalias() += lhs * rhs;  // `=` then a bias pass would zero the output first (a memset and a second pass)
    }
  });
}

/// out [M, N] = op(a) · op(b) (+ bias [N] on every row when given); see gemm_into.
/// Out of line, like the other GEMM phases (one call per kernel call): bench/profile.py tells the phases apart by
/// these frames (multiply_into<true, ..> is a weight gradient).
template <bool TransposeA, bool TransposeB, typename Out, typename A, typename B>
EIGEN_DONT_INLINE void multiply_into(Out&& out, const A& a, const B& b,
                                     const typename std::decay_t<Out>::Scalar* bias = nullptr) {
  if (bias)
    gemm_into<TransposeA, TransposeB, GemmStart::bias>(out, a, b, bias);
  else
    gemm_into<TransposeA, TransposeB, GemmStart::zero>(out, a, b, bias);
}

/// out [M, N] += op(a) · op(b); see gemm_into.
template <bool TransposeA, bool TransposeB, typename Out, typename A, typename B>
EIGEN_DONT_INLINE void multiply_add_into(Out&& out, const A& a, const B& b) {
  gemm_into<TransposeA, TransposeB, GemmStart::accumulate>(out, a, b, nullptr);
}

/// The one big input GEMM for all steps: out [T*B, G*H] = x [T*B, I] · W_ih^T + bias.
/// Each thread takes a band of the output whole (bias, then its own GEMM): Eigen's parallel GEMM left the bias
/// pass serial and shared its packed blocks with waits (LSTM T150 B64 H256 inference, 2 threads: 41.0 -> 35.9 ms).
template <typename T, typename Out>
EIGEN_DONT_INLINE void project_inputs(const ConstMatrixView<T>& x, const ConstMatrixView<T>& w_ih,
                                      const RowVector<T>& bias, Out&& out) {
  multiply_into<false, true>(out, x, w_ih, bias.data());
}

/// out [cols] = Σ_rows m, summed row after row so that every column's sum has the same order whatever the address of
/// `out` (Eigen's colwise().sum() into a caller's buffer peels unaligned leading columns into a different order,
/// so identical calls could differ in the last bit).
template <typename T, typename Matrix>
void column_sums(const Matrix& m, T* out) {
  RowVectorView<T> sums(out, m.cols());
  sums.setZero();
  for (index_t r = 0; r < m.rows(); ++r) sums += m.row(r);
}

}  // namespace rnncore::detail
