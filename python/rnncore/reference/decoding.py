"""Decoding's row-wise pieces in plain NumPy: the twins of ``rnncore.ops.decoding``."""

import numpy as np

from ._common import _f64, _result_dtype

__all__ = ["top_k", "log_softmax"]


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
