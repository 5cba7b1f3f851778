"""The attention decoder in plain NumPy: the twin of ``rnncore.ops.attention_decoder_forward/backward``.

A recurrent cell and attention run together, one decoder step at a time (the contract: docs/design.md §2
"Attention decoder"). Shape letters: Ty decoder steps, B batch, Tx source steps, E decoder input features (0 for
"context only", the course's date model), H hidden, G gates, K key columns, Dv value features, A attention units,
O output features (H for "before", rows of W_c for "after"). Time-major: ``x [Ty, B, E]``.

One step t, state s_{t-1} = (h_{t-1}, c_{t-1}), s_{-1} = (h0, c0)::

    position "before" (Bahdanau; the course's model):     position "after" (Luong):
        ctx_t, α_t = attend(h_{t-1})                          x̂_t = [x_t ; õ_{t-1}] (input feeding, õ_{-1} = o0)
        x̂_t = [x_t ; ctx_t]                                        or x_t
        s_t = cell(x̂_t, s_{t-1})                              s_t = cell(x̂_t, s_{t-1})
        o_t = h_t                                             ctx_t, α_t = attend(h_t)
                                                              o_t = õ_t = tanh([ctx_t ; h_t] W_c^T + b_c)

``attend`` is ``reference.attention``'s additive step (keys = the projected keys K' [B, Tx, A]) or Luong's dot
score (keys [B, Tx, H]) with one query per sample; ``cell`` is ``reference.rnn``'s step of the LSTM, GRU or RNN with
x̂_t W_ih^T + b_ih as its input projection. This module adds only the loop that joins them and its backward.
"""

import numpy as np

from ._common import _cast, _dtanh, _f64, _linear, _linear_backward, _or_zeros, _result_dtype
from .attention import (
    additive_attention_backward,
    additive_attention_forward,
    luong_attention_backward,
    luong_attention_forward,
)
from .decoding import log_softmax
from .nn import linear_forward
from .rnn import _STEPS

__all__ = ["attention_decoder_forward", "attention_decoder_backward", "decoder_session_step"]

_CELLS = ("lstm", "gru", "rnn")
_SCORES = ("additive", "dot")
_POSITIONS = ("before", "after")


# ---- attention over one query per sample: the two scores behind one interface ----

def _attend(score, query, keys, values, lengths, w_q, b_a, w_v, score_bias, energy_activation):
    """(context [B, Dv], alpha [B, Tx], saved) for query [B, H] (all float64)."""
    if score == "additive":
        return additive_attention_forward(query, keys, values, w_q, b_a, w_v, lengths=lengths,
                                          score_bias=score_bias, energy_activation=energy_activation)
    context, alpha, saved = luong_attention_forward(query[:, None, :], keys, values, "dot", lengths=lengths)
    return context[:, 0], alpha[:, 0], saved                      # Luong's dot with Ty = 1


def _attend_backward(score, saved, dcontext, dalpha):
    """The step's attention gradients as (dquery [B, H], dkeys [B, Tx, K], dvalues [B, Tx, Dv], parameter dict)."""
    if score == "additive":
        g = additive_attention_backward(saved, dcontext, dalpha)
        params = dict(dw_q=g["dw_q"], db_a=g["db_a"], dw_v=g["dw_v"], dscore_bias=g["dscore_bias"])
        return g["dquery"], g["dprojected_keys"], g["dvalues"], params
    g = luong_attention_backward(saved, dcontext[:, None, :], None if dalpha is None else dalpha[:, None, :])
    return g["dquery"][:, 0], g["dkeys"], g["dvalues"], {}


