"""The fused recurrent kernels, one layer and one direction at a time, time-major (docs/design.md §4), and the streaming
stepper (one step per call, state kept in C++).

Shapes: ``x [T, B, I]``, states ``[B, H]``, ``w_ih [G*H, I]``, ``w_hh [G*H, H]``, biases ``[G*H]``, ``y [T, B, H]``,
``lengths [B]`` (right padding); G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN). PyTorch's names and layouts.

Conventions:
- ``h0``/``c0`` None means zeros; ``b_ih``/``b_hh`` None means no bias (its gradient is then returned as None);
  ``dy``/``dh_n``/``dc_n`` None means zeros.
- T = 0 and B = 0 are supported (empty outputs; ``h_n`` = ``h0``); I and H must be at least 1.
- ``training=True`` returns an opaque workspace for backward (a private copy of what backward needs: changing x or the
  weights afterwards does not change the gradients); ``training=False`` stores nothing and returns None.
- A workspace may be passed to backward more than once; each call returns the same, freshly allocated, gradients.
- One-hot inputs may be given by their indices: ``x`` an integer array ``[T, B]`` with entries in 0..I-1 (I from
  ``w_ih [G*H, I]``; the outputs take the weights' dtype). The input projection is then a gather of W_ih's columns,
  the workspace keeps the indices, and backward returns ``dx`` None (dW_ih is a scatter-add of the gate gradients).
- ``need_dx=False`` in a backward skips the input gradient (returned as None): an input that is data needs none.
- ``out=`` (forwards), like NumPy's: an array of y's shape ``[T, B, H]`` and dtype, at any strides (e.g. a direction's
  columns of a ``[B, T, 2H]`` array transposed to time-major, or reversed in time with ``[::-1]``), written in place
  and returned as y; it must be writeable and share no memory with the other arguments. ``dy`` is likewise read at
  its strides (no copy).

Twins: ``rnncore.reference.rnn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import _core
from .._validation import (
    flag,
    forward_arrays,
    no_cell_state,
    nonlinearity_name,
    out_array,
    positive_int,
    reset_after_flag,
    stepper_arrays,
    stepper_states,
    training_flag,
    upstream_arrays,
    workspace_of,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .._core import _AnyWorkspace as Workspace, _Stepper as CoreStepper

    # What the forwards return (y, the final state(s), the workspace) and the backwards (dx, the initial state(s)'
    # gradients, dw_ih, dw_hh, db_ih, db_hh; a bias's None without that bias).
    LSTMForwardResult = tuple[np.ndarray, np.ndarray, np.ndarray, Workspace | None]
    ForwardResult = tuple[np.ndarray, np.ndarray, Workspace | None]
    LSTMBackwardResult = tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                               np.ndarray | None]
    BackwardResult = tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                           np.ndarray | None]

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
           "lstm_stepper", "gru_stepper", "rnn_stepper"]

_WORKSPACE_TYPES = (_core.Workspace_float32, _core.Workspace_float64)
_STEPPER_TYPES = {"float32": _core.Stepper_float32, "float64": _core.Stepper_float64}


def _checked_call(kernel: Callable[..., Any], *args: Any) -> Any:
    """Runs a kernel whose arguments were just validated; it must accept them (else the two checks disagree)."""
    out = kernel(*args)
    if out is NotImplemented:
        raise RuntimeError(f"rnncore internal error: _core.{kernel.__name__} refused arguments that passed validation")
    return out


# Every kernel entry point first tries the call as given: _core recognises the common exact call (the rules of
# rnncore._validation.KERNEL_ARGUMENTS) and answers anything else with NotImplemented, after which the checks name the
# bad argument or make the arguments exact, and the kernel runs on those. The forwards spell this out each (their
# fast path is the whole cost of a small call, so it takes no extra Python frame); the backwards share _backward.

def _backward(name: str, cell: str, workspace: Workspace, names: tuple[str, ...], need_dx: bool,
              *upstream: np.ndarray | None) -> Any:
    """One backward through ``_core.<name>``; ``upstream`` the upstream gradients in kernel order, called ``names``."""
    out = getattr(_core, name)(workspace, *upstream, need_dx)
    if out is NotImplemented:
        ws = workspace_of(workspace, name, cell, _WORKSPACE_TYPES)
        out = _checked_call(getattr(_core, name), ws, *upstream_arrays(name, ws, dict(zip(names, upstream))),
                            flag("need_dx", need_dx))  # a bool, as linear_backward's: "no" is a mistake
    return out


def forward_pair(cell: str, first: tuple[Any, ...], second: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """Two forwards of one cell kind that share nothing (a bidirectional layer's directions) in one call: each a
    tuple of ``_core.<cell>_forward``'s positional arguments (x, the initial state(s), w_ih, w_hh, b_ih, b_hh,
    lengths, training, the cell's option if it has one, out). C++ runs them at once on two threads when that is
    measured faster (rnncore::run_pair), each giving the bits it gives alone. Returns the two results, or None when
    either call is not exact or one's out overlaps the other's arrays: the caller then makes its two checked calls
    (whose checks name a bad argument)."""
    result = getattr(_core, f"_{cell}_forward_pair")(first, second)
    return None if result is NotImplemented else result


def backward_pair(cell: str, first: tuple[Any, ...], second: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """``forward_pair`` for two backwards: each a tuple of ``_core.<cell>_backward``'s positional arguments
    (workspace, dy, the final state(s)' gradients, need_dx). None when either call is not exact."""
    result = getattr(_core, f"_{cell}_backward_pair")(first, second)
    return None if result is NotImplemented else result


def _with_out(out: np.ndarray | None, result: Any) -> Any:
    """A checked forward's result with y the caller's ``out`` itself (a subclass was written through a view)."""
    return result if out is None else (out, *result[1:])


def lstm_forward(x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, w_ih: np.ndarray, w_hh: np.ndarray,
                 b_ih: np.ndarray | None, b_hh: np.ndarray | None, lengths: npt.ArrayLike | None = None,
                 training: bool = True, out: np.ndarray | None = None) -> LSTMForwardResult:
    """LSTM over a sequence batch. Returns ``(y [T,B,H], h_n [B,H], c_n [B,H], workspace or None)``.

    ``[i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh``; ``c = f*c + i*g``; ``h = o*tanh(c)``.
    """
    result = _core.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, training, out)
    if result is NotImplemented:
        a = forward_arrays("lstm_forward", 4, x, {"h0": h0, "c0": c0}, w_ih, w_hh, b_ih, b_hh, lengths)
        result = _with_out(out, _checked_call(_core.lstm_forward, a.x, *a.states, a.w_ih, a.w_hh, a.b_ih, a.b_hh,
                                              a.lengths, training_flag(training), out_array(out, a, ("h0", "c0"), dict(
                                                  x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh))))
    return result


def lstm_backward(workspace: Workspace, dy: np.ndarray | None, dh_n: np.ndarray | None = None,
                  dc_n: np.ndarray | None = None, need_dx: bool = True) -> LSTMBackwardResult:
    """BPTT for the forward that made ``workspace``.
    Returns ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``; dx None with ``need_dx=False`` or one-hot indices."""
    return _backward("lstm_backward", "lstm", workspace, ("dy", "dh_n", "dc_n"), need_dx, dy, dh_n, dc_n)


def gru_forward(x: np.ndarray, h0: np.ndarray | None, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
                b_hh: np.ndarray | None, lengths: npt.ArrayLike | None = None, training: bool = True,
                reset_after: bool = True, out: np.ndarray | None = None) -> ForwardResult:
    """GRU over a sequence batch. Returns ``(y [T,B,H], h_n [B,H], workspace or None)``.

    ``reset_after=True`` (PyTorch/cuDNN/Keras default): ``n = tanh(x W_in^T + b_in + r*(h W_hn^T + b_hn))``;
    ``reset_after=False`` (Cho 2014): ``n = tanh(x W_in^T + b_in + (r*h) W_hn^T + b_hn)``; ``h = (1-z)*n + z*h``.
    """
    result = _core.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, reset_after, out)
    if result is NotImplemented:
        reset_after = reset_after_flag(reset_after)
        a = forward_arrays("gru_forward", 3, x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, lengths)
        result = _with_out(out, _checked_call(_core.gru_forward, a.x, *a.states, a.w_ih, a.w_hh, a.b_ih, a.b_hh,
                                              a.lengths, training_flag(training), reset_after,
                                              out_array(out, a, ("h0",), dict(
                                                  x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh))))
    return result


