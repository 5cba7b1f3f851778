"""Attention in plain NumPy: the twins of ``rnncore.ops.attention`` (masked softmax, the fused softmax + context,
additive and Luong attention).

The additive and Luong equations and their backward are in docs/design.md §2 "Attention" and in each docstring.

Masked softmax (over the last axis; ``mask`` True/nonzero = keep, Keras convention)::

    α = exp(e - max_kept(e)) / Σ_kept exp(e - max_kept(e))   on kept entries, α = 0 on masked entries,
    α = 0 for a row with every entry masked;      backward: de = α ⊙ (dα - Σ α ⊙ dα).
"""

import numpy as np

from ._common import _cast, _f64, _or_zeros, _result_dtype

__all__ = [
    "masked_softmax", "masked_softmax_backward", "attention_context", "attention_context_backward",
    "additive_attention_keys", "additive_attention_keys_backward", "additive_attention_forward",
    "additive_attention_backward", "luong_attention_forward", "luong_attention_backward",
]


def masked_softmax(e, mask=None):
    """Softmax over the last axis of ``e``, restricted to the kept entries.

    α[..., j] = exp(e[..., j] - m) / Σ_{k kept} exp(e[..., k] - m)   for kept j, with m = max over the kept entries,
    α[..., j] = 0 exactly for masked j, and α = 0 on a row whose entries are all masked (no NaN, no warning).
    Course: the ``softmax`` over Tx inside ``one_step_attention`` (α<t,t'>), with Keras' mask convention.

    Args:
        e:    [..., N] scores (rank >= 1, float32 or float64; α has this dtype).
        mask: boolean-like, broadcastable to e.shape (e.g. [B, Tx] or [Tx] for e [B, Tx]); True/nonzero = keep
              (attend to), False/0 = masked out. None keeps everything.

    Returns:
        alpha: e.shape attention weights; each row sums to 1 over its kept entries (or is all 0).
    """
    out_dtype = _result_dtype(e)
    e = _f64(e)
    keep = np.ones(e.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask) != 0, e.shape)
    row_max = np.max(e, axis=-1, keepdims=True, where=keep, initial=-np.inf)  # -inf on a fully masked row
    exp_e = np.where(keep, np.exp(np.where(keep, e - row_max, 0.0)), 0.0)     # masked entries never exponentiated
    denom = exp_e.sum(axis=-1, keepdims=True)                                 # >= 1 when a row keeps any entry
    # Divide on kept entries of rows that keep any: masked entries stay exactly 0; a NaN score makes its row's kept
    # entries NaN (it propagates, as in PyTorch) while the masked ones stay 0.
    alpha = np.divide(exp_e, denom, out=np.zeros_like(exp_e), where=keep & (denom != 0.0))
    return alpha.astype(out_dtype)


def masked_softmax_backward(alpha, dalpha):
    """Gradient of ``masked_softmax`` with respect to its scores e, given α and dL/dα.

    dα_j/de_k = α_j (δ_jk - α_k)  ⇒  de = α ⊙ (dα - Σ_last-axis α ⊙ dα).
    Masked entries (and fully masked rows) have α = 0, hence de = 0 there: no mask argument is needed.

    Args:
        alpha:  [..., N] the output of ``masked_softmax``.
        dalpha: [..., N] gradient of the loss with respect to alpha.

    Returns:
        de: [..., N] gradient with respect to e, in alpha's dtype.
    """
    out_dtype = _result_dtype(alpha)
    alpha, dalpha = _f64(alpha), _f64(dalpha)
    de = alpha * (dalpha - np.sum(alpha * dalpha, axis=-1, keepdims=True))
    return de.astype(out_dtype)


# ---- the fused masked softmax + context (scores computed by the caller) ----

