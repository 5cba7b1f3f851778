"""Kernels of the feed-forward layers (``rnncore.nn``): the dense layer's products (``linear_forward``,
``linear_backward``) and the embedding's backward scatter-add.

The dense products run on rnncore's C++ GEMM under ``rnncore.set_num_threads`` (not on NumPy's BLAS, whose own
threads would compete with rnncore's for the same cores), with the same bits on any thread count.
The embedding's forward is a row gather (``np.take(weight, indices, axis=0)``) and needs no kernel.
Twins: ``rnncore.reference.nn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _core
from .._validation import (
    accumulator_array,
    float_array,
    index_array,
    linear_arrays,
    linear_gradient_arrays,
    optional_index,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["linear_forward", "linear_backward", "embedding_backward"]


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``y = x @ weight.T + bias`` (torch.nn.functional.linear on 2-D x; a module flattens x's leading axes first).

    x:      [N, I] float32 or float64 (N may be 0).
    weight: [O, I] of x's dtype.
    bias:   [O] of x's dtype, or None.
    Returns y [N, O] of x's dtype.
    """
    return linear_forward_checked(*linear_arrays(x, weight, bias))


def linear_forward_checked(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``linear_forward`` for arguments already checked as it checks them (``rnncore.Linear`` checks its own):
    x [N, I], weight [O, I], bias [O] or None, C-contiguous of one dtype."""
    return _core.linear_forward(x, weight, bias)


def linear_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray, dweight: np.ndarray,
                    dbias: np.ndarray | None = None, need_dx: bool = True) -> np.ndarray | None:
    """The gradients of ``linear_forward``: adds ``dy.T @ x`` into ``dweight`` and ``dy.sum(axis=0)`` (rows summed in
    order) into ``dbias``, in place, and returns ``dx = dy @ weight`` (None when ``need_dx`` is False: an input
    that needs no gradient, such as an embedding's output or the data, skips a third of the work).

    x:       [N, I] the forward's input, float32 or float64.
    weight:  [O, I] of x's dtype.
    dy:      [N, O] of x's dtype: the gradient w.r.t. y.
    dweight: [O, I] of x's dtype, C-contiguous and writeable: accumulated into.
    dbias:   [O] likewise, or None (no bias).
    need_dx: whether to compute and return dx.
    Returns dx [N, I] of x's dtype, or None.
    """
    return linear_backward_checked(*linear_gradient_arrays(x, weight, dy, dweight, dbias, need_dx))


def linear_backward_checked(x: np.ndarray, weight: np.ndarray, dy: np.ndarray, dweight: np.ndarray,
                            dbias: np.ndarray | None, need_dx: bool) -> np.ndarray | None:
    """``linear_backward`` for arguments already checked as it checks them (``rnncore.Linear`` checks its own):
    x [N, I], weight [O, I], dy [N, O] C-contiguous, dweight [O, I] and dbias [O] (or None) C-contiguous and
    writeable, all of one dtype; need_dx a bool."""
    return _core.linear_backward(x, weight, dy, dweight, dbias, need_dx)


def embedding_backward(indices: npt.ArrayLike, dy: np.ndarray, dweight: np.ndarray,
                       padding_idx: int | None = None) -> np.ndarray:
    """Adds each ``dy[...]`` row into ``dweight[indices[...]]``, in place, skipping positions whose index is
    ``padding_idx``; rows are added in a fixed order, so repeated indices give the same bits every run. Returns
    ``dweight``.

    indices:     [...] integers in 0..V-1.
    dy:          [..., D] the gradient w.r.t. the gathered rows (``weight[indices]``).
    dweight:     [V, D] float array of dy's dtype, C-contiguous and writeable: accumulated into.
    padding_idx: None, or a row in 0..V-1 that receives nothing.
    """
    dweight = accumulator_array("dweight", dweight, ("V", "D"))
    rows, width = dweight.shape
    idx = index_array("indices", indices, rows)
    dy = float_array("dy", dy, [(f"d{k}", n) for k, n in enumerate(idx.shape)] + [("D", width)], dweight.dtype)
    pad = optional_index("padding_idx", padding_idx, rows, "V")
    return embedding_backward_checked(idx, dy, dweight, pad)


def embedding_backward_checked(idx: np.ndarray, dy: np.ndarray, dweight: np.ndarray, pad: int) -> np.ndarray:
    """``embedding_backward`` for arguments already checked as it checks them (``rnncore.Embedding`` checks its
    own, once): idx int64 in range, dy [*idx.shape, D] and dweight [V, D] C-contiguous of one dtype, pad -1 = none."""
    _core.embedding_backward(idx.reshape(-1), dy.reshape(-1, dweight.shape[1]), pad, dweight)
    return dweight
