"""The reference's small helpers, one idea each (all arithmetic in float64)."""

import numpy as np


def _f64(a):
    """``a`` as a float64 array, or None if ``a`` is None (all arithmetic here is float64)."""
    return None if a is None else np.asarray(a).astype(np.float64)


def _result_dtype(a):
    """The dtype results are cast back to: the dtype of ``a`` if it is floating point, else float64."""
    dtype = np.asarray(a).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _cast(a, dtype):
    """``a`` cast to ``dtype``; None stays None (a missing bias has a missing gradient)."""
    return None if a is None else a.astype(dtype)


def _or_zeros(a, shape):
    """``a`` as float64, or float64 zeros of ``shape`` if ``a`` is None (missing state, bias or gradient)."""
    return np.zeros(shape) if a is None else _f64(a)


def _sigmoid(v):
    """σ(v) = 1 / (1 + exp(-v)), written as (1 + tanh(v/2)) / 2: exact, and never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _dsigmoid(s):
    """σ'(v) from the output s = σ(v): s (1 - s)."""
    return s * (1.0 - s)


def _dtanh(y):
    """tanh'(v) from the output y = tanh(v): 1 - y²."""
    return 1.0 - y * y


def _split_gates(a, n_gates):
    """Split the last axis of ``a [..., G*H]`` into the G gate blocks of width H (LSTM i,f,g,o; GRU r,z,n)."""
    return np.split(a, n_gates, axis=-1)


def _linear(inp, w, b):
    """inp W^T + b for ``inp [B, K]``, ``w [N, K]``, ``b [N]``: the PyTorch ``nn.Linear`` convention."""
    return inp @ w.T + b


def _linear_backward(dout, inp, w):
    """Gradients of ``out = inp W^T + b`` given ``dout [B, N]``: (d inp = dout W, dW = dout^T inp, db = Σ_B dout)."""
    return dout @ w, dout.T @ inp, dout.sum(axis=0)


def _active_steps(lengths, T, B):
    """Boolean ``[T, B, 1]``: True where step t is valid for sample b (t < lengths[b]); all True if lengths is None.

    The trailing axis of size 1 broadcasts against the hidden units ``[B, H]`` of one step.
    """
    if lengths is None:
        return np.ones((T, B, 1), dtype=bool)
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :])[:, :, None]
