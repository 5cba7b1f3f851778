// One decoder step of attention over B query rows, forward and backward (docs/design.md §2 "Attention"): the
// additive (Bahdanau) score over keys projected once outside the step, or the dot score; the masked softmax by
// source lengths; the context α · values. Used by the fused attention decoder (attention_decoder.cpp) at every step
// and by the per-step attention op.
//
//   additive:  u[b, t'] = tanh(K'[b, t'] + q[b] W_q^T + b_a)      s = u · w_v (+ score_bias)    e = s or relu(s)
//   dot:       e[b, t'] = q[b] · keys[b, t']
//   then       α[b] = masked_softmax(e[b], t' < lengths[b])       context[b] = Σ_t' α[b, t'] values[b, t']
//
// The additive score works on the projected keys in the score layout K'^T [B, A, Tx'] (each sample's keys transposed,
// rows padded with zeros to Tx' = score_row_length(Tx), a multiple of the widest float packet; once per source:
// keys_to_score_layout), so that every pass over a row runs along Tx on whole SIMD packets whatever A is (A = 10 in
// the course's model), and accumulates dK' in that layout (add_score_layout_to_keys turns it back).
// What a step keeps for its backward: qproj = q W_q^T + b_a [B, A] (additive) and α [B, Tx]; the backward
// recomputes u row by row, so no [A, Tx] tensor outlives its row. A sample with lengths[b] = 0 attends to nothing:
// α = 0, context = 0, and every gradient of its row is 0 (never NaN).
//
// A row -> source map (AttentionOperands::sources) lets several rows attend to one source's keys, values and length
// (beam search's beams, one copy per source); the backward then takes no key or value gradients.
// Rows are independent: they run on for_each_row's threads, each row's sums in a fixed order of its own, and the
// parameter gradients shared by every row (dw_v, the score bias's) are accumulated per row ([B, A], [B]) for the
// caller to sum in a fixed order once (sum_rows_into), so no result depends on the thread count. The per-step
// functions take a row range [b0, b1) (default all B): the decoder's row-split time loop gives each thread its block.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "linalg/gemm.hpp"
#include "linalg/step_product.hpp"
#include "parallel.hpp"
#include "pointwise.hpp"
#include "rnncore/activations.hpp"
#include "rnncore/contract.hpp"
#include "rnncore/types.hpp"

namespace rnncore::detail {

/// The packet width the score layout's rows are padded to: the widest float packet (double runs scalars).
template <typename T>
constexpr index_t score_layout_width() {
  if constexpr (std::is_same_v<T, float>)
    return Eigen::internal::unpacket_traits<typename Eigen::internal::packet_traits<float>::type>::size;
  else
    return 1;
}

/// Tx' = Tx rounded up to the score layout's packet width: the row length of K'^T.
template <typename T>
constexpr index_t score_row_length(index_t Tx) {
  return (Tx + score_layout_width<T>() - 1) / score_layout_width<T>() * score_layout_width<T>();
}

/// The operands of one attention, fixed over a decoder's steps (kept by pointer; every array row-major).
///   additive: K = A (attention units); dot: K = Dq.
/// The B query rows attend to N sources: row b to source(b) (a row -> source map: beam search's k beams of a source
/// read that source's one copy of keys, values and length; without a map N = B and row b attends to source b).
template <typename T>
struct AttentionOperands {
  AttentionScore score = AttentionScore::additive;
  index_t B = 0, Tx = 0;
  index_t Dq = 0;                    ///< query features (the decoder's H)
  index_t K = 0;                     ///< key columns: A (additive, projected keys) or Dq (dot)
  index_t Dv = 0;                    ///< value features
  const T* keys = nullptr;           ///< dot: the keys [N, Tx, Dq]
  const T* score_keys = nullptr;     ///< additive: K'^T [N, A, Tx'], the projected keys K' = keys W_k^T [N, Tx, A]
                                     ///< (projected once outside) in the score layout (keys_to_score_layout)
  const T* values = nullptr;         ///< [N, Tx, Dv]
  const index_t* lengths = nullptr;  ///< [N] in 0..Tx: source n attends to t' < lengths[n]; null = all Tx
  const index_t* sources = nullptr;  ///< [B] in 0..N-1: row b attends to source sources[b] (its keys, values,
                                     ///< length); null = source b (N = B). Rows of one source should be adjacent
                                     ///< (for_each_row's chunks then read each source's keys while they are in cache)
  const T* w_q = nullptr;            ///< additive: [A, Dq]
  const T* b_a = nullptr;            ///< additive: [A], or null (no bias)
  const T* w_v = nullptr;            ///< additive: [A], the effective score vector (normalize applied outside)
  const T* score_bias = nullptr;     ///< additive: one scalar added to every score, or null
  bool relu_energy = false;          ///< additive: e = relu(s) (the course's Dense(relu) on the energies)

