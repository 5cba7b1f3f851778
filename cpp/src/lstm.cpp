// LSTM forward and backward (equations in rnncore/lstm.hpp). Kernel shape (design.md §3): one input GEMM for all
// steps, then per step one recurrent GEMM and one pointwise pass per sample row; weight gradients as GEMMs after the
// backward loop.
#include "rnncore/lstm.hpp"

#include "recurrent_common.hpp"
#include "parallel.hpp"
#include "cell_math.hpp"
#include "pointwise.hpp"
#include "linalg/step_product.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
void lstm_forward(const Dims& d, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* b_ih,
                  const T* b_hh, const index_t* lengths, T* y, T* h_n, T* c_n, Workspace<T>* ws) {
  const KernelScope scope(forward_flops(4, d));
  const index_t B = d.B, H = d.H, GH = 4 * H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  // Training keeps the post-activation gates and every state in the workspace; inference uses scratch.
  CachedMatrix<T> scratch_gates;
  RowMatrix<T> scratch_h, scratch_c;
  if (training) {
    begin_workspace(*ws, CellSpec{CellKind::lstm}, d, x, w_ih, w_hh, b_ih, b_hh, lengths, true, GH);
  } else {
    scratch_gates.resize(TB, GH);
    scratch_h.resize(2 * B, H);
    scratch_c.resize(2 * B, H);
  }
  T* gates = training ? ws->acts.data() : scratch_gates.data();
  const StateSlots<T> h(training ? ws->h.data() : scratch_h.data(), B, H, training);
  const StateSlots<T> c(training ? ws->c.data() : scratch_c.data(), B, H, training);
  h.set_initial(h0);
  c.set_initial(c0);

  project_inputs(ConstMatrixView<T>(x, TB, d.I), ConstMatrixView<T>(w_ih, GH, d.I), folded_bias(GH, b_ih, b_hh),
                 MatrixView<T>(gates, TB, GH));

  for_row_blocks(B, double(sizeof(T)) * GH * H, [&](index_t b0, index_t b1) {  // rows [b0, b1): R of them
    const index_t R = b1 - b0;
    const StepMask rows(lengths ? lengths + b0 : nullptr, R);
    StepProduct<T, true> recurrent(w_hh, GH, H, R, d.T, hidden_unit_gates(CellKind::lstm, false));  // h · W_hh^T
    for (index_t t = 0; t < d.T; ++t) {
      T *h_prev = h[t] + b0 * H, *h_new = h[t + 1] + b0 * H, *c_prev = c[t] + b0 * H, *c_new = c[t + 1] + b0 * H;
      lstm_step(recurrent, gates + (t * B + b0) * GH, c_prev, c_new, h_prev, h_new, R, H, training,
                [&](index_t r) { return rows.active(r, t); });
      carry_padded_state(rows, t, R, H, h_prev, h_new);
      carry_padded_state(rows, t, R, H, c_prev, c_new);
      write_step_output(rows, t, R, H, h_new, y + (t * B + b0) * H);
    }
  });
  std::copy_n(h[d.T], B * H, h_n);
  std::copy_n(c[d.T], B * H, c_n);
}

template <typename T>
void lstm_backward(const Workspace<T>& ws, const T* dy, const T* dh_n, const T* dc_n, T* dh0, T* dc0,
                   GradientOutputs<T>& out) {
  const KernelScope scope(2 * forward_flops(4, ws.dims));  // backward ≈ twice the forward
  const Dims& d = ws.dims;
  const index_t B = d.B, H = d.H, GH = 4 * H, TB = d.T * d.B;
  const StepMask mask(ws.lengths.empty() ? nullptr : ws.lengths.data(), B);
  const StateSlots<const T> c(ws.c.data(), B, H, true);

  CachedMatrix<T> dG(TB, GH);                               // gradients w.r.t. the pre-activation gates
  RowMatrix<T> dh = initial_state_gradient(dh_n, B, H);     // dL/dh_t flowing back from step t+1
  RowMatrix<T> dc = initial_state_gradient(dc_n, B, H);     // dL/dc_t flowing back from step t+1

  backward_time_loop(ws, mask, GH, dG.data(), dh.data(), [&](index_t t, index_t b, T* drow) {
    // One pass over the row. With the stored activations i, f, g, o and tanh(c_t) recomputed:
    //   h = o ⊙ tanh(c):  dc += dh ⊙ o ⊙ tanh'(c) (tanh' = 1 - tanh²);  do = dh ⊙ tanh(c)
    //   c = f ⊙ c_prev + i ⊙ g:  di = dc ⊙ g, df = dc ⊙ c_prev, dg = dc ⊙ i, dc_prev = dc ⊙ f
    //   pre-activation gradients: σ' for i, f, o and tanh' for g, from the stored outputs.
    const T* a = ws.acts.data() + (t * B + b) * GH;
    const T *c_t = c[t + 1] + b * H, *c_prev = c[t] + b * H, *dy_b = dy ? dy + (t * B + b) * H : nullptr;
    T *dh_b = dh.data() + b * H, *dc_b = dc.data() + b * H;
    lanes::for_each<T>(H, [&](auto lane, index_t j) {
      using P = decltype(lane);
      namespace ei = Eigen::internal;
      const P i = lanes::load<P>(a + j), f = lanes::load<P>(a + H + j), g = lanes::load<P>(a + 2 * H + j),
              o = lanes::load<P>(a + 3 * H + j);
      P dh_j = lanes::load<P>(dh_b + j);
      if (dy_b) dh_j = ei::padd(dh_j, lanes::load<P>(dy_b + j));
      const P tanh_c = act::tanh(lanes::load<P>(c_t + j));
      const P dc_j = ei::pmadd(ei::pmul(dh_j, o), act::tanh_grad_from_output(tanh_c), lanes::load<P>(dc_b + j));
      lanes::store(drow + j, ei::pmul(ei::pmul(dc_j, g), act::sigmoid_grad_from_output(i)));
      lanes::store(drow + H + j,
                   ei::pmul(ei::pmul(dc_j, lanes::load<P>(c_prev + j)), act::sigmoid_grad_from_output(f)));
      lanes::store(drow + 2 * H + j, ei::pmul(ei::pmul(dc_j, i), act::tanh_grad_from_output(g)));
      lanes::store(drow + 3 * H + j, ei::pmul(ei::pmul(dh_j, tanh_c), act::sigmoid_grad_from_output(o)));
      lanes::store(dc_b + j, ei::pmul(dc_j, f));
      lanes::store(dh_b + j, act::splat<P>(0));  // refilled by the recurrent product
    });
  });
  std::copy_n(dh.data(), B * H, dh0);
  std::copy_n(dc.data(), B * H, dc0);
  out.ready();
  input_side_gradients(dG.view(), ws, out.dx, out.db_ih);
  weight_gradients(dG.view(), ws, GH, out.dw_ih, out.db_ih, out.dw_hh, out.db_hh);
}

template void lstm_forward<float>(const Dims&, const float*, const float*, const float*, const float*, const float*,
                                  const float*, const float*, const index_t*, float*, float*, float*,
                                  Workspace<float>*);
template void lstm_forward<double>(const Dims&, const double*, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const index_t*, double*, double*,
                                   double*, Workspace<double>*);
template void lstm_backward<float>(const Workspace<float>&, const float*, const float*, const float*, float*, float*,
                                   GradientOutputs<float>&);
template void lstm_backward<double>(const Workspace<double>&, const double*, const double*, const double*, double*,
                                    double*, GradientOutputs<double>&);

}  // namespace rnncore
