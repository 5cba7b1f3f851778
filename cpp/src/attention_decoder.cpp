// The fused attention decoder (declared with its equations in rnncore/attention_decoder.hpp): the cells' own step
// and backward-row policies (cells/*.hpp) driven step by step, with one attention step (attention_steps.hpp) before
// or after each cell step, between the input GEMM for all steps before the loop and the weight-gradient GEMMs after.
//
// Forward, per step: [before] the query projection h_{t-1} W_q^T + b_a, the attention rows, the fed vector's share
// of the gates ctx_t W_ic^T, the cell's step (recurrent product and pointwise pass); [after] the fed õ_{t-1} W_io^T,
// the cell's step, the attention on h_t, o_t = tanh(ctx_t W_cc^T + h_t W_ch^T + b_c). Every per-step product's
// weight (W_hh, the fed columns of w_ih, W_q, W_c's halves) is packed once per call (StepProduct), nothing is
// allocated per step, and the additive score's keys are put in its score layout once per call.
// Decoding (DecoderSession, at the end): one-step calls of the same forward on products kept between the calls.
// Backward, per step t = Ty-1 … 0: [before] the cell's rows (dy = doutputs[t]) and recurrent products, then
// dctx_t = dG_t W_ic + dcontexts[t] and the attention's backward, whose dquery joins dh_{t-1};
// [after] do_t = doutputs[t] + dG_{t+1} W_io (input feeding), dopre = do ⊙ (1 - o²) (tanh' from the output),
// dctx_t = dopre W_cc + dcontexts[t], dh_t += dopre W_ch + the attention's dquery, then the cell's rows and products.
// After the loop, one GEMM each: dx = dG W_ix; dW_ih = dG^T [x; fed] and dW_hh = dG^T h_prev (the cells' own
// weight_gradients over the decoder's input rows); dW_q = Σ_t dqsum_t^T q_t; dW_c = dopre^T [ctx; h].
// Both loops run over blocks of batch rows (for_row_blocks, like the recurrent time loops: a row's attention reads only
// its own source, its cell step only its own state), each block with its own products, ending with its rows' dvalues
// and dK'; every sum over rows (the GEMMs above, dw_v, the score bias) is taken after the loop in a fixed order, so no
// bit depends on the blocks.
#include "rnncore/attention_decoder.hpp"

#include <algorithm>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "attention_steps.hpp"
#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "cells/rnn.hpp"
#include "linalg/arrays.hpp"
#include "recurrent_common.hpp"
#include "rnncore/decoding.hpp"
#include "time_loops.hpp"

namespace rnncore {

using namespace detail;

namespace {

/// The multiply-add flops of a decoder forward: the cell's GEMMs over [x; fed] and h, the attention's query
/// projection and its rows (score and context), and the output layer (after).
double decoder_flops(const DecoderSpec& s, const DecoderDims& d) {
  const double rows = double(d.Ty) * double(d.B);
  const double cell = forward_flops(s.cell.gates(), Dims{d.Ty, d.B, d.E + d.fed(s), d.H});
  const double attention = rows * (2.0 * d.Tx * (d.K + d.Dv) + (s.score == AttentionScore::additive ? 2.0 * d.H * d.A
                                                                                                     : 0.0));
  const double output = s.position == AttentionPosition::after ? rows * 2.0 * d.O * (d.Dv + d.H) : 0.0;
  return cell + attention + output;
}

/// The bytes of the weights a decoder step's products read, each row block of a row-split time loop packing its own
/// (for_row_blocks): W_hh, the fed columns of w_ih, W_q (additive), W_c (after).
double step_weight_bytes(const DecoderSpec& s, const DecoderDims& d, double scalar_bytes) {
  const double GH = double(s.cell.gates()) * double(d.H);
  const double q = s.score == AttentionScore::additive ? double(d.A) * double(d.H) : 0.0;
  const double c = s.position == AttentionPosition::after ? double(d.O) * double(d.Dv + d.H) : 0.0;
  return scalar_bytes * (GH * double(d.H) + GH * double(d.fed(s)) + q + c);
}

/// The attention's operands of a decoder call: keys, values, lengths of its N sources, `sources` its row -> source map
/// (null: row b on source b).
template <typename T>
AttentionOperands<T> attention_operands(const DecoderSpec& s, const DecoderDims& d, const T* keys, const T* values,
                                        const index_t* lengths, const index_t* sources, const T* w_q, const T* b_a,
                                        const T* w_v, const T* score_bias) {
  AttentionOperands<T> op;
  op.score = s.score;
  op.B = d.B;
  op.Tx = d.Tx;
  op.Dq = d.H;
  op.K = d.K;
  op.Dv = d.Dv;
  (s.score == AttentionScore::additive ? op.score_keys : op.keys) = keys;
  op.values = values;
  op.lengths = lengths;
  op.sources = sources;
  op.w_q = w_q;
  op.b_a = b_a;
  op.w_v = w_v;
  op.score_bias = score_bias;
  op.relu_energy = s.relu_energy;
  return op;
}

/// Columns [c0, c0 + n) of a row-major matrix with `stride` columns, as a matrix view (a block of w_ih or w_c).
template <typename T>
ConstStridedView<T> columns(const T* m, index_t rows, index_t stride, index_t c0, index_t n) {
  return ConstStridedView<T>(m + c0, rows, n, Eigen::OuterStride<>(stride));
}

/// dst [rows, n] = columns [c0, c0 + n) of m [rows, stride] (the workspace's copies of the blocks of w_ih and w_c).
template <typename T>
void keep_columns(CachedMatrix<T>& dst, const T* m, index_t rows, index_t stride, index_t c0, index_t n) {
  dst.resize(rows, n);
  for (index_t r = 0; r < rows; ++r) std::copy_n(m + r * stride + c0, n, dst.data() + r * n);
}

/// y = tanh(y) over n entries (the attentional output o_t).
template <typename T>
void tanh_in_place(T* y, index_t n) {
  lanes::for_each<T>(n, [&](auto lane, index_t j) {
    using P = decltype(lane);
    lanes::store(y + j, act::tanh(lanes::load<P>(y + j)));
  });
}

/// out [rows, n] (row stride ld) = a [rows, n]: copies a block of rows into columns of a wider matrix.
template <typename T>
void copy_rows(const T* a, index_t rows, index_t n, T* out, index_t ld) {
  for (index_t r = 0; r < rows; ++r) std::copy_n(a + r * n, n, out + r * ld);
}

/// What a decoding session (DecoderSession) keeps between its one-step calls instead of preparing it per call:
/// every per-step product (packed at the first call, then reused) and the additive keys in the score layout.
template <typename T>
struct DecoderProducts {
  std::optional<StepProduct<T, true>> input, fed, projection, out_ctx, out_h;  // W_ix, W_fed, W_q, W_cc, W_ch
  std::optional<typename LstmForward<T>::ForwardProducts> lstm;
  std::optional<typename GruForward<T>::ForwardProducts> gru;
  std::optional<typename RnnForward<T>::ForwardProducts> rnn;
  const T* score_keys = nullptr;  // additive: K'^T [N, A, Tx'] (keys_to_score_layout)

