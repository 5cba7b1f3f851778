"""The fused attention decoder: a recurrent cell with attention over an encoded source, the whole decoder time loop
in one C++ call forward and one backward (docs/design.md §2 "Attention decoder", §4).

One step t, state ``s_{t-1} = (h_{t-1}, c_{t-1})``, ``s_{-1} = (h0, c0)``::

    position="before" (Bahdanau):  ctx_t, α_t = attend(h_{t-1});  h_t, c_t = cell([x_t; ctx_t], s_{t-1});  o_t = h_t
    position="after" (Luong):      h_t, c_t = cell([x_t; õ_{t-1}] with input_feeding, else x_t, s_{t-1});
                                   ctx_t, α_t = attend(h_t);  o_t = õ_t = tanh(W_c [ctx_t; h_t] + b_c);  õ_{-1} = o0
    attend(q): "additive"  u = tanh(K' + q W_q^T + b_a),  e = u · w_v (+ score_bias),  relu(e) optionally
               "dot"       e = q · keys
               α = masked_softmax(e, t' < lengths[b]),  ctx = Σ_t' α values

Shapes: x [Ty, B, E] (E may be 0: the context-only decoder), h0/c0 [B, H], w_ih [G*H, E + Dc] (x's columns, then
the fed vector's: Dc = Dv before, O after with input feeding, 0 otherwise), w_hh [G*H, H], b_ih/b_hh [G*H];
keys [B, Tx, K] (additive: the projected keys K' = keys W_k^T, K = A; dot: K = H), values [B, Tx, Dv],
lengths [B] in 0..Tx; w_q [A, H], b_a [A], w_v [A] (the effective score vector), score_bias a scalar;
w_c [O, Dv + H], b_c [O]. Cells and gate orders as the sequence kernels (``rnncore.ops.rnn``).

Every sample runs all Ty steps (target padding is the loss's business: padded targets get doutputs = 0).
Twins: ``rnncore.reference.attention_decoder_forward`` / ``attention_decoder_backward``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _core
from .._validation import (
    decoder_arguments,
    decoder_session_input,
    decoder_session_output,
    decoder_session_sources,
    decoder_session_step,
    decoder_upstream,
    flag,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .._core import _AnyDecoderWorkspace as DecoderWorkspace

__all__ = ["attention_decoder_forward", "attention_decoder_backward", "AttentionDecoderGradients", "DecoderSession"]

_WORKSPACE_TYPES = (_core.DecoderWorkspace_float32, _core.DecoderWorkspace_float64)


class AttentionDecoderGradients(NamedTuple):
    """``attention_decoder_backward``'s gradients (None where the forward had no such argument, or the score or
    position does not use it)."""
    dx: np.ndarray            # [Ty, B, E]
    dh0: np.ndarray           # [B, H]
    dc0: np.ndarray | None    # [B, H] (LSTM)
    dkeys: np.ndarray         # [B, Tx, K] (additive: dK', to be taken through the key projection once)
    dvalues: np.ndarray       # [B, Tx, Dv]
    dw_ih: np.ndarray         # [G*H, E + Dc]
    dw_hh: np.ndarray         # [G*H, H]
    db_ih: np.ndarray | None  # [G*H]
    db_hh: np.ndarray | None  # [G*H]
    dw_q: np.ndarray | None   # [A, H] (additive)
    db_a: np.ndarray | None   # [A] (additive with b_a)
    dw_v: np.ndarray | None   # [A] (additive)
    dscore_bias: np.ndarray | None  # 0-d (additive with score_bias)
    dw_c: np.ndarray | None   # [O, Dv + H] (after)
    db_c: np.ndarray | None   # [O] (after with b_c)
    do0: np.ndarray | None    # [B, O] (after with input feeding: the gradient of o0)


def attention_decoder_forward(x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, w_ih: np.ndarray,
                              w_hh: np.ndarray, b_ih: np.ndarray | None, b_hh: np.ndarray | None, keys: np.ndarray,
                              values: np.ndarray, lengths: npt.ArrayLike | None = None, *, cell: str = "lstm",
                              reset_after: bool = True, nonlinearity: str = "tanh", score: str = "additive",
                              w_q: np.ndarray | None = None, b_a: np.ndarray | None = None,
                              w_v: np.ndarray | None = None, score_bias: Any = None,
                              energy_activation: str | None = None, position: str = "before",
                              input_feeding: bool = False, w_c: np.ndarray | None = None,
                              b_c: np.ndarray | None = None, o0: np.ndarray | None = None, training: bool = True,
                              borrow: bool = False
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                                         DecoderWorkspace | None]:
    """The attention decoder over Ty steps (see the module's docstring for the equations and shapes).

    cell: "lstm", "gru" (reset_after) or "rnn" (nonlinearity "tanh"/"relu").  score: "additive" (w_q, w_v required;
    b_a, score_bias and energy_activation="relu" optional) or "dot".  position: "before" or "after" (w_c required,
    b_c optional; input_feeding feeds õ_{t-1}, starting from o0 [B, O] or zeros). training=False stores nothing:
    decoding step by step is Ty = 1 calls passing h_n, c_n (and outputs[-1] as o0) back in. ``borrow=True``
    (training): the workspace points at ``values`` and at the returned ``alpha`` instead of copying them (it keeps
    both alive): the caller must not change either before the workspace's last backward.

    Returns ``(outputs [Ty, B, O], contexts [Ty, B, Dv], alpha [Ty, B, Tx], h_n [B, H], c_n [B, H] or None,
    workspace or None)``; O = H before.
    """
    # _core recognises the exact call (the one-step decoding loop's: a few µs) and answers anything else with
    # NotImplemented; the checks then name the bad argument or make the arguments exact, and the kernel runs on those.
    out = _core.attention_decoder_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, cell, reset_after,
                                          nonlinearity, score, w_q, b_a, w_v, score_bias, energy_activation, position,
                                          input_feeding, w_c, b_c, o0, training, borrow)
    if out is NotImplemented:
        a = decoder_arguments(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, cell, reset_after,
                              nonlinearity, score, w_q, b_a, w_v, score_bias, energy_activation, position,
                              input_feeding, w_c, b_c, o0, training)
        out = _core.attention_decoder_forward(*a, flag("borrow", borrow))
        if out is NotImplemented:
            raise RuntimeError("rnncore internal error: _core.attention_decoder_forward refused arguments that passed "
                               "validation")
    return out


def attention_decoder_backward(workspace: DecoderWorkspace, doutputs: np.ndarray | None,
                               dcontexts: np.ndarray | None = None, dalpha: np.ndarray | None = None,
                               dh_n: np.ndarray | None = None, dc_n: np.ndarray | None = None
                               ) -> AttentionDecoderGradients:
    """Backpropagation through the Ty steps of the training forward that returned ``workspace`` (which may serve
    several backward calls). Upstream gradients (None = zeros): doutputs [Ty, B, O], dcontexts [Ty, B, Dv] (when
    the contexts feed an output layer outside), dalpha [Ty, B, Tx], dh_n and dc_n (LSTM) [B, H]."""
    upstream = decoder_upstream(workspace, _WORKSPACE_TYPES, doutputs, dcontexts, dalpha, dh_n, dc_n)
    (dx, dh0, dc0, do0, dkeys, dvalues, dw_ih, dw_hh, db_ih, db_hh, dw_q, db_a, dw_v, dscore_bias, dw_c,
     db_c) = _core.attention_decoder_backward(workspace, *upstream)
    return AttentionDecoderGradients(dx, dh0, dc0, dkeys, dvalues, dw_ih, dw_hh, db_ih, db_hh, dw_q, db_a, dw_v,
                                     dscore_bias, dw_c, db_c, do0)


class DecoderSession:
    """One-step inference decoding with everything fixed over a decode prepared once (a decoding loop's model step
    in one C++ call): ``step(tokens, h, c, fed)`` gathers the tokens' embeddings, runs one decoder step over the
    session's B rows (``attention_decoder_forward`` with Ty = 1, training=False), the output layer logits =
    o W_out^T + b_out and their log-softmax. The weights, the source (the additive keys put in the score layout once)
    and every per-step product's packed weight are prepared once: a session copies its arrays, so later changes
    to them do not reach it.

    The decoder arguments are ``attention_decoder_forward``'s (same names, shapes and rules; keys, values and
    lengths of N sources: [N, Tx, K], [N, Tx, Dv], [N]), and:
    embedding: [Vin, E] the target embedding the tokens index (None: E = 0, the context-only decoder).
    w_out:     [V, O] the output layer's weight (O = H before, w_c's rows after).
    b_out:     [V] or None.
    sources:   [B] ints in 0..N-1, the row -> source map: row b attends to source ``sources[b]`` (its keys, values
               and length), so the beams of a source share its one copy (beam search: ``np.repeat(arange(N), k)``);
               B = len(sources) is the session's rows. None: B = N, row b on source b. The same numbers, bit for
               bit, as a session over the gathered sources (``np.take(keys, sources, axis=0)``, ...), each source
               stored and read once.
    Twin: ``rnncore.reference.decoder_session_step``.
    """

    def __init__(self, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None, b_hh: np.ndarray | None,
                 keys: np.ndarray, values: np.ndarray, lengths: npt.ArrayLike | None = None, *,
                 embedding: np.ndarray | None, w_out: np.ndarray, b_out: np.ndarray | None = None, cell: str = "lstm",
                 reset_after: bool = True, nonlinearity: str = "tanh", score: str = "additive",
                 w_q: np.ndarray | None = None, b_a: np.ndarray | None = None, w_v: np.ndarray | None = None,
                 score_bias: Any = None, energy_activation: str | None = None, position: str = "before",
                 input_feeding: bool = False, w_c: np.ndarray | None = None, b_c: np.ndarray | None = None,
                 sources: npt.ArrayLike | None = None) -> None:
        x = decoder_session_input(keys, embedding)  # [1, N, E] zeros: the forward's rules then fix N, E and the dtype
        a = decoder_arguments(x, None, None, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, cell, reset_after,
                              nonlinearity, score, w_q, b_a, w_v, score_bias, energy_activation, position,
                              input_feeding, w_c, b_c, None, False, rows="N")
        out_size = a.w_hh.shape[1] if a.w_c is None else a.w_c.shape[0]  # O: H before, w_c's rows after
        embedding, w_out, b_out = decoder_session_output(embedding, w_out, b_out, a.x, out_size)
        sources, x = decoder_session_sources(sources, a.x)  # x [1, B, E]: B the session's rows
        session = _core.decoder_session(x, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.keys, a.values, a.lengths, a.cell,
                                        a.reset_after, a.nonlinearity, a.score, a.w_q, a.b_a, a.w_v, a.score_bias,
                                        a.energy_activation, a.position, a.input_feeding, a.w_c, a.b_c, embedding,
                                        w_out, b_out, sources)
        if session is NotImplemented:
            raise RuntimeError("rnncore internal error: _core.decoder_session refused arguments that passed validation")
        self._session = session
        if sources is not None:
            sources.flags.writeable = False  # the validated copy the session was made with
        self._sources = sources
        self._shapes = dict(B=x.shape[1], E=x.shape[2], H=a.w_hh.shape[1], O=out_size,
                            Vin=0 if embedding is None else embedding.shape[0], cell=a.cell,
                            input_feeding=a.input_feeding, dtype=a.x.dtype)

    @property
    def rows(self) -> int:
        """B: the rows every step passes."""
        return int(self._session.rows)

    @property
    def sources(self) -> np.ndarray | None:
        """The row -> source map the session was made with (int64 [B], read-only), or None (row b on source b)."""
        return self._sources

    def step(self, tokens: npt.ArrayLike | None, h: np.ndarray | None = None, c: np.ndarray | None = None,
             fed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """One step for every row: ``tokens`` [B] ints in 0..Vin-1 (the previous output; None when E = 0), the state
        ``h`` [B, H], ``c`` [B, H] (LSTM only) and ``fed`` [B, O] (input feeding only: õ_{t-1}), None for zeros.
        Returns ``(log_probs [B, V], outputs [B, O], alpha [B, Tx], h_n [B, H], c_n [B, H] or None)``; with input
        feeding the outputs are the next step's ``fed``."""
        out = self._session.step(tokens, h, c, fed)
        if out is NotImplemented:
            out = self._session.step(*decoder_session_step(self._shapes, tokens, h, c, fed))
            if out is NotImplemented:
                raise RuntimeError("rnncore internal error: a decoder session's step refused arguments that passed "
                                   "validation")
        return out