def attention_context(e, values, lengths=None, mask=None):
    """α = masked_softmax(e, kept) and context = Σ_t α[..., t] values[b, t]: the end of every attention.

    kept[b, (y,) t] = t < lengths[b] and mask[b, (y,) t]. Entries with α = 0 add nothing (their values are never
    used, so a NaN-padded source gives finite results); a row with nothing kept gets α = 0 and context = 0.

    Args:
        e:       [B, Tx] scores (one query per sample), or [B, Ty, Tx] (Ty queries per sample, each row of sample b
                 attending over values[b]); float32 or float64, the results' dtype.
        values:  [B, Tx, Dv].
        lengths: [B] in 0..Tx, or None (every step kept).
        mask:    boolean-like, broadcastable to e.shape (True/nonzero = keep), or None.

    Returns:
        (context [B, Dv] or [B, Ty, Dv], alpha of e's shape).
    """
    out_dtype = _result_dtype(e)
    e, values = _f64(e), _f64(values)
    B, Tx = e.shape[0], e.shape[-1]
    keep = _lengths_mask(lengths, Tx, B)
    keep = np.broadcast_to(keep if e.ndim == 2 else keep[:, None, :], e.shape)
    if mask is not None:
        keep = keep & (np.asarray(mask) != 0)
    alpha = masked_softmax(e, keep)
    a = alpha if e.ndim == 3 else alpha[:, None, :]                           # [B, Ty, Tx]
    used = np.where(a[..., None] != 0, values[:, None, :, :], 0.0)            # [B, Ty, Tx, Dv]: values where α ≠ 0
    context = np.sum(a[..., None] * used, axis=2)                             # [B, Ty, Dv]
    context = context if e.ndim == 3 else context[:, 0]
    return context.astype(out_dtype), alpha.astype(out_dtype)


def attention_context_backward(alpha, values, dcontext, dalpha=None):
    """Gradients of ``attention_context`` given dL/dcontext (and dL/dα, if the loss reads α too).

    dα = values · dcontext (+ dalpha) on entries with α ≠ 0 (0 on the others: their values are never used);
    de = α ⊙ (dα − Σ_t α dα) (the softmax Jacobian);  dvalues[b, t] = Σ_y α[b, y, t] dcontext[b, y].

    Args:
        alpha:    [B, Tx] or [B, Ty, Tx], the forward's (its dtype is the results').
        values:   [B, Tx, Dv], the forward's.
        dcontext: [B, Dv] or [B, Ty, Dv].
        dalpha:   alpha's shape, or None (zeros).

    Returns:
        (de of alpha's shape, dvalues [B, Tx, Dv]).
    """
    out_dtype = _result_dtype(alpha)
    steps = np.ndim(alpha) == 3
    a, values = _f64(alpha), _f64(values)
    dc, da_extra = _f64(dcontext), _or_zeros(dalpha, np.shape(alpha))
    if not steps:
        a, dc, da_extra = a[:, None], dc[:, None], da_extra[:, None]
    attended = a != 0                                                          # [B, Ty, Tx]
    used = np.where(attended[..., None], values[:, None, :, :], 0.0)          # [B, Ty, Tx, Dv]
    dalpha_total = np.where(attended, np.einsum("byd,bytd->byt", dc, used) + da_extra, 0.0)
    de = a * (dalpha_total - np.sum(a * dalpha_total, axis=-1, keepdims=True))
    dvalues = np.einsum("byt,byd->btd", a, dc)
    return (de if steps else de[:, 0]).astype(out_dtype), dvalues.astype(out_dtype)


# ---- additive (Bahdanau) attention ----

def additive_attention_keys(keys, w_k):
    """The once-per-source half of additive attention: projected keys K' = keys W_k^T (one product for all B·Tx).

    Args:
        keys: [B, Tx, Dk] the encoder's outputs (float32 or float64; K' has this dtype).
        w_k:  [A, Dk] the key projection (A = attention units).

    Returns:
        projected_keys: [B, Tx, A].
    """
    out_dtype = _result_dtype(keys)
    return (_f64(keys) @ _f64(w_k).T).astype(out_dtype)


def additive_attention_keys_backward(keys, w_k, dprojected_keys):
    """Gradients of K' = keys W_k^T, applied once after dK' is summed over every decoder step.

    dkeys = dK' W_k,   dW_k = Σ_{b,t'} dK'[b, t']^T keys[b, t']   (the linear map's two products).

    Args:
        keys:            [B, Tx, Dk] the keys given to ``additive_attention_keys``.
        w_k:             [A, Dk] the key projection.
        dprojected_keys: [B, Tx, A] gradient with respect to K' (the sum of every step's ``dprojected_keys``).

    Returns:
        (dkeys [B, Tx, Dk], dw_k [A, Dk]), in keys' dtype.
    """
    out_dtype = _result_dtype(keys)
    keys, w_k, dkp = _f64(keys), _f64(w_k), _f64(dprojected_keys)
    dkeys = dkp @ w_k
    dw_k = np.einsum("bta,btk->ak", dkp, keys)
    return dkeys.astype(out_dtype), dw_k.astype(out_dtype)


