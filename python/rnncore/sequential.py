"""``rnncore.Sequential``: a chain of modules with an automatic ``backward``, and ``rnncore.LastHidden``, the adapter
for many-to-one models (a recurrent layer's last hidden state instead of its outputs).

The plumbing between two modules of a chain: a module returning a tuple (a recurrent layer's ``(y, state)``) passes
its first element on, unless the next module takes the whole tuple (a class attribute ``takes_tuple_input = True``,
as ``LastHidden``). In backward, a module whose input was the whole tuple returns one gradient per part
(``LastHidden`` gives the layer ``(None, dstate)``, which the layer's ``backward`` takes as its arguments), and a
module returning ``(dx, dstate0)`` for a single input passes ``dx`` back (the initial state of a chain is zeros).
A module whose backward returns None (``Embedding``: indices have no gradient) ends the chain there.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import MODULE_DTYPE, float_array, sequential_call_arguments, sequential_config
from .module import Module

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["Sequential", "LastHidden"]

_TAKES: dict[tuple[type, str], bool] = {}  # per (module class, argument): does its __call__ take it?
_CHAIN_ARGUMENTS = ("lengths", "padding")  # what a chain passes on to the modules that take it


def _takes(module: Any, argument: str) -> bool:
    """Does ``module``'s call take ``argument`` (``lengths``, ``padding``)? A nested chain: when one of its modules
    does."""
    if isinstance(module, Sequential):
        return any(_takes(child, argument) for child in module)
    key = (type(module), argument)
    if key not in _TAKES:
        try:
            _TAKES[key] = argument in inspect.signature(type(module).__call__).parameters
        except (TypeError, ValueError):  # no inspectable signature
            _TAKES[key] = False
    return _TAKES[key]


class Sequential(Module):
    """``Sequential(*modules)``: ``model(x, lengths=None, padding="right")`` runs the modules in order, each on the
    previous one's output (torch.nn.Sequential), and ``model.backward(dy)`` runs their backwards in reverse order.

    Children are named ``"0"``, ``"1"``, ... (``model[0]``, ``len(model)``, iteration, ``model[1:]`` as a new
    ``Sequential`` sharing the modules). ``model(x, lengths, padding="left")``: ``lengths`` and ``padding`` go to
    every module whose ``__call__`` takes them (the recurrent layers; nested chains pass them on). A recurrent layer
    passes its outputs ``y`` on and drops its final state; put ``LastHidden()`` right after it to pass the last
    hidden state on instead (many-to-one). Any number of training-mode calls may precede
    the backwards, which take them in reverse order (each module keeps a tape, and so does the chain).

    Saved with ``rnncore.save``: ``get_config()`` stores each child as ``{"class": "module:qualname", "config":
    child.get_config()}``, and ``from_config`` rebuilds them.
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def append(self, module: Any) -> Sequential:
        """Adds ``module`` at the end (named ``str(len(self))``); returns the chain."""
        self.add_module(str(len(self)), module)
        return self

    def _modules_in_order(self) -> list[Any]:
        return [module for _, module in self.named_children()]

    def __len__(self) -> int:
        return len(self._modules_in_order())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._modules_in_order())

    def __getitem__(self, index: int | slice) -> Any:
        modules = self._modules_in_order()
        if isinstance(index, slice):
            return Sequential(*modules[index])
        try:
            return modules[index]
        except IndexError:
            raise IndexError(f"Sequential index {index} out of range for {len(modules)} modules") from None

    def __call__(self, x: Any, lengths: npt.ArrayLike | None = None, padding: str = "right") -> Any:
        """Runs every module in order on ``x`` (with ``lengths`` and ``padding`` for those that take them: the
        recurrent layers' ``padding="left"`` reads Keras' front-padded data); returns the last output."""
        named = list(self.named_children())
        modules = [module for _, module in named]
        given = {} if lengths is None else {"lengths": lengths}
        if not (isinstance(padding, str) and padding == "right"):
            given["padding"] = padding
        takes = [(name, module, {a for a in _CHAIN_ARGUMENTS if _takes(module, a)}) for name, module in named]
        sequential_call_arguments(given, takes)
        took_tuple = []  # per module: was its input the previous module's whole tuple output? (for backward)
        marks = _tape_marks(modules)  # (modules in training mode may sit in a chain in eval mode)
        out = x
        for i, module in enumerate(modules):
            took_tuple.append(isinstance(out, tuple))
            try:
                out = module(out, **{a: v for a, v in given.items() if a in takes[i][2]})
            except BaseException:
                for tape, length in marks:  # a failed call leaves no half-recorded call on any tape
                    del tape[length:]
                raise
            if (isinstance(out, tuple) and i + 1 < len(modules)
                    and not getattr(modules[i + 1], "takes_tuple_input", False)):
                out = out[0]  # y goes on; the state is dropped
        self.save_for_backward(took_tuple)
        return out

    def backward(self, dy: Any, *more: Any) -> Any:
        """Backward through the last recorded call: ``dy`` is the gradient of its output (``more``: of the further
        parts of a tuple output, e.g. a final recurrent layer's ``dstate``); each module's backward runs in reverse
        order. Returns the gradient w.r.t. the chain's input, or None when a module's backward gives none (an
        ``Embedding`` first)."""
        took_tuple = self.saved_for_backward()
        grad: Any = (dy, *more) if more else dy
        modules = self._modules_in_order()
        for k, (module, input_was_tuple) in enumerate(zip(reversed(modules), reversed(took_tuple))):
            try:
                grad = module.backward(*grad) if isinstance(grad, tuple) else module.backward(grad)
            except Exception:
                if k == 0:  # the last module rejected dy and kept its call: the chain keeps its own as well
                    self._restore_saved(took_tuple)
                raise
            if grad is None:
                break
            if isinstance(grad, tuple) and not input_was_tuple:
                grad = grad[0]  # (dx, dstate0): the chain's initial state is zeros, not an input
        return grad

    def get_config(self) -> dict[str, Any]:
        """``{"modules": [{"class": "module:qualname", "config": child.get_config()}, ...]}``."""
        specs = []
        for name, module in self.named_children():
            get_config = getattr(module, "get_config", None)
            if not callable(get_config):
                raise TypeError(f"Sequential.get_config: module {name} ({type(module).__name__}) has no "
                                "get_config(), so the chain cannot be saved")
            cls = type(module)
            specs.append({"class": f"{cls.__module__}:{cls.__qualname__}", "config": get_config()})
        return {"modules": specs}

    @classmethod
    def from_config(cls, config: dict[str, Any], build: Callable[[dict[str, Any]], Any]) -> Sequential:
        """Rebuilds a chain from ``get_config()``'s output; ``build(spec)`` rebuilds one child from its spec."""
        return cls(*(build(spec) for spec in sequential_config(config)))

    def extra_repr(self) -> str:
        return ""  # the children say it all (torch's layout)


