// Row-wise softmax pieces: decoding's (rnncore.decode) log-softmax a step model returns and top-k selection beam
// search ranks candidates with, and training's softmax cross-entropy (rnncore.losses). Twins:
// rnncore.reference.decoding.
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

/// The softmax cross-entropy of each row against its class, with torch's label smoothing ε, and its gradient:
///   lse = m + log Σ_j exp(x_j - m) (m the row's max);  q = (1 - ε) onehot(target) + ε / C;
///   loss[r] = Σ_{j: q_j > 0} q_j (lse - x_j) = (1 - ε)(lse - x_t) + (ε / C)(C·lse - Σ_j x_j) (the ε term only for
///   ε > 0: a -inf logit of another class adds nothing without smoothing);
///   dlogits[r, j] = softmax(x)_j - q_j  (d/dx_j of the loss: Σ_j q_j = 1).
/// A row keep says is excluded gets loss 0 and a zero gradient, and its logits and target are never read (NaN,
/// inf or any target there is inert). NaN or +inf in a kept row gives NaN (as torch).
///   R: rows;  C: classes (>= 1);  logits: [R, C];  targets: [R], each kept row's in 0..C-1 (the caller checks);
///   keep: [R] (nonzero = the row counts), or null: every row;  label_smoothing: ε in [0, 1];
///   losses: [R] out;  dlogits: [R, C] out.
template <typename T>
void softmax_cross_entropy_rows(index_t R, index_t C, const T* logits, const std::int64_t* targets,
                                const std::uint8_t* keep, T label_smoothing, T* losses, T* dlogits);

/// Whether every kept row's target is a class: targets [R] in 0..C-1 where keep [R] (or null: every row) is nonzero.
bool kept_targets_in_range(index_t R, index_t C, const std::int64_t* targets, const std::uint8_t* keep);

}  // namespace rnncore
