"""Kernels of the feed-forward layers (``rnncore.nn``): the embedding's backward scatter-add.

The embedding's forward is a row gather (``np.take(weight, indices, axis=0)``) and needs no kernel.
Twins: ``rnncore.reference.nn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _core
from .._validation import accumulator_array, float_array, index_array, optional_index

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["embedding_backward"]


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