  auto& cell(const LstmForward<T>&) { return lstm; }
  auto& cell(const GruForward<T>&) { return gru; }
  auto& cell(const RnnForward<T>&) { return rnn; }

  /// Drops every product (remade at the next call); the keys stay.
  void clear() {
    for (auto* p : {&input, &fed, &projection, &out_ctx, &out_h}) p->reset();
    lstm.reset(), gru.reset(), rnn.reset();
  }
};

/// One forward call: the buffers and the per-step work around the cell's step policy. `kept` (inference only): a
/// session's products, used (and made at its first call) instead of the call's own.
template <typename T>
class DecoderForward {
 public:
  DecoderForward(const DecoderSpec& spec, const DecoderDims& d, const DecoderArguments<T>& a,
                 const DecoderOutputs<T>& out, DecoderWorkspace<T>* ws, DecoderProducts<T>* kept = nullptr)
      : s_(spec), d_(d), a_(a), out_(out), ws_(ws), kept_(ws ? nullptr : kept), B_(d.B), H_(d.H),
        GH_(spec.cell.gates() * d.H), Dc_(d.fed(spec)), I_(d.E + Dc_) {}

  void run() {
    const index_t TB = d_.Ty * B_;
    const bool training = ws_ != nullptr;
    const CellKind kind = s_.cell.kind;
    if (training) keep_for_backward();
    // The pre-activations of every step's input side [Ty*B, G*H]: x W_ix^T + folded biases, before the loop (the
    // LSTM keeps its activated gates there in training); each step adds its fed vector's share.
    const bool after_n = kind == CellKind::gru && s_.cell.reset_after;
    const bool inputs_are_acts = kind == CellKind::lstm && training;
    if (!inputs_are_acts) scratch_inputs_.resize(TB, GH_);
    T* inputs = inputs_are_acts ? ws_->cell.acts.data() : scratch_inputs_.data();
    project(inputs, folded_bias(GH_, a_.b_ih, a_.b_hh, after_n ? 2 * H_ : 0, after_n ? 3 * H_ : 0));
    // State slots: every one in training (backward reads them), two alternating in inference.
    if (!training) {
      scratch_h_.resize(2 * B_, H_);
      scratch_c_.resize(kind == CellKind::lstm ? 2 * B_ : 0, H_);
    }
    const StateSlots<T> h(training ? ws_->cell.h.data() : scratch_h_.data(), B_, H_, training);
    const StateSlots<T> c(training ? ws_->cell.c.data() : scratch_c_.data(), B_, H_, training);
    h.set_initial(a_.h0);
    if (kind == CellKind::lstm) c.set_initial(a_.c0);
    if (s_.score == AttentionScore::additive && !training) scratch_qproj_.resize(B_, d_.A);
    const T* keys = a_.keys;
    if (s_.score == AttentionScore::additive) {  // the score layout K'^T (the workspace's or session's copy)
      if (!training && !kept_) {
        const index_t N = d_.source_rows();
        scratch_keys_.resize(N * d_.A, score_row_length<T>(d_.Tx));
        keys_to_score_layout(a_.keys, N, d_.Tx, d_.A, a_.lengths, scratch_keys_.data());
      }
      keys = training ? ws_->keys.data() : kept_ ? kept_->score_keys : scratch_keys_.data();
    }
    op_ = attention_operands(s_, d_, keys, a_.values, a_.lengths, a_.sources, a_.w_q, a_.b_a, a_.w_v,
                             a_.score_bias);
    // The per-step products' weights (packed once per call by their StepProducts): blocks of columns of w_ih and
    // w_c, read in place in inference; training reads the workspace's contiguous copies, which backward reuses.
    const index_t wc_cols = d_.Dv + H_;
    w_fed_ = training ? Block{ws_->w_fed.data(), Dc_} : Block{a_.w_ih + d_.E, I_};
    if (s_.position == AttentionPosition::after) {
      w_cc_ = training ? Block{ws_->w_cc.data(), d_.Dv} : Block{a_.w_c, wc_cols};
      w_ch_ = training ? Block{ws_->w_ch.data(), H_} : Block{a_.w_c + d_.Dv, wc_cols};
    }

    switch (kind) {
      case CellKind::lstm: {
        const StateSlots<T> states[] = {h, c};
        loop(LstmForward<T>{a_.w_hh, inputs, B_, H_, training}, states);
        std::copy_n(c[d_.Ty], B_ * H_, out_.c_n);
        break;
      }
      case CellKind::gru: {
        RowMatrix<T> hw(after_n ? B_ : 0, GH_);  // reset_after's h W_hh^T (gru_step)
        RowMatrix<T> acts(training ? 0 : B_, 4 * H_);
        const T* b_hn = after_n && a_.b_hh ? a_.b_hh + 2 * H_ : nullptr;
        const StateSlots<T> states[] = {h};
        loop(GruForward<T>{a_.w_hh, inputs, hw.data(), training ? ws_->cell.acts.data() : acts.data(), b_hn, B_, H_,
                           s_.cell.reset_after, training},
             states);
        break;
      }
      case CellKind::rnn: {
        const StateSlots<T> states[] = {h};
        loop(RnnForward<T>{a_.w_hh, inputs, B_, H_, s_.cell.nonlinearity}, states);
        break;
      }
    }
    std::copy_n(h[d_.Ty], B_ * H_, out_.h_n);
    if (training) {  // what the caller may mutate: backward reads its own copies
      if (!a_.borrow) std::copy_n(out_.alpha, TB * d_.Tx, ws_->alpha.data());
      if (s_.position == AttentionPosition::after) {  // (before: the contexts are the fed columns of cell.x)
        std::copy_n(out_.contexts, TB * d_.Dv, ws_->contexts.data());
        std::copy_n(out_.outputs, TB * d_.O, ws_->outputs.data());
      }
    }
  }

