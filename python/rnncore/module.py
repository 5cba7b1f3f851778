"""The module protocol (``rnncore.Module``), and saving and loading modules.

``rnncore.Module`` is the one base class of every module: rnncore's layers, cells' layers, ``Linear``,
``Embedding``, ``Sequential``, and your own models. What a custom module writes:

- ``__init__``: ``super().__init__()`` (optional: the bookkeeping starts on first use), then its parameters,
  ``self.register_parameter("w", np.zeros((4, 3), np.float32))`` (the array itself becomes the parameter, with a
  gradient buffer of zeros beside it: ``self.w`` reads it, ``self.gradients()["w"]`` its gradient), and its
  sub-modules as attributes (``self.encoder = rc.LSTM(...)``; lists/tuples of modules too, named ``name.i``).
- ``__call__(...)``: the forward, recording what backward needs with ``self.save_for_backward(value)`` (a no-op
  in eval mode).
- ``backward(grad)``: ``value = self.saved_for_backward()`` (the last recorded call's), accumulate parameter
  gradients in ``self.gradients()[name]`` (``+=``), call the sub-modules' ``backward``, return the input gradient.
  Any number of training-mode calls may precede the backwards, which take the calls in reverse order (a tape).
- optionally ``get_config()``: the constructor's keyword arguments (JSON), so ``rnncore.save`` can store it and
  ``rnncore.load(path, cls=TheClass)`` rebuild it.

Everything else comes from here, with PyTorch's names and meanings: ``parameters()`` / ``named_parameters()``,
``gradients()``, ``children()`` / ``named_children()`` / ``modules()``, ``zero_grad()``, ``train()`` / ``eval()``,
``requires_grad_()`` / ``trainable_parameters()``, ``state_dict()`` / ``load_state_dict(state, strict=True)`` and a
torch-style ``repr``. Unlike torch, ``eval()`` also clears the tape and records nothing: backward is for
training-mode calls only.

Saving and loading (``rnncore.save`` / ``rnncore.load``, the file format) live in ``rnncore.serialization``.
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, TypeVar

import numpy as np

from ._validation import (
    flag,
    float_dtype,
    module_name,
    parameter_array,
    parameter_name,
    state_dict_entries,
)

if TYPE_CHECKING:
    from typing import Protocol

    import numpy.typing as npt

    class Model(Protocol):
        """What optimizers and gradient clipping take as a model (and ``Module`` finds as a sub-module): anything
        with ``parameters()`` and ``gradients()``."""

        def parameters(self) -> Mapping[str, np.ndarray]: ...

        def gradients(self) -> Mapping[str, np.ndarray]: ...

_M = TypeVar("_M", bound="Module")  # train()/eval()/requires_grad_() return the module itself, of its own class

#: A module warns (once) when its tape holds this many calls: far more than one training step's unrolled graph
#: uses (a decoder step per output token, an attention call per step), so it means training-mode calls are piling
#: up without backward (e.g. evaluation in training mode), each keeping its inputs alive.
TAPE_WARNING_LENGTH = 10_000


# Attribute types that are never sub-modules: most of a module's attributes (sizes, flags, names, arrays), which the
# parameter walks every training step (optimizer, clipping) skip without two getattr calls each.
# A plain list or tuple (not a subclass) is not a module either: its items are looked at one by one.
_PLAIN_TYPES = frozenset({int, float, bool, str, type(None), np.ndarray, dict, set, list, tuple, np.random.Generator,
                          *(type(np.dtype(t)) for t in (np.float32, np.float64))})


def _is_module(value: object) -> bool:
    """A sub-module is anything with ``parameters()`` and ``gradients()`` (rnncore's modules and cells)."""
    if type(value) in _PLAIN_TYPES:
        return False
    return callable(getattr(value, "parameters", None)) and callable(getattr(value, "gradients", None))


# id(parameter array) -> (a weak reference to it, its gradient buffer): an array registered by several modules (tied
# weights) gets one gradient buffer, which every one of their backwards accumulates into (torch's one .grad).
_GRADIENT_BUFFERS: dict[int, tuple[weakref.ref[np.ndarray], np.ndarray]] = {}


def _gradient_buffer(array: np.ndarray, grad: np.ndarray | None = None) -> np.ndarray:
    """The gradient buffer of the parameter ``array``: the one already made for it, else ``grad`` (None: new zeros),
    remembered as its buffer."""
    key = id(array)
    entry = _GRADIENT_BUFFERS.get(key)
    if entry is not None and entry[0]() is array:
        return entry[1]
    grad = np.zeros_like(array) if grad is None else grad
    _GRADIENT_BUFFERS[key] = (weakref.ref(array, lambda _: _GRADIENT_BUFFERS.pop(key, None)), grad)
    return grad


# Where a module remembers which of its attributes hold sub-modules (Module._child_slots); never pickled.
_CHILD_SLOTS = "_child_slot_cache"

# Where a module remembers its last walk of the tree below it (Module._flagged_entries); never pickled.
_WALK_CACHE = "_walk_cache"

# Bumped by every change of a module tree's shape made through the Module API: an attribute that is (or was) a
# sub-module, a list or a tuple set or deleted, a parameter registered, a module frozen or unfrozen. A remembered walk
# is kept only while this count is the one it was made at (and its lists hold the same items): the walks every
# training step makes (optimizer, zero_grad, clipping) then touch no module but the root.
_structure_version = 0


def _structure_changed() -> None:
    global _structure_version
    _structure_version += 1


def _module_ids(items: list[Any]) -> list[int]:
    """The ids of a list's sub-modules (its other items, e.g. pending gradients, may come and go)."""
    return [id(item) for item in items if _is_module(item)]


def _may_be_child(value: object) -> bool:
    """Whether an attribute's value may be a sub-module or hold some (a list or tuple): anything but the plain types."""
    kind = type(value)
    return kind not in _PLAIN_TYPES or kind is list or kind is tuple

# The bookkeeping each instance creates on first use, so a subclass need not call super().__init__().
_LAZY: dict[str, Callable[[], Any]] = {"_params": dict, "_grads": dict, "_tape": list, "_none_params": set}


@dataclasses.dataclass
class _Walk:
    """One walk of a module tree (Module._walk): made at structure ``version``; ``entries`` (nested name, parameter,
    gradient, trainable); ``modules`` and ``lists`` what ``still_valid`` compares; ``protocol_only``:
    every module below is a Module (else its entries are made again at every walk, and the walk serves only
    zero_grad's choice of path); ``plain_zero_grad``: none overrides zero_grad."""

    version: int
    entries: list[tuple[str, np.ndarray, np.ndarray, bool]]
    modules: list[tuple[Module | None, int, int, bool, list[tuple[str, Any]]]]  # each module (None: the root):
    # its attribute and parameter counts, its _requires_grad and its child slots' values, then
    lists: list[tuple[list[Any], list[int]]]  # (a list attribute, the ids of the sub-modules it held)
    protocol_only: bool
    plain_zero_grad: bool

    def still_valid(self, root: Module) -> bool:
        """Whether the tree under ``root`` still has this walk's shape: no structural change through the Module API
        since, and (what changes around it) every module's attribute and parameter counts, freezing and child slots,
        and every list's sub-modules, as they were."""
        if self.version != _structure_version:
            return False
        for recorded, count, n_params, requires_grad, slots in self.modules:
            module = root if recorded is None else recorded
            values = module.__dict__
            if (len(values) != count or len(module._params) != n_params
                    or module._requires_grad is not requires_grad):
                return False
            for slot, value in slots:
                if values.get(slot) is not value:
                    return False
        return all(_module_ids(items) == ids for items, ids in self.lists)


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns (torch's ``_IncompatibleKeys``): the module's parameter names the state
    lacked, and the state's names the module does not have (both empty with ``strict=True``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of every rnncore module and of your own (the module protocol: see this module's docstring).

    A module owns parameters (``register_parameter``; read them as attributes, ``lin.weight``, and update them in
    place) and sub-modules (any attribute holding a module, or a list/tuple of them), found in assignment order;
    nested names join the attribute names with dots (``encoder.weight_ih_l0``, ``heads.1.bias``).

    The tape: every training-mode call records what its backward needs (``save_for_backward``); ``backward`` takes
    the calls back in reverse order (``saved_for_backward``), one backward per call. ``eval()`` clears the tape and
    records nothing.
    """

    training = True
    _requires_grad = True
    #: Attributes a subclass sets often that never hold a sub-module (e.g. a decoder's prepared source, a tuple of
    #: arrays set every call): setting them leaves the remembered walks and child slots alone.
    _data_attributes: frozenset[str] = frozenset()
    _tape_recorded = 0  # training-mode calls recorded since the tape was last cleared (for the empty-tape error)
    _tape_warned = False

    def __init__(self) -> None:
        for name, make in _LAZY.items():
            self.__dict__.setdefault(name, make())

    def __getattr__(self, name: str) -> Any:
        # Called only when the normal lookup fails: the lazily created bookkeeping, then the parameters by name.
        make = _LAZY.get(name)
        if make is not None:
            value = self.__dict__[name] = make()
            return value
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._data_attributes:
            object.__setattr__(self, name, value)
            return
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            raise TypeError(f"{type(self).__name__}.{name} is a parameter: assign in place, {name}[...] = value "
                            f"(optimizers and gradients hold this very array), or call "
                            f"register_parameter({name!r}, array) to replace it")
        if value is not None and name in self.__dict__.get("_none_params", ()):
            raise TypeError(f"{type(self).__name__}.{name} is a parameter declared absent (None): call "
                            f"register_parameter({name!r}, array) to make it one (a plain attribute would be ignored)")
        previous = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        cached = self.__dict__.get(_CHILD_SLOTS)
        if cached is not None and (name in cached[1] or type(value) not in _PLAIN_TYPES
                                   or isinstance(value, (list, tuple))):
            self.__dict__.pop(_CHILD_SLOTS, None)
        if name == "_requires_grad" or _may_be_child(value) or _may_be_child(previous):
            _structure_changed()

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop(_CHILD_SLOTS, None)
        object.__delattr__(self, name)
        _structure_changed()

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_params", ())))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle and deepcopy: everything but the tape (pending training-mode calls; a layer's live in C++), so a
        copy needs training-mode calls of its own before ``backward``."""
        state = dict(vars(self))
        state.pop(_CHILD_SLOTS, None)
        state.pop(_WALK_CACHE, None)
        state["_tape"] = []
        state["_tape_recorded"] = 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling and deepcopy: the copy's parameters are remembered with their gradient buffers, so tying a
        parameter of the copy into another module shares its buffer (as ``register_parameter`` does)."""
        vars(self).update(state)
        vars(self).pop(_CHILD_SLOTS, None)
        vars(self).pop(_WALK_CACHE, None)
        grads = state.get("_grads", {})
        for name, p in state.get("_params", {}).items():
            if name in grads:
                _gradient_buffer(p, grads[name])

    # -- parameters ----------------------------------------------------------------------------------------------
    def register_parameter(self, name: str, array: np.ndarray | None) -> None:
        """Makes ``array`` (float32/float64, C-contiguous, writeable: never copied) the parameter ``name``, with a
        gradient buffer of zeros of its shape and dtype; an array another module registered (tied weights) shares
        that module's gradient buffer, so both modules' gradients add up. ``None`` declares an absent parameter
        (``self.name`` is None, as ``Linear(bias=False).bias``). Re-registering a parameter's name replaces it."""
        parameter_name(self, name, self._params, self._none_params)
        self.__dict__.pop(_CHILD_SLOTS, None)
        try:
            if array is None:
                self._params.pop(name, None)
                self._grads.pop(name, None)
                self._none_params.add(name)
                object.__setattr__(self, name, None)
                return
            array = parameter_array(name, array)
            if name in self._none_params:
                self._none_params.discard(name)
                del self.__dict__[name]
            self._params[name] = array
            self._grads[name] = _gradient_buffer(array)
        finally:  # counted after the change: a walk another thread makes meanwhile is not kept
            _structure_changed()

    def _add_parameter(self, name: str, shape: tuple[int, ...]) -> None:
        """A parameter of zeros of ``shape`` and the module's ``dtype`` (the built-in modules' init fills it)."""
        charge_load_budget(shape)  # during rnncore.load: an untrusted config cannot allocate past the file's arrays
        self.register_parameter(name, np.zeros(shape, dtype=self.dtype))

    def add_module(self, name: str, module: Any) -> None:
        """Adds a sub-module under ``name`` (as ``setattr``; for names that are not identifiers, e.g. ``"0"``)."""
        module_name(self, name, module)
        setattr(self, name, module)

    def named_children(self) -> Iterator[tuple[str, Any]]:
        """(name, module) for every direct sub-module, in assignment order; list/tuple items are named ``name.i``."""
        values = self.__dict__
        for name in self._child_slots():
            value = values.get(name)
            if _is_module(value):
                yield name, value
            elif isinstance(value, (list, tuple)):  # read each time: a list may have changed in place
                for i, item in enumerate(value):
                    if _is_module(item):
                        yield f"{name}.{i}", item

    def _child_slots(self) -> tuple[str, ...]:
        """The attributes that hold a sub-module or a list/tuple, in assignment order: found once and remembered
        (with the number of attributes then) until an attribute is set to something that may be a module, one of
        them is set or deleted, or the number of attributes changes, so the walks every training step makes
        (optimizer, clipping, zero_grad) skip the module's plain attributes. Attributes set through ``setattr`` (or
        ``=``) are always seen; a plain attribute replaced by a module straight through ``__dict__`` is not."""
        values = self.__dict__
        cached = values.get(_CHILD_SLOTS)
        if cached is not None and cached[0] == len(values):
            return cached[1]
        items = list(values.items())  # one copy under the GIL: another thread may be setting attributes
        data = self._data_attributes
        slots = tuple(name for name, value in items if name not in _LAZY and name != _CHILD_SLOTS
                      and name != _WALK_CACHE and name not in data
                      and (_is_module(value) or isinstance(value, (list, tuple))))
        values[_CHILD_SLOTS] = (0, slots)           # the entry itself counts among the attributes
        values[_CHILD_SLOTS] = (len(values), slots)
        return slots

    def children(self) -> Iterator[Any]:
        """Every direct sub-module (torch's ``children()``)."""
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """(nested name, module) for this module (name ``prefix``, "" at the top) and every module below it, each
        once, depth first."""
        seen: set[int] = set()

        def walk(module: Any, name: str) -> Iterator[tuple[str, Any]]:
            if id(module) in seen:
                return
            seen.add(id(module))
            yield name, module
            if isinstance(module, Module):
                for child_name, child in module.named_children():
                    yield from walk(child, f"{name}.{child_name}" if name else child_name)

        yield from walk(self, prefix)

    def modules(self) -> Iterator[Any]:
        """This module and every module below it, each once (torch's ``modules()``)."""
        for _, module in self.named_modules():
            yield module

    def _entries(self, trainable_only: bool = False) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(nested name, parameter, gradient) for this module's own parameters first, then each sub-module's."""
        for name, p, g, trainable in self._flagged_entries(trainable_only):
            if trainable:
                yield name, p, g

    def _flagged_entries(self, flag: bool) -> Iterator[tuple[str, np.ndarray, np.ndarray, bool]]:
        """Every (nested name, parameter, gradient, trainable) in ``_entries``' order; ``trainable`` is whether the
        module holding that entry lets it train (always True with ``flag=False``). The walk is remembered while the
        tree keeps its shape (``_walk``)."""
        entries = self._walk().entries
        if flag:
            return iter(entries)
        return iter([(name, p, g, True) for name, p, g, _ in entries])

    def _walk(self) -> _Walk:
        """The tree's entries in one walk, remembered until its shape may have changed (``_Walk.still_valid``: a
        structural change through the Module API, or one made around it that the child slots see). A tree holding a
        module outside this protocol (e.g. a user's object with parameters() and gradients()) is walked every
        time."""
        cached = self.__dict__.get(_WALK_CACHE)
        if cached is not None and cached.protocol_only and cached.still_valid(self):
            return cached
        walk = _Walk(_structure_version, [], [], [], True, True)
        self._collect_entries(True, "", walk.entries, walk)
        # kept either way (not through __setattr__: a cache is not the tree's shape); a walk over a foreign module
        # serves only zero_grad's choice of path, its entries being made again each time
        self.__dict__[_WALK_CACHE] = walk
        return walk

    def _collect_entries(self, flag: bool, prefix: str, out: list[tuple[str, np.ndarray, np.ndarray, bool]],
                         walk: _Walk | None = None) -> None:
        """``_flagged_entries``' walk: appends this module's entries, names prefixed, then each sub-module's (one
        list for the whole tree: an entry is not handed up through a generator per level); ``walk`` (optional)
        notes the lists met on the way and whether every module is a Module with Module's zero_grad."""
        own = not flag or self._requires_grad
        grads = self._grads
        out.extend((prefix + name, p, grads[name], own) for name, p in self._params.items())
        if walk is not None:
            if type(self).zero_grad is not Module.zero_grad:
                walk.plain_zero_grad = False
            values = self.__dict__
            slots = [(slot, values.get(slot)) for slot in self._child_slots()]
            # the root as None: the walk it keeps must not refer back to it (a cycle would outlive its last reference)
            walk.modules.append((self if prefix else None, len(values), len(self._params), self._requires_grad,
                                 slots))
            walk.lists.extend((items, _module_ids(items)) for _, items in slots if isinstance(items, list))
        for child_name, child in self.named_children():
            if isinstance(child, Module):
                child._collect_entries(flag, f"{prefix}{child_name}.", out, walk)
            else:  # a module outside this protocol (anything with parameters() and gradients(), e.g. a cell)
                if walk is not None:
                    walk.protocol_only = False
                trainable = getattr(child, "trainable_parameters", None)
                kept = {id(p) for p in trainable().values()} if flag and callable(trainable) else None
                child_grads = child.gradients()
                out.extend((f"{prefix}{child_name}.{name}", p, child_grads[name], kept is None or id(p) in kept)
                           for name, p in child.parameters().items())

    def _unique_entries(self, trainable_only: bool = False) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``_entries`` with a parameter shared by two sub-modules listed once, under its first name (as torch)."""
        seen: set[int] = set()
        for name, p, g in self._entries(trainable_only):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p, g

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, np.ndarray]]:
        """(nested name, parameter) pairs, this module's own first (torch's ``named_parameters``: ``prefix`` is
        joined with a dot, ``"model"`` gives ``model.weight``); a parameter shared by two sub-modules is listed once
        unless ``remove_duplicate=False``."""
        if prefix and not prefix.endswith("."):
            prefix += "."
        entries = self._unique_entries() if remove_duplicate else self._entries()
        for name, p, _ in entries:
            yield prefix + name, p

    def parameters(self) -> dict[str, np.ndarray]:
        """Nested name -> parameter (what optimizers take). The arrays are the module's own: update them in place."""
        return dict(self.named_parameters())

    def gradients(self) -> dict[str, np.ndarray]:
        """Nested name -> accumulated gradient, the same keys as ``parameters()``."""
        return {name: g for name, _, g in self._unique_entries()}

    def zero_grad(self) -> None:
        """Sets every gradient to zero (in place: the buffers stay the same arrays)."""
        walk = self.__dict__.get(_WALK_CACHE)
        if walk is None or not walk.still_valid(self):
            walk = self._walk()
        if walk.protocol_only and walk.plain_zero_grad:  # every module's zero_grad is this one: the entries' buffers
            for _, _, g, _ in walk.entries:
                g.fill(0.0)
            return
        self._zero_grad_tree()

    def _zero_grad_tree(self) -> None:
        """zero_grad by recursion (a tree with an override or a foreign module): each module once, no walks."""
        for g in self._grads.values():
            g[...] = 0.0
        for child in self.children():
            if isinstance(child, Module) and type(child).zero_grad is Module.zero_grad:
                child._zero_grad_tree()
            else:
                child.zero_grad()

    def requires_grad_(self: _M, requires_grad: bool = True) -> _M:
        """Freezes (False) or unfreezes this module's parameters and every sub-module's; returns the module.
        Frozen parameters still get gradients (backward still flows through them), but ``trainable_parameters()``
        leaves them out, and optimizers update only those."""
        self._requires_grad = flag("requires_grad_: requires_grad", requires_grad)
        for child in self.children():
            set_flag = getattr(child, "requires_grad_", None)
            if not callable(set_flag):
                raise TypeError(f"requires_grad_: the sub-module {type(child).__name__} cannot be frozen "
                                "(it has no requires_grad_)")
            set_flag(requires_grad)
        return self

    def trainable_parameters(self) -> dict[str, np.ndarray]:
        """The parameters that require grad, under the names ``parameters()`` uses. A parameter held by several
        modules (tied weights) requires grad only when none of them is frozen (torch's one flag per parameter)."""
        return self._trainable_and_gradients()[0]

    def _trainable_and_gradients(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(trainable_parameters(), gradients())`` from one walk (an optimizer's step needs both): each parameter
        once, under its first name (named_parameters), trainable if every holder lets it train."""
        first: dict[int, list[Any]] = {}
        for name, p, g, trainable in self._flagged_entries(True):
            seen = first.get(id(p))
            if seen is None:
                first[id(p)] = [name, p, g, trainable]
            elif not trainable:
                seen[3] = False
        return ({name: p for name, p, _, trainable in first.values() if trainable},
                {name: g for name, _, g, _ in first.values()})

    # -- modes and the tape --------------------------------------------------------------------------------------
    def train(self: _M, mode: bool = True) -> _M:
        """Training mode (the default) or, with ``mode=False``, eval mode: no dropout, no tape (the tape is
        cleared, and calls record nothing, so backward needs a training-mode call first). Recursive."""
        self.training = flag("train: mode", mode)
        if not self.training:
            self._tape.clear()
            self._tape_recorded = 0
        for child in self.children():
            child.train(mode)
        return self

    def eval(self: _M) -> _M:
        """``train(False)``."""
        return self.train(False)

    def save_for_backward(self, value: Any) -> None:
        """Records ``value`` on the tape for the backward of this call (training mode only; a no-op in eval)."""
        if not self.training:
            return
        tape = self._tape
        tape.append(value)
        self._tape_recorded += 1
        if len(tape) >= TAPE_WARNING_LENGTH and not self._tape_warned:
            self._tape_warned = True
            warnings.warn(f"{type(self).__name__} holds {len(tape)} training-mode calls without backward: each "
                          "keeps its inputs alive until its backward. For inference, call eval() (it records "
                          "nothing); in training, call backward once per call", UserWarning, stacklevel=3)

    def saved_for_backward(self) -> Any:
        """Pops and returns what the LAST recorded training-mode call saved. RuntimeError when none is left."""
        if not self._tape:
            recorded = self._tape_recorded
            happened = (f"all {recorded} recorded training-mode call{'s' if recorded != 1 else ''} already went "
                        "through backward" if recorded else
                        "no training-mode call was recorded (since it was built, copied or last put in eval mode)")
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode forward first: {happened}. "
                               "Each training-mode call allows one backward, last call first; eval() records "
                               "nothing (call .train() before the forward)")
        return self._tape.pop()

    def _restore_saved(self, value: Any) -> None:
        """Pushes ``value`` back on the tape: a backward that rejected its gradient does not use up the call."""
        self._tape.append(value)

    # -- state dicts ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter by nested name (PyTorch's names)."""
        return {name: p.copy() for name, p in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copies parameters from ``state`` (nested name -> array, e.g. ``{k: v.numpy() for k, v in
        torch_module.state_dict().items()}``) into the module's arrays, converting to their dtype. With
        ``strict=True`` the names must match exactly (KeyError); with ``strict=False`` the matching names load and
        the others are returned as ``(missing_keys, unexpected_keys)``. A shape mismatch always raises
        (ValueError), and every check runs before anything is copied."""
        params = dict(self.named_parameters(remove_duplicate=False))
        arrays, missing, unexpected = state_dict_entries(params, state, strict)
        for name, a in arrays.items():
            params[name][...] = a
        return IncompatibleKeys(missing, unexpected)

    # -- repr ----------------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of ``repr``: a custom module's constructor arguments, from its
        ``get_config()`` when it has one (torch's ``extra_repr``)."""
        get_config = getattr(self, "get_config", None)
        if not callable(get_config):
            return ""
        try:
            return ", ".join(f"{k}={v!r}" for k, v in get_config().items())
        except Exception:  # a repr never fails because of a half-built module
            return ""

    def __repr__(self) -> str:
        """torch's layout: the class and its arguments, then one indented line per sub-module, ``(name): repr``."""
        lines = [f"({name}): {repr(child)}".replace("\n", "\n  ") for name, child in self.named_children()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = [extra] if extra else []
        return f"{type(self).__name__}(\n  " + "\n  ".join(head + lines) + "\n)"


class Parameterized(Module):
    """A module that owns its arrays in a ``dtype`` with a seeded generator (rnncore's layers, ``Linear``,
    ``Embedding``): ``self.dtype``, ``self._seed``, ``self._rng``."""

    def __init__(self, dtype: npt.DTypeLike, seed: int | None) -> None:
        super().__init__()
        self.dtype = float_dtype("dtype", dtype)
        self._seed = seed
        self._rng = np.random.default_rng(seed)

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``rnncore.save`` stores to rebuild the module)."""
        raise NotImplementedError


# save/load live in rnncore.serialization; re-exported here (rnncore.module.save keeps working).
from .serialization import charge_load_budget, load as load, save as save  # noqa: E402
