"""Composing models, and saving and loading them.

``rnncore.Module`` is the base class for user models: every attribute that is itself a module (a layer, a cell, a
``Linear``, another ``Module``, or a list/tuple of them) is found automatically, and ``parameters()`` /
``gradients()`` return one flat dict with nested names (``encoder.weight_ih_l0``, ``heads.1.bias``), so optimizers,
gradient clipping and ``save`` work on the whole model.

Saving and loading (``rnncore.save`` / ``rnncore.load``, the file format) live in ``rnncore.serialization``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ._validation import float_dtype, state_dict_arrays, state_dict_shapes

if TYPE_CHECKING:
    from typing import Protocol

    import numpy.typing as npt

    class Model(Protocol):
        """What optimizers and gradient clipping take as a model (and ``Module`` finds as a sub-module): anything
        with ``parameters()`` and ``gradients()``."""

        def parameters(self) -> Mapping[str, np.ndarray]: ...

        def gradients(self) -> Mapping[str, np.ndarray]: ...

_M = TypeVar("_M", bound="Module")  # train()/eval() return the module itself, of its own class
_P = TypeVar("_P", bound="Parameterized")


def _is_module(value: object) -> bool:
    return callable(getattr(value, "parameters", None)) and callable(getattr(value, "gradients", None))


class Module:
    """Base class for models made of rnncore modules. Subclasses create their sub-modules in ``__init__`` and write
    ``__call__`` / ``backward`` themselves; parameters, gradients, train/eval and state dicts come from here.
    To be saved with ``rnncore.save``, a subclass implements ``get_config()`` returning its constructor's keyword
    arguments (JSON-serialisable); ``rnncore.load(path, cls=TheClass)`` rebuilds it."""

    training = True

    def children(self) -> Iterator[tuple[str, Any]]:
        """(name, module) for every direct sub-module, in attribute order; list/tuple items are named ``name.i``."""
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if _is_module(value):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if _is_module(item):
                        yield f"{name}.{i}", item

    def __repr__(self) -> str:
        """torch's layout: the class, then one indented line per sub-module, ``(name): repr``."""
        lines = [f"({name}): {repr(child)}".replace("\n", "\n  ") for name, child in self.children()]
        if not lines:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def _collect(self, method: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for prefix, child in self.children():
            for key, value in getattr(child, method)().items():
                out[f"{prefix}.{key}"] = value
        return out

    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter of every sub-module, by nested name; the arrays are the sub-modules' own."""
        return self._collect("parameters")

    def gradients(self) -> dict[str, np.ndarray]:
        return self._collect("gradients")

    def zero_grad(self) -> None:
        for _, child in self.children():
            child.zero_grad()

    def train(self: _M, mode: bool = True) -> _M:
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self: _M) -> _M:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.copy() for name, p in self.parameters().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copies every parameter by nested name; missing, unexpected or misshaped entries raise before any copy."""
        params = self.parameters()
        state_dict_shapes(params, state)
        for name, p in params.items():
            p[...] = state[name]


class Parameterized:
    """The one home of parameter bookkeeping for modules that own their arrays (recurrent layers, Linear,
    Embedding): parameters and gradients under PyTorch's names, zero_grad, state dicts, train/eval, and the
    one-backward-per-training-forward rule."""

    def __init__(self, dtype: npt.DTypeLike, seed: int | None) -> None:
        self.dtype = float_dtype("dtype", dtype)
        self.training = True
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._saved: Any = None  # what backward needs from the last training-mode forward (each module's own)

    def _add_parameter(self, name: str, shape: tuple[int, ...]) -> None:
        charge_load_budget(shape)  # during rnncore.load: an untrusted config cannot allocate past the file's arrays
        self._params[name] = np.zeros(shape, dtype=self.dtype)
        self._grads[name] = np.zeros(shape, dtype=self.dtype)

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``rnncore.save`` stores to rebuild the module)."""
        raise NotImplementedError

    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> array (PyTorch's names). The arrays are the module's own: update them in place."""
        return dict(self._params)

    def gradients(self) -> dict[str, np.ndarray]:
        """Name -> accumulated gradient, same keys as ``parameters()``."""
        return dict(self._grads)

    def zero_grad(self) -> None:
        for g in self._grads.values():
            g[...] = 0.0

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's names."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copies every parameter from ``state`` (e.g. ``{k: v.numpy() for k, v in torch_module.state_dict().items()}``)
        into the module's arrays, converting to its dtype. Missing, unexpected or misshaped entries raise before
        anything is copied."""
        arrays = state_dict_arrays(self._params, state)
        for name, a in arrays.items():
            self._params[name][...] = a

    def train(self: _P, mode: bool = True) -> _P:
        self.training = bool(mode)
        return self

    def eval(self: _P) -> _P:
        return self.train(False)

    def _take_saved(self) -> Any:
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode forward first (call .train() "
                               "before the forward; each forward allows one backward)")
        saved, self._saved = self._saved, None
        return saved


# save/load live in rnncore.serialization; re-exported here (rnncore.module.save keeps working).
from .serialization import charge_load_budget, load as load, save as save  # noqa: E402
