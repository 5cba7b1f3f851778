"""The feed-forward layers' kernels in plain NumPy: the twins of ``rnncore.ops.nn``."""

import numpy as np

from ._common import _f64, _result_dtype

__all__ = ["linear_forward", "linear_backward", "embedding_backward"]


def linear_forward(x, weight, bias=None):
    """The dense layer: ``y = x W^T + b``.

    Args:
        x:      [N, I] input rows.
        weight: [O, I].
        bias:   [O], or None for none.

    Returns:
        y [N, O] in x's dtype.
    """
    y = _f64(x) @ _f64(weight).T
    if bias is not None:
        y = y + _f64(bias)
    return y.astype(_result_dtype(x))


def linear_backward(x, weight, dy, dweight, dbias=None, need_dx=True):
    """The dense layer's gradients, from ``y[n, o] = Σ_i x[n, i] W[o, i] + b[o]``:
    ``dW = dy^T x``, ``db = Σ_n dy[n, :]``, ``dx = dy W``. dW and db are added into ``dweight`` and ``dbias`` in place
    (in float64, then cast back), as a module accumulates its gradients.

    Args:
        x:       [N, I] the forward's input.
        weight:  [O, I].
        dy:      [N, O] gradient w.r.t. y.
        dweight: [O, I] float array, accumulated into.
        dbias:   [O] float array, accumulated into; or None (no bias).
        need_dx: whether to return dx.

    Returns:
        dx [N, I] in x's dtype, or None when need_dx is False.
    """
    grad = _f64(dy)
    dweight[...] = (_f64(dweight) + grad.T @ _f64(x)).astype(dweight.dtype)
    if dbias is not None:
        dbias[...] = (_f64(dbias) + grad.sum(axis=0)).astype(dbias.dtype)
    return (grad @ _f64(weight)).astype(_result_dtype(x)) if need_dx else None


def embedding_backward(indices, dy, dweight, padding_idx=None):
    """The embedding's backward: ``weight[indices[...]]`` was gathered, so its gradient is the scatter-add
    ``dweight[indices[...]] += dy[...]`` (a row used k times gets the sum of its k gradients); positions whose index
    is ``padding_idx`` add nothing.

    Args:
        indices:     [...] integers in 0..V-1.
        dy:          [..., D] gradient w.r.t. the gathered rows.
        dweight:     [V, D] float array, accumulated into in place (the sum is taken in float64, then cast back).
        padding_idx: None, or the row that receives nothing.

    Returns:
        dweight.
    """
    idx = np.asarray(indices).reshape(-1)
    grads = _f64(dy).reshape(idx.size, dweight.shape[1])
    if padding_idx is not None:
        keep = idx != padding_idx
        idx, grads = idx[keep], grads[keep]
    total = _f64(dweight)
    np.add.at(total, idx, grads)
    dweight[...] = total.astype(dweight.dtype)
    return dweight
