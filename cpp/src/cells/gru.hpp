// The GRU cell, both variants (equations in rnncore/gru.hpp): its forward step math and its backward row math side
// by side, and the two policies the shared time loops (time_loops.hpp) run it with.
//
// Stored activations per step and sample row (Workspace::acts, [T*B, 4H]):
//   reset_after = true:  r, z, n, hn = h_{t-1} W_hn^T + b_hn   (what r multiplied)
//   reset_after = false: r, z, n, rh = r ⊙ h_{t-1}             (what W_hn multiplied)
#pragma once

#include <algorithm>
#include <type_traits>

#include "parallel.hpp"
#include "pointwise.hpp"
#include "linalg/step_product.hpp"
#include "recurrent_common.hpp"
#include "time_loops.hpp"
#include "cell_table.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"

namespace rnncore::detail {

/// The gates of one unit in GRU reset_before's second product, (r ⊙ h) · W_hn^T: n alone.
constexpr index_t kGruResetUnitGates = 1;

// ---- forward ----

/// GRU, the units j … j+|P|-1: r and z from their pre-activations (both variants), then
///   reset_after (hw_n != null: h W_hn^T):  hn = hw_n + b_hn,  n = tanh(x W_in^T + b_in + r ⊙ hn),
///                                          h_t = (1 - z) ⊙ n + z ⊙ h_{t-1};
///   reset_before (hw_n == null): rh = r ⊙ h_{t-1} for the reset product (gru_reset_unit finishes).
///   xw_n [H]: the n block of x W_ih^T + b_ih;  b_hn [H] or null;  h_prev [H];
///   acts [4H] out: r, z, n, hn (reset_after) or r, z, -, rh;  h_new [H] out (reset_after)
template <typename P, typename T>
EIGEN_ALWAYS_INLINE void gru_unit(const P& pre_r, const P& pre_z, const P* hw_n, index_t j, const T* xw_n,
                                  const T* b_hn, const T* h_prev, T* acts, T* h_new, index_t H) {
  namespace ei = Eigen::internal;
  const P r = act::sigmoid(pre_r), z = act::sigmoid(pre_z), hp = lanes::load<P>(h_prev + j);
  lanes::store(acts + j, r);
  lanes::store(acts + H + j, z);
  if (!hw_n) {
    lanes::store(acts + 3 * H + j, ei::pmul(r, hp));  // rh = r ⊙ h_{t-1}, the reset product's input
    return;
  }
  const P hn = b_hn ? ei::padd(*hw_n, lanes::load<P>(b_hn + j)) : *hw_n;
  const P n = act::tanh(ei::pmadd(r, hn, lanes::load<P>(xw_n + j)));
  lanes::store(acts + 3 * H + j, hn);
  lanes::store(acts + 2 * H + j, n);
  lanes::store(h_new + j, ei::pmadd(z, ei::psub(hp, n), n));  // (1 - z) ⊙ n + z ⊙ h_prev
}

/// GRU reset_before, the units j … j+|P|-1 after the reset product: n = tanh(pre_n), pre_n = x W_in^T + b_in + b_hn +
/// (r ⊙ h) W_hn^T;  h_t = (1 - z) ⊙ n + z ⊙ h_prev.  h_prev [H];  acts [4H] (reads z, writes n);  h_new [H] out
template <typename P, typename T>
EIGEN_ALWAYS_INLINE void gru_reset_unit(const P& pre_n, index_t j, const T* h_prev, T* acts, T* h_new, index_t H) {
  namespace ei = Eigen::internal;
  const P n = act::tanh(pre_n);
  const P z = lanes::load<P>(acts + H + j);
  lanes::store(acts + 2 * H + j, n);
  lanes::store(h_new + j, ei::pmadd(z, ei::psub(lanes::load<P>(h_prev + j), n), n));
}

/// GRU, first pass over a row (gru_unit on every packet).
///   xw [3H]: x W_ih^T + b_ih (+ b_hr, b_hz; + b_hn unless reset_after);  hw [3H]: h W_hh^T, or null when the
///   r and z blocks of xw already include it (reset_before accumulates its product there; reset_after needs hw);
///   h_prev [H];  b_hn [H] or null;  acts [4H] out;  h_new [H] out (reset_after)
template <typename T>
void gru_row(const T* xw, const T* hw, const T* h_prev, const T* b_hn, T* acts, T* h_new, index_t H,
             bool reset_after) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    P r = lanes::load<P>(xw + j), z = lanes::load<P>(xw + H + j);
    if (hw) {
      r = ei::padd(r, lanes::load<P>(hw + j));
      z = ei::padd(z, lanes::load<P>(hw + H + j));
    }
    if (!reset_after) {
      gru_unit<P>(r, z, nullptr, j, xw + 2 * H, b_hn, h_prev, acts, h_new, H);
      return;
    }
    const P hw_n = lanes::load<P>(hw + 2 * H + j);
    gru_unit<P>(r, z, &hw_n, j, xw + 2 * H, b_hn, h_prev, acts, h_new, H);
  });
}

