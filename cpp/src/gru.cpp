// GRU forward and backward, both variants (equations in rnncore/gru.hpp): wiring of the cell (cells/gru.hpp, which
// also lists the stored activations) into the shared time loops (time_loops.hpp).
#include "rnncore/gru.hpp"

#include "cells/gru.hpp"
#include "recurrent_common.hpp"
#include "time_loops.hpp"

namespace rnncore {

using namespace detail;

namespace {
constexpr const CellTraits& kCell = cell_traits(CellKind::gru);  // its row of the cell table
}  // namespace

template <typename T>
void gru_forward(const Dims& d, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const index_t* lengths, bool reset_after, StepView<T> y, T* h_n, Workspace<T>* ws,
                  const index_t* x_index) {
  const KernelScope scope(forward_flops(kCell.gates, d));
  const index_t B = d.B, H = d.H, GH = kCell.gates * H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  RowMatrix<T> scratch_acts, scratch_h;
  if (training) {
    begin_workspace(*ws, GruForward<T>::gru_spec(reset_after), d, x, x_index, w_ih, w_hh, b_ih, b_hh, lengths);
  } else {
    scratch_acts.resize(B, kCell.stored_acts * H);  // one step's activations, reused
    scratch_h.resize(2 * B, H);
  }
  const StateSlots<T> states[] = {{training ? ws->h.data() : scratch_h.data(), B, H, training}};
  states[0].set_initial(h0);

  // b_hn stays out of the input GEMM with reset_after (it sits inside r ⊙ (.)); every other bias folds in.
  CachedMatrix<T> xw(TB, GH);
  project_step_inputs(d, x, x_index, w_ih, GH,
                      folded_bias(GH, b_ih, b_hh, reset_after ? 2 * H : 0, reset_after ? 3 * H : 0), xw.view());
  RowMatrix<T> hw(reset_after ? B : 0, GH);  // reset_after's h W_hh^T (see gru_step)
  const T* b_hn = reset_after && b_hh ? b_hh + 2 * H : nullptr;
  const GruForward<T> cell{w_hh, xw.data(), hw.data(), training ? ws->acts.data() : scratch_acts.data(), b_hn,
                           B, H, reset_after, training};
  forward_time_loop(cell, d.T, B, H, lengths, states, y);
  std::copy_n(states[0][d.T], B * H, h_n);
}

template <typename T>
void gru_backward(const Workspace<T>& ws, StepView<const T> dy, const T* dh_n, T* dh0, GradientOutputs<T>& out) {
  const KernelScope scope(2 * forward_flops(kCell.gates, ws.dims));  // backward ≈ twice the forward
  const Dims& d = ws.dims;
  const index_t B = d.B, H = d.H, GH = kCell.gates * H, TB = d.T * d.B;
  const bool reset_after = ws.spec.reset_after;
  const StepMask mask(ws.lengths.empty() ? nullptr : ws.lengths.data(), B);

  // dGx: gradients w.r.t. the input-side pre-activations [x W_ir, x W_iz, x W_in] (+ biases).
  // reset_after: the recurrent side differs in its n block (dGh_n = dn_pre ⊙ r), kept apart in dGh_n;
  // reset_before: both sides share dGx, and W_hn's input is rh instead of h.
  CachedMatrix<T> dGx(TB, GH);
  CachedMatrix<T> dGh_n(reset_after ? TB : 0, H);
  RowMatrix<T> drh(reset_after ? 0 : B, H);  // reset_before: dL/d(r ⊙ h) = dn_pre · W_hn
  RowMatrix<T> dh = initial_state_gradient(dh_n, B, H);
  const GruBackward<T> cell{ws.w_hh.data(), ws.acts.data(), {ws.h.data(), B, H, true},
                            reset_after ? dGh_n.data() : nullptr, reset_after ? nullptr : drh.data(), B, H,
                            reset_after};
  backward_time_loop(cell, ws, mask, dy, dGx.data(), dh.data());
  std::copy_n(dh.data(), B * H, dh0);
  out.ready();
  input_side_gradients(dGx.view(), ws, out.dx, out.db_ih);
  gru_weight_gradients(dGx.view(), dGh_n.data(), ws, out.dw_ih, out.db_ih, out.dw_hh, out.db_hh);
}

template void gru_forward<float>(const Dims&, const float*, const float*, const float*, const float*, const float*,
                                 const float*, const index_t*, bool, StepView<float>, float*, Workspace<float>*,
                                 const index_t*);
template void gru_forward<double>(const Dims&, const double*, const double*, const double*, const double*,
                                  const double*, const double*, const index_t*, bool, StepView<double>, double*,
                                  Workspace<double>*, const index_t*);
template void gru_backward<float>(const Workspace<float>&, StepView<const float>, const float*, float*,
                                  GradientOutputs<float>&);
template void gru_backward<double>(const Workspace<double>&, StepView<const double>, const double*, double*,
                                   GradientOutputs<double>&);

}  // namespace rnncore
