// One decoder step of attention over B query rows, forward and backward (docs/design.md §2 "Attention"): the
// additive (Bahdanau) score over keys projected once outside the step, or the dot score; the masked softmax by
// source lengths; the context α · values. Used by the fused attention decoder (attention_decoder.cpp) at every step
// and by the per-step attention op.
//
//   additive:  u[b, t'] = tanh(K'[b, t'] + q[b] W_q^T + b_a)      s = u · w_v (+ score_bias)    e = s or relu(s)
//   dot:       e[b, t'] = q[b] · keys[b, t']
//   then       α[b] = masked_softmax(e[b], t' < lengths[b])       context[b] = Σ_t' α[b, t'] values[b, t']
//
// What a step keeps for its backward: qproj = q W_q^T + b_a [B, A] (additive) and α [B, Tx]; the backward
// recomputes u row by row, so no [Tx, A] tensor outlives its row. A sample with lengths[b] = 0 attends to nothing:
// α = 0, context = 0, and every gradient of its row is 0 (never NaN).
//
// Rows are independent: they run on for_each_row's threads, each row's sums in a fixed order of its own, and the
// parameter gradients shared by every row (dw_v, the score bias's) are accumulated per row ([B, A], [B]) for the
// caller to sum in a fixed order once (sum_rows_into), so no result depends on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "linalg/gemm.hpp"
#include "parallel.hpp"
#include "pointwise.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

/// The operands of one attention, fixed over a decoder's steps (kept by pointer; every array row-major).
///   additive: K = A (attention units); dot: K = Dq.
template <typename T>
struct AttentionOperands {
  AttentionScore score = AttentionScore::additive;
  index_t B = 0, Tx = 0;
  index_t Dq = 0;                    ///< query features (the decoder's H)
  index_t K = 0;                     ///< key columns: A (additive, projected keys) or Dq (dot)
  index_t Dv = 0;                    ///< value features
  const T* keys = nullptr;           ///< [B, Tx, K]: additive K' = keys W_k^T (projected once outside); dot keys
  const T* values = nullptr;         ///< [B, Tx, Dv]
  const index_t* lengths = nullptr;  ///< [B] in 0..Tx: sample b attends to t' < lengths[b]; null = all Tx
  const T* w_q = nullptr;            ///< additive: [A, Dq]
  const T* b_a = nullptr;            ///< additive: [A], or null (no bias)
  const T* w_v = nullptr;            ///< additive: [A], the effective score vector (normalize applied outside)
  const T* score_bias = nullptr;     ///< additive: one scalar added to every score, or null
  bool relu_energy = false;          ///< additive: e = relu(s) (the course's Dense(relu) on the energies)

  bool additive() const { return score == AttentionScore::additive; }
  index_t length(index_t b) const { return lengths ? lengths[b] : Tx; }
  /// The pointwise work of one row (for for_each_row's thread split).
  index_t row_width() const { return Tx * (K + Dv); }
};

namespace attention_lanes {

namespace ei = Eigen::internal;

/// e^x on a packet (Eigen's vectorised exp) or a scalar (the standard library).
template <typename P>
EIGEN_ALWAYS_INLINE P exp(const P& x) {
  if constexpr (std::is_arithmetic_v<P>)
    return std::exp(x);
  else
    return ei::pexp(x);
}

/// The sum of a packet's lanes (a scalar is its own sum).
template <typename P>
EIGEN_ALWAYS_INLINE auto lane_sum(const P& x) {
  if constexpr (std::is_arithmetic_v<P>)
    return x;
  else
    return ei::predux(x);
}

/// a · b over n entries, packet by packet in a fixed order (the same bits wherever the rows sit in memory).
template <typename T>
EIGEN_ALWAYS_INLINE T dot(const T* a, const T* b, index_t n) {
  T sum = 0;
  lanes::for_each<T>(n, [&](auto lane, index_t j) {
    using P = decltype(lane);
    sum += lane_sum(ei::pmul(lanes::load<P>(a + j), lanes::load<P>(b + j)));
  });
  return sum;
}

/// y += s · x over n entries.
template <typename T>
EIGEN_ALWAYS_INLINE void axpy(T s, const T* x, T* y, index_t n) {
  lanes::for_each<T>(n, [&](auto lane, index_t j) {
    using P = decltype(lane);
    lanes::store(y + j, ei::pmadd(act::splat<P>(s), lanes::load<P>(x + j), lanes::load<P>(y + j)));
  });
}

}  // namespace attention_lanes

