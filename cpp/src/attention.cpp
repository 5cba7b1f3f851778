// Masked softmax over the last axis, and the fused masked softmax + context (declared in rnncore/attention.hpp).
#include "rnncore/attention.hpp"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "attention_steps.hpp"
#include "linalg/arrays.hpp"
#include "parallel.hpp"
#include "rnncore/activations.hpp"

namespace rnncore {

using namespace detail;

namespace {

/// body(lane, j) over j < n: lanes::for_each for float (packets of every width, then scalars); for double, whole
/// packets of the widest width then scalars (lanes runs double as scalars). Either split depends on n only.
template <typename T, typename Body>
EIGEN_ALWAYS_INLINE void for_each_packet(index_t n, Body&& body) {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  constexpr index_t width = ei::unpacket_traits<Packet>::size;
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
    lanes::for_each<T>(n, body);
    return;
  } else if constexpr (width > 1) {
    for (; j + width <= n; j += width) body(Packet{}, j);
  }
  for (; j < n; ++j) body(T{}, j);
}

/// One row of the masked softmax: a_r [cols] = softmax of e_r [cols] over the entries kept(j) says are kept, 0 on
/// the others; a row with nothing kept gets zeros.
template <typename T, typename Kept>
void masked_softmax_row(const T* e_r, index_t cols, Kept&& kept, T* a_r) {
  namespace ei = Eigen::internal;
  T row_max = -std::numeric_limits<T>::infinity();
  bool any_kept = false;
  for (index_t j = 0; j < cols; ++j)
    if (kept(j)) {
      any_kept = true;
      if (!(e_r[j] <= row_max)) row_max = e_r[j];  // NaN wins, so it propagates to the row's kept entries
    }
  if (!any_kept) {  // a fully masked row attends to nothing
    std::fill(a_r, a_r + cols, T(0));
    return;
  }
  // exp(e - max) (<= 1 on kept entries: never overflows) packet by packet (for_each_packet): the split depends on
  // cols only, so the bits do not depend on the arrays' addresses (Eigen's array exp peels an unaligned head into
  // scalar std::exp), and a row of 30 floats runs 28 in packets where Eigen's tail ran 14 as scalars.
  for_each_packet<T>(cols, [&](auto lane, index_t j) {
    using P = decltype(lane);
    lanes::store(a_r + j, attention_lanes::exp(ei::psub(lanes::load<P>(e_r + j), act::splat<P>(row_max))));
  });
  T total = 0;
  for (index_t j = 0; j < cols; ++j)
    if (kept(j)) total += a_r[j];
  for_each_packet<T>(cols, [&](auto lane, index_t j) {  // a division per entry (not a product by 1/total), in packets
    using P = decltype(lane);
    lanes::store(a_r + j, ei::pdiv(lanes::load<P>(a_r + j), act::splat<P>(total)));
  });
  for (index_t j = 0; j < cols; ++j)
    if (!kept(j)) a_r[j] = T(0);  // exactly 0, whatever the masked score (or a NaN total) made of it
}

/// ctx [Dv] = Σ_{t < n, a[t] ≠ 0} a[t] · values[t] (t in order): each run of nonzero weights is one weighted sum of
/// consecutive rows added to the last, so rows with a = 0 (masked) are never read; no run gives zeros.
template <typename T>
void context_row(const T* a, const T* values, index_t n, index_t Dv, T* ctx) {
  bool written = false;
  for (index_t t = 0; t < n;) {
    if (a[t] == T(0)) {
      ++t;
      continue;
    }
    index_t end = t + 1;
    while (end < n && a[end] != T(0)) ++end;
    attention_lanes::weighted_sum_rows(a + t, 1, values + t * Dv, Dv, end - t, Dv, ctx, written);
    written = true;
    t = end;
  }
  if (!written) std::fill_n(ctx, Dv, T(0));
}

}  // namespace

template <typename T>
void masked_softmax(index_t rows, index_t cols, const T* e, const std::uint8_t* mask, T* alpha) {
  FlushDenormalsScope fp_mode;
  for (index_t r = 0; r < rows; ++r) {
    const std::uint8_t* m = mask ? mask + r * cols : nullptr;
    masked_softmax_row(e + r * cols, cols, [m](index_t j) { return m == nullptr || m[j] != 0; }, alpha + r * cols);
  }
}

