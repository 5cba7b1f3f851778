"""Argument checks shared by every public op (the one home for validation).

Every check runs before any C++ does and raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong shape or value), naming the argument and saying what was expected and what was received. Arrays that pass
are returned C-contiguous: a strided or Fortran-ordered input is copied once into C order (it is only read), never
cast to another dtype.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Tuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FLOAT32, FLOAT64 = FLOAT_DTYPES  # builtin dtypes are singletons: `a.dtype is FLOAT32` rejects byte-swapped ones

# A dimension of an expected shape: its letter (as in design.md §1) and its size, or None when any size goes.
Dim = Tuple[str, Optional[int]]


def _shape_text(expected: Sequence[Dim]) -> str:
    letters = ", ".join(letter for letter, _ in expected)
    sizes = ", ".join("?" if size is None else str(size) for _, size in expected)
    return f"[{letters}] = ({sizes}{',' if len(expected) == 1 else ''})"


def is_exact(a, shape: tuple, dtype: np.dtype) -> bool:
    """Whether ``a`` needs no checking at all: an exact ndarray of this shape and (native) dtype, C-contiguous.
    The cheap first test of every array argument; only arrays that fail it go through ``float_array``'s checks,
    which raise with the argument's name or return a C-contiguous copy."""
    return type(a) is np.ndarray and a.dtype is dtype and a.shape == shape and a.flags.c_contiguous


def _shape_matches(shape, expected: Optional[Sequence[Dim]]) -> bool:
    if expected is None:
        return True
    if len(shape) != len(expected):
        return False
    for got, (_, size) in zip(shape, expected):
        if size is not None and size != got:
            return False
    return True


def float_array(name: str, a, expected: Optional[Sequence[Dim]], dtype: Optional[np.dtype] = None) -> np.ndarray:
    """Checks that ``a`` is a float32/float64 ndarray of the expected shape (None: any shape) and of ``dtype``, when
    given: the dtype of the call's first array, which every other array must share. Returns it C-contiguous."""
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
            f"{name} has dtype {a.dtype}, expected {dtype} like the first array argument; "
            f"convert explicitly (e.g. {name}.astype(np.{dtype})) — rnncore never casts silently")
    if not _shape_matches(a.shape, expected):
        raise ValueError(f"{name} must have shape {_shape_text(expected)}, got shape {a.shape}")
    return np.asarray(a, order="C")  # C-contiguous (copied only if strided); unlike ascontiguousarray, keeps 0-d


def optional_float_array(name: str, a, expected: Sequence[Dim], dtype: np.dtype) -> Optional[np.ndarray]:
    """``float_array`` for an argument that may be None."""
    return None if a is None else float_array(name, a, expected, dtype)


def lengths_array(lengths, batch: int, steps: int) -> Optional[np.ndarray]:
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


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def same_keys(context: str, expected, given, error=KeyError) -> None:
    """Raises ``error`` ("<context>: missing [...], unexpected [...]") unless ``given`` has exactly ``expected``'s keys."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise error(f"{context}: missing {missing}, unexpected {unexpected}")


def reset_after_flag(value) -> bool:
    """The GRU's ``reset_after`` argument: a bool (never a truthy stand-in such as a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"reset_after must be a bool, got {type(value).__name__}")
    return bool(value)


def nonlinearity_name(value) -> str:
    """The simple RNN's ``nonlinearity`` argument: "tanh" or "relu"."""
    return choice("nonlinearity", value, ("tanh", "relu"))


def choice(name: str, value, options: Sequence[str]) -> str:
    """The option ``value`` equals, as the plain ``str`` from ``options`` (not e.g. the numpy.str_ given)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return options[list(options).index(value)]


def float_dtype(name: str, dtype) -> np.dtype:
    """A constructor's ``dtype`` argument: float32 or float64 (as a numpy dtype)."""
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if d not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {d}")
    return d


def real_number(name: str, value, minimum: float = 0.0, allow_equal: bool = True, allow_inf: bool = False) -> float:
    """A real number (not bool) >= minimum (> minimum when not allow_equal); NaN always and inf unless allowed raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if np.isnan(v) or (np.isinf(v) and not allow_inf) or v < minimum or (v == minimum and not allow_equal):
        bound = f">= {minimum}" if allow_equal else f"> {minimum}"
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number {bound}, got {value!r}")
    return v


def features_array(name: str, a, letter: str, size: int, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """A float array ``[..., letter]`` (any leading dimensions, at least one axis) whose last axis has ``size``
    entries; ``dtype`` as in ``float_array``. Returns it C-contiguous."""
    if type(a) is np.ndarray and a.ndim >= 1 and a.shape[-1] == size and a.flags.c_contiguous and (
            a.dtype is dtype if dtype is not None else (a.dtype is FLOAT32 or a.dtype is FLOAT64)):
        return a
    a = float_array(name, a, None, dtype)
    if a.ndim == 0 or a.shape[-1] != size:
        raise ValueError(f"{name} must have shape [..., {letter}] = (..., {size}), got shape {a.shape}")
    return a


def index_array(name: str, a, size: int, shape: Optional[tuple] = None, where: Optional[np.ndarray] = None,
                letter: str = "V") -> np.ndarray:
    """Integer indices (an ndarray or a Python int/list of ints; not bool) each in 0..size-1, optionally of a given
    ``shape``; with ``where`` (a bool array of the same shape) only entries where it is True are range-checked (the
    others are ignored by the caller and may hold anything, e.g. padding). Returns a C-contiguous int64 array."""
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {arr.shape}")
    checked = arr if where is None else arr[where]
    if checked.size:
        lo, hi = checked.min(), checked.max()
        if lo < 0 or hi >= size:
            bad = checked[(checked < 0) | (checked >= size)]
            raise ValueError(f"{name} must lie in 0..{letter}-1 = 0..{size - 1}, got {bad.ravel().tolist()[:5]}")
    if arr.dtype is np.dtype(np.int64) and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=np.int64)


def mask_array(name: str, mask, shape: tuple) -> np.ndarray:
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
