// Streaming: one time step per call with the weights prepared once and the state kept between calls (a decoder loop,
// a real-time stream). Same equations and gate math as the sequence kernels (rnncore/lstm.hpp, gru.hpp, rnn.hpp);
// inference only (nothing kept for backward).
#pragma once

#include <memory>

#include "rnncore/types.hpp"

namespace rnncore {

template <typename T>
class Stepper {
 public:
  /// Copies the weights (later changes to the caller's arrays do not reach the stepper).
  ///   spec: which cell;  I, H: sizes;  B: the batch every step passes
  ///   w_ih [G*H, I], w_hh [G*H, H]; b_ih, b_hh [G*H] or null
  Stepper(const CellSpec& spec, index_t I, index_t H, index_t B, const T* w_ih, const T* w_hh, const T* b_ih,
          const T* b_hh);
  ~Stepper();
  Stepper(const Stepper&) = delete;
  Stepper& operator=(const Stepper&) = delete;

  /// Sets the state: h0, c0 [B, H] (c0 for the LSTM only), null for zeros.
  void reset(const T* h0, const T* c0);
  /// Advances the state by one step of input x [B, I].
  void step(const T* x);
  /// The current state [B, H] (c: LSTM only).
  const T* h() const;
  const T* c() const;

  const CellSpec& spec() const;
  index_t input_size() const;
  index_t hidden_size() const;
  index_t batch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rnncore
