// Adam / AdamW (rnncore/optim.hpp). Each line mirrors one NumPy statement of rnncore.optim.Adam._update, in its
// order and rounding: the scalars are cast to T as NumPy casts a Python float meeting a T array, and CMakeLists.txt
// compiles this file with -ffp-contract=off (a fused multiply-add would round once where NumPy rounds twice) and
// -fno-math-errno (so that sqrt, exact either way, vectorizes). The options are template arguments: each loop is
// branch-free and vectorizes.
#include "rnncore/optim.hpp"

#include <cmath>

namespace rnncore {

namespace {

/// The step's scalars, cast to T.
template <typename T>
struct AdamScalars {
  T lerp_weight, lerp_rest, beta2, one_minus_beta2, wd, shrink, bias_correction2_sqrt, eps, neg_step_size;
};

enum class Decay { none, l2, decoupled };

template <typename T, bool Maximize, Decay D, bool Amsgrad, bool LowWeight>
void adam_loop(index_t n, T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
               T* __restrict vmax, const AdamScalars<T>& s) {
  for (index_t i = 0; i < n; ++i) {
    T gi = Maximize ? -g[i] : g[i];
    if constexpr (D == Decay::decoupled) p[i] *= s.shrink;
    if constexpr (D == Decay::l2) gi = gi + s.wd * p[i];
    if constexpr (LowWeight)  // m.lerp_(g, w): torch's two formulas, switched at w = 0.5
      m[i] += s.lerp_weight * (gi - m[i]);
    else
      m[i] = gi - (gi - m[i]) * s.lerp_rest;
    v[i] *= s.beta2;
    v[i] += s.one_minus_beta2 * gi * gi;
    T denom;
    if constexpr (Amsgrad) {
      const T a = vmax[i], b = v[i];  // np.maximum: NaN when either is (the first's), else the larger
      vmax[i] = a != a ? a : (b != b ? b : (a < b ? b : a));
      denom = std::sqrt(vmax[i]) / s.bias_correction2_sqrt;
    } else {
      denom = std::sqrt(v[i]) / s.bias_correction2_sqrt;
    }
    denom += s.eps;
    p[i] += s.neg_step_size * m[i] / denom;
  }
}

template <typename T, bool Maximize, Decay D, bool Amsgrad>
void adam_dispatch_weight(bool low_weight, index_t n, T* p, const T* g, T* m, T* v, T* vmax,
                          const AdamScalars<T>& s) {
  if (low_weight)
    adam_loop<T, Maximize, D, Amsgrad, true>(n, p, g, m, v, vmax, s);
  else
    adam_loop<T, Maximize, D, Amsgrad, false>(n, p, g, m, v, vmax, s);
}

template <typename T, bool Maximize, Decay D>
void adam_dispatch_amsgrad(bool low_weight, index_t n, T* p, const T* g, T* m, T* v, T* vmax,
                           const AdamScalars<T>& s) {
  if (vmax)
    adam_dispatch_weight<T, Maximize, D, true>(low_weight, n, p, g, m, v, vmax, s);
  else
    adam_dispatch_weight<T, Maximize, D, false>(low_weight, n, p, g, m, v, vmax, s);
}

template <typename T, bool Maximize>
void adam_dispatch_decay(Decay decay, bool low_weight, index_t n, T* p, const T* g, T* m, T* v, T* vmax,
                         const AdamScalars<T>& s) {
  if (decay == Decay::none)
    adam_dispatch_amsgrad<T, Maximize, Decay::none>(low_weight, n, p, g, m, v, vmax, s);
  else if (decay == Decay::l2)
    adam_dispatch_amsgrad<T, Maximize, Decay::l2>(low_weight, n, p, g, m, v, vmax, s);
  else
    adam_dispatch_amsgrad<T, Maximize, Decay::decoupled>(low_weight, n, p, g, m, v, vmax, s);
}

}  // namespace

template <typename T>
void adam_update(index_t n, T* p, const T* g, T* m, T* v, T* vmax, T* step, const AdamHyper& h) {
  *step += T(1);
  const double s = static_cast<double>(*step);
  const double weight = 1.0 - h.beta1;
  const double step_size = h.lr / (1.0 - std::pow(h.beta1, s));
  const double bias_correction2_sqrt = std::pow(1.0 - std::pow(h.beta2, s), 0.5);  // Python's ** 0.5, not sqrt
  const AdamScalars<T> scalars{static_cast<T>(weight),           static_cast<T>(1.0 - weight),
                               static_cast<T>(h.beta2),          static_cast<T>(1.0 - h.beta2),
                               static_cast<T>(h.weight_decay),   static_cast<T>(1.0 - h.lr * h.weight_decay),
                               static_cast<T>(bias_correction2_sqrt), static_cast<T>(h.eps),
                               static_cast<T>(-step_size)};
  const Decay decay = h.weight_decay == 0.0 ? Decay::none : (h.decoupled ? Decay::decoupled : Decay::l2);
  if (h.maximize)
    adam_dispatch_decay<T, true>(decay, weight < 0.5, n, p, g, m, v, vmax, scalars);
  else
    adam_dispatch_decay<T, false>(decay, weight < 0.5, n, p, g, m, v, vmax, scalars);
}

template void adam_update<float>(index_t, float*, const float*, float*, float*, float*, float*, const AdamHyper&);
template void adam_update<double>(index_t, double*, const double*, double*, double*, double*, double*,
                                  const AdamHyper&);

}  // namespace rnncore
