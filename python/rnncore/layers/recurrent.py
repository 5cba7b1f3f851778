"""Multi-layer, optionally bidirectional recurrent layers with PyTorch's constructor, names and layouts.

``rnncore.LSTM``, ``rnncore.GRU`` and ``rnncore.RNN`` stack the fused kernels of ``rnncore.ops`` the way
``torch.nn.LSTM/GRU/RNN`` stack theirs: layer ``k`` reads the (dropout-masked, in training) outputs of layer ``k-1``;
with ``bidirectional=True`` each layer runs a second direction over each sequence's valid prefix reversed, and its
output is ``[forward | reverse]`` along the features. Parameters are NumPy arrays named as in a torch ``state_dict``
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), updated in place by optimizers; gradients accumulate across
``backward`` calls until ``zero_grad()``.

Shapes: ``x [T, B, I]`` (``[B, T, I]`` with ``batch_first``), ``y [T, B, D*H]``, states ``[L*D, B, H]`` indexed
``layer*D + direction``, ``lengths [B]`` (each in 0..T; ``padding="right"``: the valid steps come first, or
``"left"``: they come last, as Keras' ``pad_sequences`` pads; padded steps give ``y = 0`` and no gradient).
One-hot inputs may be given by their indices: an integer ``x [T, B]`` (``[B, T]`` with ``batch_first``), each in
0..I-1; the first layer then gathers W_ih's columns instead of multiplying one-hot rows, and ``backward`` returns
``dx`` None (as with ``need_dx=False``).

Every training-mode call records what its backward needs on the module's tape (``save_for_backward``): any number of
calls, then one ``backward`` per call, the last call first. ``layer.stream()`` steps a unidirectional layer one time
step per call (``rnncore.layers.streams``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .. import _cell_table
from .._cell_table import CellKind
from .._validation import (
    MODULE_DTYPE,
    choice,
    dropout_probability,
    flag,
    float_array,
    index_array,
    layer_gradient,
    lengths_array,
    one_hot_indices,
    positive_int,
    state_tuple,
    streamable,
)
from ..module import Parameterized
from ..ops.rnn import backward_pair, forward_pair
from .streams import Stream

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["LSTM", "GRU", "RNN"]

_INITS = ("pytorch", "keras")
_PADDINGS = ("right", "left")
Weights = tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]  # w_ih, w_hh, b_ih, b_hh


def init_weights(params: dict[str, np.ndarray], kind: CellKind, hidden_size: int, init: str,
                 rng: np.random.Generator) -> None:
    """Fills ``params`` (a layer's or a cell's, in their order) with PyTorch's init (every entry U(-1/√H, 1/√H)) or
    Keras's (Glorot-uniform input weights, orthogonal recurrent weights per gate, zero biases, and for the LSTM a
    forget-gate bias of 1). The one home of the init: a cell built with a layer's seed gets the layer's l0 weights."""
    H = hidden_size
    gates = kind.gates
    for name, p in params.items():
        if init == "pytorch":
            bound = 1.0 / np.sqrt(H)
            p[...] = rng.uniform(-bound, bound, p.shape)
        elif name.startswith("weight_ih"):
            fan_out, fan_in = p.shape
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            p[...] = rng.uniform(-bound, bound, p.shape)
        elif name.startswith("weight_hh"):
            for g in range(len(gates)):  # one orthogonal [H, H] block per gate, like Keras's recurrent kernel
                q, r = np.linalg.qr(rng.standard_normal((H, H)))
                p[g * H:(g + 1) * H] = q * np.sign(np.diag(r))
        else:
            p[...] = 0.0
            if name.startswith("bias_ih"):
                for gate in kind.keras_unit_bias:  # the LSTM's forget gate
                    g = gates.index(gate)
                    p[g * H:(g + 1) * H] = 1.0


class _Recurrent(Parameterized):
    """What LSTM, GRU and RNN share; a subclass sets ``kind``, its row of the cell table (rnncore._cell_table), and
    writes its constructor with that kind's options (e.g. ``reset_after``) as explicit arguments."""

    kind: CellKind
    # A class-level default: an LSTM pickled before issue 11 kept no options in its state (it had none).
    _cell_options: dict[str, Any] = {}

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                 dropout: float, bidirectional: bool, dtype: npt.DTypeLike, seed: int | np.random.Generator | None,
                 init: str, options: dict[str, Any]) -> None:
        self._cell_options = self.kind.check_options(options, f"{type(self).__name__}.__init__")
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        self.dropout = dropout_probability(dropout)
        if self.dropout > 0 and self.num_layers == 1:  # as torch.nn.RNNBase warns (stacklevel: the user's line)
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={self.dropout} and num_layers=1",
                          UserWarning, stacklevel=3)
        self.bias = flag("bias", bias)
        self.batch_first = flag("batch_first", batch_first)
        self.bidirectional = flag("bidirectional", bidirectional)
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
        """Draws the weights again from the layer's generator, with its ``init`` ("pytorch" or "keras";
        ``init_weights`` says what each means)."""
        init_weights(self._params, self.kind, self.hidden_size, self.init, self._rng)

    # -- forward ---------------------------------------------------------------------------------------------------
    def _weights(self, layer: int, direction: int) -> Weights:
        s = self._suffix(layer, direction)
        p = self._params
        return p[f"weight_ih{s}"], p[f"weight_hh{s}"], p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}")

    def _check_state(self, state: Any, batch: int, name: str = "state", prefix: str = "", suffix: str = "0"
                     ) -> tuple[np.ndarray | None, ...]:
        """A state argument as a tuple of [L*D, B, H] arrays (h, or h and c), None meaning zeros; its parts are
        called ``<prefix><state><suffix>`` in messages (h0, c0 for the initial state; dh_n, dc_n for the final
        state's gradient)."""
        if state is None:
            return (None,) * len(self.kind.states)
        states = state_tuple(self.kind, state, name, suffix, "", prefix)
        shape = [("L*D", self.num_layers * self.num_directions), ("B", batch), ("H", self.hidden_size)]
        return tuple(None if s is None else float_array(f"{prefix}{part}{suffix}", s, shape, self.dtype, MODULE_DTYPE)
                     for part, s in zip(self.kind.states, states))

    def __call__(self, x: np.ndarray, state: Any = None, lengths: npt.ArrayLike | None = None,
                 padding: str = "right") -> tuple[np.ndarray, Any]:
        """Runs every layer and direction. ``lengths [B]`` (each in 0..T) gives each sample's valid steps: the
        first ``lengths[b]`` with ``padding="right"`` (PyTorch's packed sequences), the last ``lengths[b]`` with
        ``padding="left"`` (Keras' ``pad_sequences`` default). Returns ``(y, state)``: y ``[T, B, D*H]``
        (``[B, T, D*H]`` with batch_first, 0 at padded steps) and the final state(s) ``[L*D, B, H]`` (``(h_n, c_n)``
        for an LSTM), each sample's after its last valid step (its initial state when it has none). An integer x
        ``[T, B]`` (``[B, T]``) holds one-hot inputs as their indices in 0..I-1."""
        if one_hot_indices(x):
            x = index_array("x", x, self.input_size, letter="I")
            if self.batch_first:
                x = np.ascontiguousarray(x.T)
        else:
            x = float_array("x", x, [("B" if self.batch_first else "T", None),
                                     ("T" if self.batch_first else "B", None), ("I", self.input_size)], self.dtype,
                            MODULE_DTYPE)
            if self.batch_first:
                x = np.ascontiguousarray(x.transpose(1, 0, 2))
        steps, batch = x.shape[:2]
        states0 = self._check_state(state, batch)
        lengths = lengths_array(lengths, batch, steps, shortest=0)  # a layer takes samples with no step
        return self._call_checked(x, states0, lengths, choice("padding", padding, _PADDINGS))

    def _call_checked(self, x: np.ndarray, states0: tuple[np.ndarray | None, ...], lengths: np.ndarray | None,
                      padding: str) -> tuple[np.ndarray, Any]:
        """``__call__`` on checked arguments: ``x [T, B, I]`` time-major (C-contiguous; or int64 one-hot indices
        [T, B]), ``states0`` as ``_check_state`` returns them, ``lengths`` int64 [B] in 0..T or None, ``padding``
        "right" or "left". y comes back as ``__call__`` returns it (batch-major with batch_first)."""
        steps, batch = x.shape[:2]
        plan = _Padding(lengths, padding, steps, batch)
        # the top layer's directions go straight into a batch-first y when no padding plan has to map them back
        batch_major = self.batch_first and plan.trivial
        y, finals, record = self._forward_layers(plan.to_kernels(x), plan.kept_states(states0), plan.lengths,
                                                 batch_major)
        self.save_for_backward((record, plan))  # (a no-op in eval mode)
        if not batch_major:
            y = plan.from_kernels(y)
            if self.batch_first:
                y = np.ascontiguousarray(y.transpose(1, 0, 2))
        return y, self.kind.pack_states(plan.all_states(finals, states0))

    def _forward_layers(self, x: np.ndarray, states0: tuple[np.ndarray | None, ...], lengths: np.ndarray | None,
                        batch_major: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
        """The stack over right-padded samples with lengths in 1..T (what the kernels take): x [T, B, I] ->
        (y [T, B, D*H], or [B, T, D*H] with ``batch_major``, the final states [L*D, B, H], what backward needs)."""
        steps, batch = x.shape[:2]
        D, H = self.num_directions, self.hidden_size
        reverse_index = _reverse_index(steps, batch, lengths) if self.bidirectional else None
        finals: list[list[np.ndarray]] = [[] for _ in states0]
        saved_layers = []
        layer_input = x
        for layer in range(self.num_layers):
            mask = None
            if layer > 0 and self.training and self.dropout > 0.0:
                mask = (self._rng.random(layer_input.shape) >= self.dropout).astype(self.dtype) / (1.0 - self.dropout)
                layer_input = layer_input * mask
            # the layer's output; each direction's kernel writes its columns in place (out=, a time-major view)
            top_batch_major = batch_major and layer == self.num_layers - 1
            y = np.empty((batch, steps, D * H) if top_batch_major else (steps, batch, D * H), self.dtype)
            y_steps = y.transpose(1, 0, 2) if top_batch_major else y
            workspaces = []
            out: np.ndarray | None
            calls = []  # per direction: its columns of y, out, and the kernel's arguments before lengths
            for direction in range(D):
                idx = layer * D + direction
                init = [None if s is None else s[idx] for s in states0]
                columns = y_steps[:, :, direction * H:(direction + 1) * H]
                inp, out = layer_input, columns
                if direction == 1:  # over the reversed steps: written back reversed when that is a flip
                    inp = _gather_steps(layer_input, reverse_index)
                    out = columns[::-1] if reverse_index is None else None
                calls.append((columns, out, (inp, *init, *self._weights(layer, direction))))
            # both directions in one call when exact (at once on two threads where measured faster), else each checked
            results = None
            if D == 2:
                tail = (lengths, self.training, *self._cell_options.values())  # the kernels' positional order
                results = forward_pair(self.kind.name, (*calls[0][2], *tail, calls[0][1]),
                                       (*calls[1][2], *tail, calls[1][1]))
            if results is None:
                results = tuple(self.kind.forward(*args, lengths=lengths, training=self.training, out=out,
                                                  **self._cell_options) for _, out, args in calls)
            for (columns, out, _), (*result, ws) in zip(calls, results):
                y_dir, *final = result
                if out is None:  # unequal lengths: each sample's valid prefix reversed back (a gather)
                    columns[...] = _gather_steps(y_dir, reverse_index)
                for store, f in zip(finals, final):
                    store.append(f)
                workspaces.append(ws)
            saved_layers.append((workspaces, mask))
            layer_input = y
        # (np.array of equal-shape arrays stacks them as np.stack does, at a third of its Python cost)
        return layer_input, tuple(np.array(f) for f in finals), (saved_layers, reverse_index)

    # -- backward --------------------------------------------------------------------------------------------------
    def backward(self, dy: np.ndarray | None, dstate: Any = None, need_dx: bool = True
                 ) -> tuple[np.ndarray | None, Any]:
        """Backpropagation through the last recorded training-mode forward (forwards are taken back last first,
        one backward each): accumulates every parameter's gradient and returns ``(dx, dstate0)`` — the gradients
        w.r.t. that call's x and initial state(s). ``dy`` has y's shape, or None for zeros (only the final state's
        gradient flows back); ``dstate`` (optional) the final state's, ``dh_n`` (``(dh_n, dc_n)``), each part None
        for zeros. ``need_dx=False`` (x is data) skips the first layer's input gradient: dx is None, as it is for
        one-hot indices."""
        recorded = self.saved_for_backward()
        record, plan = recorded
        D, H = self.num_directions, self.hidden_size
        steps, batch = plan.steps, plan.batch
        try:
            if dy is None:
                dy = np.zeros((steps, batch, D * H), self.dtype)
            else:
                y_shape = [("B", batch), ("T", steps)] if self.batch_first else [("T", steps), ("B", batch)]
                dy = layer_gradient(type(self).__name__, "dy", dy, y_shape + [("D*H", D * H)], self.dtype)
                if self.batch_first:  # a view: the kernels read each direction's columns of it in place, below
                    dy = dy.transpose(1, 0, 2)
            dstates = self._check_state(dstate, batch, "dstate", "d", "_n")
        except Exception:
            self._restore_saved(recorded)  # a rejected dy or dstate does not use up the forward
            raise
        return self._backward_checked(recorded, dy, dstates, bool(need_dx))

    def _backward_checked(self, recorded: Any, dy: np.ndarray, dstates: tuple[np.ndarray | None, ...],
                          need_dx: bool) -> tuple[np.ndarray | None, Any]:
        """``backward`` on the popped tape entry and checked gradients: ``dy [T, B, D*H]`` time-major (any strides:
        a batch-major array's transposed view), ``dstates`` as ``_check_state`` returns them."""
        record, plan = recorded
        dx, dstate0 = self._backward_layers(record, plan.to_kernels(dy), plan.kept_states(dstates), need_dx)
        if dx is not None:
            dx = plan.from_kernels(dx)
            if self.batch_first:
                dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        # a sample with no valid step passes its final state's gradient straight to its initial state
        return dx, self.kind.pack_states(plan.all_states(dstate0, dstates))

    def _backward_layers(self, record: Any, dy: np.ndarray, dstates: tuple[np.ndarray | None, ...], need_dx: bool
                         ) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``_forward_layers``' backward: dy [T, B, D*H] -> (dx [T, B, I], or None when not needed or x was one-hot
        indices; the initial states' gradients)."""
        saved_layers, reverse_index = record
        D, H = self.num_directions, self.hidden_size
        steps, batch, _ = dy.shape
        n_states = len(dstates)
        dstate0 = [np.zeros((self.num_layers * D, batch, H), self.dtype) for _ in range(n_states)]
        upstream: np.ndarray | None = dy
        for layer in reversed(range(self.num_layers)):
            workspaces, mask = saved_layers[layer]
            d_input: np.ndarray | None = None
            want_dx = need_dx or layer > 0
            calls = []  # per direction: the kernel's positional arguments
            for direction in range(D):
                idx = layer * D + direction
                # the direction's columns, read in place by the kernel (reversed through a view when that is a flip)
                dy_dir = upstream[:, :, direction * H:(direction + 1) * H]  # type: ignore[index]
                if direction == 1:
                    dy_dir = dy_dir[::-1] if reverse_index is None else _gather_steps(dy_dir, reverse_index)
                d_final = [None if s is None else s[idx] for s in dstates]
                calls.append((workspaces[direction], dy_dir, *d_final, want_dx))
            # both directions in one call when exact (at once on two threads where measured faster), else each checked
            results = backward_pair(self.kind.name, calls[0], calls[1]) if D == 2 else None
            if results is None:
                results = tuple(self.kind.backward(*args[:-1], need_dx=want_dx) for args in calls)
            for direction, grads in enumerate(results):
                idx = layer * D + direction
                dx_dir, d_init, (dw_ih, dw_hh, db_ih, db_hh) = grads[0], grads[1:1 + n_states], grads[-4:]
                if dx_dir is not None:
                    if direction == 1:  # (a flip: a view, the sum below makes the array)
                        dx_dir = dx_dir[::-1] if reverse_index is None else _gather_steps(dx_dir, reverse_index)
                    d_input = dx_dir if d_input is None else d_input + dx_dir
                for store, g in zip(dstate0, d_init):
                    store[idx] = g
                s = self._suffix(layer, direction)
                self._grads[f"weight_ih{s}"] += dw_ih
                self._grads[f"weight_hh{s}"] += dw_hh
                if self.bias:
                    self._grads[f"bias_ih{s}"] += db_ih
                    self._grads[f"bias_hh{s}"] += db_hh
            upstream = d_input if mask is None or d_input is None else d_input * mask
        return upstream, tuple(dstate0)

    # -- streaming ---------------------------------------------------------------------------------------------------
    def stream(self, batch: int = 1, state: Any = None) -> Stream:
        """A streaming stepper for inference over a unidirectional layer: ``stream.step(x)`` advances every layer
        one step (x [batch, I], or [I] for batch 1) and returns the top layer's new h ([batch, H], or [H]); the
        state is the layer's ``[L, batch, H]`` (``(h, c)`` for an LSTM), None meaning zeros. It snapshots the
        weights: later parameter updates need a new stream. A bidirectional layer cannot stream (ValueError)."""
        streamable(type(self).__name__, self.bidirectional)
        return Stream(self, positive_int("batch", batch), state)

    def _stream_weights(self) -> list[Weights]:
        """One (w_ih, w_hh, b_ih, b_hh) per layer, bottom first (direction 0: a stream runs forward in time)."""
        return [self._weights(layer, 0) for layer in range(self.num_layers)]

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("num_layers", "bias", "batch_first", "dropout",
                                                                 "bidirectional") if k in self._non_defaults())
        extra += self.kind.options_repr(self._cell_options)
        extra += f", init={self.init!r}" if self.init != "pytorch" else ""
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def _non_defaults(self) -> list[str]:
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False)
        return [k for k, v in defaults.items() if getattr(self, k) != v]


