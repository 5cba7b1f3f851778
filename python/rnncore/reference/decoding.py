"""Row-wise softmax pieces in plain NumPy (decoding's log-softmax and top-k, training's cross-entropy): the twins of
``rnncore.ops.decoding``."""

import numpy as np

from ._common import _f64, _result_dtype

__all__ = ["top_k", "log_softmax", "softmax_cross_entropy"]


def top_k(scores, k, offsets=None):
    """The k best entries of each row of offsets[:, None] + scores (float64), best first, ties by the lowest column:
    a stable descending sort's first k, with NaN ranked as -inf.

    Args:
        scores:  [R, C]; k: 1..C;  offsets: [R] or None (zeros).

    Returns:
        (columns [R, k] int64, values [R, k] float64, NaN written as -inf).
    """
    with np.errstate(invalid="ignore"):  # -inf + inf is NaN, ranked as -inf below
        sums = _f64(scores) + (0.0 if offsets is None else _f64(offsets)[:, None])
    sums = np.where(np.isnan(sums), -np.inf, sums)
    columns = np.argsort(-sums, axis=1, kind="stable")[:, :k]
    return columns.astype(np.int64), np.take_along_axis(sums, columns, axis=1)


def log_softmax(x):
    """log softmax over the last axis: x - m - log Σ exp(x - m), m the row's max (a row of only -inf gives NaN).

    Args:
        x: [..., C].

    Returns:
        [..., C] in x's dtype.
    """
    out_dtype = _result_dtype(x)
    x = _f64(x)
    m = np.max(x, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x - m
        return (shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))).astype(out_dtype)


def softmax_cross_entropy(logits, targets, mask=None, label_smoothing=0.0):
    """Per row: q = (1 - ε) onehot(target) + ε/C, loss = -Σ_j q_j log softmax(x)_j, dlogits = softmax(x) - q; rows
    the mask excludes give 0 and a zero gradient (their logits and targets are not read).

    Args:
        logits: [R, C];  targets: [R] ints;  mask: [R] bools or None (every row);  label_smoothing: ε in [0, 1].

    Returns:
        (losses [R], dlogits [R, C]) in the logits' dtype.
    """
    out_dtype = _result_dtype(logits)
    x = _f64(logits)
    R, C = x.shape
    keep = np.ones(R, bool) if mask is None else np.asarray(mask, bool)
    losses, dlogits = np.zeros(R), np.zeros((R, C))
    for r in np.flatnonzero(keep):
        q = np.full(C, label_smoothing / C)
        q[targets[r]] += 1.0 - label_smoothing
        log_p = x[r] - x[r].max()
        log_p = log_p - np.log(np.sum(np.exp(log_p)))
        # Σ_j q_j (-log p_j) over the classes q weighs: a -inf logit with q_j = 0 adds nothing (not 0·∞ = NaN)
        losses[r] = -np.sum(q[q > 0] * log_p[q > 0])
        dlogits[r] = np.exp(log_p) - q
    return losses.astype(out_dtype), dlogits.astype(out_dtype)