/// GRU reset_before, second pass over a row (gru_reset_unit on every packet).  xn [H]: the n block of xw with the
/// reset product (r ⊙ h) W_hn^T already added;  h_prev [H];  acts [4H] (reads z, writes n);  h_new [H] out
template <typename T>
void gru_row_reset_before(const T* xn, const T* h_prev, T* acts, T* h_new, index_t H) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    gru_reset_unit(lanes::load<P>(xn + j), j, h_prev, acts, h_new, H);
  });
}

/// GRU, one step of a batch (B rows), both variants: the recurrent products, then the row passes above.
///   xw_t [B, 3H]: x W_ih^T + folded biases (scratch on exit: unless fused, reset_before adds its products there);
///   hw [B, 3H]: scratch for reset_after's h W_hh^T (unused otherwise);  h_prev [B, H];  b_hn [H] or null;
///   acts [B, 4H] out (see gru_unit);  h_new [B, H] out;  active(b): whether row b takes this step.
///   hidden: h · W_hh^T over rows r, z (and n with reset_after), built with hidden_unit_gates (cell_table.hpp);
///   reset: (r ⊙ h) · W_hn^T (reset_before only), built with kGruResetUnitGates.
template <typename T, typename Active>
void gru_step(StepProduct<T, true>& hidden, StepProduct<T, true>& reset, T* xw_t, T* hw, const T* h_prev,
              const T* b_hn, T* acts, T* h_new, index_t B, index_t H, bool reset_after, Active&& active) {
  const index_t GH = 3 * H;
  if (hidden.fused() && (reset_after || reset.fused())) {  // B = 1
    if (!active(0)) return;
    namespace ei = Eigen::internal;
    hidden.for_each_unit(h_prev, [&](index_t j, const auto* sums) {
      using P = std::decay_t<decltype(*sums)>;
      const P r = ei::padd(lanes::load<P>(xw_t + j), sums[0]), z = ei::padd(lanes::load<P>(xw_t + H + j), sums[1]);
      gru_unit<P>(r, z, reset_after ? sums + 2 : nullptr, j, xw_t + 2 * H, b_hn, h_prev, acts, h_new, H);
    });
    if (reset_after) return;
    reset.for_each_unit(acts + 3 * H, [&](index_t j, const auto* sums) {
      using P = std::decay_t<decltype(*sums)>;
      gru_reset_unit(ei::padd(lanes::load<P>(xw_t + 2 * H + j), sums[0]), j, h_prev, acts, h_new, H);
    });
    return;
  }
  if (reset_after) {
    std::fill(hw, hw + B * GH, T(0));
    hidden.accumulate(h_prev, H, hw, GH);
  } else {
    hidden.accumulate(h_prev, H, xw_t, GH);
  }
  for_each_row(B, reset_after ? GH : 2 * H, [&](index_t b) {
    if (!active(b)) return;
    gru_row(xw_t + b * GH, reset_after ? hw + b * GH : nullptr, h_prev + b * H, b_hn, acts + b * 4 * H,
            h_new + b * H, H, reset_after);
  });
  if (reset_after) return;
  reset.accumulate(acts + 3 * H, 4 * H, xw_t + 2 * H, GH);  // n block += (r ⊙ h) W_hn^T
  for_each_row(B, H, [&](index_t b) {
    if (active(b)) gru_row_reset_before(xw_t + b * GH + 2 * H, h_prev + b * H, acts + b * 4 * H, h_new + b * H, H);
  });
}