 private:
  /// The workspace's copies of every argument backward reads, and its per-step buffers.
  void keep_for_backward() {
    DecoderWorkspace<T>& ws = *ws_;
    const index_t TB = d_.Ty * B_, Tx = d_.Tx;
    ws.spec = s_;
    ws.dims = d_;
    Workspace<T>& cell = ws.cell;
    cell.spec = s_.cell;
    cell.dims = Dims{d_.Ty, B_, I_, H_};
    cell.has_bias_ih = a_.b_ih != nullptr;
    cell.has_bias_hh = a_.b_hh != nullptr;
    cell.lengths.clear();
    cell.x.resize(TB, I_);  // [x_t; fed_t]: x now, the fed columns step by step
    if (d_.E > 0) copy_rows(a_.x, TB, d_.E, cell.x.data(), I_);
    auto keep = [](CachedMatrix<T>& dst, const T* src, index_t rows, index_t cols) {
      dst.resize(src ? rows : 0, cols);
      if (src) std::copy_n(src, rows * cols, dst.data());
    };
    cell.w_ih.resize(0, I_);  // kept split: w_ix, w_fed (the weight-gradient GEMMs read x and h only)
    keep(cell.w_hh, a_.w_hh, GH_, H_);
    keep_columns(ws.w_ix, a_.w_ih, GH_, I_, 0, d_.E);
    keep_columns(ws.w_fed, a_.w_ih, GH_, I_, d_.E, Dc_);
    const CellTraits& traits = cell_traits(s_.cell.kind);
    cell.h.resize((d_.Ty + 1) * B_, H_);
    cell.c.resize(traits.states > 1 ? (d_.Ty + 1) * B_ : 0, H_);
    cell.acts.resize(TB, traits.stored_acts * H_);
    ws.has_b_a = a_.b_a != nullptr;
    ws.has_score_bias = a_.score_bias != nullptr;
    ws.score_bias = a_.score_bias ? *a_.score_bias : T(0);
    ws.has_b_c = a_.b_c != nullptr;
    if (a_.lengths)
      ws.lengths.assign(a_.lengths, a_.lengths + B_);
    else
      ws.lengths.clear();
    if (s_.score == AttentionScore::additive) {  // K'^T [B, A, Tx]: the additive score's layout (attention_steps.hpp)
      ws.keys.resize(B_ * d_.A, score_row_length<T>(Tx));
      keys_to_score_layout(a_.keys, B_, Tx, d_.A, a_.lengths, ws.keys.data());
    } else {
      keep(ws.keys, a_.keys, B_ * Tx, d_.K);
    }
    keep(ws.values, a_.borrow ? nullptr : a_.values, B_ * Tx, d_.Dv);
    ws.borrowed_values = a_.borrow ? a_.values : nullptr;
    ws.borrowed_alpha = a_.borrow ? out_.alpha : nullptr;
    const bool additive = s_.score == AttentionScore::additive, after = s_.position == AttentionPosition::after;
    keep(ws.w_q, additive ? a_.w_q : nullptr, d_.A, H_);
    keep(ws.w_v, additive ? a_.w_v : nullptr, 1, d_.A);
    ws.w_cc.resize(0, d_.Dv);
    ws.w_ch.resize(0, H_);
    if (after) {
      keep_columns(ws.w_cc, a_.w_c, d_.O, d_.Dv + H_, 0, d_.Dv);
      keep_columns(ws.w_ch, a_.w_c, d_.O, d_.Dv + H_, d_.Dv, H_);
    }
    ws.qproj.resize(additive ? TB : 0, d_.A);
    ws.alpha.resize(a_.borrow ? 0 : TB, Tx);
    ws.energies.resize(additive && s_.relu_energy ? TB : 0, Tx);
    ws.contexts.resize(after ? TB : 0, d_.Dv);
    ws.outputs.resize(after ? TB : 0, d_.O);
  }

  /// inputs [Ty*B, G*H] = x W_ix^T + bias (W_ix: the first E columns of w_ih); just the bias when E = 0.
  void project(T* inputs, const RowVector<T>& bias) {
    const index_t TB = d_.Ty * B_;
    if (TB == 0) return;
    if (d_.E == 0 || kept_) {
      for (index_t r = 0; r < TB; ++r) std::copy_n(bias.data(), GH_, inputs + r * GH_);
      if (d_.E == 0) return;
    }
    if (kept_) {  // a session's one step: TB = B rows
      if (!kept_->input) kept_->input.emplace(a_.w_ih, GH_, d_.E, B_, StepProduct<T, true>::kManySteps, 0, I_);
      kept_->input->accumulate(a_.x, d_.E, inputs, GH_);
      return;
    }
    multiply_into<false, true>(MatrixView<T>(inputs, TB, GH_), ConstMatrixView<T>(a_.x, TB, d_.E),
                               columns(a_.w_ih, GH_, I_, 0, d_.E), bias.data());
  }

  /// Rows [b0, b1) of inputs_t [B, G*H] += fed [B, Dc] · W_i,fed^T (the columns of w_ih after x's; `product` made
  /// for those rows); training keeps fed in the decoder's input rows for the weight gradients.
  void feed(StepProduct<T, true>& product, T* inputs_t, const T* fed, index_t t, index_t b0, index_t b1) {
    product.accumulate(fed + b0 * Dc_, Dc_, inputs_t + b0 * GH_, GH_);
    if (ws_) copy_rows(fed + b0 * Dc_, b1 - b0, Dc_, ws_->cell.x.data() + (t * B_ + b0) * I_ + d_.E, I_);
  }