/// A row's scratch, one per thread (rows run on for_each_row's threads): the additive score's u [Tx, A] and the
/// row's dα [Tx]. Grown on demand and kept by the thread for the next call.
template <typename T>
struct AttentionRowScratch {
  std::vector<T> u, dalpha;
  static AttentionRowScratch& of_this_thread(index_t u_size, index_t tx) {
    thread_local AttentionRowScratch scratch;
    if (index_t(scratch.u.size()) < u_size) scratch.u.resize(u_size);
    if (index_t(scratch.dalpha.size()) < tx) scratch.dalpha.resize(tx);
    return scratch;
  }
};

/// The additive score's u[t'] = tanh(K'[b, t'] + qproj[b]) for the row's n kept steps, as one flat pass over n·A
/// entries (qproj tiled first, so that the tanh runs on whole packets even when A is not a multiple of the width).
///   kp [n, A]: the row's projected keys;  qproj [A];  u [n, A] out
template <typename T>
void additive_hidden_row(const T* kp, const T* qproj, index_t n, index_t A, T* u) {
  for (index_t t = 0; t < n; ++t) std::copy_n(qproj, A, u + t * A);
  lanes::for_each<T>(n * A, [&](auto lane, index_t j) {
    using P = decltype(lane);
    lanes::store(u + j, act::tanh(Eigen::internal::padd(lanes::load<P>(kp + j), lanes::load<P>(u + j))));
  });
}

/// α over the row's n kept entries from the energies e [Tx] (in place): α = exp(e - max) / Σ exp(e - max) on t' < n,
/// 0 beyond; n = 0 gives all zeros. A NaN energy makes the kept entries NaN (it propagates, as in PyTorch).
template <typename T>
void softmax_row_in_place(T* e, index_t n, index_t Tx) {
  std::fill(e + n, e + Tx, T(0));
  if (n == 0) return;
  T row_max = -std::numeric_limits<T>::infinity();
  for (index_t j = 0; j < n; ++j)
    if (!(e[j] <= row_max)) row_max = e[j];  // NaN wins
  lanes::for_each<T>(n, [&](auto lane, index_t j) {
    using P = decltype(lane);
    namespace ei = Eigen::internal;
    lanes::store(e + j, attention_lanes::exp(ei::psub(lanes::load<P>(e + j), act::splat<P>(row_max))));
  });
  T total = 0;
  for (index_t j = 0; j < n; ++j) total += e[j];
  const T inverse = T(1) / total;
  for (index_t j = 0; j < n; ++j) e[j] *= inverse;
}

/// qproj [B, A] = query [B, Dq] · W_q^T + b_a (additive only: the query's share of every u, one GEMM per step).
template <typename T>
void attention_project_query(const AttentionOperands<T>& op, const T* query, T* qproj) {
  const index_t A = op.K;
  multiply_into<false, true>(MatrixView<T>(qproj, op.B, A), ConstMatrixView<T>(query, op.B, op.Dq),
                             ConstMatrixView<T>(op.w_q, A, op.Dq), op.b_a);
}