// ---- backward ----

/// GRU, one sample row of one step backward, first pass (both variants), from the stored activations:
///   h = (1 - z) ⊙ n + z ⊙ h_prev (product rule):  dn = dh ⊙ (1 - z), dz = dh ⊙ (h_prev - n), direct dh_prev = dh ⊙ z;
///   dn_pre = dn ⊙ tanh'(n) with tanh' = 1 - n² from the output; dz_pre = dz ⊙ σ'(z) with σ' = z(1 - z);
///   reset_after, n = tanh(xn + r ⊙ hn):  dr = dn_pre ⊙ hn (dr_pre = dr ⊙ r(1 - r)), d(hn) = dn_pre ⊙ r (the
///   recurrent side's n block). reset_before leaves dr to gru_reset_before_backward_row, after the reset product.
///   acts [4H] (see the top of this file);  h_prev [H];  dy [H] or null;
///   dh [H]: dL/dh_t in (plus dy), out the direct dh ⊙ z (the products add the rest of dL/dh_{t-1});
///   dg [3H] out: dr_pre (reset_after), dz_pre, dn_pre;  dgh_n [H] out: d(hn) (reset_after), else unused.
template <typename T>
EIGEN_ALWAYS_INLINE void gru_backward_row(const T* acts, const T* h_prev, const T* dy, T* dh, T* dg, T* dgh_n,
                                          index_t H, bool reset_after) {
  const T *a_r = acts, *a_z = acts + H, *a_n = acts + 2 * H, *a_fourth = acts + 3 * H;
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P r = lanes::load<P>(a_r + j), z = lanes::load<P>(a_z + j), n = lanes::load<P>(a_n + j);
    P dh_j = lanes::load<P>(dh + j);
    if (dy) dh_j = ei::padd(dh_j, lanes::load<P>(dy + j));
    const P dn_pre = ei::pmul(ei::pmul(dh_j, ei::psub(act::splat<P>(1), z)), act::tanh_grad_from_output(n));
    lanes::store(dg + 2 * H + j, dn_pre);
    lanes::store(dg + H + j, ei::pmul(ei::pmul(dh_j, ei::psub(lanes::load<P>(h_prev + j), n)),
                                      act::sigmoid_grad_from_output(z)));
    if (reset_after) {
      lanes::store(dg + j, ei::pmul(ei::pmul(dn_pre, lanes::load<P>(a_fourth + j)), act::sigmoid_grad_from_output(r)));
      lanes::store(dgh_n + j, ei::pmul(dn_pre, r));
    }
    lanes::store(dh + j, ei::pmul(dh_j, z));
  });
}

