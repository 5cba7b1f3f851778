"""The feed-forward layers' kernels in plain NumPy: the twins of ``rnncore.ops.nn``."""

import numpy as np

from ._common import _f64

__all__ = ["embedding_backward"]


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
