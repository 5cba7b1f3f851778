"""Row-wise softmax kernels: decoding's log-softmax a step model returns and top-k selection (beam search's ranking),
and training's softmax cross-entropy (rnncore.losses.softmax_cross_entropy's class-index path).

Twins: ``rnncore.reference.decoding``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _core
from .._validation import cross_entropy_rows, log_softmax_input, top_k_arguments

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["top_k", "log_softmax", "softmax_cross_entropy"]


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


def softmax_cross_entropy(logits: np.ndarray, targets: npt.ArrayLike, mask: npt.ArrayLike | None = None,
                          label_smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The softmax cross-entropy of each row against its class (torch's label smoothing ε), and its gradient, in one
    pass per row: with lse = log Σ_j exp(x_j) (the row max subtracted first) and q = (1 - ε) onehot(target) + ε/C,
    ``loss = Σ_j q_j (lse - x_j)`` and ``dlogits = softmax(x) - q``. A row the mask excludes gets loss 0 and a zero
    gradient, and its logits and target are never read (NaN, inf, any target are inert).

    Args:
        logits:  [R, C] float32 or float64, C >= 1.
        targets: [R] integers, each kept row's in 0..C-1.
        mask:    [R] bool or 0/1 (True = the row counts), or None (every row).
        label_smoothing: ε in [0, 1].

    Returns:
        (losses [R], dlogits [R, C]) in the logits' dtype, unscaled (the gradient of losses.sum()).
    """
    return softmax_cross_entropy_checked(*cross_entropy_rows(logits, targets, mask, label_smoothing))


def softmax_cross_entropy_checked(logits: np.ndarray, targets: np.ndarray, keep: np.ndarray | None,
                                  label_smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """``softmax_cross_entropy`` for arguments already checked as it checks them (``rnncore.losses`` checks its
    own): logits [R, C] C-contiguous float, targets [R] int64 with every kept row's in 0..C-1, keep [R] uint8 or
    None — the caller's private copies (the kernel reads them without the GIL), label_smoothing in [0, 1]."""
    result = softmax_cross_entropy_if_classes(logits, targets, keep, label_smoothing)
    if result is None:
        raise RuntimeError("rnncore internal error: _core.softmax_cross_entropy found a kept row's target outside "
                           "0..C-1 after the checks passed it")
    return result


def softmax_cross_entropy_if_classes(logits: np.ndarray, targets: np.ndarray, keep: np.ndarray | None,
                                     label_smoothing: float) -> tuple[np.ndarray, np.ndarray] | None:
    """``softmax_cross_entropy_checked`` for targets whose range is not checked yet: None (nothing computed) when a
    kept row's target is not a class, for the caller's checks to name it."""
    result = _core.softmax_cross_entropy(logits, targets, keep, label_smoothing)
    return None if result is NotImplemented else result

