"""Attention kernels: the masked softmax over the last axis and its backward.

``e [..., N]`` scores (any rank >= 1), ``mask`` broadcastable to ``e.shape`` (True/nonzero = keep), ``alpha`` and
``dalpha`` of ``e``'s shape. Twins: ``rnncore.reference.attention``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _core
from .._validation import same_shape_array, scores_array, softmax_mask

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["masked_softmax", "masked_softmax_backward"]


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
