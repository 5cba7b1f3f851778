// Simple (Elman) RNN, one layer and one direction (docs/design.md §2):
//   h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),  act ∈ {tanh, relu}
// (Sequence Models notation: a<t> = g1(w_aa a<t-1> + w_ax x<t> + b_a))
#pragma once

#include "rnncore/types.hpp"

namespace rnncore {

/// Forward over a whole sequence batch. Inference when `ws` is null (stores nothing); training otherwise (fills *ws).
///   d:        sizes T, B, I, H
///   x:        [T, B, I] inputs, or null with x_index
///   h0:       [B, H] initial state, or null for zeros
///   w_ih:     [H, I], w_hh: [H, H] weights;  b_ih, b_hh: [H] biases, or null for none
///   lengths:  [B] valid steps per sample in 1..T, or null for all T
///   y:        [T, B, H] out, at its strides (StepView): h_t at valid steps, 0 at padded ones;  h_n: [B, H] out
///   x_index:  [T, B] one-hot inputs given by their indices in 0..I-1 (x null), or null: the projection gathers
///             W_ih's columns, the workspace keeps the indices, and backward gives no dx
template <typename T>
void rnn_forward(const Dims& d, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const index_t* lengths, Nonlinearity nonlinearity, StepView<T> y, T* h_n, Workspace<T>* ws,
                 const index_t* x_index = nullptr);

/// Backpropagation through time for the forward that filled `ws` (which it only reads).
///   dy:       [T, B, H] gradient w.r.t. y at its strides (StepView), data null for zeros
///   dh_n:     [B, H] or null for zeros
///   dh0:      [B, H] out
///   out:      dx [T, B, I] (unless out.want_dx is false), dw_ih [H, I], dw_hh [H, H], db_ih and db_hh [H]; see
///             GradientOutputs
template <typename T>
void rnn_backward(const Workspace<T>& ws, StepView<const T> dy, const T* dh_n, T* dh0, GradientOutputs<T>& out);

}  // namespace rnncore
