"""Every argument check of the package (the one home for validation), each a named function.

Every check runs before any C++ does and raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong shape or value), naming the argument and saying what was expected and what was received. Arrays that pass
are returned C-contiguous: a strided or Fortran-ordered input is copied once into C order (it is only read), never
cast to another dtype.

Sections: arrays and scalars (shared); the recurrent kernels' arguments (``KERNEL_ARGUMENTS``: the one description
the C++ fast path and these checks share) and their checks; the stepper, attention and embedding kernels; the Keras
exchange; layers, cells and streams; feed-forward layers and losses; modules and saving; gradient clipping;
optimizers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

import numpy as np

if TYPE_CHECKING:
    from ._cell_table import CellKind
    from ._core import Workspace_float32, Workspace_float64, _AnyWorkspace
    from .layers import _Cell, _Recurrent

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FLOAT32, FLOAT64 = FLOAT_DTYPES  # builtin dtypes are singletons: `a.dtype is FLOAT32` rejects byte-swapped ones
_INT64 = np.dtype(np.int64)

# A dimension of an expected shape: its letter (as in docs/design.md §1) and its size, or None when any size goes.
Dim = tuple[str, Optional[int]]


def _shape_text(expected: Sequence[Dim]) -> str:
    letters = ", ".join(letter for letter, _ in expected)
    sizes = ", ".join("?" if size is None else str(size) for _, size in expected)
    return f"[{letters}] = ({sizes}{',' if len(expected) == 1 else ''})"


def is_exact(a: Any, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``a`` needs no checking at all: an exact ndarray of this shape and (native) dtype, C-contiguous.
    The cheap first test of every array argument; only arrays that fail it go through ``float_array``'s checks,
    which raise with the argument's name or return a C-contiguous copy."""
    return type(a) is np.ndarray and a.dtype is dtype and a.shape == shape and a.flags.c_contiguous


def _shape_matches(shape: tuple[int, ...], expected: Sequence[Dim] | None) -> bool:
    if expected is None:
        return True
    if len(shape) != len(expected):
        return False
    for got, (_, size) in zip(shape, expected):
        if size is not None and size != got:
            return False
    return True


#: Where a module's expected dtype comes from, for float_array's message (a module's arrays follow its dtype=).
MODULE_DTYPE = "(the dtype= the module was built with)"


def float_array(name: str, a: Any, expected: Sequence[Dim] | None, dtype: np.dtype | None = None,
                dtype_from: str = "like the first array argument") -> np.ndarray:
    """Checks that ``a`` is a float32/float64 ndarray of the expected shape (None: any shape) and of ``dtype``, when
    given: the dtype of the call's first array, which every other array must share, or a module's (``dtype_from``
    says which, for the message). Returns it C-contiguous."""
    # Fast path for the common, correct call (a kernel call on small sizes costs a few microseconds, so validation
    # must too): an exact ndarray, C-contiguous, of a native float dtype (builtin dtypes are singletons, so `is`
    # rejects byte-swapped ones) and of the expected shape. Anything else takes the checks below.
    if (type(a) is np.ndarray and a.flags.c_contiguous
            and (a.dtype is dtype if dtype is not None else (a.dtype is FLOAT32 or a.dtype is FLOAT64))
            and _shape_matches(a.shape, expected)):
        return a
    if not isinstance(a, np.ndarray):
        wanted = "" if expected is None else f" of shape {_shape_text(expected)}"
        raise TypeError(f"{name} must be a numpy.ndarray{wanted}, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {a.dtype}, expected {dtype} {dtype_from}; "
            f"convert explicitly (e.g. {name}.astype(np.{dtype})) — rnncore never casts silently")
    if not _shape_matches(a.shape, expected):
        assert expected is not None  # None matches every shape
        raise ValueError(f"{name} must have shape {_shape_text(expected)}, got shape {a.shape}")
    return np.asarray(a, order="C")  # C-contiguous (copied only if strided); unlike ascontiguousarray, keeps 0-d


def optional_float_array(name: str, a: Any, expected: Sequence[Dim], dtype: np.dtype) -> np.ndarray | None:
    """``float_array`` for an argument that may be None."""
    return None if a is None else float_array(name, a, expected, dtype)


def lengths_array(lengths: Any, batch: int, steps: int) -> np.ndarray | None:
    """Checks per-sample valid lengths: integers, shape [B], each in 1..T. Returns an int64 copy (or None)."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths must have shape [B] = ({batch},), got shape {arr.shape}")
    if batch and (arr.min() < 1 or arr.max() > steps):
        bad = arr[(arr < 1) | (arr > steps)]
        raise ValueError(f"lengths must lie in 1..T = 1..{steps}, got {bad.tolist()[:5]}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def same_keys(context: str, expected: Iterable[Any], given: Iterable[Any],
              error: type[Exception] = KeyError) -> None:
    """Raises ``error`` ("<context>: missing [...], unexpected [...]") unless ``given`` has exactly ``expected``'s
    keys."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise error(f"{context}: missing {missing}, unexpected {unexpected}")


