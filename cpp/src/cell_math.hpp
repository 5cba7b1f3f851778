// One time step of each cell: the gate math in one place, used by the whole-sequence kernels (lstm.cpp, gru.cpp,
// rnn.cpp) and by the streaming Stepper (stepper.cpp).
// - *_unit: the update of one packet of units (j … j+|P|-1) from its pre-activations;
// - *_row: one fused pass over a sample row's H units after the products, on SIMD packets of every width
//   (pointwise.hpp);
// - *_step: a batch's step, products included. With one row of float the recurrent product is packed by units
//   (StepProduct::fused()) and each unit's update runs on the product's registers as soon as its gates are summed.
#pragma once

#include "parallel.hpp"
#include "pointwise.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"
#include "linalg/step_product.hpp"

namespace rnncore::detail {

/// The gates of one unit in a cell's hidden product h · W_hh^T, for StepProduct's unit_gates (the *_step functions
/// below take the product unit by unit): LSTM i, f, g, o; GRU r, z and, with reset_after, n; simple RNN one.
inline index_t hidden_unit_gates(CellKind kind, bool reset_after) {
  switch (kind) {
    case CellKind::lstm: return 4;
    case CellKind::gru: return reset_after ? 3 : 2;
    case CellKind::rnn: return 1;
  }
  return 0;
}

/// The gates of one unit in GRU reset_before's second product, (r ⊙ h) · W_hn^T: n alone.
constexpr index_t kGruResetUnitGates = 1;

/// LSTM, the units j … j+|P|-1 from their pre-activation gates (i, f, g, o):
///   c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),  h_t = σ(o) ⊙ tanh(c_t).
/// c_prev [H] in; c_new, h_new [H] out; acts [4H]: the activated gates, stored when keep_activations.
template <typename P, typename T>
EIGEN_ALWAYS_INLINE void lstm_unit(const P& pre_i, const P& pre_f, const P& pre_g, const P& pre_o, index_t j,
                                   const T* c_prev, T* c_new, T* h_new, T* acts, index_t H, bool keep_activations) {
  namespace ei = Eigen::internal;
  const P i = act::sigmoid(pre_i), f = act::sigmoid(pre_f), g = act::tanh(pre_g), o = act::sigmoid(pre_o);
  const P c_t = ei::pmadd(f, lanes::load<P>(c_prev + j), ei::pmul(i, g));
  lanes::store(c_new + j, c_t);
  lanes::store(h_new + j, ei::pmul(o, act::tanh(c_t)));
  if (keep_activations) {
    lanes::store(acts + j, i);
    lanes::store(acts + H + j, f);
    lanes::store(acts + 2 * H + j, g);
    lanes::store(acts + 3 * H + j, o);
  }
}

/// LSTM, one row. gates [4H]: x W_ih^T + b_ih + h W_hh^T + b_hh (i, f, g, o) on entry; the activated gates on exit
/// when keep_activations (training keeps them for backward).  c_prev [H] in; c_new, h_new [H] out
template <typename T>
void lstm_row(T* gates, const T* c_prev, T* c_new, T* h_new, index_t H, bool keep_activations) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    lstm_unit(lanes::load<P>(gates + j), lanes::load<P>(gates + H + j), lanes::load<P>(gates + 2 * H + j),
              lanes::load<P>(gates + 3 * H + j), j, c_prev, c_new, h_new, gates, H, keep_activations);
  });
}

/// LSTM, one step of a batch (B rows).  hidden: h · W_hh^T (built with hidden_unit_gates);
///   gates [B, 4H]: x W_ih^T + biases on entry; on exit the activated gates when keep_activations, else scratch;
///   c_prev, h_prev [B, H] in;  c_new, h_new [B, H] out;
///   active(b): whether row b takes this step (the others are left to the caller).
template <typename T, typename Active>
void lstm_step(StepProduct<T, true>& hidden, T* gates, const T* c_prev, T* c_new, const T* h_prev, T* h_new,
               index_t B, index_t H, bool keep_activations, Active&& active) {
  const index_t GH = 4 * H;
  if (hidden.fused()) {  // B = 1
    if (!active(0)) return;
    hidden.for_each_unit(h_prev, [&](index_t j, const auto* sums) {
      using P = std::decay_t<decltype(*sums)>;
      namespace ei = Eigen::internal;
      auto pre = [&](int g) { return ei::padd(lanes::load<P>(gates + g * H + j), sums[g]); };
      lstm_unit(pre(0), pre(1), pre(2), pre(3), j, c_prev, c_new, h_new, gates, H, keep_activations);
    });
    return;
  }
  hidden.accumulate(h_prev, H, gates, GH);
  for_each_row(B, GH, [&](index_t b) {
    if (active(b))
      lstm_row(gates + b * GH, c_prev + b * H, c_new + b * H, h_new + b * H, H, keep_activations);
  });
}

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
///   hidden: h · W_hh^T over rows r, z (and n with reset_after), built with hidden_unit_gates;
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

/// Simple RNN, the units j … j+|P|-1: h_t = act(pre).  h_new [H] out
template <typename P, typename T>
EIGEN_ALWAYS_INLINE void rnn_unit(const P& pre, index_t j, T* h_new, Nonlinearity nonlinearity) {
  lanes::store(h_new + j, nonlinearity == Nonlinearity::relu ? act::relu(pre) : act::tanh(pre));
}

/// Simple RNN, one row: pre [H] = x W_ih^T + b_ih + h W_hh^T + b_hh;  h_new [H] out.
template <typename T>
void rnn_row(const T* pre, T* h_new, index_t H, Nonlinearity nonlinearity) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    rnn_unit(lanes::load<P>(pre + j), j, h_new, nonlinearity);
  });
}

/// Simple RNN, one step of a batch (B rows).  hidden: h · W_hh^T (built with hidden_unit_gates);
///   pre [B, H]: x W_ih^T + biases on entry (+ h W_hh^T on exit unless fused);  h_prev [B, H] in;  h_new [B, H] out;
///   active(b) as lstm_step.
template <typename T, typename Active>
void rnn_step(StepProduct<T, true>& hidden, T* pre, const T* h_prev, T* h_new, index_t B, index_t H,
              Nonlinearity nonlinearity, Active&& active) {
  if (hidden.fused()) {  // B = 1
    if (!active(0)) return;
    hidden.for_each_unit(h_prev, [&](index_t j, const auto* sums) {
      using P = std::decay_t<decltype(*sums)>;
      rnn_unit(Eigen::internal::padd(lanes::load<P>(pre + j), sums[0]), j, h_new, nonlinearity);
    });
    return;
  }
  hidden.accumulate(h_prev, H, pre, H);
  for_each_row(B, H, [&](index_t b) {
    if (active(b)) rnn_row(pre + b * H, h_new + b * H, H, nonlinearity);
  });
}

}  // namespace rnncore::detail