class _Padding:
    """How one call's samples reach the kernels, which take right padding and lengths in 1..T: left-padded samples
    are rotated in time so that their valid steps come first (``to_kernels``), samples with no valid step are left
    out of the kernels' batch, and the results are mapped back (``from_kernels``, ``all_states``). Recorded with
    the forward, so its backward maps the gradients the same way (dy as x, dx as y, the states' gradients as the
    states)."""

    def __init__(self, lengths: np.ndarray | None, padding: str, steps: int, batch: int) -> None:
        self.steps, self.batch, self.padding = steps, batch, padding
        self.lengths = lengths  # the kernels' lengths (of the kept samples)
        self.to_right: np.ndarray | None = None  # [T, B] step index: right-padded step t reads left-padded step
        self.to_left: np.ndarray | None = None   # ... and back (the inverse rotation)
        self.keep: np.ndarray | None = None      # the samples with at least one valid step, when some have none
        if lengths is None:
            return
        if padding == "left" and bool((lengths < steps).any()):
            t = np.arange(steps)[:, None]
            self.to_right = (t + steps - lengths[None, :]) % steps
            self.to_left = (t + lengths[None, :]) % steps
        if bool((lengths == 0).any()):
            self.keep = np.flatnonzero(lengths)
            self.lengths = lengths[self.keep]

    @property
    def trivial(self) -> bool:
        """Whether the kernels see the call's samples and steps as they are (no rotation, none left out)."""
        return self.to_right is None and self.keep is None

    def to_kernels(self, a: np.ndarray) -> np.ndarray:
        """x (or dy) [T, B, F] as the kernels take it: right-padded, the kept samples only."""
        if self.to_right is not None:
            a = _gather_steps(a, self.to_right)
        return a if self.keep is None else a[:, self.keep]

    def from_kernels(self, a: np.ndarray) -> np.ndarray:
        """The kernels' y (or dx) [T, B_kept, F] mapped back to the call's samples and padding (0 where padded)."""
        if self.keep is not None:
            full = np.zeros((a.shape[0], self.batch, a.shape[2]), a.dtype)
            full[:, self.keep] = a
            a = full
        return a if self.to_left is None else _gather_steps(a, self.to_left)

    def kept_states(self, states: tuple[np.ndarray | None, ...]) -> tuple[np.ndarray | None, ...]:
        """States (or their gradients) [L*D, B, H] of the kept samples."""
        if self.keep is None:
            return states
        return tuple(None if s is None else s[:, self.keep] for s in states)

    def all_states(self, kept: tuple[np.ndarray, ...], given: tuple[np.ndarray | None, ...]) -> tuple[np.ndarray, ...]:
        """The kernels' final states (or initial states' gradients) [L*D, B_kept, H] for every sample: one with no
        valid step takes no step, so its entry is the ``given`` one (the initial state, or the final state's
        gradient; None: zeros)."""
        if self.keep is None:
            return kept
        out = []
        for k, g in zip(kept, given):
            full = np.zeros((k.shape[0], self.batch, k.shape[2]), k.dtype) if g is None else g.copy()
            full[:, self.keep] = k
            out.append(full)
        return tuple(out)