  /// The attention of step t on query [B, H], rows [b0, b1): alpha[t], contexts[t] (and the workspace's qproj).
  void attend(std::optional<StepProduct<T, true>>& projection, const T* query, index_t t, index_t b0, index_t b1) {
    T* qproj = nullptr;
    if (projection) {
      qproj = ws_ ? ws_->qproj.data() + t * B_ * d_.A : scratch_qproj_.data();
      attention_project_query(op_, *projection, query, qproj, b0, b1);
    }
    T* energies = ws_ && ws_->energies.size() ? ws_->energies.data() + t * B_ * d_.Tx : nullptr;
    attention_forward_rows(op_, query, qproj, out_.alpha + t * B_ * d_.Tx, out_.contexts + t * B_ * d_.Dv, energies,
                           b0, b1);
  }

  /// The time loop over blocks of batch rows (for_row_blocks: the rows are independent, each attends to its own
  /// source), or a session's one step on its kept products over the whole batch.
  template <typename Cell, int N>
  void loop(const Cell& cell, const StateSlots<T> (&states)[N]) {
    RowMatrix<T> zero_fed;
    const T* o0 = a_.o0;
    if (s_.position == AttentionPosition::after && s_.input_feeding && !o0) {
      zero_fed = RowMatrix<T>::Zero(B_, d_.O);
      o0 = zero_fed.data();
    }
    if (kept_) {
      steps(cell, states, o0, 0, B_);
      return;
    }
    for_row_blocks(B_, step_weight_bytes(s_, d_, sizeof(T)),
                   [&](index_t b0, index_t b1) { steps(cell, states, o0, b0, b1); });
  }

  /// Every step of rows [b0, b1); o0 [B, O]: the fed õ_0 (after with input feeding).
  template <typename Cell, int N>
  void steps(const Cell& cell, const StateSlots<T> (&states)[N], const T* o0, index_t b0, index_t b1) {
    const index_t Ty = d_.Ty, O = d_.O, Dv = d_.Dv, R = b1 - b0;
    // Every per-step product's weight is packed once for the block (a session's: once for all its calls): the
    // cell's recurrent product, the fed vector's share of the gates, the query projection, the output layer's halves.
    const index_t calls = kept_ ? StepProduct<T, true>::kManySteps : Ty;
    std::optional<typename Cell::ForwardProducts> own_products;
    auto& cell_products = kept_ ? kept_->cell(cell) : own_products;
    if (!cell_products) cell_products.emplace(cell, R, calls);
    typename Cell::ForwardProducts& products = *cell_products;
    std::optional<StepProduct<T, true>> own_fed, own_projection, own_out_ctx, own_out_h;
    auto& fed_product = kept_ ? kept_->fed : own_fed;
    auto& projection = kept_ ? kept_->projection : own_projection;
    auto& out_ctx = kept_ ? kept_->out_ctx : own_out_ctx;
    auto& out_h = kept_ ? kept_->out_h : own_out_h;
    if (Dc_ > 0 && !fed_product) fed_product.emplace(w_fed_.data, GH_, Dc_, R, calls, 0, w_fed_.stride);
    if (s_.score == AttentionScore::additive && !projection) projection.emplace(a_.w_q, d_.A, H_, R, calls);
    const bool before = s_.position == AttentionPosition::before;
    if (!before && !out_ctx) {
      out_ctx.emplace(w_cc_.data, O, Dv, R, calls, 0, w_cc_.stride);
      out_h.emplace(w_ch_.data, O, H_, R, calls, 0, w_ch_.stride);
    }
    for (index_t t = 0; t < Ty; ++t) {
      T *prev[N], *next[N];
      for (int k = 0; k < N; ++k) {
        prev[k] = states[k][t] + b0 * H_;
        next[k] = states[k][t + 1] + b0 * H_;
      }
      T* inputs_t = cell_inputs(cell) + t * B_ * GH_;
      if (before) {
        attend(projection, states[0][t], t, b0, b1);
        feed(*fed_product, inputs_t, out_.contexts + t * B_ * Dv, t, b0, b1);
      } else if (s_.input_feeding) {
        feed(*fed_product, inputs_t, t == 0 ? o0 : out_.outputs + (t - 1) * B_ * O, t, b0, b1);
      }
      cell.step(products, t, b0, R, prev, next, [](index_t) { return true; });
      if (before) {
        std::copy_n(next[0], R * H_, out_.outputs + (t * B_ + b0) * H_);
        continue;
      }
      attend(projection, states[0][t + 1], t, b0, b1);
      // o_t = tanh(b_c + ctx_t W_cc^T + h_t W_ch^T), W_c = [W_cc | W_ch]
      T* o_t = out_.outputs + t * B_ * O;
      for (index_t b = b0; b < b1; ++b) {
        if (a_.b_c)
          std::copy_n(a_.b_c, O, o_t + b * O);
        else
          std::fill(o_t + b * O, o_t + (b + 1) * O, T(0));
      }
      out_ctx->accumulate(out_.contexts + (t * B_ + b0) * Dv, Dv, o_t + b0 * O, O);
      out_h->accumulate(next[0], H_, o_t + b0 * O, O);
      // by rows: an element's lane width (packet or scalar tail) then depends on its column, not on B
      for (index_t b = b0; b < b1; ++b) tanh_in_place(o_t + b * O, O);
    }
  }

  // Where each cell policy keeps its input-side pre-activations.
  static T* cell_inputs(const LstmForward<T>& c) { return c.gates; }
  static T* cell_inputs(const GruForward<T>& c) { return c.xw; }
  static T* cell_inputs(const RnnForward<T>& c) { return c.pre; }

