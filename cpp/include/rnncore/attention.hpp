// Masked softmax over the last axis, the normalisation step of every attention score (docs/design.md §2).
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

}  // namespace rnncore
