// What every recurrent kernel shares: padding masks, state storage, the workspace set-up and the weight-gradient
// GEMMs (on linalg/gemm.hpp). Cell files keep only their own gate math.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "parallel.hpp"
#include "linalg/gemm.hpp"
#include "linalg/step_product.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

/// Which samples are still inside their sequence at step t (right padding).
class StepMask {
 public:
  StepMask(const index_t* lengths, index_t B) : lengths_(lengths) {
    min_length_ = lengths ? (B > 0 ? *std::min_element(lengths, lengths + B) : 0) : 0;
  }
  /// Whether every sample takes step t (then no row needs special handling).
  bool all_active(index_t t) const { return lengths_ == nullptr || t < min_length_; }
  bool active(index_t b, index_t t) const { return lengths_ == nullptr || t < lengths_[b]; }

 private:
  const index_t* lengths_;
  index_t min_length_;
};

/// Where the states h (or c) live between steps. Slot k holds the state before step k (slot 0 = h0, slot T = h_n).
/// Training keeps every slot (backward reads them); inference keeps two and alternates.
template <typename T>
class StateSlots {
 public:
  StateSlots(T* base, index_t B, index_t H, bool keep_all) : base_(base), size_(B * H), keep_all_(keep_all) {}
  T* operator[](index_t k) const { return base_ + (keep_all_ ? k : (k & 1)) * size_; }
  /// Slot 0 = the initial state, or zeros when none is given.
  void set_initial(const T* init) const {
    if (init)
      std::copy_n(init, size_, base_);
    else
      std::fill(base_, base_ + size_, T(0));
  }

 private:
  T* base_;
  index_t size_;
  bool keep_all_;
};

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

/// Copies what backward needs that the caller owns (inputs, weights, lengths) into the workspace and sizes the
/// state slots: h always, c when `with_cell_state`, and `acts_cols` columns of per-step activations.
template <typename T>
void begin_workspace(Workspace<T>& ws, const CellSpec& spec, const Dims& d, const T* x, const T* w_ih, const T* w_hh,
                     const T* b_ih, const T* b_hh, const index_t* lengths, bool with_cell_state, index_t acts_cols) {
  const index_t GH = spec.gates() * d.H;
  ws.spec = spec;
  ws.dims = d;
  ws.has_bias_ih = b_ih != nullptr;
  ws.has_bias_hh = b_hh != nullptr;
  if (lengths)
    ws.lengths.assign(lengths, lengths + d.B);
  else
    ws.lengths.clear();
  // Copied by all the call's threads when large: 27 MB for a GRU H=1024 step, which one thread copied while the
  // other waited (2-thread training step, with the GEMM split by work: 1.02-1.06x).
  auto keep = [](CachedMatrix<T>& dst, const T* src, index_t rows, index_t cols) {
    dst.resize(rows, cols);
    const index_t n = rows * cols;
    parallel_chunks(n, threads_for(double(n), n / tuning::kCopyAlign, tuning::kMinCopyPerThread), tuning::kCopyAlign,
                    [&](int, index_t b, index_t e) {
      std::copy(src + b, src + e, dst.data() + b);
    });
  };
  keep(ws.x, x, d.T * d.B, d.I);
  keep(ws.w_ih, w_ih, GH, d.I);
  keep(ws.w_hh, w_hh, GH, d.H);
  ws.h.resize((d.T + 1) * d.B, d.H);
  ws.c.resize(with_cell_state ? (d.T + 1) * d.B : 0, d.H);
  ws.acts.resize(d.T * d.B, acts_cols);
  // Padded steps are never computed; zero their rows so that the weight-gradient GEMMs (which multiply them by a
  // zero gradient) cannot meet a NaN or inf the caller padded with, or uninitialised memory.
  if (lengths)
    for (index_t t = 0; t < d.T; ++t)
      for (index_t b = 0; b < d.B; ++b)
        if (t >= lengths[b]) {
          ws.x.view().row(t * d.B + b).setZero();
          ws.acts.view().row(t * d.B + b).setZero();
        }
}

/// y[t, b] = h_t[b] at valid steps, y[t, b] = 0 past the sample's end.
template <typename T>
void write_step_output(const StepMask& mask, index_t t, index_t B, index_t H, const T* h_new, T* y_t) {
  if (mask.all_active(t)) {
    std::copy_n(h_new, B * H, y_t);
    return;
  }
  for (index_t b = 0; b < B; ++b) {
    if (mask.active(b, t))
      std::copy_n(h_new + b * H, H, y_t + b * H);
    else
      std::fill(y_t + b * H, y_t + (b + 1) * H, T(0));
  }
}

/// For samples past their length at step t: the new state row is the previous one (the state is untouched).
template <typename T>
void carry_padded_state(const StepMask& mask, index_t t, index_t B, index_t H, const T* prev, T* next) {
  if (mask.all_active(t)) return;
  for (index_t b = 0; b < B; ++b)
    if (!mask.active(b, t)) std::copy_n(prev + b * H, H, next + b * H);
}

/// Backward's starting gradient for a final state: the caller's, or zeros.
template <typename T>
RowMatrix<T> initial_state_gradient(const T* d_final, index_t B, index_t H) {
  if (d_final) return ConstMatrixView<T>(d_final, B, H);
  return RowMatrix<T>::Zero(B, H);
}

/// The backward time loop of a cell with one recurrent product (LSTM, simple RNN), over blocks of batch rows
/// (for_row_blocks): for t = T-1 … 0, row(t, b, dg) fills dg [G*H], the gate gradients of sample row b at step t
/// (and updates the cell's own carried gradients); a padded row gets zeros instead and its carried gradients pass
/// through unchanged. Then dh_{t-1} = dG_t · W_hh (the row pass leaves the rows of dh it refills at zero).
///   dG [T*B, G*H] out;  dh [B, H]: dL/dh_t flowing back, updated in place.
template <typename T, typename Row>
void backward_time_loop(const Workspace<T>& ws, const StepMask& mask, index_t GH, T* dG, T* dh, Row&& row) {
  const index_t B = ws.dims.B, H = ws.dims.H;
  for_row_blocks(B, double(sizeof(T)) * GH * H, [&](index_t b0, index_t b1) {  // rows [b0, b1): R of them
    const index_t R = b1 - b0;
    StepProduct<T, false> recurrent(ws.w_hh.data(), GH, H, R);  // dh_{t-1} += dG_t · W_hh
    for (index_t t = ws.dims.T - 1; t >= 0; --t) {
      T* dg_t = dG + t * B * GH;
      for_each_row(R, GH, [&](index_t r) {
        const index_t b = b0 + r;
        if (mask.active(b, t))
          row(t, b, dg_t + b * GH);
        else
          std::fill(dg_t + b * GH, dg_t + (b + 1) * GH, T(0));
      });
      recurrent.accumulate(dg_t + b0 * GH, GH, dh + b0 * H, H);  // padded rows: dG = 0, dh kept
    }
  });
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
