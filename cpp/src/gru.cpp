// GRU forward and backward, both variants (equations in rnncore/gru.hpp). Kernel shape (design.md §3): one input
// GEMM for all steps, then per step the recurrent GEMM(s) and a pointwise pass per sample row; weight gradients as
// GEMMs after the backward loop.
//
// Stored activations per step and sample row (Workspace::acts, [T*B, 4H]):
//   reset_after = true:  r, z, n, hn = h_{t-1} W_hn^T + b_hn   (what r multiplied)
//   reset_after = false: r, z, n, rh = r ⊙ h_{t-1}             (what W_hn multiplied)
#include "rnncore/gru.hpp"

#include "recurrent_common.hpp"
#include "parallel.hpp"
#include "cell_math.hpp"
#include "pointwise.hpp"
#include "linalg/step_product.hpp"

namespace rnncore {

using namespace detail;

namespace {

/// The pieces of one stored activation row [4H].
template <typename Ptr>
struct GruRow {
  Ptr r, z, n, fourth;
  GruRow(Ptr row, index_t H) : r(row), z(row + H), n(row + 2 * H), fourth(row + 3 * H) {}
};

}  // namespace

template <typename T>
void gru_forward(const Dims& d, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const index_t* lengths, bool reset_after, T* y, T* h_n, Workspace<T>* ws) {
  const KernelScope scope(forward_flops(3, d));
  const index_t B = d.B, H = d.H, GH = 3 * H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  RowMatrix<T> scratch_acts, scratch_h;
  if (training) {
    CellSpec spec{CellKind::gru};
    spec.reset_after = reset_after;
    begin_workspace(*ws, spec, d, x, w_ih, w_hh, b_ih, b_hh, lengths, false, 4 * H);
  } else {
    scratch_acts.resize(B, 4 * H);  // one step's activations, reused
    scratch_h.resize(2 * B, H);
  }
  const StateSlots<T> h(training ? ws->h.data() : scratch_h.data(), B, H, training);
  h.set_initial(h0);
  auto acts_at = [&](index_t t) { return training ? ws->acts.data() + t * B * 4 * H : scratch_acts.data(); };

  // b_hn stays out of the input GEMM with reset_after (it sits inside r ⊙ (.)); every other bias folds in.
  CachedMatrix<T> xw(TB, GH);
  project_inputs(ConstMatrixView<T>(x, TB, d.I), ConstMatrixView<T>(w_ih, GH, d.I),
                 folded_bias(GH, b_ih, b_hh, reset_after ? 2 * H : 0, reset_after ? 3 * H : 0), xw.view());
  RowMatrix<T> hw(reset_after ? B : 0, GH);  // reset_after's h W_hh^T (see gru_step)
  const T* b_hn = reset_after && b_hh ? b_hh + 2 * H : nullptr;

  for_row_blocks(B, double(sizeof(T)) * GH * H, [&](index_t b0, index_t b1) {  // rows [b0, b1): R of them
    const index_t R = b1 - b0;
    const StepMask rows(lengths ? lengths + b0 : nullptr, R);
    // h_{t-1} · W_hh^T (r, z[, n]) and (r ⊙ h_{t-1}) · W_hn^T, for gru_step
    StepProduct<T, true> hidden_product(w_hh, reset_after ? GH : 2 * H, H, R, d.T,
                                        hidden_unit_gates(CellKind::gru, reset_after));
    StepProduct<T, true> reset_product(w_hh + 2 * H * H, reset_after ? 0 : H, H, R, d.T, kGruResetUnitGates);
    T* hw_rows = reset_after ? hw.data() + b0 * GH : nullptr;
    for (index_t t = 0; t < d.T; ++t) {
      T *h_prev = h[t] + b0 * H, *h_new = h[t + 1] + b0 * H;
      gru_step(hidden_product, reset_product, xw.data() + (t * B + b0) * GH, hw_rows, h_prev, b_hn,
               acts_at(t) + b0 * 4 * H, h_new, R, H, reset_after, [&](index_t r) { return rows.active(r, t); });
      carry_padded_state(rows, t, R, H, h_prev, h_new);
      write_step_output(rows, t, R, H, h_new, y + (t * B + b0) * H);
    }
  });
  std::copy_n(h[d.T], B * H, h_n);
}

template <typename T>
void gru_backward(const Workspace<T>& ws, const T* dy, const T* dh_n, T* dh0, GradientOutputs<T>& out) {
  const KernelScope scope(2 * forward_flops(3, ws.dims));  // backward ≈ twice the forward
  const Dims& d = ws.dims;
  const index_t B = d.B, H = d.H, GH = 3 * H, TB = d.T * d.B;
  const bool reset_after = ws.spec.reset_after;
  const StepMask mask(ws.lengths.empty() ? nullptr : ws.lengths.data(), B);
  const StateSlots<const T> h(ws.h.data(), B, H, true);

  // dGx: gradients w.r.t. the input-side pre-activations [x W_ir, x W_iz, x W_in] (+ biases).
  // reset_after: the recurrent side differs in its n block (dGh_n = dn_pre ⊙ r), kept apart in dGh_n;
  // reset_before: both sides share dGx, and W_hn's input is rh instead of h.
  CachedMatrix<T> dGx(TB, GH);
  CachedMatrix<T> dGh_n(reset_after ? TB : 0, H);
  RowMatrix<T> drh(reset_after ? 0 : B, H);  // reset_before: dL/d(r ⊙ h) = dn_pre · W_hn
  RowMatrix<T> dh = initial_state_gradient(dh_n, B, H);

  for_row_blocks(B, double(sizeof(T)) * GH * H, [&](index_t b0, index_t b1) {  // rows [b0, b1): R of them
    const index_t R = b1 - b0;
    StepProduct<T, false> rz_product(ws.w_hh.data(), 2 * H, H, R);         // [dr, dz] · [W_hr; W_hz]
    StepProduct<T, false> n_product(ws.w_hh.data() + 2 * H * H, H, H, R);  // (dn-side) · W_hn
    for (index_t t = d.T - 1; t >= 0; --t) {
      T* dg_t = dGx.data() + t * B * GH;
      for_each_row(R, GH, [&](index_t row) {
        const index_t b = b0 + row;
        T* drow = dg_t + b * GH;
        if (!mask.active(b, t)) {  // padded: no gradient to the gates, dh passes through unchanged
          std::fill(drow, drow + GH, T(0));
          if (reset_after) std::fill(dGh_n.data() + (t * B + b) * H, dGh_n.data() + (t * B + b + 1) * H, T(0));
          return;
        }
        // h = (1 - z) ⊙ n + z ⊙ h_prev:  dn = dh ⊙ (1 - z), dz = dh ⊙ (h_prev - n), direct dh_prev = dh ⊙ z;
        // reset_after, n = tanh(xn + r ⊙ hn):  dr = dn_pre ⊙ hn, d(hn) = dn_pre ⊙ r (the recurrent side's n block).
        GruRow<const T*> a(ws.acts.data() + (t * B + b) * 4 * H, H);
        const T *h_prev = h[t] + b * H, *dy_b = dy ? dy + (t * B + b) * H : nullptr;
        T *dh_b = dh.data() + b * H, *dgh_n = reset_after ? dGh_n.data() + (t * B + b) * H : nullptr;
        lanes::for_each<T>(H, [&](auto lane, index_t j) {
          using P = decltype(lane);
          namespace ei = Eigen::internal;
          const P r = lanes::load<P>(a.r + j), z = lanes::load<P>(a.z + j), n = lanes::load<P>(a.n + j);
          P dh_j = lanes::load<P>(dh_b + j);
          if (dy_b) dh_j = ei::padd(dh_j, lanes::load<P>(dy_b + j));
          const P dn_pre = ei::pmul(ei::pmul(dh_j, ei::psub(act::splat<P>(1), z)), act::tanh_grad_from_output(n));
          lanes::store(drow + 2 * H + j, dn_pre);
          lanes::store(drow + H + j, ei::pmul(ei::pmul(dh_j, ei::psub(lanes::load<P>(h_prev + j), n)),
                                              act::sigmoid_grad_from_output(z)));
          if (reset_after) {
            lanes::store(drow + j, ei::pmul(ei::pmul(dn_pre, lanes::load<P>(a.fourth + j)),
                                            act::sigmoid_grad_from_output(r)));
            lanes::store(dgh_n + j, ei::pmul(dn_pre, r));
          }
          lanes::store(dh_b + j, ei::pmul(dh_j, z));
        });
      });
      if (reset_after) {
        // dh_{t-1} += [dr, dz, dn ⊙ r] · W_hh
        rz_product.accumulate(dg_t + b0 * GH, GH, dh.data() + b0 * H, H);
        n_product.accumulate(dGh_n.data() + (t * B + b0) * H, H, dh.data() + b0 * H, H);
      } else {
        // n = tanh(xn + (r ⊙ h_prev) W_hn^T):  d(rh) = dn_pre · W_hn;  dr = d(rh) ⊙ h_prev;  dh_prev += d(rh) ⊙ r
        std::fill(drh.data() + b0 * H, drh.data() + b1 * H, T(0));
        n_product.accumulate(dg_t + b0 * GH + 2 * H, GH, drh.data() + b0 * H, H);
        for_each_row(R, H, [&](index_t row) {
          const index_t b = b0 + row;
          if (!mask.active(b, t)) return;
          const T *r = ws.acts.data() + (t * B + b) * 4 * H, *drh_b = drh.data() + b * H, *h_prev = h[t] + b * H;
          T *dr_pre = dg_t + b * GH, *dh_b = dh.data() + b * H;
          lanes::for_each<T>(H, [&](auto lane, index_t j) {
            using P = decltype(lane);
            namespace ei = Eigen::internal;
            const P r_j = lanes::load<P>(r + j), drh_j = lanes::load<P>(drh_b + j);
            lanes::store(dr_pre + j,
                         ei::pmul(ei::pmul(drh_j, lanes::load<P>(h_prev + j)), act::sigmoid_grad_from_output(r_j)));
            lanes::store(dh_b + j, ei::pmadd(drh_j, r_j, lanes::load<P>(dh_b + j)));
          });
        });
        rz_product.accumulate(dg_t + b0 * GH, GH, dh.data() + b0 * H, H);
      }
    }
  });
  std::copy_n(dh.data(), B * H, dh0);
  out.ready();
  T *dw_hh = out.dw_hh, *db_hh = out.db_hh;
  input_side_gradients(dGx.view(), ws, out.dx, out.db_ih);
  // Recurrent side, per block: r and z multiply h_prev with the input side's dG in both variants (one GEMM with
  // dW_ih); W_hn multiplies h_prev (reset_after) or rh.
  weight_gradients(dGx.view(), ws, 2 * H, out.dw_ih, out.db_ih, dw_hh, db_hh);
  if (reset_after) {
    recurrent_side_gradients<T>(dGh_n.view(), states_read(ws), dw_hh + 2 * H * H, db_hh + 2 * H, nullptr);
  } else {
    const ConstStridedView<T> dG_n(dGx.data() + 2 * H, TB, H, Eigen::OuterStride<>(GH));
    const ConstStridedView<T> rh(ws.acts.data() + 3 * H, TB, H, Eigen::OuterStride<>(4 * H));
    recurrent_side_gradients<T>(dG_n, rh, dw_hh + 2 * H * H, db_hh + 2 * H, out.db_ih + 2 * H);
  }
}

template void gru_forward<float>(const Dims&, const float*, const float*, const float*, const float*, const float*,
                                 const float*, const index_t*, bool, float*, float*, Workspace<float>*);
template void gru_forward<double>(const Dims&, const double*, const double*, const double*, const double*,
                                  const double*, const double*, const index_t*, bool, double*, double*,
                                  Workspace<double>*);
template void gru_backward<float>(const Workspace<float>&, const float*, const float*, float*, GradientOutputs<float>&);
template void gru_backward<double>(const Workspace<double>&, const double*, const double*, double*,
                                   GradientOutputs<double>&);

}  // namespace rnncore
