// Row-wise pieces of decoding (rnncore.decode): the log-softmax a step model returns and the top-k selection beam
// search ranks candidates with. Twins: rnncore.reference.decoding.
#pragma once

#include <cstdint>

#include "rnncore/contract.hpp"

namespace rnncore {

/// The k best entries of each row of offset[r] + scores[r, :], in double: value descending, ties by the lowest
/// column (exactly a stable descending sort's first k); NaN ranks as -inf. The sums are formed exactly as NumPy's
/// `offsets[:, None] + scores.astype(float64)` forms them, so the choice is the one that expression's sort makes.
/// Runs on the calling thread with the caller's floating-point mode (no flush-to-zero: a denormal score keeps its
/// rank).
///   R: rows;  C: columns;  k: entries kept per row, 1 <= k <= C
///   scores:  [R, C]
///   offsets: [R], or null for zeros
///   columns: [R, k] out, the chosen columns best first
///   values:  [R, k] out, offset + score of each (NaN written as -inf)
template <typename T>
void top_k_rows(index_t R, index_t C, index_t k, const T* scores, const double* offsets, std::int64_t* columns,
                double* values);

/// y[r, :] = x[r, :] - m - log Σ_j exp(x[r, j] - m), m = max_j x[r, j]: the log-probabilities of softmax(x[r]).
/// -inf entries give -inf; a row holding NaN or +inf, or only -inf, gives NaN (as torch.log_softmax does).
///   R: rows;  C: columns (>= 1)
///   x: [R, C];  y: [R, C] out (may be x itself)
template <typename T>
void log_softmax_rows(index_t R, index_t C, const T* x, T* y);

}  // namespace rnncore