def _lengths_mask(lengths, Tx, B):
    """Boolean ``[B, Tx]``: True (keep) where t' < lengths[b]; all True if lengths is None. lengths[b] = 0 masks
    the whole row (its context and gradients are then 0)."""
    if lengths is None:
        return np.ones((B, Tx), dtype=bool)
    return np.arange(Tx)[None, :] < np.asarray(lengths).reshape(B, 1)


def _normalized_score_vector(w_v, normalize_gain):
    """The score vector actually used: w_v, or TF-Addons' ``normalize`` form g · w_v / ‖w_v‖ (g a scalar)."""
    if normalize_gain is None:
        return w_v
    return normalize_gain * w_v / np.sqrt(np.sum(w_v * w_v))


def additive_attention_forward(query, projected_keys, values, w_q, b_a, w_v, lengths=None, score_bias=None,
                               energy_activation=None, normalize_gain=None):
    """One decoder step of additive (Bahdanau) attention, given the keys projected once per source::

        u[b, t'] = tanh(K'[b, t'] + q[b] W_q^T + b_a)          [B, Tx, A]
        s[b, t'] = u[b, t'] · w̃_v + score_bias                 w̃_v = w_v, or g · w_v / ‖w_v‖ (normalize_gain g)
        e = s, or relu(s) with energy_activation="relu"        (the course's Dense(tanh) → Dense(relu) form)
        α = masked_softmax(e, t' < lengths[b])                  context[b] = Σ_t' α[b, t'] values[b, t']

    Args:
        query:             [B, Dq] the decoder state (float32 or float64; results have this dtype).
        projected_keys:    [B, Tx, A] K' from ``additive_attention_keys``.
        values:            [B, Tx, Dv] what the context averages (usually the keys before projection).
        w_q:               [A, Dq] the query projection.
        b_a:               [A] the bias inside tanh, or None for no bias.
        w_v:               [A] the score vector.
        lengths:           [B] integer source lengths (sample b attends to t' < lengths[b]; 0 allowed), or None.
        score_bias:        scalar added to every score (the course's second Dense's bias), or None.
        energy_activation: None (e = s) or "relu" (e = relu(s)).
        normalize_gain:    scalar g: TF-Addons' ``normalize=True`` (w̃_v = g · w_v / ‖w_v‖), or None.

    Returns:
        (context [B, Dv], alpha [B, Tx], saved): ``saved`` is a dict holding what the backward needs.
    """
    if energy_activation not in (None, "relu"):
        raise ValueError(f"energy_activation: expected None or 'relu', received {energy_activation!r}")
    out_dtype = _result_dtype(query)
    q, kp, vals, w_q, w_v = _f64(query), _f64(projected_keys), _f64(values), _f64(w_q), _f64(w_v)
    B, Tx, A = kp.shape
    b = _or_zeros(b_a, (A,))
    g = None if normalize_gain is None else float(normalize_gain)
    score_vector = _normalized_score_vector(w_v, g)                  # w̃_v
    u = np.tanh(kp + (q @ w_q.T)[:, None, :] + b)
    s = u @ score_vector + (0.0 if score_bias is None else float(score_bias))
    e = np.maximum(s, 0.0) if energy_activation == "relu" else s
    keep = _lengths_mask(lengths, Tx, B)
    alpha = masked_softmax(e, keep)
    context = np.einsum("bt,btd->bd", alpha, vals)
    saved = dict(query=q, values=vals, w_q=w_q, w_v=w_v, has_bias=b_a is not None, score_bias=score_bias,
                 normalize_gain=g, energy_activation=energy_activation, u=u, e=e, score_vector=score_vector,
                 alpha=alpha, dtype=out_dtype)
    return context.astype(out_dtype), alpha.astype(out_dtype), saved