def _check_options(x, h0, c0, w_ih, keys, values, cell, score, position, input_feeding, w_q, w_v, b_a, score_bias,
                   energy_activation, w_c, b_c, o0):
    """The combinations the contract allows (the op's full argument checks live in rnncore._validation)."""
    if cell not in _CELLS:
        raise ValueError(f"cell: expected one of {_CELLS}, received {cell!r}")
    if score not in _SCORES:
        raise ValueError(f"score: expected one of {_SCORES}, received {score!r}")
    if position not in _POSITIONS:
        raise ValueError(f"position: expected one of {_POSITIONS}, received {position!r}")
    if np.ndim(x) != 3:
        raise ValueError(f"x: expected [Ty, B, E] (E may be 0), received shape {np.shape(x)}")
    if cell != "lstm" and c0 is not None:
        raise ValueError(f"c0: expected None for cell {cell!r} (only the LSTM has a cell state), received an array")
    if score == "additive" and (w_q is None or w_v is None):
        raise ValueError("w_q, w_v: expected arrays for score 'additive', received None")
    if score == "dot" and any(a is not None for a in (w_q, b_a, w_v, score_bias, energy_activation)):
        raise ValueError("w_q, b_a, w_v, score_bias, energy_activation: expected None for score 'dot'")
    if position == "after":
        if w_c is None:
            raise ValueError("w_c: expected [O, Dv + H] for position 'after', received None")
        if not input_feeding and np.shape(x)[2] == 0:
            raise ValueError("x: expected E >= 1 for position 'after' without input feeding, received E = 0")
    elif input_feeding or w_c is not None or b_c is not None:
        raise ValueError("input_feeding, w_c, b_c: expected False/None for position 'before' (O = H)")
    if o0 is not None and not input_feeding:
        raise ValueError("o0: expected None without input feeding (it is the õ fed to the first step)")
    E, Dv = np.shape(x)[2], np.shape(values)[2]
    fed = Dv if position == "before" else (np.shape(w_c)[0] if input_feeding else 0)
    if np.shape(w_ih)[1] != E + fed:
        raise ValueError(f"w_ih: expected {E + fed} columns (E = {E} inputs + {fed} fed), received {np.shape(w_ih)}")


# ---- the ops ----