  const DecoderSpec& s_;
  const DecoderDims& d_;
  const DecoderArguments<T>& a_;
  const DecoderOutputs<T>& out_;
  DecoderWorkspace<T>* ws_;
  DecoderProducts<T>* kept_;
  const index_t B_, H_, GH_, Dc_, I_;
  AttentionOperands<T> op_;
  CachedMatrix<T> scratch_inputs_, scratch_keys_;
  /// A block of columns of a weight: where it starts and the distance between its rows.
  struct Block {
    const T* data = nullptr;
    index_t stride = 0;
  };
  Block w_fed_, w_cc_, w_ch_;  // the fed columns of w_ih; w_c's context and h_t halves
  RowMatrix<T> scratch_h_, scratch_c_, scratch_qproj_;
};

/// One backward call: the buffers and the per-step work around the cell's backward policy.
template <typename T>
class DecoderBackward {
 public:
  DecoderBackward(const DecoderWorkspace<T>& ws, const DecoderUpstream<T>& up, const DecoderGradients<T>& g)
      : ws_(ws), s_(ws.spec), d_(ws.dims), up_(up), g_(g), B_(d_.B), H_(d_.H), GH_(s_.cell.gates() * d_.H),
        Dc_(d_.fed(s_)), I_(d_.E + Dc_), TB_(d_.Ty * d_.B) {}

  void run() {
    const bool additive = s_.score == AttentionScore::additive;
    op_ = attention_operands<T>(s_, d_, ws_.keys.data(), ws_.values_data(),
                                ws_.lengths.empty() ? nullptr : ws_.lengths.data(), nullptr, ws_.w_q.data(), nullptr,
                                ws_.w_v.data(), ws_.has_score_bias ? &ws_.score_bias : nullptr);
    std::fill(g_.dkeys, g_.dkeys + B_ * d_.Tx * d_.K, T(0));
    if (additive) dkeys_t_ = RowMatrix<T>::Zero(B_ * d_.A, score_row_length<T>(d_.Tx));  // dK'^T, turned back after
    dqsum_.resize(additive ? TB_ : 0, d_.A);
    dw_v_rows_ = RowMatrix<T>::Zero(additive ? B_ : 0, d_.A);
    dscore_bias_rows_ = RowMatrix<T>::Zero(additive ? B_ : 0, 1);
    dopre_.resize(s_.position == AttentionPosition::after ? TB_ : 0, d_.O);
    dctx_.resize(TB_, d_.Dv);  // every step's: dvalues is taken from them after the loop
    dfed_ = RowMatrix<T>::Zero(s_.input_feeding ? B_ : 0, d_.O);
    dG_.resize(TB_, GH_);
    dh_ = initial_state_gradient(up_.dh_n, B_, H_);
    const bool gru_after = s_.cell.kind == CellKind::gru && s_.cell.reset_after;
    CachedMatrix<T> dGh_n(gru_after ? TB_ : 0, H_);  // GRU reset_after: the recurrent side's n block, dn_pre ⊙ r
    const StateSlots<const T> h(ws_.cell.h.data(), B_, H_, true);
    switch (s_.cell.kind) {
      case CellKind::lstm: {
        RowMatrix<T> dc = initial_state_gradient(up_.dc_n, B_, H_);
        loop(LstmBackward<T>{{ws_.cell.w_hh.data(), GH_, H_}, ws_.cell.acts.data(), {ws_.cell.c.data(), B_, H_, true},
                             dc.data(), B_},
             h);
        std::copy_n(dc.data(), B_ * H_, g_.dc0);
        break;
      }
      case CellKind::gru: {
        RowMatrix<T> drh(gru_after ? 0 : B_, H_);  // reset_before: d(r ⊙ h)
        loop(GruBackward<T>{ws_.cell.w_hh.data(), ws_.cell.acts.data(), {ws_.cell.h.data(), B_, H_, true},
                            gru_after ? dGh_n.data() : nullptr, gru_after ? nullptr : drh.data(), B_, H_, gru_after},
             h);
        break;
      }
      case CellKind::rnn: {
        loop(RnnBackward<T>{{ws_.cell.w_hh.data(), H_, H_}, {ws_.cell.h.data(), B_, H_, true}, B_,
                            s_.cell.nonlinearity == Nonlinearity::relu},
             h);
        break;
      }
    }
    std::copy_n(dh_.data(), B_ * H_, g_.dh0);
    cell_input_gradients();
    if (s_.cell.kind == CellKind::gru)
      gru_weight_gradients(dG_.view(), dGh_n.data(), ws_.cell, g_.dw_ih, g_.db_ih, g_.dw_hh, g_.db_hh);
    else
      weight_gradients(dG_.view(), ws_.cell, GH_, g_.dw_ih, g_.db_ih, g_.dw_hh, g_.db_hh);
    attention_weight_gradients();
  }

 private:
  /// The time loop over blocks of batch rows (for_row_blocks: the rows are independent; every sum over rows is taken
  /// after the loop, in a fixed order).
  template <typename Cell>
  void loop(const Cell& cell, const StateSlots<const T>& h) {
    for_row_blocks(B_, step_weight_bytes(s_, d_, sizeof(T)), [&](index_t b0, index_t b1) { steps(cell, h, b0, b1); });
  }