def reset_after_flag(value: Any) -> bool:
    """The GRU's ``reset_after`` argument: a bool (never a truthy stand-in such as a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"reset_after must be a bool, got {type(value).__name__}")
    return bool(value)


def nonlinearity_name(value: Any) -> str:
    """The simple RNN's ``nonlinearity`` argument: "tanh" or "relu"."""
    return choice("nonlinearity", value, ("tanh", "relu"))


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """The option ``value`` equals, as the plain ``str`` from ``options`` (not e.g. the numpy.str_ given)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return options[list(options).index(value)]


def float_dtype(name: str, dtype: Any) -> np.dtype:
    """A constructor's ``dtype`` argument: float32 or float64 (as a numpy dtype)."""
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if d not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {d}")
    return d


def real_number(name: str, value: Any, minimum: float = 0.0, allow_equal: bool = True,
                allow_inf: bool = False) -> float:
    """A real number (not bool) >= minimum (> minimum when not allow_equal); NaN always and inf unless allowed raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if np.isnan(v) or (np.isinf(v) and not allow_inf) or v < minimum or (v == minimum and not allow_equal):
        bound = f">= {minimum}" if allow_equal else f"> {minimum}"
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number {bound}, got {value!r}")
    return v


def features_array(name: str, a: Any, letter: str, size: int, dtype: np.dtype | None = None,
                   dtype_from: str = "like the first array argument") -> np.ndarray:
    """A float array ``[..., letter]`` (any leading dimensions, at least one axis) whose last axis has ``size``
    entries; ``dtype`` as in ``float_array``. Returns it C-contiguous."""
    if type(a) is np.ndarray and a.ndim >= 1 and a.shape[-1] == size and a.flags.c_contiguous and (
            a.dtype is dtype if dtype is not None else (a.dtype is FLOAT32 or a.dtype is FLOAT64)):
        return a
    a = float_array(name, a, None, dtype, dtype_from)
    if a.ndim == 0 or a.shape[-1] != size:
        raise ValueError(f"{name} must have shape [..., {letter}] = (..., {size}), got shape {a.shape}")
    return a


def index_array(name: str, a: Any, size: int, shape: tuple[int, ...] | None = None, where: np.ndarray | None = None,
                letter: str = "V") -> np.ndarray:
    """Integer indices (an ndarray or a Python int/list of ints; not bool) each in 0..size-1, optionally of a given
    ``shape``; with ``where`` (a bool array of the same shape) only entries where it is True are range-checked (the
    others are ignored by the caller and may hold anything, e.g. padding). Returns a C-contiguous int64 array."""
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.dtype is not _INT64 and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {arr.shape}")
    checked = arr if where is None else arr[where]
    if checked.size:
        if checked.dtype is _INT64:  # one pass: as unsigned, a negative index is huge, so one compare finds both ends
            out_of_range = bool((checked.view(np.uint64) >= size).any())
        else:
            out_of_range = checked.min() < 0 or checked.max() >= size
        if out_of_range:
            bad = checked[(checked < 0) | (checked >= size)]
            raise ValueError(f"{name} must lie in 0..{letter}-1 = 0..{size - 1}, got {bad.ravel().tolist()[:5]}")
    if arr.dtype is _INT64 and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=np.int64)


def mask_array(name: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A keep-mask (bool, or integers/floats that are all 0 or 1; nonzero = keep) broadcastable to ``shape``.
    Returns a C-contiguous bool array of exactly ``shape``."""
    m = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise TypeError(f"{name} must be boolean or 0/1 numbers (True = keep), got dtype {m.dtype}")
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(f"{name} must hold only 0 and 1 (or booleans), got other values")
        m = m != 0
    try:
        m = np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"{name} must be broadcastable to shape {tuple(shape)}, got shape {m.shape}") from None
    return np.ascontiguousarray(m)


# ---- the recurrent kernels' arguments: one description for the Python checks and the C++ fast path ---------------
#
# Every recurrent entry point of ``rnncore.ops`` first hands the call to ``_core`` as it is; C++ takes it only when
# every argument satisfies every rule below exactly (cpp/bindings/bindings.hpp ``ExactArray``, bind_recurrent.cpp
# ``ForwardArgs``, ``exact_backward``, ``nonlinearity_of``) and answers anything else with NotImplemented. The Python
# checks then run on the same description: a broken rule either raises (``python_error``) naming the argument, or, for
# rules that only concern how a valid value is passed, the argument is converted (``python_error`` None) and the
# kernel called again. tests/test_fast_path_agreement.py walks every rule of every argument against both.

