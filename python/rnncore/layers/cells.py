"""One time step per call: ``LSTMCell``, ``GRUCell``, ``RNNCell`` with PyTorch's cells' names and layouts, and
backward through a user-written loop (a tape of the training-mode calls). ``cell.stream()`` gives a streaming
stepper (``rnncore.layers.streams``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .. import _cell_table
from .._cell_table import CellKind
from .._validation import MODULE_DTYPE, float_array, gradient_tuple, positive_int, same_keys, state_tuple
from .recurrent import GRU, LSTM, RNN
from .streams import Stream

if TYPE_CHECKING:
    import numpy.typing as npt

    from .._core import _AnyWorkspace
    from .recurrent import _Recurrent

__all__ = ["LSTMCell", "GRUCell", "RNNCell"]

_C = TypeVar("_C", bound="_Cell")  # train()/eval() return the cell itself, of its own class


class _Cell:
    """One time step at a time (decoders, streaming), with backward through a user-written loop: every training-mode
    call records its step on a tape, and ``backward`` takes the steps back in reverse order (the last call first).
    Parameter names are PyTorch's cells' (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``)."""

    kind: CellKind
    _layer_class: type[_Recurrent]  # the layer of the same kind
    # A class-level default: an LSTM pickled before issue 11 kept no options in its state (it had none).
    _cell_options: dict[str, Any] = {}

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None, init: str = "pytorch", **options: Any) -> None:
        self._cell_options = self.kind.check_options(options, f"{type(self).__name__}.__init__")
        # The parameters and their init are a one-layer, one-direction layer's, under the cells' names.
        self._layer = self._layer_class(input_size, hidden_size, bias=bias, dtype=dtype, seed=seed, init=init,
                                        **self._cell_options)
        self.input_size, self.hidden_size, self.dtype = input_size, hidden_size, self._layer.dtype
        self.bias = bool(bias)
        self.training = True
        self._tape: list[_AnyWorkspace] = []

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``rnncore.save`` stores to rebuild the cell)."""
        layer = self._layer.get_config()
        return dict(input_size=layer["input_size"], hidden_size=layer["hidden_size"], bias=layer["bias"],
                    dtype=layer["dtype"], seed=layer["seed"], init=layer["init"], **self._cell_options)

    @property
    def _op(self) -> str:
        """The ops' prefix of this cell's kind ("lstm", "gru", "rnn")."""
        return self.kind.name

    def _names(self) -> dict[str, str]:
        return {name: name[:-3] for name in self._layer._params}  # weight_ih_l0 -> weight_ih

    def parameters(self) -> dict[str, np.ndarray]:
        return {cell: self._layer._params[layer] for layer, cell in self._names().items()}

    def gradients(self) -> dict[str, np.ndarray]:
        return {cell: self._layer._grads[layer] for layer, cell in self._names().items()}

    def zero_grad(self) -> None:
        self._layer.zero_grad()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.copy() for name, p in self.parameters().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """From a cell's names (``{k: v.numpy() for k, v in torch.nn.LSTMCell(...).state_dict().items()}``)."""
        names = self._names()
        same_keys("load_state_dict", names.values(), state)
        self._layer.load_state_dict({layer: state[cell] for layer, cell in names.items()})

    def train(self: _C, mode: bool = True) -> _C:
        self.training = bool(mode)
        if not self.training:
            self._tape.clear()
        return self

    def eval(self: _C) -> _C:
        return self.train(False)

    def __call__(self, x: np.ndarray, state: Any = None) -> Any:
        """x [B, I] -> the new state (h [B, H], or (h, c) for an LSTM cell)."""
        x = float_array("x", x, [("B", None), ("I", self.input_size)], self.dtype, MODULE_DTYPE)
        states = state_tuple(self.kind, state, "state", "", " cell")
        weights = self._layer._weights(0, 0)
        *result, ws = self.kind.forward(x[None], *states, *weights, training=self.training, **self._cell_options)
        if self.training:
            self._tape.append(ws)
        return self.kind.pack_states(result[1:])

    def backward(self, dstate: Any) -> tuple[np.ndarray, Any]:
        """Gradient w.r.t. the state the LAST recorded call returned (h, or (h, c)); returns ``(dx, dstate_prev)``
        for that call's input and incoming state, and accumulates the parameters' gradients."""
        if not self._tape:
            raise RuntimeError("backward has no recorded step left: call the cell in training mode first "
                               "(one backward per call, last call first)")
        dstates = gradient_tuple(self.kind, dstate)
        grads = self.kind.backward(self._tape[-1], None, *dstates)
        self._tape.pop()  # only once the gradient was accepted: a rejected dstate does not use up the step
        n_states = self.kind.n_states
        dx, d_prev, (dw_ih, dw_hh, db_ih, db_hh) = grads[0][0], grads[1:1 + n_states], grads[-4:]
        g = self.gradients()
        g["weight_ih"] += dw_ih
        g["weight_hh"] += dw_hh
        if self.bias:
            g["bias_ih"] += db_ih
            g["bias_hh"] += db_hh
        return dx, self.kind.pack_states(d_prev)


    def __getstate__(self) -> dict[str, Any]:
        """Pickle and deepcopy: everything but the tape of pending training-mode steps (their workspaces live in
        C++), so a copy takes steps of its own before ``backward``."""
        state = dict(vars(self))
        state["_tape"] = []
        return state

    def __repr__(self) -> str:
        extra = (", bias=False" if not self.bias else "") + self.kind.options_repr(self._cell_options)
        init = self._layer.init
        extra += f", init={init!r}" if init != "pytorch" else ""
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def stream(self, batch: int = 1, state: Any = None) -> Stream:
        """A streaming stepper for inference: ``stream.step(x)`` advances one step (x [batch, I]) and returns the new h,
        keeping the state and the prepared weights between calls (about a microsecond per call at H = 64, against
        ~10 µs for ``cell(x, state)``). It snapshots the weights: later parameter updates need a new stream."""
        return Stream(self, positive_int("batch", batch), state)


class LSTMCell(_Cell):
    """``torch.nn.LSTMCell``: ``h, c = cell(x, (h, c))``."""

    kind = _cell_table.LSTM
    _layer_class = LSTM


class GRUCell(_Cell):
    """``torch.nn.GRUCell`` (``reset_after=False``: the Cho et al. variant): ``h = cell(x, h)``."""

    kind = _cell_table.GRU
    _layer_class = GRU


class RNNCell(_Cell):
    """``torch.nn.RNNCell``: ``h = cell(x, h)``, ``nonlinearity`` "tanh" or "relu"."""

    kind = _cell_table.RNN
    _layer_class = RNN