def gru_backward(workspace: Workspace, dy: np.ndarray | None, dh_n: np.ndarray | None = None,
                 need_dx: bool = True) -> BackwardResult:
    """BPTT for the forward that made ``workspace``. Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``; dx None with
    ``need_dx=False`` or one-hot indices."""
    return _backward("gru_backward", "gru", workspace, ("dy", "dh_n"), need_dx, dy, dh_n)


def rnn_forward(x: np.ndarray, h0: np.ndarray | None, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
                b_hh: np.ndarray | None, lengths: npt.ArrayLike | None = None, training: bool = True,
                nonlinearity: str = "tanh", out: np.ndarray | None = None) -> ForwardResult:
    """Simple RNN ``h = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act = tanh or relu.
    Returns ``(y [T,B,H], h_n [B,H], workspace or None)``."""
    result = _core.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, training, nonlinearity, out)
    if result is NotImplemented:
        nonlinearity = nonlinearity_name(nonlinearity)
        a = forward_arrays("rnn_forward", 1, x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, lengths)
        result = _with_out(out, _checked_call(_core.rnn_forward, a.x, *a.states, a.w_ih, a.w_hh, a.b_ih, a.b_hh,
                                              a.lengths, training_flag(training), nonlinearity,
                                              out_array(out, a, ("h0",), dict(
                                                  x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh))))
    return result


