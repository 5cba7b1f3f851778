// Adam and AdamW over one parameter array per call (the bindings loop over a model's arrays without the GIL):
// torch.optim.Adam's single-tensor algorithm, operation for operation as rnncore.optim's NumPy code, so that both
// give the same bits (cpp/src/optim.cpp is compiled without FMA contraction; docs/design.md, "Optimizers").
#pragma once

#include "rnncore/contract.hpp"

namespace rnncore {

/// One Adam step's hyper-parameters as rnncore.optim.Adam holds them (Python floats: double). Each scalar meets the
/// arrays the way NumPy's `array * python_float` does: cast to T first.
struct AdamHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool amsgrad = false, maximize = false, decoupled = false;  ///< decoupled: AdamW's θ ← θ (1 - γ λ)
};

/// Updates one parameter in place. Every array has n elements, contiguous, none aliasing another:
///   p:     the parameter (in/out)
///   g:     its gradient
///   m, v:  exp_avg, exp_avg_sq (in/out)
///   vmax:  max_exp_avg_sq (in/out) with amsgrad, else null
///   step:  the step count, one T (in/out): incremented first, as torch's float step tensor
/// Runs on the calling thread in the caller's floating-point mode (no flush-to-zero, as NumPy).
template <typename T>
void adam_update(index_t n, T* p, const T* g, T* m, T* v, T* vmax, T* step, const AdamHyper& h);

}  // namespace rnncore
