// The standalone attention ops (docs/design.md §2 "Attention"): one decoder step of additive (Bahdanau) attention
// over keys projected once outside, and Luong attention (dot, general, concat) over every decoder step at once.
// The per-row math is the decoder's own step (cpp/src/attention_steps.hpp); these add the batching, the private
// copies a training forward keeps, and the products around it.
#pragma once

#include <memory>
#include <vector>

#include "rnncore/contract.hpp"
#include "rnncore/types.hpp"

namespace rnncore {

/// Luong's score: dot q·k, general q W k^T, concat v_a · tanh(W_a [q; k]).
enum class LuongScore : int { dot = 0, general = 1, concat = 2 };

/// The per-source operands of additive attention (private copies), made once per source and shared by the
/// workspaces of every step attending over it: a decoder loop then copies nothing of the source per step.
template <typename T>
struct AdditiveAttentionSource {
  index_t B = 0, Tx = 0, A = 0, Dv = 0;
  std::vector<index_t> lengths;    ///< [B], empty = every step kept
  CachedMatrix<T> projected_keys;  ///< [B*A, Tx']: K'^T in the step rows' score layout (attention_steps.hpp; zeros
                                   ///< past each sample's length: a NaN-padded source is never read)
  CachedMatrix<T> values;          ///< [B*Tx, Dv]; empty in an inference call's own source (values read in place)

  index_t bytes() const {
    return static_cast<index_t>(sizeof(T)) * (projected_keys.size() + values.size()) +
           static_cast<index_t>(sizeof(index_t) * lengths.size());
  }
};

/// A source of private copies of projected_keys [B, Tx, A] (K' = keys W_k^T), values [B, Tx, Dv] and lengths [B]
/// in 0..Tx (or null: every step kept).
template <typename T>
std::shared_ptr<AdditiveAttentionSource<T>> additive_attention_source(index_t B, index_t Tx, index_t A, index_t Dv,
                                                                      const T* projected_keys, const T* values,
                                                                      const index_t* lengths);

/// One additive attention step's inputs (every array row-major, C-contiguous): the source as a shared source, or
/// as the three arrays (then copied for the step: by a training forward into its workspace).
template <typename T>
struct AdditiveAttentionInputs {
  index_t B = 0, Tx = 0, Dq = 0, Dv = 0, A = 0;
  std::shared_ptr<const AdditiveAttentionSource<T>> source;  ///< the source, or null: the next three
  const T* projected_keys = nullptr;  ///< [B, Tx, A]: K' = keys W_k^T, taken once per source
  const T* values = nullptr;          ///< [B, Tx, Dv]
  const index_t* lengths = nullptr;   ///< [B] in 0..Tx, or null (every step kept)
  const T* query = nullptr;           ///< [B, Dq]
  const T* w_q = nullptr;             ///< [A, Dq]
  const T* b_a = nullptr;             ///< [A], or null (no bias)
  const T* w_v = nullptr;             ///< [A]: the effective score vector (normalize applied by the caller)
  const T* score_bias = nullptr;      ///< one scalar, or null
  bool relu_energy = false;           ///< e = relu(s) instead of e = s
};

/// What a training-mode additive forward keeps: the source (shared; its private copies), private copies of the
/// rest it reads (mutating the caller's arrays after forward changes nothing), qproj = q W_q^T + b_a [B, A] and
/// α [B, Tx], and with relu energies e [B, Tx] (u is recomputed by the backward).
template <typename T>
struct AdditiveAttentionWorkspace {
  index_t B = 0, Tx = 0, Dq = 0, Dv = 0, A = 0;
  bool has_bias = false, has_score_bias = false, relu_energy = false;
  T score_bias = 0;
  std::shared_ptr<const AdditiveAttentionSource<T>> source;
  CachedMatrix<T> query;          ///< [B, Dq]
  CachedMatrix<T> w_q;            ///< [A, Dq]
  CachedMatrix<T> w_v;            ///< [1, A] the effective score vector
  CachedMatrix<T> qproj;          ///< [B, A]
  CachedMatrix<T> alpha;          ///< [B, Tx]
  CachedMatrix<T> energies;       ///< [B, Tx] e = relu(s) on the kept entries (relu energies; else empty): relu'

