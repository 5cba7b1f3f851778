"""Streaming inference: one step per call with the state and the prepared weights kept in C++ (``cell.stream()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._validation import MODULE_DTYPE, float_array, state_tuple

if TYPE_CHECKING:
    from .cells import _Cell

__all__ = ["Stream"]


class Stream:
    """One step per call with the state kept (see ``_Cell.stream``). ``step(x)`` returns h [B, H]; ``state`` is h,
    or (h, c) for an LSTM; ``reset(state=None)`` starts over (None = zeros). A stream is one sequence's state: use
    one stream per thread (separate streams run concurrently; ``step`` releases the GIL)."""

    def __init__(self, cell: _Cell, batch: int, state: Any = None) -> None:
        p = cell.parameters()
        self.kind = cell.kind
        self._stepper = cell.kind.stepper(batch, p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"),
                                          **cell._cell_options)
        self._shape, self._dtype = [("B", batch), ("H", cell.hidden_size)], cell.dtype
        self._cell_repr = repr(cell)  # the weights were copied: the stream keeps what it was made from, for repr
        self.step = self._stepper.step  # the hot call goes straight to C++, which checks x itself
        self.reset(state)

    def __repr__(self) -> str:
        return f"Stream({self._cell_repr}, batch={self._shape[0][1]})"

    def reset(self, state: Any = None) -> None:
        if state is None:
            self._stepper.reset(None, None)
            return
        states = state_tuple(self.kind, state, "state", "", " stream")
        h, c = [None if s is None else float_array(name, s, self._shape, self._dtype, MODULE_DTYPE)
                for name, s in zip(("h", "c"), states + (None,) * (2 - len(states)))]
        self._stepper.reset(h, c)  # the stepper's state slots: h, and c (LSTM only)

    @property
    def state(self) -> Any:
        # the stepper has a c only for the LSTM (reading it otherwise raises AttributeError)
        h = self._stepper.h
        return self.kind.pack_states((h, self._stepper.c) if self.kind.n_states == 2 else (h,))
