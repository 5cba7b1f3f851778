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
// A row's passes: forward, the scores (additive_scores_row: up to four packets of s held in registers over the A
// units), relu, softmax_row and the context (weighted_sum_rows: Dv in packets held over t'), all on whole packets of
// its m = score_row_length(n) entries (n: its kept steps; the row's own scratch, α copied out); backward, dα[t'] =
// dcontext · values[t'] and the dot score's q · keys[t'] by dot_rows (a packet per t', a packet's width of t' summed
// at once by lane_sums: no horizontal sum per t'), the softmax's and relu's backward, then per unit one pass that
// recomputes u and puts dpre into dK', its sums Σ dpre and Σ ds u kept as packets and reduced a packet's width of
// units at once.
// What a step keeps for its backward: qproj = q W_q^T + b_a [B, A] (additive), α [B, Tx] and, with relu energies,
// e [B, Tx] (relu' from it); u is recomputed unit by unit inside the backward's pass, so no [A, Tx'] tensor is
// stored anywhere (forward: each unit's u only feeds s). A sample with lengths[b] = 0 attends to nothing:
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

/// The lane type of a row's passes along Tx: the widest float packet (double runs scalars).
template <typename T>
using RowPacket = std::conditional_t<std::is_same_v<T, float>, typename Eigen::internal::packet_traits<float>::type, T>;

/// The packet width the score layout's rows are padded to: RowPacket's.
template <typename T>
constexpr index_t score_layout_width() {
  return Eigen::internal::unpacket_traits<RowPacket<T>>::size;
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

/// The packet whose lane k is the sum of acc[k]'s lanes, for as many accumulators acc[0..W) as a packet has lanes:
/// W horizontal sums at once, by a tree of shuffles and adds that transposes as it sums (AVX-512: 46 instructions
/// for 16 sums, where a predux each takes about 9); a scalar is its own sum.
template <typename P>
EIGEN_ALWAYS_INLINE P lane_sums(const P* acc) {
  if constexpr (std::is_arithmetic_v<P>) {
    return acc[0];
  } else {
#if defined(EIGEN_VECTORIZE_AVX512)
    if constexpr (std::is_same_v<P, ei::Packet16f>) {
      // each step halves the lanes summed per accumulator and doubles the accumulators per packet
      __m512 h[8], q[4], e[2];
      for (int i = 0; i < 8; ++i)  // 256-bit halves: [acc 2i's 8 partial sums | acc 2i+1's]
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0xEE));
      for (int i = 0; i < 4; ++i)  // 128-bit blocks: acc 4i … 4i+3, 4 partial sums each
        q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xDD));
      for (int i = 0; i < 2; ++i)  // block k: acc 8i+k, 8i+4+k, 2 partial sums each
        e[i] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0xEE));
      // block k: acc k, 4+k, 8+k, 12+k, summed; then lane 4k+l (acc 4l+k) moved to lane 4l+k
      const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xDD));
      return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), s);
    }
#endif
#if defined(EIGEN_VECTORIZE_AVX)
    if constexpr (std::is_same_v<P, ei::Packet8f>) {
      // hadd twice: [acc 0 … 3's sums over lanes 0-3 | over lanes 4-7], the same for acc 4 … 7; then the halves
      const __m256 lo = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
      const __m256 hi = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
      return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
    }
#endif
    using T = typename ei::unpacket_traits<P>::type;
    constexpr index_t W = ei::unpacket_traits<P>::size;
    T sums[W];
    for (index_t k = 0; k < W; ++k) sums[k] = ei::predux(acc[k]);
    return ei::ploadu<P>(sums);
  }
}

