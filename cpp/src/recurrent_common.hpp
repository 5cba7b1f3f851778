// What every recurrent kernel shares around its time loops (time_loops.hpp): the folded bias and the weight-gradient
// GEMMs (on linalg/gemm.hpp, which also holds the input projection).
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "parallel.hpp"
#include "linalg/arrays.hpp"
#include "linalg/gemm.hpp"
#include "linalg/step_product.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

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

/// The states each step read: slots 0 … T-1 of the workspace's h, as [T*B, H].
template <typename T>
ConstMatrixView<T> states_read(const Workspace<T>& ws) {
  return ConstMatrixView<T>(ws.h.data(), ws.dims.T * ws.dims.B, ws.dims.H);
}

/// The input projection of all steps, out [T*B, G*H] = x · W_ih^T + bias: one GEMM over dense rows x [T*B, I], or
/// for one-hot inputs given by their indices (x_index [T*B] in 0..I-1, x null) a gather: a one-hot row's product is
/// the column x_index[r] of W_ih, so no GEMM multiplies the zeros.
template <typename T, typename Out>
EIGEN_DONT_INLINE void project_step_inputs(const Dims& d, const T* x, const index_t* x_index, const T* w_ih,
                                           index_t GH, const RowVector<T>& bias, Out&& out) {
  const ConstMatrixView<T> w(w_ih, GH, d.I);
  if (!x_index) {
    project_inputs(ConstMatrixView<T>(x, d.T * d.B, d.I), w, bias, out);
    return;
  }
  const RowMatrix<T> columns = w.transpose();  // [I, G*H]: row i is W_ih's column i
  for (index_t r = 0; r < d.T * d.B; ++r) out.row(r) = columns.row(x_index[r]) + bias;
}

/// Input side, after the time loop (K = T*B):  dx [T*B, I] = dG · W_ih (skipped when dx is null: no input gradient
/// wanted, or one-hot inputs);   db_ih [G*H] = Σ_rows dG
template <typename T, typename GateGrads>
EIGEN_DONT_INLINE void input_side_gradients(const GateGrads& dG, const Workspace<T>& ws, T* dx, T* db_ih) {
  const Dims& d = ws.dims;
  if (dx) multiply_into<false, false>(MatrixView<T>(dx, d.T * d.B, d.I), dG, ws.w_ih.view());
  column_sums(dG, db_ih);
}

/// dW_ih [G*H, I] = dG^T · x for one-hot inputs (ws.x_index): each valid row r adds dG[r] to column x_index[r], in
/// row order (a scatter-add instead of a GEMM over one-hot rows). Padded rows (dG = 0) are skipped.
template <typename T, typename GateGrads>
EIGEN_DONT_INLINE void scatter_input_weight_gradient(const GateGrads& dG, const Workspace<T>& ws, T* dw_ih) {
  const Dims& d = ws.dims;
  RowMatrix<T> columns = RowMatrix<T>::Zero(d.I, dG.cols());  // dW_ih^T, rows added contiguously
  for (index_t t = 0; t < d.T; ++t)
    for (index_t b = 0; b < d.B; ++b)
      if (ws.lengths.empty() || t < ws.lengths[b]) columns.row(ws.x_index[t * d.B + b]) += dG.row(t * d.B + b);
  MatrixView<T>(dw_ih, dG.cols(), d.I) = columns.transpose();
}

/// The weight gradients of the input side's dG, after the time loop (K = T*B):
///   dW_ih [G*H, I] = dG^T · x (a scatter-add for one-hot inputs);   dW_hh [rows, H] = dG[:, :rows]^T · h_prev;
///   db_hh [rows] = db_ih [:rows]
/// rows: the gate columns whose recurrent product multiplied h_prev with this dG (every gate for LSTM and simple RNN;
/// r and z for GRU, whose n block goes through recurrent_side_gradients). db_ih: the input side's column sums.
/// On the tile both products are one GEMM that packs dG^T once (faster than two: bench/README.md, measurement logs).
template <typename T, typename GateGrads>
EIGEN_DONT_INLINE void weight_gradients(const GateGrads& dG, const Workspace<T>& ws, index_t rows, T* dw_ih,
                                        const T* db_ih, T* dw_hh, T* db_hh) {
  const Dims& d = ws.dims;
  const index_t GH = dG.cols(), TB = d.T * d.B;
  const ConstMatrixView<T> x = ws.x.view(), h_prev = states_read(ws);
  std::copy_n(db_ih, rows, db_hh);
  if (ws.one_hot) {
    scatter_input_weight_gradient(dG, ws, dw_ih);
    multiply_into<true, false>(MatrixView<T>(dw_hh, rows, d.H), dG.leftCols(rows), h_prev);
    return;
  }
  if constexpr (kTileFor<T>) {
    if (runs_on_tile<T>(GH)) {
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
