// The contract every kernel follows (docs/design.md §1–2). Kernels know nothing of Python.
//
// Shape letters: T time steps, B batch, I input features, H hidden units, G gates (RNN 1, GRU 3, LSTM 4).
// Layouts: every array is dense row-major (C order); the rightmost index changes fastest — except the recurrent
// kernels' y and dy, which are StepViews (any strides, e.g. a direction's columns of a layer's [B, T, D*H] output).
//   x [T, B, I] inputs (time-major)         y [T, B, H] outputs
//   h0, c0, h_n, c_n [B, H] states           lengths [B] valid steps per sample (right padding), or null = all T
//   w_ih [G*H, I], w_hh [G*H, H], b_ih [G*H], b_hh [G*H]   (PyTorch's names and layouts; a bias may be null = 0)
// Gate order inside G*H: LSTM i, f, g, o; GRU r, z, n.
// Padding (lengths): a step t >= lengths[b] writes y[t, b] = 0, leaves sample b's state untouched and receives no
// gradient, exactly as PyTorch's packed sequences.
#pragma once

#include <cstdint>

namespace rnncore {

using index_t = std::int64_t;

/// Sizes of one layer and direction over one sequence batch.
struct Dims {
  index_t T = 0;  ///< time steps
  index_t B = 0;  ///< batch
  index_t I = 0;  ///< input features
  index_t H = 0;  ///< hidden units
};

/// Multiply-add flops of one forward pass over a sequence batch: 2·G·H·(I+H)·B·T (the GEMMs; pointwise excluded).
inline double forward_flops(index_t gates, const Dims& d) {
  return 2.0 * static_cast<double>(gates) * d.H * (d.I + d.H) * d.B * d.T;
}

/// A [T, B, H] array of step rows (a recurrent kernel's y or dy) at any strides, in elements: element (t, b, j) at
/// data[t * time + b * batch + j * feature]. A negative time stride is a time reversal (data then points at step 0,
/// the last in memory); dense() is the contract's C-order [T, B, H]. data null: no array (a dy of zeros).
template <typename T>
struct StepView {
  T* data = nullptr;
  index_t time = 0, batch = 0, feature = 1;

  static StepView dense(T* data, index_t B, index_t H) { return {data, B * H, H, 1}; }
  /// Row (t, b), H elements `feature` apart.
  T* row(index_t t, index_t b) const { return data + t * time + b * batch; }
};

enum class CellKind : int { lstm = 0, gru = 1, rnn = 2 };
enum class Nonlinearity : int { tanh = 0, relu = 1 };
/// The attention's score (docs/design.md §2): additive (Bahdanau, over keys projected once) or dot (q · k).
enum class AttentionScore : int { additive = 0, dot = 1 };

/// Which recurrence a kernel computes; what backward checks a workspace against.
struct CellSpec {
  CellKind kind = CellKind::lstm;
  bool reset_after = true;                       ///< GRU only: PyTorch/cuDNN (true) or Cho 2014 (false)
  Nonlinearity nonlinearity = Nonlinearity::tanh;  ///< simple RNN only

  constexpr index_t gates() const { return kind == CellKind::lstm ? 4 : kind == CellKind::gru ? 3 : 1; }
};

}  // namespace rnncore