template <typename T>
void masked_softmax_backward(index_t rows, index_t cols, const T* alpha, const T* dalpha, T* de) {
  FlushDenormalsScope fp_mode;
  for (index_t r = 0; r < rows; ++r) {
    const ConstArrayView<T> a_r(alpha + r * cols, cols), da_r(dalpha + r * cols, cols);
    T dot = 0;  // a plain loop: the same summation order whatever the arrays' addresses
    for (index_t j = 0; j < cols; ++j) dot += a_r[j] * da_r[j];
    ArrayView<T>(de + r * cols, cols) = a_r * (da_r - dot);
  }
}

template <typename T>
void attention_context(index_t B, index_t Ty, index_t Tx, index_t Dv, const T* e, const index_t* lengths,
                       const std::uint8_t* mask, const T* values, T* alpha, T* context) {
  const double rows = double(B) * double(Ty);
  const KernelScope scope(rows * double(Tx) * (2.0 * double(Dv) + tuning::kPointwiseOpsPerElement));
  for_each_row(B, Ty * Tx * (Dv + 1), [&](index_t b) {
    const index_t n = lengths ? lengths[b] : Tx;
    for (index_t r = b * Ty; r < (b + 1) * Ty; ++r) {
      const std::uint8_t* m = mask ? mask + r * Tx : nullptr;
      masked_softmax_row(e + r * Tx, Tx, [n, m](index_t t) { return t < n && (m == nullptr || m[t] != 0); },
                         alpha + r * Tx);
      context_row(alpha + r * Tx, values + b * Tx * Dv, n, Dv, context + r * Dv);
    }
  });
}

template <typename T>
void attention_context_backward(index_t B, index_t Ty, index_t Tx, index_t Dv, const T* alpha, const T* values,
                                const T* dcontext, const T* dalpha, T* de, T* dvalues) {
  const KernelScope scope(4.0 * double(B) * double(Ty) * double(Tx) * double(Dv));
  for_each_row(B, 2 * Ty * Tx * Dv, [&](index_t b) {
    const T* v_b = values + b * Tx * Dv;
    for (index_t r = b * Ty; r < (b + 1) * Ty; ++r) {  // de, row by row
      const T* a = alpha + r * Tx;
      T* de_r = de + r * Tx;
      T weighted = 0;  // Σ α dα in t's order
      for (index_t t = 0; t < Tx; ++t) {
        if (a[t] == T(0)) {
          de_r[t] = T(0);
          continue;
        }
        de_r[t] = attention_lanes::dot(dcontext + r * Dv, v_b + t * Dv, Dv) + (dalpha ? dalpha[r * Tx + t] : T(0));
        weighted += a[t] * de_r[t];
      }
      for (index_t t = 0; t < Tx; ++t)
        if (a[t] != T(0)) de_r[t] = a[t] * (de_r[t] - weighted);
    }
    const T* a_b = alpha + b * Ty * Tx;  // dvalues[b, t] = Σ_y α[y, t] dcontext[y]: column t of α_b, Ty rows
    for (index_t t = 0; t < Tx; ++t) {
      T* out = dvalues + (b * Tx + t) * Dv;
      bool attended = false;
      for (index_t y = 0; y < Ty && !attended; ++y) attended = a_b[y * Tx + t] != T(0);
      if (attended)
        attention_lanes::weighted_sum_rows(a_b + t, Tx, dcontext + b * Ty * Dv, Dv, Ty, Dv, out, false);
      else
        std::fill_n(out, Dv, T(0));
    }
  });
}

template void masked_softmax<float>(index_t, index_t, const float*, const std::uint8_t*, float*);
template void masked_softmax<double>(index_t, index_t, const double*, const std::uint8_t*, double*);
template void masked_softmax_backward<float>(index_t, index_t, const float*, const float*, float*);
template void masked_softmax_backward<double>(index_t, index_t, const double*, const double*, double*);
template void attention_context<float>(index_t, index_t, index_t, index_t, const float*, const index_t*,
                                       const std::uint8_t*, const float*, float*, float*);
template void attention_context<double>(index_t, index_t, index_t, index_t, const double*, const index_t*,
                                        const std::uint8_t*, const double*, double*, double*);
template void attention_context_backward<float>(index_t, index_t, index_t, index_t, const float*, const float*,
                                                const float*, const float*, float*, float*);
template void attention_context_backward<double>(index_t, index_t, index_t, index_t, const double*, const double*,
                                                 const double*, const double*, double*, double*);

}  // namespace rnncore
