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

import datetime
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
_BOOL = np.dtype(np.bool_)

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


def lengths_array(lengths: Any, batch: int, steps: int, shortest: int = 1, letter: str = "T", rows: str = "B"
                  ) -> np.ndarray | None:
    """Checks per-sample valid lengths: integers, shape [B], each in shortest..T (the kernels take 1..T; the layers
    0..T, a sample with none taking no step; attention 0..Tx, ``letter`` naming the bound; ``rows`` naming the
    batch axis: N for a decoding session's sources). Returns an int64 copy (or None)."""
    if lengths is None:
        return None
    arr = np.array(lengths)  # a copy, checked and then passed on: the kernels index by it without the GIL
    if arr.dtype is not _INT64 and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths must have shape [{rows}] = ({batch},), got shape {arr.shape}")
    if arr.dtype is _INT64 and shortest == 0:  # one pass: as unsigned, a negative length is huge
        out_of_range = bool((arr.view(np.uint64) > steps).any())
    else:
        out_of_range = bool(batch) and (arr.min() < shortest or arr.max() > steps)
    if out_of_range:
        bad = arr[(arr < shortest) | (arr > steps)]
        raise ValueError(f"lengths must lie in {shortest}..{letter} = {shortest}..{steps}, got {bad.tolist()[:5]}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def flag(name: str, value: Any) -> bool:
    """A bool (or numpy.bool_) argument: "no" or 2 are mistakes, not True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def text_value(name: str, text: Any) -> str:
    """One string."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    return text


def text_items(name: str, texts: Any) -> Sequence[str]:
    """A list or tuple of strings (``name[i]`` names a bad one; "i" in ``name`` is replaced by the index)."""
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            where = name.replace("[i]", f"[{i}]") if "[i]" in name else f"{name}[{i}]"
            raise TypeError(f"{where} must be a str, got {type(text).__name__}")
    return texts


def string_pairs(name: str, pairs: Any) -> tuple[list[str], list[str]]:
    """(firsts, seconds) of a sequence of (str, str) pairs."""
    firsts, seconds = [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list, np.ndarray)) or len(pair) != 2:
            raise TypeError(f"{name}[{i}] must be a (str, str) pair, got {pair!r:.60}")
        firsts.append(pair[0])
        seconds.append(pair[1])
    return firsts, seconds


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


def strict_flag(strict: Any) -> bool:
    """``load_state_dict``'s ``strict``: a bool."""
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"load_state_dict: strict must be a bool, got {type(strict).__name__}")
    return bool(strict)


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
    arr = np.array(a)  # a copy, checked and then passed on: the kernels index by it without the GIL
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
# A [T, B, H] step array the kernels read at its strides (dy: e.g. a direction's columns of a layer's dy, read in
# place): an array argument at any element strides instead of C-contiguous.
_ELEMENT_STRIDES = "aligned, each stride a whole number of elements"
STEP_RULES = (*ARRAY_RULES[:-1], Rule("element_strides", _ELEMENT_STRIDES, None))
# A forward's out= (y written in place at its strides, like NumPy's out=, and returned): as dy, and writeable, rows
# apart (no two elements at one address) and sharing no memory with the call's other arrays. A subclass is
# written through an ndarray view of its memory (and returned itself).
OUT_RULES = (*ARRAY_RULES[:-1], Rule("element_strides", _ELEMENT_STRIDES, ValueError),
             Rule("writeable", "writeable", ValueError),
             Rule("rows_apart", "no two elements at one address", ValueError),
             Rule("no_shared_memory", "sharing no memory with the call's other arrays", ValueError))