def additive_attention_backward(saved, dcontext, dalpha=None):
    """Gradients of one ``additive_attention_forward`` step, given dL/dcontext (and optionally dL/dα)::

        dα[b, t'] = dcontext[b] · values[b, t'] (+ dalpha)     dvalues[b, t'] = α[b, t'] dcontext[b]
        de = masked_softmax_backward(α, dα)                     (softmax: dα_j/de_k = α_j (δ_jk - α_k))
        ds = de, or de ⊙ [e > 0] for relu                        (relu'(s) = [y > 0] from the output y)
        dscore_bias = Σ ds          dw̃_v = Σ_{b,t'} ds u         du = ds ⊗ w̃_v
        dpre = du ⊙ (1 - u²)                                     (tanh'(x) = 1 - y² from the output y)
        dK' = dpre    dq = (Σ_t' dpre) W_q    dW_q = (Σ_t' dpre)^T q    db_a = Σ_{b,t'} dpre
        normalize (w̃_v = g ŵ, ŵ = w_v/‖w_v‖): dg = dw̃_v · ŵ,   dw_v = (g/‖w_v‖) (dw̃_v - (ŵ · dw̃_v) ŵ)
                                                                (derivative of w/‖w‖: (I - ŵŵ^T)/‖w‖)
    Masked positions have α = 0, hence de = 0 there; a fully masked row (lengths[b] = 0) gives zero gradients.

    Args:
        saved:    the dict returned by ``additive_attention_forward``.
        dcontext: [B, Dv] gradient with respect to the context.
        dalpha:   [B, Tx] gradient with respect to alpha, or None (alpha not used by the loss).

    Returns:
        dict with dquery [B, Dq], dprojected_keys [B, Tx, A] (sum it over decoder steps, then call
        ``additive_attention_keys_backward``), dvalues [B, Tx, Dv], dw_q [A, Dq], db_a [A] (None without bias),
        dw_v [A], dscore_bias (0-d, None without score bias), dnormalize_gain (0-d, None without normalize).
    """
    out_dtype = saved["dtype"]
    alpha, u, e, vals = saved["alpha"], saved["u"], saved["e"], saved["values"]
    dctx = _f64(dcontext)
    dalpha_total = np.einsum("bd,btd->bt", dctx, vals) + _or_zeros(dalpha, alpha.shape)
    dvalues = alpha[:, :, None] * dctx[:, None, :]
    de = masked_softmax_backward(alpha, dalpha_total)
    ds = de * (e > 0.0) if saved["energy_activation"] == "relu" else de
    dscore_vector = np.einsum("bt,bta->a", ds, u)                  # dw̃_v
    dpre = ds[:, :, None] * saved["score_vector"] * (1.0 - u * u)
    dpre_sum = dpre.sum(axis=1)                                       # [B, A]: q is the same at every t'
    grads = dict(dquery=dpre_sum @ saved["w_q"], dprojected_keys=dpre, dvalues=dvalues,
                 dw_q=dpre_sum.T @ saved["query"], db_a=dpre_sum.sum(axis=0) if saved["has_bias"] else None,
                 dscore_bias=None if saved["score_bias"] is None else np.asarray(ds.sum()),
                 dnormalize_gain=None)
    g = saved["normalize_gain"]
    if g is None:
        grads["dw_v"] = dscore_vector
    else:
        w_v = saved["w_v"]
        norm = np.sqrt(np.sum(w_v * w_v))
        w_hat = w_v / norm
        grads["dnormalize_gain"] = np.asarray(dscore_vector @ w_hat)
        grads["dw_v"] = (g / norm) * (dscore_vector - (w_hat @ dscore_vector) * w_hat)
    return {k: _cast(a, out_dtype) for k, a in grads.items()}


# ---- Luong attention (all decoder steps at once) ----

_LUONG_SCORES = ("dot", "general", "concat")


