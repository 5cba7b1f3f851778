// The time loops every recurrent kernel shares: ONE forward loop and ONE backward loop, parameterised by the cell (a
// policy struct in cells/*.hpp), with one per-step hook where extras on the state plug in (zoneout, dropout masks);
// plus the padding helpers (StepMask, StateSlots, write_step_output, carry_padded_state) and the workspace set-up.
//
// Kernel shape (docs/design.md §3): the input GEMM for all steps (project_inputs) runs before the forward loop; the
// loops run over blocks of batch rows (for_row_blocks: each block its own products and its own steps), and per
// step the cell's recurrent product(s) and one pointwise pass per sample row; the weight-gradient GEMMs run after the
// backward loop.
//
// A forward cell policy provides (T the float type, R the rows of a block, N = kStates):
//   static constexpr int kStates;                   state arrays carried between steps: 1 (h) or 2 (h, c)
//   index_t gate_columns() const;                   G*H, which sizes the row-block split (the weight W_hh's bytes)
//   struct ForwardProducts { ForwardProducts(const Cell&, index_t R, index_t steps); };   a block's step products
//   void step(ForwardProducts&, index_t t, index_t b0, index_t R, T* const (&prev)[N], T* const (&next)[N],
//             Active&& active) const;           step t of rows [b0, b0+R): prev[k], next[k] [R, H] the state k
//                                               before and after (k = 0: h); active(r) whether row b0+r takes it
// A backward cell policy provides:
//   index_t gate_columns() const;                   G*H: the columns of a row of dG
//   struct BackwardProducts { BackwardProducts(const Cell&, index_t R); };
//   void backward_row(index_t t, index_t b, T* dg, T* dh, const T* dy) const;
//       sample row b at step t (a valid step): dg [G*H] out, the gate gradients; dh [H]: dL/dh_t in (the gradient
//       flowing back from step t+1), and on exit what the row contributes to dL/dh_{t-1} before propagate (zeros
//       when all of it comes through the products); dy [H] or null: dL/dy_t, added to dh. The cell updates its own
//       carried gradients (LSTM dc) in place.
//   void padded_row(index_t t, index_t b) const;     a padded row: zeroes whatever else the cell keeps per row
//   void propagate(BackwardProducts&, const StepMask&, index_t t, index_t b0, index_t b1, T* dg_t, T* dh) const;
//       after the rows [b0, b1) of step t: dh_{t-1} += the products of dG_t (dg_t [B, G*H], dh [B, H]); padded rows
//       have dG = 0, so their dh passes through unchanged.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cells/cell_table.hpp"
#include "parallel.hpp"
#include "linalg/step_product.hpp"
#include "tuning.hpp"
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

/// Copies what backward needs that the caller owns (inputs, weights, lengths) into the workspace and sizes the
/// state slots: h always, c when the cell has two states, and the cell's stored activation columns (cell_table.hpp).
/// One-hot inputs (x_index [T*B], x null) keep their indices instead of x.
template <typename T>
void begin_workspace(Workspace<T>& ws, const CellSpec& spec, const Dims& d, const T* x, const index_t* x_index,
                     const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, const index_t* lengths) {
  const CellTraits& cell = cell_traits(spec.kind);
  const index_t GH = cell.gates * d.H;
  ws.spec = spec;
  ws.dims = d;
  ws.has_bias_ih = b_ih != nullptr;
  ws.has_bias_hh = b_hh != nullptr;
  if (lengths)
    ws.lengths.assign(lengths, lengths + d.B);
  else
    ws.lengths.clear();
  // Copied by all the call's threads when large (a GRU H=1024 step copies 27 MB): one thread copying while the
  // other waited cost the 2-thread training step.
  auto keep = [](CachedMatrix<T>& dst, const T* src, index_t rows, index_t cols) {
    dst.resize(rows, cols);
    const index_t n = rows * cols;
    parallel_chunks(n, threads_for(double(n), n / tuning::kCopyAlign, tuning::kMinCopyPerThread), tuning::kCopyAlign,
                    [&](int, index_t b, index_t e) { std::copy(src + b, src + e, dst.data() + b); });
  };
  ws.one_hot = x_index != nullptr;
  if (x_index) {
    ws.x.resize(0, d.I);
    ws.x_index.assign(x_index, x_index + d.T * d.B);
  } else {
    keep(ws.x, x, d.T * d.B, d.I);
    ws.x_index.clear();
  }
  keep(ws.w_ih, w_ih, GH, d.I);
  keep(ws.w_hh, w_hh, GH, d.H);
  ws.h.resize((d.T + 1) * d.B, d.H);
  ws.c.resize(cell.states > 1 ? (d.T + 1) * d.B : 0, d.H);
  ws.acts.resize(d.T * d.B, cell.stored_acts * d.H);
  // Padded steps are never computed; zero their rows so that the weight-gradient GEMMs (which multiply them by a
  // zero gradient) cannot meet a NaN or inf the caller padded with, or uninitialised memory.
  if (lengths)
    for (index_t t = 0; t < d.T; ++t)
      for (index_t b = 0; b < d.B; ++b)
        if (t >= lengths[b]) {
          if (!x_index) ws.x.view().row(t * d.B + b).setZero();
          ws.acts.view().row(t * d.B + b).setZero();
        }
}

