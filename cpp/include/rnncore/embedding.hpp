// Embedding lookup's backward: the scatter-add of output gradients into the rows of the weight gradient.
#pragma once

#include "rnncore/contract.hpp"

namespace rnncore {

/// Accumulates dy into the rows of dweight picked by indices: dweight[indices[n], :] += dy[n, :] for every n.
/// Rows are added in increasing n (a fixed order, so repeated indices give the same bits on every run and thread
/// count). Entries equal to padding_idx receive nothing (torch.nn.Embedding's rule).
///   N: number of looked-up positions (the indices array flattened);  V: rows of the table;  D: embedding size
///   indices: [N] row numbers, each in 0..V-1 (the caller checks; the kernel does not)
///   dy:      [N, D] gradient w.r.t. the looked-up rows
///   padding_idx: a row in 0..V-1 that gets no gradient, or -1 for none
///   dweight: [V, D] in/out, accumulated (not overwritten)
template <typename T>
void embedding_backward(index_t N, index_t V, index_t D, const index_t* indices, const T* dy, index_t padding_idx,
                        T* dweight);

}  // namespace rnncore
