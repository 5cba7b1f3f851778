// Activations and their derivatives, written once for SIMD packets and scalars alike (the pointwise passes visit a
// row with packets of every width, see src/pointwise.hpp), and the floating-point-mode guard every kernel runs under.
// Derivatives are written from the activation's OUTPUT, which is what the workspace stores:
//   σ'(x) = s (1 - s) for s = σ(x);  tanh'(x) = 1 - y² for y = tanh(x);  relu'(x) = [y > 0] (PyTorch's choice at 0).
// float uses Eigen's rational approximations (the ones its array expressions use); double the standard library.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <type_traits>

#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define RNNCORE_HAS_MXCSR 1
#endif

// Packet types carry vector attributes that GCC drops (and warns about) in template arguments; Eigen silences the
// same warning in its own headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace rnncore {

namespace act {

namespace ei = Eigen::internal;

/// `v` in every lane of P (P a packet type, or a scalar).
template <typename P, typename T>
EIGEN_ALWAYS_INLINE P splat(T v) {
  if constexpr (std::is_arithmetic_v<P>)
    return static_cast<P>(v);
  else
    return ei::pset1<P>(v);
}

/// σ(x) = 1 / (1 + e^{-x})
template <typename P>
EIGEN_ALWAYS_INLINE P sigmoid(const P& x) {
  if constexpr (std::is_same_v<P, double>)
    return 1.0 / (1.0 + std::exp(-x));
  else
    return ei::scalar_logistic_op<float>().packetOp(x);
}

/// tanh(x)
template <typename P>
EIGEN_ALWAYS_INLINE P tanh(const P& x) {
  if constexpr (std::is_same_v<P, double>)
    return std::tanh(x);
  else
    return ei::generic_fast_tanh_float(x);
}

/// relu(x) = max(x, 0); NaN stays NaN (Eigen's pmax orders its operands like std::max, which returns the first).
template <typename P>
EIGEN_ALWAYS_INLINE P relu(const P& x) {
  return ei::pmax(x, splat<P>(0));
}

/// σ' from s = σ(x): s (1 - s)
template <typename P>
EIGEN_ALWAYS_INLINE P sigmoid_grad_from_output(const P& s) {
  return ei::pmul(s, ei::psub(splat<P>(1), s));
}

/// tanh' from y = tanh(x): 1 - y²
template <typename P>
EIGEN_ALWAYS_INLINE P tanh_grad_from_output(const P& y) {
  return ei::psub(splat<P>(1), ei::pmul(y, y));
}

/// relu' from y = relu(x): 1 where y > 0, else 0
template <typename P>
EIGEN_ALWAYS_INLINE P relu_grad_from_output(const P& y) {
  if constexpr (std::is_arithmetic_v<P>)
    return y > P(0) ? P(1) : P(0);
  else
    return ei::pselect(ei::pcmp_lt(splat<P>(0), y), splat<P>(1), splat<P>(0));
}

}  // namespace act

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

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
