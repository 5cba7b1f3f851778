// The standalone attention ops (declared in rnncore/attention_ops.hpp): the additive step on the decoder's step rows
// (attention_steps.hpp); Luong's concat as one step-rows call per decoder step (it is the additive score), its dot
// and general scores as GEMMs per sample over every step at once; the projections (general's q W or k W^T, whichever
// side has fewer rows, concat's q W_q^T and k W_k^T) taken once for all steps, before and after.
#include "rnncore/attention_ops.hpp"

#include <algorithm>
#include <memory>

#include "attention_steps.hpp"
#include "linalg/gemm.hpp"
#include "parallel.hpp"

namespace rnncore {

using namespace detail;

namespace {

/// dst [rows, cols] = a private copy of src.
template <typename T>
void copy_matrix(CachedMatrix<T>& dst, const T* src, index_t rows, index_t cols) {
  dst.resize(rows, cols);
  std::copy_n(src, rows * cols, dst.data());
}

/// dst [rows, cols] = zeros.
template <typename T>
T* zeros(CachedMatrix<T>& dst, index_t rows, index_t cols) {
  dst.resize(rows, cols);
  std::fill_n(dst.data(), rows * cols, T(0));
  return dst.data();
}

/// [B, Ty, D] (sample-major, the ops' layout) -> [Ty, B, D] (step-major, the step rows' layout).
template <typename T>
void to_step_major(const T* src, index_t B, index_t Ty, index_t D, T* dst) {
  for (index_t b = 0; b < B; ++b)
    for (index_t y = 0; y < Ty; ++y) std::copy_n(src + (b * Ty + y) * D, D, dst + (y * B + b) * D);
}

/// [Ty, B, D] -> [B, Ty, D].
template <typename T>
void to_sample_major(const T* src, index_t B, index_t Ty, index_t D, T* dst) {
  for (index_t b = 0; b < B; ++b)
    for (index_t y = 0; y < Ty; ++y) std::copy_n(src + (y * B + b) * D, D, dst + (b * Ty + y) * D);
}

/// keys_t [B*A, Tx'] = K'^T, the step rows' score layout of projected keys K' [B*Tx, A] (zeros past each sample's
/// length: a NaN-padded source is never read).
template <typename T>
void score_layout(const T* projected_keys, index_t B, index_t Tx, index_t A, const index_t* lengths,
                  CachedMatrix<T>& keys_t) {
  keys_t.resize(B * A, score_row_length<T>(Tx));
  keys_to_score_layout(projected_keys, B, Tx, A, lengths, keys_t.data());
}

/// Fills src from projected_keys [B, Tx, A] (into the score layout), values [B, Tx, Dv] (copied unless null) and
/// lengths [B] or null.
template <typename T>
void fill_source(AdditiveAttentionSource<T>& src, index_t B, index_t Tx, index_t A, index_t Dv,
                 const T* projected_keys, const T* values, const index_t* lengths) {
  src.B = B, src.Tx = Tx, src.A = A, src.Dv = Dv;
  if (lengths) src.lengths.assign(lengths, lengths + B);
  score_layout(projected_keys, B, Tx, A, lengths, src.projected_keys);
  if (values) copy_matrix(src.values, values, B * Tx, Dv);
}

/// The step rows' operands of an additive step over `src` (values: where they are); the rest as the step has them.
template <typename T>
AttentionOperands<T> additive_operands(const AdditiveAttentionSource<T>& src, const T* values, index_t Dq,
                                       const T* w_q, const T* b_a, const T* w_v, const T* score_bias,
                                       bool relu_energy) {
  AttentionOperands<T> op;
  op.score = AttentionScore::additive;
  op.B = src.B, op.Tx = src.Tx, op.Dq = Dq, op.K = src.A, op.Dv = src.Dv;
  op.score_keys = src.projected_keys.data();
  op.values = values;
  op.lengths = src.lengths.empty() ? nullptr : src.lengths.data();
  op.w_q = w_q, op.b_a = b_a, op.w_v = w_v, op.score_bias = score_bias, op.relu_energy = relu_energy;
  return op;
}

/// The step rows' operands of Luong's concat score: the additive score over k W_k^T with W_q, v_a and no bias.
/// values / lengths: where they are (the caller's arrays in inference, the workspace's copies in training).
template <typename T>
AttentionOperands<T> concat_operands(const LuongAttentionWorkspace<T>& ws, const T* values, const index_t* lengths) {
  AttentionOperands<T> op;
  op.score = AttentionScore::additive;
  op.B = ws.B, op.Tx = ws.Tx, op.Dq = ws.Dq, op.K = ws.A, op.Dv = ws.Dv;
  op.score_keys = ws.projected_keys.data();
  op.values = values;
  op.lengths = lengths;
  op.w_q = ws.w_q.data();
  op.w_v = ws.v_a.data();
  return op;
}

/// Luong dot/general forward, sample by sample as GEMMs over the kept source steps (n = lengths[b]; padded rows
/// never read): e_b [Ty, n] = q_b k_b^T, α_b = softmax of each row (0 beyond n), context_b = α_b v_b.
///   query [B, Ty, Dq];  keys [B, Tx, Dq] (dot: the keys; general: k W^T);  values [B, Tx, Dv];  lengths [B] or null
///   alpha [B, Ty, Tx] out;  context [B, Ty, Dv] out
template <typename T>
void dot_scores_forward(index_t B, index_t Ty, index_t Tx, index_t Dq, index_t Dv, const T* query, const T* keys,
                        const T* values, const index_t* lengths, T* alpha, T* context) {
  for_each_row(B, Ty * Tx * (Dq + Dv), [&](index_t b) {
    const SerialEigen serial;  // one sample's products on this thread: the same bits on any thread count
    const index_t n = lengths ? lengths[b] : Tx;
    MatrixView<T> a(alpha + b * Ty * Tx, Ty, Tx), ctx(context + b * Ty * Dv, Ty, Dv);
    if (n == 0) {  // attends to nothing
      a.setZero();
      ctx.setZero();
      return;
    }
    const ConstMatrixView<T> q(query + b * Ty * Dq, Ty, Dq), k(keys + b * Tx * Dq, n, Dq), v(values + b * Tx * Dv, n, Dv);
    a.leftCols(n).noalias() = q * k.transpose();
    for (index_t y = 0; y < Ty; ++y) softmax_row(a.data() + y * Tx, n, Tx);
    ctx.noalias() = a.leftCols(n) * v;
  });
}

/// The gradients of dot_scores_forward, sample by sample (design.md §2's identities):
///   dα = dcontext v^T (+ dalpha)   dv = α^T dcontext   de = α ⊙ (dα − Σ_row α ⊙ dα)   dq = de k   dk = de^T q
///   alpha [B, Ty, Tx]: the forward's;  dcontext [B, Ty, Dv] or null;  dalpha [B, Ty, Tx] or null;
///   dquery [B, Ty, Dq], dkeys [B, Tx, Dq], dvalues [B, Tx, Dv] out (padded rows and empty samples: 0)
template <typename T>
void dot_scores_backward(index_t B, index_t Ty, index_t Tx, index_t Dq, index_t Dv, const T* query, const T* keys,
                         const T* values, const index_t* lengths, const T* alpha, const T* dcontext, const T* dalpha,
                         T* dquery, T* dkeys, T* dvalues) {
  for_each_row(B, 2 * Ty * Tx * (Dq + Dv), [&](index_t b) {
    const SerialEigen serial;
    const index_t n = lengths ? lengths[b] : Tx;
    MatrixView<T> dq(dquery + b * Ty * Dq, Ty, Dq), dk(dkeys + b * Tx * Dq, Tx, Dq), dv(dvalues + b * Tx * Dv, Tx, Dv);
    dk.bottomRows(Tx - n).setZero();
    dv.bottomRows(Tx - n).setZero();
    if (n == 0) {
      dq.setZero();
      return;
    }
    const ConstMatrixView<T> q(query + b * Ty * Dq, Ty, Dq), k(keys + b * Tx * Dq, n, Dq), v(values + b * Tx * Dv, n, Dv);
    const auto a = ConstMatrixView<T>(alpha + b * Ty * Tx, Ty, Tx).leftCols(n);
    RowMatrix<T> de(Ty, n);
    if (dcontext) {
      const ConstMatrixView<T> dctx(dcontext + b * Ty * Dv, Ty, Dv);
      de.noalias() = dctx * v.transpose();
      dv.topRows(n).noalias() = a.transpose() * dctx;
    } else {
      de.setZero();
      dv.topRows(n).setZero();
    }
    if (dalpha) de += ConstMatrixView<T>(dalpha + b * Ty * Tx, Ty, Tx).leftCols(n);
    for (index_t y = 0; y < Ty; ++y) {  // the softmax Jacobian: dα_j/de_k = α_j (δ_jk - α_k)
      T weighted = 0;
      for (index_t j = 0; j < n; ++j) weighted += a(y, j) * de(y, j);
      for (index_t j = 0; j < n; ++j) de(y, j) = a(y, j) * (de(y, j) - weighted);
    }
    dq.noalias() = de * k;
    dk.topRows(n).noalias() = de.transpose() * q;
  });
}

}  // namespace

template <typename T>
std::shared_ptr<AdditiveAttentionSource<T>> additive_attention_source(index_t B, index_t Tx, index_t A, index_t Dv,
                                                                      const T* projected_keys, const T* values,
                                                                      const index_t* lengths) {
  FlushDenormalsScope fp_mode;
  auto src = std::make_shared<AdditiveAttentionSource<T>>();
  fill_source(*src, B, Tx, A, Dv, projected_keys, values, lengths);
  return src;
}

template <typename T>
void additive_attention_forward(const AdditiveAttentionInputs<T>& in, T* context, T* alpha,
                                AdditiveAttentionWorkspace<T>* ws) {
  const index_t B = in.B, Tx = in.Tx, A = in.A;
  const KernelScope scope(2.0 * double(B) * (double(in.Dq) * double(A) + double(Tx) * (2.0 * double(A) + in.Dv)));
  std::shared_ptr<const AdditiveAttentionSource<T>> source = in.source;
  if (!source) {  // a source of this step's own: inference reads the values in place
    auto own = std::make_shared<AdditiveAttentionSource<T>>();
    fill_source(*own, B, Tx, A, in.Dv, in.projected_keys, ws ? in.values : nullptr, in.lengths);
    source = std::move(own);
  }
  const T* values = source->values.size() ? source->values.data() : in.values;
  const T* score_bias = in.score_bias;
  AdditiveAttentionWorkspace<T> local;  // inference: only qproj is made
  AdditiveAttentionWorkspace<T>& w = ws ? *ws : local;
  w.B = B, w.Tx = Tx, w.Dq = in.Dq, w.Dv = in.Dv, w.A = A;
  w.has_bias = in.b_a != nullptr, w.has_score_bias = in.score_bias != nullptr, w.relu_energy = in.relu_energy;
  w.score_bias = in.score_bias ? *in.score_bias : T(0);
  const T *query = in.query, *w_q = in.w_q, *w_v = in.w_v;
  if (ws) {
    ws->source = source;
    copy_matrix(ws->query, in.query, B, in.Dq);
    copy_matrix(ws->w_q, in.w_q, A, in.Dq);
    copy_matrix(ws->w_v, in.w_v, 1, A);
    query = ws->query.data(), w_q = ws->w_q.data(), w_v = ws->w_v.data();
    score_bias = in.score_bias ? &ws->score_bias : nullptr;
  }
  // b_a is read only here, by the query projection: never copied
  const AttentionOperands<T> op =
      additive_operands(*source, values, in.Dq, w_q, in.b_a, w_v, score_bias, in.relu_energy);
  w.qproj.resize(B, A);
  attention_project_query(op, query, w.qproj.data());
  w.energies.resize(ws && in.relu_energy ? B : 0, Tx);
  attention_forward_rows(op, query, w.qproj.data(), alpha, context, w.energies.size() ? w.energies.data() : nullptr);
  if (ws) copy_matrix(ws->alpha, alpha, B, Tx);
}

template <typename T>
void additive_attention_backward(const AdditiveAttentionWorkspace<T>& ws, const T* dcontext, const T* dalpha,
                                 const AdditiveAttentionGradients<T>& g) {
  const index_t B = ws.B, A = ws.A, Dq = ws.Dq;
  const KernelScope scope(2.0 * double(B) * (2.0 * double(Dq) * double(A) + double(ws.Tx) * (4.0 * A + 2.0 * ws.Dv)));
  const AdditiveAttentionSource<T>& source = *ws.source;
  const AttentionOperands<T> op =
      additive_operands(source, source.values.data(), Dq, ws.w_q.data(), static_cast<const T*>(nullptr),
                        ws.w_v.data(), ws.has_score_bias ? &ws.score_bias : nullptr, ws.relu_energy);
  CachedMatrix<T> dqsum(B, A), dw_v_rows, dkeys_t;
  std::vector<T> dscore_bias_rows(B, T(0));
  AttentionRowGradients<T> rows;
  rows.dqsum = dqsum.data();
  rows.dscore_keys = zeros(dkeys_t, B * A, score_row_length<T>(ws.Tx));  // dK' in the score layout
  rows.dvalues = g.dvalues;
  rows.dw_v_rows = zeros(dw_v_rows, B, A);
  rows.dscore_bias_rows = ws.has_score_bias ? dscore_bias_rows.data() : nullptr;
  attention_backward_rows(op, ws.query.data(), ws.qproj.data(), ws.alpha.data(),
                          ws.energies.size() ? ws.energies.data() : nullptr, dcontext, dalpha, rows);
  add_score_layout_to_keys(dkeys_t.data(), B, ws.Tx, A, g.dprojected_keys);
  // The query projection's gradients, once for all rows: dquery = dqsum W_q, dW_q = dqsum^T q, db_a = Σ_b dqsum.
  multiply_into<false, false>(MatrixView<T>(g.dquery, B, Dq), dqsum.view(), ws.w_q.view());
  multiply_into<true, false>(MatrixView<T>(g.dw_q, A, Dq), dqsum.view(), ws.query.view());
  if (g.db_a) column_sums(dqsum.view(), g.db_a);
  std::fill_n(g.dw_v, A, T(0));
  sum_rows_into(dw_v_rows.data(), B, A, g.dw_v);
  if (g.dscore_bias) {
    *g.dscore_bias = 0;
    sum_rows_into(dscore_bias_rows.data(), B, 1, g.dscore_bias);
  }
}

template <typename T>
void luong_attention_forward(const LuongAttentionInputs<T>& in, T* context, T* alpha, LuongAttentionWorkspace<T>* ws) {
  const index_t B = in.B, Ty = in.Ty, Tx = in.Tx, Dq = in.Dq, Dk = in.Dk, Dv = in.Dv, A = in.A;
  const bool concat = in.score == LuongScore::concat;
  const double K = concat ? 4.0 * double(A) : double(Dq);
  const KernelScope scope(2.0 * double(B) * (double(Ty) * double(Tx) * (K + Dv) + double(Tx) * Dk * (concat ? A : Dq)));
  LuongAttentionWorkspace<T> local;  // inference: scratch only; the inputs are read where they are
  LuongAttentionWorkspace<T>& w = ws ? *ws : local;
  w.score = in.score;
  w.B = B, w.Ty = Ty, w.Tx = Tx, w.Dq = Dq, w.Dk = Dk, w.Dv = Dv, w.A = A;
  const T *keys = in.keys, *values = in.values, *query = in.query;
  const index_t* lengths = in.lengths;
  if (ws) {
    if (in.lengths) ws->lengths.assign(in.lengths, in.lengths + B);
    lengths = in.lengths ? ws->lengths.data() : nullptr;
    copy_matrix(ws->keys, in.keys, B * Tx, Dk);
    copy_matrix(ws->values, in.values, B * Tx, Dv);
    // Padded key rows are zeroed (never read by the scores; the weight gradient's product multiplies them by a zero
    // gradient, which must not meet a NaN or inf the caller padded with), as the recurrent workspaces do with x.
    for (index_t b = 0; in.lengths && b < B; ++b)
      std::fill(ws->keys.data() + (b * Tx + in.lengths[b]) * Dk, ws->keys.data() + (b + 1) * Tx * Dk, T(0));
    keys = ws->keys.data(), values = ws->values.data();
  }
  const ConstMatrixView<T> key_rows(keys, B * Tx, Dk);
  if (!concat) {  // dot and general: each sample's steps at once, as GEMMs
    if (ws) {
      copy_matrix(ws->query, in.query, B * Ty, Dq);
      query = ws->query.data();
    }
    if (in.score == LuongScore::dot) {
      dot_scores_forward(B, Ty, Tx, Dq, Dv, query, keys, values, lengths, alpha, context);
    } else if (Ty < Tx) {  // general, W projecting the side with fewer rows once: e = (q W) k^T
      copy_matrix(w.w_q, in.weight, Dq, Dk);
      w.projected_queries.resize(B * Ty, Dk);
      multiply_into<false, false>(w.projected_queries.view(), ConstMatrixView<T>(query, B * Ty, Dq), w.w_q.view());
      dot_scores_forward(B, Ty, Tx, Dk, Dv, w.projected_queries.data(), keys, values, lengths, alpha, context);
    } else {  // general: e = q (k W^T)^T
      copy_matrix(w.w_q, in.weight, Dq, Dk);
      w.projected_keys.resize(B * Tx, Dq);
      multiply_into<false, true>(w.projected_keys.view(), key_rows, w.w_q.view());
      dot_scores_forward(B, Ty, Tx, Dq, Dv, query, w.projected_keys.data(), values, lengths, alpha, context);
    }
    if (ws) copy_matrix(ws->alpha, alpha, B * Ty, Tx);
    return;
  }
  // concat: the additive step rows, one call per decoder step (step-major), with W_a [q; k] = q W_q^T + k W_k^T and
  // both projections taken once for every step
  w.query.resize(Ty * B, Dq);
  to_step_major(in.query, B, Ty, Dq, w.query.data());
  w.w_q.resize(A, Dq);
  w.w_k.resize(A, Dk);
  for (index_t a = 0; a < A; ++a) {
    std::copy_n(in.weight + a * (Dq + Dk), Dq, w.w_q.data() + a * Dq);
    std::copy_n(in.weight + a * (Dq + Dk) + Dq, Dk, w.w_k.data() + a * Dk);
  }
  copy_matrix(w.v_a, in.v_a, 1, A);
  CachedMatrix<T> projected(B * Tx, A);
  multiply_into<false, true>(projected.view(), key_rows, w.w_k.view());
  score_layout(projected.data(), B, Tx, A, lengths, w.projected_keys);
  w.qproj.resize(Ty * B, A);
  multiply_into<false, true>(w.qproj.view(), w.query.view(), w.w_q.view());
  const AttentionOperands<T> op = concat_operands(w, values, lengths);
  w.alpha.resize(Ty * B, Tx);
  CachedMatrix<T> contexts(Ty * B, Dv);
  for (index_t y = 0; y < Ty; ++y)
    attention_forward_rows(op, w.query.data() + y * B * Dq, w.qproj.data() + y * B * A, w.alpha.data() + y * B * Tx,
                           contexts.data() + y * B * Dv, static_cast<T*>(nullptr));  // (concat: no relu)
  to_sample_major(w.alpha.data(), B, Ty, Tx, alpha);
  to_sample_major(contexts.data(), B, Ty, Dv, context);
}

template <typename T>
void luong_attention_backward(const LuongAttentionWorkspace<T>& ws, const T* dcontext, const T* dalpha,
                              const LuongAttentionGradients<T>& g) {
  const index_t B = ws.B, Ty = ws.Ty, Tx = ws.Tx, Dq = ws.Dq, Dk = ws.Dk, Dv = ws.Dv, A = ws.A;
  const bool concat = ws.score == LuongScore::concat;
  const double K = concat ? 6.0 * double(A) : 2.0 * double(Dq);
  const KernelScope scope(2.0 * double(B) * (double(Ty) * double(Tx) * (K + 2.0 * Dv) +
                                             2.0 * double(Tx) * Dk * (concat ? A : Dq)));
  const index_t* lengths = ws.lengths.empty() ? nullptr : ws.lengths.data();
  const ConstMatrixView<T> key_rows(ws.keys.data(), B * Tx, Dk);
  CachedMatrix<T> dprojected;  // the gradient w.r.t. the projected keys (general, concat), summed over the steps
  if (ws.score == LuongScore::dot) {
    dot_scores_backward(B, Ty, Tx, Dq, Dv, ws.query.data(), ws.keys.data(), ws.values.data(), lengths,
                        ws.alpha.data(), dcontext, dalpha, g.dquery, g.dkeys, g.dvalues);
    return;
  }
  if (ws.score == LuongScore::general && ws.projected_queries.size()) {  // back through q' = q W: dq = dq' W^T,
    CachedMatrix<T> dprojected_queries(B * Ty, Dk);                       // dW = q^T dq'
    dot_scores_backward(B, Ty, Tx, Dk, Dv, ws.projected_queries.data(), ws.keys.data(), ws.values.data(), lengths,
                        ws.alpha.data(), dcontext, dalpha, dprojected_queries.data(), g.dkeys, g.dvalues);
    multiply_into<false, true>(MatrixView<T>(g.dquery, B * Ty, Dq), dprojected_queries.view(), ws.w_q.view());
    multiply_into<true, false>(MatrixView<T>(g.dweight, Dq, Dk), ws.query.view(), dprojected_queries.view());
    return;
  }
  if (ws.score == LuongScore::general) {  // back through k' = k W^T: dk = dk' W, dW = dk'^T k
    dprojected.resize(B * Tx, Dq);
    dot_scores_backward(B, Ty, Tx, Dq, Dv, ws.query.data(), ws.projected_keys.data(), ws.values.data(), lengths,
                        ws.alpha.data(), dcontext, dalpha, g.dquery, dprojected.data(), g.dvalues);
    multiply_into<false, false>(MatrixView<T>(g.dkeys, B * Tx, Dk), dprojected.view(), ws.w_q.view());
    multiply_into<true, false>(MatrixView<T>(g.dweight, Dq, Dk), dprojected.view(), key_rows);
    return;
  }
  const AttentionOperands<T> op = concat_operands(ws, ws.values.data(), lengths);
  CachedMatrix<T> dcontext_steps, dalpha_steps, dquery_steps, dqsum, dv_a_rows;
  if (dcontext) {
    dcontext_steps.resize(Ty * B, Dv);
    to_step_major(dcontext, B, Ty, Dv, dcontext_steps.data());
  }
  if (dalpha) {
    dalpha_steps.resize(Ty * B, Tx);
    to_step_major(dalpha, B, Ty, Tx, dalpha_steps.data());
  }
  std::fill_n(g.dvalues, B * Tx * Dv, T(0));
  AttentionRowGradients<T> rows;
  rows.dvalues = g.dvalues;
  CachedMatrix<T> dkeys_t;  // dK' in the score layout, summed over the steps
  rows.dscore_keys = zeros(dkeys_t, B * A, score_row_length<T>(Tx));
  rows.dw_v_rows = zeros(dv_a_rows, B, A);
  dqsum.resize(Ty * B, A);
  for (index_t y = 0; y < Ty; ++y) {
    AttentionRowGradients<T> step = rows;
    step.dqsum = dqsum.data() + y * B * A;
    attention_backward_rows(op, ws.query.data() + y * B * Dq, ws.qproj.data() + y * B * A,
                            ws.alpha.data() + y * B * Tx, static_cast<const T*>(nullptr),  // (concat: no relu)
                            dcontext ? dcontext_steps.data() + y * B * Dv : nullptr,
                            dalpha ? dalpha_steps.data() + y * B * Tx : nullptr, step);
  }
  // back through q W_q^T and k W_k^T, for every step at once
  add_score_layout_to_keys(dkeys_t.data(), B, Tx, A, zeros(dprojected, B * Tx, A));
  dquery_steps.resize(Ty * B, Dq);
  multiply_into<false, false>(dquery_steps.view(), dqsum.view(), ws.w_q.view());
  to_sample_major(dquery_steps.data(), B, Ty, Dq, g.dquery);
  multiply_into<false, false>(MatrixView<T>(g.dkeys, B * Tx, Dk), dprojected.view(), ws.w_k.view());
  MatrixView<T> dweight(g.dweight, A, Dq + Dk);
  multiply_into<true, false>(dweight.leftCols(Dq), dqsum.view(), ws.query.view());
  multiply_into<true, false>(dweight.rightCols(Dk), dprojected.view(), key_rows);
  std::fill_n(g.dv_a, A, T(0));
  sum_rows_into(dv_a_rows.data(), B, A, g.dv_a);
}

#define RNNCORE_ATTENTION_OPS(T)                                                                                     \
  template std::shared_ptr<AdditiveAttentionSource<T>> additive_attention_source<T>(                                 \
      index_t, index_t, index_t, index_t, const T*, const T*, const index_t*);                                       \
  template void additive_attention_forward<T>(const AdditiveAttentionInputs<T>&, T*, T*,                             \
                                              AdditiveAttentionWorkspace<T>*);                                       \
  template void additive_attention_backward<T>(const AdditiveAttentionWorkspace<T>&, const T*, const T*,             \
                                               const AdditiveAttentionGradients<T>&);                                \
  template void luong_attention_forward<T>(const LuongAttentionInputs<T>&, T*, T*, LuongAttentionWorkspace<T>*);     \
  template void luong_attention_backward<T>(const LuongAttentionWorkspace<T>&, const T*, const T*,                   \
                                            const LuongAttentionGradients<T>&);
RNNCORE_ATTENTION_OPS(float)
RNNCORE_ATTENTION_OPS(double)
#undef RNNCORE_ATTENTION_OPS

}  // namespace rnncore
