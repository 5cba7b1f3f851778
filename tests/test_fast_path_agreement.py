"""The C++ fast path and the Python checks apply one description of the recurrent kernels' arguments
(rnncore._validation.KERNEL_ARGUMENTS and its rules): for every rule of every argument of every kernel, a call that
breaks exactly that rule is refused by ``_core`` (NotImplemented) and then either raises the rule's error naming the
argument in ``rnncore.ops``, or (a rule about how a valid value is passed: a strided array, int32 lengths, a numpy
bool) is converted by ``rnncore.ops`` and gives the exact call's results. The exact call is taken by both (its y
written into an out= array, its dy strided: both at any strides).

A rule added to the table without a way to break it here (in ``BREAKERS``) fails ``test_every_rule_has_a_violation``."""

import re

import numpy as np
import pytest

import rnncore
from rnncore import ops
from rnncore._cell_table import variant
from rnncore._validation import FORWARD_SIZE_RULES, KERNEL_ARGUMENTS

T, B, I, H = 3, 2, 4, 5  # every axis longer than 1, so a strided view is never contiguous

# The cell-table row each kernel is called with (the option under test is its default).
VARIANT_OF = {"lstm": variant("lstm"), "gru": variant("gru_reset_after"), "rnn": variant("rnn_tanh")}
# Which argument fixes each shape letter in a call: a different size there is another valid call, not a violation.
DEFINED_BY = {"forward": {"T": ("x", 0), "B": ("x", 1), "I": ("x", 2), "H": ("w_hh", 1)}, "backward": {}}


class _Subclass(np.ndarray):
    pass


def cell_of(kernel):
    return VARIANT_OF[kernel.split("_")[0]]


def exact_call(kernel, dtype=np.float64):
    """The positional arguments of an exact call of ``kernel`` (lengths given, so its rules can be broken)."""
    v = cell_of(kernel)
    rng = np.random.default_rng(0)
    GH = v.kind.n_gates * H
    forward = [rng.standard_normal((T, B, I)).astype(dtype),
               *[rng.standard_normal((B, H)).astype(dtype) for _ in v.kind.states],
               *[rng.uniform(-0.3, 0.3, shape).astype(dtype) for shape in [(GH, I), (GH, H), (GH,), (GH,)]],
               np.array([T, 2], np.int64), True, *v.options.values()]
    if kernel.endswith("_forward"):
        return [*forward, np.zeros((T, B, H), dtype)]  # out=
    workspace = getattr(rnncore._core, v.kind.forward.__name__)(*forward)[-1]
    upstream = [strided(rng.standard_normal((T, B, H)).astype(dtype)),  # dy: read at its strides
                *[rng.standard_normal((B, H)).astype(dtype) for _ in v.kind.states]]
    return [workspace, *upstream, True]  # need_dx


def strided(a):
    """The same values, not C-contiguous (every other entry of a doubled last axis)."""
    out = np.repeat(a, 2, axis=-1)[..., ::2]
    assert not out.flags.c_contiguous and np.array_equal(out, a)
    return out


def other_float(dtype):
    return np.float32 if np.dtype(dtype) == np.float64 else np.float64


def resized(a, axis):
    shape = list(a.shape)
    shape[axis] += 1
    return np.zeros(shape, a.dtype)


def unaligned(a):
    """The same values in memory one byte off the dtype's alignment."""
    out = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def read_only(a):
    out = a.copy()
    out.flags.writeable = False
    return out


def self_overlapping(a):
    """Every step at one address (a zero time stride), writeable."""
    return np.lib.stride_tricks.as_strided(a.copy(), a.shape, (0, *a.strides[1:]), writeable=True)


