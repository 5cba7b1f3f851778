"""Saving and loading models, and the optimizer / lr-schedule state beside them (``rnncore.save`` / ``rnncore.load``
/ ``rnncore.load_training_state``).

The file format (``rnncore.save/2``): one uncompressed ``.npz`` (a zip of ``.npy`` files, read with
``allow_pickle=False``) holding

- ``param/<name>``: the module's ``state_dict()`` arrays;
- ``header``: a 0-d string, JSON ``{"format", "class": "module:qualname", "config": get_config(), "training_state":
  {"optimizer": ..., "scheduler": ...}}`` (``training_state`` and its entries only when saved);
- ``optim/<path>`` and ``sched/<path>``: the arrays of the optimizer's / schedule's ``state_dict()``, e.g.
  ``optim/state/<param>/exp_avg``. The state dict is walked generically: every array becomes an npz entry and is
  replaced in the JSON by ``{"__ndarray__": "<entry>"}`` (a NumPy scalar by ``{"__npscalar__": ...}``, a tuple by
  ``{"__tuple__": [...]}``), everything else is stored as JSON;
- ``checksum``: SHA-256 over the header and every array (name, dtype, shape, bytes), in name order.

``save`` writes atomically (a temporary file renamed over the target). Reading is defensive: only stored (not
deflated) ``.npy`` members whose declared sizes fit in the file, no object arrays, the checksum verified before
anything is built. Loading never imports or calls anything the file names: it builds rnncore's own module classes
and the classes the caller passes (``cls=``), from the JSON config, and while it builds, module construction may
allocate no more parameter elements than the file holds (a config claiming ``hidden_size=10**9`` beside small
arrays raises ``ValueError`` before allocating). The checksum detects damage, not intent: anyone can write a file
with a valid one. Files of the first format (``rnncore.save/1``: no training state) still load.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np

from ._validation import config_method, load_classes, nested_spec, state_object

__all__ = ["save", "load", "load_training_state"]

_FORMAT = "rnncore.save/2"
_FORMAT_1 = "rnncore.save/1"  # params only; its checksum keys the parameters by their bare names
_TRAINING_PREFIXES = {"optimizer": "optim", "scheduler": "sched"}
_TAGS = ("__ndarray__", "__npscalar__", "__tuple__", "__dict__")
_BUDGET_SLACK = 1 << 16  # parameter elements a load may build beyond the file's own (tiny extras, rounding)


# ---- the parameter budget of a load --------------------------------------------------------------------------------

class _Budget:
    def __init__(self, path: str, elements: int) -> None:
        self.path, self.left = path, elements + _BUDGET_SLACK


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("rnncore_load_budget", default=None)


def charge_load_budget(shape: tuple[int, ...]) -> None:
    """Called by ``Module._add_parameter`` before it allocates a parameter of ``shape``: during ``load``, raises
    ValueError once the modules built from the file's config would hold more parameter elements than the file does
    (so an untrusted config cannot make load allocate gigabytes); outside a load, does nothing."""
    budget = _budget.get()
    if budget is None:
        return
    budget.left -= math.prod(int(n) for n in shape)
    if budget.left < 0:
        raise _LoadError(f"{budget.path}: the saved config asks for parameters larger than the file's arrays (a "
                         f"parameter of shape {tuple(shape)} is over the budget): refusing to allocate them")


@contextmanager
def _parameter_budget(path: str, elements: int) -> Iterator[None]:
    token = _budget.set(_Budget(path, elements))
    try:
        yield
    finally:
        _budget.reset(token)


class _LoadError(ValueError):
    """A load failure already naming the file (not wrapped again by an enclosing build)."""


# ---- the record: arrays + header + checksum ------------------------------------------------------------------------

def _checksum(header: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(header.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _read_record(path: str) -> dict[str, np.ndarray]:
    """The file's arrays by name, read without trusting it: every member a stored ``.npy`` whose declared size fits
    in the file (no zip bomb, no huge allocation from a lying header), no object (pickled) arrays."""
    file_size = os.path.getsize(path)
    declared = 0  # all members' data together: overlapping members cannot multiply the file either
    record: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename
            if not name.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"member {name!r} is not a stored .npy array")
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"member {name!r} has .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"member {name!r} holds Python objects")
            nbytes = math.prod(shape) * dtype.itemsize
            declared += nbytes
            if nbytes > info.file_size or declared > file_size:
                raise ValueError(f"member {name!r} declares more data than it holds")
            with z.open(info) as f:
                record[name[: -len(".npy")]] = np.lib.format.read_array(f, allow_pickle=False)
    return record


def _verified(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header dict, arrays without header/checksum) of the rnncore save at ``path``, checksum verified."""
    try:
        record = _read_record(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a readable rnncore save (truncated or not an .npz): {e}") from None
    if "header" not in record or "checksum" not in record:
        raise ValueError(f"{path} is not an rnncore save (no header/checksum)")
    header = str(record.pop("header"))
    checksum = str(record.pop("checksum"))
    try:
        meta = json.loads(header)
    except ValueError as e:
        raise ValueError(f"{path}: the header is not JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{path}: the header nests too deeply to decode") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the header must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") == _FORMAT_1:
        summed = {k[len("param/"):]: v for k, v in record.items() if k.startswith("param/")}
    elif meta.get("format") == _FORMAT:
        summed = record
    else:
        raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {_FORMAT!r}")
    if _checksum(header, summed) != checksum:
        raise ValueError(f"{path} does not match its checksum: the file was altered or damaged")
    return meta, record


# ---- state dicts <-> JSON + arrays ---------------------------------------------------------------------------------

def _encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` (a state dict) as JSON, its arrays moved into ``arrays`` under names built from their ``path``."""
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        if a.dtype.hasobject:
            raise TypeError(f"save: {path} is an array of Python objects, which the file cannot hold")
        name = path if path not in arrays else f"{path}#{len(arrays)}"
        arrays[name] = a
        return {"__ndarray__" if isinstance(value, np.ndarray) else "__npscalar__": name}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"save: {path} has non-string keys {[k for k in value if not isinstance(k, str)]!r}")
        encoded = {k: _encode(v, f"{path}/{k}", arrays) for k, v in value.items()}
        return {"__dict__": encoded} if len(value) == 1 and next(iter(value)) in _TAGS else encoded
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save: {path} is a {type(value).__name__}, neither an array nor JSON")


def _decode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """The inverse of ``_encode`` (``path``: the file, for errors)."""
    if isinstance(value, list):
        return [_decode(v, arrays, path) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        tag, inner = next(iter(value.items()))
        if tag in ("__ndarray__", "__npscalar__"):
            if not isinstance(inner, str) or inner not in arrays:
                raise ValueError(f"{path}: the training state names an array {inner!r} the file does not hold")
            return arrays[inner].copy() if tag == "__ndarray__" else arrays[inner][()]
        if tag == "__tuple__" and isinstance(inner, list):
            return tuple(_decode(v, arrays, path) for v in inner)
        if tag == "__dict__" and isinstance(inner, dict):
            return {k: _decode(v, arrays, path) for k, v in inner.items()}
    return {k: _decode(v, arrays, path) for k, v in value.items()}


# ---- save ----------------------------------------------------------------------------------------------------------

def save(module: Any, path: str | os.PathLike[str], *, optimizer: Any = None, scheduler: Any = None) -> None:
    """Writes ``module``'s class, configuration (``get_config()``) and parameters to ``path`` (an ``.npz``),
    atomically; with ``optimizer=`` / ``scheduler=``, also their ``state_dict()`` (to resume training with
    ``load_training_state``). The format is described in ``rnncore.serialization``."""
    get_config = config_method(module)
    cls = type(module)
    arrays = {f"param/{name}": a for name, a in module.state_dict().items()}
    meta: dict[str, Any] = {"format": _FORMAT, "class": f"{cls.__module__}:{cls.__qualname__}",
                            "config": get_config()}
    training: dict[str, Any] = {}
    for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            state = state_object(what, obj).state_dict()
            training[what] = _encode(state, _TRAINING_PREFIXES[what], arrays)
    if training:
        meta["training_state"] = training
    header = json.dumps(meta, sort_keys=True)
    record = dict(arrays)
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


# ---- load ----------------------------------------------------------------------------------------------------------

def load(path: str | os.PathLike[str], cls: type | Sequence[type] | None = None) -> Any:
    """Rebuilds the module that ``save`` wrote to ``path`` and loads its parameters.

    The classes it may build: rnncore's own (layers, cells, ``Linear``, ``Embedding``, ``Seq2Seq``, the demos'
    models such as ``rnncore.demos.dates.DateTranslator``) and ``cls``, the caller's class or a list/tuple of
    classes (a model whose sub-modules are custom classes too), matched by qualified name
    (the module may differ: a class saved from a script's ``__main__`` loads in another script). A class is built
    with ``cls.from_config(config, build)`` when it defines that classmethod (``build(spec)`` rebuilds a nested
    module from ``spec = {"class": "module:qualname", "config": {...}}`` under the same rules), else
    ``cls(**config)``. Nothing the file names is imported or called. Raises ``ValueError`` (naming the file) for a
    file that is not an rnncore save, is truncated, fails its checksum, names a class that is neither, whose
    config the class rejects or asks for more parameters than the file holds, or whose arrays do not fit the
    module its config builds."""
    path = os.fspath(path)
    classes = load_classes(cls)
    meta, record = _verified(path)
    params = {k[len("param/"):]: v for k, v in record.items() if k.startswith("param/")}
    spec = {"class": meta.get("class"), "config": meta.get("config")}
    with _parameter_budget(path, sum(a.size for a in params.values())):
        try:
            module = _build(path, spec, classes)
        except RecursionError:  # a crafted config nesting modules deeper than Python recurses
            raise ValueError(f"{path}: the saved config nests modules too deeply to build") from None
    try:
        module.load_state_dict(params)
    except (KeyError, ValueError) as e:  # KeyError's str() quotes its message
        reason = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ValueError(f"{path}: the saved parameters do not fit the {type(module).__name__} its config "
                         f"builds: {reason}") from None
    return module


def _build(path: str, spec: Any, classes: tuple[type, ...]) -> Any:
    """The module ``spec`` describes, built from one of ``classes`` or rnncore's own."""
    saved, config = nested_spec(path, spec)
    found = _saved_class(path, saved, classes)

    def build(nested: Any) -> Any:
        return _build(path, nested, classes)

    try:
        from_config: Callable[..., Any] | None = getattr(found, "from_config", None)
        return from_config(config, build) if callable(from_config) else found(**config)
    except _LoadError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise _LoadError(f"{path}: cannot build {saved} from the saved config: {e}") from e


def _saved_class(path: str, saved: str, classes: tuple[type, ...]) -> type:
    """The class to rebuild ``saved`` ("module:qualname") with: the exact name among the caller's ``classes`` and
    rnncore's own, else the caller's class of the same qualified name."""
    own = _own_classes()
    given = {f"{c.__module__}:{c.__qualname__}": c for c in classes}
    if saved in given:
        return given[saved]
    if saved in own:
        return own[saved]
    qualname = saved.partition(":")[2]
    same_name = [c for c in classes if c.__qualname__ == qualname]
    if len(same_name) == 1:
        return same_name[0]
    if len(same_name) > 1:
        raise _LoadError(f"{path} holds a {saved}, and cls has several classes named {qualname}")
    if classes:
        names = ", ".join(sorted(given))
        raise _LoadError(f"{path} holds a {saved}, not a {names} (cls) nor one of rnncore's classes")
    raise _LoadError(f"{path} holds a {saved}, which is not one of rnncore's classes: pass the model's class, "
                     f"rnncore.load(path, cls={qualname or 'YourModel'}) (rnncore never imports what a file names)")


def _own_classes() -> dict[str, type]:
    """rnncore's module classes by the name ``save`` records for them."""
    from .attention import AdditiveAttention, LuongAttention
    from .demos.dates import DateTranslator
    from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
    from .nn import Embedding, Linear
    from .seq2seq import AttentionDecoder, Seq2Seq
    from .sequential import LastHidden, Sequential

    classes = (LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell, Linear, Embedding, Sequential, LastHidden,
               AdditiveAttention, LuongAttention, AttentionDecoder, Seq2Seq, DateTranslator)
    return {f"{c.__module__}:{c.__qualname__}": c for c in classes}


def load_training_state(path: str | os.PathLike[str], optimizer: Any = None, scheduler: Any = None) -> None:
    """Restores the optimizer / lr-schedule state that ``save(..., optimizer=, scheduler=)`` wrote to ``path`` into
    ``optimizer`` and ``scheduler`` (each optional) via their ``load_state_dict``. Build them first on the loaded
    model, as for a fresh run::

        model = rnncore.load(path, cls=MyModel)
        opt = rnncore.optim.Adam(model, lr=1e-3)
        rnncore.load_training_state(path, opt)

    Raises ``ValueError`` naming the file when it holds no state for one passed, or the state does not fit it."""
    path = os.fspath(path)
    targets = {what: state_object(what, obj) for what, obj in (("optimizer", optimizer), ("scheduler", scheduler))
               if obj is not None}
    meta, record = _verified(path)
    saved = meta.get("training_state") or {}
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: training_state must be a JSON object, got {type(saved).__name__}")
    states = {}
    for what in targets:
        if what not in saved:
            raise ValueError(f"{path} holds no {what} state (save it with rnncore.save(model, path, {what}=...))")
        states[what] = _decode(saved[what], record, path)
    for what, obj in targets.items():
        try:
            obj.load_state_dict(states[what])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: the saved {what} state does not fit this {type(obj).__name__}: {e}") from e
