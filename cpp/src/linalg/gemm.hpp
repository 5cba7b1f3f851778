// The kernels' GEMM helpers over row-major Eigen matrices and maps: out = op(a) · op(b) (multiply_into), the input
// projection of every step at once (project_inputs) and column sums in a fixed order (column_sums). Float products
// from kTileGemmMinRows rows run on the 48 x 8 tile GEMM (tile_gemm.hpp) where the build has it, the rest on Eigen.
#pragma once

#include <type_traits>

#include "linalg/arrays.hpp"
#include "linalg/tile_gemm.hpp"
#include "parallel.hpp"
#include "rnncore/types.hpp"
#include "tuning.hpp"

namespace rnncore::detail {

// The kernels' large GEMMs run on the 48 x 8 tile (tile_gemm.hpp) where kTileFor<T> (float on AVX-512-class
// builds) from tuning::kTileGemmMinRows output rows, else on Eigen's GEMM (the tile is 1.05-1.55x Eigen's rate on
// the bench grid's LSTM shapes; bench/README.md).

/// Whether a GEMM of scalar T with `rows` output rows runs on the tile (else on Eigen); counted, and forced by the
/// tile_gemm knob (tuning.hpp). Always false where the build has no tile for T.
template <typename T>
bool runs_on_tile(index_t rows) {
  bool tile = false;
  if constexpr (kTileFor<T>) {
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

/// out [M, N] = op(a) · op(b), every matrix row-major; op(X) = X^T where TransposeA / TransposeB say.
/// Out of line, like the other GEMM phases below (one call per kernel call): bench/profile.py tells the phases apart
/// by these frames.
template <bool TransposeA, bool TransposeB, typename T, typename A, typename B>
EIGEN_DONT_INLINE void multiply_into(MatrixView<T> out, const A& a, const B& b) {
  eigen_assert((TransposeA ? a.rows() : a.cols()) == (TransposeB ? b.cols() : b.rows()));
  if (runs_on_tile<T>(out.rows())) {
    if constexpr (kTileFor<T>) {
      tile_gemm<T>(out.rows(), out.cols(), TransposeA ? a.rows() : a.cols(), gemm_operand<T>(a, TransposeA),
                   gemm_operand<T>(b, TransposeB), out.data(), out.cols(), nullptr, 0);
      return;
    }
  }
  auto op = [](const auto& m, auto transposed) {
    if constexpr (decltype(transposed)::value)
      return m.transpose();
    else
      return m;
  };
  out.noalias() = op(a, std::bool_constant<TransposeA>{}) * op(b, std::bool_constant<TransposeB>{});
}

/// The one big input GEMM for all steps: out [T*B, G*H] = x [T*B, I] · W_ih^T + bias.
/// Eigen path: each thread takes a block of rows whole (bias, then its own GEMM): Eigen's parallel GEMM left the
/// bias pass serial and shared its packed blocks with waits (with the balanced per-step split, LSTM T150 B64 H256
/// inference, 2 threads: 41.0 -> 35.9 ms).
template <typename T, typename Out>
EIGEN_DONT_INLINE void project_inputs(const ConstMatrixView<T>& x, const ConstMatrixView<T>& w_ih,
                                      const RowVector<T>& bias, Out&& out) {
  const index_t rows = x.rows();
  if (runs_on_tile<T>(rows)) {
    if constexpr (kTileFor<T>) {
      tile_gemm<T>(rows, w_ih.rows(), x.cols(), gemm_operand<T>(x, false), gemm_operand<T>(w_ih, true), out.data(),
                   out.outerStride(), bias.data(), 0);
      return;
    }
  }
  const int parts = threads_for(2.0 * rows * w_ih.rows() * x.cols(), rows / tuning::kMinProjectionRowsPerThread,
                                tuning::kMinGemmFlopsPerThread);
  parallel_chunks(rows, parts, tuning::kProjectionRowAlign, [&](int, index_t r0, index_t r1) {
    auto block = out.middleRows(r0, r1 - r0);
    block.rowwise() = bias;  // start from the bias and accumulate: Eigen's `=` would zero the output first (a
    block.noalias() += x.middleRows(r0, r1 - r0) * w_ih.transpose();  // memset, then a second pass for the bias)
  });
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
