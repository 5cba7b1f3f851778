"""The fused kernels, one layer and one direction at a time, time-major (design.md §4).

Every function validates its arguments (see ``rnncore._validation``) and then runs one C++ kernel with the GIL
released. ``rnncore.reference`` has the same functions in plain NumPy: the executable spec these are tested against.

Shapes: ``x [T, B, I]``, states ``[B, H]``, ``w_ih [G*H, I]``, ``w_hh [G*H, H]``, biases ``[G*H]``, ``y [T, B, H]``,
``lengths [B]`` (right padding); G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN). PyTorch's names and layouts.

Conventions:
- ``h0``/``c0`` None means zeros; ``b_ih``/``b_hh`` None means no bias (its gradient is then returned as None);
  ``dy``/``dh_n``/``dc_n`` None means zeros.
- T = 0 and B = 0 are supported (empty outputs; ``h_n`` = ``h0``); I and H must be at least 1.
- ``training=True`` returns an opaque workspace for backward (a private copy of what backward needs: changing x or the
  weights afterwards does not change the gradients); ``training=False`` stores nothing and returns None.
- A workspace may be passed to backward more than once; each call returns the same, freshly allocated, gradients.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from . import _core
from ._validation import (float_array, is_exact, lengths_array, nonlinearity_name, optional_float_array,
                          reset_after_flag)

_WORKSPACE_TYPES = (_core.Workspace_float32, _core.Workspace_float64)


class _Forward(NamedTuple):
    x: np.ndarray
    states: tuple
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: Optional[np.ndarray]
    b_hh: Optional[np.ndarray]
    lengths: Optional[np.ndarray]


def _check_forward(gates: int, x, states: dict, w_ih, w_hh, b_ih, b_hh, lengths) -> _Forward:
    """Validates one forward call's arrays against each other: x fixes T, B, I and the dtype; w_hh fixes H.
    Raises with the argument's name, or returns the arrays as the kernels take them."""
    x = float_array("x", x, [("T", None), ("B", None), ("I", None)])
    steps, batch, inputs = x.shape
    dtype = x.dtype
    if inputs < 1:
        raise ValueError(f"x must have at least one input feature (I >= 1), got shape {x.shape}")
    letters = f"{gates}*H"
    w_hh = float_array("w_hh", w_hh, [(letters, None), ("H", None)], dtype)
    hidden = w_hh.shape[1]
    if hidden < 1:
        raise ValueError(f"w_hh must have at least one hidden unit (H >= 1), got shape {w_hh.shape}")
    gh = gates * hidden
    shapes = {"w_hh": (gh, hidden), "w_ih": (gh, inputs), "b_ih": (gh,), "b_hh": (gh,)}
    arrays = {"w_hh": w_hh, "w_ih": w_ih, "b_ih": b_ih, "b_hh": b_hh}
    for name, a in arrays.items():
        if a is not None and not is_exact(a, shapes[name], dtype):
            letters_of = (letters, "H" if name == "w_hh" else "I")
            arrays[name] = float_array(name, a, list(zip(letters_of, shapes[name])), dtype)
    checked_states = []
    for name, s in states.items():
        if s is not None and not is_exact(s, (batch, hidden), dtype):
            s = float_array(name, s, [("B", batch), ("H", hidden)], dtype)
        checked_states.append(s)
    return _Forward(x, tuple(checked_states), arrays["w_ih"], arrays["w_hh"], arrays["b_ih"], arrays["b_hh"],
                    lengths_array(lengths, batch, steps))


def _checked_call(kernel, *args):
    """Runs a kernel whose arguments were just validated; it must accept them (else the two checks disagree)."""
    out = kernel(*args)
    if out is NotImplemented:
        raise RuntimeError(f"rnncore internal error: _core.{kernel.__name__} refused arguments that passed validation")
    return out


def _check_workspace(workspace, op: str, cell: str):
    if not isinstance(workspace, _WORKSPACE_TYPES):
        hint = " (was the forward run with training=False?)" if workspace is None else ""
        raise TypeError(f"workspace must be the workspace returned by {cell}_forward(..., training=True), "
                        f"got {type(workspace).__name__}{hint}")
    if workspace.cell != cell:
        raise ValueError(f"{op} got a workspace from {workspace.cell}_forward; it needs one from {cell}_forward")
    return workspace


def _check_upstream(workspace, grads: dict) -> tuple:
    """Validates the upstream gradients of a backward call against the forward that made ``workspace``."""
    dtype = np.dtype(workspace.dtype)
    T, B, H = workspace.T, workspace.B, workspace.H
    shapes = {"dy": [("T", T), ("B", B), ("H", H)], "dh_n": [("B", B), ("H", H)], "dc_n": [("B", B), ("H", H)]}
    return tuple(optional_float_array(name, g, shapes[name], dtype) for name, g in grads.items())