def attention_decoder_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keys, values, lengths=None, *, cell="lstm",
                              reset_after=True, nonlinearity="tanh", score="additive", w_q=None, b_a=None, w_v=None,
                              score_bias=None, energy_activation=None, position="before", input_feeding=False,
                              w_c=None, b_c=None, training=True, o0=None):
    """The attention decoder over Ty steps (equations in the module docstring).

    Args:
        x:       [Ty, B, E] decoder inputs (E = 0: context only; Ty is x's first axis). Results have x's dtype.
        h0, c0:  [B, H] initial state, or None for zeros; c0 only for the LSTM (else None).
        w_ih:    [G*H, E + Dc] the cell's input weights over [x_t ; fed], Dc = Dv ("before"), O ("after" with input
                 feeding) or 0; w_hh [G*H, H]; b_ih, b_hh [G*H] or None. Gate order and layout as PyTorch.
        keys:    "additive": the projected keys K' [B, Tx, A]; "dot": keys [B, Tx, H].
        values:  [B, Tx, Dv] what the context averages.
        lengths: [B] ints in 0..Tx (sample b attends to t' < lengths[b]; 0: zero context), or None.
        cell, reset_after, nonlinearity: the cell ("lstm", "gru" with reset_after, "rnn" with "tanh"/"relu").
        score:   "additive" (w_q [A, H], b_a [A] or None, w_v [A] the effective score vector, score_bias a scalar or
                 None, energy_activation None or "relu") or "dot" (those all None).
        position, input_feeding: "before" or "after" (Luong; input_feeding feeds õ_{t-1} to the cell).
        w_c, b_c: "after" only: [O, Dv + H] and [O] or None, o_t = tanh([ctx_t ; h_t] W_c^T + b_c).
        training: False keeps nothing (saved is None).
        o0:      [B, O] the õ fed to the first step with input feeding (None = zeros): lets decoding run one step
                 per call with the state passed back in.

    Returns:
        (outputs [Ty, B, O], contexts [Ty, B, Dv], alpha [Ty, B, Tx], h_n [B, H], c_n [B, H] or None (not LSTM),
        saved): ``saved`` (a dict, None when training=False) is what ``attention_decoder_backward`` needs.
    """
    _check_options(x, h0, c0, w_ih, keys, values, cell, score, position, input_feeding, w_q, w_v, b_a, score_bias,
                   energy_activation, w_c, b_c, o0)
    out_dtype = _result_dtype(x)
    x, w_ih, w_hh, keys, values = _f64(x), _f64(w_ih), _f64(w_hh), _f64(keys), _f64(values)
    w_q, w_v, b_a, w_c = _f64(w_q), _f64(w_v), _f64(b_a), _f64(w_c)
    Ty, B, E = x.shape
    H, Dv, Tx = w_hh.shape[1], values.shape[2], keys.shape[1]
    O = H if position == "before" else w_c.shape[0]
    options = {"lstm": {}, "gru": dict(reset_after=bool(reset_after)), "rnn": dict(nonlinearity=nonlinearity)}[cell]
    step, _ = _STEPS[cell]
    attention = dict(w_q=w_q, b_a=b_a, w_v=w_v, score_bias=score_bias, energy_activation=energy_activation)
    b_ih64, b_hh64 = _or_zeros(b_ih, w_ih.shape[0]), _or_zeros(b_hh, w_hh.shape[0])
    b_c64 = None if w_c is None else _or_zeros(b_c, (O,))

    state = (_or_zeros(h0, (B, H)), _or_zeros(c0, (B, H)))[: 2 if cell == "lstm" else 1]
    fed = _or_zeros(o0, (B, O))                                      # õ_{t-1} (input feeding only)
    outputs, contexts, alpha = np.zeros((Ty, B, O)), np.zeros((Ty, B, Dv)), np.zeros((Ty, B, Tx))
    steps = []
    for t in range(Ty):
        state_prev = state
        if position == "before":
            contexts[t], alpha[t], attention_saved = _attend(score, state[0], keys, values, lengths, **attention)
            x_hat = np.concatenate([x[t], contexts[t]], axis=1)
        else:
            x_hat = np.concatenate([x[t], fed], axis=1) if input_feeding else x[t]
        state, cell_saved = step(_linear(x_hat, w_ih, b_ih64), state, w_hh, b_hh64, **options)
        if position == "before":
            outputs[t] = state[0]
        else:
            contexts[t], alpha[t], attention_saved = _attend(score, state[0], keys, values, lengths, **attention)
            outputs[t] = fed = np.tanh(_linear(np.concatenate([contexts[t], state[0]], axis=1), w_c, b_c64))
        steps.append(dict(state_prev=state_prev, x_hat=x_hat, h=state[0], cell=cell_saved, attention=attention_saved))

    saved = None
    if training:
        saved = dict(cell=cell, options=options, score=score, position=position, input_feeding=input_feeding,
                     dtype=out_dtype, shapes=dict(Ty=Ty, B=B, E=E, H=H, Dv=Dv, Tx=Tx, O=O, K=keys.shape[2],
                                                     A=0 if w_q is None else w_q.shape[0]),
                     w_ih=w_ih, w_hh=w_hh, w_c=w_c, has=dict(b_ih=b_ih is not None, b_hh=b_hh is not None,
                     b_c=b_c is not None, b_a=b_a is not None, score_bias=score_bias is not None),
                     outputs=outputs, contexts=contexts, steps=steps)
    h_n, c_n = state[0], (state[1] if cell == "lstm" else None)
    return (outputs.astype(out_dtype), contexts.astype(out_dtype), alpha.astype(out_dtype), h_n.astype(out_dtype),
            _cast(c_n, out_dtype), saved)


