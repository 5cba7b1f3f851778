// Masked softmax over the last axis (declared in rnncore/attention.hpp).
#include "rnncore/attention.hpp"

#include <algorithm>
#include <limits>

#include "linalg/arrays.hpp"
#include "rnncore/activations.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
void masked_softmax(index_t rows, index_t cols, const T* e, const std::uint8_t* mask, T* alpha) {
  FlushDenormalsScope fp_mode;
  // The exponentials go through an aligned scratch row: Eigen peels the unaligned head of a caller's buffer into
  // scalar std::exp, whose last bit differs from the vectorised exp, so results would depend on the output address.
  Array1D<T> exps(cols);
  for (index_t r = 0; r < rows; ++r) {
    const T* e_r = e + r * cols;
    const std::uint8_t* m = mask ? mask + r * cols : nullptr;
    T* a_r = alpha + r * cols;
    auto kept = [&](index_t j) { return m == nullptr || m[j] != 0; };
    T row_max = -std::numeric_limits<T>::infinity();
    bool any_kept = false;
    for (index_t j = 0; j < cols; ++j)
      if (kept(j)) {
        any_kept = true;
        if (!(e_r[j] <= row_max)) row_max = e_r[j];  // NaN wins, so it propagates to the row's kept entries
      }
    if (!any_kept) {  // a fully masked row attends to nothing
      std::fill(a_r, a_r + cols, T(0));
      continue;
    }
    exps = (ConstArrayView<T>(e_r, cols) - row_max).exp();  // e - max <= 0 on kept entries: never overflows
    T total = 0;
    for (index_t j = 0; j < cols; ++j)
      if (kept(j)) total += exps[j];
    for (index_t j = 0; j < cols; ++j) a_r[j] = kept(j) ? exps[j] / total : T(0);
  }
}

template <typename T>
void masked_softmax_backward(index_t rows, index_t cols, const T* alpha, const T* dalpha, T* de) {
  FlushDenormalsScope fp_mode;
  for (index_t r = 0; r < rows; ++r) {
    const ConstArrayView<T> a_r(alpha + r * cols, cols), da_r(dalpha + r * cols, cols);
    T dot = 0;  // a plain loop: the same summation order whatever the arrays' addresses
    for (index_t j = 0; j < cols; ++j) dot += a_r[j] * da_r[j];
    ArrayView<T>(de + r * cols, cols) = a_r * (da_r - dot);
  }
}

template void masked_softmax<float>(index_t, index_t, const float*, const std::uint8_t*, float*);
template void masked_softmax<double>(index_t, index_t, const double*, const std::uint8_t*, double*);
template void masked_softmax_backward<float>(index_t, index_t, const float*, const float*, float*);
template void masked_softmax_backward<double>(index_t, index_t, const double*, const double*, double*);

}  // namespace rnncore
