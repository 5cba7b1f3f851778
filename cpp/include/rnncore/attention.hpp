// Masked softmax over the last axis, the normalisation step of every attention score (docs/design.md §2), and the
// fused masked softmax + context every attention ends with, for callers that compute their own scores.
#pragma once

#include <cstdint>

#include "rnncore/contract.hpp"

namespace rnncore {

/// α = softmax over each row of e, restricted to the row's kept entries:
///   α[r, j] = mask[r, j] · exp(e[r, j] - m_r) / Σ_k mask[r, k] · exp(e[r, k] - m_r),  m_r = max over kept e[r, k].
/// Masked entries give exactly 0; a row with no kept entry gives all zeros (never NaN).
///   rows, cols: the array viewed as [rows, cols] (cols = the softmax axis)
///   e:     [rows, cols] scores
///   mask:  [rows, cols] nonzero = keep, 0 = masked out; or null = keep all
///   alpha: [rows, cols] out
template <typename T>
void masked_softmax(index_t rows, index_t cols, const T* e, const std::uint8_t* mask, T* alpha);

/// de = α ⊙ (dα − Σ_j α ⊙ dα) per row (the softmax Jacobian-vector product; masked entries have α = 0 so de = 0).
///   alpha, dalpha: [rows, cols];  de: [rows, cols] out
template <typename T>
void masked_softmax_backward(index_t rows, index_t cols, const T* alpha, const T* dalpha, T* de);

/// The end of every attention, fused: α = the masked softmax of each score row, context = α · values.
/// Row r = b·Ty + y (Ty = 1: one query per sample) attends over sample b's values; entry t is kept when
/// t < lengths[b] and mask[r, t] != 0 (either may be null: no such condition):
///   α[r, t] = the masked softmax of e[r] over the kept t (masked_softmax's row: the same bits)
///   context[r, j] = Σ_{t: α[r, t] ≠ 0} α[r, t] · values[b, t, j]   (t in order; values where α = 0 are never read,
///                   so a NaN-padded source gives finite results; a row with nothing kept gets zeros)
///   B, Ty, Tx, Dv: sizes (every one >= 1)
///   e:       [B, Ty, Tx] scores
///   lengths: [B] in 0..Tx, or null (every step kept)
///   mask:    [B, Ty, Tx] nonzero = keep, 0 = masked out; or null (keep all)
///   values:  [B, Tx, Dv]
///   alpha:   [B, Ty, Tx] out
///   context: [B, Ty, Dv] out
/// Each sample's rows run on their own (threads split B when the call is large enough); no result depends on the
/// batch or the thread count.
template <typename T>
void attention_context(index_t B, index_t Ty, index_t Tx, index_t Dv, const T* e, const index_t* lengths,
                       const std::uint8_t* mask, const T* values, T* alpha, T* context);

/// The gradients of attention_context given dcontext (and optionally dα), per row r = b·Ty + y:
///   dα[r, t] = dcontext[r] · values[b, t] (+ dalpha[r, t])     on entries with α[r, t] ≠ 0 (the others: 0,
///                                                               their values never read)
///   de[r] = α[r] ⊙ (dα[r] − Σ_t α[r, t] dα[r, t])              (the softmax's Jacobian; 0 where α = 0)
///   dvalues[b, t] = Σ_y α[b·Ty + y, t] · dcontext[b·Ty + y]    (exact zeros where every α[·, t] of b is 0)
///   B, Ty, Tx, Dv: sizes (every one >= 1)
///   alpha:    [B, Ty, Tx] the forward's
///   values:   [B, Tx, Dv] the forward's
///   dcontext: [B, Ty, Dv]
///   dalpha:   [B, Ty, Tx], or null (zeros)
///   de:       [B, Ty, Tx] out
///   dvalues:  [B, Tx, Dv] out
template <typename T>
void attention_context_backward(index_t B, index_t Ty, index_t Tx, index_t Dv, const T* alpha, const T* values,
                                const T* dcontext, const T* dalpha, T* de, T* dvalues);

}  // namespace rnncore