/// GRU reset_before, second pass over a sample row, after the reset product d(rh) = dn_pre · W_hn:
///   n = tanh(xn + (r ⊙ h_prev) W_hn^T), rh = r ⊙ h_prev (product rule):  dr = d(rh) ⊙ h_prev, dh_prev += d(rh) ⊙ r;
///   dr_pre = dr ⊙ σ'(r) with σ' = r(1 - r) from the output.
///   r [H]: the stored r;  drh [H]: d(rh);  h_prev [H];  dr_pre [H] out (dG's r block);  dh [H] updated.
template <typename T>
EIGEN_ALWAYS_INLINE void gru_reset_before_backward_row(const T* r, const T* drh, const T* h_prev, T* dr_pre, T* dh,
                                                       index_t H) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P r_j = lanes::load<P>(r + j), drh_j = lanes::load<P>(drh + j);
    lanes::store(dr_pre + j, ei::pmul(ei::pmul(drh_j, lanes::load<P>(h_prev + j)), act::sigmoid_grad_from_output(r_j)));
    lanes::store(dh + j, ei::pmadd(drh_j, r_j, lanes::load<P>(dh + j)));
  });
}

// ---- the policies of the shared time loops ----

/// The GRU in forward_time_loop: state h; h · W_hh^T over r, z (and n with reset_after), and with reset_before the
/// second product (r ⊙ h) · W_hn^T.
template <typename T>
struct GruForward {
  static constexpr int kStates = 1;
  const T* w_hh;      ///< [3H, H]
  T* xw;              ///< [T*B, 3H]: x W_ih^T + folded biases (scratch on exit, see gru_step)
  T* hw;              ///< [B, 3H]: reset_after's h W_hh^T scratch; null with reset_before
  T* acts;            ///< [T*B, 4H] when acts_per_step (training), else [B, 4H] reused by every step
  const T* b_hn;      ///< [H] reset_after's b_hn, or null
  index_t B, H;
  bool reset_after, acts_per_step;

  index_t gate_columns() const { return 3 * H; }

  struct ForwardProducts {
    StepProduct<T, true> hidden;  // h_{t-1} · W_hh^T over r, z[, n]
    StepProduct<T, true> reset;   // (r ⊙ h_{t-1}) · W_hn^T (reset_before; empty otherwise)
    ForwardProducts(const GruForward& cell, index_t R, index_t steps)
        : hidden(cell.w_hh, cell.reset_after ? 3 * cell.H : 2 * cell.H, cell.H, R, steps,
                 hidden_unit_gates(gru_spec(cell.reset_after))),
          reset(cell.w_hh + 2 * cell.H * cell.H, cell.reset_after ? 0 : cell.H, cell.H, R, steps,
                kGruResetUnitGates) {}
  };

  static CellSpec gru_spec(bool reset_after) {
    CellSpec spec{CellKind::gru};
    spec.reset_after = reset_after;
    return spec;
  }

  template <typename Active>
  EIGEN_ALWAYS_INLINE void step(ForwardProducts& p, index_t t, index_t b0, index_t R, T* const (&prev)[1],
                                T* const (&next)[1], Active&& active) const {
    T* acts_t = acts_per_step ? acts + t * B * 4 * H : acts;
    gru_step(p.hidden, p.reset, xw + (t * B + b0) * 3 * H, reset_after ? hw + b0 * 3 * H : nullptr, prev[0], b_hn,
             acts_t + b0 * 4 * H, next[0], R, H, reset_after, active);
  }
};

/// The GRU in backward_time_loop. Its propagate is two products: reset_after dh_{t-1} += [dr, dz] · [W_hr; W_hz] +
/// (dn_pre ⊙ r) · W_hn; reset_before first d(rh) = dn_pre · W_hn, then a second row pass (dr, and d(rh) ⊙ r into
/// dh), then [dr, dz] · [W_hr; W_hz].
template <typename T>
struct GruBackward {
  const T* w_hh;          ///< [3H, H]
  const T* acts;          ///< [T*B, 4H] the forward's activations
  StateSlots<const T> h;  ///< the forward's states, every slot
  T* dGh_n;               ///< [T*B, H] reset_after: the recurrent side's n block d(hn) = dn_pre ⊙ r; else null
  T* drh;                 ///< [B, H] reset_before: d(rh) = dn_pre · W_hn; else null
  index_t B, H;
  bool reset_after;

  index_t gate_columns() const { return 3 * H; }

