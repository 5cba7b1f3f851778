// The fused attention decoder: a recurrent cell with attention over an encoded source, the whole decoder time loop in
// one call forward and one call backward (docs/design.md §2 "Attention decoder").
//
// Shape letters: Ty decoder steps, B batch, Tx source steps, E decoder input features (0 = context only), H hidden,
// G gates (LSTM 4, GRU 3, RNN 1), K key columns (A additive, H dot), Dv value features, A attention units,
// O output features (H for position "before", rows of w_c for "after"), Dc the fed columns of w_ih (Dv before, O after
// with input feeding, else 0).
//
// One step t, state s_{t-1} = (h_{t-1}, c_{t-1}), s_{-1} = (h0, c0):
//   before (Bahdanau):  ctx_t, α_t = attend(h_{t-1});  h_t, c_t = cell([x_t; ctx_t], s_{t-1});  o_t = h_t
//   after (Luong):      h_t, c_t = cell([x_t; õ_{t-1}] with input feeding, else x_t, s_{t-1});
//                       ctx_t, α_t = attend(h_t);  o_t = õ_t = tanh(W_c [ctx_t; h_t] + b_c);  õ_{-1} = o0 (or 0)
//   attend(q): additive u = tanh(K' + q W_q^T + b_a), e = u · w_v (+ score_bias) (relu(e) optionally);
//              dot e = q · keys;  α = masked_softmax(e, t' < lengths[b]);  ctx = Σ_t' α values.
// The cells are the sequence kernels' (PyTorch's layouts and gate orders, rnncore/lstm.hpp, gru.hpp, rnn.hpp).
#pragma once

#include <memory>
#include <vector>

#include "rnncore/contract.hpp"
#include "rnncore/types.hpp"

