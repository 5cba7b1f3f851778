// The simple RNN cell (equations in rnncore/rnn.hpp): its forward step math and its backward row math side by side,
// and the two policies the shared time loops (time_loops.hpp) run it with. Its stored activation is the state itself.
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

// ---- backward ----

/// Simple RNN, one sample row of one step backward: h_t = act(pre), so dpre = (dh + dy) ⊙ act'(pre), with act' from
/// the stored output h_t (tanh' = 1 - h², relu' = 1 where h > 0).
///   h_t [H];  dy [H] or null;  dh [H]: dL/dh_t in, zeros out (refilled by the recurrent product);  dpre [H] out.
template <typename T>
EIGEN_ALWAYS_INLINE void rnn_backward_row(const T* h_t, const T* dy, T* dh, T* dpre, index_t H, bool relu) {
  lanes::for_each<T>(H, [&](auto lane, index_t j) {
    using P = decltype(lane);
    P dh_j = lanes::load<P>(dh + j);
    if (dy) dh_j = Eigen::internal::padd(dh_j, lanes::load<P>(dy + j));
    const P y = lanes::load<P>(h_t + j);
    lanes::store(dpre + j, Eigen::internal::pmul(dh_j, relu ? act::relu_grad_from_output(y)
                                                           : act::tanh_grad_from_output(y)));
    lanes::store(dh + j, act::splat<P>(0));  // refilled by the recurrent product
  });
}

// ---- the policies of the shared time loops ----

/// The simple RNN in forward_time_loop: state h; one product h · W_hh^T.
template <typename T>
struct RnnForward {
  static constexpr int kStates = 1;
  const T* w_hh;  ///< [H, H]
  T* pre;         ///< [T*B, H]: x W_ih^T + b_ih + b_hh (the step adds h W_hh^T)
  index_t B, H;
  Nonlinearity nonlinearity;

  index_t gate_columns() const { return H; }

  struct ForwardProducts {
    StepProduct<T, true> recurrent;  // h · W_hh^T
    ForwardProducts(const RnnForward& cell, index_t R, index_t steps)
        : recurrent(cell.w_hh, cell.H, cell.H, R, steps, hidden_unit_gates(CellSpec{CellKind::rnn})) {}
  };

  template <typename Active>
  EIGEN_ALWAYS_INLINE void step(ForwardProducts& p, index_t t, index_t b0, index_t R, T* const (&prev)[1],
                                T* const (&next)[1], Active&& active) const {
    rnn_step(p.recurrent, pre + (t * B + b0) * H, prev[0], next[0], R, H, nonlinearity, active);
  }
};

/// The simple RNN in backward_time_loop: dh_{t-1} = dG_t · W_hh (OneRecurrentProduct).
template <typename T>
struct RnnBackward : OneRecurrentProduct<T> {
  StateSlots<const T> h;  ///< the forward's states, every slot (slot t+1 = the output of step t)
  index_t B;
  bool relu;

  EIGEN_ALWAYS_INLINE void backward_row(index_t t, index_t b, T* dg, T* dh, const T* dy) const {
    const index_t H = this->H;
    rnn_backward_row(h[t + 1] + b * H, dy, dh, dg, H, relu);
  }
};

}  // namespace rnncore::detail