  /// Every step t = Ty-1 … 0 of rows [b0, b1).
  template <typename Cell>
  void steps(const Cell& cell, const StateSlots<const T>& h, index_t b0, index_t b1) {
    const index_t O = d_.O, R = b1 - b0;
    typename Cell::BackwardProducts products(cell, R);
    // The per-step products' weights, packed once: the fed vector's columns of w_ih (dctx or dõ_{t-1} = dG_t W_fed),
    // the query projection (dquery = dqsum W_q), the output layer's halves (dopre W_cc, dopre W_ch).
    std::optional<StepProduct<T, false>> fed_product, query_product, out_ctx, out_h;
    if (Dc_ > 0) fed_product.emplace(ws_.w_fed.data(), GH_, Dc_, R);
    if (s_.score == AttentionScore::additive) query_product.emplace(ws_.w_q.data(), d_.A, H_, R);
    const StepMask all(nullptr, B_);
    const bool before = s_.position == AttentionPosition::before;
    if (!before) {
      out_ctx.emplace(ws_.w_cc.data(), O, d_.Dv, R);
      out_h.emplace(ws_.w_ch.data(), O, H_, R);
    }
    for (index_t t = d_.Ty - 1; t >= 0; --t) {
      T* dg_t = dG_.data() + t * B_ * GH_;
      if (before) {
        cell_rows(cell, t, dg_t, up_.doutputs ? up_.doutputs + t * B_ * H_ : nullptr, b0, b1);
        cell.propagate(products, all, t, b0, b1, dg_t, dh_.data());
        context_gradient(t, *fed_product, dg_t, GH_, b0, b1);  // dctx_t = dG_t W_ic (+ dcontexts[t])
        attention_backward(query_product, h[t], t, b0, b1);    // the query h_{t-1}: its gradient joins dh_{t-1}
        continue;
      }
      // do_t = doutputs[t] (+ what step t+1's input took from õ_t); dopre = do ⊙ (1 - o²)
      T* dopre = dopre_.data() + t * B_ * O;
      const T* o_t = ws_.outputs.data() + t * B_ * O;
      const T* dy = up_.doutputs ? up_.doutputs + t * B_ * O : nullptr;
      const bool fed = s_.input_feeding && t + 1 < d_.Ty;
      for (index_t j = b0 * O; j < b1 * O; ++j) {
        const T dout = (dy ? dy[j] : T(0)) + (fed ? dfed_.data()[j] : T(0));
        dopre[j] = dout * (T(1) - o_t[j] * o_t[j]);
      }
      context_gradient(t, *out_ctx, dopre, O, b0, b1);  // dctx_t = dopre W_cc (+ dcontexts[t])
      out_h->accumulate(dopre + b0 * O, O, dh_.data() + b0 * H_, H_);  // dh_t += dopre W_ch
      attention_backward(query_product, h[t + 1], t, b0, b1);  // the query h_t
      cell_rows(cell, t, dg_t, nullptr, b0, b1);
      cell.propagate(products, all, t, b0, b1, dg_t, dh_.data());
      if (s_.input_feeding) {  // dõ_{t-1} = dG_t W_io
        T* dfed = dfed_.data() + b0 * O;
        std::fill(dfed, dfed + R * O, T(0));
        fed_product->accumulate(dg_t + b0 * GH_, GH_, dfed, O);
        if (t == 0 && g_.do0) std::copy_n(dfed, R * O, g_.do0 + b0 * O);
      }
    }
    // The block's rows are done: their dvalues and dK' (per row, each row's own sums) on the block's thread.
    values_gradient(b0, b1);
    if (s_.score == AttentionScore::additive) {
      const index_t rows_t = d_.A * score_row_length<T>(d_.Tx);
      add_score_layout_to_keys(dkeys_t_.data() + b0 * rows_t, R, d_.Tx, d_.A, g_.dkeys + b0 * d_.Tx * d_.A);
    }
  }

  /// The cell's backward row for samples [b0, b1) at step t: dG_t from dh (+ dy [B, H] or null).
  template <typename Cell>
  void cell_rows(const Cell& cell, index_t t, T* dg_t, const T* dy, index_t b0, index_t b1) {
    for_each_row(b1 - b0, GH_, [&](index_t r) {
      const index_t b = b0 + r;
      cell.backward_row(t, b, dg_t + b * GH_, dh_.data() + b * H_, dy ? dy + b * H_ : nullptr);
    });
  }

  /// Rows [b0, b1) of dctx [B, Dv] = upstream [B, N] · W (the context's share of the step's products: W [N, Dv],
  /// `product` made for those rows) + dcontexts[t].
  void context_gradient(index_t t, StepProduct<T, false>& product, const T* upstream, index_t N, index_t b0,
                        index_t b1) {
    T* dctx = dctx_t(t) + b0 * d_.Dv;
    const index_t n = (b1 - b0) * d_.Dv;
    if (up_.dcontexts)
      std::copy_n(up_.dcontexts + (t * B_ + b0) * d_.Dv, n, dctx);
    else
      std::fill(dctx, dctx + n, T(0));
    product.accumulate(upstream + b0 * N, N, dctx, d_.Dv);
  }

  T* dctx_t(index_t t) { return dctx_.data() + t * B_ * d_.Dv; }

  /// dvalues[b, t'] = Σ_steps α_s[b, t'] dctx_s[b] for samples [b0, b1) (the attention's context products,
  /// accumulated once after the block's steps, sample by sample, so that each sample's dvalues stays in cache instead
  /// of one pass over all of dvalues per step).
  void values_gradient(index_t b0, index_t b1) {
    const index_t Tx = d_.Tx, Dv = d_.Dv;
    std::fill(g_.dvalues + b0 * Tx * Dv, g_.dvalues + b1 * Tx * Dv, T(0));  // (zero past each sample's length)
    const index_t* lengths = ws_.lengths.empty() ? nullptr : ws_.lengths.data();
    for (index_t b = b0; b < b1; ++b) {
      const index_t n = lengths ? lengths[b] : Tx;
      for (index_t t = 0; t < n; ++t)  // over the steps: α_s[b, t] weighs dctx_s[b]
        attention_lanes::weighted_sum_rows(ws_.alpha_data() + b * Tx + t, B_ * Tx, dctx_.data() + b * Dv, B_ * Dv,
                                           d_.Ty, Dv, g_.dvalues + (b * Tx + t) * Dv, false);
    }
  }