  struct BackwardProducts {
    StepProduct<T, false> rz;  // [dr, dz] · [W_hr; W_hz]
    StepProduct<T, false> n;   // (dn side) · W_hn
    BackwardProducts(const GruBackward& cell, index_t R)
        : rz(cell.w_hh, 2 * cell.H, cell.H, R), n(cell.w_hh + 2 * cell.H * cell.H, cell.H, cell.H, R) {}
  };

  EIGEN_ALWAYS_INLINE void backward_row(index_t t, index_t b, T* dg, T* dh, const T* dy) const {
    gru_backward_row(acts + (t * B + b) * 4 * H, h[t] + b * H, dy, dh, dg,
                     reset_after ? dGh_n + (t * B + b) * H : nullptr, H, reset_after);
  }

  void padded_row(index_t t, index_t b) const {
    if (reset_after) std::fill(dGh_n + (t * B + b) * H, dGh_n + (t * B + b + 1) * H, T(0));
  }

  void propagate(BackwardProducts& p, const StepMask& mask, index_t t, index_t b0, index_t b1, T* dg_t,
                 T* dh) const {
    const index_t GH = 3 * H;
    if (reset_after) {
      p.rz.accumulate(dg_t + b0 * GH, GH, dh + b0 * H, H);
      p.n.accumulate(dGh_n + (t * B + b0) * H, H, dh + b0 * H, H);
      return;
    }
    std::fill(drh + b0 * H, drh + b1 * H, T(0));
    p.n.accumulate(dg_t + b0 * GH + 2 * H, GH, drh + b0 * H, H);
    for_each_row(b1 - b0, H, [&](index_t row) {
      const index_t b = b0 + row;
      if (!mask.active(b, t)) return;
      gru_reset_before_backward_row(acts + (t * B + b) * 4 * H, drh + b * H, h[t] + b * H, dg_t + b * GH, dh + b * H,
                                    H);
    });
    p.rz.accumulate(dg_t + b0 * GH, GH, dh + b0 * H, H);
  }
};

// ---- the weight gradients after the backward loop ----

/// dW_ih, dW_hh and the biases' gradients from the loop's gate gradients (K = T*B rows; ws: the cell's record, whose
/// x and h slots the products read):  r and z multiply h_prev with the input side's dG in both variants (one GEMM with
/// dW_ih, weight_gradients); W_hn multiplies h_prev with dGh_n = dn_pre ⊙ r (reset_after) or rh = r ⊙ h_prev with
/// the input side's dn_pre (reset_before).
///   dGx [T*B, 3H];  dGh_n [T*B, H] (reset_after) or unused;  db_ih [3H]: Σ_rows dGx, already summed;
///   dw_ih [3H, I], dw_hh [3H, H], db_hh [3H] out.
template <typename T, typename GateGrads>
void gru_weight_gradients(const GateGrads& dGx, const T* dGh_n, const Workspace<T>& ws, T* dw_ih, const T* db_ih,
                          T* dw_hh, T* db_hh) {
  const index_t H = ws.dims.H, GH = 3 * H, TB = ws.dims.T * ws.dims.B;
  weight_gradients(dGx, ws, 2 * H, dw_ih, db_ih, dw_hh, db_hh);
  if (ws.spec.reset_after) {
    recurrent_side_gradients<T>(ConstMatrixView<T>(dGh_n, TB, H), states_read(ws), dw_hh + 2 * H * H, db_hh + 2 * H,
                                nullptr);
  } else {
    const ConstStridedView<T> dG_n(dGx.data() + 2 * H, TB, H, Eigen::OuterStride<>(GH));
    const ConstStridedView<T> rh(ws.acts.data() + 3 * H, TB, H, Eigen::OuterStride<>(4 * H));
    recurrent_side_gradients<T>(dG_n, rh, dw_hh + 2 * H * H, db_hh + 2 * H, db_ih + 2 * H);
  }
}

}  // namespace rnncore::detail
