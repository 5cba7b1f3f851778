// The dense layer's products (torch.nn.Linear): y = x W^T + b and its gradients, on the kernels' GEMM under
// rnncore::set_num_threads (never on NumPy's BLAS, whose worker threads would fight rnncore's for the same cores).
#pragma once

#include "rnncore/contract.hpp"

namespace rnncore {

/// y = x · W^T + b. Each element of y has the same bits whatever the thread count.
///   N: rows (every leading axis of x flattened);  I: in_features;  O: out_features
///   x:      [N, I]
///   weight: [O, I]
///   bias:   [O], or null for none
///   y:      [N, O] out
template <typename T>
void linear_forward(index_t N, index_t I, index_t O, const T* x, const T* weight, const T* bias, T* y);

/// The gradients of linear_forward, given dy = dL/dy. Accumulates (like a module's gradients):
///   dweight += dy^T · x;   dbias += Σ_n dy[n, :] (summed over n in increasing order, then added);
/// and writes dx = dy · W. Each element has the same bits whatever the thread count.
///   N, I, O: as in linear_forward
///   x:       [N, I] the forward's input
///   weight:  [O, I]
///   dy:      [N, O]
///   dweight: [O, I] in/out, accumulated
///   dbias:   [O] in/out, accumulated; or null (no bias)
///   dx:      [N, I] out; or null when the caller needs no gradient w.r.t. x
template <typename T>
void linear_backward(index_t N, index_t I, index_t O, const T* x, const T* weight, const T* dy, T* dweight, T* dbias,
                     T* dx);

}  // namespace rnncore
