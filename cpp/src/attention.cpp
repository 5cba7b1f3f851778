// Masked softmax over the last axis (declared in rnncore/attention.hpp).
#include "rnncore/attention.hpp"

#include <limits>

#include "recurrent_common.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
void masked_softmax(index_t rows, index_t cols, const T* e, const std::uint8_t* mask, T* alpha) {
  FlushDenormalsScope fp_mode;
  for (index_t r = 0; r < rows; ++r) {
    const ConstArrayView<T> e_r(e + r * cols, cols);
    ArrayView<T> a_r(alpha + r * cols, cols);
    if (!mask) {
      // e - max(e) <= 0, so exp never overflows; a row holding NaN stays NaN (as in PyTorch).
      a_r = (e_r - e_r.maxCoeff()).exp();
      a_r /= a_r.sum();
      continue;
    }
    const std::uint8_t* m = mask + r * cols;
    T row_max = -std::numeric_limits<T>::infinity();
    bool any_kept = false;
    for (index_t j = 0; j < cols; ++j)
      if (m[j]) {
        any_kept = true;
        if (!(e_r[j] <= row_max)) row_max = e_r[j];  // NaN wins, so it propagates
      }
    if (!any_kept) {  // a fully masked row attends to nothing
      a_r.setZero();
      continue;
    }
    T total = 0;
    for (index_t j = 0; j < cols; ++j) {
      a_r[j] = m[j] ? std::exp(e_r[j] - row_max) : T(0);
      total += a_r[j];
    }
    a_r /= total;
  }
}

template <typename T>
void masked_softmax_backward(index_t rows, index_t cols, const T* alpha, const T* dalpha, T* de) {
  FlushDenormalsScope fp_mode;
  for (index_t r = 0; r < rows; ++r) {
    const ConstArrayView<T> a_r(alpha + r * cols, cols), da_r(dalpha + r * cols, cols);
    ArrayView<T>(de + r * cols, cols) = a_r * (da_r - (a_r * da_r).sum());
  }
}

template void masked_softmax<float>(index_t, index_t, const float*, const std::uint8_t*, float*);
template void masked_softmax<double>(index_t, index_t, const double*, const std::uint8_t*, double*);
template void masked_softmax_backward<float>(index_t, index_t, const float*, const float*, float*);
template void masked_softmax_backward<double>(index_t, index_t, const double*, const double*, double*);

}  // namespace rnncore