@dataclass(frozen=True)
class Argument:
    """One argument of a kernel entry point: its name, what kind of value it is, its shape letters (arrays; ``G*H``
    is the gate count times H) and whether it may be None."""
    name: str
    kind: str  # "array" | "steps" | "out" | "lengths" | "flag" | "strict_flag" | "choice" | "workspace"
    letters: tuple[str, ...] = ()
    optional: bool = False
    options: tuple[str, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return {"array": ARRAY_RULES, "lengths": LENGTHS_RULES, "flag": FLAG_RULES, "strict_flag": STRICT_FLAG_RULES,
                "choice": CHOICE_RULES, "workspace": WORKSPACE_RULES, "steps": STEP_RULES, "out": OUT_RULES}[self.kind]


_WEIGHTS = (Argument("w_ih", "array", ("G*H", "I")), Argument("w_hh", "array", ("G*H", "H")),
            Argument("b_ih", "array", ("G*H",), True), Argument("b_hh", "array", ("G*H",), True))
_STATE = {s: Argument(s, "array", ("B", "H"), True) for s in ("h0", "c0", "dh_n", "dc_n")}
_X = Argument("x", "array", ("T", "B", "I"))
_DY = Argument("dy", "steps", ("T", "B", "H"), True)
_OUT = Argument("out", "out", ("T", "B", "H"), True)
_LENGTHS = Argument("lengths", "lengths", ("B",), True)
_TRAINING = Argument("training", "flag")
_WORKSPACE = Argument("workspace", "workspace")
_NEED_DX = Argument("need_dx", "strict_flag")  # a bool or numpy.bool_, as linear_backward's

#: Each recurrent kernel entry point's arguments, in ``_core``'s order.
KERNEL_ARGUMENTS: dict[str, tuple[Argument, ...]] = {
    "lstm_forward": (_X, _STATE["h0"], _STATE["c0"], *_WEIGHTS, _LENGTHS, _TRAINING, _OUT),
    "gru_forward": (_X, _STATE["h0"], *_WEIGHTS, _LENGTHS, _TRAINING, Argument("reset_after", "strict_flag"), _OUT),
    "rnn_forward": (_X, _STATE["h0"], *_WEIGHTS, _LENGTHS, _TRAINING,
                    Argument("nonlinearity", "choice", options=("tanh", "relu")), _OUT),
    "lstm_backward": (_WORKSPACE, _DY, _STATE["dh_n"], _STATE["dc_n"], _NEED_DX),
    "gru_backward": (_WORKSPACE, _DY, _STATE["dh_n"], _NEED_DX),
    "rnn_backward": (_WORKSPACE, _DY, _STATE["dh_n"], _NEED_DX),
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


def _forward_operand(kernel: str, gates: int, sizes: dict[str, int], dtype: np.dtype, name: str, a: Any) -> Any:
    """A forward's weight, bias or state ``name`` (None stays None) as the kernel takes it: its shape from the
    kernel's letters (_FORWARD_LETTERS) and ``sizes``, the dtype ``dtype``."""
    if a is None:
        return None
    letters = _FORWARD_LETTERS[kernel][name]
    shape = tuple([sizes[letter] for letter in letters])
    if is_exact(a, shape, dtype):
        return a
    return float_array(name, a, list(zip(_letters_text(letters, gates), shape)), dtype)


def forward_arrays(kernel: str, gates: int, x: Any, states: dict[str, Any], w_ih: Any, w_hh: Any, b_ih: Any,
                   b_hh: Any, lengths: Any) -> Forward:
    """Validates one forward call's arrays against each other (``KERNEL_ARGUMENTS[kernel]``): x fixes T, B, I and
    the dtype; w_hh fixes H. Raises with the argument's name, or returns the arrays as the kernels take them. An
    integer x [T, B] holds one-hot inputs as their indices (``one_hot_forward_arrays``)."""
    if one_hot_indices(x):
        return one_hot_forward_arrays(kernel, gates, x, states, w_ih, w_hh, b_ih, b_hh, lengths)
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

    def checked(name: str, a: Any) -> Any:
        return _forward_operand(kernel, gates, sizes, dtype, name, a)

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
    args = {arg.name: arg for arg in KERNEL_ARGUMENTS[kernel]}
    return tuple((step_array if args[name].kind == "steps" else optional_float_array)(
        name, g, [(k, sizes[k]) for k in args[name].letters], dtype) for name, g in grads.items())


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

def state_tuple(kind: CellKind, state: Any, name: str, suffix: str, what: str, prefix: str = "") -> tuple[Any, ...]:
    """A state argument as one entry per state of ``kind`` (None: all zeros): an LSTM's is a pair (h, c), its parts
    called ``<prefix><state><suffix>`` in the message (h0, c0; dh_n, dc_n)."""
    if state is None:
        return (None,) * kind.n_states
    if kind.n_states == 1:
        return (state,)
    if not isinstance(state, (tuple, list)) or len(state) != kind.n_states:
        names = ", ".join(prefix + s + suffix for s in kind.states)
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


def layer_gradient(module: str, name: str, a: Any, expected: Sequence[Dim], dtype: np.dtype) -> np.ndarray:
    """A layer's ``dy``: ``float_array`` of the recorded forward's y shape; a wrong shape's message says which
    forward backward is taking (the last recorded one: several forwards are taken back last first), in the words
    Linear and Embedding use."""
    try:
        return float_array(name, a, expected, dtype, MODULE_DTYPE)
    except ValueError as e:
        raise ValueError(f"{e} (the output shape of the last recorded call: {module}.backward takes calls in "
                         "reverse order, the last call first)") from None


def cell_state(kind: CellKind, state: Any, names: Sequence[str], batch: int, hidden: int, dtype: np.dtype,
               what: str) -> tuple[np.ndarray | None, ...]:
    """A cell's state (h, or (h, c)) or its gradient (dh, or (dh, dc)), each [B, H] of the cell's dtype= or None
    for zeros; ``names`` are the parts' names in messages."""
    if state is None:
        return (None,) * kind.n_states
    if kind.n_states == 1:
        parts: tuple[Any, ...] = (state,)
    elif not isinstance(state, (tuple, list)) or len(state) != kind.n_states:
        raise TypeError(f"{what} must be a tuple ({', '.join(names)}) for {kind.with_article} cell, "
                        f"got {type(state).__name__}")
    else:
        parts = tuple(state)
    shape = [("B", batch), ("H", hidden)]
    return tuple(None if s is None else float_array(n, s, shape, dtype, MODULE_DTYPE) for n, s in zip(names, parts))


def streamable(layer: str, bidirectional: bool) -> None:
    """Only a unidirectional layer streams: the reverse direction starts from the sequence's end."""
    if bidirectional:
        raise ValueError(f"a bidirectional {layer} cannot stream: its reverse direction reads each sequence from "
                         "its last step, which a stream has not seen yet (stream a unidirectional layer, or run the "
                         "whole sequence through the layer)")


def stream_row(x: Any, batch: int, inputs: int, dtype: np.dtype) -> np.ndarray:
    """A stream's one-row input x [I] (a stream of batch 1) as the steppers take it: [1, I], C-contiguous (a
    strided x copied), of the stream's dtype."""
    if batch != 1:
        raise ValueError(f"x must have shape [B, I] = ({batch}, {inputs}) for a stream of batch {batch} (x [I] is "
                         f"for a stream of batch 1), got shape {x.shape}")
    if x.shape != (inputs,):
        raise ValueError(f"x must have shape [I] = ({inputs},) or [B, I] = (1, {inputs}), got shape {x.shape}")
    return float_array("x", x, [("I", inputs)], dtype, MODULE_DTYPE).reshape(1, inputs)


def layer_position(layer: Any, direction: Any, num_layers: int, num_directions: int) -> tuple[int, int]:
    """The layer and direction a cell's weights come from: ints in 0..L-1 and 0..D-1."""
    return (index_below("layer", layer, num_layers),
            index_below("direction", direction, num_directions, f" (bidirectional={num_directions == 2})"))


def state_position(layer: Any, direction: Any) -> tuple[int, int]:
    """A cell's ``load_state_dict(..., layer=, direction=)`` (None: 0): an int >= 0 and 0 or 1."""
    layer = 0 if layer is None else layer
    direction = 0 if direction is None else direction
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or layer < 0:
        raise ValueError(f"layer must be an int >= 0 (a layer's index), got {layer!r}")
    if isinstance(direction, bool) or direction not in (0, 1):
        raise ValueError(f"direction must be 0 (forward) or 1 (reverse), got {direction!r}")
    return int(layer), int(direction)


def cell_source(cell: str, kind: CellKind, layer: Any, layer_classes: type[_Recurrent]) -> None:
    """``<Cell>.from_layer``'s layer: an rnncore layer of the cell's kind."""
    if not isinstance(layer, layer_classes) or layer.kind is not kind:
        raise TypeError(f"{cell}.from_layer needs an rnncore {kind.title} layer, got {type(layer).__name__}")


def cell_weights(state: Any, sources: dict[str, str], params: dict[str, np.ndarray], strict: bool,
                 position: Iterable[str] | None) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """A cell's ``load_state_dict`` argument: ``sources`` maps each key to read (the cell's names, or one layer
    position's such as ``weight_ih_l1_reverse``) to the cell's parameter. The keys that count are all of ``state``'s
    (``position`` None), or, from a layer's state dict, those at that position (``position``: its four possible
    keys; a bias the cell lacks is unexpected). With ``strict`` they must be exactly ``sources`` (KeyError). Each
    array read must be floating point of the parameter's shape. Returns parameter name -> array for the keys found,
    and the missing and unexpected keys."""
    if not isinstance(state, Mapping):
        raise TypeError(f"load_state_dict: state must be a mapping name -> array, got {type(state).__name__}")
    strict = strict_flag(strict)
    given = set(state) if position is None else set(position) & set(state)
    missing, unexpected = sorted(set(sources) - given), sorted(given - set(sources))
    if strict:
        if missing and position is None and any(str(k).startswith("weight_ih_l") for k in state):
            raise KeyError(f"load_state_dict: missing {missing} (a layer's state dict: pass layer= and direction= "
                           "to take one layer's weights)")
        same_keys("load_state_dict", sources, given)
    arrays = {}
    for key, name in sources.items():
        if key not in state:
            continue
        a = np.asarray(state[key])
        if a.shape != params[name].shape:
            raise ValueError(f"load_state_dict: {key} must have shape {params[name].shape}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"load_state_dict: {key} must be floating point, got {a.dtype}")
        arrays[name] = a
    return arrays, missing, unexpected


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


def exact_class_targets(logits: Any, targets: Any, mask: Any, reduction: Any, label_smoothing: Any) -> bool:
    """Whether a ``softmax_cross_entropy`` call is the common exact one the checks would pass unchanged: logits a
    C-contiguous float32/float64 ndarray [..., C] (at least 2-d, C >= 1, not empty), targets an int64 ndarray of the
    positions' shape, mask None or a bool ndarray of that shape, reduction one of the names, label_smoothing a float
    in [0, 1]. The targets' range is left to the kernel, which refuses the call when a kept one is not a class."""
    return (type(logits) is np.ndarray and (logits.dtype is FLOAT32 or logits.dtype is FLOAT64)
            and logits.ndim >= 2 and logits.size > 0 and logits.flags.c_contiguous
            and type(targets) is np.ndarray and targets.dtype is _INT64 and targets.shape == logits.shape[:-1]
            and (mask is None or (type(mask) is np.ndarray and mask.dtype is _BOOL and mask.shape == targets.shape))
            and type(reduction) is str and reduction in ("mean", "sum", "none")
            and type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0)


def label_smoothing_value(value: Any) -> float:
    """``softmax_cross_entropy``'s ``label_smoothing``: a real number in [0, 1] (torch's range)."""
    eps = real_number("label_smoothing", value)
    if eps > 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {value!r}")
    return eps


def probability_targets(targets: Any, logits: np.ndarray) -> np.ndarray | None:
    """``softmax_cross_entropy``'s ``targets`` when they are class probabilities: a float array of the logits'
    shape ``[..., C]`` and dtype. Returns None for integer targets (class indices, checked by ``index_array``)."""
    arr = targets if isinstance(targets, np.ndarray) else np.asarray(targets)
    if not np.issubdtype(arr.dtype, np.floating):
        if arr.shape == logits.shape:  # integer one-hot rows: class indices never have the logits' shape
            raise TypeError(f"targets of the logits' shape {logits.shape} have dtype {arr.dtype}: class probabilities "
                            f"(e.g. one-hot rows) must have the logits' dtype {logits.dtype} "
                            f"(targets.astype(np.{logits.dtype})), class indices the shape {logits.shape[:-1]}")
        return None
    if arr.shape != logits.shape:
        raise TypeError(f"targets must hold integers (class indices of shape {logits.shape[:-1]}) or be class "
                        f"probabilities of the logits' shape [..., C] = {logits.shape}, got dtype {arr.dtype} "
                        f"and shape {arr.shape}")
    if arr.dtype != logits.dtype:
        raise TypeError(f"targets (class probabilities) have dtype {arr.dtype}, expected {logits.dtype} like logits")
    return np.ascontiguousarray(arr)


def linear_arrays(x: Any, weight: Any, bias: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The dense layer's operands (rnncore.ops.linear_forward): x [N, I], weight [O, I] and bias [O] or None, all of
    x's dtype. Returned C-contiguous."""
    x = float_array("x", x, [("N", None), ("I", None)])
    weight = float_array("weight", weight, [("O", None), ("I", x.shape[1])], x.dtype)
    bias = optional_float_array("bias", bias, [("O", weight.shape[0])], x.dtype)
    return x, weight, bias


def accumulator_of(name: str, a: Any, expected: Sequence[Dim], dtype: np.dtype) -> np.ndarray:
    """``accumulator_array`` of an exact shape and of the call's dtype (the first array argument's)."""
    a = accumulator_array(name, a, [letter for letter, _ in expected])
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}, expected {dtype} like the first array argument")
    if not _shape_matches(a.shape, expected):
        raise ValueError(f"{name} must have shape {_shape_text(expected)}, got shape {a.shape}")
    return a


def linear_gradient_arrays(x: Any, weight: Any, dy: Any, dweight: Any, dbias: Any, need_dx: Any
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """rnncore.ops.linear_backward's arguments: x [N, I] and weight [O, I] as for the forward, dy [N, O] of x's
    dtype, the accumulators dweight [O, I] and dbias [O] (or None) and the bool need_dx."""
    x, weight, _ = linear_arrays(x, weight, None)
    (N, I), O = x.shape, weight.shape[0]
    dy = float_array("dy", dy, [("N", N), ("O", O)], x.dtype)
    dweight = accumulator_of("dweight", dweight, [("O", O), ("I", I)], x.dtype)
    dbias = None if dbias is None else accumulator_of("dbias", dbias, [("O", O)], x.dtype)
    # the kernel writes the accumulators while it reads the rest (and dbias before dweight's product): any overlap
    # gives wrong gradients. All are C-contiguous here, so may_share_memory (extents overlap) is exact.
    for name, accumulator in (("dweight", dweight), ("dbias", dbias)):
        for other_name, other in (("x", x), ("weight", weight), ("dy", dy), ("dweight", dweight)):
            if accumulator is not None and other_name != name and np.may_share_memory(accumulator, other):
                raise ValueError(f"{name} must not share memory with {other_name} (it is added into in place while "
                                 "the others are read)")
    return x, weight, dy, dweight, dbias, flag("need_dx", need_dx)


def module_parameters(module: Any, expected: dict[str, tuple[tuple[int, ...], str]]) -> list[np.ndarray | None]:
    """A built-in module's parameters as its kernels trust them, ``expected`` giving each name's shape and its
    letters (absent ones are None): ``register_parameter`` may have replaced one with an array of another shape or
    dtype (as torch allows; its functions then raise), which a kernel would read and write past the end of."""
    params, name, checked = module._params, type(module).__name__, []
    for key, (shape, letters) in expected.items():
        a = params.get(key)
        if a is not None and a.dtype != module.dtype:
            raise TypeError(f"{name}.{key} has dtype {a.dtype}, expected {module.dtype} {MODULE_DTYPE}")
        if a is not None and a.shape != shape:
            raise ValueError(f"{name}.{key} has shape {a.shape}, expected {shape} = {letters} (a parameter replaced "
                             "by register_parameter must keep its shape)")
        checked.append(a)
    return checked


def linear_parameters(module: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A Linear's ``weight [out_features, in_features]`` and ``bias [out_features]`` (or None), checked."""
    weight, bias = module_parameters(module, {
        "weight": ((module.out_features, module.in_features), "[out_features, in_features]"),
        "bias": ((module.out_features,), "[out_features]")})
    assert weight is not None  # Linear always has one
    return weight, bias


def embedding_weight(module: Any) -> np.ndarray:
    """An Embedding's ``weight [num_embeddings, embedding_dim]``, checked."""
    (weight,) = module_parameters(module, {
        "weight": ((module.num_embeddings, module.embedding_dim), "[num_embeddings, embedding_dim]")})
    assert weight is not None
    return weight


# ---- modules, saving (rnncore.module) -------------------------------------------------------------------------------

def config_method(module: Any) -> Callable[[], dict[str, Any]]:
    """The ``get_config`` a module needs to be saved."""
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise TypeError(f"save needs a module with get_config() (its constructor's keyword arguments); "
                        f"{type(module).__name__} has none")
    return get_config


def parameter_name(module: Any, name: Any, params: dict[str, np.ndarray], none_params: set[str]) -> None:
    """``register_parameter``'s name: a non-empty string without dots (they join nested names), not already an
    attribute of the module other than a parameter (torch's rules)."""
    if not isinstance(name, str):
        raise TypeError(f"register_parameter: name must be a str, got {type(name).__name__}")
    if not name or "." in name:
        raise ValueError(f"register_parameter: name must be a non-empty string without '.', got {name!r}")
    if name not in params and name not in none_params and (name in vars(module) or hasattr(type(module), name)):
        raise ValueError(f"register_parameter: {type(module).__name__} already has an attribute {name!r} "
                         "that is not a parameter")


def parameter_array(name: str, array: Any) -> np.ndarray:
    """``register_parameter``'s array: a float32/float64 ndarray, C-contiguous and writeable (it becomes the
    parameter itself, updated in place by optimizers, so it is never copied)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"register_parameter: {name} must be a numpy.ndarray (or None), got {type(array).__name__}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"register_parameter: {name} must have dtype float32 or float64, got {array.dtype}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        what = "C-contiguous" if not array.flags.c_contiguous else "writeable"
        raise ValueError(f"register_parameter: {name} must be a {what} array (it becomes the parameter, updated "
                         f"in place; it is never copied): pass np.array({name}) for a copy")
    return array


def module_name(module: Any, name: Any, child: Any) -> None:
    """``add_module``'s arguments: a non-empty string without dots, not private, and a module."""
    if not isinstance(name, str):
        raise TypeError(f"add_module: name must be a str, got {type(name).__name__}")
    if not name or "." in name or name.startswith("_"):
        raise ValueError(f"add_module: name must be a non-empty string without '.' and not starting with '_', "
                         f"got {name!r}")
    if not (callable(getattr(child, "parameters", None)) and callable(getattr(child, "gradients", None))):
        raise TypeError(f"add_module: {name} must be a module (with parameters() and gradients()), "
                        f"got {type(child).__name__}")


def state_dict_entries(params: dict[str, np.ndarray], state: Any, strict: bool
                       ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """A module's ``load_state_dict`` arguments: ``state`` a mapping name -> floating-point array of the parameter's
    shape (a mismatch always raises); with ``strict`` exactly the parameters' names (KeyError). Returns the arrays
    to load, and the missing and unexpected names."""
    if not isinstance(state, Mapping):
        raise TypeError(f"load_state_dict: state must be a mapping name -> array, got {type(state).__name__}")
    strict = strict_flag(strict)
    if strict:
        same_keys("load_state_dict", params, state)
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    arrays = {}
    for name, p in params.items():
        if name not in state:
            continue
        a = np.asarray(state[name])
        if a.shape != p.shape:
            raise ValueError(f"load_state_dict: {name} must have shape {p.shape}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"load_state_dict: {name} must be floating point, got {a.dtype}")
        arrays[name] = a
    return arrays, missing, unexpected


def sequential_config(config: Any) -> list[dict[str, Any]]:
    """``Sequential.from_config``'s config: ``{"modules": [spec, ...]}``, each spec a dict (``{"class": ...,
    "config": {...}}``, which the ``build`` callback checks)."""
    modules = config.get("modules") if isinstance(config, dict) else None
    if not isinstance(modules, list) or not all(isinstance(spec, dict) for spec in modules):
        raise ValueError("Sequential.from_config: config must be {'modules': [{'class': ..., 'config': {...}}, ...]}"
                         f", got {config!r:.200}")
    return modules


def load_classes(cls: Any) -> tuple[type, ...]:
    """``rnncore.load``'s ``cls``: None, a class, or a list/tuple of classes. Returns a tuple of classes."""
    if cls is None:
        return ()
    items = tuple(cls) if isinstance(cls, (list, tuple)) else (cls,)
    bad = [item for item in items if not isinstance(item, type)]
    if bad:
        raise TypeError(f"cls must be a class or a list/tuple of classes (the saved model's), got "
                        f"{type(bad[0]).__name__}")
    return items


def nested_spec(path: str, spec: Any) -> tuple[str, dict[str, Any]]:
    """A saved module spec ``{"class": "module:qualname", "config": {...}}`` (the file's top level, or a nested one
    passed to ``build``). Returns (class name, config)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class"), str):
        raise ValueError(f"{path}: a module spec must be {{'class': 'module:qualname', 'config': {{...}}}}, got "
                         f"{spec!r:.200}")
    config = spec.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the saved config must be a JSON object, got {type(config).__name__}")
    return spec["class"], config


def state_object(what: str, obj: Any) -> Any:
    """An optimizer or lr schedule to save or restore: it needs ``state_dict()`` and ``load_state_dict()``."""
    if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
        raise TypeError(f"{what} must have state_dict() and load_state_dict() (an rnncore.optim optimizer or "
                        f"schedule), got {type(obj).__name__}")
    return obj


def sequential_call_arguments(given: Mapping[str, Any], takes: Sequence[tuple[str, Any, set[str]]]) -> None:
    """``Sequential.__call__``'s ``lengths``/``padding`` (``given``: those not at their default): each must reach a
    module (``takes``: (name, module, the arguments its call takes) per module), and ``padding`` every module that
    takes ``lengths`` when both are given (one that does not would read left-padded data as right-padded)."""
    for argument, value in given.items():
        if not any(argument in taken for _, _, taken in takes):
            shown = "lengths" if argument == "lengths" else f"{argument}={value!r}"
            raise ValueError(f"Sequential got {shown}, but none of its modules takes {argument} (a recurrent layer "
                             "does)")
    if "padding" in given and "lengths" in given:
        for name, module, taken in takes:
            if "lengths" in taken and "padding" not in taken:
                raise ValueError(f"Sequential got padding={given['padding']!r}, but module {name} "
                                 f"({type(module).__name__}) takes lengths and not padding, so it would read the "
                                 "padded steps as right padding")


# ---- gradient clipping (rnncore.utils) ------------------------------------------------------------------------------

def clip_gradients(grads: Any) -> list[np.ndarray]:
    """What clipping takes: a dict of gradient arrays, a list/tuple of them, one array, or a model (its
    ``gradients()``, only those of ``trainable_parameters()`` when it has that method: frozen parameters' gradients
    are neither counted nor changed); each a writeable float32/float64 ndarray. Returns the arrays (clipped in place
    by the caller)."""
    if callable(getattr(grads, "gradients", None)):
        model = grads
        grads = model.gradients()
        if callable(getattr(model, "trainable_parameters", None)) and isinstance(grads, dict):
            trainable = model.trainable_parameters()
            grads = {name: g for name, g in grads.items() if name in trainable}
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
        raise TypeError("params must be a model with parameters() and gradients(), a dict name -> ndarray or a "
                        f"list of parameter groups, got {type(params).__name__}")
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


def optimizer_group_spec(index: int, group: Any, hyper: Mapping[str, Any]
                         ) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """One entry of an optimizer's list of parameter groups: a dict with "params" (a model or a dict name ->
    ndarray) and hyper-parameter overrides (names of ``hyper``). Returns (model or None, name -> array, overrides)."""
    if not isinstance(group, Mapping) or "params" not in group:
        raise TypeError(f"params[{index}] must be a parameter group, a dict {{'params': a model with parameters() "
                        "and gradients() or a dict name -> ndarray, plus hyper-parameters to override}, "
                        f"got {type(group).__name__}")
    unknown = sorted(str(k) for k in group if k != "params" and k not in hyper)
    if unknown:
        raise ValueError(f"params[{index}] has unknown keys {unknown} (a group holds 'params' and the optimizer's "
                         f"hyper-parameters {list(hyper)})")
    model, arrays = optimizer_parameters(group["params"])
    return model, arrays, {k: v for k, v in group.items() if k != "params"}


def optimizer_groups_distinct(groups: Sequence[Mapping[str, np.ndarray]]) -> None:
    """No parameter array in two groups (torch's rule: it would be updated twice per step)."""
    seen: dict[int, str] = {}
    for arrays in groups:
        for name, p in arrays.items():
            if id(p) in seen:
                raise ValueError(f"parameter {name!r} is also {seen[id(p)]!r}: a parameter may appear in only one "
                                 "parameter group")
            seen[id(p)] = name


def optimizer_group_keys(index: int, group: Any, hyper: Mapping[str, Any], built: Sequence[Any], count: int
                         ) -> None:
    """A live ``opt.param_groups[index]`` at ``step``: still the list the optimizer built (``count`` groups), a
    dict with its original "params", every hyper-parameter and nothing else ("initial_lr", a schedule's, aside)."""
    if count != len(built):
        raise ValueError(f"param_groups has {count} groups, the optimizer was built with {len(built)}: groups "
                         "cannot be added or removed (build a new optimizer)")
    if not isinstance(group, dict):
        raise TypeError(f"param_groups[{index}] must be a dict, got {type(group).__name__}")
    if group.get("params") is not built[index]:
        raise ValueError(f"param_groups[{index}]['params'] was replaced; the parameters are fixed when the "
                         "optimizer is built (build a new optimizer)")
    allowed = {"params", "initial_lr", *hyper}
    missing = sorted(k for k in hyper if k not in group)
    unexpected = sorted(str(k) for k in group if k not in allowed)
    if missing or unexpected:
        raise KeyError(f"param_groups[{index}]: missing {missing}, unexpected {unexpected} (a group holds 'params' "
                       f"and the hyper-parameters {list(hyper)})")
    if "initial_lr" in group:
        hyper_non_negative(f"param_groups[{index}]['initial_lr']", group["initial_lr"])


def optimizer_trainable_names(index: int, model: Any, params: Mapping[str, np.ndarray], prefix: str,
                              trainable: Any = None) -> list[str]:
    """The names (the optimizer's: ``prefix`` + the model's) of ``model.trainable_parameters()`` (or of
    ``trainable``, that result already in hand), each one of the parameters the optimizer was built over (the very
    array: a replaced sub-module has the old names, new arrays)."""
    if trainable is None:
        trainable = model.trainable_parameters()
    if not isinstance(trainable, Mapping):
        raise TypeError(f"{type(model).__name__}.trainable_parameters() must return a dict name -> ndarray, "
                        f"got {type(trainable).__name__}")
    names = [prefix + str(name) for name in trainable]
    unknown = sorted(name for name, p in zip(names, trainable.values()) if params.get(name) is not p)
    if unknown:
        raise ValueError(f"{type(model).__name__}.trainable_parameters() (param_groups[{index}]) holds {unknown}, "
                         "which the optimizer was not built over (build a new optimizer)")
    return names


def optimizer_zero_grad_models(models: Sequence[Any]) -> list[Any]:
    """The models ``opt.zero_grad()`` zeroes: every group must have one."""
    if any(model is None for model in models):
        raise TypeError("zero_grad() zeroes the gradients of the model(s) the optimizer was built over, but it was "
                        "built from a dict of parameters: the gradients are yours, passed to step(grads), so zero "
                        "them yourself (or build the optimizer over the model)")
    return list(models)


def optimizer_gradients(groups: Sequence[Mapping[str, Any]], trainable: Sequence[Sequence[str]], grads: Any,
                        models: Sequence[Any], prefixed: bool) -> dict[str, np.ndarray]:
    """``step(grads)``'s argument, name -> real array of the parameter's shape, returned in the parameter's dtype
    for every ``trainable`` name (the names of frozen parameters may be given; they are not read). ``grads`` None:
    each group's model's ``gradients()`` (``prefixed``: the model's names get the group's "<index>." prefix)."""
    params = {name: p for group in groups for name, p in group["params"].items()}
    if grads is None:
        grads = {}
        for i, model in enumerate(models):
            if model is None:
                raise TypeError("step() needs grads (a dict name -> ndarray) when the optimizer was built from a "
                                "dict of parameters")
            given = model.gradients()
            if not isinstance(given, Mapping):
                raise TypeError(f"{type(model).__name__}.gradients() must return a dict name -> ndarray")
            grads.update({(f"{i}." if prefixed else "") + str(name): g for name, g in given.items()})
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a dict name -> ndarray, got {type(grads).__name__}")
    required = [name for names in trainable for name in names]
    missing = sorted(name for name in required if name not in grads)
    unexpected = sorted(str(name) for name in grads if name not in params)
    if missing or unexpected:
        raise ValueError(f"grads must have the parameters' names: missing {missing}, unexpected {unexpected}")
    resolved = {}
    for name in required:
        p, g = params[name], grads[name]
        if not isinstance(g, np.ndarray):
            g = np.asarray(g)
        if g.dtype == p.dtype and g.shape == p.shape:  # the usual case (a model's own buffers), checked cheaply
            resolved[name] = g
            continue
        if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
            raise TypeError(f"gradient {name!r} must be a real array, got dtype {g.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"gradient {name!r} must have the parameter's shape {p.shape}, got {g.shape}")
        resolved[name] = g if g.dtype == p.dtype else g.astype(p.dtype)
    return resolved


def optimizer_state_header(state_dict: Any, optimizer: str) -> None:
    """An optimizer ``state_dict``'s outline: a dict with "optimizer" (this class's name), "param_groups" and
    "state"."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    missing = sorted({"optimizer", "param_groups", "state"} - set(state_dict))
    if missing:
        raise KeyError(f"load_state_dict: missing entries {missing}")
    if state_dict["optimizer"] != optimizer:
        raise ValueError(f"load_state_dict: the state is for {state_dict['optimizer']!r}, "
                         f"this optimizer is {optimizer!r}")


def optimizer_state_groups(saved: Any, groups: Sequence[Mapping[str, Any]], hyper: Mapping[str, Any]
                           ) -> list[Mapping[str, Any]]:
    """An optimizer ``state_dict``'s "param_groups": as many groups as the optimizer has, each a dict with "params"
    (the same names, in order), every hyper-parameter and nothing else (a schedule's "initial_lr" aside)."""
    if not isinstance(saved, (list, tuple)) or len(saved) != len(groups):
        got = f"{len(saved)} groups" if isinstance(saved, (list, tuple)) else type(saved).__name__
        raise ValueError(f"load_state_dict: 'param_groups' must be a list of {len(groups)} groups (this "
                         f"optimizer's), got {got}")
    for i, (entry, group) in enumerate(zip(saved, groups)):
        if not isinstance(entry, Mapping):
            raise TypeError(f"load_state_dict: param_groups[{i}] must be a dict, got {type(entry).__name__}")
        same_keys(f"load_state_dict: param_groups[{i}]", {"params", *hyper},
                  [k for k in entry if k != "initial_lr"])
        if list(entry["params"]) != list(group["params"]):
            raise ValueError(f"load_state_dict: param_groups[{i}] holds the parameters {list(entry['params'])}, "
                             f"this optimizer's group holds {list(group['params'])}")
        if "initial_lr" in entry:
            hyper_non_negative(f"param_groups[{i}]['initial_lr']", entry["initial_lr"])
    return list(saved)


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


def schedule_optimizer(schedule: str, optimizer: Any) -> Any:
    """A schedule's ``optimizer``: one of ``rnncore.optim``'s (its ``param_groups`` are what the schedule sets)."""
    from .optim import Optimizer

    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{schedule}'s optimizer must be an rnncore.optim optimizer (SGD, Adam, ...), "
                        f"got {type(optimizer).__name__}")
    return optimizer


def schedule_factor(name: str, value: Any, allow_zero: bool, allow_one: bool = True) -> float:
    """A schedule's multiplicative factor in [0, 1] (``allow_zero`` False: > 0; ``allow_one`` False: < 1)."""
    value = hyper_number(name, value)
    if value < 0.0 or (value == 0.0 and not allow_zero) or value > 1.0 or (value == 1.0 and not allow_one):
        interval = ("[0, " if allow_zero else "(0, ") + ("1]" if allow_one else "1)")
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def milestone_list(milestones: Any) -> list[int]:
    """``MultiStepLR``'s milestones: epochs (ints >= 0), returned sorted (a repeated one counts twice, as torch)."""
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
        raise TypeError(f"milestones must be a list of epochs (ints >= 0), got {type(milestones).__name__}")
    return sorted(non_negative_int("each milestone", m) for m in milestones)


def per_group_numbers(name: str, value: Any, groups: int) -> list[float]:
    """A number >= 0 for every parameter group: one number, or a list/tuple with one per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{name} must have one value per parameter group ({groups}), got {len(value)}")
        return [hyper_non_negative(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [hyper_non_negative(name, value)] * groups


def lr_lambdas(lr_lambda: Any, groups: int) -> list[Callable[[int], float]]:
    """``LambdaLR``'s ``lr_lambda``: one function for every group, or a list/tuple with one per group."""
    fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * groups
    if len(fns) != groups:
        raise ValueError(f"lr_lambda must be one function or a list of {groups} (one per parameter group), "
                         f"got {len(fns)}")
    for i, fn in enumerate(fns):
        if not callable(fn):
            raise TypeError(f"lr_lambda{'' if fns is not lr_lambda else f'[{i}]'} must be a function epoch -> "
                            f"factor, got {type(fn).__name__}")
    return fns


def schedule_metric(metrics: Any) -> float:
    """``ReduceLROnPlateau.step``'s ``metrics``: a real number (a NumPy scalar or 0-d array too); NaN counts as no
    improvement, as in torch."""
    if isinstance(metrics, np.ndarray) and metrics.ndim == 0:
        metrics = metrics[()]
    if isinstance(metrics, (bool, np.bool_)) or not isinstance(metrics, numbers.Real):
        raise TypeError(f"metrics must be a real number (the monitored value), got {type(metrics).__name__}")
    return float(metrics)


ScheduleCheck = Callable[[str, Any, int], Any]
"""One schedule entry's check, shared by the constructor and ``load_state_dict``: ``(name, value, number of
parameter groups) -> the value to keep``, raising TypeError/ValueError naming the entry."""


def schedule_check(check: Callable[..., Any], **options: Any) -> ScheduleCheck:
    """``check(name, value, **options)`` (a check of one value) as a ``ScheduleCheck``."""
    return lambda name, value, groups: check(name, value, **options)


def schedule_count(name: str, value: Any, groups: int) -> int:
    """A schedule's counter (``last_epoch``, ``step_count``): an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def schedule_lrs(name: str, value: Any, groups: int) -> list[float]:
    """``base_lrs`` / ``last_lr`` (each group's ``initial_lr``, the rates last set): one lr >= 0 per group."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list, got {value!r}")
    if len(value) != groups:
        raise ValueError(f"{name} must have one entry per parameter group ({groups}), got {len(value)}")
    return [hyper_non_negative(f"{name}[{i}]", v) for i, v in enumerate(value)]


def schedule_milestones(name: str, value: Any, groups: int) -> list[int]:
    """``MultiStepLR``'s milestones (see ``milestone_list``)."""
    return milestone_list(value)


def schedule_best(name: str, value: Any, groups: int) -> float:
    """``ReduceLROnPlateau``'s best metric so far: a real number, infinite before the first step, never NaN."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


def schedule_state(state: Any, schedule: str, checks: Mapping[str, ScheduleCheck], groups: int) -> dict[str, Any]:
    """A schedule's ``state_dict``: this schedule's name and exactly the entries of ``checks`` (the class's table:
    its constructor's checks and those of its counters and rates), each passing its check. Returns the checked
    entries; the first failure raises (TypeError/ValueError) "load_state_dict: <entry> ..."."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state_dict must be a dict, got {type(state).__name__}")
    if state.get("scheduler") != schedule:
        raise ValueError(f"load_state_dict: the state is for {state.get('scheduler')!r}, this schedule is "
                         f"{schedule!r}")
    same_keys("load_state_dict", checks, [k for k in state if k != "scheduler"])
    checked = {}
    for key, check in checks.items():
        try:
            checked[key] = check(key, state[key], groups)
        except (TypeError, ValueError) as e:
            raise type(e)(f"load_state_dict: {e}") from None
    return checked


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


# ---- decoding (rnncore.decode) ---------------------------------------------------------------------------------------

def token_id(name: str, value: Any) -> int:
    """A token id (bos, eos): an int >= 0 (its upper bound, V, is checked against the first step's log-probs)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int token id, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be a token id >= 0, got {value}")
    return int(value)


def step_log_probs(log_probs: Any, rows: int, eos: int | None) -> np.ndarray:
    """What a decoding model's ``step`` returned: a float ndarray log_probs [N, V] with N = the tokens given and
    V > eos."""
    if not isinstance(log_probs, np.ndarray) or log_probs.dtype not in FLOAT_DTYPES:
        got = type(log_probs).__name__ if not isinstance(log_probs, np.ndarray) else f"dtype {log_probs.dtype}"
        raise TypeError(f"model.step must return (log_probs, state) with log_probs a float32/float64 numpy.ndarray "
                        f"of shape [N, V] = ({rows}, ?), got {got}")
    if log_probs.ndim != 2 or log_probs.shape[0] != rows:
        raise ValueError(f"model.step's log_probs must have shape [N, V] = ({rows}, ?), got shape {log_probs.shape}")
    if eos is not None and log_probs.shape[1] <= eos:
        raise ValueError(f"eos must lie in 0..V-1 = 0..{log_probs.shape[1] - 1} (V from model.step's log_probs), "
                         f"got {eos}")
    return log_probs


def top_k_value(value: Any) -> int | None:
    """Sampling's ``top_k``: None (off) or an int >= 1."""
    return None if value is None else positive_int("top_k", value)


def top_p_value(value: Any) -> float | None:
    """Sampling's ``top_p`` (nucleus): None (off) or a number in (0, 1]."""
    if value is None:
        return None
    p = real_number("top_p", value, 0.0, allow_equal=False)
    if p > 1.0:
        raise ValueError(f"top_p must be a number in (0, 1], got {value!r}")
    return p


def finite_number(name: str, value: Any) -> float:
    """Any finite real number (not bool), e.g. a length penalty, which may be negative."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def n_best_value(value: Any, beam_size: int) -> int:
    """Beam search's ``n_best``: an int in 1..beam_size."""
    n = positive_int("n_best", value)
    if n > beam_size:
        raise ValueError(f"n_best must lie in 1..beam_size = 1..{beam_size}, got {n}")
    return n


def source_count(batch: Any) -> int:
    """The number of sources of a decoding call's ``batch``: the int itself, else len(batch)."""
    if isinstance(batch, numbers.Integral) and not isinstance(batch, bool):
        return positive_int("batch", batch)
    try:
        n = len(batch)
    except TypeError:
        raise TypeError(f"batch must be an int (the number of sequences) or a sized batch of sources (len() "
                        f"gives their number), got {type(batch).__name__}") from None
    if n < 1:
        raise ValueError(f"batch must hold at least 1 source, got {n}")
    return n


def target_sequences(targets: Any, sources: int) -> list[np.ndarray]:
    """``sequence_log_prob``'s targets: N token sequences (a list/tuple of int sequences, or an int array [N, L]),
    each returned as int64 [L_i] of ids >= 0 (the bound V is checked against the model's log-probs)."""
    if isinstance(targets, np.ndarray) and targets.ndim == 2:
        targets = list(targets)
    if not isinstance(targets, (list, tuple)) or len(targets) != sources:
        got = f"{len(targets)} sequences" if isinstance(targets, (list, tuple)) else type(targets).__name__
        raise ValueError(f"targets must be a list of N = {sources} token sequences (one per source), got {got}")
    out = []
    for i, t in enumerate(targets):
        arr = np.asarray(t)
        if arr.size == 0 and arr.ndim == 1:  # [] is float64 to numpy
            arr = np.zeros(0, np.int64)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 1:
            raise TypeError(f"targets[{i}] must be a 1-d sequence of int token ids, got dtype {arr.dtype} and "
                            f"shape {arr.shape}")
        if arr.size and arr.min() < 0:
            raise ValueError(f"targets[{i}] must hold token ids >= 0, got {arr[arr < 0].tolist()[:5]}")
        out.append(arr.astype(np.int64))
    return out


# ---- decoding ops (ops/decoding.py) ----

def top_k_arguments(scores: Any, k: Any, offsets: Any) -> tuple[np.ndarray, int, np.ndarray | None]:
    """``top_k``'s scores [R, C] (float32/float64, C >= 1), k in 1..C, offsets [R] (any real dtype, read as float64:
    the kernel only reads them) or None."""
    scores = float_array("scores", scores, [("R", None), ("C", None)])
    if scores.shape[1] == 0:
        raise ValueError("scores must have at least one column (C >= 1), got shape " + str(scores.shape))
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must lie in 1..C = 1..{scores.shape[1]}, got {k}")
    k = int(k)
    if offsets is None:
        return scores, k, None
    o = np.asarray(offsets)
    if o.dtype == np.bool_ or not (np.issubdtype(o.dtype, np.floating) or np.issubdtype(o.dtype, np.integer)):
        raise TypeError(f"offsets must hold real numbers, got dtype {o.dtype}")
    if o.shape != (scores.shape[0],):
        raise ValueError(f"offsets must have shape [R] = ({scores.shape[0]},), got shape {o.shape}")
    return scores, k, np.ascontiguousarray(o, dtype=np.float64)


def log_softmax_input(x: Any) -> np.ndarray:
    """``log_softmax``'s x: a float array of at least one axis whose last axis (the classes) is not empty."""
    x = scores_array("x", x)
    if x.shape[-1] == 0:
        raise ValueError(f"x must have at least one class on its last axis, got shape {x.shape}")
    return x
# ---- attention ops and modules (rnncore.ops.attention, rnncore.attention) -------------------------------------------

def _at_least_one(name: str, a: np.ndarray, letters: Sequence[str]) -> None:
    """Every axis of an attention operand must be >= 1 (B, Tx, Ty, D..., A)."""
    if 0 in a.shape:
        raise ValueError(f"{name} must have every axis >= 1 ([{', '.join(letters)}]), got shape {a.shape}")


def attention_scalar(name: str, value: Any, dtype: np.dtype) -> np.ndarray | None:
    """A scalar parameter of an attention op (score_bias, normalize_gain): None, a real number (made a 0-d array of
    the call's dtype) or a 0-d / one-element ndarray of the call's dtype (never cast). Returns a 0-d array or None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.dtype != dtype:
            raise TypeError(f"{name} has dtype {value.dtype}, expected {dtype} like the first array argument; convert "
                            f"explicitly (e.g. {name}.astype(np.{dtype})) — rnncore never casts silently")
        if value.size != 1:
            raise ValueError(f"{name} must be a scalar (a 0-d array or a number), got shape {value.shape}")
        return np.array(value.reshape(()), order="C")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or a 0-d array, got {type(value).__name__}")
    return np.array(value, dtype=dtype)


def attention_lengths(lengths: Any, batch: int, steps: int) -> np.ndarray | None:
    """Source lengths of an attention op: integers [B] in 0..Tx (0: the sample attends to nothing)."""
    return lengths_array(lengths, batch, steps, shortest=0, letter="Tx")


def energy_activation_name(value: Any) -> bool:
    """Additive attention's ``energy_activation``: None (e = s) or "relu"; returns whether it is relu."""
    if value is None:
        return False
    choice("energy_activation", value, ("relu",))
    return True


class AdditiveArrays(NamedTuple):
    """One additive attention step's arguments as the kernel takes them: the source as a prepared source object or
    as its three arrays (the others None); ``gain`` the normalize option's g."""
    query: np.ndarray
    source: Any
    projected_keys: np.ndarray | None
    values: np.ndarray | None
    lengths: np.ndarray | None
    w_q: np.ndarray
    b_a: np.ndarray | None
    w_v: np.ndarray
    score_bias: np.ndarray | None
    relu: bool
    gain: float | None


def additive_source_arrays(projected_keys: Any, values: Any, lengths: Any, dtype: np.dtype | None = None,
                           batch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An additive attention source: projected_keys [B, Tx, A] (fixes the dtype unless given, and B), values
    [B, Tx, Dv], lengths [B] in 0..Tx or None."""
    projected_keys = float_array("projected_keys", projected_keys, [("B", batch), ("Tx", None), ("A", None)], dtype)
    _at_least_one("projected_keys", projected_keys, ("B", "Tx", "A"))
    B, Tx, _ = projected_keys.shape
    values = float_array("values", values, [("B", B), ("Tx", Tx), ("Dv", None)], projected_keys.dtype)
    _at_least_one("values", values, ("B", "Tx", "Dv"))
    return projected_keys, values, attention_lengths(lengths, B, Tx)


def additive_attention_arrays(query: Any, projected_keys: Any, values: Any, w_q: Any, b_a: Any, w_v: Any,
                              lengths: Any, score_bias: Any, energy_activation: Any, normalize_gain: Any,
                              source: Any, source_types: tuple[type, ...]) -> AdditiveArrays:
    """``additive_attention_forward``'s arguments: query [B, Dq] fixes the dtype, B and Dq; the source (Tx, A, Dv):
    ``source``, a prepared source of query's dtype and B (then projected_keys, values and lengths None), or
    projected_keys [B, Tx, A], values [B, Tx, Dv] and lengths [B] in 0..Tx or None; w_q [A, Dq]; b_a [A] or None;
    w_v [A]; score_bias and normalize_gain scalars or None; energy_activation None or "relu"."""
    query = float_array("query", query, [("B", None), ("Dq", None)])
    dtype = query.dtype
    _at_least_one("query", query, ("B", "Dq"))
    B, Dq = query.shape
    if source is not None:
        if not isinstance(source, source_types):
            raise TypeError(f"source must be a source from additive_attention_source(...) or None, got "
                            f"{type(source).__name__}")
        given = [name for name, a in (("projected_keys", projected_keys), ("values", values), ("lengths", lengths))
                 if a is not None]
        if given:
            raise ValueError(f"with source= the source holds the keys, values and lengths: {', '.join(given)} must "
                             "be None")
        sizes: Any = source  # a source object of the compiled module (dtype, B, Tx, A, Dv)
        if np.dtype(sizes.dtype) != dtype:
            raise TypeError(f"source has dtype {sizes.dtype}, expected {dtype} like query")
        if sizes.B != B:
            raise ValueError(f"query must have the source's B = {sizes.B} rows, got shape {query.shape}")
        A = sizes.A
    else:
        projected_keys, values, lengths = additive_source_arrays(projected_keys, values, lengths, dtype, B)
        A = projected_keys.shape[2]
    w_q = float_array("w_q", w_q, [("A", A), ("Dq", Dq)], dtype)
    b_a = optional_float_array("b_a", b_a, [("A", A)], dtype)
    w_v = float_array("w_v", w_v, [("A", A)], dtype)
    relu = energy_activation_name(energy_activation)
    bias = attention_scalar("score_bias", score_bias, dtype)
    gain = attention_scalar("normalize_gain", normalize_gain, dtype)
    return AdditiveArrays(query, source, projected_keys, values, lengths, w_q, b_a, w_v, bias, relu,
                          None if gain is None else float(gain))


def attention_keys_arrays(keys: Any, w_k: Any) -> tuple[np.ndarray, np.ndarray]:
    """``additive_attention_keys``'s operands: keys [B, Tx, Dk] (fixes the dtype) and w_k [A, Dk]."""
    keys = float_array("keys", keys, [("B", None), ("Tx", None), ("Dk", None)])
    _at_least_one("keys", keys, ("B", "Tx", "Dk"))
    w_k = float_array("w_k", w_k, [("A", None), ("Dk", keys.shape[2])], keys.dtype)
    _at_least_one("w_k", w_k, ("A", "Dk"))
    return keys, w_k


def attention_workspace(workspace: Any, op: str, forward: str, types: tuple[type, ...]) -> Any:
    """The workspace argument of an attention backward: one that ``forward(..., training=True)`` returned."""
    if not isinstance(workspace, types):
        hint = " (was the forward run with training=False?)" if workspace is None else ""
        raise TypeError(f"{op}: workspace must be the workspace returned by {forward}(..., training=True), "
                        f"got {type(workspace).__name__}{hint}")
    return workspace


def _no_shared_memory(accumulators: dict[str, np.ndarray], others: dict[str, np.ndarray | None]) -> None:
    """An accumulator added into in place while the others are read may share memory with none of them."""
    for name, acc in accumulators.items():
        for other_name, other in others.items():
            if other is not None and other_name != name and np.may_share_memory(acc, other):
                raise ValueError(f"{name} must not share memory with {other_name} (it is added into in place while "
                                 "the others are read)")


def additive_upstream(ws: Any, dcontext: Any, dalpha: Any, dprojected_keys: Any, dvalues: Any
                      ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray]:
    """``additive_attention_backward``'s gradients against the forward that made ``ws``: dcontext [B, Dv] and
    dalpha [B, Tx] (None = zeros); the accumulators dprojected_keys [B, Tx, A] and dvalues [B, Tx, Dv], added into
    in place (None: new zeros)."""
    dtype, B, Tx = np.dtype(ws.dtype), ws.B, ws.Tx
    dcontext = optional_float_array("dcontext", dcontext, [("B", B), ("Dv", ws.Dv)], dtype)
    dalpha = optional_float_array("dalpha", dalpha, [("B", B), ("Tx", Tx)], dtype)
    kp_shape, v_shape = [("B", B), ("Tx", Tx), ("A", ws.A)], [("B", B), ("Tx", Tx), ("Dv", ws.Dv)]
    dkp = (np.zeros((B, Tx, ws.A), dtype) if dprojected_keys is None
           else accumulator_of("dprojected_keys", dprojected_keys, kp_shape, dtype))
    dvals = np.zeros((B, Tx, ws.Dv), dtype) if dvalues is None else accumulator_of("dvalues", dvalues, v_shape, dtype)
    _no_shared_memory({"dprojected_keys": dkp, "dvalues": dvals},
                      {"dcontext": dcontext, "dalpha": dalpha, "dprojected_keys": dkp, "dvalues": dvals})
    return dcontext, dalpha, dkp, dvals


LUONG_SCORES = ("dot", "general", "concat")  # the kernel takes the index: its LuongScore values, in this order


class LuongArrays(NamedTuple):
    """Luong attention's arguments as the kernel takes them (``score`` its index in LUONG_SCORES)."""
    query: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    score: int
    weight: np.ndarray | None
    v_a: np.ndarray | None
    lengths: np.ndarray | None


def luong_attention_arrays(query: Any, keys: Any, values: Any, score: Any, weight: Any, v_a: Any, lengths: Any
                           ) -> LuongArrays:
    """``luong_attention_forward``'s arguments: query [B, Ty, Dq] fixes the dtype, B, Ty, Dq; keys [B, Tx, Dk]
    (dot: Dk = Dq); values [B, Tx, Dv]; score "dot" | "general" | "concat"; weight None (dot), [Dq, Dk] (general)
    or [A, Dq + Dk] (concat); v_a [A] (concat only); lengths [B] in 0..Tx or None."""
    name = choice("score", score, LUONG_SCORES)
    query = float_array("query", query, [("B", None), ("Ty", None), ("Dq", None)])
    dtype = query.dtype
    _at_least_one("query", query, ("B", "Ty", "Dq"))
    B, _, Dq = query.shape
    keys = float_array("keys", keys, [("B", B), ("Tx", None), ("Dq" if name == "dot" else "Dk",
                                                                 Dq if name == "dot" else None)], dtype)
    _at_least_one("keys", keys, ("B", "Tx", "Dk"))
    Tx, Dk = keys.shape[1:]
    values = float_array("values", values, [("B", B), ("Tx", Tx), ("Dv", None)], dtype)
    _at_least_one("values", values, ("B", "Tx", "Dv"))
    needs = {"dot": "weight=None and v_a=None", "general": "weight W [Dq, Dk] and v_a=None",
             "concat": "weight W_a [A, Dq + Dk] and v_a [A]"}[name]
    for arg, given, wanted in (("weight", weight, name != "dot"), ("v_a", v_a, name == "concat")):
        if (given is None) == wanted:
            raise ValueError(f"score={name!r} takes {needs}: {arg} {'is missing' if wanted else 'must be None'}, "
                             f"got {type(given).__name__}")
    if name == "general":
        weight = float_array("weight", weight, [("Dq", Dq), ("Dk", Dk)], dtype)
    elif name == "concat":
        weight = float_array("weight", weight, [("A", None), ("Dq + Dk", Dq + Dk)], dtype)
        _at_least_one("weight", weight, ("A", "Dq + Dk"))
        v_a = float_array("v_a", v_a, [("A", weight.shape[0])], dtype)
    return LuongArrays(query, keys, values, LUONG_SCORES.index(name), weight, v_a, attention_lengths(lengths, B, Tx))


def luong_upstream(ws: Any, dcontext: Any, dalpha: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``luong_attention_backward``'s gradients: dcontext [B, Ty, Dv] and dalpha [B, Ty, Tx], None = zeros."""
    dtype = np.dtype(ws.dtype)
    return (optional_float_array("dcontext", dcontext, [("B", ws.B), ("Ty", ws.Ty), ("Dv", ws.Dv)], dtype),
            optional_float_array("dalpha", dalpha, [("B", ws.B), ("Ty", ws.Ty), ("Tx", ws.Tx)], dtype))


def normalizable_score_vector(w_v: Any) -> np.ndarray:
    """normalize's w_v [A]: a float vector that is not all zeros (w/‖w‖ is undefined at 0)."""
    w_v = float_array("w_v", w_v, [("A", None)])
    if not np.any(w_v):
        raise ValueError("w_v must not be all zeros with normalize: w_v / ‖w_v‖ is undefined")
    return w_v


# ---- the fused attention decoder (rnncore.ops.decoder) ---------------------------------------------------------------

DECODER_CELLS = ("lstm", "gru", "rnn")
DECODER_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class DecoderCall(NamedTuple):
    """A checked ``attention_decoder_forward`` call in the op's (and the kernel's) argument order: the arrays
    C-contiguous of x's dtype (None where absent; the score bias a 0-d array), the options as their plain values."""
    x: np.ndarray
    h0: np.ndarray | None
    c0: np.ndarray | None
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    keys: np.ndarray
    values: np.ndarray
    lengths: np.ndarray | None
    cell: str
    reset_after: bool
    nonlinearity: str
    score: str
    w_q: np.ndarray | None
    b_a: np.ndarray | None
    w_v: np.ndarray | None
    score_bias: np.ndarray | None
    energy_activation: str | None
    position: str
    input_feeding: bool
    w_c: np.ndarray | None
    b_c: np.ndarray | None
    o0: np.ndarray | None
    training: bool


def _absent(name: str, value: Any, why: str) -> None:
    if value is not None:
        raise ValueError(f"{name} must be None {why}, got {type(value).__name__}")


def _at_least_1(letter: str, size: int, source: str) -> None:
    if size < 1:
        raise ValueError(f"{letter} must be at least 1 ({source}), got {letter} = {size}")


def decoder_scalar(name: str, value: Any, dtype: np.dtype) -> np.ndarray | None:
    """A scalar parameter (the score bias): None, a real number or a 0-d float array of the call's dtype; returned
    as a 0-d array of that dtype."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return float_array(name, value, [], dtype)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or a 0-d array of dtype {dtype}, got {type(value).__name__}")
    return np.array(value, dtype=dtype)


def decoder_arguments(x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, keys: Any, values: Any,
                      lengths: Any, cell: Any, reset_after: Any, nonlinearity: Any, score: Any, w_q: Any, b_a: Any,
                      w_v: Any, score_bias: Any, energy_activation: Any, position: Any, input_feeding: Any, w_c: Any,
                      b_c: Any, o0: Any, training: Any, rows: str = "B") -> DecoderCall:
    """Every rule of ``attention_decoder_forward`` (DECODER_SPEC.md): options first, then x (which fixes the dtype,
    Ty, B and E), w_hh (H), keys and values (Tx, K, Dv), the score's and the position's parameters (A, O), then
    w_ih [G*H, E + Dc] and the states. ``rows``: the letter the messages give the batch axis of x, the keys, values
    and lengths (a decoding session checks its N sources here; its B rows are its own)."""
    cell = choice("cell", cell, DECODER_CELLS)
    reset_after = reset_after_flag(reset_after)
    nonlinearity = nonlinearity_name(nonlinearity)
    score = choice("score", score, ("additive", "dot"))
    position = choice("position", position, ("before", "after"))
    input_feeding = flag("input_feeding", input_feeding)
    training = flag("training", training)
    if energy_activation is not None:
        if not isinstance(energy_activation, str) or energy_activation != "relu":
            raise ValueError(f"energy_activation must be None or 'relu', got {energy_activation!r}")
        energy_activation = "relu"  # the plain str (not e.g. a numpy.str_)
    x = float_array("x", x, [("Ty", None), (rows, None), ("E", None)])
    dtype = x.dtype
    Ty, B, E = x.shape
    _at_least_1("Ty", Ty, f"x [Ty, {rows}, E]")
    _at_least_1(rows, B, f"x [Ty, {rows}, E]")
    G = DECODER_GATES[cell]
    w_hh = float_array("w_hh", w_hh, [("G*H", None), ("H", None)], dtype)
    H = w_hh.shape[1]
    _at_least_1("H", H, "w_hh [G*H, H]")
    if w_hh.shape[0] != G * H:
        raise ValueError(f"w_hh must have shape [{G}*H, H] = ({G * H}, {H}), got shape {w_hh.shape}")
    keys = float_array("keys", keys, [(rows, B), ("Tx", None), ("K", None)], dtype)
    Tx = keys.shape[1]
    _at_least_1("Tx", Tx, f"keys [{rows}, Tx, K]")
    values = float_array("values", values, [(rows, B), ("Tx", Tx), ("Dv", None)], dtype)
    Dv = values.shape[2]
    _at_least_1("Dv", Dv, f"values [{rows}, Tx, Dv]")
    if score == "additive":
        w_q = float_array("w_q", w_q, [("A", None), ("H", H)], dtype)
        A = w_q.shape[0]
        _at_least_1("A", A, "w_q [A, H]")
        if keys.shape[2] != A:
            raise ValueError(f"keys must have shape [{rows}, Tx, A] = ({B}, {Tx}, {A}) with score='additive' (the "
                             f"projected keys K' = keys W_k^T), got shape {keys.shape}")
        b_a = optional_float_array("b_a", b_a, [("A", A)], dtype)
        w_v = float_array("w_v", w_v, [("A", A)], dtype)
        score_bias = decoder_scalar("score_bias", score_bias, dtype)
    else:
        why = "with score='dot' (it is a parameter of the additive score)"
        for name, value in (("w_q", w_q), ("b_a", b_a), ("w_v", w_v), ("score_bias", score_bias),
                            ("energy_activation", energy_activation)):
            _absent(name, value, why)
        if keys.shape[2] != H:
            raise ValueError(f"keys must have shape [{rows}, Tx, H] = ({B}, {Tx}, {H}) with score='dot' (q · k), "
                             f"got shape {keys.shape}")
    if position == "after":
        w_c = float_array("w_c", w_c, [("O", None), ("Dv + H", Dv + H)], dtype)
        O = w_c.shape[0]
        _at_least_1("O", O, "w_c [O, Dv + H]")
        b_c = optional_float_array("b_c", b_c, [("O", O)], dtype)
        if not input_feeding:
            if E == 0:
                raise ValueError("x must have E >= 1 features with position='after' and input_feeding=False (the cell "
                                 "would have no input), got x of shape " + str(x.shape))
            _absent("o0", o0, "without input_feeding (it is the fed output õ_{-1})")
        fed = O if input_feeding else 0
    else:
        why = "with position='before' (it belongs to the attention after the cell)"
        for name, value in (("w_c", w_c), ("b_c", b_c), ("o0", o0)):
            _absent(name, value, why)
        if input_feeding:
            raise ValueError("input_feeding=True needs position='after' (before the cell the context is fed instead)")
        O, fed = H, Dv
    w_ih = float_array("w_ih", w_ih, [(f"{G}*H", G * H), ("E + Dc", E + fed)], dtype)
    b_ih = optional_float_array("b_ih", b_ih, [(f"{G}*H", G * H)], dtype)
    b_hh = optional_float_array("b_hh", b_hh, [(f"{G}*H", G * H)], dtype)
    h0 = optional_float_array("h0", h0, [("B", B), ("H", H)], dtype)
    if cell != "lstm":
        _absent("c0", c0, f"with cell={cell!r} (only the LSTM has a cell state)")
    c0 = optional_float_array("c0", c0, [("B", B), ("H", H)], dtype)
    o0 = optional_float_array("o0", o0, [("B", B), ("O", O)], dtype)
    lengths = lengths_array(lengths, B, Tx, shortest=0, letter="Tx", rows=rows)
    return DecoderCall(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keys, values, lengths, cell, reset_after, nonlinearity,
                       score, w_q, b_a, w_v, score_bias, energy_activation, position, input_feeding, w_c, b_c, o0,
                       training)


def decoder_upstream(workspace: Any, workspace_types: tuple[type[Any], ...], doutputs: Any, dcontexts: Any,
                     dalpha: Any, dh_n: Any, dc_n: Any) -> tuple[np.ndarray | None, ...]:
    """``attention_decoder_backward``'s arguments: the workspace a training forward returned, and each upstream
    gradient None or of its forward's shape and dtype (dc_n only for the LSTM)."""
    if not isinstance(workspace, workspace_types):
        hint = " (was the forward run with training=False?)" if workspace is None else ""
        raise TypeError(f"workspace must be the workspace returned by attention_decoder_forward(..., training=True), "
                        f"got {type(workspace).__name__}{hint}")
    dtype = np.dtype(workspace.dtype)
    s = workspace.sizes
    if workspace.cell != "lstm":
        _absent("dc_n", dc_n, f"for a decoder with cell={workspace.cell!r} (only the LSTM has a cell state)")
    return (optional_float_array("doutputs", doutputs, [("Ty", s["Ty"]), ("B", s["B"]), ("O", s["O"])], dtype),
            optional_float_array("dcontexts", dcontexts, [("Ty", s["Ty"]), ("B", s["B"]), ("Dv", s["Dv"])], dtype),
            optional_float_array("dalpha", dalpha, [("Ty", s["Ty"]), ("B", s["B"]), ("Tx", s["Tx"])], dtype),
            optional_float_array("dh_n", dh_n, [("B", s["B"]), ("H", s["H"])], dtype),
            optional_float_array("dc_n", dc_n, [("B", s["B"]), ("H", s["H"])], dtype))


# ---- seq2seq (rnncore.AttentionDecoder, rnncore.Seq2Seq) -------------------------------------------------------------

def decoder_attention_options(attention: str, input_size: int, hidden_size: int, key_size: int, units: Any,
                              energy_activation: Any, score_bias: bool, normalize: bool, position: Any,
                              input_feeding: bool, output_size: Any) -> dict[str, Any]:
    """``AttentionDecoder``'s attention and position options, checked together and defaults filled in:
    attention_units (additive/concat; default H), the additive-only options, position (default "before" for
    additive, "after" for the Luong scores), input feeding ("after" only), output_size ("after" only; default H),
    "dot"'s Dk = H, and a cell input ("after" without input feeding needs input_size >= 1)."""
    scored = attention in ("additive", "concat")
    if units is not None and not scored:
        raise ValueError(f"attention_units is for attention 'additive' or 'concat', got {units!r} with attention "
                         f"{attention!r}")
    units = (hidden_size if units is None else positive_int("attention_units", units)) if scored else None
    if attention != "additive":
        for name, value, off in (("energy_activation", energy_activation, None), ("score_bias", score_bias, False),
                                 ("normalize", normalize, False)):
            if value != off:
                raise ValueError(f"{name} is an option of attention 'additive', got {name}={value!r} with "
                                 f"attention {attention!r}")
    if energy_activation not in (None, "relu"):
        raise ValueError(f"energy_activation must be None or 'relu', got {energy_activation!r}")
    position = ("before" if attention == "additive" else "after") if position is None else choice(
        "position", position, ("before", "after"))
    if attention == "dot" and key_size != hidden_size:
        raise ValueError(f"key_size must equal hidden_size = {hidden_size} for attention 'dot' (e = h · k), got "
                         f"{key_size}; use attention 'general' to project the keys")
    if position == "before":
        if input_feeding:
            raise ValueError("input_feeding is for position 'after' (Luong): with 'before' the cell already reads "
                             "the context")
        if output_size is not None:
            raise ValueError(f"output_size is for position 'after' (the output is h, O = H = {hidden_size} with "
                             f"'before'), got {output_size!r}")
        output_size = hidden_size
    else:
        output_size = hidden_size if output_size is None else positive_int("output_size", output_size)
        if input_size == 0 and not input_feeding:
            raise ValueError("input_size must be >= 1 for position 'after' without input_feeding (the cell would "
                             "have no input), got 0")
    return dict(attention_units=units, energy_activation=energy_activation, score_bias=score_bias,
                normalize=normalize, position=position, input_feeding=input_feeding, output_size=output_size)


def decoder_steps(x: Any, steps: Any, input_size: int, batch: int) -> int:
    """Ty of an ``AttentionDecoder`` call: x's second axis, or ``steps`` when x is None (input_size 0); both given
    must agree."""
    if x is None:
        if input_size != 0:
            raise ValueError(f"x must be given ([B, Ty, E] with E = input_size = {input_size}); only a decoder with "
                             "input_size 0 runs on steps alone")
        if steps is None:
            raise ValueError("steps must be given when x is None (input_size 0): the number of decoder steps Ty")
        return positive_int("steps", steps)
    if input_size == 0:
        raise ValueError("x must be None for a decoder with input_size 0 (it reads the context only); pass steps")
    shape = getattr(x, "shape", None)
    if not isinstance(x, np.ndarray) or len(shape or ()) != 3:
        raise TypeError(f"x must be a numpy.ndarray of shape [B, Ty, E] = ({batch}, Ty, {input_size}), got "
                        f"{type(x).__name__ if not isinstance(x, np.ndarray) else f'shape {x.shape}'}")
    if steps is not None and positive_int("steps", steps) != x.shape[1]:
        raise ValueError(f"steps must equal x's Ty = {x.shape[1]} when both are given, got {steps}")
    if x.shape[1] < 1:
        raise ValueError(f"x must have at least one step (Ty >= 1), got shape {x.shape}")
    return int(x.shape[1])


def token_index(name: str, value: Any, *vocabularies: int) -> int:
    """A special token id (pad, bos, eos) inside every vocabulary given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int token id, got {type(value).__name__}")
    limit, value = min(vocabularies), int(value)
    if not 0 <= value < limit:
        raise ValueError(f"{name} must lie in 0..V-1 = 0..{limit - 1} (every vocabulary holds it), got {value}")
    return value


def seq2seq_tokens(name: str, tokens: Any, vocabulary: int, batch: int | None = None, steps: int | None = None
                   ) -> np.ndarray:
    """Token ids [B, T] (B = batch, T = steps when given; T >= 1), each in 0..V-1. Returns int64, C-contiguous."""
    arr = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
    if arr.ndim != 2 or arr.shape[1] < 1 or (batch is not None and arr.shape[0] != batch) or (
            steps is not None and arr.shape[1] != steps):
        expected = f"({'B' if batch is None else batch}, {'T' if steps is None else steps})"
        raise ValueError(f"{name} must have shape [B, T] = {expected} with T >= 1, got shape {arr.shape}")
    return index_array(name, arr, vocabulary)


def seq2seq_sources(source: Any, lengths: Any, vocabulary: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A batch of sources: ids [B, Tx] (B >= 1; each in 0..V-1, padding included) and lengths [B] in 0..Tx (or
    None)."""
    src = seq2seq_tokens("source", source, vocabulary)
    if src.shape[0] < 1:
        raise ValueError(f"source must hold at least one sequence: shape [B, Tx] with B >= 1, got shape {src.shape}")
    return src, lengths_array(lengths, src.shape[0], src.shape[1], shortest=0)


def seq2seq_sources_for_decoding(batch: Any, pad_index: int, vocabulary: int) -> tuple[np.ndarray, np.ndarray]:
    """Decoding's sources: an int array [N, Tx] padded with pad_index after each source (its length: up to its last
    non-pad token), or a list/tuple of 1-d int sequences (padded here). Returns (ids [N, Tx], lengths [N])."""
    if isinstance(batch, np.ndarray):
        src = seq2seq_tokens("batch", batch, vocabulary)
        not_pad = src != pad_index
        lengths = np.where(not_pad.any(axis=1), src.shape[1] - np.argmax(not_pad[:, ::-1], axis=1), 0)
        return src, lengths.astype(np.int64)
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise TypeError(f"batch must be an int array [N, Tx] or a non-empty list of 1-d int sequences, got "
                        f"{type(batch).__name__ if not isinstance(batch, (list, tuple)) else 'an empty list'}")
    seqs = []
    for i, s in enumerate(batch):
        arr = np.asarray(s)
        if arr.ndim == 1 and arr.size == 0:
            arr = np.zeros(0, np.int64)
        if arr.ndim != 1:
            raise ValueError(f"batch[{i}] must be a 1-d sequence of token ids, got shape {arr.shape}")
        seqs.append(index_array(f"batch[{i}]", arr, vocabulary))
    lengths = np.array([len(s) for s in seqs], np.int64)
    src = np.full((len(seqs), max(1, int(lengths.max()))), pad_index, np.int64)
    for i, s in enumerate(seqs):
        src[i, :len(s)] = s
    return src, lengths


def forcing_ratio(value: Any, feed_targets: bool) -> float:
    """``teacher_forcing_ratio``: a number in [0, 1]; below 1 only when the decoder reads target tokens."""
    ratio = real_number("teacher_forcing_ratio", value, 0.0)
    if ratio > 1.0:
        raise ValueError(f"teacher_forcing_ratio must lie in [0, 1], got {value!r}")
    if ratio < 1.0 and not feed_targets:
        raise ValueError(f"teacher_forcing_ratio must be 1 for a model with feed_targets=False (its decoder reads no "
                         f"tokens to sample), got {value!r}")
    return ratio


def step_attention(alpha: Any, rows: int) -> np.ndarray:
    """What a decoding model's ``attention(state)`` returned: a float ndarray alpha [N, Tx] (N = the step's rows)."""
    if not isinstance(alpha, np.ndarray) or alpha.dtype not in FLOAT_DTYPES:
        got = f"dtype {alpha.dtype}" if isinstance(alpha, np.ndarray) else type(alpha).__name__
        raise TypeError(f"model.attention(state) must return a float32/float64 numpy.ndarray, got {got}")
    if alpha.ndim != 2 or alpha.shape[0] != rows:
        got = f"shape {alpha.shape}"
        raise ValueError(f"model.attention(state) must return a float32/float64 numpy.ndarray of shape [N, Tx] = "
                         f"({rows}, ?), got {got}")
    return alpha


def seed_value(value: Any) -> int | None:
    """A ``seed`` for ``np.random.default_rng``: a non-negative int, or None (fresh entropy)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"seed must be >= 0 (numpy's default_rng), got {value}")
    return int(value)


def seq2seq_special_tokens(pad_index: int, bos_index: int, eos_index: int) -> None:
    """bos and eos must not be the pad token: pad targets are masked out of the loss and the pad row of the target
    embedding is fixed at zero, so a shared id would never be learnt."""
    for name, value in (("bos_index", bos_index), ("eos_index", eos_index)):
        if value == pad_index:
            raise ValueError(f"{name} must differ from pad_index (pad positions are masked out of the loss and the "
                             f"pad embedding row stays zero), got {name}={value} and pad_index={pad_index}")


def seq2seq_decoder_options(attention: Any, attention_units: Any, position: Any, input_feeding: Any,
                            feed_targets: bool, target_embedding_size: Any) -> Any:
    """``Seq2Seq``'s decoder options checked in its own terms; returns the decoder's attention_units (default 10
    for "additive"/"concat"; an explicit value for "dot"/"general" is passed on for ``AttentionDecoder`` to
    reject)."""
    if target_embedding_size is not None and not feed_targets:
        raise ValueError(f"target_embedding_size is for feed_targets=True (the decoder reads no target tokens with "
                         f"feed_targets=False), got target_embedding_size={target_embedding_size!r}")
    resolved = ("before" if attention == "additive" else "after") if position is None else position
    if not feed_targets and resolved == "after" and not input_feeding:
        raise ValueError(f"attention {attention!r} with position 'after' needs feed_targets=True or "
                         f"input_feeding=True: with feed_targets=False and input_feeding=False its decoder cell "
                         f"would read nothing")
    if attention_units is None and attention in ("additive", "concat"):
        return 10
    return attention_units


# ---- dates (helper h-dates: rnncore.datasets.make_dates, rnncore.demos) ---------------------------------------------

def date_generator_options(formats: Any, cases: Any, among: Any, fields: dict[str, str], case_names: Sequence[str],
                           date_range: tuple[datetime.date, datetime.date]
                           ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[datetime.date, ...] | None]:
    """``make_dates``' ``formats`` (a non-empty sequence of format strings using only ``fields``' names),
    ``cases`` (a non-empty sequence of ``case_names``) and ``among`` (None, or a non-empty sequence of
    ``datetime.date`` within ``date_range``, first and last included) as tuples."""
    if isinstance(formats, str) or not isinstance(formats, Sequence) or len(formats) == 0:
        raise TypeError(f"formats must be a non-empty sequence of format strings, got {formats!r:.80}")
    for f in formats:
        if not isinstance(f, str):
            raise TypeError(f"formats must hold strings, got a {type(f).__name__}: {f!r:.80}")
        try:
            f.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"formats: {f!r} is not a date format of the fields {sorted(fields)} ({e!r})") from None
    if isinstance(cases, str) or not isinstance(cases, Sequence) or len(cases) == 0:
        raise TypeError(f"cases must be a non-empty sequence of {list(case_names)}, got {cases!r:.80}")
    bad = [c for c in cases if c not in case_names]
    if bad:
        raise ValueError(f"cases must be among {list(case_names)}, got {bad!r:.80}")
    if among is None:
        return tuple(formats), tuple(cases), None
    if not isinstance(among, Sequence) or len(among) == 0:
        raise TypeError(f"among must be None or a non-empty sequence of datetime.date, got {among!r:.80}")
    first, last = date_range
    wrong = [d for d in among if not isinstance(d, datetime.date) or isinstance(d, datetime.datetime)
             or not first <= d <= last]
    if wrong:
        raise ValueError(f"among must hold datetime.date values from {first} to {last}, got {wrong[:3]!r}")
    return tuple(formats), tuple(cases), tuple(among)


# ---- trainspeed: one-hot inputs as indices (the recurrent kernels), the fused Adam step ----------------------------

def one_hot_indices(x: Any) -> bool:
    """Whether a recurrent forward's ``x`` holds one-hot inputs as their indices: an integer (not bool) ndarray with
    two axes [T, B]. Anything else is checked as the float inputs [T, B, I]."""
    return (isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype != np.bool_
            and bool(np.issubdtype(x.dtype, np.integer)))


def one_hot_forward_arrays(kernel: str, gates: int, x: np.ndarray, states: dict[str, Any], w_ih: Any, w_hh: Any,
                           b_ih: Any, b_hh: Any, lengths: Any) -> Forward:
    """``forward_arrays`` for one-hot indices ``x [T, B]``: w_hh fixes H and the dtype, w_ih [G*H, I] fixes I, each
    index must lie in 0..I-1. Returns x as int64 (C-contiguous) and the other arrays as the kernels take them."""
    w_hh = float_array("w_hh", w_hh, [(f"{gates}*H", None), ("H", None)])
    dtype, hidden = w_hh.dtype, w_hh.shape[1]
    if hidden < 1:
        raise ValueError(f"w_hh must have at least one hidden unit (H >= 1), got shape {w_hh.shape}")
    w_ih = float_array("w_ih", w_ih, [(f"{gates}*H", gates * hidden), ("I", None)], dtype)
    inputs = w_ih.shape[1]
    if inputs < 1:
        raise ValueError(f"w_ih must have at least one input feature (I >= 1), got shape {w_ih.shape}")
    steps, batch = x.shape
    x = index_array("x", x, inputs, letter="I")
    sizes = {"B": batch, "H": hidden, "G*H": gates * hidden}

    def checked(name: str, a: Any) -> Any:
        return _forward_operand(kernel, gates, sizes, dtype, name, a)

    w_hh = checked("w_hh", w_hh)  # its first axis: G*H
    return Forward(x, tuple([checked(name, s) for name, s in states.items()]), w_ih, w_hh, checked("b_ih", b_ih),
                   checked("b_hh", b_hh), lengths_array(lengths, batch, steps))


def adam_arrays(params: Any, grads: Any, exp_avgs: Any, exp_avg_sqs: Any, max_exp_avg_sqs: Any, steps: Any,
                amsgrad: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray],
                                       list[np.ndarray] | None, list[np.ndarray]]:
    """The arrays of ``rnncore.ops.adam_update`` as lists the fused op takes: one entry per parameter, each a
    C-contiguous ndarray (the updated ones writeable) of the parameter's float dtype and shape (``steps`` 0-d).
    Nothing is converted: the op updates these arrays in place."""
    named = {"params": params, "grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs, "steps": steps}
    if amsgrad:
        if max_exp_avg_sqs is None:
            raise ValueError("max_exp_avg_sqs must be a sequence of arrays with amsgrad=True, got None")
        named["max_exp_avg_sqs"] = max_exp_avg_sqs
    elif max_exp_avg_sqs is not None:
        raise ValueError("max_exp_avg_sqs must be None with amsgrad=False (only AMSGrad keeps it)")
    lists: dict[str, list[Any]] = {}
    for name, seq in named.items():
        if isinstance(seq, (str, bytes, np.ndarray)) or not isinstance(seq, Sequence):
            raise TypeError(f"{name} must be a list or tuple of arrays (one per parameter), got {type(seq).__name__}")
        lists[name] = list(seq)
        if len(lists[name]) != len(lists["params"]):
            raise ValueError(f"{name} must have one array per parameter ({len(lists['params'])}), got "
                             f"{len(lists[name])}")
    for i, p in enumerate(lists["params"]):
        for name, items in lists.items():
            a = items[i]
            where = f"{name}[{i}]"
            if type(a) is not np.ndarray:
                raise TypeError(f"{where} must be a numpy.ndarray (not a subclass), got {type(a).__name__}")
            if name == "params":
                if a.dtype not in FLOAT_DTYPES or not a.dtype.isnative:
                    raise TypeError(f"{where} must have dtype float32 or float64 in native byte order, got {a.dtype}")
            elif a.dtype != p.dtype or not a.dtype.isnative:
                raise TypeError(f"{where} has dtype {a.dtype}, expected params[{i}]'s {p.dtype}")
            expected = () if name == "steps" else p.shape
            if a.shape != expected:
                raise ValueError(f"{where} must have shape {expected}, got shape {a.shape}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{where} must be C-contiguous (the update writes in place; pass contiguous arrays)")
            if name != "grads" and not a.flags.writeable:
                raise ValueError(f"{where} must be writeable (it is updated in place)")
    adam_no_aliasing(lists)
    return (lists["params"], lists["grads"], lists["exp_avgs"], lists["exp_avg_sqs"], lists.get("max_exp_avg_sqs"),
            lists["steps"])


# ---- decodespeed: the decoding session (rnncore.ops.DecoderSession) --------------------------------------------------


def decoder_session_input(keys: Any, embedding: Any) -> np.ndarray:
    """The zeros x [1, N, E] a decoder session's arguments are checked with as attention_decoder_forward's: N (the
    sources) from the keys [N, Tx, K], E from the embedding [Vin, E] (0 when None), the keys' dtype."""
    keys = float_array("keys", keys, [("N", None), ("Tx", None), ("K", None)])
    _at_least_1("N", keys.shape[0], "keys [N, Tx, K]")
    E = 0
    if embedding is not None:
        E = float_array("embedding", embedding, [("Vin", None), ("E", None)], keys.dtype).shape[1]
    return np.zeros((1, keys.shape[0], E), keys.dtype)


def decoder_session_output(embedding: Any, w_out: Any, b_out: Any, x: np.ndarray, out_size: int
                           ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """A decoder session's target embedding [Vin, E] (None when E = 0; x [1, B, E] holds E and the dtype), output
    weight [V, O] and output bias [V] or None."""
    dtype, E = x.dtype, x.shape[2]
    if embedding is not None:
        embedding = float_array("embedding", embedding, [("Vin", None), ("E", E)], dtype)
        if embedding.shape[0] < 1 or E < 1:
            raise ValueError(f"embedding must have shape [Vin, E] with Vin >= 1 and E >= 1 (None for a decoder "
                             f"without inputs), got shape {embedding.shape}")
    w_out = float_array("w_out", w_out, [("V", None), ("O", out_size)], dtype)
    if w_out.shape[0] < 1:
        raise ValueError(f"w_out must have shape [V, O] with V >= 1, got shape {w_out.shape}")
    b_out = optional_float_array("b_out", b_out, [("V", w_out.shape[0])], dtype)
    return embedding, w_out, b_out


def decoder_session_step(shapes: dict[str, Any], tokens: Any, h: Any, c: Any, fed: Any
                         ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """A decoder session step's arguments: tokens [B] ints in 0..Vin-1 (None when the session has no embedding),
    h [B, H], c [B, H] (LSTM only), fed [B, O] (input feeding only), each state part None or of the session's
    dtype."""
    B, dtype = shapes["B"], shapes["dtype"]
    if shapes["E"] == 0:
        _absent("tokens", tokens, "for a session without an embedding (E = 0)")
    else:
        tokens = index_array("tokens", tokens, shapes["Vin"], (B,), letter="Vin")
    if shapes["cell"] != "lstm":
        _absent("c", c, f"with cell={shapes['cell']!r} (only the LSTM has a cell state)")
    if not shapes["input_feeding"]:
        _absent("fed", fed, "without input_feeding")
    return (tokens, optional_float_array("h", h, [("B", B), ("H", shapes["H"])], dtype),
            optional_float_array("c", c, [("B", B), ("H", shapes["H"])], dtype),
            optional_float_array("fed", fed, [("B", B), ("O", shapes["O"])], dtype))


# ---- fix: aliasing among adam_update's arrays ------------------------------------------------------------------------


def _first_overlap(entries: list[tuple[str, np.ndarray]]) -> tuple[str, str] | None:
    """The names of two entries whose (C-contiguous) arrays share memory, the later-listed one first, or None: their
    byte ranges sorted by start, each compared with the furthest-reaching one before it (n log n, not every pair)."""
    spans = sorted((a.__array_interface__["data"][0], a.nbytes, k) for k, (_, a) in enumerate(entries) if a.nbytes)
    reach, holder = -1, 0
    for start, size, k in spans:
        if start < reach:
            return entries[max(k, holder)][0], entries[min(k, holder)][0]
        if start + size > reach:
            reach, holder = start + size, k
    return None


def adam_no_aliasing(lists: dict[str, list[np.ndarray]]) -> None:
    """The fused Adam step writes each parameter's p, exp_avg, exp_avg_sq, max_exp_avg_sq and step in place through
    restrict pointers: none of them may share memory with another of them, of any parameter, nor with that
    parameter's grad."""
    updated = [name for name in lists if name != "grads"]
    pair = _first_overlap([(f"{name}[{i}]", a) for name in updated for i, a in enumerate(lists[name])])
    for i, g in enumerate(lists["grads"]):
        if pair is not None:
            break
        pair = _first_overlap([(f"{name}[{i}]", lists[name][i]) for name in updated] + [(f"grads[{i}]", g)])
    if pair is not None:
        raise ValueError(f"{pair[0]} shares memory with {pair[1]} (the update writes them in place: pass separate "
                         f"arrays)")


# ---- ctxop: the fused masked softmax + context (rnncore.ops.attention_context) --------------------------------------

_BOOL = np.dtype(np.bool_)


def _context_scores(name: str, a: Any) -> np.ndarray:
    """attention_context's scores or weights: [B, Tx] (one query per sample) or [B, Ty, Tx], every axis >= 1."""
    a = float_array(name, a, None)
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape [B, Tx] or [B, Ty, Tx], got shape {a.shape}")
    _at_least_one(name, a, ("B", "Tx") if a.ndim == 2 else ("B", "Ty", "Tx"))
    return a


def _context_values(a: Any, scores: np.ndarray) -> np.ndarray:
    """values [B, Tx, Dv] of the scores' dtype, B and Tx."""
    values = float_array("values", a, [("B", scores.shape[0]), ("Tx", scores.shape[-1]), ("Dv", None)], scores.dtype)
    _at_least_one("values", values, ("B", "Tx", "Dv"))
    return values


def attention_context_arrays(e: Any, values: Any, lengths: Any, mask: Any
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``attention_context``'s arguments: e [B, Tx] or [B, Ty, Tx] fixes the dtype; values [B, Tx, Dv]; lengths [B]
    in 0..Tx or None; mask boolean/integer broadcastable to e's shape or None (made uint8 of e's shape)."""
    e = _context_scores("e", e)
    values = _context_values(values, e)
    if type(mask) is np.ndarray and mask.dtype is _BOOL and mask.shape == e.shape and mask.flags.c_contiguous:
        keep: np.ndarray | None = mask.view(np.uint8)  # the common call: bools are bytes (1 = keep), read in place
    else:
        keep = softmax_mask(mask, e.shape)
    return e, values, attention_lengths(lengths, e.shape[0], e.shape[-1]), keep


def attention_context_gradients(alpha: Any, values: Any, dcontext: Any, dalpha: Any
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``attention_context_backward``'s arguments: alpha [B, Tx] or [B, Ty, Tx] fixes the dtype; values [B, Tx, Dv];
    dcontext [B, Dv] or [B, Ty, Dv] (alpha's form); dalpha of alpha's shape or None."""
    alpha = _context_scores("alpha", alpha)
    values = _context_values(values, alpha)
    rows: list[Dim] = [("B", alpha.shape[0])] + ([("Ty", alpha.shape[1])] if alpha.ndim == 3 else [])
    dcontext = float_array("dcontext", dcontext, rows + [("Dv", values.shape[2])], alpha.dtype)
    dalpha = optional_float_array("dalpha", dalpha, rows + [("Tx", alpha.shape[-1])], alpha.dtype)
    return alpha, values, dcontext, dalpha

# ---- beamsrc: a decoder session's row -> source map (rnncore.ops.DecoderSession(..., sources=)) ---------------------


def decoder_session_sources(sources: Any, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """A decoder session's row -> source map and its rows' zeros x: ``x`` [1, N, E] is the checked stand-in of the N
    sources (decoder_session_input); ``sources`` None (row b on source b: x itself) or integers [B] (B >= 1, the
    session's rows) each in 0..N-1, returned as a C-contiguous int64 copy with zeros [1, B, E]."""
    if sources is None:
        return None, x
    copy = index_array("sources", sources, x.shape[1], letter="N")
    if copy.ndim != 1 or copy.shape[0] < 1:
        raise ValueError(f"sources must have shape [B] (one source index per row, B >= 1), got shape {copy.shape}")
    return copy, np.zeros((1, copy.shape[0], x.shape[2]), x.dtype)


# ---- lead: the softmax cross-entropy rows op (rnncore.ops.softmax_cross_entropy) ------------------------------------


def cross_entropy_rows(logits: Any, targets: Any, mask: Any, label_smoothing: Any
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """``rnncore.ops.softmax_cross_entropy``'s arguments as the kernel takes them: logits [R, C] (C >= 1) float,
    C-contiguous; targets [R] int64, each kept row's in 0..C-1 (the others may hold anything); mask [R] (bool or
    0/1; None: every row) as uint8 or None; label_smoothing in [0, 1]."""
    eps = label_smoothing_value(label_smoothing)
    logits = logits_array(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [R, C], got shape {logits.shape}")
    R, C = logits.shape
    # the kernel reads the mask without the GIL: a private copy (mask_array may return a view of the caller's), and
    # the targets are range-checked against that copy (another thread flipping a row to kept cannot unmask a target
    # that was never checked)
    keep = None if mask is None else np.array(mask_array("mask", mask, (R,)), dtype=np.uint8)
    t = index_array("targets", targets, C, shape=(R,), where=None if keep is None else keep.view(np.bool_),
                    letter="C")
    return np.ascontiguousarray(logits), t, keep, eps


# ---- h-strided: the recurrent kernels' y and dy at any strides (out=, a dy read in place) --------------------------

def step_array(name: str, a: Any, expected: Sequence[Dim], dtype: np.dtype) -> np.ndarray | None:
    """A backward's dy (None stays None): ``float_array``'s checks, but its strides are kept when the kernels can read
    it in place (KERNEL_ARGUMENTS' "steps" rules: aligned, each stride a whole number of elements); a copy only
    otherwise."""
    if a is None:
        return None
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and _shape_matches(a.shape, expected)):
        return float_array(name, a, expected, dtype)  # raises, naming the argument
    a = np.asarray(a)  # an ndarray view of a subclass's memory
    return a if _element_strides(a) else a.copy()  # (C order, aligned)


def _element_strides(a: np.ndarray) -> bool:
    return a.flags.aligned and all(s % a.itemsize == 0 for s in a.strides)


def steps_overlap_themselves(a: np.ndarray) -> bool:
    """Whether two elements of ``a`` may share an address: ordered by |stride|, some axis (of more than one element)
    does not step past everything the shorter ones span. The check C++ makes of an out= too (StepArray)."""
    if a.size == 0:
        return False
    span = 0
    for stride, extent in sorted((abs(s), n) for s, n in zip(a.strides, a.shape) if n > 1):
        if stride <= span:
            return True
        span += stride * (extent - 1)
    return False


def out_array(out: Any, a: Forward, state_names: Sequence[str], given: Mapping[str, Any] | None = None
              ) -> np.ndarray | None:
    """A forward's ``out=`` (None stays None), against the checked call ``a`` (its states called ``state_names``): an
    ndarray of y's shape [T, B, H] and
    the call's dtype (KERNEL_ARGUMENTS' "out" rules), written in place at its strides. Raises naming ``out``, or
    returns it as the kernels take it (a subclass: an ndarray view of its memory). ``given``: the caller's own
    arguments by name, which ``out`` must not overlap either (a checked array may be a copy of one)."""
    if out is None:
        return None
    dtype = a.w_hh.dtype
    shape = [("T", a.x.shape[0]), ("B", a.x.shape[1]), ("H", a.w_hh.shape[1])]
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray of shape {_shape_text(shape)}, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype} like the call's arrays; rnncore never casts "
                        "silently")
    if not _shape_matches(out.shape, shape):
        raise ValueError(f"out must have shape {_shape_text(shape)} (y's), got shape {out.shape}")
    out = np.asarray(out)
    if not _element_strides(out):
        raise ValueError(f"out must be {_ELEMENT_STRIDES}, got strides {out.strides} (itemsize {out.itemsize})")
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")
    if steps_overlap_themselves(out):
        raise ValueError(f"out must have no two elements at one address, got strides {out.strides} for shape "
                         f"{out.shape}")
    inputs = {"x": a.x, **dict(zip(state_names, a.states)), "w_ih": a.w_ih, "w_hh": a.w_hh,
              "b_ih": a.b_ih, "b_hh": a.b_hh}
    originals = [(name, v) for name, v in (given or {}).items() if isinstance(v, np.ndarray)]
    for name, other in [*inputs.items(), *originals]:
        if other is not None and np.may_share_memory(out, other):
            raise ValueError(f"out must share no memory with the call's other arrays, but it overlaps {name}")
    return out
