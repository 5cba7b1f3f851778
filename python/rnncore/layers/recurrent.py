"""Multi-layer, optionally bidirectional recurrent layers with PyTorch's constructor, names and layouts.

``rnncore.LSTM``, ``rnncore.GRU`` and ``rnncore.RNN`` stack the fused kernels of ``rnncore.ops`` the way
``torch.nn.LSTM/GRU/RNN`` stack theirs: layer ``k`` reads the (dropout-masked, in training) outputs of layer ``k-1``;
with ``bidirectional=True`` each layer runs a second direction over each sequence's valid prefix reversed, and its
output is ``[forward | reverse]`` along the features. Parameters are NumPy arrays named as in a torch ``state_dict``
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), updated in place by optimizers; gradients accumulate across
``backward`` calls until ``zero_grad()``.

Shapes: ``x [T, B, I]`` (``[B, T, I]`` with ``batch_first``), ``y [T, B, D*H]``, states ``[L*D, B, H]`` indexed
``layer*D + direction``, ``lengths [B]`` (right padding; padded steps give ``y = 0`` and no gradient).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _cell_table
from .._cell_table import CellKind
from .._validation import (
    MODULE_DTYPE,
    choice,
    dropout_probability,
    float_array,
    lengths_array,
    positive_int,
    state_tuple,
)
from ..module import Parameterized

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["LSTM", "GRU", "RNN"]

_INITS = ("pytorch", "keras")


class _Recurrent(Parameterized):
    """What LSTM, GRU and RNN share; a subclass sets ``kind``, its row of the cell table (rnncore._cell_table), and
    takes that kind's options (e.g. ``reset_after``) as keywords."""

    kind: CellKind
    # A class-level default: an LSTM pickled before issue 11 kept no options in its state (it had none).
    _cell_options: dict[str, Any] = {}

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: npt.DTypeLike = np.float32, seed: int | np.random.Generator | None = None,
                 init: str = "pytorch", **options: Any) -> None:
        self._cell_options = self.kind.check_options(options, f"{type(self).__name__}.__init__")
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        self.dropout = dropout_probability(dropout)
        if self.dropout > 0 and self.num_layers == 1:  # as torch.nn.RNNBase warns
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={self.dropout} and num_layers=1",
                          UserWarning, stacklevel=2)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        super().__init__(dtype, seed if isinstance(seed, numbers.Integral) else None)
        self._rng = np.random.default_rng(seed)
        self.init = choice("init", init, _INITS)
        for name, shape in self._parameter_shapes():
            self._add_parameter(name, shape)
        self.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``rnncore.save`` stores to rebuild the layer)."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                    bidirectional=self.bidirectional, dtype=self.dtype.name, seed=self._seed, init=self.init,
                    **self._cell_options)

    @property
    def _op(self) -> str:
        """The ops' prefix of this layer's cell ("lstm", "gru", "rnn")."""
        return self.kind.name

    # -- parameters ----------------------------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def _parameter_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        gh = self.kind.n_gates * self.hidden_size
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for direction in range(self.num_directions):
                s = self._suffix(layer, direction)
                yield f"weight_ih{s}", (gh, in_size)
                yield f"weight_hh{s}", (gh, self.hidden_size)
                if self.bias:
                    yield f"bias_ih{s}", (gh,)
                    yield f"bias_hh{s}", (gh,)

    def reset_parameters(self) -> None:
        """PyTorch's init (every entry U(-1/√H, 1/√H)) or Keras's (Glorot-uniform input weights, orthogonal
        recurrent weights per gate, zero biases, and for the LSTM a forget-gate bias of 1)."""
        H = self.hidden_size
        gates = self.kind.gates
        for name, p in self._params.items():
            if self.init == "pytorch":
                bound = 1.0 / np.sqrt(H)
                p[...] = self._rng.uniform(-bound, bound, p.shape)
            elif name.startswith("weight_ih"):
                fan_out, fan_in = p.shape
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                p[...] = self._rng.uniform(-bound, bound, p.shape)
            elif name.startswith("weight_hh"):
                for g in range(len(gates)):  # one orthogonal [H, H] block per gate, like Keras's recurrent kernel
                    q, r = np.linalg.qr(self._rng.standard_normal((H, H)))
                    p[g * H:(g + 1) * H] = q * np.sign(np.diag(r))
            else:
                p[...] = 0.0
                if name.startswith("bias_ih"):
                    for gate in self.kind.keras_unit_bias:  # the LSTM's forget gate
                        g = gates.index(gate)
                        p[g * H:(g + 1) * H] = 1.0

    # -- forward ---------------------------------------------------------------------------------------------------
    def _weights(self, layer: int, direction: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        s = self._suffix(layer, direction)
        p = self._params
        return p[f"weight_ih{s}"], p[f"weight_hh{s}"], p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}")

    def _check_state(self, state: Any, batch: int) -> tuple[np.ndarray | None, ...]:
        """The initial state as a tuple of [L*D, B, H] arrays (h, or h and c), None meaning zeros."""
        if state is None:
            return (None,) * len(self.kind.states)
        states = state_tuple(self.kind, state, "state", "0", "")
        shape = [("L*D", self.num_layers * self.num_directions), ("B", batch), ("H", self.hidden_size)]
        return tuple(None if s is None else float_array(f"{name}0", s, shape, self.dtype, MODULE_DTYPE)
                     for name, s in zip(self.kind.states, states))

    def __call__(self, x: np.ndarray, state: Any = None, lengths: npt.ArrayLike | None = None
                 ) -> tuple[np.ndarray, Any]:
        """Runs every layer and direction. Returns ``(y, state)``: y ``[T, B, D*H]`` (``[B, T, D*H]`` with
        batch_first) and the final state(s) ``[L*D, B, H]`` (``(h_n, c_n)`` for an LSTM)."""
        x = float_array("x", x, [("B" if self.batch_first else "T", None), ("T" if self.batch_first else "B", None),
                                 ("I", self.input_size)], self.dtype, MODULE_DTYPE)
        if self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        steps, batch, _ = x.shape
        states0 = self._check_state(state, batch)
        lengths = lengths_array(lengths, batch, steps)
        reverse_index = _reverse_index(steps, batch, lengths) if self.bidirectional else None
        keep_graph = self.training

        finals: list[list[np.ndarray]] = [[] for _ in states0]
        saved_layers = []
        layer_input = x
        for layer in range(self.num_layers):
            mask = None
            if layer > 0 and self.training and self.dropout > 0.0:
                mask = (self._rng.random(layer_input.shape) >= self.dropout).astype(self.dtype) / (1.0 - self.dropout)
                layer_input = layer_input * mask
            outputs, workspaces = [], []
            for direction in range(self.num_directions):
                idx = layer * self.num_directions + direction
                init = [None if s is None else s[idx] for s in states0]
                # (direction 1 exists only when bidirectional, which sets reverse_index)
                inp = layer_input if direction == 0 else _gather_steps(layer_input, reverse_index)  # type: ignore[arg-type]
                *result, ws = self.kind.forward(inp, *init, *self._weights(layer, direction), lengths=lengths,
                                                training=keep_graph, **self._cell_options)
                y_dir, *final = result
                outputs.append(y_dir if direction == 0 else _gather_steps(y_dir, reverse_index))  # type: ignore[arg-type]
                for store, f in zip(finals, final):
                    store.append(f)
                workspaces.append(ws)
            saved_layers.append((workspaces, mask))
            layer_input = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)

        self.save_for_backward((saved_layers, reverse_index, batch, steps))  # training mode only
        y = layer_input
        if self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        final_states = tuple(np.stack(f) for f in finals)
        return y, self.kind.pack_states(final_states)

    # -- backward --------------------------------------------------------------------------------------------------
    def backward(self, dy: np.ndarray | None, dstate: Any = None) -> tuple[np.ndarray, Any]:
        """Backpropagation through the last recorded training-mode forward (the tape: any number of forwards, then
        one backward each, last first): accumulates every parameter's gradient and
        returns ``(dx, dstate0)`` — the gradients w.r.t. x and the initial state(s). ``dy`` has y's shape, or None
        for zeros (only the final state's gradient flows back); ``dstate`` (optional) the final state's, each part
        None for zeros."""
        saved = self.saved_for_backward()
        saved_layers, reverse_index, batch, steps = saved
        D, H = self.num_directions, self.hidden_size
        try:
            if dy is None:
                dy = np.zeros((steps, batch, D * H), self.dtype)
            else:
                y_shape = [("B", batch), ("T", steps)] if self.batch_first else [("T", steps), ("B", batch)]
                dy = float_array("dy", dy, y_shape + [("D*H", D * H)], self.dtype, MODULE_DTYPE)
                if self.batch_first:
                    dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
            dstates = self._check_state(dstate, batch)
        except Exception:
            self._restore_saved(saved)  # a rejected dy or dstate does not use up the forward
            raise

        n_states = len(dstates)
        dstate0 = [np.zeros((self.num_layers * D, batch, H), self.dtype) for _ in range(n_states)]
        upstream = dy
        for layer in reversed(range(self.num_layers)):
            workspaces, mask = saved_layers[layer]
            d_input = None
            for direction in range(D):
                idx = layer * D + direction
                dy_dir = np.ascontiguousarray(upstream[:, :, direction * H:(direction + 1) * H])
                if direction == 1:
                    dy_dir = _gather_steps(dy_dir, reverse_index)
                d_final = [None if s is None else s[idx] for s in dstates]
                grads = self.kind.backward(workspaces[direction], dy_dir, *d_final)
                dx_dir, d_init, (dw_ih, dw_hh, db_ih, db_hh) = grads[0], grads[1:1 + n_states], grads[-4:]
                if direction == 1:
                    dx_dir = _gather_steps(dx_dir, reverse_index)
                d_input = dx_dir if d_input is None else d_input + dx_dir
                for store, g in zip(dstate0, d_init):
                    store[idx] = g
                s = self._suffix(layer, direction)
                self._grads[f"weight_ih{s}"] += dw_ih
                self._grads[f"weight_hh{s}"] += dw_hh
                if self.bias:
                    self._grads[f"bias_ih{s}"] += db_ih
                    self._grads[f"bias_hh{s}"] += db_hh
            upstream = d_input if mask is None else d_input * mask  # type: ignore[assignment]  # D >= 1 set d_input
        dx = upstream
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, self.kind.pack_states(dstate0)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("num_layers", "bias", "batch_first", "dropout",
                                                                 "bidirectional") if k in self._non_defaults())
        extra += self.kind.options_repr(self._cell_options)
        extra += f", init={self.init!r}" if self.init != "pytorch" else ""
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def _non_defaults(self) -> list[str]:
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False)
        return [k for k, v in defaults.items() if getattr(self, k) != v]


