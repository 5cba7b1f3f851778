// LSTM forward and backward (equations in rnncore/lstm.hpp): wiring of the cell (cells/lstm.hpp) into the shared
// time loops (time_loops.hpp), between the input GEMM before and the weight-gradient GEMMs after.
#include "rnncore/lstm.hpp"

#include "cells/lstm.hpp"
#include "recurrent_common.hpp"
#include "time_loops.hpp"

namespace rnncore {

using namespace detail;

namespace {
constexpr const CellTraits& kCell = cell_traits(CellKind::lstm);  // its row of the cell table
}  // namespace

template <typename T>
void lstm_forward(const Dims& d, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* b_ih,
                  const T* b_hh, const index_t* lengths, StepView<T> y, T* h_n, T* c_n, Workspace<T>* ws,
                  const index_t* x_index) {
  const KernelScope scope(forward_flops(kCell.gates, d));
  const index_t B = d.B, H = d.H, GH = kCell.gates * H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  // Training keeps the post-activation gates and every state in the workspace; inference uses scratch.
  CachedMatrix<T> scratch_gates;
  RowMatrix<T> scratch_h, scratch_c;
  if (training) {
    begin_workspace(*ws, CellSpec{CellKind::lstm}, d, x, x_index, w_ih, w_hh, b_ih, b_hh, lengths);
  } else {
    scratch_gates.resize(TB, GH);
    scratch_h.resize(2 * B, H);
    scratch_c.resize(2 * B, H);
  }
  T* gates = training ? ws->acts.data() : scratch_gates.data();
  const StateSlots<T> states[] = {{training ? ws->h.data() : scratch_h.data(), B, H, training},
                                  {training ? ws->c.data() : scratch_c.data(), B, H, training}};
  states[0].set_initial(h0);
  states[1].set_initial(c0);

  project_step_inputs(d, x, x_index, w_ih, GH, folded_bias(GH, b_ih, b_hh), MatrixView<T>(gates, TB, GH));
  forward_time_loop(LstmForward<T>{w_hh, gates, B, H, training}, d.T, B, H, lengths, states, y);
  std::copy_n(states[0][d.T], B * H, h_n);
  std::copy_n(states[1][d.T], B * H, c_n);
}

template <typename T>
void lstm_backward(const Workspace<T>& ws, StepView<const T> dy, const T* dh_n, const T* dc_n, T* dh0, T* dc0,
                   GradientOutputs<T>& out) {
  const KernelScope scope(2 * forward_flops(kCell.gates, ws.dims));  // backward ≈ twice the forward
  const Dims& d = ws.dims;
  const index_t B = d.B, H = d.H, GH = kCell.gates * H, TB = d.T * d.B;
  const StepMask mask(ws.lengths.empty() ? nullptr : ws.lengths.data(), B);

  CachedMatrix<T> dG(TB, GH);                               // gradients w.r.t. the pre-activation gates
  RowMatrix<T> dh = initial_state_gradient(dh_n, B, H);     // dL/dh_t flowing back from step t+1
  RowMatrix<T> dc = initial_state_gradient(dc_n, B, H);     // dL/dc_t flowing back from step t+1
  const LstmBackward<T> cell{{ws.w_hh.data(), GH, H}, ws.acts.data(), {ws.c.data(), B, H, true}, dc.data(), B};
  backward_time_loop(cell, ws, mask, dy, dG.data(), dh.data());
  std::copy_n(dh.data(), B * H, dh0);
  std::copy_n(dc.data(), B * H, dc0);
  out.ready();
  input_side_gradients(dG.view(), ws, out.dx, out.db_ih);
  weight_gradients(dG.view(), ws, GH, out.dw_ih, out.db_ih, out.dw_hh, out.db_hh);
}

template void lstm_forward<float>(const Dims&, const float*, const float*, const float*, const float*, const float*,
                                  const float*, const float*, const index_t*, StepView<float>, float*, float*,
                                  Workspace<float>*, const index_t*);
template void lstm_forward<double>(const Dims&, const double*, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const index_t*, StepView<double>,
                                   double*, double*, Workspace<double>*, const index_t*);
template void lstm_backward<float>(const Workspace<float>&, StepView<const float>, const float*, const float*, float*,
                                   float*, GradientOutputs<float>&);
template void lstm_backward<double>(const Workspace<double>&, StepView<const double>, const double*, const double*,
                                    double*, double*, GradientOutputs<double>&);

}  // namespace rnncore