  /// The attention's backward at step t on its query [B, H], rows [b0, b1); dquery joins dh.
  void attention_backward(std::optional<StepProduct<T, false>>& query_product, const T* query, index_t t, index_t b0,
                          index_t b1) {
    AttentionRowGradients<T> rows;
    const bool additive = s_.score == AttentionScore::additive;
    rows.dqsum = additive ? dqsum_.data() + t * B_ * d_.A : nullptr;
    rows.dquery = additive ? nullptr : dh_.data();
    rows.dkeys = additive ? nullptr : g_.dkeys;
    rows.dscore_keys = additive ? dkeys_t_.data() : nullptr;
    rows.dvalues = nullptr;  // values_gradient, after the block's steps
    rows.dw_v_rows = additive ? dw_v_rows_.data() : nullptr;
    rows.dscore_bias_rows = additive ? dscore_bias_rows_.data() : nullptr;
    attention_backward_rows(op_, query, additive ? ws_.qproj.data() + t * B_ * d_.A : nullptr,
                            ws_.alpha_data() + t * B_ * d_.Tx,
                            ws_.energies.size() ? ws_.energies.data() + t * B_ * d_.Tx : nullptr, dctx_t(t),
                            up_.dalpha ? up_.dalpha + t * B_ * d_.Tx : nullptr, rows, b0, b1);
    if (additive) attention_query_gradient(op_, *query_product, rows.dqsum, dh_.data(), b0);
  }

  /// dx [Ty*B, E] = dG W_ix (x's columns of w_ih);  db_ih = Σ_rows dG (the cells' weight_gradients copy it).
  void cell_input_gradients() {
    if (d_.E > 0 && TB_ > 0)
      multiply_into<false, false>(MatrixView<T>(g_.dx, TB_, d_.E), dG_.view(), ws_.w_ix.view());
    column_sums(dG_.view(), g_.db_ih);
  }

  /// After the loop: dW_q = Σ dqsum^T q, db_a = Σ dqsum, dw_v and dscore_bias from the per-row sums, and the output
  /// layer's dW_c = dopre^T [ctx; h_t], db_c = Σ dopre.
  void attention_weight_gradients() {
    const bool before = s_.position == AttentionPosition::before;
    const ConstMatrixView<T> queries(ws_.cell.h.data() + (before ? 0 : B_ * H_), TB_, H_);  // h_{t-1} or h_t
    if (s_.score == AttentionScore::additive) {
      if (TB_ > 0)
        multiply_into<true, false>(MatrixView<T>(g_.dw_q, d_.A, H_), dqsum_.view(), queries);
      else
        std::fill(g_.dw_q, g_.dw_q + d_.A * H_, T(0));
      if (g_.db_a) column_sums(dqsum_.view(), g_.db_a);
      std::fill(g_.dw_v, g_.dw_v + d_.A, T(0));
      sum_rows_into(dw_v_rows_.data(), B_, d_.A, g_.dw_v);
      if (g_.dscore_bias) {
        *g_.dscore_bias = T(0);
        sum_rows_into(dscore_bias_rows_.data(), B_, index_t(1), g_.dscore_bias);
      }
    }
    if (before) return;
    const index_t wc_cols = d_.Dv + H_;
    StridedView<T> dw_cc(g_.dw_c, d_.O, d_.Dv, Eigen::OuterStride<>(wc_cols));
    StridedView<T> dw_ch(g_.dw_c + d_.Dv, d_.O, H_, Eigen::OuterStride<>(wc_cols));
    if (TB_ > 0) {
      multiply_into<true, false>(dw_cc, dopre_.view(), ws_.contexts.view());
      multiply_into<true, false>(dw_ch, dopre_.view(), queries);
    } else {
      std::fill(g_.dw_c, g_.dw_c + d_.O * wc_cols, T(0));
    }
    if (g_.db_c) column_sums(dopre_.view(), g_.db_c);
  }

  const DecoderWorkspace<T>& ws_;
  const DecoderSpec& s_;
  const DecoderDims& d_;
  const DecoderUpstream<T>& up_;
  const DecoderGradients<T>& g_;
  const index_t B_, H_, GH_, Dc_, I_, TB_;
  AttentionOperands<T> op_;
  CachedMatrix<T> dG_, dqsum_, dopre_;
  CachedMatrix<T> dctx_;
  RowMatrix<T> dh_, dfed_, dw_v_rows_, dscore_bias_rows_, dkeys_t_;
};

}  // namespace

template <typename T>
void attention_decoder_forward(const DecoderSpec& spec, const DecoderDims& d, const DecoderArguments<T>& args,
                               const DecoderOutputs<T>& out, DecoderWorkspace<T>* ws) {
  if (ws && (args.sources || d.source_rows() != d.B))  // backward's key and value gradients are per row's source
    throw std::logic_error("rnncore internal error: attention_decoder_forward: a training forward takes no row -> "
                           "source map");
  const KernelScope scope(decoder_flops(spec, d));
  DecoderForward<T>(spec, d, args, out, ws).run();
}

template <typename T>
void attention_decoder_backward(const DecoderWorkspace<T>& ws, const DecoderUpstream<T>& up,
                                const DecoderGradients<T>& g) {
  const KernelScope scope(2 * decoder_flops(ws.spec, ws.dims));  // backward ≈ twice the forward
  DecoderBackward<T>(ws, up, g).run();
}

/// The session's private copies of its arrays (args points into them) and what its steps keep (DecoderProducts).
template <typename T>
struct DecoderSession<T>::Impl {
  DecoderSpec spec;
  DecoderDims d;
  index_t Vin, V;
  double flops;  // a step's multiply-add flops: the decoder's and the output layer's
  RowMatrix<T> w_ih, w_hh, b_ih, b_hh, keys, values, w_q, b_a, w_v, score_bias, w_c, b_c, embedding, w_out, b_out;
  std::vector<index_t> lengths;  // [N]
  std::vector<index_t> sources;  // [B] the row -> source map, empty without one
  DecoderArguments<T> args;
  DecoderProducts<T> products;
  std::optional<StepProduct<T, true>> output;  // logits += o W_out^T
  RowMatrix<T> x, contexts;                    // one step's embedded tokens [B, E] and contexts [B, Dv]
  bool prepared = false;                       // the products exist (made at the first step)
  bool invariant = false;                      // row_invariant() when they were made (it fixes their paths)
  std::mutex busy;                             // one step at a time (the GIL is released): the scratch is shared

  /// A copy of rows x cols entries at p (empty when p is null) and where it lives (null when p is).
  static const T* keep(RowMatrix<T>& dst, const T* p, index_t rows, index_t cols) {
    if (!p) return nullptr;
    dst = ConstMatrixView<T>(p, rows, cols);
    return dst.data();
  }