def _reverse_index(steps: int, batch: int, lengths: np.ndarray | None) -> np.ndarray:
    """[T, B] step index for the reverse direction: step t of sample b reads step lengths[b]-1-t of the original
    (each valid prefix reversed, as PyTorch's packed sequences); padded steps map to themselves. An involution, so
    the same gather also maps the reverse direction's outputs back."""
    t = np.arange(steps)[:, None]
    if lengths is None:
        return np.broadcast_to(steps - 1 - t, (steps, batch))
    n = lengths[None, :]
    return np.where(t < n, n - 1 - t, t)


def _gather_steps(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """a [T, B, F] reordered along time per sample: out[t, b] = a[index[t, b], b]."""
    return a[index, np.arange(a.shape[1])[None, :]]


class LSTM(_Recurrent):
    """Multi-layer LSTM, ``torch.nn.LSTM``'s arguments and parameter names (plus ``dtype``, ``seed``, ``init``).
    ``state`` is ``(h, c)``, each ``[L*D, B, H]``."""

    kind = _cell_table.LSTM


class GRU(_Recurrent):
    """Multi-layer GRU, ``torch.nn.GRU``'s arguments and names; ``reset_after=False`` gives the Cho et al. (2014)
    variant (Keras ``reset_after=False``)."""

    kind = _cell_table.GRU


class RNN(_Recurrent):
    """Multi-layer simple (Elman) RNN, ``torch.nn.RNN``'s arguments and names, ``nonlinearity`` "tanh" or "relu"."""

    kind = _cell_table.RNN