# How to break each rule of the table, by (argument kind, rule id): the value to pass instead of the exact call's
# argument ``a`` of ``kernel``. PER_AXIS is broken apart, once per axis the argument does not define (violations());
# SHARED (out= sharing memory with another argument) changes two arguments (violations()).
PER_AXIS = {("array", "size"), ("steps", "size"), ("out", "size")}
SHARED = ("out", "no_shared_memory")
_ARRAY_BREAKERS = {
    "ndarray": lambda a, kernel: a.tolist(),
    "float_dtype": lambda a, kernel: a.astype(np.int64),
    "same_dtype": lambda a, kernel: a.astype(other_float(a.dtype)),
    "native_byte_order": lambda a, kernel: a.astype(a.dtype.newbyteorder()),
    "rank": lambda a, kernel: a[..., None],
    "exact_type": lambda a, kernel: a.view(_Subclass),
}
BREAKERS = {
    **{("array", rule): breaker for rule, breaker in _ARRAY_BREAKERS.items()},
    ("array", "c_contiguous"): lambda a, kernel: strided(a),
    **{("steps", rule): breaker for rule, breaker in _ARRAY_BREAKERS.items()},
    ("steps", "element_strides"): lambda a, kernel: unaligned(a),
    **{("out", rule): breaker for rule, breaker in _ARRAY_BREAKERS.items()},
    ("out", "element_strides"): lambda a, kernel: unaligned(a),
    ("out", "writeable"): lambda a, kernel: read_only(a),
    ("out", "rows_apart"): lambda a, kernel: self_overlapping(a),
    ("lengths", "integer_dtype"): lambda a, kernel: a.astype(np.float64),
    ("lengths", "int64"): lambda a, kernel: a.astype(np.int32),
    ("lengths", "ndarray"): lambda a, kernel: a.tolist(),
    ("lengths", "c_contiguous"): lambda a, kernel: strided(a),
    ("lengths", "shape"): lambda a, kernel: np.append(a, 1),
    ("lengths", "range"): lambda a, kernel: np.array([T + 1, 1], np.int64),
    ("flag", "bool"): lambda a, kernel: 1,
    ("strict_flag", "bool_type"): lambda a, kernel: "True",
    ("strict_flag", "bool"): lambda a, kernel: np.True_,
    ("choice", "option"): lambda a, kernel: a.upper(),
    ("choice", "exact_str"): lambda a, kernel: np.str_(a),
    ("workspace", "workspace_type"): lambda a, kernel: reference_cache(kernel),
    ("workspace", "workspace_cell"): lambda a, kernel: other_cells_workspace(kernel),
}
# Each forward size rule: the letter set to 0 to break it, and the argument its error names.
ZERO_SIZE = {"I_at_least_1": ("I", "x"), "H_at_least_1": ("H", "w_hh")}


def violations(kernel):
    """(argument, rule id, the call with that rule broken, the argument the error must name); every rule of every
    argument of ``kernel``, one entry per way of breaking it."""
    args = KERNEL_ARGUMENTS[kernel]
    call = exact_call(kernel)
    position = {a.name: k for k, a in enumerate(args)}
    direction = "forward" if kernel.endswith("_forward") else "backward"
    out = []

    def broken(name, value):
        c = list(call)
        c[position[name]] = value
        return c

    for arg in args:
        a = call[position[arg.name]]
        for rule in arg.rules:
            key = (arg.kind, rule.id)
            if key in PER_AXIS:
                for axis, letter in enumerate(arg.letters):
                    if DEFINED_BY[direction].get(letter) == (arg.name, axis):
                        continue  # this argument sets the size: another size is another valid call
                    out.append((arg, f"size[{letter}]", broken(arg.name, resized(a, axis)), arg.name))
                continue
            if key == ("array", "same_dtype") and arg.name == "x":
                # x sets the call's dtype: the other float dtype there breaks the rule for every other array
                out.append((arg, rule.id, broken("x", a.astype(other_float(a.dtype))), "w_hh"))
                continue
            if key == SHARED:  # out= over h0's memory (h0 = its first step: still an exact h0)
                out_array = np.zeros_like(a)
                c = broken(arg.name, out_array)
                c[position["h0"]] = out_array[0]
                out.append((arg, rule.id, c, arg.name))
                continue
            if key not in BREAKERS:
                continue  # a rule with no way to break it here: test_every_rule_has_a_violation names it
            out.append((arg, rule.id, broken(arg.name, BREAKERS[key](a, kernel)), arg.name))
    if direction == "forward":
        for rule in FORWARD_SIZE_RULES:
            if rule.id in ZERO_SIZE:
                letter, named = ZERO_SIZE[rule.id]
                out.append((None, rule.id, zero_size_call(kernel, call, position, letter), named))
    return out


