// GRU, one layer and one direction (docs/design.md §2), gate order r, z, n:
//   r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr),  z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)
//   reset_after = true  (PyTorch, cuDNN, Keras default): n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn))
//   reset_after = false (Cho et al. 2014, the "full GRU"): n = tanh(x W_in^T + b_in + (r ⊙ h) W_hn^T + b_hn)
//   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
// (Sequence Models notation: a = h, Γr = r, Γu = 1 - z, c̃ = n)
#pragma once

#include "rnncore/types.hpp"

namespace rnncore {

/// Forward over a whole sequence batch. Inference when `ws` is null (stores nothing); training otherwise (fills *ws).
///   d:        sizes T, B, I, H
///   x:        [T, B, I] inputs, or null with x_index
///   h0:       [B, H] initial state, or null for zeros
///   w_ih:     [3H, I], w_hh: [3H, H] weights, gates r, z, n
///   b_ih, b_hh: [3H] biases, or null for none
///   lengths:  [B] valid steps per sample in 1..T, or null for all T
///   reset_after: which GRU (see above)
///   y:        [T, B, H] out, at its strides (StepView): h_t at valid steps, 0 at padded ones
///   h_n:      [B, H] out: state after each sample's last valid step
///   x_index:  [T, B] one-hot inputs given by their indices in 0..I-1 (x null), or null: the projection gathers
///             W_ih's columns, the workspace keeps the indices, and backward gives no dx
template <typename T>
void gru_forward(const Dims& d, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 const index_t* lengths, bool reset_after, StepView<T> y, T* h_n, Workspace<T>* ws,
                 const index_t* x_index = nullptr);

/// Backpropagation through time for the forward that filled `ws` (which it only reads).
///   dy:       [T, B, H] gradient w.r.t. y at its strides (StepView), data null for zeros
///   dh_n:     [B, H] or null for zeros
///   dh0:      [B, H] out
///   out:      dx [T, B, I] (unless out.want_dx is false), dw_ih [3H, I], dw_hh [3H, H], db_ih and db_hh [3H]; see
///             GradientOutputs
template <typename T>
void gru_backward(const Workspace<T>& ws, StepView<const T> dy, const T* dh_n, T* dh0, GradientOutputs<T>& out);

}  // namespace rnncore
