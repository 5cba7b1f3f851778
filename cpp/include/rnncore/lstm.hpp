// LSTM, one layer and one direction (docs/design.md §2):
//   [i f g o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh;   i, f, o = σ(.), g = tanh(.)
//   c_t = f ⊙ c_{t-1} + i ⊙ g;   h_t = o ⊙ tanh(c_t)
// (Sequence Models notation: a = h, Γu = i, Γf = f, c̃ = g, Γo = o)
#pragma once

#include "rnncore/types.hpp"

namespace rnncore {

/// Forward over a whole sequence batch. Inference when `ws` is null (stores nothing); training otherwise (fills *ws).
///   d:        sizes T, B, I, H
///   x:        [T, B, I] inputs, or null with x_index
///   h0, c0:   [B, H] initial states, or null for zeros
///   w_ih:     [4H, I], w_hh: [4H, H] weights, gates i, f, g, o
///   b_ih, b_hh: [4H] biases, or null for none
///   lengths:  [B] valid steps per sample in 1..T, or null for all T
///   y:        [T, B, H] out, at its strides (StepView): h_t at valid steps, 0 at padded ones
///   h_n, c_n: [B, H] out: states after each sample's last valid step
///   x_index:  [T, B] one-hot inputs given by their indices in 0..I-1 (x null), or null: the projection gathers
///             W_ih's columns, the workspace keeps the indices, and backward gives no dx
template <typename T>
void lstm_forward(const Dims& d, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* b_ih,
                  const T* b_hh, const index_t* lengths, StepView<T> y, T* h_n, T* c_n, Workspace<T>* ws,
                  const index_t* x_index = nullptr);

/// Backpropagation through time for the forward that filled `ws` (which it only reads).
///   dy:       [T, B, H] gradient w.r.t. y at its strides (StepView), data null for zeros
///   dh_n, dc_n: [B, H] gradients w.r.t. the final states, or null for zeros
///   dh0, dc0: [B, H] out
///   out:      dx [T, B, I] (unless out.want_dx is false), dw_ih [4H, I], dw_hh [4H, H], db_ih and db_hh [4H] (equal:
///             both biases enter the same sum); see GradientOutputs for providing them after the loop
template <typename T>
void lstm_backward(const Workspace<T>& ws, StepView<const T> dy, const T* dh_n, const T* dc_n, T* dh0, T* dc0,
                   GradientOutputs<T>& out);

}  // namespace rnncore