def reference_cache(kernel):
    v = cell_of(kernel)
    forward = exact_call(v.kind.forward.__name__)
    return v.kind.reference_forward(*forward[:-2 - len(v.options)])[-1]  # without training, options, out


def other_cells_workspace(kernel):
    other = "gru" if not kernel.startswith("gru") else "lstm"
    return exact_call(f"{other}_backward")[0]


def zero_size_call(kernel, call, position, letter):
    """The exact call with ``letter`` (I or H) = 0 in every array with that axis (I: x and w_ih; H: every array with
    an H or G*H axis)."""
    c = list(call)
    for arg in KERNEL_ARGUMENTS[kernel]:
        if arg.kind == "array" and any(letter in lt for lt in arg.letters):
            a = c[position[arg.name]]
            c[position[arg.name]] = np.zeros([0 if letter in lt else n for lt, n in zip(arg.letters, a.shape)],
                                             a.dtype)
    return c


def cases():
    for kernel in KERNEL_ARGUMENTS:
        for arg, rule_id, call, named in violations(kernel):
            rule = next(r for r in (arg.rules if arg else FORWARD_SIZE_RULES) if rule_id.startswith(r.id))
            name = arg.name if arg else "sizes"
            yield pytest.param(kernel, rule, call, named, id=f"{kernel}-{name}-{rule_id}")


def same_results(got, want):
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            np.testing.assert_array_equal(g, w)
        else:
            assert (g is None) == (w is None)


def checked_twin(kernel, call):
    """The same call made inexact (its first array, x or dy, an ndarray subclass): ``_core`` refuses it, so ``ops``
    runs it through the Python checks and re-calls the kernel with what they return, an expectation not taken on the
    exact path."""
    first = next(k for k, arg in enumerate(KERNEL_ARGUMENTS[kernel]) if arg.kind in ("array", "steps"))
    twin = list(call)
    twin[first] = call[first].view(_Subclass)
    return twin


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kernel", list(KERNEL_ARGUMENTS))
def test_the_exact_call_is_taken_by_both(kernel, dtype):
    # each call its own (equal) arguments: a forward's out= is its own y
    fast = getattr(rnncore._core, kernel)(*exact_call(kernel, dtype))
    assert fast is not NotImplemented
    twin = checked_twin(kernel, exact_call(kernel, dtype))
    assert getattr(rnncore._core, kernel)(*twin) is NotImplemented
    checked = getattr(ops, kernel)(*twin)
    same_results(fast, checked)
    same_results(getattr(ops, kernel)(*exact_call(kernel, dtype)), checked)


@pytest.mark.parametrize("kernel,rule,call,named", list(cases()))
def test_a_broken_rule_is_refused_by_cpp_and_handled_by_python(kernel, rule, call, named):
    assert getattr(rnncore._core, kernel)(*call) is NotImplemented, "the C++ fast path took a call breaking the rule"
    if rule.python_error is not None:
        with pytest.raises(rule.python_error, match=r"(?<![\w.])" + re.escape(named) + r"(?!\w)"):
            getattr(ops, kernel)(*call)
    else:
        want = getattr(ops, kernel)(*exact_call(kernel))
        same_results(getattr(ops, kernel)(*call), want)


def test_every_rule_has_a_violation():
    """Every rule of the table has a way to break it here and every way breaks a rule of the table: the rules of
    KERNEL_ARGUMENTS, by (argument kind, rule id), are the keys violations() handles; the forward size rules are
    ZERO_SIZE's keys."""
    rules = {(arg.kind, rule.id) for args in KERNEL_ARGUMENTS.values() for arg in args for rule in arg.rules}
    assert rules == {*PER_AXIS, SHARED, *BREAKERS}
    assert {rule.id for rule in FORWARD_SIZE_RULES} == set(ZERO_SIZE)
