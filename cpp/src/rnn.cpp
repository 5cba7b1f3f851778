// Simple RNN forward and backward (equations in rnncore/rnn.hpp). Same kernel shape as the gated cells; the stored
// activation is the state itself, so the workspace keeps no per-step gates.
#include "rnncore/rnn.hpp"

#include "recurrent_common.hpp"
#include "parallel.hpp"
#include "cell_math.hpp"
#include "pointwise.hpp"
#include "linalg/step_product.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
void rnn_forward(const Dims& d, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const index_t* lengths, Nonlinearity nonlinearity, T* y, T* h_n, Workspace<T>* ws) {
  const KernelScope scope(forward_flops(1, d));
  const index_t B = d.B, H = d.H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  RowMatrix<T> scratch_h;
  if (training) {
    CellSpec spec{CellKind::rnn};
    spec.nonlinearity = nonlinearity;
    begin_workspace(*ws, spec, d, x, w_ih, w_hh, b_ih, b_hh, lengths, false, 0);
  } else {
    scratch_h.resize(2 * B, H);
  }
  const StateSlots<T> h(training ? ws->h.data() : scratch_h.data(), B, H, training);
  h.set_initial(h0);

  CachedMatrix<T> pre(TB, H);  // pre-activations x W_ih^T + b_ih + b_hh (rnn_step adds h W_hh^T)
  project_inputs(ConstMatrixView<T>(x, TB, d.I), ConstMatrixView<T>(w_ih, H, d.I), folded_bias(H, b_ih, b_hh),
                 pre.view());

  for_row_blocks(B, double(sizeof(T)) * H * H, [&](index_t b0, index_t b1) {  // rows [b0, b1): R of them
    const index_t R = b1 - b0;
    const StepMask rows(lengths ? lengths + b0 : nullptr, R);
    StepProduct<T, true> recurrent(w_hh, H, H, R, d.T, hidden_unit_gates(CellKind::rnn, false));  // h · W_hh^T
    for (index_t t = 0; t < d.T; ++t) {
      T *h_prev = h[t] + b0 * H, *h_new = h[t + 1] + b0 * H;
      rnn_step(recurrent, pre.data() + (t * B + b0) * H, h_prev, h_new, R, H, nonlinearity,
               [&](index_t r) { return rows.active(r, t); });
      carry_padded_state(rows, t, R, H, h_prev, h_new);
      write_step_output(rows, t, R, H, h_new, y + (t * B + b0) * H);
    }
  });
  std::copy_n(h[d.T], B * H, h_n);
}

template <typename T>
void rnn_backward(const Workspace<T>& ws, const T* dy, const T* dh_n, T* dh0, GradientOutputs<T>& out) {
  const KernelScope scope(2 * forward_flops(1, ws.dims));  // backward ≈ twice the forward
  const Dims& d = ws.dims;
  const index_t B = d.B, H = d.H, TB = d.T * d.B;
  const StepMask mask(ws.lengths.empty() ? nullptr : ws.lengths.data(), B);
  const StateSlots<const T> h(ws.h.data(), B, H, true);
  const bool relu = ws.spec.nonlinearity == Nonlinearity::relu;

  CachedMatrix<T> dG(TB, H);  // gradients w.r.t. the pre-activations
  RowMatrix<T> dh = initial_state_gradient(dh_n, B, H);
  backward_time_loop(ws, mask, H, dG.data(), dh.data(), [&](index_t t, index_t b, T* dpre) {
    const T *h_t = h[t + 1] + b * H, *dy_b = dy ? dy + (t * B + b) * H : nullptr;
    T* dh_b = dh.data() + b * H;
    lanes::for_each<T>(H, [&](auto lane, index_t j) {  // dpre = dh ⊙ act'(pre), from the stored output h_t
      using P = decltype(lane);
      P dh_j = lanes::load<P>(dh_b + j);
      if (dy_b) dh_j = Eigen::internal::padd(dh_j, lanes::load<P>(dy_b + j));
      const P y = lanes::load<P>(h_t + j);
      lanes::store(dpre + j, Eigen::internal::pmul(dh_j, relu ? act::relu_grad_from_output(y)
                                                             : act::tanh_grad_from_output(y)));
      lanes::store(dh_b + j, act::splat<P>(0));  // refilled by the recurrent product
    });
  });
  std::copy_n(dh.data(), B * H, dh0);
  out.ready();
  input_side_gradients(dG.view(), ws, out.dx, out.db_ih);
  weight_gradients(dG.view(), ws, H, out.dw_ih, out.db_ih, out.dw_hh, out.db_hh);
}

template void rnn_forward<float>(const Dims&, const float*, const float*, const float*, const float*, const float*,
                                 const float*, const index_t*, Nonlinearity, float*, float*, Workspace<float>*);
template void rnn_forward<double>(const Dims&, const double*, const double*, const double*, const double*,
                                  const double*, const double*, const index_t*, Nonlinearity, double*, double*,
                                  Workspace<double>*);
template void rnn_backward<float>(const Workspace<float>&, const float*, const float*, float*, GradientOutputs<float>&);
template void rnn_backward<double>(const Workspace<double>&, const double*, const double*, double*,
                                   GradientOutputs<double>&);

}  // namespace rnncore