@dataclass(frozen=True)
class Rule:
    """One requirement on one kind of kernel argument."""
    id: str
    requirement: str
    python_error: type | None  # what the Python checks raise when it is broken; None: they convert the argument


# An array argument ([letters] of the call's float dtype, or int64 for lengths).
ARRAY_RULES = (
    Rule("ndarray", "a numpy.ndarray", TypeError),
    Rule("float_dtype", "float32 or float64", TypeError),
    Rule("same_dtype", "the dtype of the call's first array (x, or the workspace's)", TypeError),
    Rule("native_byte_order", "in the machine's byte order", TypeError),
    Rule("rank", "one axis per shape letter", ValueError),
    Rule("size", "each axis the size its letter has in this call", ValueError),
    Rule("exact_type", "an ndarray itself, not a subclass", None),
    Rule("c_contiguous", "C-contiguous", None),
)
LENGTHS_RULES = (
    Rule("integer_dtype", "integers", TypeError),
    Rule("int64", "int64", None),
    Rule("ndarray", "a numpy.ndarray", None),
    Rule("c_contiguous", "C-contiguous", None),
    Rule("shape", "shape [B]", ValueError),
    Rule("range", "each entry in 1..T", ValueError),
)
FLAG_RULES = (Rule("bool", "True or False themselves (not a numpy.bool_)", None),)
STRICT_FLAG_RULES = (Rule("bool_type", "a bool or numpy.bool_", TypeError),
                     Rule("bool", "True or False themselves (not a numpy.bool_)", None))
CHOICE_RULES = (Rule("option", "one of the options", ValueError),
                Rule("exact_str", "a str itself, not a subclass", None))
WORKSPACE_RULES = (Rule("workspace_type", "the workspace a training-mode forward returned", TypeError),
                   Rule("workspace_cell", "made by the same cell's forward", ValueError))