/// out[t] = x · rows[t * stride …] over cols entries for t < n, and out[t] = 0 for n <= t < n rounded up to the
/// RowPacket width (out has that many entries): each row's products summed in one packet (the columns' whole
/// packets; the tail in narrower packets and scalars, each reduced), W rows at a time reduced together by lane_sums.
template <typename T>
void dot_rows(const T* x, const T* rows, index_t stride, index_t n, index_t cols, T* out) {
  using P = RowPacket<T>;
  constexpr index_t W = ei::unpacket_traits<P>::size;
  const index_t whole = cols / W * W;
  for (index_t t0 = 0; t0 < n; t0 += W) {
    const index_t c = std::min(W, n - t0);
    P acc[W];
    T tail[W];
    for (index_t k = 0; k < W; ++k) {
      P a = ei::pset1<P>(T(0));
      T rest = 0;
      if (k < c) {
        const T* r = rows + (t0 + k) * stride;
        for (index_t j = 0; j < whole; j += W) a = ei::pmadd(lanes::load<P>(x + j), lanes::load<P>(r + j), a);
        lanes::for_each<T>(cols - whole, [&](auto lane, index_t j) {
          using Q = decltype(lane);
          rest += lane_sum(ei::pmul(lanes::load<Q>(x + whole + j), lanes::load<Q>(r + whole + j)));
        });
      }
      acc[k] = a, tail[k] = rest;
    }
    lanes::store(out + t0, lane_sums(acc));
    if (whole < cols)
      for (index_t k = 0; k < c; ++k) out[t0 + k] += tail[k];
  }
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

/// A row's scratch, one per thread (rows run on for_each_row's threads): one row of Tx' (the forward's energies
/// then α; the backward's dα, de then ds). Grown on demand and kept by the thread.
template <typename T>
struct AttentionRowScratch {
  std::vector<T> rows;
  T* row(index_t k, index_t tx) { return rows.data() + k * tx; }
  static AttentionRowScratch& of_this_thread(index_t tx) {
    thread_local AttentionRowScratch scratch;
    if (index_t(scratch.rows.size()) < tx) scratch.rows.resize(tx);
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

/// additive_scores_row on NB packets of t' from j0: the NB packets of s held in registers over every unit (an
/// update of s through memory per unit would chain each unit's store to the next one's load).
template <int NB, typename T>
EIGEN_ALWAYS_INLINE void additive_scores_block(const T* kt, const T* qproj, const T* w_v, T bias, index_t j0,
                                               index_t A, index_t Txs, T* s) {
  namespace ei = Eigen::internal;
  using P = RowPacket<T>;
  constexpr index_t W = ei::unpacket_traits<P>::size;
  P acc[NB];
  for (int i = 0; i < NB; ++i) acc[i] = ei::pset1<P>(bias);
  for (index_t a = 0; a < A; ++a) {
    const P q_a = ei::pset1<P>(qproj[a]), v_a = ei::pset1<P>(w_v[a]);
    for (int i = 0; i < NB; ++i) {
      const index_t j = j0 + i * W;
      const P u_j = act::tanh(ei::padd(lanes::load<P>(kt + a * Txs + j), q_a));
      acc[i] = ei::pmadd(v_a, u_j, acc[i]);
    }
  }
  for (int i = 0; i < NB; ++i) lanes::store(s + j0 + i * W, acc[i]);
}

/// The additive score of one row: s[t'] = bias + Σ_a w_v[a] u[a, t'] with u[a, t'] = tanh(K'^T[a, t'] + qproj[a])
/// (summed over a in order) for t' < m, on whole packets (m: the kept steps rounded up to the layout's width; the
/// entries past the kept ones are finite and unused), up to four packets of s at a time over every unit.
///   kt [A, Tx']: the row's keys in the score layout;  qproj, w_v [A];  s [m] out
template <typename T>
void additive_scores_row(const T* kt, const T* qproj, const T* w_v, T bias, index_t m, index_t A, index_t Txs, T* s) {
  constexpr index_t W = score_layout_width<T>();
  index_t j0 = 0;
  for (; j0 + 4 * W <= m; j0 += 4 * W) additive_scores_block<4>(kt, qproj, w_v, bias, j0, A, Txs, s);
  switch ((m - j0) / W) {
    case 3: additive_scores_block<3>(kt, qproj, w_v, bias, j0, A, Txs, s); break;
    case 2: additive_scores_block<2>(kt, qproj, w_v, bias, j0, A, Txs, s); break;
    case 1: additive_scores_block<1>(kt, qproj, w_v, bias, j0, A, Txs, s); break;
    default: break;
  }
}

/// α over a row's n kept entries from the energies e (in place; e has m >= n entries, the ones past n scratch):
/// α = exp(e - max) / Σ exp(e - max) on t' < n, 0 on n <= t' < m; n = 0 gives all zeros. Whole packets up to m,
/// then scalars (none when m is a multiple of the packet width, as in the score layout's rows); the entries past n
/// enter as -inf (exp gives 0). A NaN energy makes the kept entries NaN (it propagates through the sum, as in
/// PyTorch); so does +inf, or every kept energy -inf.
template <typename T>
void softmax_row(T* e, index_t n, index_t m) {
  namespace ei = Eigen::internal;
  using P = RowPacket<T>;
  constexpr index_t W = ei::unpacket_traits<P>::size;
  if (n == 0) {
    std::fill(e, e + m, T(0));
    return;
  }
  std::fill(e + n, e + m, -std::numeric_limits<T>::infinity());
  const index_t whole = m / W * W;
  T row_max = -std::numeric_limits<T>::infinity();
  if (whole > 0) {
    P top = lanes::load<P>(e);
    for (index_t j = W; j < whole; j += W) top = ei::pmax(top, lanes::load<P>(e + j));
    row_max = ei::predux_max(top);
  }
  for (index_t j = whole; j < m; ++j) row_max = std::max(row_max, e[j]);
  const P shift = ei::pset1<P>(row_max);
  P total = ei::pset1<P>(T(0));
  for (index_t j = 0; j < whole; j += W) {
    const P x = attention_lanes::exp(ei::psub(lanes::load<P>(e + j), shift));
    lanes::store(e + j, x);
    total = ei::padd(total, x);
  }
  T sum = attention_lanes::lane_sum(total);
  for (index_t j = whole; j < m; ++j) sum += e[j] = attention_lanes::exp(e[j] - row_max);
  const T inverse = T(1) / sum;
  for (index_t j = 0; j < whole; j += W) lanes::store(e + j, ei::pmul(lanes::load<P>(e + j), ei::pset1<P>(inverse)));
  for (index_t j = whole; j < m; ++j) e[j] *= inverse;
  std::fill(e + n, e + m, T(0));  // (NaN there when the kept entries are)
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
///   alpha [B, Tx] out;  context [B, Dv] out;  energies [B, Tx] out or null: the additive score's e = relu(s) on
///   each row's kept entries (what a backward with relu energies reads; entries past them are not written);
///   b0, b1: only rows [b0, b1) are read and written (b1 < 0: B).
template <typename T>
void attention_forward_rows(const AttentionOperands<T>& op, const T* query, const T* qproj, T* alpha, T* context,
                            T* energies, index_t b0 = 0, index_t b1 = -1) {
  using namespace attention_lanes;
  op.check();
  const index_t Tx = op.Tx, K = op.K, Dv = op.Dv;
  if (b1 < 0) b1 = op.B;
  for_each_row(b1 - b0, op.row_width(), [&](index_t r) {
    const index_t b = b0 + r;
    const index_t n = op.length(b), m = score_row_length<T>(n);
    const index_t Txs = op.score_row();
    AttentionRowScratch<T>& scratch = AttentionRowScratch<T>::of_this_thread(Txs);
    T* e = scratch.row(0, Txs);  // the energies, then α (whole packets up to m)
    const T* keys = op.keys_of(b);
    if (op.additive()) {
      additive_scores_row(keys, qproj + b * K, op.w_v, op.score_bias ? *op.score_bias : T(0), m, K, Txs, e);
      if (op.relu_energy)
        lanes::for_each<T>(m, [&](auto lane, index_t j) {
          using P = decltype(lane);
          lanes::store(e + j, act::relu(lanes::load<P>(e + j)));  // keeps a NaN (as torch's)
        });
      if (energies) std::copy_n(e, n, energies + b * Tx);
    } else {
      dot_rows(query + b * op.Dq, keys, K, n, K, e);
    }
    softmax_row(e, n, m);
    std::copy_n(e, n, alpha + b * Tx);
    std::fill(alpha + b * Tx + n, alpha + (b + 1) * Tx, T(0));
    weighted_sum_rows(e, 1, op.values_of(b), Dv, n, Dv, context + b * Dv, false);
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
///   additive: ds = de, or de ⊙ [e > 0] for relu (relu' from its output e, kept by the forward);
///             u recomputed from qproj, unit by unit;
///             dscore_bias += Σ ds;  dw_v += Σ ds u;  dpre = ds w_v ⊙ (1 - u²) (tanh' = 1 - u²);
///             dK'[t'] += dpre;  dqsum = Σ_t' dpre   (then dquery = dqsum W_q, dW_q = Σ dqsum^T q, db_a = Σ dqsum)
///   dot:      dquery += Σ_t' de[t'] keys[t'];  dkeys[t'] += de[t'] q
///   query [B, Dq] (dot);  qproj [B, A] (additive);  alpha [B, Tx]: the forward's;  energies [B, Tx]: the forward's
///   (attention_forward_rows' e; additive with relu energies, else unused);  dcontext [B, Dv] or null;
///   dalpha [B, Tx] or null;  g: the outputs;  b0, b1: only rows [b0, b1) (and their sources' blocks of dkeys,
///   dscore_keys, dvalues) are read and written (b1 < 0: B).
template <typename T>
void attention_backward_rows(const AttentionOperands<T>& op, const T* query, const T* qproj, const T* alpha,
                             const T* energies, const T* dcontext, const T* dalpha, const AttentionRowGradients<T>& g,
                             index_t b0 = 0, index_t b1 = -1) {
  using namespace attention_lanes;
  op.check();
  if (op.additive() ? g.dkeys != nullptr : g.dscore_keys != nullptr)
    throw std::logic_error("rnncore internal error: attention gradients: the additive score accumulates dK'^T into "
                           "dscore_keys, the dot score into dkeys");
  if (op.additive() && op.relu_energy && !energies)
    throw std::logic_error("rnncore internal error: attention gradients: relu energies need the forward's energies");
  if (op.sources && (g.dkeys || g.dscore_keys || g.dvalues))  // rows of one source would add into one block at once
    throw std::logic_error("rnncore internal error: attention gradients: a row -> source map takes no key or value "
                           "gradients (its rows run on several threads)");
  namespace ei = Eigen::internal;
  const index_t Tx = op.Tx, K = op.K, Dv = op.Dv;
  if (b1 < 0) b1 = op.B;
  for_each_row(b1 - b0, op.row_width(), [&](index_t r) {
    const index_t b = b0 + r;
    const index_t n = op.length(b), m = score_row_length<T>(n);
    if (op.additive() && g.dqsum) std::fill(g.dqsum + b * K, g.dqsum + (b + 1) * K, T(0));
    if (n == 0) return;  // attends to nothing: no gradient
    const index_t Txs = op.score_row();
    AttentionRowScratch<T>& scratch = AttentionRowScratch<T>::of_this_thread(Txs);
    const T* a = alpha + b * Tx;
    const T* values = op.values_of(b);
    const T* dctx = dcontext ? dcontext + b * Dv : nullptr;
    T* de = scratch.row(0, Txs);  // dα, then de, then ds (whole packets up to m, zeros past n)
    if (dctx)
      dot_rows(dctx, values, Dv, n, Dv, de);
    else
      std::fill(de, de + m, T(0));
    if (dalpha) axpy(T(1), dalpha + b * Tx, de, n);
    if (dctx && g.dvalues)
      for (index_t t = 0; t < n; ++t) axpy(a[t], dctx, g.dvalues + (values - op.values) + t * Dv, Dv);
    const T weighted = dot(a, de, n);
    lanes::for_each<T>(n, [&](auto lane, index_t t) {
      using P = decltype(lane);
      lanes::store(de + t, ei::pmul(lanes::load<P>(a + t), ei::psub(lanes::load<P>(de + t), act::splat<P>(weighted))));
    });
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
    // ds = de, or de ⊙ [e > 0] (relu' from its output, the forward's e; 0 for a NaN e too)
    if (op.relu_energy) {
      const T* e = energies + b * Tx;
      for (index_t t = 0; t < n; ++t)
        if (!(e[t] > T(0))) de[t] = T(0);
    }
    using P = RowPacket<T>;
    constexpr index_t W = ei::unpacket_traits<P>::size;
    P dbias = ei::pset1<P>(T(0));
    for (index_t j = 0; j < m; j += W) dbias = ei::padd(dbias, lanes::load<P>(de + j));
    const T* ds = de;
    // per attention unit along Tx, one pass: u = tanh(K'^T + qproj) recomputed, dpre = ds w_v ⊙ (1 - u²) into dK',
    // Σ dpre and Σ ds u kept in a packet per unit, and W units' packets reduced at once (lane_sums)
    const T* q = qproj + b * K;
    for (index_t a0 = 0; a0 < K; a0 += W) {
      const index_t c = std::min(W, K - a0);
      P dq[W], dv[W];
      for (index_t k = 0; k < W; ++k) {
        P dq_acc = ei::pset1<P>(T(0)), dv_acc = dq_acc;
        if (k < c) {
          const T* k_a = keys + (a0 + k) * Txs;
          const P q_a = ei::pset1<P>(q[a0 + k]), v_a = ei::pset1<P>(op.w_v[a0 + k]);
          T* dk_a = dkeys ? dkeys + (a0 + k) * Txs : nullptr;
          for (index_t j = 0; j < m; j += W) {
            const P ds_j = lanes::load<P>(ds + j), u_j = act::tanh(ei::padd(lanes::load<P>(k_a + j), q_a));
            const P d = ei::pmul(ei::pmul(ds_j, v_a), act::tanh_grad_from_output(u_j));
            if (dk_a) lanes::store(dk_a + j, ei::padd(lanes::load<P>(dk_a + j), d));
            dq_acc = ei::padd(d, dq_acc);
            dv_acc = ei::pmadd(ds_j, u_j, dv_acc);
          }
        }
        dq[k] = dq_acc, dv[k] = dv_acc;
      }
      T dq_sums[W], dv_sums[W];
      lanes::store(dq_sums, lane_sums(dq));
      lanes::store(dv_sums, lane_sums(dv));
      for (index_t k = 0; k < c; ++k) {
        if (g.dqsum) g.dqsum[b * K + a0 + k] = dq_sums[k];
        if (g.dw_v_rows) g.dw_v_rows[b * K + a0 + k] += dv_sums[k];
      }
    }
    if (g.dscore_bias_rows) g.dscore_bias_rows[b] += lane_sum(dbias);
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