  bool additive() const { return score == AttentionScore::additive; }
  /// The source row b attends to.
  index_t source(index_t b) const { return sources ? sources[b] : b; }
  index_t length(index_t b) const { return lengths ? lengths[source(b)] : Tx; }
  /// Tx': the row length of the score layout (additive).
  index_t score_row() const { return score_row_length<T>(Tx); }
  /// Where row b's keys start (either score's): its source's.
  const T* keys_of(index_t b) const {
    return additive() ? score_keys + source(b) * K * score_row() : keys + source(b) * Tx * K;
  }
  /// Where row b's values [Tx, Dv] start: its source's.
  const T* values_of(index_t b) const { return values + source(b) * Tx * Dv; }
  /// Refuses operands set up for the other score (the additive score reads score_keys, never keys).
  void check() const {
    if (additive() ? (score_keys == nullptr || keys != nullptr) : (keys == nullptr || score_keys != nullptr))
      throw std::logic_error("rnncore internal error: attention operands: the additive score takes score_keys "
                             "(keys_to_score_layout), the dot score keys");
  }
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

/// a · b over n entries in a fixed order (the same bits wherever the rows sit in memory): whole packets of the
/// widest width into one accumulator, reduced once, then the narrower tail lanes.
template <typename T>
EIGEN_ALWAYS_INLINE T dot(const T* a, const T* b, index_t n) {
  using Packet = typename ei::packet_traits<T>::type;
  constexpr index_t width = ei::unpacket_traits<Packet>::size;
  index_t j = 0;
  T sum = 0;
  if constexpr (width > 1) {
    if (n >= width) {
      Packet acc = ei::pmul(ei::ploadu<Packet>(a), ei::ploadu<Packet>(b));
      for (j = width; j + width <= n; j += width)
        acc = ei::pmadd(ei::ploadu<Packet>(a + j), ei::ploadu<Packet>(b + j), acc);
      sum = ei::predux(acc);
    }
  }
  lanes::for_each<T>(n - j, [&](auto lane, index_t k) {
    using P = decltype(lane);
    sum += lane_sum(ei::pmul(lanes::load<P>(a + j + k), lanes::load<P>(b + j + k)));
  });
  return sum;
}

/// Σ x over n entries, in dot's fixed order.
template <typename T>
EIGEN_ALWAYS_INLINE T sum(const T* x, index_t n) {
  using Packet = typename ei::packet_traits<T>::type;
  constexpr index_t width = ei::unpacket_traits<Packet>::size;
  index_t j = 0;
  T total = 0;
  if constexpr (width > 1) {
    if (n >= width) {
      Packet acc = ei::ploadu<Packet>(x);
      for (j = width; j + width <= n; j += width) acc = ei::padd(ei::ploadu<Packet>(x + j), acc);
      total = ei::predux(acc);
    }
  }
  lanes::for_each<T>(n - j, [&](auto lane, index_t k) {
    using P = decltype(lane);
    total += lane_sum(lanes::load<P>(x + j + k));
  });
  return total;
}

/// y += s · x over n entries.
template <typename T>
EIGEN_ALWAYS_INLINE void axpy(T s, const T* x, T* y, index_t n) {
  lanes::for_each<T>(n, [&](auto lane, index_t j) {
    using P = decltype(lane);
    lanes::store(y + j, ei::pmadd(act::splat<P>(s), lanes::load<P>(x + j), lanes::load<P>(y + j)));
  });
}

/// out[j] (+)= Σ_{t < n} w[t * w_stride] · rows[t * row_stride + j] for j < cols: a weighted sum of n rows (the
/// context α · values, dvalues over the steps), t in order for every j. The columns go in blocks of four packets
/// held in registers across t: an axpy per row would chain every row's update through memory (store, then load).
template <typename T>
void weighted_sum_rows(const T* w, index_t w_stride, const T* rows, index_t row_stride, index_t n, index_t cols,
                       T* out, bool accumulate) {
  using Packet = typename ei::packet_traits<T>::type;
  constexpr index_t W = ei::unpacket_traits<Packet>::size;
  index_t j = 0;
  for (; j + 4 * W <= cols; j += 4 * W) {
    Packet a0 = ei::pset1<Packet>(T(0)), a1 = a0, a2 = a0, a3 = a0;
    if (accumulate) {
      a0 = ei::ploadu<Packet>(out + j), a1 = ei::ploadu<Packet>(out + j + W);
      a2 = ei::ploadu<Packet>(out + j + 2 * W), a3 = ei::ploadu<Packet>(out + j + 3 * W);
    }
    for (index_t t = 0; t < n; ++t) {
      const Packet s = ei::pset1<Packet>(w[t * w_stride]);
      const T* r = rows + t * row_stride + j;
      a0 = ei::pmadd(s, ei::ploadu<Packet>(r), a0);
      a1 = ei::pmadd(s, ei::ploadu<Packet>(r + W), a1);
      a2 = ei::pmadd(s, ei::ploadu<Packet>(r + 2 * W), a2);
      a3 = ei::pmadd(s, ei::ploadu<Packet>(r + 3 * W), a3);
    }
    ei::pstoreu(out + j, a0), ei::pstoreu(out + j + W, a1), ei::pstoreu(out + j + 2 * W, a2);
    ei::pstoreu(out + j + 3 * W, a3);
  }
  for (; j + W <= cols; j += W) {
    Packet a = accumulate ? ei::ploadu<Packet>(out + j) : ei::pset1<Packet>(T(0));
    for (index_t t = 0; t < n; ++t)
      a = ei::pmadd(ei::pset1<Packet>(w[t * w_stride]), ei::ploadu<Packet>(rows + t * row_stride + j), a);
    ei::pstoreu(out + j, a);
  }
  for (; j < cols; ++j) {
    T a = accumulate ? out[j] : T(0);
    for (index_t t = 0; t < n; ++t) a += w[t * w_stride] * rows[t * row_stride + j];
    out[j] = a;
  }
}

}  // namespace attention_lanes

/// A row's scratch, one per thread (rows run on for_each_row's threads): the additive score's u [A, Tx'], and two
/// rows of Tx' (the scores s, or the backward's dα then ds; dpre). Grown on demand and kept by the thread.
template <typename T>
struct AttentionRowScratch {
  std::vector<T> u, rows;
  T* row(index_t k, index_t tx) { return rows.data() + k * tx; }
  static AttentionRowScratch& of_this_thread(index_t u_size, index_t tx) {
    thread_local AttentionRowScratch scratch;
    if (index_t(scratch.u.size()) < u_size) scratch.u.resize(u_size);
    if (index_t(scratch.rows.size()) < 2 * tx) scratch.rows.resize(2 * tx);
    return scratch;
  }
};

/// K'^T [B, A, Tx'] = each sample's projected keys K' [B, Tx, A] transposed (the additive score's layout; once per
/// source), with zeros past each sample's length and in the padding up to Tx': the passes that run on whole packets
/// past a sample's kept steps never meet what the caller padded with (a NaN there would reach dK' and dq).
///   lengths [B] in 0..Tx, or null (all Tx)
template <typename T>
void keys_to_score_layout(const T* keys, index_t B, index_t Tx, index_t A, const index_t* lengths, T* keys_t) {
  const index_t Txs = score_row_length<T>(Tx);
  for (index_t b = 0; b < B; ++b) {
    const index_t n = lengths ? lengths[b] : Tx;
    for (index_t a = 0; a < A; ++a) {
      T* row = keys_t + (b * A + a) * Txs;
      for (index_t t = 0; t < n; ++t) row[t] = keys[(b * Tx + t) * A + a];
      std::fill(row + n, row + Txs, T(0));
    }
  }
}

/// dK' [B, Tx, A] += dK'^T [B, A, Tx'] transposed back (after the steps that accumulated dK'^T).
template <typename T>
void add_score_layout_to_keys(const T* dkeys_t, index_t B, index_t Tx, index_t A, T* dkeys) {
  const index_t Txs = score_row_length<T>(Tx);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < Tx; ++t)
      for (index_t a = 0; a < A; ++a) dkeys[(b * Tx + t) * A + a] += dkeys_t[(b * A + a) * Txs + t];
}