/// Forward of one step for every row, after attention_project_query (additive):
///   query [B, Dq] (dot: the queries; additive: unused);  qproj [B, A] (additive: q W_q^T + b_a; dot: unused);
///   alpha [B, Tx] out;  context [B, Dv] out.
template <typename T>
void attention_forward_rows(const AttentionOperands<T>& op, const T* query, const T* qproj, T* alpha, T* context) {
  using namespace attention_lanes;
  const index_t Tx = op.Tx, K = op.K, Dv = op.Dv;
  for_each_row(op.B, op.row_width(), [&](index_t b) {
    const index_t n = op.length(b);
    T* e = alpha + b * Tx;
    T* ctx = context + b * Dv;
    const T* keys = op.keys + b * Tx * K;
    if (op.additive()) {
      AttentionRowScratch<T>& scratch = AttentionRowScratch<T>::of_this_thread(Tx * K, Tx);
      T* u = scratch.u.data();
      additive_hidden_row(keys, qproj + b * K, n, K, u);
      const T bias = op.score_bias ? *op.score_bias : T(0);
      for (index_t t = 0; t < n; ++t) {
        const T s = dot(u + t * K, op.w_v, K) + bias;
        e[t] = op.relu_energy ? (s > T(0) ? s : (s == s ? T(0) : s)) : s;  // relu keeps a NaN (as torch's)
      }
    } else {
      for (index_t t = 0; t < n; ++t) e[t] = dot(query + b * op.Dq, keys + t * K, K);
    }
    softmax_row_in_place(e, n, Tx);
    std::fill(ctx, ctx + Dv, T(0));
    const T* values = op.values + b * Tx * Dv;
    for (index_t t = 0; t < n; ++t) axpy(e[t], values + t * Dv, ctx, Dv);
  });
}

/// The per-row accumulators of the step backward's outputs; every pointer may be null where the caller needs no
/// such gradient (dcontext/dalpha null = zeros).
template <typename T>
struct AttentionRowGradients {
  T* dqsum = nullptr;             ///< additive: [B, A] out (written): Σ_t' dpre[b, t'], the query side's gradient
  T* dquery = nullptr;            ///< dot: [B, Dq] += Σ_t' de[b, t'] keys[b, t']
  T* dkeys = nullptr;             ///< [B, Tx, K] +=: additive dK' = dpre; dot de ⊗ q
  T* dvalues = nullptr;           ///< [B, Tx, Dv] += α ⊗ dcontext
  T* dw_v_rows = nullptr;         ///< additive: [B, A] += Σ_t' ds u (summed over rows by the caller)
  T* dscore_bias_rows = nullptr;  ///< additive: [B] += Σ_t' ds (summed over rows by the caller)
};

