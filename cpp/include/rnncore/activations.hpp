// Activations, their derivatives written from the activation's OUTPUT (what backward has stored), and the
// floating-point-mode guard every kernel runs under.
#pragma once

#include <Eigen/Core>

#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define RNNCORE_HAS_MXCSR 1
#endif

namespace rnncore {

/// σ(x) = 1 / (1 + e^{-x}), vectorised by Eigen, saturating without overflow.
template <typename Derived>
auto sigmoid(const Eigen::ArrayBase<Derived>& x) {
  return x.logistic();
}

/// σ'(x) from s = σ(x): s (1 - s).
template <typename Derived>
auto sigmoid_grad_from_output(const Eigen::ArrayBase<Derived>& s) {
  return s * (1 - s);
}

/// tanh'(x) from y = tanh(x): 1 - y².
template <typename Derived>
auto tanh_grad_from_output(const Eigen::ArrayBase<Derived>& y) {
  return 1 - y.square();
}

/// relu'(x) from y = relu(x): 1 where y > 0, else 0 (PyTorch's choice at 0).
template <typename Derived>
auto relu_grad_from_output(const Eigen::ArrayBase<Derived>& y) {
  using Scalar = typename Derived::Scalar;
  return (y > Scalar(0)).template cast<Scalar>();
}

/// Sets flush-to-zero and denormals-are-zero for the calling thread while alive, restores the caller's mode after.
/// Denormals appear in saturated gates (σ of a large negative input) and cost ~100 cycles each on x86.
class FlushDenormalsScope {
 public:
#ifdef RNNCORE_HAS_MXCSR
  FlushDenormalsScope() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormalsScope() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFlushToZero = 0x8000;
  static constexpr unsigned kDenormalsAreZero = 0x0040;
  unsigned saved_;
#else
  FlushDenormalsScope() = default;
#endif
 public:
  FlushDenormalsScope(const FlushDenormalsScope&) = delete;
  FlushDenormalsScope& operator=(const FlushDenormalsScope&) = delete;
};

}  // namespace rnncore
