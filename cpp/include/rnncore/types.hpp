// Eigen views over caller-owned row-major buffers, and the training workspace.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <functional>
#include <stdexcept>
#include <vector>

#include "rnncore/contract.hpp"
#include "rnncore/memory.hpp"

namespace rnncore {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixView = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixView = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <typename T>
using ConstRowVectorView = Eigen::Map<const RowVector<T>>;
template <typename T>
using RowVectorView = Eigen::Map<RowVector<T>>;

/// A row-major matrix whose storage comes from the block cache (rnncore/memory.hpp): for the large per-call
/// buffers (workspace, scratch), so that repeated calls reuse memory instead of faulting in fresh pages.
template <typename T>
class CachedMatrix {
 public:
  CachedMatrix() = default;
  CachedMatrix(index_t rows, index_t cols) { resize(rows, cols); }
  /// Makes room for rows x cols scalars; the contents are uninitialised.
  void resize(index_t rows, index_t cols) {
    buffer_.resize(rows * cols);
    rows_ = rows;
    cols_ = cols;
  }
  MatrixView<T> view() { return MatrixView<T>(buffer_.data(), rows_, cols_); }
  ConstMatrixView<T> view() const { return ConstMatrixView<T>(buffer_.data(), rows_, cols_); }
  T* data() { return buffer_.data(); }
  const T* data() const { return buffer_.data(); }
  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  index_t size() const { return rows_ * cols_; }

 private:
  Buffer<T> buffer_;
  index_t rows_ = 0, cols_ = 0;
};

/// What a training-mode forward keeps for its backward. Owned by the caller (Python holds it opaquely); backward only
/// reads it, so it may be used for several backward calls. Everything is a private copy: mutating the caller's x or
/// weights after forward does not change the gradients of that forward.
template <typename T>
struct Workspace {
  CellSpec spec;
  Dims dims;
  bool has_bias_ih = false;
  bool has_bias_hh = false;
  std::vector<index_t> lengths;  ///< [B], empty = every step valid
  CachedMatrix<T> x;             ///< [T*B, I] the forward's inputs (empty for one-hot inputs: x_index)
  std::vector<index_t> x_index;  ///< [T*B] one-hot inputs given by their indices in 0..I-1; empty for dense x
  bool one_hot = false;          ///< the inputs were indices (x_index), even when T*B = 0: backward gives no dx
  CachedMatrix<T> w_ih;          ///< [G*H, I]
  CachedMatrix<T> w_hh;          ///< [G*H, H]
  CachedMatrix<T> h;             ///< [(T+1)*B, H] h_{-1} = h0, h_0, ..., h_{T-1} (state, carried through padding)
  CachedMatrix<T> c;             ///< [(T+1)*B, H] LSTM cell states, same indexing; empty otherwise
  /// Per-step activations, [T*B, S]: LSTM S = 4H (i, f, g, o after σ/tanh); GRU reset_after S = 4H (r, z, n,
  /// h W_hn^T + b_hn); GRU reset_before S = 4H (r, z, n, r ⊙ h_{t-1}); RNN S = 0 (h itself is the activation).
  CachedMatrix<T> acts;
  /// Per-step data of a per-step hook on the state (zoneout or dropout masks; time_loops.hpp), [T*B, E] with E the
  /// hook's own columns; empty without one.
  CachedMatrix<T> step_extras;

  index_t bytes() const {
    return static_cast<index_t>(sizeof(T)) * (x.size() + w_ih.size() + w_hh.size() + h.size() + c.size() + acts.size() +
                                            step_extras.size()) +
           static_cast<index_t>(sizeof(index_t) * (lengths.size() + x_index.size()));
  }
};

/// Where a backward writes the gradients it produces only after its time loop: dx [T*B, I] and the weight and bias
/// gradients (shapes as in each cell's header). The caller may set the pointers up front, or leave them null and set
/// `allocate`, which backward calls once, after the loop and before writing any of them, to fill them in: then
/// these outputs (10+ MiB at H = 512) are not held during the loop, whose own buffers are freed first (the
/// training step's peak memory).
template <typename T>
struct GradientOutputs {
  T* dx = nullptr;
  T* dw_ih = nullptr;
  T* dw_hh = nullptr;
  T* db_ih = nullptr;
  T* db_hh = nullptr;
  bool want_dx = true;  ///< false: no dx (the input is data, or one-hot indices); dx stays null and is not written
  std::function<void(GradientOutputs&)> allocate;

  /// Called by backward after its loop, before it writes any of them.
  void ready() {
    if (allocate) allocate(*this);
    if (!((dx || !want_dx) && dw_ih && dw_hh && db_ih && db_hh))
      throw std::logic_error("rnncore: backward's gradient outputs were neither given nor allocated");
  }
};

}  // namespace rnncore