def _reverse_index(steps: int, batch: int, lengths: np.ndarray | None) -> np.ndarray | None:
    """[T, B] step index for the reverse direction: step t of sample b reads step lengths[b]-1-t of the original
    (each valid prefix reversed, as PyTorch's packed sequences); padded steps map to themselves. An involution, so
    the same gather also maps the reverse direction's outputs back. None when every sample has all T steps: the
    reversal is then a flip of the time axis (``_gather_steps``), a copy of whole [B, F] slabs."""
    if lengths is None or bool((lengths == steps).all()):
        return None
    t = np.arange(steps)[:, None]
    n = lengths[None, :]
    return np.where(t < n, n - 1 - t, t)


def _gather_steps(a: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    """a [T, B, ...] reordered along time per sample: out[t, b] = a[index[t, b], b]; index None: the time axis
    reversed (out[t] = a[T-1-t]). A C-contiguous copy."""
    if index is None:
        return np.ascontiguousarray(a[::-1])
    return a[index, np.arange(a.shape[1])[None, :]]


class LSTM(_Recurrent):
    """Multi-layer LSTM, ``torch.nn.LSTM``'s arguments and parameter names (plus ``dtype``, ``seed``, ``init``).
    ``state`` is ``(h, c)``, each ``[L*D, B, H]``."""

    kind = _cell_table.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: npt.DTypeLike = np.float32, seed: int | np.random.Generator | None = None,
                 init: str = "pytorch") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                         init, {})


class GRU(_Recurrent):
    """Multi-layer GRU, ``torch.nn.GRU``'s arguments and names; ``reset_after=False`` gives the Cho et al. (2014)
    variant (Keras ``reset_after=False``)."""

    kind = _cell_table.GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 reset_after: bool = True, dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None, init: str = "pytorch") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                         init, {"reset_after": reset_after})


class RNN(_Recurrent):
    """Multi-layer simple (Elman) RNN, ``torch.nn.RNN``'s arguments (in its order: ``nonlinearity`` "tanh" or "relu"
    fourth) and names."""

    kind = _cell_table.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: npt.DTypeLike = np.float32, seed: int | np.random.Generator | None = None,
                 init: str = "pytorch") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                         init, {"nonlinearity": nonlinearity})