def luong_attention_forward(query, keys, values, score="dot", weight=None, v_a=None, lengths=None):
    """Luong attention for every decoder step at once (the queries known: attention after the recurrence)::

        dot:     e[b, y, t'] = q[b, y] · k[b, t']                         (Dq = Dk)
        general: e[b, y, t'] = q[b, y] W k[b, t']^T                       weight W [Dq, Dk]
        concat:  e[b, y, t'] = v_a · tanh(W_a [q[b, y]; k[b, t']])        weight W_a [A, Dq + Dk], v_a [A]
        α = masked_softmax(e, t' < lengths[b])   context[b, y] = Σ_t' α[b, y, t'] values[b, t']

    Args:
        query:   [B, Ty, Dq] the decoder outputs (float32 or float64; results have this dtype).
        keys:    [B, Tx, Dk] the encoder outputs.
        values:  [B, Tx, Dv] what the context averages (usually the keys).
        score:   "dot", "general" or "concat".
        weight:  None for dot, W [Dq, Dk] for general, W_a [A, Dq + Dk] for concat.
        v_a:     [A] for concat, else None.
        lengths: [B] integer source lengths (0 allowed: zero context), or None.

    Returns:
        (context [B, Ty, Dv], alpha [B, Ty, Tx], saved): ``saved`` holds what the backward needs.
    """
    if score not in _LUONG_SCORES:
        raise ValueError(f"score: expected one of {_LUONG_SCORES}, received {score!r}")
    out_dtype = _result_dtype(query)
    q, k, vals, w, va = _f64(query), _f64(keys), _f64(values), _f64(weight), _f64(v_a)
    B, Tx = k.shape[:2]
    u = None
    if score == "dot":
        e = q @ k.transpose(0, 2, 1)
    elif score == "general":
        e = (q @ w) @ k.transpose(0, 2, 1)
    else:
        Dq = q.shape[-1]
        w_q, w_k = w[:, :Dq], w[:, Dq:]                               # W_a [q; k] = W_q q + W_k k
        u = np.tanh((q @ w_q.T)[:, :, None, :] + (k @ w_k.T)[:, None, :, :])   # [B, Ty, Tx, A]
        e = u @ va
    alpha = masked_softmax(e, _lengths_mask(lengths, Tx, B)[:, None, :])
    context = alpha @ vals
    saved = dict(score=score, query=q, keys=k, values=vals, weight=w, v_a=va, u=u, alpha=alpha, dtype=out_dtype)
    return context.astype(out_dtype), alpha.astype(out_dtype), saved


def luong_attention_backward(saved, dcontext, dalpha=None):
    """Gradients of ``luong_attention_forward`` given dL/dcontext (and optionally dL/dα)::

        dα = dcontext values^T (+ dalpha)      dvalues = α^T dcontext      de = masked_softmax_backward(α, dα)
        dot:     dq = de k                     dk = de^T q
        general: dq = de k W^T                 dk = de^T (q W)              dW = Σ_b q^T de k
        concat:  dv_a = Σ de u    dpre = de ⊗ v_a ⊙ (1 - u²)   (tanh'(x) = 1 - y²)
                 dq = (Σ_t' dpre) W_q    dk = (Σ_y dpre) W_k    dW_a = [Σ (Σ_t' dpre)^T q,  Σ (Σ_y dpre)^T k]

    Args:
        saved:    the dict returned by ``luong_attention_forward``.
        dcontext: [B, Ty, Dv] gradient with respect to the context.
        dalpha:   [B, Ty, Tx] gradient with respect to alpha, or None.

    Returns:
        dict with dquery [B, Ty, Dq], dkeys [B, Tx, Dk], dvalues [B, Tx, Dv], dweight (None for dot; [Dq, Dk] for
        general; [A, Dq + Dk] for concat), dv_a ([A] for concat, else None).
    """
    q, k, vals, w, alpha = saved["query"], saved["keys"], saved["values"], saved["weight"], saved["alpha"]
    dctx = _f64(dcontext)
    dalpha_total = dctx @ vals.transpose(0, 2, 1) + _or_zeros(dalpha, alpha.shape)
    dvalues = alpha.transpose(0, 2, 1) @ dctx
    de = masked_softmax_backward(alpha, dalpha_total)
    dweight = dv_a = None
    if saved["score"] == "dot":
        dq, dk = de @ k, de.transpose(0, 2, 1) @ q
    elif saved["score"] == "general":
        dq = de @ k @ w.T
        dk = de.transpose(0, 2, 1) @ (q @ w)
        dweight = np.einsum("byq,byt,btk->qk", q, de, k)
    else:
        u, va = saved["u"], saved["v_a"]
        Dq = q.shape[-1]
        dv_a = np.einsum("byt,byta->a", de, u)
        dpre = de[..., None] * va * (1.0 - u * u)                    # [B, Ty, Tx, A]
        dpre_q, dpre_k = dpre.sum(axis=2), dpre.sum(axis=1)           # [B, Ty, A], [B, Tx, A]
        dq, dk = dpre_q @ w[:, :Dq], dpre_k @ w[:, Dq:]
        dweight = np.concatenate([np.einsum("bya,byq->aq", dpre_q, q), np.einsum("bta,btk->ak", dpre_k, k)], axis=1)
    grads = dict(dquery=dq, dkeys=dk, dvalues=dvalues, dweight=dweight, dv_a=dv_a)
    return {name: _cast(a, saved["dtype"]) for name, a in grads.items()}