def attention_decoder_backward(saved, doutputs, dcontexts=None, dalpha=None, dh_n=None, dc_n=None):
    """Backpropagation through ``attention_decoder_forward``; the loss is Σ outputs⊙doutputs + Σ contexts⊙dcontexts
    + Σ alpha⊙dalpha + Σ h_n⊙dh_n + Σ c_n⊙dc_n (each None = zeros).

    Per step t = Ty-1 … 0, with (dh, dc) the gradient reaching s_t from step t+1 (dh_n, dc_n at the last step) and
    dõ the gradient reaching õ_t from step t+1's input (input feeding)::

        "before":  dh_t += doutputs[t]   cell backward (reference.rnn's step) → dxw_t, dW_hh, db_hh, ds_{t-1}
                   dx̂_t = dxw_t W_ih       dW_ih += dxw_t^T x̂_t      db_ih += Σ_B dxw_t
                   dx_t = dx̂_t[:, :E]      dctx_t = dx̂_t[:, E:] + dcontexts[t]
                   attention backward (reference.attention) → dquery, added to dh_{t-1}; dkeys, dvalues, dw_q, db_a,
                   dw_v, dscore_bias summed over the steps
        "after":   do_t = doutputs[t] + dõ    dpre = do_t ⊙ (1 - o_t²)   (tanh' = 1 - y²)
                   [dctx_t ; dh_out] = dpre W_c    dW_c += dpre^T [ctx_t ; h_t]    db_c += Σ_B dpre
                   attention backward with dctx_t + dcontexts[t] → dquery;  dh_t += dh_out + dquery
                   cell backward as above; dx̂_t = dxw_t W_ih = [dx_t ; dõ_{t-1}] (dõ_{-1} = do0)

    Args:
        saved:     the dict from ``attention_decoder_forward(..., training=True)``.
        doutputs:  [Ty, B, O] or None; dcontexts [Ty, B, Dv] or None; dalpha [Ty, B, Tx] or None;
        dh_n, dc_n: [B, H] or None (dc_n only for the LSTM).

    Returns:
        dict with the field names of ``rnncore.ops.AttentionDecoderGradients``: dx [Ty, B, E], dh0 [B, H], dc0 [B, H]
        (None for GRU/RNN), dkeys [B, Tx, K], dvalues [B, Tx, Dv], dw_ih, dw_hh, db_ih, db_hh (None without that
        bias), dw_q, db_a, dw_v, dscore_bias (0-d) (None for "dot" or without b_a / score bias), dw_c, db_c (None for
        "before" / without b_c); and do0 [B, O] (the gradient of o0; None without input feeding). In the forward's
        x dtype.
    """
    if saved is None:
        raise ValueError("saved: expected the dict of a training forward, received None (training=False)")
    s, has = saved["shapes"], saved["has"]
    Ty, B, E, H, Dv, Tx, O = (s[k] for k in ("Ty", "B", "E", "H", "Dv", "Tx", "O"))
    w_ih, w_hh, w_c = saved["w_ih"], saved["w_hh"], saved["w_c"]
    _, step_backward = _STEPS[saved["cell"]]
    is_lstm, after, score = saved["cell"] == "lstm", saved["position"] == "after", saved["score"]
    additive = score == "additive"
    doutputs, dcontexts = _or_zeros(doutputs, (Ty, B, O)), _or_zeros(dcontexts, (Ty, B, Dv))
    dalpha = None if dalpha is None else _f64(dalpha)

    dstate = (_or_zeros(dh_n, (B, H)), _or_zeros(dc_n, (B, H)))[: 2 if is_lstm else 1]
    dfed = np.zeros((B, O))                                           # dL/dõ_t from step t+1's input
    dx, dkeys, dvalues = np.zeros((Ty, B, E)), np.zeros((B, Tx, s["K"])), np.zeros((B, Tx, Dv))
    dw_ih, dw_hh, db_ih, db_hh = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(w_ih.shape[0]), np.zeros(
        w_hh.shape[0])
    dw_c = None if w_c is None else np.zeros_like(w_c)
    db_c = np.zeros(O)
    A = s["A"]
    dattention = dict(dw_q=np.zeros((A, H)), db_a=np.zeros(A), dw_v=np.zeros(A), dscore_bias=np.zeros(()))

    def accumulate_attention(step_saved, dcontext, t):
        """Attention backward of step t; returns dquery, sums the rest over steps."""
        dquery, dk, dv, params = _attend_backward(score, step_saved["attention"], dcontext,
                                                  None if dalpha is None else dalpha[t])
        dkeys[...] += dk
        dvalues[...] += dv
        for name, g in params.items():
            if g is not None:
                dattention[name] += g
        return dquery

    for t in reversed(range(Ty)):
        st = saved["steps"][t]
        if after:
            dpre = (doutputs[t] + dfed) * _dtanh(saved["outputs"][t])
            dcat, dw_c_t, db_c_t = _linear_backward(dpre, np.concatenate([saved["contexts"][t], st["h"]], axis=1), w_c)
            dw_c += dw_c_t
            db_c += db_c_t
            dquery = accumulate_attention(st, dcat[:, :Dv] + dcontexts[t], t)
            dstate = (dstate[0] + dcat[:, Dv:] + dquery,) + dstate[1:]
        else:
            dstate = (dstate[0] + doutputs[t],) + dstate[1:]
        dxw, dw_hh_t, db_hh_t, dstate = step_backward(st["cell"], st["state_prev"], dstate, w_hh, **saved["options"])
        dw_hh += dw_hh_t
        db_hh += db_hh_t
        dx_hat, dw_ih_t, db_ih_t = _linear_backward(dxw, st["x_hat"], w_ih)
        dw_ih += dw_ih_t
        db_ih += db_ih_t
        dx[t] = dx_hat[:, :E]
        if not after:
            dquery = accumulate_attention(st, dx_hat[:, E:] + dcontexts[t], t)
            dstate = (dstate[0] + dquery,) + dstate[1:]
        elif saved["input_feeding"]:
            dfed = dx_hat[:, E:]

    grads = dict(dx=dx, dh0=dstate[0], dc0=dstate[1] if is_lstm else None, dkeys=dkeys, dvalues=dvalues,
                 dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih if has["b_ih"] else None,
                 db_hh=db_hh if has["b_hh"] else None,
                 dw_q=dattention["dw_q"] if additive else None, dw_v=dattention["dw_v"] if additive else None,
                 db_a=dattention["db_a"] if has["b_a"] else None,
                 dscore_bias=dattention["dscore_bias"] if has["score_bias"] else None,
                 dw_c=dw_c, db_c=db_c if has["b_c"] else None,
                 do0=dfed if saved["input_feeding"] else None)
    return {name: _cast(g, saved["dtype"]) for name, g in grads.items()}



