// The streaming Stepper (rnncore/stepper.hpp): the products of one step with weights packed once
// (linalg/step_product.hpp), then the cells' step math (cells/*.hpp).
#include "rnncore/stepper.hpp"

#include <optional>

#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "cells/rnn.hpp"
#include "parallel.hpp"
#include "recurrent_common.hpp"
#include "linalg/step_product.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
struct Stepper<T>::Impl {
  CellSpec spec;
  index_t I, H, B, GH;
  RowMatrix<T> w_ih, w_hh;    // private copies: the products below point into them
  RowVector<T> input_bias;    // b_ih + b_hh, but b_hn with GRU reset_after (it sits inside r ⊙ (.))
  RowVector<T> b_hn;          // GRU reset_after only; empty otherwise
  RowMatrix<T> h, h_next, c, c_next;  // [B, H] states
  RowMatrix<T> gates, hw, acts;       // one step's scratch
  std::optional<StepProduct<T, true>> input_product, hidden_product, reset_product;
  bool invariant = false;  // row_invariant() when the products were made (it fixes their paths)

  Impl(const CellSpec& s, index_t I_, index_t H_, index_t B_, const T* wi, const T* wh, const T* bi, const T* bh)
      : spec(s), I(I_), H(H_), B(B_), GH(cell_traits(s.kind).gates * H_),
        w_ih(ConstMatrixView<T>(wi, GH, I)), w_hh(ConstMatrixView<T>(wh, GH, H)),
        input_bias(is_reset_after() ? folded_bias(GH, bi, bh, 2 * H, 3 * H) : folded_bias(GH, bi, bh)),
        b_hn(is_reset_after() && bh ? RowVector<T>(ConstRowVectorView<T>(bh + 2 * H, H)) : RowVector<T>()),
        h(RowMatrix<T>::Zero(B, H)), h_next(B, H),
        c(RowMatrix<T>::Zero(has_cell_state() ? B : 0, H)), c_next(has_cell_state() ? B : 0, H),
        gates(B, GH), hw(is_reset_after() ? B : 0, GH), acts(s.kind == CellKind::gru ? B : 0, 4 * H) {
    make_products();
  }

  /// The step's products, laid out for the calling thread's current row-invariant mode.
  void make_products() {
    input_product.emplace(w_ih.data(), GH, I, B);
    hidden_product.emplace(w_hh.data(), hidden_unit_gates(spec) * H, H, B, StepProduct<T, true>::kManySteps,
                           hidden_unit_gates(spec));
    reset_product.emplace(spec.kind == CellKind::gru ? w_hh.data() + 2 * H * H : w_hh.data(),
                          spec.kind == CellKind::gru && !spec.reset_after ? H : 0, H, B,
                          StepProduct<T, true>::kManySteps, kGruResetUnitGates);
    invariant = row_invariant();
  }

  bool has_cell_state() const { return cell_traits(spec.kind).states > 1; }  // LSTM c
  bool is_reset_after() const { return spec.kind == CellKind::gru && spec.reset_after; }

  void step(const T* x) {
    if (invariant != row_invariant()) make_products();  // made under the other mode: remake under this one
    const KernelScope scope(forward_flops(cell_traits(spec.kind).gates, Dims{1, B, I, H}));
    gates.rowwise() = input_bias;
    input_product->accumulate(x, I, gates.data(), GH);  // x W_ih^T + biases
    switch (spec.kind) {
      case CellKind::lstm:
        lstm_step(*hidden_product, gates.data(), c.data(), c_next.data(), h.data(), h_next.data(), B, H, false,
                  [](index_t) { return true; });
        c.swap(c_next);
        break;
      case CellKind::gru:
        gru_step(*hidden_product, *reset_product, gates.data(), hw.data(), h.data(),
                 b_hn.size() ? b_hn.data() : nullptr, acts.data(), h_next.data(), B, H, spec.reset_after,
                 [](index_t) { return true; });
        break;
      case CellKind::rnn:
        rnn_step(*hidden_product, gates.data(), h.data(), h_next.data(), B, H, spec.nonlinearity,
                 [](index_t) { return true; });
        break;
    }
    h.swap(h_next);
  }
};

template <typename T>
Stepper<T>::Stepper(const CellSpec& spec, index_t I, index_t H, index_t B, const T* w_ih, const T* w_hh,
                    const T* b_ih, const T* b_hh)
    : impl_(std::make_unique<Impl>(spec, I, H, B, w_ih, w_hh, b_ih, b_hh)) {}

template <typename T>
Stepper<T>::~Stepper() = default;

template <typename T>
void Stepper<T>::reset(const T* h0, const T* c0) {
  Impl& s = *impl_;
  if (h0)
    s.h = ConstMatrixView<T>(h0, s.B, s.H);
  else
    s.h.setZero();
  if (s.has_cell_state()) {
    if (c0)
      s.c = ConstMatrixView<T>(c0, s.B, s.H);
    else
      s.c.setZero();
  }
}

template <typename T>
void Stepper<T>::step(const T* x) {
  impl_->step(x);
}

template <typename T>
const T* Stepper<T>::h() const {
  return impl_->h.data();
}

template <typename T>
const T* Stepper<T>::c() const {
  return impl_->c.data();
}

template <typename T>
const CellSpec& Stepper<T>::spec() const {
  return impl_->spec;
}

template <typename T>
index_t Stepper<T>::input_size() const {
  return impl_->I;
}

template <typename T>
index_t Stepper<T>::hidden_size() const {
  return impl_->H;
}

template <typename T>
index_t Stepper<T>::batch() const {
  return impl_->B;
}

template class Stepper<float>;
template class Stepper<double>;

}  // namespace rnncore
