// Row-wise log-softmax and top-k selection for decoding, and the softmax cross-entropy for training (declared in
// rnncore/decoding.hpp).
#include "rnncore/decoding.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "attention_steps.hpp"
#include "linalg/arrays.hpp"
#include "parallel.hpp"
#include "rnncore/activations.hpp"

namespace rnncore {

using namespace detail;

namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

/// The k best of one row so far, best first; an entry enters only when strictly better than the k-th (the scan runs
/// in increasing column order, so an equal later column ranks after the earlier ones: the stable sort's tie rule).
struct RowBest {
  double* values;
  std::int64_t* columns;
  index_t k, size = 0;

  double threshold() const { return size < k ? kMinusInf : values[k - 1]; }

  void offer(double v, index_t column) {
    if (size == k && !(v > values[k - 1])) return;
    index_t pos = size < k ? size++ : k - 1;  // the slot freed (or the new one), then sifted up past worse entries
    while (pos > 0 && v > values[pos - 1]) {
      values[pos] = values[pos - 1];
      columns[pos] = columns[pos - 1];
      --pos;
    }
    values[pos] = v;
    columns[pos] = column;
  }
};

}  // namespace

template <typename T>
void top_k_rows(index_t R, index_t C, index_t k, const T* scores, const double* offsets, std::int64_t* columns,
                double* values) {
  constexpr index_t kBlock = 16;  // columns skipped at once when their maximum cannot enter
  for (index_t r = 0; r < R; ++r) {
    const T* row = scores + r * C;
    const double offset = offsets ? offsets[r] : 0.0;
    RowBest best{values + r * k, columns + r * k, k};
    auto offer = [&](index_t j) {
      const double v = offset + static_cast<double>(row[j]);
      best.offer(std::isnan(v) ? kMinusInf : v, j);
    };
    index_t j = 0;
    for (; j < std::min(C, k); ++j) offer(j);  // the first k fill the list, -inf and NaN included
    for (; j + kBlock <= C; j += kBlock) {
      // offset + double(s) is non-decreasing in s, so a block whose largest score cannot beat the k-th is skipped
      // (NaN never compares greater, and a NaN sum ranks as -inf: it never enters a full list).
      T block_max = row[j];
      for (index_t i = 1; i < kBlock; ++i) block_max = row[j + i] > block_max ? row[j + i] : block_max;
      if (!(offset + static_cast<double>(block_max) > best.threshold()) && !std::isnan(block_max)) continue;
      for (index_t i = 0; i < kBlock; ++i) offer(j + i);
    }
    for (; j < C; ++j) offer(j);
  }
}

template <typename T>
void log_softmax_rows(index_t R, index_t C, const T* x, T* y) {
  const KernelScope scope(4.0 * double(R) * double(C));
  // exp goes through an aligned scratch row (as masked_softmax's does): the result's bits do not depend on the
  // caller's addresses.
  parallel_chunks(R, threads_for(4.0 * double(R) * double(C), R, tuning::kMinPointwiseOpsPerThread), 1,
                  [&](int, index_t r0, index_t r1) {
                    Array1D<T> exps(C);
                    for (index_t r = r0; r < r1; ++r) {
                      const ConstArrayView<T> in(x + r * C, C);
                      const T shift = in.maxCoeff();  // e - max <= 0: never overflows
                      exps = (in - shift).exp();
                      // packets in a fixed order (attention's sum; the same whatever the thread count): a plain
                      // loop's chain of dependent adds took 3/4 of a [160, 10000] row pass
                      const T total = attention_lanes::sum(exps.data(), C);
                      ArrayView<T>(y + r * C, C) = in - (shift + std::log(total));
                    }
                  });
}

template <typename T>
void softmax_cross_entropy_rows(index_t R, index_t C, const T* logits, const std::int64_t* targets,
                                const std::uint8_t* keep, T label_smoothing, T* losses, T* dlogits) {
  namespace ei = Eigen::internal;
  const KernelScope scope(4.0 * double(R) * double(C));
  const T smooth = label_smoothing / T(C), hit = T(1) - label_smoothing;
  // one pass for exp(x - m) into the gradient's row, one to scale it: packets split by C only (lanes::for_each),
  // so a row's bits do not depend on its address or the thread count
  parallel_chunks(R, threads_for(4.0 * double(R) * double(C), R, tuning::kMinPointwiseOpsPerThread), 1,
                  [&](int, index_t r0, index_t r1) {
                    for (index_t r = r0; r < r1; ++r) {
                      const T* x = logits + r * C;
                      T* g = dlogits + r * C;
                      if (keep && !keep[r]) {
                        losses[r] = T(0);
                        std::fill(g, g + C, T(0));
                        continue;
                      }
                      const T m = ConstArrayView<T>(x, C).maxCoeff();
                      lanes::for_each<T>(C, [&](auto lane, index_t j) {
                        using P = decltype(lane);
                        lanes::store(g + j, attention_lanes::exp(ei::psub(lanes::load<P>(x + j), act::splat<P>(m))));
                      });
                      const T total = attention_lanes::sum(g, C);
                      const T lse = m + std::log(total);
                      const std::int64_t t = targets[r];
                      if (t < 0 || t >= C)  // the caller checked it: only a race on its arrays gets here
                        throw std::out_of_range("rnncore: softmax_cross_entropy: a kept row's target is outside "
                                                "0..C-1 (were targets or mask changed during the call?)");
                      T loss = hit * (lse - x[t]);
                      if (label_smoothing != T(0)) loss += smooth * (T(C) * lse - attention_lanes::sum(x, C));
                      losses[r] = loss;
                      lanes::for_each<T>(C, [&](auto lane, index_t j) {  // softmax - ε/C
                        using P = decltype(lane);
                        lanes::store(g + j, ei::psub(ei::pdiv(lanes::load<P>(g + j), act::splat<P>(total)),
                                                     act::splat<P>(smooth)));
                      });
                      g[t] -= hit;
                    }
                  });
}

template void top_k_rows<float>(index_t, index_t, index_t, const float*, const double*, std::int64_t*, double*);
template void top_k_rows<double>(index_t, index_t, index_t, const double*, const double*, std::int64_t*, double*);
template void log_softmax_rows<float>(index_t, index_t, const float*, float*);
template void log_softmax_rows<double>(index_t, index_t, const double*, double*);
bool kept_targets_in_range(index_t R, index_t C, const std::int64_t* targets, const std::uint8_t* keep) {
  for (index_t r = 0; r < R; ++r)
    if ((!keep || keep[r]) && (targets[r] < 0 || targets[r] >= C)) return false;
  return true;
}

template void softmax_cross_entropy_rows<float>(index_t, index_t, const float*, const std::int64_t*,
                                                const std::uint8_t*, float, float*, float*);
template void softmax_cross_entropy_rows<double>(index_t, index_t, const double*, const std::int64_t*,
                                                 const std::uint8_t*, double, double*, double*);

}  // namespace rnncore