def decoder_session_step(tokens, h, c, fed, w_ih, w_hh, b_ih, b_hh, keys, values, lengths=None, *, embedding,
                         w_out, b_out=None, input_feeding=False, sources=None, **options):
    """One decoding step of every row, the twin of ``rnncore.ops.DecoderSession(...).step(tokens, h, c, fed)``: the
    tokens' embedding rows, one inference step of ``attention_decoder_forward`` (Ty = 1, state passed in), the output
    layer and the log-softmax of its logits.

    Args:
        tokens:    [B] ints indexing the embedding's rows (ignored when embedding is None).
        h, c, fed: the state [B, H], [B, H] (LSTM) and [B, O] (input feeding: õ_{t-1}), None for zeros.
        w_ih ... lengths, input_feeding, **options: ``attention_decoder_forward``'s arguments; keys, values and
                   lengths of N sources ([N, Tx, K], [N, Tx, Dv], [N]).
        embedding: [Vin, E] or None (E = 0).
        w_out, b_out: the output layer, [V, O] and [V] or None.
        sources:   [B] ints in 0..N-1, row b attends to source sources[b]; None: B = N, row b on source b.

    Returns:
        (log_probs [B, V], outputs [B, O], alpha [B, Tx], h_n [B, H], c_n [B, H] or None), in keys' dtype.
    """
    if sources is not None:  # each row's source gathered: row b's keys, values and length are sources[b]'s
        sources = np.asarray(sources, np.int64)
        keys, values = np.asarray(keys)[sources], np.asarray(values)[sources]
        lengths = None if lengths is None else np.asarray(lengths)[sources]
    rows = keys.shape[0]
    if embedding is None:
        x = np.zeros((1, rows, 0), keys.dtype)
    else:
        x = np.asarray(embedding)[np.asarray(tokens, np.int64)][None]
    outputs, _, alpha, h_n, c_n, _ = attention_decoder_forward(
        x, h, c, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, training=False, input_feeding=input_feeding,
        o0=fed if input_feeding else None, **options)
    return log_softmax(linear_forward(outputs[0], w_out, b_out)), outputs[0], alpha[0], h_n, c_n
