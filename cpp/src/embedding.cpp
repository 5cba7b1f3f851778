// Embedding backward: scatter-add of row gradients (declared in rnncore/embedding.hpp).
#include "rnncore/embedding.hpp"

#include "linalg/arrays.hpp"
#include "rnncore/activations.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
void embedding_backward(index_t N, index_t V, index_t D, const index_t* indices, const T* dy, index_t padding_idx,
                        T* dweight) {
  (void)V;  // documented bound on indices; checked by the caller
  FlushDenormalsScope fp_mode;
  for (index_t n = 0; n < N; ++n) {  // sequential over n: a fixed summation order for repeated rows
    const index_t row = indices[n];
    if (row == padding_idx) continue;
    ArrayView<T>(dweight + row * D, D) += ConstArrayView<T>(dy + n * D, D);
  }
}

template void embedding_backward<float>(index_t, index_t, index_t, const index_t*, const float*, index_t, float*);
template void embedding_backward<double>(index_t, index_t, index_t, const index_t*, const double*, index_t,
                                         double*);

}  // namespace rnncore
