"""Decoding's row-wise kernels: the log-softmax a step model returns, and top-k selection (beam search's ranking).

Twins: ``rnncore.reference.decoding``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _core
from .._validation import log_softmax_input, top_k_arguments

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["top_k", "log_softmax"]


def top_k(scores: np.ndarray, k: int, offsets: npt.ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best entries of each row of ``offsets[:, None] + scores`` (float64 sums), best first; ties go to the
    lowest column (exactly a stable descending sort's first k, unlike torch.topk whose tie order is unspecified);
    NaN ranks as -inf.

    Args:
        scores:  [R, C] float32 or float64, C >= 1.
        k:       1..C.
        offsets: [R] added to every entry of its row in float64 (beam search: each beam's running score), or None.

    Returns:
        (columns [R, k] int64, values [R, k] float64: the sums, NaN written as -inf).
    """
    s, k, o = top_k_arguments(scores, k, offsets)
    columns, values = _core.top_k(s, k, o)
    return columns, values


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log(softmax(x)) over the last axis, computed as ``x - max - log(sum(exp(x - max)))`` (never overflows);
    -inf entries give -inf; a row holding NaN or +inf, or only -inf, gives NaN (as torch.log_softmax).

    Args:
        x: [..., C] float32 or float64, C >= 1.

    Returns:
        [..., C] of x's dtype.
    """
    x = log_softmax_input(x)
    flat: Any = x.reshape(-1, x.shape[-1])
    return _core.log_softmax(flat).reshape(x.shape)