namespace rnncore {

/// Where the attention sits: before the cell (its context is an input of the cell) or after it (on h_t, then the
/// attentional output layer W_c).
enum class AttentionPosition : int { before = 0, after = 1 };

/// What a decoder computes (what backward checks a workspace against).
struct DecoderSpec {
  CellSpec cell;
  AttentionScore score = AttentionScore::additive;
  AttentionPosition position = AttentionPosition::before;
  bool input_feeding = false;  ///< after only: õ_{t-1} is fed into the cell beside x_t
  bool relu_energy = false;    ///< additive only: e = relu(s)
};

/// The sizes of one decoder call.
struct DecoderDims {
  index_t Ty = 0, B = 0, E = 0, H = 0, Tx = 0, K = 0, Dv = 0, A = 0, O = 0;
  /// N: the sources (rows of keys, values, lengths) when a row -> source map is given (DecoderArguments::sources);
  /// 0 = B (row b attends to source b).
  index_t N = 0;
  index_t source_rows() const { return N > 0 ? N : B; }
  /// Dc: the fed columns of w_ih after its E columns of x (Dv before; O after with input feeding; else 0).
  index_t fed(const DecoderSpec& s) const {
    return s.position == AttentionPosition::before ? Dv : s.input_feeding ? O : 0;
  }
};

/// The arguments of a decoder forward (every array row-major; null where the text says so).
template <typename T>
struct DecoderArguments {
  const T* x = nullptr;          ///< [Ty, B, E] decoder inputs (E may be 0)
  const T* h0 = nullptr;         ///< [B, H] or null (zeros)
  const T* c0 = nullptr;         ///< [B, H] LSTM only, or null (zeros)
  const T* o0 = nullptr;         ///< [B, O] after with input feeding: õ_{-1}, or null (zeros)
  const T* w_ih = nullptr;       ///< [G*H, E + Dc]: columns of x first, then of the fed vector
  const T* w_hh = nullptr;       ///< [G*H, H]
  const T* b_ih = nullptr;       ///< [G*H] or null
  const T* b_hh = nullptr;       ///< [G*H] or null
  const T* keys = nullptr;       ///< [N, Tx, K]: additive the projected keys K' (K = A); dot the keys (K = H)
  const T* values = nullptr;     ///< [N, Tx, Dv]
  const index_t* lengths = nullptr;  ///< [N] in 0..Tx, or null (all Tx)
  /// [B] in 0..N-1: row b attends to source sources[b] (its keys, values, length: beam search's beams share their
  /// source's one copy), or null: source b (N = B). Inference only: a training forward refuses it.
  const index_t* sources = nullptr;
  const T* w_q = nullptr;        ///< additive: [A, H]
  const T* b_a = nullptr;        ///< additive: [A] or null
  const T* w_v = nullptr;        ///< additive: [A] the effective score vector
  const T* score_bias = nullptr; ///< additive: a scalar, or null
  const T* w_c = nullptr;        ///< after: [O, Dv + H]
  const T* b_c = nullptr;        ///< after: [O] or null
  /// Training: the workspace points at values and at the outputs' alpha instead of copying them (the caller keeps
  /// both alive and unchanged until the workspace's last backward).
  bool borrow = false;
};

/// Forward's outputs (written).
template <typename T>
struct DecoderOutputs {
  T* outputs = nullptr;   ///< [Ty, B, O]: h_t (before) or õ_t (after)
  T* contexts = nullptr;  ///< [Ty, B, Dv]
  T* alpha = nullptr;     ///< [Ty, B, Tx]
  T* h_n = nullptr;       ///< [B, H]
  T* c_n = nullptr;       ///< [B, H] LSTM only, else null
};

/// What a training forward keeps for its backward: private copies of everything backward reads (mutating the
/// caller's arrays after forward changes nothing); backward only reads it, so it serves any number of backward calls.
template <typename T>
struct DecoderWorkspace {
  DecoderSpec spec;
  DecoderDims dims;
  /// The cell's own record, as the sequence kernels keep it, with x the decoder's whole input rows: x = [x_t; fed_t]
  /// [Ty*B, E + Dc], w_hh, h slots [(Ty+1)*B, H], c slots (LSTM), acts [Ty*B, S*H]; w_ih is kept split below.
  Workspace<T> cell;
  CachedMatrix<T> w_ix;          ///< [G*H, E] x's columns of w_ih
  CachedMatrix<T> w_fed;         ///< [G*H, Dc] the fed vector's columns of w_ih
  bool has_b_a = false, has_score_bias = false, has_b_c = false;
  std::vector<index_t> lengths;  ///< [B], empty = every source step
  CachedMatrix<T> keys;          ///< [B*Tx, K]
  CachedMatrix<T> values;        ///< [B*Tx, Dv], empty when borrowed
  CachedMatrix<T> w_q;           ///< [A, H] (additive)
  CachedMatrix<T> w_v;           ///< [1, A] (additive)
  T score_bias = 0;
  CachedMatrix<T> w_cc;          ///< [O, Dv] the context's columns of w_c (after)
  CachedMatrix<T> w_ch;          ///< [O, H] h_t's columns of w_c (after)
  CachedMatrix<T> qproj;         ///< [Ty*B, A] q W_q^T + b_a of every step (additive)
  CachedMatrix<T> alpha;         ///< [Ty*B, Tx], empty when borrowed
  const T* borrowed_values = nullptr;  ///< the caller's values [B*Tx, Dv] (DecoderArguments::borrow), or null
  const T* borrowed_alpha = nullptr;   ///< the forward's output alpha [Ty*B, Tx] (borrow), or null
  CachedMatrix<T> energies;      ///< [Ty*B, Tx] e = relu(s) on the kept entries (additive with relu energies; else
                                 ///< empty): relu' for the backward, which recomputes u but not s
  CachedMatrix<T> contexts;      ///< [Ty*B, Dv] (after; before, they are cell.x's fed columns)
  CachedMatrix<T> outputs;       ///< [Ty*B, O] õ_t (after)

  const T* values_data() const { return borrowed_values ? borrowed_values : values.data(); }
  const T* alpha_data() const { return borrowed_alpha ? borrowed_alpha : alpha.data(); }