def rnn_backward(workspace: Workspace, dy: np.ndarray | None, dh_n: np.ndarray | None = None,
                 need_dx: bool = True) -> BackwardResult:
    """BPTT for the forward that made ``workspace``. Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``; dx None with
    ``need_dx=False`` or one-hot indices."""
    return _backward("rnn_backward", "rnn", workspace, ("dy", "dh_n"), need_dx, dy, dh_n)


# ---- streaming ------------------------------------------------------------------------------------------------------
#
# A stepper runs one time step per call with the weights prepared once and the state kept in C++ (inference only):
#   stepper.step(x [B, I]) -> the new h [B, H] (a copy); C++ checks x itself (exact C-contiguous [B, I] of the
#       weights' dtype, else ValueError), so the hot call costs about a microsecond;
#   stepper.reset(h0=None, c0=None) sets the state ([B, H] arrays of the weights' dtype, or None for zeros; c0 is
#       the LSTM's and must be None for the others), checked in Python (rnncore._validation.stepper_states);
#   stepper.h, stepper.c: copies of the state (c: LSTM only; AttributeError for a one-state cell).
# The weights are copied: later changes to the caller's arrays do not reach the stepper.

class Stepper:
    """A streaming stepper (the notes above): the C++ ``_core.Stepper_*`` behind the argument checks of ``reset`` and
    ``c``. ``step`` is the C++ method itself (an instance attribute), so the hot call costs no Python frame."""

    __slots__ = ("_core", "_cell", "_n_states", "_batch", "_hidden", "_dtype", "step", "__weakref__")

    def __init__(self, core: CoreStepper, cell: str, batch: int, hidden: int, dtype: np.dtype) -> None:
        self._core, self._cell, self._n_states = core, cell, core.n_states  # n_states: the C++ cell table's
        self._batch, self._hidden, self._dtype = batch, hidden, dtype
        self.step: Callable[[np.ndarray], np.ndarray] = core.step

    def reset(self, h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> None:
        """Sets the state: h0, c0 [B, H] (c0 for the LSTM only), None for zeros."""
        if h0 is None and c0 is None:  # zeros: nothing to check
            self._core.reset(None, None)
            return
        self._core.reset(*stepper_states(self._cell, self._n_states, h0, c0, self._batch, self._hidden, self._dtype))

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The state lives in C++: no copy, pickle or deepcopy (a shallow copy would share and advance one state).
        raise TypeError(f"cannot pickle {type(self._core).__name__!r} object")

    @property
    def h(self) -> np.ndarray:
        """A copy of the hidden state [B, H]."""
        return self._core.h

    @property
    def c(self) -> np.ndarray:
        """A copy of the LSTM's cell state [B, H]; AttributeError for a one-state cell."""
        if self._n_states < 2:
            raise no_cell_state(self._cell)
        return self._core.c


def _stepper(cell: str, gates: int, batch: int, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
             b_hh: np.ndarray | None, reset_after: bool, nonlinearity: str) -> Stepper:
    batch = positive_int("batch", batch)
    w_ih, w_hh, b_ih, b_hh = stepper_arrays(gates, w_ih, w_hh, b_ih, b_hh)
    core = _STEPPER_TYPES[w_ih.dtype.name](cell, reset_after, nonlinearity, batch, w_ih, w_hh, b_ih, b_hh)
    return Stepper(core, cell, batch, w_hh.shape[1], w_ih.dtype)


def lstm_stepper(batch: int, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                 b_hh: np.ndarray | None = None) -> Stepper:
    """A streaming LSTM for ``batch`` sequences (state h, c zeros); see the streaming notes above."""
    return _stepper("lstm", 4, batch, w_ih, w_hh, b_ih, b_hh, True, "tanh")


def gru_stepper(batch: int, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                b_hh: np.ndarray | None = None, reset_after: bool = True) -> Stepper:
    """A streaming GRU for ``batch`` sequences (state h zeros); see the streaming notes above."""
    return _stepper("gru", 3, batch, w_ih, w_hh, b_ih, b_hh, reset_after_flag(reset_after), "tanh")


def rnn_stepper(batch: int, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                b_hh: np.ndarray | None = None, nonlinearity: str = "tanh") -> Stepper:
    """A streaming simple RNN for ``batch`` sequences (state h zeros); see the streaming notes above."""
    return _stepper("rnn", 1, batch, w_ih, w_hh, b_ih, b_hh, True, nonlinearity_name(nonlinearity))
