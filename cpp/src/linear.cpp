// The dense layer's products (declared in rnncore/linear.hpp) on the kernels' GEMM helpers (linalg/gemm.hpp): float
// products from kTileGemmMinRows output rows on the tile GEMM, the rest on Eigen's GEMM split into whole strips.
// Either way each output element has the same bits on 1 or more threads.
#include "rnncore/linear.hpp"

#include "linalg/arrays.hpp"
#include "linalg/gemm.hpp"
#include "parallel.hpp"
#include "rnncore/types.hpp"

namespace rnncore {

using namespace detail;

template <typename T>
void linear_forward(index_t N, index_t I, index_t O, const T* x, const T* weight, const T* bias, T* y) {
  const KernelScope scope(2.0 * double(N) * double(I) * double(O));
  multiply_into<false, true>(MatrixView<T>(y, N, O), ConstMatrixView<T>(x, N, I), ConstMatrixView<T>(weight, O, I),
                             bias);
}

template <typename T>
void linear_backward(index_t N, index_t I, index_t O, const T* x, const T* weight, const T* dy, T* dweight, T* dbias,
                     T* dx) {
  const KernelScope scope((dx ? 4.0 : 2.0) * double(N) * double(I) * double(O));
  const ConstMatrixView<T> xs(x, N, I), w(weight, O, I), g(dy, N, O);
  if (dbias) {
    RowVector<T> sums(O);
    column_sums(g, sums.data());
    RowVectorView<T>(dbias, O) += sums;
  }
  multiply_add_into<true, false>(MatrixView<T>(dweight, O, I), g, xs);  // dweight [O, I] += dy^T · x  (depth N)
  if (dx) multiply_into<false, false>(MatrixView<T>(dx, N, I), g, w);    // dx [N, I] = dy · W  (depth O)
}

template void linear_forward<float>(index_t, index_t, index_t, const float*, const float*, const float*, float*);
template void linear_forward<double>(index_t, index_t, index_t, const double*, const double*, const double*,
                                     double*);
template void linear_backward<float>(index_t, index_t, index_t, const float*, const float*, const float*, float*,
                                     float*, float*);
template void linear_backward<double>(index_t, index_t, index_t, const double*, const double*, const double*,
                                      double*, double*, double*);

}  // namespace rnncore
