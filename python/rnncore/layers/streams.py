"""Streaming inference: one step per call with the state and the prepared weights kept in C++ (``cell.stream()``,
``layer.stream()`` for a unidirectional layer: one C++ stepper per layer, chained)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .._validation import MODULE_DTYPE, float_array, state_tuple, stream_row

if TYPE_CHECKING:
    from .cells import _Cell
    from .recurrent import _Recurrent

__all__ = ["Stream"]

_Weights = tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


class Stream:
    """One step per call with the state kept (``cell.stream()``, ``layer.stream()``). ``step(x)`` takes x [B, I]
    (or [I] when B is 1) and returns the (top layer's) new h [B, H] (or [H]); ``state`` is a cell's h [B, H]
    (``(h, c)`` for an LSTM) or a layer's ``[L, B, H]``; ``reset(state=None)`` starts over (None = zeros). A stream
    is one sequence's state: use one stream per thread (separate streams run concurrently; ``step`` releases the GIL).
    Pickling and ``copy.deepcopy`` keep the weights, the options and the current state (the C++ steppers are rebuilt
    from them)."""

    def __init__(self, module: _Cell | _Recurrent, batch: int = 1, state: Any = None) -> None:
        self.kind = module.kind
        self._options = dict(module._cell_options)
        # The weights are snapshotted (the steppers copy them too): kept here so that a pickled stream can rebuild them.
        self._weights: list[_Weights] = [
            (w_ih.copy(), w_hh.copy(), None if b_ih is None else b_ih.copy(), None if b_hh is None else b_hh.copy())
            for w_ih, w_hh, b_ih, b_hh in module._stream_weights()]
        self._layers = getattr(module, "num_layers", None)  # None: a cell's stream, whose states are [B, H]
        self._batch, self._input_size, self._hidden = batch, module.input_size, module.hidden_size
        self._dtype = module.dtype
        self._source = repr(module)  # the weights were copied: the stream keeps what it was made from, for repr
        self._build()
        self.reset(state)

    def _build(self) -> None:
        self._steppers = [self.kind.stepper(self._batch, *w, **self._options) for w in self._weights]
        self._first = self._steppers[0].step  # the hot call: the bottom layer's C++ step, which checks x itself
        self._upper = [stepper.step for stepper in self._steppers[1:]]

    def __repr__(self) -> str:
        return f"Stream({self._source}, batch={self._batch})"

    def step(self, x: np.ndarray) -> np.ndarray:
        """x [B, I] (or [I] for a stream of batch 1) -> the new h [B, H] (or [H]) of the top layer. The C++
        steppers check x [B, I] themselves (a C-contiguous array of the stream's dtype)."""
        if type(x) is np.ndarray and x.ndim == 1:
            return self._step_row(x)
        h = self._first(x)
        for step in self._upper:
            h = step(h)
        return h

    def _step_row(self, x: np.ndarray) -> np.ndarray:
        """x [I] for a stream of batch 1: as x [1, I], and h [H] back."""
        try:
            h = self._first(x.reshape(1, -1))
        except ValueError:  # checked in Python: a one-row message, or a C-contiguous copy of a strided x
            h = self._first(stream_row(x, self._batch, self._input_size, self._dtype))
        for step in self._upper:
            h = step(h)
        return h[0]

    def reset(self, state: Any = None) -> None:
        """Sets the state (the form ``state`` returns), None meaning zeros."""
        if state is None:
            for stepper in self._steppers:
                stepper.reset(None, None)
            return
        states = state_tuple(self.kind, state, "state", "", " stream")
        shape = [("B", self._batch), ("H", self._hidden)]
        if self._layers is not None:
            shape.insert(0, ("L", self._layers))
        arrays = [None if s is None else float_array(name, s, shape, self._dtype, MODULE_DTYPE)
                  for name, s in zip(self.kind.states, states)]
        for layer, stepper in enumerate(self._steppers):
            # the stepper's state slots: h, and c (LSTM only)
            stepper.reset(*[a if a is None or self._layers is None else a[layer] for a in arrays])

    @property
    def state(self) -> Any:
        """Copies of the state: h [B, H] (a layer's: [L, B, H]), or (h, c) for an LSTM."""
        # the stepper has a c only for the LSTM (reading it otherwise raises AttributeError)
        per_layer = [(s.h, s.c) if self.kind.n_states == 2 else (s.h,) for s in self._steppers]
        if self._layers is None:
            return self.kind.pack_states(per_layer[0])
        return self.kind.pack_states([np.stack(parts) for parts in zip(*per_layer)])

    def __getstate__(self) -> dict[str, Any]:
        """Pickle and deepcopy: everything but the C++ steppers, plus the current state to restore them to."""
        state = {k: v for k, v in vars(self).items() if k not in ("_steppers", "_first", "_upper")}
        state["_state"] = self.state
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        current = state.pop("_state")
        vars(self).update(state)
        self._build()
        self.reset(current)