/// The additive score of one row: u[a, t'] = tanh(K'^T[a, t'] + qproj[a]) and s[t'] = bias + Σ_a w_v[a] u[a, t']
/// (summed over a in order) for t' < m, each pass along Tx' on whole packets (m: the kept steps rounded up to the
/// layout's width; the entries past the kept ones are finite and unused).
///   kt [A, Tx']: the row's keys in the score layout;  qproj, w_v [A];  u [A, Tx'] out;  s [m] out
template <typename T>
void additive_scores_row(const T* kt, const T* qproj, const T* w_v, T bias, index_t m, index_t A, index_t Txs, T* u,
                         T* s) {
  namespace ei = Eigen::internal;
  std::fill(s, s + m, bias);
  for (index_t a = 0; a < A; ++a) {
    const T* k_a = kt + a * Txs;
    T* u_a = u + a * Txs;
    const T q_a = qproj[a], v_a = w_v[a];
    lanes::for_each<T>(m, [&](auto lane, index_t j) {
      using P = decltype(lane);
      const P u_j = act::tanh(ei::padd(lanes::load<P>(k_a + j), act::splat<P>(q_a)));
      lanes::store(u_a + j, u_j);
      lanes::store(s + j, ei::pmadd(act::splat<P>(v_a), u_j, lanes::load<P>(s + j)));
    });
  }
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

/// attention_project_query over many steps: the product `projection` = StepProduct<T, true>(w_q, A, Dq, R, steps),
/// which packs W_q once for every step of a call, for the R = b1 - b0 rows [b0, b1) of query and qproj (b1 < 0: B).
template <typename T>
void attention_project_query(const AttentionOperands<T>& op, StepProduct<T, true>& projection, const T* query,
                             T* qproj, index_t b0 = 0, index_t b1 = -1) {
  const index_t A = op.K;
  if (b1 < 0) b1 = op.B;
  for (index_t b = b0; b < b1; ++b) {
    if (op.b_a)
      std::copy_n(op.b_a, A, qproj + b * A);
    else
      std::fill(qproj + b * A, qproj + (b + 1) * A, T(0));
  }
  projection.accumulate(query + b0 * op.Dq, op.Dq, qproj + b0 * A, A);
}

/// Forward of one step for every row, after attention_project_query (additive):
///   query [B, Dq] (dot: the queries; additive: unused);  qproj [B, A] (additive: q W_q^T + b_a; dot: unused);
///   alpha [B, Tx] out;  context [B, Dv] out;  b0, b1: only rows [b0, b1) are read and written (b1 < 0: B).
template <typename T>
void attention_forward_rows(const AttentionOperands<T>& op, const T* query, const T* qproj, T* alpha, T* context,
                            index_t b0 = 0, index_t b1 = -1) {
  using namespace attention_lanes;
  op.check();
  const index_t Tx = op.Tx, K = op.K, Dv = op.Dv;
  if (b1 < 0) b1 = op.B;
  for_each_row(b1 - b0, op.row_width(), [&](index_t r) {
    const index_t b = b0 + r;
    const index_t n = op.length(b);
    T* e = alpha + b * Tx;
    T* ctx = context + b * Dv;
    const T* keys = op.keys_of(b);
    if (op.additive()) {
      const index_t Txs = op.score_row();
      AttentionRowScratch<T>& scratch = AttentionRowScratch<T>::of_this_thread(K * Txs, Txs);
      T* s = scratch.row(0, Txs);
      additive_scores_row(keys, qproj + b * K, op.w_v, op.score_bias ? *op.score_bias : T(0),
                          score_row_length<T>(n), K, Txs, scratch.u.data(), s);
      for (index_t t = 0; t < n; ++t)  // relu keeps a NaN (as torch's)
        e[t] = !op.relu_energy || s[t] > T(0) ? s[t] : (s[t] == s[t] ? T(0) : s[t]);
    } else {
      for (index_t t = 0; t < n; ++t) e[t] = dot(query + b * op.Dq, keys + t * K, K);
    }
    softmax_row_in_place(e, n, Tx);
    weighted_sum_rows(e, 1, op.values_of(b), Dv, n, Dv, ctx, false);
  });
}

/// The per-row accumulators of the step backward's outputs; every pointer may be null where the caller needs no
/// such gradient (dcontext/dalpha null = zeros).
template <typename T>
struct AttentionRowGradients {
  T* dqsum = nullptr;             ///< additive: [B, A] out (written): Σ_t' dpre[b, t'], the query side's gradient
  T* dquery = nullptr;            ///< dot: [B, Dq] += Σ_t' de[b, t'] keys[b, t']
  T* dkeys = nullptr;             ///< dot: [N, Tx, Dq] += de ⊗ q (into each row's source)
  T* dscore_keys = nullptr;       ///< additive: dK'^T [N, A, Tx'] += dpre (the score layout; add_score_layout_to_keys)
  T* dvalues = nullptr;           ///< [N, Tx, Dv] += α ⊗ dcontext
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
///   dalpha [B, Tx] or null;  g: the outputs;  b0, b1: only rows [b0, b1) (and their sources' blocks of dkeys,
///   dscore_keys, dvalues) are read and written (b1 < 0: B).
template <typename T>
void attention_backward_rows(const AttentionOperands<T>& op, const T* query, const T* qproj, const T* alpha,
                             const T* dcontext, const T* dalpha, const AttentionRowGradients<T>& g, index_t b0 = 0,
                             index_t b1 = -1) {
  using namespace attention_lanes;
  op.check();
  if (op.additive() ? g.dkeys != nullptr : g.dscore_keys != nullptr)
    throw std::logic_error("rnncore internal error: attention gradients: the additive score accumulates dK'^T into "
                           "dscore_keys, the dot score into dkeys");
  if (op.sources && (g.dkeys || g.dscore_keys || g.dvalues))  // rows of one source would add into one block at once
    throw std::logic_error("rnncore internal error: attention gradients: a row -> source map takes no key or value "
                           "gradients (its rows run on several threads)");
  namespace ei = Eigen::internal;
  const index_t Tx = op.Tx, K = op.K, Dv = op.Dv;
  if (b1 < 0) b1 = op.B;
  for_each_row(b1 - b0, op.row_width(), [&](index_t r) {
    const index_t b = b0 + r;
    const index_t n = op.length(b);
    if (op.additive() && g.dqsum) std::fill(g.dqsum + b * K, g.dqsum + (b + 1) * K, T(0));
    if (n == 0) return;  // attends to nothing: no gradient
    const index_t Txs = op.additive() ? op.score_row() : Tx, m = op.additive() ? score_row_length<T>(n) : n;
    AttentionRowScratch<T>& scratch = AttentionRowScratch<T>::of_this_thread(op.additive() ? K * Txs : 0, Txs);
    const T* a = alpha + b * Tx;
    const T* values = op.values_of(b);
    const T* dctx = dcontext ? dcontext + b * Dv : nullptr;
    T* de = scratch.row(0, Txs);
    for (index_t t = 0; t < n; ++t) {
      de[t] = dctx ? dot(dctx, values + t * Dv, Dv) : T(0);
      if (dalpha) de[t] += dalpha[b * Tx + t];
      if (dctx && g.dvalues) axpy(a[t], dctx, g.dvalues + (values - op.values) + t * Dv, Dv);
    }
    T weighted = 0;
    for (index_t t = 0; t < n; ++t) weighted += a[t] * de[t];
    for (index_t t = 0; t < n; ++t) de[t] = a[t] * (de[t] - weighted);
    const T* keys = op.keys_of(b);
    T* dkeys = op.additive() ? (g.dscore_keys ? g.dscore_keys + (keys - op.score_keys) : nullptr)
                             : (g.dkeys ? g.dkeys + (keys - op.keys) : nullptr);
    if (!op.additive()) {
      const T* q = query + b * op.Dq;
      if (g.dquery) weighted_sum_rows(de, 1, keys, K, n, K, g.dquery + b * op.Dq, true);
      if (dkeys)
        for (index_t t = 0; t < n; ++t) axpy(de[t], q, dkeys + t * K, K);
      return;
    }
    // ds = de, or de ⊙ [s > 0] (relu' from its output; s recomputed with u)
    T* u = scratch.u.data();
    T* dpre = scratch.row(1, Txs);
    additive_scores_row(keys, qproj + b * K, op.w_v, op.score_bias ? *op.score_bias : T(0), m, K, Txs, u, dpre);
    T dbias = 0;
    for (index_t t = 0; t < n; ++t) {
      if (op.relu_energy && !(dpre[t] > T(0))) de[t] = T(0);
      dbias += de[t];
    }
    std::fill(de + n, de + m, T(0));  // the padding past the kept steps adds nothing below
    const T* ds = de;
    using Packet = typename ei::packet_traits<T>::type;
    constexpr index_t W = ei::unpacket_traits<Packet>::size;
    for (index_t a_unit = 0; a_unit < K; ++a_unit) {  // per attention unit, along Tx
      const T* u_a = u + a_unit * Txs;
      const T v_a = op.w_v[a_unit];
      T* dk_a = dkeys ? dkeys + a_unit * Txs : nullptr;
      // dpre = ds w_v ⊙ (1 - u²) into dK', with Σ dpre and Σ ds u summed as they go (whole packets in registers,
      // then the tail lanes: sum's and dot's order, so the same bits as those passes over a stored dpre)
      Packet dq_acc = ei::pset1<Packet>(T(0)), dv_acc = dq_acc;
      index_t j = 0;
      for (; W > 1 && j + W <= m; j += W) {
        const Packet ds_j = ei::ploadu<Packet>(ds + j), u_j = ei::ploadu<Packet>(u_a + j);
        const Packet d = ei::pmul(ei::pmul(ds_j, ei::pset1<Packet>(v_a)), act::tanh_grad_from_output(u_j));
        if (dk_a) ei::pstoreu(dk_a + j, ei::padd(ei::ploadu<Packet>(dk_a + j), d));
        dq_acc = ei::padd(d, dq_acc);
        dv_acc = ei::pmadd(ds_j, u_j, dv_acc);
      }
      T dq_sum = j > 0 ? ei::predux(dq_acc) : T(0), dv_sum = j > 0 ? ei::predux(dv_acc) : T(0);
      lanes::for_each<T>(m - j, [&](auto lane, index_t k) {
        using P = decltype(lane);
        const P ds_k = lanes::load<P>(ds + j + k), u_k = lanes::load<P>(u_a + j + k);
        const P d = ei::pmul(ei::pmul(ds_k, act::splat<P>(v_a)), act::tanh_grad_from_output(u_k));
        if (dk_a) lanes::store(dk_a + j + k, ei::padd(lanes::load<P>(dk_a + j + k), d));
        dq_sum += lane_sum(d);
        dv_sum += lane_sum(ei::pmul(ds_k, u_k));
      });
      if (g.dqsum) g.dqsum[b * K + a_unit] = dq_sum;
      if (g.dw_v_rows) g.dw_v_rows[b * K + a_unit] += dv_sum;
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

/// attention_query_gradient over many steps: the product `gradient` = StepProduct<T, false>(w_q, A, Dq, R), which
/// packs W_q once for every step of a call, for the R rows of dqsum and dquery from row b0.
template <typename T>
void attention_query_gradient(const AttentionOperands<T>& op, StepProduct<T, false>& gradient, const T* dqsum,
                              T* dquery, index_t b0 = 0) {
  gradient.accumulate(dqsum + b0 * op.K, op.K, dquery + b0 * op.Dq, op.Dq);
}

/// out [C] += Σ_r rows [R, C], rows added in order (the per-row accumulators' final sum: the same bits on any
/// thread count).
template <typename T>
void sum_rows_into(const T* rows, index_t R, index_t C, T* out) {
  for (index_t r = 0; r < R; ++r)
    for (index_t c = 0; c < C; ++c) out[c] += rows[r * C + c];
}

}  // namespace rnncore::detail