# Every kernel entry point first tries the call as given: _core recognises the common exact call (every array an
# exact C-contiguous ndarray of the right dtype and shape) in ~0.1 us and answers anything else with NotImplemented,
# after which the checks name the bad argument or make the arrays exact, and the kernel runs on those. The forwards
# spell this out each (their fast path is the whole cost of a small call: a shared helper's extra Python frame made
# an RNN T=100 B=1 H=8 inference call 7% slower); the backwards share _backward.

def _backward(name: str, cell: str, workspace, names: tuple, *upstream):
    """One backward through ``_core.<name>``; ``upstream`` the upstream gradients in kernel order, called ``names``."""
    out = getattr(_core, name)(workspace, *upstream)
    if out is NotImplemented:
        ws = _check_workspace(workspace, name, cell)
        out = _checked_call(getattr(_core, name), ws, *_check_upstream(ws, dict(zip(names, upstream))))
    return out


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, training=True):
    """LSTM over a sequence batch. Returns ``(y [T,B,H], h_n [B,H], c_n [B,H], workspace or None)``.

    ``[i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh``; ``c = f*c + i*g``; ``h = o*tanh(c)``.
    """
    out = _core.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, training)
    if out is NotImplemented:
        a = _check_forward(4, x, {"h0": h0, "c0": c0}, w_ih, w_hh, b_ih, b_hh, lengths)
        out = _checked_call(_core.lstm_forward, a.x, *a.states, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.lengths,
                            bool(training))
    return out


def lstm_backward(workspace, dy, dh_n=None, dc_n=None):
    """BPTT for the forward that made ``workspace``.
    Returns ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``."""
    return _backward("lstm_backward", "lstm", workspace, ("dy", "dh_n", "dc_n"), dy, dh_n, dc_n)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, training=True, reset_after=True):
    """GRU over a sequence batch. Returns ``(y [T,B,H], h_n [B,H], workspace or None)``.

    ``reset_after=True`` (PyTorch/cuDNN/Keras default): ``n = tanh(x W_in^T + b_in + r*(h W_hn^T + b_hn))``;
    ``reset_after=False`` (Cho 2014): ``n = tanh(x W_in^T + b_in + (r*h) W_hn^T + b_hn)``; ``h = (1-z)*n + z*h``.
    """
    out = _core.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, reset_after)
    if out is NotImplemented:
        reset_after = reset_after_flag(reset_after)
        a = _check_forward(3, x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, lengths)
        out = _checked_call(_core.gru_forward, a.x, *a.states, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.lengths,
                            bool(training), reset_after)
    return out


def gru_backward(workspace, dy, dh_n=None):
    """BPTT for the forward that made ``workspace``. Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    return _backward("gru_backward", "gru", workspace, ("dy", "dh_n"), dy, dh_n)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, training=True, nonlinearity="tanh"):
    """Simple RNN ``h = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act = tanh or relu.
    Returns ``(y [T,B,H], h_n [B,H], workspace or None)``."""
    out = _core.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, nonlinearity)
    if out is NotImplemented:
        nonlinearity = nonlinearity_name(nonlinearity)
        a = _check_forward(1, x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, lengths)
        out = _checked_call(_core.rnn_forward, a.x, *a.states, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.lengths,
                            bool(training), nonlinearity)
    return out


def rnn_backward(workspace, dy, dh_n=None):
    """BPTT for the forward that made ``workspace``. Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    return _backward("rnn_backward", "rnn", workspace, ("dy", "dh_n"), dy, dh_n)


def masked_softmax(e, mask=None):
    """Softmax over the last axis of ``e`` (any rank >= 1) restricted to kept entries.

    ``mask`` (optional) is boolean or integer, broadcastable to ``e.shape``: True/nonzero = keep (attend),
    False/0 = masked out (Keras's convention). Masked entries give exactly 0; a row with nothing kept gives zeros.
    """
    e = _scores_array("e", e)
    if mask is not None:
        m = np.asarray(mask)
        if not (m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer)):
            raise TypeError(f"mask must be boolean or integer (True = keep), got dtype {m.dtype}")
        try:
            m = np.broadcast_to(m, e.shape)
        except ValueError:
            raise ValueError(f"mask must be broadcastable to e's shape {e.shape}, got shape {m.shape}") from None
        mask = np.ascontiguousarray(m != 0).view(np.uint8)
    return _core.masked_softmax(e, mask)


def masked_softmax_backward(alpha, dalpha):
    """``de = alpha * (dalpha - sum(alpha * dalpha, axis=-1))``: the gradient w.r.t. the scores ``e``."""
    alpha = _scores_array("alpha", alpha)
    dalpha = float_array("dalpha", dalpha, [(f"d{k}", n) for k, n in enumerate(alpha.shape)], alpha.dtype)
    return _core.masked_softmax_backward(alpha, dalpha)


def _scores_array(name, a):
    a = float_array(name, a, None)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the softmax runs over the last), got a 0-d array")
    return a