@dataclass(frozen=True)
class Argument:
    """One argument of a kernel entry point: its name, what kind of value it is, its shape letters (arrays; ``G*H``
    is the gate count times H) and whether it may be None."""
    name: str
    kind: str  # "array" | "lengths" | "flag" | "strict_flag" | "choice" | "workspace"
    letters: tuple[str, ...] = ()
    optional: bool = False
    options: tuple[str, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return {"array": ARRAY_RULES, "lengths": LENGTHS_RULES, "flag": FLAG_RULES, "strict_flag": STRICT_FLAG_RULES,
                "choice": CHOICE_RULES, "workspace": WORKSPACE_RULES}[self.kind]


_WEIGHTS = (Argument("w_ih", "array", ("G*H", "I")), Argument("w_hh", "array", ("G*H", "H")),
            Argument("b_ih", "array", ("G*H",), True), Argument("b_hh", "array", ("G*H",), True))
_STATE = {s: Argument(s, "array", ("B", "H"), True) for s in ("h0", "c0", "dh_n", "dc_n")}
_X = Argument("x", "array", ("T", "B", "I"))
_DY = Argument("dy", "array", ("T", "B", "H"), True)
_LENGTHS = Argument("lengths", "lengths", ("B",), True)
_TRAINING = Argument("training", "flag")
_WORKSPACE = Argument("workspace", "workspace")

#: Each recurrent kernel entry point's arguments, in ``_core``'s order.
KERNEL_ARGUMENTS: dict[str, tuple[Argument, ...]] = {
    "lstm_forward": (_X, _STATE["h0"], _STATE["c0"], *_WEIGHTS, _LENGTHS, _TRAINING),
    "gru_forward": (_X, _STATE["h0"], *_WEIGHTS, _LENGTHS, _TRAINING, Argument("reset_after", "strict_flag")),
    "rnn_forward": (_X, _STATE["h0"], *_WEIGHTS, _LENGTHS, _TRAINING,
                    Argument("nonlinearity", "choice", options=("tanh", "relu"))),
    "lstm_backward": (_WORKSPACE, _DY, _STATE["dh_n"], _STATE["dc_n"]),
    "gru_backward": (_WORKSPACE, _DY, _STATE["dh_n"]),
    "rnn_backward": (_WORKSPACE, _DY, _STATE["dh_n"]),
}
#: Rules on the sizes a forward call's arrays define (x fixes T, B, I; w_hh fixes H).
FORWARD_SIZE_RULES = (Rule("I_at_least_1", "I >= 1", ValueError), Rule("H_at_least_1", "H >= 1", ValueError))


def _letters_text(letters: Sequence[str], gates: int) -> list[str]:
    return [f"{gates}*H" if letter == "G*H" else letter for letter in letters]


#: Each forward kernel's array arguments and their shape letters, from KERNEL_ARGUMENTS (looked up per call).
_FORWARD_LETTERS: dict[str, dict[str, tuple[str, ...]]] = {
    kernel: {arg.name: tuple(arg.letters) for arg in args} for kernel, args in KERNEL_ARGUMENTS.items()}


class Forward(NamedTuple):
    """A forward call's arrays as the kernels take them."""
    x: np.ndarray
    states: tuple[np.ndarray | None, ...]
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    lengths: np.ndarray | None


def forward_arrays(kernel: str, gates: int, x: Any, states: dict[str, Any], w_ih: Any, w_hh: Any, b_ih: Any,
                   b_hh: Any, lengths: Any) -> Forward:
    """Validates one forward call's arrays against each other (``KERNEL_ARGUMENTS[kernel]``): x fixes T, B, I and
    the dtype; w_hh fixes H. Raises with the argument's name, or returns the arrays as the kernels take them."""
    x = float_array("x", x, [("T", None), ("B", None), ("I", None)])
    steps, batch, inputs = x.shape
    dtype = x.dtype
    if inputs < 1:
        raise ValueError(f"x must have at least one input feature (I >= 1), got shape {x.shape}")
    w_hh = float_array("w_hh", w_hh, [(f"{gates}*H", None), ("H", None)], dtype)
    hidden = w_hh.shape[1]
    if hidden < 1:
        raise ValueError(f"w_hh must have at least one hidden unit (H >= 1), got shape {w_hh.shape}")
    sizes = {"T": steps, "B": batch, "I": inputs, "H": hidden, "G*H": gates * hidden}
    letters_of = _FORWARD_LETTERS[kernel]

    def checked(name: str, a: Any) -> Any:
        if a is None:
            return None
        letters = letters_of[name]
        shape = tuple([sizes[letter] for letter in letters])
        if is_exact(a, shape, dtype):
            return a
        return float_array(name, a, list(zip(_letters_text(letters, gates), shape)), dtype)

    # Checked in the order their errors are raised: w_hh, w_ih, b_ih, b_hh, then the states.
    w_hh, w_ih, b_ih, b_hh = checked("w_hh", w_hh), checked("w_ih", w_ih), checked("b_ih", b_ih), checked("b_hh", b_hh)
    return Forward(x, tuple([checked(name, s) for name, s in states.items()]), w_ih, w_hh, b_ih, b_hh,
                   lengths_array(lengths, batch, steps))


def workspace_of(workspace: Any, op: str, cell: str,
                 workspace_types: tuple[type[Workspace_float32], type[Workspace_float64]]) -> _AnyWorkspace:
    """The workspace argument of ``<cell>_backward``: one that ``<cell>_forward(..., training=True)`` returned."""
    if not isinstance(workspace, workspace_types):
        hint = " (was the forward run with training=False?)" if workspace is None else ""
        raise TypeError(f"workspace must be the workspace returned by {cell}_forward(..., training=True), "
                        f"got {type(workspace).__name__}{hint}")
    if workspace.cell != cell:
        raise ValueError(f"{op} got a workspace from {workspace.cell}_forward; it needs one from {cell}_forward")
    return workspace


def upstream_arrays(kernel: str, workspace: _AnyWorkspace, grads: dict[str, Any]) -> tuple[np.ndarray | None, ...]:
    """Validates the upstream gradients of a backward call against the forward that made ``workspace``."""
    dtype = np.dtype(workspace.dtype)
    sizes = {"T": workspace.T, "B": workspace.B, "H": workspace.H}
    letters = {arg.name: arg.letters for arg in KERNEL_ARGUMENTS[kernel]}
    return tuple(optional_float_array(name, g, [(k, sizes[k]) for k in letters[name]], dtype)
                 for name, g in grads.items())


def training_flag(value: Any) -> bool:
    """A forward's ``training`` argument, taken by its truth value (as it always was)."""
    return bool(value)


# ---- the streaming stepper, the attention and embedding kernels ----------------------------------------------------

def stepper_arrays(gates: int, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A stepper's weights: w_ih [G*H, I] fixes the dtype and I, w_hh [G*H, H] fixes H; biases [G*H] or None."""
    w_ih = float_array("w_ih", w_ih, [(f"{gates}*H", None), ("I", None)])
    dtype = w_ih.dtype
    w_hh = float_array("w_hh", w_hh, [(f"{gates}*H", None), ("H", None)], dtype)
    hidden, inputs = w_hh.shape[1], w_ih.shape[1]
    if hidden < 1:
        raise ValueError(f"w_hh must have at least one hidden unit (H >= 1), got shape {w_hh.shape}")
    if inputs < 1:
        raise ValueError(f"w_ih must have at least one input feature (I >= 1), got shape {w_ih.shape}")
    gh = (f"{gates}*H", gates * hidden)
    w_hh = float_array("w_hh", w_hh, [gh, ("H", hidden)], dtype)
    w_ih = float_array("w_ih", w_ih, [gh, ("I", inputs)], dtype)
    return (w_ih, w_hh, optional_float_array("b_ih", b_ih, [gh], dtype),
            optional_float_array("b_hh", b_hh, [gh], dtype))


def stepper_states(cell: str, n_states: int, h0: Any, c0: Any, batch: int, hidden: int, dtype: np.dtype
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A stepper's ``reset(h0, c0)``: each [B, H] of the stepper's dtype or None (zeros); ``c0`` must be None for a
    cell with one state (``n_states`` 1: the GRU, the simple RNN). Returns them C-contiguous."""
    shape = [("B", batch), ("H", hidden)]
    h0 = optional_float_array("h0", h0, shape, dtype)  # h0 first, as the C++ binding checks them
    if c0 is not None and n_states < 2:
        raise ValueError(f"c0 must be None for a one-state cell (cell {cell!r} has one state, h), "
                         f"got {type(c0).__name__}")
    return h0, optional_float_array("c0", c0, shape, dtype)


def stepper_input(x: Any, batch: int, inputs: int, dtype: np.dtype) -> np.ndarray:
    """A stepper's ``step(x)``: x a C-contiguous [B, I] array of the stepper's dtype, else ValueError. The reference
    twin calls this; the C++ binding checks the hot call itself, with this message (cpp/bindings/bind_stepper.cpp),
    except that pybind11 refuses a non-array before (TypeError)."""
    if not (isinstance(x, np.ndarray) and x.dtype == dtype and x.shape == (batch, inputs) and x.flags.c_contiguous):
        got = f"dtype {x.dtype} and shape {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"x must be a C-contiguous {dtype} array of shape [B, I] = ({batch}, {inputs}), got {got}")
    return np.asarray(x, order="C")


def no_cell_state(cell: str) -> AttributeError:
    """What reading ``c`` from a stepper of a one-state cell raises (the C++ binding raises the same)."""
    return AttributeError(f"c exists only for an LSTM stepper (cell {cell!r} has one state, h)")


def scores_array(name: str, a: Any) -> np.ndarray:
    """Softmax scores (or weights) ``[..., N]``: a float array with at least one axis."""
    a = float_array(name, a, None)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the softmax runs over the last), got a 0-d array")
    return a


def same_shape_array(name: str, a: Any, like: np.ndarray) -> np.ndarray:
    """A float array of ``like``'s shape and dtype."""
    return float_array(name, a, [(f"d{k}", n) for k, n in enumerate(like.shape)], like.dtype)


def softmax_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The masked softmax's keep-mask (boolean or integer, broadcastable to the scores' ``shape``; nonzero = keep)
    as the kernel takes it: C-contiguous uint8 of exactly ``shape``; None stays None."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if not (m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer)):
        raise TypeError(f"mask must be boolean or integer (True = keep), got dtype {m.dtype}")
    try:
        m = np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"mask must be broadcastable to e's shape {shape}, got shape {m.shape}") from None
    return np.ascontiguousarray(m != 0).view(np.uint8)


def accumulator_array(name: str, a: Any, letters: Sequence[str]) -> np.ndarray:
    """An array a kernel adds into in place: a float32/float64 ndarray with one axis per letter, C-contiguous and
    writeable (never a copy: the caller's array is the result)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if a.ndim != len(letters):
        raise ValueError(f"{name} must have shape [{', '.join(letters)}], got shape {a.shape}")
    if not (a.flags.c_contiguous and a.flags.writeable and a.dtype.isnative):
        raise ValueError(f"{name} must be C-contiguous, writeable and in native byte order (it is added into in place)")
    return a


def optional_index(name: str, value: Any, size: int, letter: str) -> int:
    """An optional row index (None, or an int in 0..size-1) as the kernels take it: -1 for None."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    index = int(value)
    if not 0 <= index < size:
        raise ValueError(f"{name} must lie in 0..{letter}-1 = 0..{size - 1}, got {value}")
    return index


def non_negative_int(name: str, value: Any) -> int:
    """An int >= 0 (not bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def cell_options(owner: str, given: dict[str, Any], options: dict[str, tuple[Any, Callable[[Any], Any]]]
                 ) -> dict[str, Any]:
    """A cell's constructor options: ``options`` maps each name to (default, check); every given value is checked
    (the normalized value kept), missing ones take their default, and an unknown keyword raises TypeError the way
    Python does for ``owner``'s signature."""
    unknown = [k for k in given if k not in options]
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    return {name: check(given[name]) if name in given else default for name, (default, check) in options.items()}


# ---- Keras weight exchange (rnncore.interop) ----------------------------------------------------------------------

def keras_array(layer_name: str, name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """One array of a Keras ``get_weights()`` list: real numbers of exactly ``shape``."""
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"Keras {layer_name} {name} must be a float array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"Keras {layer_name} {name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def keras_weight_count(layer_name: str, spec: Sequence[tuple[str, tuple[int, ...]]], weights: Sequence[Any],
                       bias: bool) -> None:
    """A Keras ``get_weights()`` list has one array per (name, shape) of ``spec``."""
    if len(weights) != len(spec):
        names = ", ".join(n for n, _ in spec)
        hint = (" (Keras use_bias=False maps to an rnncore layer with bias=False, and back)"
                if len(weights) in (2, 3) else "")
        raise ValueError(f"Keras {layer_name} weights: expected {len(spec)} arrays [{names}] for an "
                         f"rnncore layer with bias={bias}, got {len(weights)}{hint}")


def keras_bias_rows(title: str, option: str, two_rows: bool, bias: Any) -> None:
    """The Keras bias's rank says which value of ``option`` (GRU reset_after) the Keras layer had: two rows when True;
    it must be the rnncore layer's."""
    ndim = np.ndim(bias)
    if two_rows == (ndim == 2):
        return
    ours, theirs = (True, False) if two_rows else (False, True)
    if ndim in (1, 2):
        raise ValueError(f"{option} mismatch: the rnncore {title} has {option}={ours} but the Keras bias has "
                         f"shape {np.shape(bias)} (a Keras {title} with {option}={theirs}); build the rnncore "
                         f"{title} with {option}={theirs}")


def cell_position(layer_index: Any, direction: Any) -> None:
    """A cell has one layer and one direction: both indices must be 0."""
    if layer_index != 0 or direction != 0:
        raise ValueError(f"a cell has one layer and one direction: layer_index and direction must be 0, "
                         f"got layer_index={layer_index!r}, direction={direction!r}")


def index_below(name: str, value: Any, stop: int, note: str = "") -> int:
    """An int (not bool) in [0, stop); ``note`` is added after the range in the message."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < stop:
        raise ValueError(f"{name} must be an int in [0, {stop}){note}, got {value!r}")
    return int(value)


# ---- layers, cells and streams (rnncore.layers) -----------------------------------------------------------------

def state_tuple(kind: CellKind, state: Any, name: str, suffix: str, what: str) -> tuple[Any, ...]:
    """A state argument as one entry per state of ``kind`` (None: all zeros): an LSTM's is a pair (h, c)."""
    if state is None:
        return (None,) * kind.n_states
    if kind.n_states == 1:
        return (state,)
    if not isinstance(state, (tuple, list)) or len(state) != kind.n_states:
        names = ", ".join(s + suffix for s in kind.states)
        raise TypeError(f"{name} must be a tuple ({names}) for {kind.with_article}{what}, got {type(state).__name__}")
    return tuple(state)


def gradient_tuple(kind: CellKind, dstate: Any) -> tuple[Any, ...]:
    """A cell's backward argument as one gradient per state: an LSTM cell's is a pair (dh, dc); None means zeros."""
    if kind.n_states == 1:
        return (dstate,)
    if dstate is None:  # zeros for every state
        return (None,) * kind.n_states
    if not isinstance(dstate, (tuple, list)) or len(dstate) != kind.n_states:
        names = ", ".join("d" + s for s in kind.states)
        raise TypeError(f"dstate must be a tuple ({names}) for {kind.with_article} cell")
    return tuple(dstate)


def dropout_probability(dropout: Any) -> float:
    """A recurrent layer's ``dropout`` between layers: a real number in [0, 1)."""
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def layer_kind(layer: Any, classes: tuple[type[_Recurrent], type[_Cell]]) -> CellKind:
    """The cell-table row of an rnncore recurrent layer or cell (one of ``classes``)."""
    if not isinstance(layer, classes):
        raise TypeError(f"layer must be an rnncore LSTM/GRU/RNN layer or LSTMCell/GRUCell/RNNCell, "
                        f"got {type(layer).__name__}")
    return layer.kind


# ---- feed-forward layers and losses (rnncore.nn, rnncore.losses) ----------------------------------------------------

def padding_index(padding_idx: Any, num_embeddings: int) -> int | None:
    """An Embedding's ``padding_idx``: None, or an int in -num_embeddings..num_embeddings-1 (negative counts from the
    end, as in torch); returned in 0..num_embeddings-1."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"padding_idx must be an int or None, got {type(padding_idx).__name__}")
    pad = int(padding_idx)
    if not -num_embeddings <= pad < num_embeddings:
        raise ValueError(f"padding_idx must lie in -num_embeddings..num_embeddings-1 = "
                         f"{-num_embeddings}..{num_embeddings - 1}, got {padding_idx}")
    return pad % num_embeddings


def logits_array(logits: Any) -> np.ndarray:
    """Logits ``[..., C]``: a float array with the classes on its last axis, C >= 1."""
    logits = float_array("logits", logits, None)
    if logits.ndim == 0:
        raise ValueError("logits must have shape [..., C] (classes on the last axis), got a 0-d array")
    if logits.shape[-1] < 1:
        raise ValueError(f"logits must have at least one class (C >= 1), got shape {logits.shape}")
    return logits


# ---- modules, saving (rnncore.module) -------------------------------------------------------------------------------

def config_method(module: Any) -> Callable[[], dict[str, Any]]:
    """The ``get_config`` a module needs to be saved."""
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise TypeError(f"save needs a module with get_config() (its constructor's keyword arguments); "
                        f"{type(module).__name__} has none")
    return get_config


def state_dict_shapes(params: dict[str, np.ndarray], state: Any) -> None:
    """A model's ``load_state_dict`` argument: exactly the parameters' names, each of the parameter's shape."""
    same_keys("load_state_dict", params, state)
    for name, p in params.items():
        if np.shape(state[name]) != p.shape:
            raise ValueError(f"load_state_dict: {name} must have shape {p.shape}, got {np.shape(state[name])}")


def state_dict_arrays(params: dict[str, np.ndarray], state: Any) -> dict[str, np.ndarray]:
    """A module's ``load_state_dict`` argument: exactly the parameters' names, each a floating-point array of the
    parameter's shape. Returns name -> array."""
    same_keys("load_state_dict", params, state)
    arrays = {}
    for name, p in params.items():
        a = np.asarray(state[name])
        if a.shape != p.shape:
            raise ValueError(f"load_state_dict: {name} must have shape {p.shape}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"load_state_dict: {name} must be floating point, got {a.dtype}")
        arrays[name] = a
    return arrays


# ---- gradient clipping (rnncore.utils) ------------------------------------------------------------------------------

def clip_gradients(grads: Any) -> list[np.ndarray]:
    """What clipping takes: a dict of gradient arrays, a list/tuple of them, one array, or a model (its
    ``gradients()``); each a writeable float32/float64 ndarray. Returns the arrays (clipped in place by the caller)."""
    if callable(getattr(grads, "gradients", None)):
        grads = grads.gradients()
    if isinstance(grads, dict):
        items = list(grads.items())
    elif isinstance(grads, (list, tuple)):
        items = [(f"grads[{i}]", g) for i, g in enumerate(grads)]
    elif isinstance(grads, np.ndarray):
        items = [("grads", grads)]
    else:
        raise TypeError(f"grads must be a dict of arrays, a list of arrays or a model with .gradients(), "
                        f"got {type(grads).__name__}")
    arrays = []
    for name, g in items:
        if not isinstance(g, np.ndarray):
            raise TypeError(f"gradient {name} must be a numpy.ndarray, got {type(g).__name__}")
        if g.dtype not in (np.float32, np.float64):
            raise TypeError(f"gradient {name} must have dtype float32 or float64, got {g.dtype}")
        if not g.flags.writeable:
            raise ValueError(f"gradient {name} must be writeable (it is clipped in place)")
        arrays.append(g)
    return arrays


# ---- optimizers (rnncore.optim) -------------------------------------------------------------------------------------

def hyper_number(name: str, value: Any) -> float:
    """An optimizer hyper-parameter: a finite real number (not bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def hyper_non_negative(name: str, value: Any) -> float:
    """A finite real number >= 0 (learning rates, eps, weight decay, momentum)."""
    value = hyper_number(name, value)
    if value < 0.0:
        raise ValueError(f"Invalid {name}: {value} (must be >= 0)")
    return value


def hyper_unit(name: str, value: Any) -> float:
    """A number in [0, 1) (betas)."""
    value = hyper_number(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {name}: {value} (must be in [0, 1))")
    return value


def hyper_flag(name: str, value: Any) -> bool:
    """A bool (or numpy.bool_) hyper-parameter."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def hyper_betas(name: str, value: Any) -> tuple[float, float]:
    """Adam's ``betas``: a pair of numbers in [0, 1)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (hyper_unit("beta parameter at index 0", value[0]), hyper_unit("beta parameter at index 1", value[1]))


def nesterov_combination(hyper: dict[str, Any]) -> None:
    """SGD's Nesterov momentum needs a momentum and zero dampening (as torch)."""
    if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def optimizer_parameters(params: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """An optimizer's ``params``: a dict name -> ndarray, or a model with ``parameters()`` and ``gradients()``.
    Returns (the model or None, name -> array), every array a writeable float32/float64 ndarray."""
    model = None
    if isinstance(params, Mapping):
        arrays = params
    elif callable(getattr(params, "parameters", None)) and callable(getattr(params, "gradients", None)):
        model = params
        arrays = params.parameters()
        if not isinstance(arrays, Mapping):
            raise TypeError(f"{type(params).__name__}.parameters() must return a dict name -> ndarray")
    else:
        raise TypeError("params must be a dict name -> ndarray or a model with parameters() and gradients(), "
                        f"got {type(params).__name__}")
    if len(arrays) == 0:
        raise ValueError("optimizer got an empty parameter dict")
    checked: dict[str, np.ndarray] = {}
    for name, p in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"parameter names must be str, got {name!r}")
        if not isinstance(p, np.ndarray):
            raise TypeError(f"parameter {name!r} must be a numpy.ndarray (it is updated in place), "
                            f"got {type(p).__name__}")
        if p.dtype not in FLOAT_DTYPES:
            raise TypeError(f"parameter {name!r} must be float32 or float64, got {p.dtype}")
        if not p.flags.writeable:
            raise ValueError(f"parameter {name!r} is read-only; the optimizer updates parameters in place")
        checked[name] = p
    return model, checked


def optimizer_gradients(params: dict[str, np.ndarray], grads: Any, model: Any) -> dict[str, np.ndarray]:
    """``step(grads)``'s argument (None: the model's ``gradients()``): name -> real array of the parameter's shape,
    returned in the parameter's dtype."""
    if grads is None:
        if model is None:
            raise TypeError("step() needs grads (a dict name -> ndarray) when the optimizer was built from a "
                            "dict of parameters")
        grads = model.gradients()
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a dict name -> ndarray, got {type(grads).__name__}")
    same_keys("grads must have exactly the parameters' names", params, grads, ValueError)
    resolved = {}
    for name, p in params.items():
        g = grads[name]
        if not isinstance(g, np.ndarray):
            g = np.asarray(g)
        if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
            raise TypeError(f"gradient {name!r} must be a real array, got dtype {g.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"gradient {name!r} must have the parameter's shape {p.shape}, got {g.shape}")
        resolved[name] = g if g.dtype == p.dtype else g.astype(p.dtype)
    return resolved


def optimizer_state_header(state_dict: Any, optimizer: str) -> None:
    """An optimizer ``state_dict``'s outline: a dict with "optimizer" (this class's name), "hyperparameters" and
    "state"."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    missing = sorted({"optimizer", "hyperparameters", "state"} - set(state_dict))
    if missing:
        raise KeyError(f"load_state_dict: missing entries {missing}")
    if state_dict["optimizer"] != optimizer:
        raise ValueError(f"load_state_dict: the state is for {state_dict['optimizer']!r}, "
                         f"this optimizer is {optimizer!r}")


def optimizer_state_arrays(saved: Any, params: dict[str, np.ndarray], state_keys: Sequence[str]
                           ) -> dict[str, dict[str, np.ndarray]]:
    """An optimizer ``state_dict``'s "state": param name -> {state name: array of the parameter's shape (``step``:
    0-d)}, for exactly the parameters. Returns copies in the parameters' dtypes."""
    if not isinstance(saved, Mapping):
        raise TypeError("load_state_dict: 'state' must be a dict param name -> dict of arrays")
    same_keys("load_state_dict: parameter names differ", params, saved)
    new_state: dict[str, dict[str, np.ndarray]] = {}
    for name, p in params.items():
        entries = saved[name]
        if not isinstance(entries, Mapping):
            raise TypeError(f"load_state_dict: state[{name!r}] must be a dict of arrays")
        unknown = sorted(set(entries) - set(state_keys))
        if unknown:
            raise KeyError(f"load_state_dict: state[{name!r}] has unknown entries {unknown} "
                           f"(known: {list(state_keys)})")
        new_state[name] = {}
        for key, a in entries.items():
            a = np.asarray(a)
            shape = () if key == "step" else p.shape
            if a.shape != shape:
                raise ValueError(f"load_state_dict: state[{name!r}][{key!r}] must have shape {shape}, "
                                 f"got {a.shape}")
            if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                raise TypeError(f"load_state_dict: state[{name!r}][{key!r}] must be real, got {a.dtype}")
            new_state[name][key] = np.array(a, dtype=p.dtype, copy=True)
    return new_state


# ---- threads (rnncore.ops.runtime) -----------------------------------------------------------------------------------

def thread_count(name: str, value: Any) -> int | None:
    """A thread count: an int >= 1, or None (keep the current one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1 or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1 or None, got {value}")
    return int(value)
