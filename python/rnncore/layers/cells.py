"""One time step per call: ``LSTMCell``, ``GRUCell``, ``RNNCell`` with PyTorch's cells' names and layouts, and
backward through a user-written loop (the module's tape of training-mode calls). ``cell.stream()`` gives a streaming
stepper (``rnncore.layers.streams``); ``cell.load_state_dict(layer.state_dict(), layer=k, direction=d)`` (or
``LSTMCell.from_layer(lstm, k, d)``) takes one position of a layer's weights."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .. import _cell_table
from .._cell_table import CellKind
from .._validation import (
    MODULE_DTYPE,
    cell_source,
    cell_state,
    cell_weights,
    choice,
    flag,
    float_array,
    layer_position,
    positive_int,
    state_position,
)
from ..module import IncompatibleKeys, Parameterized
from .recurrent import _INITS, Weights, _Recurrent, init_weights
from .streams import Stream

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["LSTMCell", "GRUCell", "RNNCell"]

_C = TypeVar("_C", bound="_Cell")  # from_layer returns a cell of the class it is called on
_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class _Cell(Parameterized):
    """One time step at a time (decoders, streaming), with backward through a user-written loop: every training-mode
    call records its step on the module's tape, and ``backward`` takes the steps back in reverse order (the last
    call first). Parameter names are PyTorch's cells' (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``); the
    init is a one-layer layer's (the same seed gives the layer's ``_l0`` weights)."""

    kind: CellKind
    # A class-level default: an LSTM pickled before issue 11 kept no options in its state (it had none).
    _cell_options: dict[str, Any] = {}

    def __init__(self, input_size: int, hidden_size: int, bias: bool, dtype: npt.DTypeLike,
                 seed: int | np.random.Generator | None, init: str, options: dict[str, Any]) -> None:
        self._cell_options = self.kind.check_options(options, f"{type(self).__name__}.__init__")
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.bias = flag("bias", bias)
        super().__init__(dtype, seed if isinstance(seed, numbers.Integral) else None)
        self._rng = np.random.default_rng(seed)
        self.init = choice("init", init, _INITS)
        gh = self.kind.n_gates * self.hidden_size
        for name, shape in (("weight_ih", (gh, self.input_size)), ("weight_hh", (gh, self.hidden_size)),
                            ("bias_ih", (gh,)), ("bias_hh", (gh,)))[:4 if self.bias else 2]:
            self._add_parameter(name, shape)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draws the weights again from the cell's generator, with its ``init`` (as a one-layer layer does)."""
        init_weights(self._params, self.kind, self.hidden_size, self.init, self._rng)

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``rnncore.save`` stores to rebuild the cell)."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias, dtype=self.dtype.name,
                    seed=self._seed, init=self.init, **self._cell_options)

    @property
    def _op(self) -> str:
        """The ops' prefix of this cell's kind ("lstm", "gru", "rnn")."""
        return self.kind.name

    def _weights(self) -> Weights:
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

    # -- weights from a layer ----------------------------------------------------------------------------------------
    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True, *, layer: int | None = None,
                        direction: int | None = None) -> IncompatibleKeys:
        """Copies the weights from a cell's state dict (torch's cell names), or, with ``layer=`` / ``direction=``
        (each 0 when only the other is given), from position (layer, direction) of a layer's state dict
        (``weight_ih_l{layer}[_reverse]`` ...; stepping the cell then reproduces that layer's direction: direction 1
        over the sequence reversed). Converted to the cell's dtype. With ``strict`` (the default) the entries must be
        exactly the cell's (a bias the cell lacks is unexpected); without, the entries found are copied. Anything
        wrong raises before any copy; returns ``(missing_keys, unexpected_keys)`` (empty when strict). The options
        (reset_after, nonlinearity) are the caller's to match."""
        if layer is None and direction is None:
            sources = {name: name for name in self._params}
            position = None
        else:
            layer, direction = state_position(layer, direction)
            suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            sources = {name + suffix: name for name in self._params}
            position = [name + suffix for name in _NAMES]
        arrays, missing, unexpected = cell_weights(state, sources, self._params, strict, position)
        for name, a in arrays.items():
            self._params[name][...] = a
        return IncompatibleKeys(missing, unexpected)

    @classmethod
    def from_layer(cls: type[_C], source: _Recurrent, layer: int = 0, direction: int = 0) -> _C:
        """A new cell with the weights of position (layer, direction) of an rnncore layer of the same kind, its
        options, bias and dtype (input size: the layer's input_size for layer 0, D*H above)."""
        cell_source(cls.__name__, cls.kind, source, _Recurrent)
        layer, direction = layer_position(layer, direction, source.num_layers, source.num_directions)
        input_size = source.input_size if layer == 0 else source.num_directions * source.hidden_size
        cell = cls(input_size, source.hidden_size, bias=source.bias, dtype=source.dtype,
                   **source._cell_options)
        cell.load_state_dict(source.state_dict(), layer=layer, direction=direction)
        return cell

    # -- one step ----------------------------------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, state: Any = None) -> Any:
        """x [B, I], the state (h [B, H], or (h, c) for an LSTM cell; None: zeros) -> the new state."""
        x = float_array("x", x, [("B", None), ("I", self.input_size)], self.dtype, MODULE_DTYPE)
        states = cell_state(self.kind, state, self.kind.states, x.shape[0], self.hidden_size, self.dtype, "state")
        *result, ws = self.kind.forward(x[None], *states, *self._weights(), training=self.training,
                                        **self._cell_options)
        self.save_for_backward(ws)  # (a no-op in eval mode)
        return self.kind.pack_states(result[1:])

    def backward(self, dstate: Any) -> tuple[np.ndarray, Any]:
        """Gradient w.r.t. the state the LAST recorded call returned (dh [B, H], or (dh, dc); None parts: zeros);
        returns ``(dx, dstate_prev)`` for that call's input and incoming state, and accumulates the parameters'
        gradients."""
        try:
            ws = self.saved_for_backward()
        except RuntimeError as e:  # the module base's account of the tape, in a cell's terms first
            raise RuntimeError(f"backward has no recorded step left: {e}") from None
        try:
            names = tuple("d" + s for s in self.kind.states)
            dstates = cell_state(self.kind, dstate, names, ws.B, self.hidden_size, self.dtype, "dstate")
            grads = self.kind.backward(ws, None, *dstates)
        except Exception:
            self._restore_saved(ws)  # a rejected dstate does not use up the step
            raise
        n_states = self.kind.n_states
        dx, d_prev, (dw_ih, dw_hh, db_ih, db_hh) = grads[0][0], grads[1:1 + n_states], grads[-4:]
        g = self._grads
        g["weight_ih"] += dw_ih
        g["weight_hh"] += dw_hh
        if self.bias:
            g["bias_ih"] += db_ih
            g["bias_hh"] += db_hh
        return dx, self.kind.pack_states(d_prev)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling; a cell pickled before issue 12 wrapped a one-layer layer (``_layer``, its own ``_tape``):
        its parameters, gradients, generator and init become the cell's."""
        if "_layer" in state:
            state = dict(state)
            layer = state.pop("_layer")
            state.pop("_tape", None)  # (pickled empty)
            state.update(_seed=layer._seed, _rng=layer._rng, init=layer.init, _saved=None,
                         _params={name[:-3]: p for name, p in layer._params.items()},  # weight_ih_l0 -> weight_ih
                         _grads={name[:-3]: g for name, g in layer._grads.items()})
        restore = getattr(super(), "__setstate__", None)  # the module base's, when it has one
        if restore is not None:
            restore(state)
        else:
            vars(self).update(state)

    def __repr__(self) -> str:
        extra = (", bias=False" if not self.bias else "") + self.kind.options_repr(self._cell_options)
        extra += f", init={self.init!r}" if self.init != "pytorch" else ""
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    # -- streaming ---------------------------------------------------------------------------------------------------
    def stream(self, batch: int = 1, state: Any = None) -> Stream:
        """A streaming stepper for inference: ``stream.step(x)`` advances one step (x [batch, I], or [I] for batch 1)
        and returns the new h, keeping the state and the prepared weights between calls (about a microsecond per
        call at H = 64, against ~10 µs for ``cell(x, state)``). It snapshots the weights: later parameter updates
        need a new stream."""
        return Stream(self, positive_int("batch", batch), state)

    def _stream_weights(self) -> list[Weights]:
        return [self._weights()]


class LSTMCell(_Cell):
    """``torch.nn.LSTMCell``: ``h, c = cell(x, (h, c))``."""

    kind = _cell_table.LSTM

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None, init: str = "pytorch") -> None:
        super().__init__(input_size, hidden_size, bias, dtype, seed, init, {})


class GRUCell(_Cell):
    """``torch.nn.GRUCell`` (``reset_after=False``: the Cho et al. variant): ``h = cell(x, h)``."""

    kind = _cell_table.GRU

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, reset_after: bool = True,
                 dtype: npt.DTypeLike = np.float32, seed: int | np.random.Generator | None = None,
                 init: str = "pytorch") -> None:
        super().__init__(input_size, hidden_size, bias, dtype, seed, init, {"reset_after": reset_after})


class RNNCell(_Cell):
    """``torch.nn.RNNCell``: ``h = cell(x, h)``, ``nonlinearity`` "tanh" or "relu"."""

    kind = _cell_table.RNN

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 dtype: npt.DTypeLike = np.float32, seed: int | np.random.Generator | None = None,
                 init: str = "pytorch") -> None:
        super().__init__(input_size, hidden_size, bias, dtype, seed, init, {"nonlinearity": nonlinearity})
