// Simple RNN forward and backward (equations in rnncore/rnn.hpp): wiring of the cell (cells/rnn.hpp) into the shared
// time loops (time_loops.hpp). The stored activation is the state itself, so the workspace keeps no per-step gates.
#include "rnncore/rnn.hpp"

#include "cells/rnn.hpp"
#include "recurrent_common.hpp"
#include "time_loops.hpp"

namespace rnncore {

using namespace detail;

namespace {
constexpr const CellTraits& kCell = cell_traits(CellKind::rnn);  // its row of the cell table
}  // namespace

template <typename T>
void rnn_forward(const Dims& d, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const index_t* lengths, Nonlinearity nonlinearity, StepView<T> y, T* h_n, Workspace<T>* ws,
                  const index_t* x_index) {
  const KernelScope scope(forward_flops(kCell.gates, d));
  const index_t B = d.B, H = d.H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  RowMatrix<T> scratch_h;
  if (training) {
    CellSpec spec{CellKind::rnn};
    spec.nonlinearity = nonlinearity;
    begin_workspace(*ws, spec, d, x, x_index, w_ih, w_hh, b_ih, b_hh, lengths);
  } else {
    scratch_h.resize(2 * B, H);
  }
  const StateSlots<T> states[] = {{training ? ws->h.data() : scratch_h.data(), B, H, training}};
  states[0].set_initial(h0);

  CachedMatrix<T> pre(TB, H);  // pre-activations x W_ih^T + b_ih + b_hh (rnn_step adds h W_hh^T)
  project_step_inputs(d, x, x_index, w_ih, H, folded_bias(H, b_ih, b_hh), pre.view());
  forward_time_loop(RnnForward<T>{w_hh, pre.data(), B, H, nonlinearity}, d.T, B, H, lengths, states, y);
  std::copy_n(states[0][d.T], B * H, h_n);
}

template <typename T>
void rnn_backward(const Workspace<T>& ws, StepView<const T> dy, const T* dh_n, T* dh0, GradientOutputs<T>& out) {
  const KernelScope scope(2 * forward_flops(kCell.gates, ws.dims));  // backward ≈ twice the forward
  const Dims& d = ws.dims;
  const index_t B = d.B, H = d.H, TB = d.T * d.B;
  const StepMask mask(ws.lengths.empty() ? nullptr : ws.lengths.data(), B);

  CachedMatrix<T> dG(TB, H);  // gradients w.r.t. the pre-activations
  RowMatrix<T> dh = initial_state_gradient(dh_n, B, H);
  const RnnBackward<T> cell{{ws.w_hh.data(), H, H}, {ws.h.data(), B, H, true}, B,
                            ws.spec.nonlinearity == Nonlinearity::relu};
  backward_time_loop(cell, ws, mask, dy, dG.data(), dh.data());
  std::copy_n(dh.data(), B * H, dh0);
  out.ready();
  input_side_gradients(dG.view(), ws, out.dx, out.db_ih);
  weight_gradients(dG.view(), ws, H, out.dw_ih, out.db_ih, out.dw_hh, out.db_hh);
}

template void rnn_forward<float>(const Dims&, const float*, const float*, const float*, const float*, const float*,
                                 const float*, const index_t*, Nonlinearity, StepView<float>, float*, Workspace<float>*,
                                 const index_t*);
template void rnn_forward<double>(const Dims&, const double*, const double*, const double*, const double*,
                                  const double*, const double*, const index_t*, Nonlinearity, StepView<double>, double*,
                                  Workspace<double>*, const index_t*);
template void rnn_backward<float>(const Workspace<float>&, StepView<const float>, const float*, float*,
                                  GradientOutputs<float>&);
template void rnn_backward<double>(const Workspace<double>&, StepView<const double>, const double*, double*,
                                   GradientOutputs<double>&);

}  // namespace rnncore
