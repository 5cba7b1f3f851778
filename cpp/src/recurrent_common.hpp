// What every recurrent kernel shares around its time loops (time_loops.hpp): the folded bias, the input projection
// and the weight-gradient GEMMs.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "parallel.hpp"
#include "step_product.hpp"
#include "tile_gemm.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

template <typename T>
using Array1D = Eigen::Array<T, 1, Eigen::Dynamic>;
template <typename T>
using ArrayView = Eigen::Map<Array1D<T>>;
template <typename T>
using ConstArrayView = Eigen::Map<const Array1D<T>>;
/// A row-major matrix view whose rows are `stride` apart (e.g. one gate's columns of a [B, G*H] block).
template <typename T>
using StridedView = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedView = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;

/// bias = b_ih + b_hh (either may be null) over the G*H gate columns, with the columns [skip_begin, skip_end) of
/// b_hh left out (a GRU with reset_after keeps b_hn inside r ⊙ (.), so it cannot be folded into the input GEMM).
template <typename T>
RowVector<T> folded_bias(index_t GH, const T* b_ih, const T* b_hh, index_t skip_begin = 0, index_t skip_end = 0) {
  RowVector<T> bias = RowVector<T>::Zero(GH);
  if (b_ih) bias += ConstRowVectorView<T>(b_ih, GH);
  if (b_hh)
    for (index_t j = 0; j < GH; ++j)
      if (j < skip_begin || j >= skip_end) bias[j] += b_hh[j];
  return bias;
}

// The kernels' large GEMMs run on the 48 x 8 tile (tile_gemm.hpp) where kTileFor<T> (float on AVX-512-class
// builds), else on Eigen's GEMM. Measured here, 1 thread, on the LSTM shapes of the bench grid: input projection
// 1.13-1.23x Eigen's rate, dx 1.05-1.10x, weight gradients 1.16-1.55x (2 threads: 1.08-1.23x).

/// The fewest output rows a GEMM runs on the tile with: two 8-row panels. Fewer rows do not repay packing op(B)
/// (Eigen multiplies 1-row products as GEMVs, unpacked). Measured, 1 thread, 256 x 64 weights, GFLOP/s
/// Eigen / tile: M=1 55-75 / 10, M=4 50-67 / 38-40, M=8 77-95 / 79, M=16 107-118 / 110-114, M=32 130 / 137-146.
constexpr index_t kTileGemmMinRows = 16;

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
  if constexpr (kTileFor<T>) {
    if (out.rows() >= kTileGemmMinRows) {
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
/// bias pass serial and shared its packed blocks with waits (measured: LSTM T150 B64 H256 inference, 2 threads: ...).
template <typename T, typename Out>
EIGEN_DONT_INLINE void project_inputs(const ConstMatrixView<T>& x, const ConstMatrixView<T>& w_ih,
                                      const RowVector<T>& bias, Out&& out) {
  const index_t rows = x.rows();
  if constexpr (kTileFor<T>) {
    if (rows >= kTileGemmMinRows) {
      tile_gemm<T>(rows, w_ih.rows(), x.cols(), gemm_operand<T>(x, false), gemm_operand<T>(w_ih, true), out.data(),
                   out.outerStride(), bias.data(), 0);
      return;
    }
  }
  const int parts = threads_for(2.0 * rows * w_ih.rows() * x.cols(), rows / 64, 4e6);
  parallel_chunks(rows, parts, 8, [&](int, index_t r0, index_t r1) {
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

/// The states each step read: slots 0 … T-1 of the workspace's h, as [T*B, H].
template <typename T>
ConstMatrixView<T> states_read(const Workspace<T>& ws) {
  return ConstMatrixView<T>(ws.h.data(), ws.dims.T * ws.dims.B, ws.dims.H);
}

/// Input side, after the time loop (K = T*B):  dx [T*B, I] = dG · W_ih;   db_ih [G*H] = Σ_rows dG
template <typename T, typename GateGrads>
EIGEN_DONT_INLINE void input_side_gradients(const GateGrads& dG, const Workspace<T>& ws, T* dx, T* db_ih) {
  const Dims& d = ws.dims;
  multiply_into<false, false>(MatrixView<T>(dx, d.T * d.B, d.I), dG, ws.w_ih.view());
  column_sums(dG, db_ih);
}

/// The weight gradients of the input side's dG, after the time loop (K = T*B):
///   dW_ih [G*H, I] = dG^T · x;   dW_hh [rows, H] = dG[:, :rows]^T · h_prev;   db_hh [rows] = db_ih [:rows]
/// rows: the gate columns whose recurrent product multiplied h_prev with this dG (every gate for LSTM and simple RNN;
/// r and z for GRU, whose n block goes through recurrent_side_gradients). db_ih: the input side's column sums.
/// On the tile both products are one GEMM that packs dG^T once: standalone, 1 thread, both dW together vs apart
/// 1.06-1.18x (LSTM H=128..512, T*B = 1600 and 9600).
template <typename T, typename GateGrads>
EIGEN_DONT_INLINE void weight_gradients(const GateGrads& dG, const Workspace<T>& ws, index_t rows, T* dw_ih,
                                        const T* db_ih, T* dw_hh, T* db_hh) {
  const Dims& d = ws.dims;
  const index_t GH = dG.cols(), TB = d.T * d.B;
  const ConstMatrixView<T> x = ws.x.view(), h_prev = states_read(ws);
  std::copy_n(db_ih, rows, db_hh);
  if constexpr (kTileFor<T>) {
    if (GH >= kTileGemmMinRows) {
      const GemmTarget<T> targets[] = {{gemm_operand<T>(x, false), d.I, dw_ih, d.I, GH},
                                       {gemm_operand<T>(h_prev, false), d.H, dw_hh, d.H, rows}};
      tile_gemm<T>(GH, TB, gemm_operand<T>(dG, true), targets, 2);
      return;
    }
  }
  multiply_into<true, false>(MatrixView<T>(dw_ih, GH, d.I), dG, x);
  multiply_into<true, false>(MatrixView<T>(dw_hh, rows, d.H), dG.leftCols(rows), h_prev);
}

/// Recurrent side, after the time loop: dW_hh [rows, H] = dG^T · h_prev;  db_hh [rows] = Σ_rows dG.
/// h_prev [T*B, H] holds the state each step read (slots 0 … T-1), or what the cell multiplied W_hh with.
/// `input_bias_sums`: the same column sums when the input side already made them from the same dG (its db_ih, or a
/// block of it) — copied, not summed a second time; null when this dG differs (GRU reset_after's n block).
template <typename T, typename GateGrads, typename States>
EIGEN_DONT_INLINE void recurrent_side_gradients(const GateGrads& dG, const States& h_prev, T* dw_hh, T* db_hh,
                              const T* input_bias_sums) {
  const index_t rows = dG.cols();
  multiply_into<true, false>(MatrixView<T>(dw_hh, rows, h_prev.cols()), dG, h_prev);
  if (input_bias_sums)
    std::copy_n(input_bias_sums, rows, db_hh);
  else
    column_sums(dG, db_hh);
}

}  // namespace rnncore::detail
