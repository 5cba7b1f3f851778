// One time step of each cell for one sample row, after the products: the gate math in one place, used by the
// whole-sequence kernels (lstm.cpp, gru.cpp, rnn.cpp) and by the streaming Stepper (stepper.cpp). Each function is one
// fused pass over the row's H units on SIMD packets of every width (pointwise.hpp).
#pragma once

#include "pointwise.hpp"
#include "rnncore/activations.hpp"

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
///   xw [3H]: x W_ih^T + b_ih (+ b_hr, b_hz; + b_hn unless reset_after);  hw [≥2H, 3H with reset_after]: h W_hh^T
///   h_prev [H];  b_hn [H] or null;  acts [4H] out: r, z, n, hn (reset_after) or r, z, -, rh;  h_new [H] out
template <typename T>
void gru_row(const T* xw, const T* hw, const T* h_prev, const T* b_hn, T* acts, T* h_new, index_t H,
             bool reset_after) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P r = act::sigmoid(ei::padd(lanes::load<P>(xw + j), lanes::load<P>(hw + j)));
    const P z = act::sigmoid(ei::padd(lanes::load<P>(xw + H + j), lanes::load<P>(hw + H + j)));
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
///   xn [H]: the n block of xw;  rhw [H]: (r ⊙ h) W_hn^T;  h_prev [H];  acts [4H] (reads z, writes n);  h_new [H] out
template <typename T>
void gru_row_reset_before(const T* xn, const T* rhw, const T* h_prev, T* acts, T* h_new, index_t H) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P n = act::tanh(ei::padd(lanes::load<P>(xn + j), lanes::load<P>(rhw + j)));
    const P z = lanes::load<P>(acts + H + j);
    lanes::store(acts + 2 * H + j, n);
    lanes::store(h_new + j, ei::pmadd(z, ei::psub(lanes::load<P>(h_prev + j), n), n));
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