/// y[t, b] = h_t[b] at valid steps, y[t, b] = 0 past the sample's end, for the B rows from y_t (rows `batch`
/// apart, elements `feature` apart: a StepView's step t from its first row).
template <typename T>
void write_step_output(const StepMask& mask, index_t t, index_t B, index_t H, const T* h_new, T* y_t, index_t batch,
                       index_t feature) {
  if (mask.all_active(t) && batch == H && feature == 1) {  // dense rows: one copy
    std::copy_n(h_new, B * H, y_t);
    return;
  }
  for (index_t b = 0; b < B; ++b) {
    T* row = y_t + b * batch;
    const bool valid = mask.active(b, t);
    if (feature == 1) {
      if (valid)
        std::copy_n(h_new + b * H, H, row);
      else
        std::fill(row, row + H, T(0));
    } else {
      for (index_t j = 0; j < H; ++j) row[j * feature] = valid ? h_new[b * H + j] : T(0);
    }
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

/// The per-step hook: where an extra on the state plugs into both loops (zoneout h_t = m ⊙ h_{t-1} + (1-m) ⊙ h̃_t,
/// a dropout mask on the carried state). This one is the default: no extra, and every call below is discarded at
/// compile time (`if constexpr (Hook::kActive)`), so the loops do exactly the cell's work.
///
/// Contract of a hook (a struct with kActive = true and these members; it holds its own pointers and scratch):
///   Forward, after the cell's step t of rows [b0, b0+R), before padded rows are carried and y_t is written:
///     void after_step(index_t t, index_t b0, index_t R, const StepMask& rows, T* const (&prev)[N],
///                     T* const (&next)[N]);
///     rows: the block's mask (row r of the block = sample b0+r); prev[k], next[k] [R, H]: state k (0 = h, 1 = c)
///     before the step and as the cell left it (h̃_t). The hook rewrites next rows where rows.active(r, t) (padded
///     rows are overwritten by the carry afterwards); y_t and step t+1 see what it leaves. In training it stores its
///     per-step data (e.g. the mask m) in Workspace::step_extras, [T*B, E] with E its own columns (sized by the
///     kernel before the loop), row t*B + b. The states the slots keep are the hooked ones: a cell whose backward
///     reads its own output from the next state (the simple RNN's h_t) needs h̃_t stored in the extras too.
///   Backward, for each valid row b at step t, before the cell's backward_row:
///     void before_row(index_t t, index_t b, T* dh, const T* dy);
///     dh [H]: dL/dh_t flowing back, dy [H] or null: dL/dy_t. The hook folds dy in, keeps its direct share of the
///     gradient for dh_{t-1} (zoneout: m ⊙ (dh + dy)) in its own [B, H] scratch, and leaves in dh the gradient of
///     the cell's own output (zoneout: (1-m) ⊙ (dh + dy)); the cell then gets no dy. Rows run in parallel: a hook
///     writes only row b.
///   Backward, after the cell's propagate for rows [b0, b1) of step t:
///     void after_propagate(index_t t, index_t b0, index_t b1, const StepMask& mask, T* dh);
///     dh [B, H]: dL/dh_{t-1} from the cell; the hook adds its kept share to the valid rows (padded rows pass
///     through untouched).
///   A hook on the LSTM's c (zoneout on both states) extends before_row/after_propagate with the cell's dc.
struct NoStepHook {
  static constexpr bool kActive = false;
};

/// The forward time loop of every cell: for t = 0 … T-1, over blocks of batch rows (for_row_blocks), the cell's step
/// (products and pointwise pass), the hook, then padded rows keep their state and y_t = h_t (0 past the end).
///   cell: the forward policy (see the top of this file);  T_steps, B, H: sizes;  lengths [B] or null;
///   states[k]: the slots of state k (0 = h, 1 = c), slot 0 already set;  y [T, B, H] out, at its strides.
template <typename Cell, typename T, typename Hook = NoStepHook>
void forward_time_loop(const Cell& cell, index_t T_steps, index_t B, index_t H, const index_t* lengths,
                       const StateSlots<T> (&states)[Cell::kStates], const StepView<T>& y, Hook&& hook = Hook{}) {
  constexpr int N = Cell::kStates;
  for_row_blocks(B, double(sizeof(T)) * cell.gate_columns() * H, [&](index_t b0, index_t b1) {  // R rows
    const index_t R = b1 - b0;
    const StepMask rows(lengths ? lengths + b0 : nullptr, R);
    typename Cell::ForwardProducts products(cell, R, T_steps);
    for (index_t t = 0; t < T_steps; ++t) {
      T *prev[N], *next[N];
      for (int k = 0; k < N; ++k) {
        prev[k] = states[k][t] + b0 * H;
        next[k] = states[k][t + 1] + b0 * H;
      }
      cell.step(products, t, b0, R, prev, next, [&](index_t r) { return rows.active(r, t); });
      if constexpr (std::decay_t<Hook>::kActive) hook.after_step(t, b0, R, rows, prev, next);
      for (int k = 0; k < N; ++k) carry_padded_state(rows, t, R, H, prev[k], next[k]);
      write_step_output(rows, t, R, H, next[0], y.row(t, b0), y.batch, y.feature);
    }
  });
}

/// The backward time loop of every cell, over blocks of batch rows (for_row_blocks): for t = T-1 … 0, each valid row
/// runs the cell's backward_row (gate gradients into dG, dh updated); a padded row gets zero gate gradients and its
/// carried gradients pass through unchanged; then the cell's propagate adds dh_{t-1} += dG_t · W_hh (its products).
///   cell: the backward policy;  ws: the forward's workspace;  mask: the whole batch's;
///   dy [T, B, H] at its strides (data null: zeros);  dG [T*B, G*H] out;  dh [B, H]: dL/dh_t flowing back, updated
///   in place (dL/dh0 on exit).
template <typename Cell, typename T, typename Hook = NoStepHook>
void backward_time_loop(const Cell& cell, const Workspace<T>& ws, const StepMask& mask, const StepView<const T>& dy,
                        T* dG, T* dh, Hook&& hook = Hook{}) {
  const index_t B = ws.dims.B, H = ws.dims.H, GH = cell.gate_columns();
  for_row_blocks(B, double(sizeof(T)) * GH * H, [&](index_t b0, index_t b1) {  // rows [b0, b1): R of them
    const index_t R = b1 - b0;
    typename Cell::BackwardProducts products(cell, R);
    for (index_t t = ws.dims.T - 1; t >= 0; --t) {
      T* dg_t = dG + t * B * GH;
      for_each_row(R, GH, [&](index_t r) {
        const index_t b = b0 + r;
        T* dg = dg_t + b * GH;
        if (!mask.active(b, t)) {  // padded: no gradient to the gates, the carried gradients pass through
          std::fill(dg, dg + GH, T(0));
          cell.padded_row(t, b);
          return;
        }
        T* dh_b = dh + b * H;
        const T* dy_b = dy.data ? dy.row(t, b) : nullptr;
        if (dy_b && dy.feature != 1) {  // the cells read dy densely: fold it into dh here (the same single add)
          for (index_t j = 0; j < H; ++j) dh_b[j] += dy_b[j * dy.feature];
          dy_b = nullptr;
        }
        if constexpr (std::decay_t<Hook>::kActive) {
          hook.before_row(t, b, dh_b, dy_b);
          dy_b = nullptr;
        }
        cell.backward_row(t, b, dg, dh_b, dy_b);
      });
      cell.propagate(products, mask, t, b0, b1, dg_t, dh);
      if constexpr (std::decay_t<Hook>::kActive) hook.after_propagate(t, b0, b1, mask, dh);
    }
  });
}

/// The backward products of a cell with one recurrent product over all its gates (LSTM, simple RNN):
/// dh_{t-1} += dG_t · W_hh. A backward policy derives from it for its BackwardProducts and propagate.
template <typename T>
struct OneRecurrentProduct {
  const T* w_hh;  ///< [G*H, H]
  index_t GH, H;

  index_t gate_columns() const { return GH; }

  struct BackwardProducts {
    StepProduct<T, false> recurrent;  // dh_{t-1} += dG_t · W_hh
    BackwardProducts(const OneRecurrentProduct& cell, index_t R) : recurrent(cell.w_hh, cell.GH, cell.H, R) {}
  };

  /// The row pass left the rows of dh it refills at zero; padded rows (dG = 0) keep theirs.
  void propagate(BackwardProducts& p, const StepMask&, index_t, index_t b0, index_t, T* dg_t, T* dh) const {
    p.recurrent.accumulate(dg_t + b0 * GH, GH, dh + b0 * H, H);
  }
  void padded_row(index_t, index_t) const {}
};

}  // namespace rnncore::detail
