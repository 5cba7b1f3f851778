// One time step of each cell for one sample row, after the products: the gate math in one place, used by the
// whole-sequence kernels (lstm.cpp, gru.cpp, rnn.cpp) and by the streaming Stepper (stepper.cpp). Each function is one
// fused pass over the row's H units on SIMD packets of every width (pointwise.hpp).
#pragma once

#include "parallel.hpp"
#include "pointwise.hpp"
#include "rnncore/activations.hpp"
#include "step_product.hpp"

namespace rnncore::detail {

/// LSTM. gates [4H]: x W_ih^T + b_ih + h W_hh^T + b_hh (i, f, g, o) on entry; the activated gates on exit when
/// keep_activations (training keeps them for backward). c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t).
///   c_prev [H] in; c_new, h_new [H] out
template <typename T>
void lstm_row(T* gates, const T* c_prev, T* c_new, T* h_new, index_t H, bool keep_activations) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P i = act::sigmoid(lanes::load<P>(gates + j)), f = act::sigmoid(lanes::load<P>(gates + H + j)),
            g = act::tanh(lanes::load<P>(gates + 2 * H + j)), o = act::sigmoid(lanes::load<P>(gates + 3 * H + j));
    const P c_t = ei::pmadd(f, lanes::load<P>(c_prev + j), ei::pmul(i, g));
    lanes::store(c_new + j, c_t);
    lanes::store(h_new + j, ei::pmul(o, act::tanh(c_t)));
    if (keep_activations) {
      lanes::store(gates + j, i);
      lanes::store(gates + H + j, f);
      lanes::store(gates + 2 * H + j, g);
      lanes::store(gates + 3 * H + j, o);
    }
  });
}

/// GRU, first pass: r and z (both variants). With reset_after it finishes the step:
///   hn = h W_hn^T + b_hn,  n = tanh(x W_in^T + b_in + r ⊙ hn),  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1};
/// without, it leaves rh = r ⊙ h_{t-1} for the reset product and gru_row_reset_before finishes.
///   xw [3H]: x W_ih^T + b_ih (+ b_hr, b_hz; + b_hn unless reset_after);  hw [3H]: h W_hh^T, or null when the
///   r and z blocks of xw already include it (reset_before accumulates its product there; reset_after needs hw);
///   h_prev [H];  b_hn [H] or null;  acts [4H] out: r, z, n, hn (reset_after) or r, z, -, rh;  h_new [H] out
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
    r = act::sigmoid(r);
    z = act::sigmoid(z);
    const P hp = lanes::load<P>(h_prev + j);
    lanes::store(acts + j, r);
    lanes::store(acts + H + j, z);
    if (!reset_after) {
      lanes::store(acts + 3 * H + j, ei::pmul(r, hp));  // rh = r ⊙ h_{t-1}, the reset product's input
      return;
    }
    P hn = lanes::load<P>(hw + 2 * H + j);
    if (b_hn) hn = ei::padd(hn, lanes::load<P>(b_hn + j));
    const P n = act::tanh(ei::pmadd(r, hn, lanes::load<P>(xw + 2 * H + j)));
    lanes::store(acts + 3 * H + j, hn);
    lanes::store(acts + 2 * H + j, n);
    lanes::store(h_new + j, ei::pmadd(z, ei::psub(hp, n), n));  // (1 - z) ⊙ n + z ⊙ h_prev
  });
}

/// GRU reset_before, second pass: n = tanh(x W_in^T + b_in + b_hn + (r ⊙ h) W_hn^T), h_t = (1 - z) ⊙ n + z ⊙ h_prev.
///   xn [H]: the n block of xw with the reset product (r ⊙ h) W_hn^T already added;  h_prev [H];
///   acts [4H] (reads z, writes n);  h_new [H] out
template <typename T>
void gru_row_reset_before(const T* xn, const T* h_prev, T* acts, T* h_new, index_t H) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P n = act::tanh(lanes::load<P>(xn + j));
    const P z = lanes::load<P>(acts + H + j);
    lanes::store(acts + 2 * H + j, n);
    lanes::store(h_new + j, ei::pmadd(z, ei::psub(lanes::load<P>(h_prev + j), n), n));
  });
}

/// One GRU step of a batch (B rows), both variants: the recurrent products, then the row passes above.
///   xw_t [B, 3H]: x W_ih^T + folded biases (updated: reset_before adds its products into the r, z, n blocks);
///   hw [B, 3H]: scratch for reset_after's h W_hh^T (unused otherwise);  h_prev [B, H];  b_hn [H] or null;
///   acts [B, 4H] out (see gru_row);  h_new [B, H] out;  active(b): whether row b takes this step.
///   hidden: h · W_hh^T over rows r, z (and n with reset_after);  reset: (r ⊙ h) · W_hn^T (reset_before only).
template <typename T, typename Active>
void gru_step(StepProduct<T, true>& hidden, StepProduct<T, true>& reset, T* xw_t, T* hw, const T* h_prev,
              const T* b_hn, T* acts, T* h_new, index_t B, index_t H, bool reset_after, Active&& active) {
  const index_t GH = 3 * H;
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

/// Simple RNN: h_t = act(pre), pre [H] = x W_ih^T + b_ih + h W_hh^T + b_hh;  h_new [H] out.
template <typename T>
void rnn_row(const T* pre, T* h_new, index_t H, Nonlinearity nonlinearity) {
  const bool relu = nonlinearity == Nonlinearity::relu;
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    const P v = lanes::load<P>(pre + j);
    lanes::store(h_new + j, relu ? act::relu(v) : act::tanh(v));
  });
}

}  // namespace rnncore::detail