  index_t bytes() const {
    return cell.bytes() + static_cast<index_t>(sizeof(T)) * (keys.size() + values.size() + w_q.size() + w_v.size() +
                                                             w_ix.size() + w_fed.size() + w_cc.size() + w_ch.size() +
                                                             qproj.size() + alpha.size() + energies.size() +
                                                             contexts.size() + outputs.size());
  }
};

/// Forward over Ty decoder steps. Inference when `ws` is null (stores nothing); training otherwise (fills *ws; no
/// row -> source map: args.sources null, d.N 0 or B).
template <typename T>
void attention_decoder_forward(const DecoderSpec& spec, const DecoderDims& d, const DecoderArguments<T>& args,
                               const DecoderOutputs<T>& out, DecoderWorkspace<T>* ws);

/// The upstream gradients of a backward (each null = zeros).
template <typename T>
struct DecoderUpstream {
  const T* doutputs = nullptr;   ///< [Ty, B, O]
  const T* dcontexts = nullptr;  ///< [Ty, B, Dv]
  const T* dalpha = nullptr;     ///< [Ty, B, Tx]
  const T* dh_n = nullptr;       ///< [B, H]
  const T* dc_n = nullptr;       ///< [B, H] (LSTM)
};

/// Backward's outputs, written (not accumulated); null where the forward had no such argument.
template <typename T>
struct DecoderGradients {
  T* dx = nullptr;           ///< [Ty, B, E]
  T* dh0 = nullptr;          ///< [B, H]
  T* dc0 = nullptr;          ///< [B, H] LSTM
  T* do0 = nullptr;          ///< [B, O] after with input feeding
  T* dkeys = nullptr;        ///< [B, Tx, K]
  T* dvalues = nullptr;      ///< [B, Tx, Dv]
  T* dw_ih = nullptr;        ///< [G*H, E + Dc]
  T* dw_hh = nullptr;        ///< [G*H, H]
  T* db_ih = nullptr;        ///< [G*H]
  T* db_hh = nullptr;        ///< [G*H]
  T* dw_q = nullptr;         ///< [A, H] additive
  T* db_a = nullptr;         ///< [A] additive with b_a
  T* dw_v = nullptr;         ///< [A] additive
  T* dscore_bias = nullptr;  ///< one scalar, additive with a score bias
  T* dw_c = nullptr;         ///< [O, Dv + H] after
  T* db_c = nullptr;         ///< [O] after with b_c
};

/// Backpropagation through the Ty steps of the forward that filled `ws` (which it only reads). Every gradient of
/// `g` the forward's arguments call for must be given (non-null).
template <typename T>
void attention_decoder_backward(const DecoderWorkspace<T>& ws, const DecoderUpstream<T>& up,
                                const DecoderGradients<T>& g);

/// Decoding with everything fixed over a decode prepared once: a session of one-step inference calls over B rows
/// (beam search's B = sources x beams) on N sources. It copies the weights, the N sources (additive keys put in the
/// score layout once; each source once however many rows read it), the target embedding and the output layer, and
/// packs every per-step product's weight once (the decoder's and the output layer's); each step then runs the
/// embedding gather, the decoder step, logits = o W_out^T + b_out and their log-softmax in one call. Later changes
/// to the caller's arrays do not reach the session.
template <typename T>
class DecoderSession {
 public:
  ///   spec, d: as attention_decoder_forward's, with d.B the session's rows (d.Ty is ignored: one step a call) and
  ///     d.N its sources;
  ///   args: the weights and source as attention_decoder_forward's (x, h0, c0, o0 are ignored): keys, values and
  ///     lengths of N sources, and args.sources [B] the row -> source map (null: N = B, row b on source b), of which
  ///     the session keeps a copy;
  ///   embedding [Vin, E] (read when E > 0), w_out [V, O], b_out [V] or null.
  DecoderSession(const DecoderSpec& spec, const DecoderDims& d, const DecoderArguments<T>& args, const T* embedding,
                 index_t embedding_rows, const T* w_out, const T* b_out, index_t V);
  ~DecoderSession();
  DecoderSession(const DecoderSession&) = delete;
  DecoderSession& operator=(const DecoderSession&) = delete;

  /// One step for every row: tokens [B] in 0..Vin-1 (unread when E = 0), the state h [B, H], c [B, H] (LSTM) and
  /// fed [B, O] (after with input feeding), each null for zeros. Writes log_probs [B, V] (the log-softmax of the
  /// logits), outputs [B, O], alpha [B, Tx], h_n [B, H] and c_n [B, H] (LSTM).
  void step(const index_t* tokens, const T* h, const T* c, const T* fed, T* log_probs, T* outputs, T* alpha, T* h_n,
            T* c_n);

  const DecoderSpec& spec() const;
  const DecoderDims& dims() const;
  index_t embedding_rows() const;
  index_t vocabulary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rnncore