def _tape_marks(modules: list[Any]) -> list[tuple[list[Any], int]]:
    """(tape, its length) for every module of the chain and below it (a custom module's sub-modules, a nested
    chain's modules), so that a call failing part-way can drop what it recorded on each of them."""
    marks, seen = [], set()
    for module in modules:
        for m in module.modules() if isinstance(module, Module) else ():
            if id(m) not in seen and isinstance(m, Module):
                seen.add(id(m))
                marks.append((m._tape, len(m._tape)))
    return marks


class LastHidden(Module):
    """The adapter for a many-to-one chain: placed right after a recurrent layer, it takes the layer's whole output
    ``(y, state)`` and returns the last layer's final hidden state, both directions concatenated: ``h [B, D*H]``
    (torch: ``cat([h_n[-2], h_n[-1]], 1)`` for a bidirectional layer, ``h_n[-1]`` otherwise). Its backward returns
    ``(None, dstate)``: no gradient through ``y``, and ``dh_n`` (zeros but the last layer's rows; None for ``c_n``)
    for the layer's ``backward(None, dstate)``. It works outside a ``Sequential`` too:
    ``h = last(lstm(x)); lstm.backward(*last.backward(dh))``."""

    takes_tuple_input = True  # Sequential hands it the previous module's whole tuple output

    def __call__(self, outputs: tuple[np.ndarray, Any]) -> np.ndarray:
        """``outputs``: a recurrent layer's ``(y, state)``, y ``[..., D*H]`` and state h ``[L*D, B, H]`` or
        ``(h, c)``. Returns ``[B, D*H]``."""
        y, state, h_n = _layer_output(outputs)
        hidden = h_n.shape[2]
        if hidden == 0 or y.shape[-1] % hidden:
            raise ValueError(f"LastHidden: y's last axis ({y.shape[-1]}) must be D*H for the state's H = {hidden}")
        directions = y.shape[-1] // hidden
        out = np.concatenate(list(h_n[-directions:]), axis=1)
        self.save_for_backward((h_n.shape, h_n.dtype, directions, isinstance(state, tuple), len(state)
                                if isinstance(state, tuple) else 1))
        return out

    def backward(self, dh: np.ndarray) -> tuple[None, Any]:
        """``dh [B, D*H]`` -> ``(None, dstate)`` for the layer's ``backward(dy=None, dstate)``."""
        saved = self.saved_for_backward()
        shape, dtype, directions, is_tuple, n_states = saved
        layers_directions, batch, hidden = shape
        try:
            dh = float_array("dh", dh, [("B", batch), ("D*H", directions * hidden)], dtype, MODULE_DTYPE)
        except Exception:
            self._restore_saved(saved)  # a rejected dh does not use up the call
            raise
        dh_n = np.zeros(shape, dtype)
        dh_n[layers_directions - directions:] = dh.reshape(batch, directions, hidden).transpose(1, 0, 2)
        dstate: Any = (dh_n,) + (None,) * (n_states - 1) if is_tuple else dh_n
        return None, dstate

    def get_config(self) -> dict[str, Any]:
        return {}


def _layer_output(outputs: Any) -> tuple[np.ndarray, Any, np.ndarray]:
    """LastHidden's input: ``(y, state)`` with state h or a tuple whose first part is h ``[L*D, B, H]``."""
    if not (isinstance(outputs, tuple) and len(outputs) == 2):
        raise TypeError("LastHidden takes a recurrent layer's whole output (y, state); got "
                        f"{type(outputs).__name__} (in a Sequential, put LastHidden right after the layer)")
    y, state = outputs
    h_n = state[0] if isinstance(state, tuple) else state
    if not isinstance(y, np.ndarray) or not isinstance(h_n, np.ndarray) or h_n.ndim != 3:
        raise TypeError("LastHidden takes a recurrent layer's (y, state): y an array, state h [L*D, B, H] or "
                        "(h, c)")
    return y, state, h_n
