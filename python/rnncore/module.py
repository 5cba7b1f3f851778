"""Composing models, and saving and loading them.

``rnncore.Module`` is the base class for user models: every attribute that is itself a module (a layer, a cell, a
``Linear``, another ``Module``, or a list/tuple of them) is found automatically, and ``parameters()`` /
``gradients()`` return one flat dict with nested names (``encoder.weight_ih_l0``, ``heads.1.bias``), so optimizers,
gradient clipping and ``save`` work on the whole model.

``rnncore.save(module, path)`` writes the module's class, its configuration (``get_config()``) and every parameter to
one ``.npz``, atomically (a temporary file renamed over the target) and with a SHA-256 checksum over configuration
and arrays; ``rnncore.load(path)`` verifies the checksum before building anything, so a truncated or altered file
raises a clear error instead of giving a half-loaded model.

The file format: arrays ``param/<name>`` (the module's ``state_dict()``), ``header`` (JSON: ``format``, ``class`` as
``module:qualname``, ``config``) and ``checksum`` (SHA-256 of the header and the arrays), read with
``allow_pickle=False``. Loading never imports or calls anything the file names: it builds one of rnncore's own
module classes, or the class the caller passes (``rnncore.load(path, cls=MyModel)``), from the JSON config. (The
checksum detects damage, not intent: anyone can write a file with a valid one.)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from ._validation import config_method, float_dtype, state_dict_arrays, state_dict_shapes

if TYPE_CHECKING:
    from typing import Protocol

    import numpy.typing as npt

    class Model(Protocol):
        """What optimizers and gradient clipping take as a model (and ``Module`` finds as a sub-module): anything
        with ``parameters()`` and ``gradients()``."""

        def parameters(self) -> Mapping[str, np.ndarray]: ...

        def gradients(self) -> Mapping[str, np.ndarray]: ...

_FORMAT = "rnncore.save/1"
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
        self._shim_tape: list[Any] = []  # TEMPORARY SHIM (superseded by h-protocol): the recorded forwards

    def _add_parameter(self, name: str, shape: tuple[int, ...]) -> None:
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

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copies every parameter from ``state`` (e.g. ``{k: v.numpy() for k, v in torch_module.state_dict().items()}``)
        into the module's arrays, converting to its dtype. Missing, unexpected or misshaped entries raise before
        anything is copied."""
        # TEMPORARY SHIM (superseded by h-protocol): strict= and the return value, h-protocol's signature
        missing = sorted(set(self._params) - set(state))
        unexpected = sorted(set(state) - set(self._params))
        subset = state if strict else {k: state[k] for k in self._params if k in state}
        params = self._params if strict else {k: p for k, p in self._params.items() if k in state}
        arrays = state_dict_arrays(params, subset)
        for name, a in arrays.items():
            self._params[name][...] = a
        return IncompatibleKeys(missing if not strict else [], unexpected if not strict else [])

    def train(self: _P, mode: bool = True) -> _P:
        self.training = bool(mode)
        if not self.training:
            vars(self).setdefault("_shim_tape", []).clear()
        return self

    def eval(self: _P) -> _P:
        return self.train(False)

    # ---- TEMPORARY SHIM, superseded by h-protocol's base (interface 1): the tape ----
    def save_for_backward(self, value: Any) -> None:
        if self.training:
            vars(self).setdefault("_shim_tape", []).append(value)

    def saved_for_backward(self) -> Any:
        tape = vars(self).setdefault("_shim_tape", [])
        if not tape:  # (h-protocol's wording)
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode forward first: no recorded "
                               "call is left. Each training-mode call allows one backward, last call first; eval() "
                               "records nothing (call .train() before the forward)")
        return tape.pop()

    def _restore_saved(self, value: Any) -> None:
        vars(self).setdefault("_shim_tape", []).append(value)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state["_shim_tape"] = []  # pending workspaces live in C++: the copy starts with an empty tape
        return state
    # ---- end of the shim ----

    def _take_saved(self) -> Any:
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode forward first (call .train() "
                               "before the forward; each forward allows one backward)")
        saved, self._saved = self._saved, None
        return saved


class IncompatibleKeys(NamedTuple):  # TEMPORARY SHIM (superseded by h-protocol): what load_state_dict returns
    missing_keys: list[str]
    unexpected_keys: list[str]


def _checksum(header: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(header.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save(module: Any, path: str | os.PathLike[str]) -> None:
    """Writes ``module``'s class, configuration and parameters to ``path`` (an ``.npz``), atomically."""
    get_config = config_method(module)
    cls = type(module)
    header = json.dumps({"format": _FORMAT, "class": f"{cls.__module__}:{cls.__qualname__}",
                         "config": get_config()}, sort_keys=True)
    arrays = module.state_dict()
    record = {f"param/{name}": a for name, a in arrays.items()}
    record["header"] = np.array(header)
    record["checksum"] = np.array(_checksum(header, arrays))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".rnncore-save-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str], cls: type | None = None) -> Any:
    """Rebuilds the module that ``save`` wrote to ``path`` and loads its parameters: one of rnncore's own classes
    (layers, cells, ``Linear``, ``Embedding``), or ``cls``, the caller's class (a ``Module`` subclass), whose name
    must match the one the file recorded. Nothing the file names is imported or called. Raises ``ValueError`` for a
    file that is not an rnncore save, is truncated, fails its checksum, or holds a class that is neither."""
    path = os.fspath(path)
    if cls is not None and not isinstance(cls, type):
        raise TypeError(f"cls must be a class (the saved model's), got {type(cls).__name__}")
    try:
        with np.load(path, allow_pickle=False) as f:
            record = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable rnncore save (truncated or not an .npz): {e}") from None
    if "header" not in record or "checksum" not in record:
        raise ValueError(f"{path} is not an rnncore save (no header/checksum)")
    header = str(record["header"])
    arrays = {k[len("param/"):]: v for k, v in record.items() if k.startswith("param/")}
    if _checksum(header, arrays) != str(record["checksum"]):
        raise ValueError(f"{path} does not match its checksum: the file was altered or damaged")
    try:
        meta = json.loads(header)
    except ValueError as e:
        raise ValueError(f"{path}: the header is not JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the header must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {_FORMAT!r}")
    saved = str(meta.get("class", ""))
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the saved config must be a JSON object, got {type(config).__name__}")
    module = _saved_class(path, saved, cls)(**config)
    module.load_state_dict(arrays)
    return module


def _saved_class(path: str, saved: str, cls: type | None) -> type:
    """The class to rebuild ``saved`` ("module:qualname") with: ``cls`` when its qualified name matches (the module
    may differ: a class saved from a script's ``__main__`` loads in another script), else rnncore's own."""
    qualname = saved.partition(":")[2]
    if cls is not None:
        if cls.__qualname__ != qualname:
            raise ValueError(f"{path} holds a {saved}, not a {cls.__module__}:{cls.__qualname__} (cls)")
        return cls
    own = _own_classes()
    if saved not in own:
        raise ValueError(f"{path} holds a {saved}, which is not one of rnncore's classes: pass the model's class, "
                         f"rnncore.load(path, cls={qualname or 'YourModel'}) (rnncore never imports what a file names)")
    return own[saved]


def _own_classes() -> dict[str, type]:
    """rnncore's module classes by the name ``save`` records for them."""
    from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
    from .nn import Embedding, Linear

    classes = (LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell, Linear, Embedding)
    return {f"{c.__module__}:{c.__qualname__}": c for c in classes}
