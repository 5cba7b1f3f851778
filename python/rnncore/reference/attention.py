"""The masked softmax in plain NumPy: the twins of ``rnncore.ops.attention``.

Masked softmax (over the last axis; ``mask`` True/nonzero = keep, Keras convention)::

    α = exp(e - max_kept(e)) / Σ_kept exp(e - max_kept(e))   on kept entries, α = 0 on masked entries,
    α = 0 for a row with every entry masked;      backward: de = α ⊙ (dα - Σ α ⊙ dα).
"""

import numpy as np

from ._common import _f64, _result_dtype

__all__ = ["masked_softmax", "masked_softmax_backward"]


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
