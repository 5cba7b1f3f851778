"""Attention kernels: the masked softmax, the fused masked softmax + context (``attention_context``), additive
(Bahdanau) attention one decoder step at a time over keys projected once, and Luong attention over every decoder
step at once. Twins: ``rnncore.reference.attention`` (same names, same argument order; the twins return a ``saved``
dict where these return an opaque C++ workspace).

Shapes (docs/design.md §2 "Attention"): query ``[B, Dq]`` (Luong ``[B, Ty, Dq]``), keys ``[B, Tx, Dk]``, projected
keys ``K' [B, Tx, A]``, values ``[B, Tx, Dv]``, source ``lengths [B]`` in ``0..Tx`` (0: the sample attends to
nothing: zero context, zero gradients). The masked softmax: ``e [..., N]`` scores (any rank >= 1), ``mask``
broadcastable to ``e.shape`` (True/nonzero = keep).

A training-mode forward (``training=True``, the default) returns a workspace holding private copies of what its
backward reads (mutating the inputs afterwards changes nothing; one workspace may serve several backward calls);
``training=False`` returns None in its place and keeps nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .. import _core
from .._validation import (
    additive_attention_arrays,
    additive_source_arrays,
    additive_upstream,
    attention_context_arrays,
    attention_context_gradients,
    attention_keys_arrays,
    attention_workspace,
    float_array,
    luong_attention_arrays,
    luong_upstream,
    normalizable_score_vector,
    same_shape_array,
    scores_array,
    softmax_mask,
    training_flag,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from .._core import _AnyAdditiveSource, _AnyAdditiveWorkspace, _AnyLuongWorkspace

__all__ = [
    "masked_softmax", "masked_softmax_backward", "attention_context", "attention_context_backward",
    "additive_attention_keys", "additive_attention_keys_backward", "additive_attention_source",
    "additive_attention_forward", "additive_attention_backward", "AdditiveAttentionGradients",
    "luong_attention_forward", "luong_attention_backward", "LuongAttentionGradients",
    "normalized_score_vector", "normalized_score_vector_backward",
]

_ADDITIVE_SOURCES = (_core.AdditiveAttentionSource_float32, _core.AdditiveAttentionSource_float64)
_ADDITIVE_WORKSPACES = (_core.AdditiveAttentionWorkspace_float32, _core.AdditiveAttentionWorkspace_float64)
_LUONG_WORKSPACES = (_core.LuongAttentionWorkspace_float32, _core.LuongAttentionWorkspace_float64)


def masked_softmax(e: np.ndarray, mask: npt.ArrayLike | None = None) -> np.ndarray:
    """Softmax over the last axis of ``e`` (any rank >= 1) restricted to kept entries.

    ``mask`` (optional) is boolean or integer, broadcastable to ``e.shape``: True/nonzero = keep (attend),
    False/0 = masked out (Keras's convention). Masked entries give exactly 0; a row with nothing kept gives zeros.
    """
    e = scores_array("e", e)
    return _core.masked_softmax(e, softmax_mask(mask, e.shape))


def masked_softmax_backward(alpha: np.ndarray, dalpha: np.ndarray) -> np.ndarray:
    """``de = alpha * (dalpha - sum(alpha * dalpha, axis=-1))``: the gradient w.r.t. the scores ``e``
    (the softmax Jacobian ``dα_j/de_k = α_j (δ_jk - α_k)`` applied to ``dalpha``)."""
    alpha = scores_array("alpha", alpha)
    dalpha = same_shape_array("dalpha", dalpha, alpha)
    return _core.masked_softmax_backward(alpha, dalpha)


def attention_context(e: np.ndarray, values: np.ndarray, lengths: npt.ArrayLike | None = None,
                      mask: npt.ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The end of every attention in one kernel, for scores computed any way (location-based, one's own energy)::

        α = masked_softmax(e, kept)    kept[b, t] = t < lengths[b] and mask[b, t]
        context[b] = Σ_t α[b, t] values[b, t]

    e [B, Tx] (fixes the dtype), or [B, Ty, Tx] for Ty queries per sample (row y of sample b attends over
    values[b]: context [B, Ty, Dv], alpha [B, Ty, Tx]); values [B, Tx, Dv]; lengths [B] in 0..Tx or None; mask
    boolean/integer broadcastable to e's shape (True/nonzero = keep) or None. Entries with α = 0 add nothing (their
    values are never read: a NaN-padded source is fine); a row with nothing kept gets α = 0 and context = 0. α has
    ``masked_softmax``'s bits. Returns (context, alpha), new arrays; the backward is ``attention_context_backward``.
    """
    e, values, lens, keep = attention_context_arrays(e, values, lengths, mask)
    return _core.attention_context(e, values, lens, keep)


def attention_context_backward(alpha: np.ndarray, values: np.ndarray, dcontext: np.ndarray,
                               dalpha: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``attention_context`` given dcontext (and dalpha, the loss's own gradient w.r.t. α, if any)::

        dα = values · dcontext (+ dalpha)    de = α ⊙ (dα − Σ_t α dα)    dvalues[b, t] = Σ_y α[b, y, t] dcontext[b, y]

    alpha [B, Tx] or [B, Ty, Tx] (the forward's; fixes the dtype); values [B, Tx, Dv] (the forward's); dcontext
    [B, Dv] or [B, Ty, Dv]; dalpha of alpha's shape or None. Entries with α = 0 get de = 0 (their values are never
    read); a row with nothing kept gets zero gradients. Returns (de of alpha's shape, dvalues [B, Tx, Dv]).
    """
    alpha, values, dcontext, dalpha = attention_context_gradients(alpha, values, dcontext, dalpha)
    return _core.attention_context_backward(alpha, values, dcontext, dalpha)


# ---- additive (Bahdanau) attention ----

def additive_attention_keys(keys: np.ndarray, w_k: np.ndarray) -> np.ndarray:
    """The once-per-source half of additive attention: ``K' = keys W_k^T`` for all B·Tx rows in one GEMM.

    keys: [B, Tx, Dk] float32 or float64;  w_k: [A, Dk] of keys' dtype.  Returns projected_keys [B, Tx, A].
    """
    keys, w_k = attention_keys_arrays(keys, w_k)
    B, Tx, Dk = keys.shape
    return _core.linear_forward(keys.reshape(B * Tx, Dk), w_k, None).reshape(B, Tx, w_k.shape[0])


def additive_attention_keys_backward(keys: np.ndarray, w_k: np.ndarray, dprojected_keys: np.ndarray
                                     ) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``K' = keys W_k^T``, taken once after dK' is summed over every decoder step:
    ``dkeys = dK' W_k`` and ``dw_k = Σ_{b,t'} dK'[b, t']^T keys[b, t']`` (the dense layer's two products).

    keys: [B, Tx, Dk];  w_k: [A, Dk];  dprojected_keys: [B, Tx, A].  Returns (dkeys [B, Tx, Dk], dw_k [A, Dk]).
    """
    keys, w_k = attention_keys_arrays(keys, w_k)
    B, Tx, Dk = keys.shape
    A = w_k.shape[0]
    dkp = float_array("dprojected_keys", dprojected_keys, [("B", B), ("Tx", Tx), ("A", A)], keys.dtype)
    dw_k = np.zeros_like(w_k)
    dkeys = _core.linear_backward(keys.reshape(B * Tx, Dk), w_k, dkp.reshape(B * Tx, A), dw_k, None, True)
    assert dkeys is not None  # need_dx=True
    return dkeys.reshape(B, Tx, Dk), dw_k


def normalized_score_vector(w_v: np.ndarray, gain: float) -> np.ndarray:
    """TF-Addons' ``normalize=True`` score vector ``w̃_v = g · w_v / ‖w_v‖`` (in w_v's dtype, computed in float64):
    the effective vector the additive kernels take. Its backward is ``normalized_score_vector_backward``."""
    w = normalizable_score_vector(w_v).astype(np.float64)
    return (float(gain) * w / np.sqrt(np.sum(w * w))).astype(w_v.dtype)


def normalized_score_vector_backward(w_v: np.ndarray, gain: float, dscore_vector: np.ndarray
                                     ) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``w̃_v = g ŵ`` (``ŵ = w_v / ‖w_v‖``) given ``dw̃_v``: ``dg = dw̃_v · ŵ`` and
    ``dw_v = (g / ‖w_v‖) (dw̃_v − (ŵ · dw̃_v) ŵ)`` (the derivative of w/‖w‖ is (I − ŵŵ^T)/‖w‖).
    Returns (dw_v [A], dgain 0-d), in w_v's dtype."""
    w_v = normalizable_score_vector(w_v)
    d = float_array("dscore_vector", dscore_vector, [("A", w_v.shape[0])], w_v.dtype).astype(np.float64)
    w = w_v.astype(np.float64)
    norm = np.sqrt(np.sum(w * w))
    w_hat = w / norm
    along = float(w_hat @ d)
    dw_v = (float(gain) / norm) * (d - along * w_hat)
    return dw_v.astype(w_v.dtype), np.array(along, dtype=w_v.dtype)


def additive_attention_source(projected_keys: np.ndarray, values: np.ndarray, lengths: npt.ArrayLike | None = None
                              ) -> _AnyAdditiveSource:
    """A prepared source for ``additive_attention_forward(..., source=...)``: private copies of projected_keys
    [B, Tx, A] (in the kernels' layout), values [B, Tx, Dv] and lengths [B] in 0..Tx (or None), made once and
    shared by every step's workspace, so a decoder loop copies nothing of the source per step."""
    kp, vals, lens = additive_source_arrays(projected_keys, values, lengths)
    return _core.additive_attention_source(kp, vals, lens)


def additive_attention_forward(query: np.ndarray, projected_keys: np.ndarray | None, values: np.ndarray | None,
                               w_q: np.ndarray, b_a: np.ndarray | None, w_v: np.ndarray,
                               lengths: npt.ArrayLike | None = None, score_bias: float | np.ndarray | None = None,
                               energy_activation: str | None = None, normalize_gain: float | np.ndarray | None = None,
                               training: bool = True, *, source: _AnyAdditiveSource | None = None
                               ) -> tuple[np.ndarray, np.ndarray, _AnyAdditiveWorkspace | None]:
    """One decoder step of additive (Bahdanau) attention over keys projected once (``additive_attention_keys``)::

        u = tanh(K' + q W_q^T + b_a)    s = u · w̃_v (+ score_bias)    e = s, or relu(s)
        α = masked_softmax(e, t' < lengths[b])    context = Σ_t' α[b, t'] values[b, t']
        w̃_v = w_v, or g · w_v / ‖w_v‖ with normalize_gain g (TF-Addons' normalize)

    query [B, Dq] (fixes the dtype); projected_keys [B, Tx, A]; values [B, Tx, Dv]; w_q [A, Dq]; b_a [A] or None;
    w_v [A]; lengths [B] in 0..Tx or None; score_bias, normalize_gain: numbers or 0-d arrays, or None;
    energy_activation None or "relu". ``source=`` (from ``additive_attention_source``) stands for projected_keys,
    values and lengths (then None): the step shares it instead of copying them.
    Returns (context [B, Dv], alpha [B, Tx], workspace or None).
    """
    a = additive_attention_arrays(query, projected_keys, values, w_q, b_a, w_v, lengths, score_bias,
                                  energy_activation, normalize_gain, source, _ADDITIVE_SOURCES)
    score_vector = a.w_v if a.gain is None else normalized_score_vector(a.w_v, a.gain)
    context, alpha, ws = _core.additive_attention_forward(a.query, a.source, a.projected_keys, a.values, a.lengths,
                                                          a.w_q, a.b_a, score_vector, a.score_bias, a.relu,
                                                          training_flag(training))
    if ws is not None and a.gain is not None:
        ws.normalize = (a.w_v.copy(), a.gain)  # for the backward of w̃_v (a private copy of w_v)
    return context, alpha, ws


class AdditiveAttentionGradients(NamedTuple):
    """``additive_attention_backward``'s result (the twin's dict keys as fields)."""
    dquery: np.ndarray                    #: [B, Dq]
    dprojected_keys: np.ndarray           #: [B, Tx, A] (the accumulator given, added into, or a new array)
    dvalues: np.ndarray                   #: [B, Tx, Dv] (likewise)
    dw_q: np.ndarray                      #: [A, Dq]
    db_a: np.ndarray | None               #: [A], None without b_a
    dw_v: np.ndarray                      #: [A]
    dscore_bias: np.ndarray | None        #: 0-d, None without score_bias
    dnormalize_gain: np.ndarray | None    #: 0-d, None without normalize_gain


def additive_attention_backward(workspace: _AnyAdditiveWorkspace, dcontext: np.ndarray | None,
                                dalpha: np.ndarray | None = None, *, dprojected_keys: np.ndarray | None = None,
                                dvalues: np.ndarray | None = None) -> AdditiveAttentionGradients:
    """Gradients of the step ``workspace`` recorded, given dcontext [B, Dv] and dalpha [B, Tx] (None = zeros).

    ``dprojected_keys`` [B, Tx, A] and ``dvalues`` [B, Tx, Dv], when given (C-contiguous, writeable, the call's
    dtype), are ADDED INTO in place and returned (a decoder loop accumulates them over its steps without
    allocating); None gives new arrays. Sum dK' over the steps, then call ``additive_attention_keys_backward`` once.
    """
    ws = attention_workspace(workspace, "additive_attention_backward", "additive_attention_forward",
                             _ADDITIVE_WORKSPACES)
    dcontext, dalpha, dkp, dvals = additive_upstream(ws, dcontext, dalpha, dprojected_keys, dvalues)
    dquery, dw_q, db_a, dw_v, dscore_bias = _core.additive_attention_backward(ws, dcontext, dalpha, dkp, dvals)
    dgain = None
    normalize = getattr(ws, "normalize", None)
    if normalize is not None:
        dw_v, dgain = normalized_score_vector_backward(normalize[0], normalize[1], dw_v)
    return AdditiveAttentionGradients(dquery, dkp, dvals, dw_q, db_a, dw_v, dscore_bias, dgain)


# ---- Luong attention (every decoder step at once) ----

def luong_attention_forward(query: np.ndarray, keys: np.ndarray, values: np.ndarray, score: str = "dot",
                            weight: np.ndarray | None = None, v_a: np.ndarray | None = None,
                            lengths: npt.ArrayLike | None = None, training: bool = True
                            ) -> tuple[np.ndarray, np.ndarray, _AnyLuongWorkspace | None]:
    """Luong attention for every decoder step at once (the queries known: attention after the recurrence)::

        dot:     e[b, y, t'] = q[b, y] · k[b, t']                     (Dk = Dq)
        general: e[b, y, t'] = q[b, y] W k[b, t']^T                   weight W [Dq, Dk] (k W^T taken once)
        concat:  e[b, y, t'] = v_a · tanh(W_a [q[b, y]; k[b, t']])    weight W_a [A, Dq + Dk], v_a [A]
        α = masked_softmax(e, t' < lengths[b])    context[b, y] = Σ_t' α[b, y, t'] values[b, t']

    query [B, Ty, Dq] (fixes the dtype); keys [B, Tx, Dk]; values [B, Tx, Dv]; lengths [B] in 0..Tx or None.
    concat never builds a [B, Ty, Tx, A] tensor (its backward recomputes tanh row by row).
    Returns (context [B, Ty, Dv], alpha [B, Ty, Tx], workspace or None).
    """
    a = luong_attention_arrays(query, keys, values, score, weight, v_a, lengths)
    return _core.luong_attention_forward(a.query, a.keys, a.values, a.score, a.weight, a.v_a, a.lengths,
                                         training_flag(training))


class LuongAttentionGradients(NamedTuple):
    """``luong_attention_backward``'s result (the twin's dict keys as fields)."""
    dquery: np.ndarray           #: [B, Ty, Dq]
    dkeys: np.ndarray            #: [B, Tx, Dk]
    dvalues: np.ndarray          #: [B, Tx, Dv]
    dweight: np.ndarray | None   #: general [Dq, Dk], concat [A, Dq + Dk], dot None
    dv_a: np.ndarray | None      #: concat [A], else None


def luong_attention_backward(workspace: _AnyLuongWorkspace, dcontext: np.ndarray | None,
                             dalpha: np.ndarray | None = None) -> LuongAttentionGradients:
    """Gradients of the forward ``workspace`` recorded, given dcontext [B, Ty, Dv] and dalpha [B, Ty, Tx]
    (None = zeros); the identities are design.md §2's."""
    ws = attention_workspace(workspace, "luong_attention_backward", "luong_attention_forward", _LUONG_WORKSPACES)
    dcontext, dalpha = luong_upstream(ws, dcontext, dalpha)
    return LuongAttentionGradients(*_core.luong_attention_backward(ws, dcontext, dalpha))