/// Backward of one step for every row (design.md §2's identities, per row b):
///   dα = dcontext · values[t'] (+ dalpha)        dvalues[t'] += α[t'] dcontext
///   de = α ⊙ (dα - Σ α dα)                        (softmax: dα_j/de_k = α_j (δ_jk - α_k); masked entries have α = 0)
///   additive: u recomputed from qproj;  ds = de, or de ⊙ [s > 0] for relu (relu' from its output);
///             dscore_bias += Σ ds;  dw_v += Σ ds u;  dpre = ds w_v ⊙ (1 - u²) (tanh' = 1 - u²);
///             dK'[t'] += dpre;  dqsum = Σ_t' dpre   (then dquery = dqsum W_q, dW_q = Σ dqsum^T q, db_a = Σ dqsum)
///   dot:      dquery += Σ_t' de[t'] keys[t'];  dkeys[t'] += de[t'] q
///   query [B, Dq] (dot);  qproj [B, A] (additive);  alpha [B, Tx]: the forward's;  dcontext [B, Dv] or null;
///   dalpha [B, Tx] or null;  g: the outputs.
template <typename T>
void attention_backward_rows(const AttentionOperands<T>& op, const T* query, const T* qproj, const T* alpha,
                             const T* dcontext, const T* dalpha, const AttentionRowGradients<T>& g) {
  using namespace attention_lanes;
  namespace ei = Eigen::internal;
  const index_t Tx = op.Tx, K = op.K, Dv = op.Dv;
  for_each_row(op.B, op.row_width(), [&](index_t b) {
    const index_t n = op.length(b);
    if (op.additive() && g.dqsum) std::fill(g.dqsum + b * K, g.dqsum + (b + 1) * K, T(0));
    if (n == 0) return;  // attends to nothing: no gradient
    AttentionRowScratch<T>& scratch = AttentionRowScratch<T>::of_this_thread(op.additive() ? Tx * K : 0, Tx);
    const T* a = alpha + b * Tx;
    const T* values = op.values + b * Tx * Dv;
    const T* dctx = dcontext ? dcontext + b * Dv : nullptr;
    T* de = scratch.dalpha.data();
    for (index_t t = 0; t < n; ++t) {
      de[t] = dctx ? dot(dctx, values + t * Dv, Dv) : T(0);
      if (dalpha) de[t] += dalpha[b * Tx + t];
    }
    if (dctx && g.dvalues)
      for (index_t t = 0; t < n; ++t) axpy(a[t], dctx, g.dvalues + (b * Tx + t) * Dv, Dv);
    T weighted = 0;
    for (index_t t = 0; t < n; ++t) weighted += a[t] * de[t];
    for (index_t t = 0; t < n; ++t) de[t] = a[t] * (de[t] - weighted);
    const T* keys = op.keys + b * Tx * K;
    T* dkeys = g.dkeys ? g.dkeys + b * Tx * K : nullptr;
    if (!op.additive()) {
      const T* q = query + b * op.Dq;
      for (index_t t = 0; t < n; ++t) {
        if (g.dquery) axpy(de[t], keys + t * K, g.dquery + b * op.Dq, K);
        if (dkeys) axpy(de[t], q, dkeys + t * K, K);
      }
      return;
    }
    T* u = scratch.u.data();
    additive_hidden_row(keys, qproj + b * K, n, K, u);
    const T bias = op.score_bias ? *op.score_bias : T(0);
    T* dqsum = g.dqsum ? g.dqsum + b * K : nullptr;
    T* dw_v = g.dw_v_rows ? g.dw_v_rows + b * K : nullptr;
    T dbias = 0;
    for (index_t t = 0; t < n; ++t) {
      T* u_t = u + t * K;
      T ds = de[t];
      if (op.relu_energy && !(dot(u_t, op.w_v, K) + bias > T(0))) ds = T(0);
      dbias += ds;
      if (ds == T(0)) continue;  // adds nothing below (a NaN ds does not compare equal: it propagates)
      if (dw_v) axpy(ds, u_t, dw_v, K);
      lanes::for_each<T>(K, [&](auto lane, index_t j) {  // dpre = ds w_v ⊙ (1 - u²), into dK' and dqsum
        using P = decltype(lane);
        const P dpre = ei::pmul(ei::pmul(act::splat<P>(ds), lanes::load<P>(op.w_v + j)),
                                act::tanh_grad_from_output(lanes::load<P>(u_t + j)));
        if (dkeys) lanes::store(dkeys + t * K + j, ei::padd(lanes::load<P>(dkeys + t * K + j), dpre));
        if (dqsum) lanes::store(dqsum + j, ei::padd(lanes::load<P>(dqsum + j), dpre));
      });
    }
    if (g.dscore_bias_rows) g.dscore_bias_rows[b] += dbias;
  });
}

/// dquery [B, Dq] += dqsum [B, A] · W_q (additive: the query projection's input gradient, one GEMM per step).
template <typename T>
void attention_query_gradient(const AttentionOperands<T>& op, const T* dqsum, T* dquery) {
  multiply_add_into<false, false>(MatrixView<T>(dquery, op.B, op.Dq), ConstMatrixView<T>(dqsum, op.B, op.K),
                                  ConstMatrixView<T>(op.w_q, op.K, op.Dq));
}

/// out [C] += Σ_r rows [R, C], rows added in order (the per-row accumulators' final sum: the same bits on any
/// thread count).
template <typename T>
void sum_rows_into(const T* rows, index_t R, index_t C, T* out) {
  for (index_t r = 0; r < R; ++r)
    for (index_t c = 0; c < C; ++c) out[c] += rows[r * C + c];
}

}  // namespace rnncore::detail