  /// The step's own bytes (a shared source counted once, by its owner).
  index_t bytes() const {
    return static_cast<index_t>(sizeof(T)) *
           (query.size() + w_q.size() + w_v.size() + qproj.size() + alpha.size() + energies.size());
  }
};

/// context [B, Dv] = Σ_t' α[b, t'] values[b, t'] and alpha [B, Tx] (out) of one additive step:
///   u = tanh(K' + q W_q^T + b_a),  s = u · w_v (+ score_bias),  e = s or relu(s),  α = softmax over t' < lengths[b].
/// ws: null (inference: nothing kept) or an empty workspace this training forward fills.
template <typename T>
void additive_attention_forward(const AdditiveAttentionInputs<T>& in, T* context, T* alpha,
                                AdditiveAttentionWorkspace<T>* ws);

/// Where additive_attention_backward writes. Accumulated in place (+=): dprojected_keys, dvalues; written: the rest.
template <typename T>
struct AdditiveAttentionGradients {
  T* dquery = nullptr;           ///< [B, Dq] = (Σ_t' dpre) W_q
  T* dprojected_keys = nullptr;  ///< [B, Tx, A] += dpre (sum it over the decoder steps, then project back once)
  T* dvalues = nullptr;          ///< [B, Tx, Dv] += α ⊗ dcontext
  T* dw_q = nullptr;             ///< [A, Dq] = Σ_b (Σ_t' dpre)^T q
  T* db_a = nullptr;             ///< [A] = Σ_{b,t'} dpre, or null (no bias)
  T* dw_v = nullptr;             ///< [A] = Σ ds u: the gradient w.r.t. the effective score vector
  T* dscore_bias = nullptr;      ///< one scalar = Σ ds, or null (no score bias)
};

/// The gradients of the step ws recorded, given dcontext [B, Dv] and dalpha [B, Tx] (either may be null = zeros).
/// The identities are design.md §2's (softmax Jacobian, relu'/tanh' from outputs); a sample with lengths 0 gets
/// zero gradients. The same bits on any thread count.
template <typename T>
void additive_attention_backward(const AdditiveAttentionWorkspace<T>& ws, const T* dcontext, const T* dalpha,
                                 const AdditiveAttentionGradients<T>& g);

/// Luong attention's inputs, every decoder step at once (every array row-major, C-contiguous).
template <typename T>
struct LuongAttentionInputs {
  LuongScore score = LuongScore::dot;
  index_t B = 0, Ty = 0, Tx = 0, Dq = 0, Dk = 0, Dv = 0;
  index_t A = 0;                     ///< concat: rows of W_a; else 0
  const T* query = nullptr;          ///< [B, Ty, Dq]
  const T* keys = nullptr;           ///< [B, Tx, Dk] (dot: Dk = Dq)
  const T* values = nullptr;         ///< [B, Tx, Dv]
  const T* weight = nullptr;         ///< general: W [Dq, Dk]; concat: W_a [A, Dq + Dk]; dot: null
  const T* v_a = nullptr;            ///< concat: [A]; else null
  const index_t* lengths = nullptr;  ///< [B] in 0..Tx, or null
};

/// What a training-mode Luong forward keeps (private copies): dot and general sample-major (their GEMMs run per
/// sample), concat step-major (its step rows run per decoder step).
template <typename T>
struct LuongAttentionWorkspace {
  LuongScore score = LuongScore::dot;
  index_t B = 0, Ty = 0, Tx = 0, Dq = 0, Dk = 0, Dv = 0, A = 0;
  std::vector<index_t> lengths;   ///< [B], empty = every step kept
  CachedMatrix<T> query;          ///< dot/general [B*Ty, Dq]; concat [Ty*B, Dq] (step-major)
  CachedMatrix<T> keys;           ///< [B*Tx, Dk], padded rows zeroed
  CachedMatrix<T> values;         ///< [B*Tx, Dv]
  CachedMatrix<T> projected_keys; ///< general with Ty >= Tx: k W^T [B*Tx, Dq]; concat: (k W_k^T)^T [B*A, Tx'] in
                                  ///< the step rows' score layout; else empty
  CachedMatrix<T> projected_queries;  ///< general with Ty < Tx: q W [B*Ty, Dk] (the side with fewer rows); else empty
  CachedMatrix<T> w_q;            ///< general: W [Dq, Dk]; concat: W_q = W_a[:, :Dq] [A, Dq]
  CachedMatrix<T> w_k;            ///< concat: W_k = W_a[:, Dq:] [A, Dk]
  CachedMatrix<T> v_a;            ///< concat: [1, A]
  CachedMatrix<T> qproj;          ///< concat: q W_q^T [Ty*B, A]
  CachedMatrix<T> alpha;          ///< dot/general [B*Ty, Tx]; concat [Ty*B, Tx] (step-major)

  index_t bytes() const {
    return static_cast<index_t>(sizeof(T)) * (query.size() + keys.size() + values.size() + projected_keys.size() +
                                            projected_queries.size() +
                                            w_q.size() + w_k.size() + v_a.size() + qproj.size() + alpha.size()) +
           static_cast<index_t>(sizeof(index_t) * lengths.size());
  }
};

/// context [B, Ty, Dv] and alpha [B, Ty, Tx] (out) for every decoder step y:
///   dot e = q·k;  general e = (q W) k^T or q (k W^T)^T (W applied once, to the side with fewer rows);
///   concat e = v_a · tanh(q W_q^T + k W_k^T)
///   (additive attention without bias, W_a = [W_q | W_k]);  α = softmax over t' < lengths[b];  context = α · values.
/// ws: null (inference) or an empty workspace this training forward fills.
template <typename T>
void luong_attention_forward(const LuongAttentionInputs<T>& in, T* context, T* alpha, LuongAttentionWorkspace<T>* ws);

/// Where luong_attention_backward writes (every output written, not accumulated).
template <typename T>
struct LuongAttentionGradients {
  T* dquery = nullptr;   ///< [B, Ty, Dq]
  T* dkeys = nullptr;    ///< [B, Tx, Dk]
  T* dvalues = nullptr;  ///< [B, Tx, Dv]
  T* dweight = nullptr;  ///< general [Dq, Dk] = Σ (de^T q)^T k; concat [A, Dq + Dk] = [dqsum^T q, dK'^T k]; dot null
  T* dv_a = nullptr;     ///< concat [A]; else null
};

/// The gradients of the forward ws recorded, given dcontext [B, Ty, Dv] and dalpha [B, Ty, Tx] (either null =
/// zeros): per decoder step the step rows' backward, then the projections' products once over all steps.
template <typename T>
void luong_attention_backward(const LuongAttentionWorkspace<T>& ws, const T* dcontext, const T* dalpha,
                              const LuongAttentionGradients<T>& g);

}  // namespace rnncore
