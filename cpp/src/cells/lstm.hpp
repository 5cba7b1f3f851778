// The LSTM cell (equations in rnncore/lstm.hpp): its forward step math and its backward row math side by side, and
// the two policies the shared time loops (time_loops.hpp) run it with.
//   forward:  lstm_unit (a packet of units) < lstm_row (a sample row) < lstm_step (a batch, products included)
//   backward: lstm_backward_row (a sample row's gate gradients)
#pragma once

#include <algorithm>
#include <type_traits>

#include "parallel.hpp"
#include "pointwise.hpp"
#include "linalg/step_product.hpp"
#include "time_loops.hpp"
#include "cell_table.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"

namespace rnncore::detail {

// ---- forward ----

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

// ---- backward ----

/// LSTM, one sample row of one step backward, from the stored activations and the cell states (nothing recomputed
/// but tanh(c_t)):
///   h = o ⊙ tanh(c):  dc = dc_next + dh ⊙ o ⊙ tanh'(c), with tanh' = 1 - tanh² from the output;  do = dh ⊙ tanh(c)
///   c = f ⊙ c_prev + i ⊙ g (product rule):  di = dc ⊙ g, df = dc ⊙ c_prev, dg = dc ⊙ i;  dc_prev = dc ⊙ f
///   pre-activation gradients: σ' = s(1 - s) from the stored σ outputs i, f, o; tanh' = 1 - g² for g.
///   acts [4H]: i, f, g, o;  c_t, c_prev [H];  dy [H] or null: dL/dy_t;
///   dh [H]: dL/dh_t in (plus dy), zeros out (the recurrent product refills it with dL/dh_{t-1});
///   dc [H]: dL/dc_t in, dL/dc_{t-1} out;  dg [4H] out: gradients w.r.t. the pre-activation gates i, f, g, o.
template <typename T>
void lstm_backward_row(const T* acts, const T* c_t, const T* c_prev, const T* dy, T* dh, T* dc, T* dg, index_t H) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    const P i = lanes::load<P>(acts + j), f = lanes::load<P>(acts + H + j), g = lanes::load<P>(acts + 2 * H + j),
            o = lanes::load<P>(acts + 3 * H + j);
    P dh_j = lanes::load<P>(dh + j);
    if (dy) dh_j = ei::padd(dh_j, lanes::load<P>(dy + j));
    const P tanh_c = act::tanh(lanes::load<P>(c_t + j));
    const P dc_j = ei::pmadd(ei::pmul(dh_j, o), act::tanh_grad_from_output(tanh_c), lanes::load<P>(dc + j));
    lanes::store(dg + j, ei::pmul(ei::pmul(dc_j, g), act::sigmoid_grad_from_output(i)));
    lanes::store(dg + H + j, ei::pmul(ei::pmul(dc_j, lanes::load<P>(c_prev + j)), act::sigmoid_grad_from_output(f)));
    lanes::store(dg + 2 * H + j, ei::pmul(ei::pmul(dc_j, i), act::tanh_grad_from_output(g)));
    lanes::store(dg + 3 * H + j, ei::pmul(ei::pmul(dh_j, tanh_c), act::sigmoid_grad_from_output(o)));
    lanes::store(dc + j, ei::pmul(dc_j, f));
    lanes::store(dh + j, act::splat<P>(0));  // refilled by the recurrent product
  });
}

// ---- the policies of the shared time loops ----

/// The LSTM in forward_time_loop: states h and c; one product h · W_hh^T over the four gates.
template <typename T>
struct LstmForward {
  static constexpr int kStates = 2;  // h, c
  const T* w_hh;          ///< [4H, H]
  T* gates;               ///< [T*B, 4H]: x W_ih^T + biases; the activated gates after each step when keep_activations
  index_t B, H;
  bool keep_activations;  ///< training: the workspace keeps the activated gates for backward

  index_t gate_columns() const { return 4 * H; }

  struct ForwardProducts {
    StepProduct<T, true> recurrent;  // h · W_hh^T
    ForwardProducts(const LstmForward& cell, index_t R, index_t steps)
        : recurrent(cell.w_hh, 4 * cell.H, cell.H, R, steps, hidden_unit_gates(CellSpec{CellKind::lstm})) {}
  };

  template <typename Active>
  EIGEN_ALWAYS_INLINE void step(ForwardProducts& p, index_t t, index_t b0, index_t R, T* const (&prev)[2],
                                T* const (&next)[2], Active&& active) const {
    lstm_step(p.recurrent, gates + (t * B + b0) * 4 * H, prev[1], next[1], prev[0], next[0], R, H, keep_activations,
              active);
  }
};

/// The LSTM in backward_time_loop: dh_{t-1} = dG_t · W_hh (OneRecurrentProduct); dc is the cell's own carried
/// gradient.
template <typename T>
struct LstmBackward : OneRecurrentProduct<T> {
  const T* acts;          ///< [T*B, 4H] the forward's activated gates
  StateSlots<const T> c;  ///< the forward's cell states, every slot
  T* dc;                  ///< [B, H] dL/dc_t flowing back, updated in place
  index_t B;

  EIGEN_ALWAYS_INLINE void backward_row(index_t t, index_t b, T* dg, T* dh, const T* dy) const {
    const index_t H = this->H;
    lstm_backward_row(acts + (t * B + b) * 4 * H, c[t + 1] + b * H, c[t] + b * H, dy, dh, dc + b * H, dg, H);
  }
};

}  // namespace rnncore::detail