  Impl(const DecoderSpec& s, const DecoderDims& dims, const DecoderArguments<T>& a, const T* emb, index_t emb_rows,
       const T* wo, const T* bo, index_t vocab)
      : spec(s), d(dims), Vin(emb_rows), V(vocab) {
    d.Ty = 1;
    const index_t B = d.B, N = d.source_rows(), GH = s.cell.gates() * d.H, I = d.E + d.fed(s);
    const bool additive = s.score == AttentionScore::additive, after = s.position == AttentionPosition::after;
    flops = decoder_flops(s, d) + 2.0 * double(B) * double(d.O) * double(V);
    args.w_ih = keep(w_ih, a.w_ih, GH, I);
    args.w_hh = keep(w_hh, a.w_hh, GH, d.H);
    args.b_ih = keep(b_ih, a.b_ih, 1, GH);
    args.b_hh = keep(b_hh, a.b_hh, 1, GH);
    if (a.lengths) {
      lengths.assign(a.lengths, a.lengths + N);
      args.lengths = lengths.data();
    }
    if (a.sources) {
      sources.assign(a.sources, a.sources + B);
      args.sources = sources.data();
    }
    if (additive) {  // K'^T in the score layout once per source; the steps never read the keys themselves
      keys.resize(N * d.A, score_row_length<T>(d.Tx));
      keys_to_score_layout(a.keys, N, d.Tx, d.A, a.lengths, keys.data());
      products.score_keys = keys.data();
    } else {
      args.keys = keep(keys, a.keys, N * d.Tx, d.K);
    }
    args.values = keep(values, a.values, N * d.Tx, d.Dv);
    if (additive) {
      args.w_q = keep(w_q, a.w_q, d.A, d.H);
      args.b_a = keep(b_a, a.b_a, 1, d.A);
      args.w_v = keep(w_v, a.w_v, 1, d.A);
      args.score_bias = keep(score_bias, a.score_bias, 1, 1);
    }
    if (after) {
      args.w_c = keep(w_c, a.w_c, d.O, d.Dv + d.H);
      args.b_c = keep(b_c, a.b_c, 1, d.O);
    }
    keep(embedding, d.E > 0 ? emb : nullptr, Vin, d.E);
    keep(w_out, wo, V, d.O);
    keep(b_out, bo, 1, V);
    x.resize(B, d.E);
    contexts.resize(B, d.Dv);
  }
};

template <typename T>
DecoderSession<T>::DecoderSession(const DecoderSpec& spec, const DecoderDims& d, const DecoderArguments<T>& args,
                                  const T* embedding, index_t embedding_rows, const T* w_out, const T* b_out,
                                  index_t V)
    : impl_(std::make_unique<Impl>(spec, d, args, embedding, embedding_rows, w_out, b_out, V)) {}

template <typename T>
DecoderSession<T>::~DecoderSession() = default;

template <typename T>
void DecoderSession<T>::step(const index_t* tokens, const T* h, const T* c, const T* fed, T* log_probs, T* outputs,
                             T* alpha, T* h_n, T* c_n) {
  Impl& s = *impl_;
  const std::lock_guard<std::mutex> lock(s.busy);
  const index_t B = s.d.B, E = s.d.E, O = s.d.O, V = s.V;
  if (s.prepared && s.invariant != row_invariant()) {  // made under the other mode: remake them under this one
    s.products.clear();
    s.output.reset();
    s.prepared = false;
  }
  {
    const KernelScope scope(s.flops);
#ifdef _OPENMP
    // The first step lays the products out for the whole team (a later step still takes only its own scope's
    // threads: StepProduct::active_parts).
    if (!s.prepared) omp_set_num_threads(get_num_threads());
#endif
    for (index_t b = 0; b < B && E > 0; ++b) std::copy_n(s.embedding.data() + tokens[b] * E, E, s.x.data() + b * E);
    DecoderArguments<T> a = s.args;
    a.x = s.x.data();
    a.h0 = h;
    a.c0 = c;
    a.o0 = s.spec.input_feeding ? fed : nullptr;
    const DecoderOutputs<T> out{outputs, s.contexts.data(), alpha, h_n, c_n};
    DecoderForward<T>(s.spec, s.d, a, out, nullptr, &s.products).run();
    for (index_t b = 0; b < B; ++b) {  // logits = b_out + o W_out^T
      if (s.b_out.size())
        std::copy_n(s.b_out.data(), V, log_probs + b * V);
      else
        std::fill(log_probs + b * V, log_probs + (b + 1) * V, T(0));
    }
    if (!s.output) s.output.emplace(s.w_out.data(), V, O, B);
    s.output->accumulate(outputs, O, log_probs, V);
    s.prepared = true;
    s.invariant = row_invariant();
  }
  log_softmax_rows<T>(B, V, log_probs, log_probs);
}

template <typename T>
const DecoderSpec& DecoderSession<T>::spec() const { return impl_->spec; }
template <typename T>
const DecoderDims& DecoderSession<T>::dims() const { return impl_->d; }
template <typename T>
index_t DecoderSession<T>::embedding_rows() const { return impl_->Vin; }
template <typename T>
index_t DecoderSession<T>::vocabulary() const { return impl_->V; }

template class DecoderSession<float>;
template class DecoderSession<double>;

template void attention_decoder_forward<float>(const DecoderSpec&, const DecoderDims&, const DecoderArguments<float>&,
                                               const DecoderOutputs<float>&, DecoderWorkspace<float>*);
template void attention_decoder_forward<double>(const DecoderSpec&, const DecoderDims&,
                                                const DecoderArguments<double>&, const DecoderOutputs<double>&,
                                                DecoderWorkspace<double>*);
template void attention_decoder_backward<float>(const DecoderWorkspace<float>&, const DecoderUpstream<float>&,
                                                const DecoderGradients<float>&);
template void attention_decoder_backward<double>(const DecoderWorkspace<double>&, const DecoderUpstream<double>&,
                                                 const DecoderGradients<double>&);

}  // namespace rnncore
