"""Argument validation of every public op, and the input-handling behaviours that ops.py's docstring promises.

Part 1: every bad input raises TypeError/ValueError before any C++ runs (``_core`` is replaced by a tripwire while
the bad call is made) with a message that names the argument and shows what was expected and what was received.
Part 2: the documented behaviours around the inputs: empty T/B, I = H = 0 rejected, strided and Fortran-ordered
inputs, the caller's arrays left untouched, the workspace's private copies, repeated backward, non-finite values
(propagated when real, ignored when padded) and missing biases.
"""

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import rnncore
from rnncore import ops, reference

from support.arrays import DTYPES, DTYPE_IDS, at_offset
from support.cells import CELLS, CELL_IDS, make_inputs, run_backward, run_forward
from support.tolerances import assert_close, assert_identical


# One variant per op for the argument checks (they do not depend on reset_after / nonlinearity).
OPS = [c for c in CELLS if c.name in ("lstm", "gru_reset_after", "rnn_tanh")]
OP_IDS = [c.op for c in OPS]

T, B, I, H = 5, 4, 3, 2  # the sizes of every validation call: all distinct, so a message shows which is which


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------

class _Tripwire:
    """Stands in for ``rnncore._core`` while a bad call is made. The recurrent entry points may look at the call
    (they recognise the exact call and answer anything else with NotImplemented, which the real ones do here), but
    no kernel may run: any other answer fails the test."""

    def __init__(self, core):
        self._core = core

    def __getattr__(self, name):
        real = getattr(self._core, name)

        def reached(*args, **kwargs):
            out = real(*args, **kwargs) if callable(real) else None
            if out is not NotImplemented:
                raise AssertionError(f"rnncore._core.{name} ran: validation must reject the input before any "
                                     f"kernel runs")
            return out
        return reached


@pytest.fixture
def no_cpp(monkeypatch):
    """Call the returned function to forbid any C++ call from then on (within this test)."""
    def arm():
        monkeypatch.setattr(rnncore.ops, "_core", _Tripwire(rnncore.ops._core))
        monkeypatch.setattr(rnncore, "_core", _Tripwire(rnncore._core))
    return arm


def msg(name, *parts):
    """A regex: the argument's name as a word, then each part (literal) in order, e.g. expected then received."""
    return r"(?s)(?<![\w.])" + re.escape(name) + r"(?![\w])" + "".join(".*" + re.escape(p) for p in parts)


def shape_text(shape):
    return str(tuple(shape))


def inputs_for(cell, dtype=np.float32, seed=0, lengths=False, sizes=(T, B, I, H), bias=True):
    rng = np.random.default_rng(seed)
    return make_inputs(rng, cell, *sizes, dtype, bias=bias, lengths=lengths)


def forward(cell, inputs, training=True, **overrides):
    """run_forward with some inputs replaced (by name) and/or cell options replaced (reset_after, nonlinearity)."""
    options = {k: overrides.pop(k) for k in list(overrides) if k in ("reset_after", "nonlinearity")}
    if options:
        cell = dataclasses.replace(cell, options={**cell.options, **options})
    return run_forward(ops, cell, dict(inputs, **overrides), training=training)


def expected_shape(cell, arg, sizes=(T, B, I, H)):
    """(the letters text, the sizes) the message must show for a full-size argument."""
    t, b, i, h = sizes
    G = cell.gates
    return {
        "x": ("[T, B, I]", None),
        "h0": ("[B, H]", (b, h)), "c0": ("[B, H]", (b, h)),
        "w_ih": (f"[{G}*H, I]", (G * h, i)), "w_hh": (f"[{G}*H, H]", None),
        "b_ih": (f"[{G}*H]", (G * h,)), "b_hh": (f"[{G}*H]", (G * h,)),
        "dy": ("[T, B, H]", (t, b, h)), "dh_n": ("[B, H]", (b, h)), "dc_n": ("[B, H]", (b, h)),
    }[arg]


def forward_array_args(cell):
    return ["x", *cell.state_names, "w_ih", "w_hh", "b_ih", "b_hh"]


def params_per_op(args_of, extra=((),)):
    """pytest params (cell, arg, *extra) for every op and every argument that op has."""
    return [pytest.param(cell, arg, *e, id="-".join(map(str, (cell.op, arg, *e))))
            for cell in OPS for arg in args_of(cell) for e in extra]


# ---------------------------------------------------------------------------------------------------------------
# Part 1: bad input raises, naming the argument, before any C++ runs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,arg,change", params_per_op(forward_array_args, [("extra_axis",), ("missing_axis",)]))
def test_forward_rejects_wrong_rank(cell, arg, change, no_cpp):
    inputs, _ = inputs_for(cell)
    good = inputs[arg]
    bad = good[..., None] if change == "extra_axis" else np.asarray(good[0])  # (a 1-d array's [0] is 0-d)
    letters, sizes = expected_shape(cell, arg)
    no_cpp()
    parts = [letters] + ([shape_text(sizes)] if sizes else []) + [f"got shape {shape_text(bad.shape)}"]
    with pytest.raises(ValueError, match=msg(arg, *parts)):
        forward(cell, inputs, **{arg: bad})


def _size_mismatches(cell):
    G = cell.gates
    cases = [
        # (case id, argument replaced, its bad shape, argument the message must name, expected sizes, received)
        ("I_mismatch", "w_ih", (G * H, I + 1), "w_ih", (G * H, I), (G * H, I + 1)),
        ("x_I_mismatch", "x", (T, B, I + 1), "w_ih", (G * H, I + 1), (G * H, I)),
        ("wrong_GH_rows_w_hh", "w_hh", (G * H + 1, H), "w_hh", (G * H, H), (G * H + 1, H)),
        ("wrong_GH_rows_w_ih", "w_ih", (G * H - 1, I), "w_ih", (G * H, I), (G * H - 1, I)),
        ("H_mismatch_w_hh", "w_hh", (G * (H + 1), H + 1), "w_ih", (G * (H + 1), I), (G * H, I)),
        ("bias_length", "b_hh", (G * H + 1,), "b_hh", (G * H,), (G * H + 1,)),
        ("bias_ih_length", "b_ih", (H,) if G > 1 else (H + 1,), "b_ih", (G * H,), (H,) if G > 1 else (H + 1,)),
    ]
    other_gates = {4: 3, 3: 4, 1: 3}[G]  # another cell's weights: G*H rows for the wrong G
    cases.append(("other_cells_weights", "w_hh", (other_gates * H, H), "w_hh", (G * H, H), (other_gates * H, H)))
    for s in cell.state_names:
        cases.append((f"{s}_H_mismatch", s, (B, H + 1), s, (B, H), (B, H + 1)))
        cases.append((f"{s}_B_mismatch", s, (B - 1, H), s, (B, H), (B - 1, H)))
    return cases


@pytest.mark.parametrize("cell,case", [pytest.param(c, case, id=f"{c.op}-{case[0]}")
                                       for c in OPS for case in _size_mismatches(c)])
def test_forward_rejects_mismatched_sizes(cell, case, no_cpp):
    _, arg, bad_shape, named, want, got = case
    inputs, _ = inputs_for(cell)
    bad = np.zeros(bad_shape, np.float32)
    no_cpp()
    with pytest.raises(ValueError, match=msg(named, shape_text(want), f"got shape {shape_text(got)}")):
        forward(cell, inputs, **{arg: bad})


@pytest.mark.parametrize("first", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,arg", params_per_op(lambda c: forward_array_args(c)[1:]))
def test_forward_rejects_mixed_dtypes(cell, arg, first, no_cpp):
    """x fixes the dtype; any other array of the other float dtype is a TypeError, never a silent cast."""
    other = np.float64 if first == np.float32 else np.float32
    inputs, _ = inputs_for(cell, dtype=first)
    bad = inputs[arg].astype(other)
    no_cpp()
    with pytest.raises(TypeError, match=msg(arg, np.dtype(other).name, "expected", np.dtype(first).name)):
        forward(cell, inputs, **{arg: bad})


@pytest.mark.parametrize("bad_dtype", [np.int64, np.int32, np.float16, np.bool_, np.complex64, np.longdouble])
@pytest.mark.parametrize("cell", OPS, ids=OP_IDS)
def test_forward_rejects_non_float_x(cell, bad_dtype, no_cpp):
    inputs, _ = inputs_for(cell)
    bad = inputs["x"].astype(bad_dtype)
    no_cpp()
    with pytest.raises(TypeError, match=msg("x", "float32 or float64", f"got {np.dtype(bad_dtype).name}")):
        forward(cell, inputs, x=bad)


@pytest.mark.parametrize("cell,arg", params_per_op(lambda c: forward_array_args(c)[1:]))
def test_forward_rejects_integer_weights_and_states(cell, arg, no_cpp):
    inputs, _ = inputs_for(cell)
    bad = np.ones(inputs[arg].shape, np.int64)
    no_cpp()
    with pytest.raises(TypeError, match=msg(arg, "int64", "float32")):
        forward(cell, inputs, **{arg: bad})


@pytest.mark.parametrize("cell,arg", params_per_op(forward_array_args))
def test_forward_rejects_python_lists(cell, arg, no_cpp):
    inputs, _ = inputs_for(cell)
    bad = inputs[arg].tolist()
    no_cpp()
    with pytest.raises(TypeError, match=msg(arg, "numpy.ndarray", "got list")):
        forward(cell, inputs, **{arg: bad})


LENGTH_CASES = [
    # (id, bad lengths, exception, parts of the message after "lengths")
    ("zero", np.array([T, 0, 1, 2]), ValueError, ["1..T = 1..5", "[0]"]),
    ("negative", np.array([T, 2, -1, 2]), ValueError, ["1..T = 1..5", "[-1]"]),
    ("above_T", np.array([T, T + 1, 1, 2]), ValueError, ["1..T = 1..5", "[6]"]),
    ("too_short", np.array([T, 1, 2]), ValueError, ["[B] = (4,)", "got shape (3,)"]),
    ("too_long", np.array([T, 1, 2, 3, 4]), ValueError, ["[B] = (4,)", "got shape (5,)"]),
    ("two_dimensional", np.full((B, 1), 2), ValueError, ["[B] = (4,)", "got shape (4, 1)"]),
    ("scalar", np.int64(3), ValueError, ["[B] = (4,)", "got shape ()"]),
    ("float", np.array([5.0, 1.0, 2.0, 3.0]), TypeError, ["integers", "float64"]),
    ("bool", np.array([True, True, False, True]), TypeError, ["integers", "bool"]),
]


@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c[0] for c in LENGTH_CASES])
@pytest.mark.parametrize("cell", OPS, ids=OP_IDS)
def test_forward_rejects_bad_lengths(cell, case, no_cpp):
    _, bad, exc, parts = case
    inputs, _ = inputs_for(cell)
    no_cpp()
    with pytest.raises(exc, match=msg("lengths", *parts)):
        forward(cell, inputs, lengths=bad)


@pytest.mark.parametrize("bad", ["sigmoid", "TANH", "", None, 1, np.array(["tanh"]), np.array(["tanh", "relu"])],
                         ids=["sigmoid", "TANH", "empty", "None", "1", "array1", "array2"])
def test_rnn_rejects_bad_nonlinearity(bad, no_cpp):
    cell = OPS[2]
    inputs, _ = inputs_for(cell)
    no_cpp()
    with pytest.raises(ValueError, match=msg("nonlinearity", "'tanh', 'relu'", f"got {bad!r}")):
        forward(cell, inputs, nonlinearity=bad)


@pytest.mark.parametrize("bad", [1, 0, "True", None, 1.0, np.array(True)])
def test_gru_rejects_non_bool_reset_after(bad, no_cpp):
    cell = OPS[1]
    inputs, _ = inputs_for(cell)
    no_cpp()
    with pytest.raises(TypeError, match=msg("reset_after", "bool", f"got {type(bad).__name__}")):
        forward(cell, inputs, reset_after=bad)


def test_gru_accepts_numpy_bool_reset_after():
    cell = OPS[1]
    inputs, _ = inputs_for(cell)
    for flag in (True, False):
        want, ws_want = forward(cell, inputs, reset_after=flag)
        got, ws_got = forward(cell, inputs, reset_after=np.bool_(flag))
        assert ws_got.reset_after is flag
        np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize("cell", OPS, ids=OP_IDS)
def test_backward_without_workspace_mentions_training(cell, no_cpp):
    inputs, upstream = inputs_for(cell)
    _, ws = forward(cell, inputs, training=False)
    assert ws is None
    no_cpp()
    with pytest.raises(TypeError, match=r"(?s)\bworkspace\b.*training=True.*NoneType.*training=False"):
        run_backward(ops, cell, ws, upstream)


@pytest.mark.parametrize("cell", OPS, ids=OP_IDS)
def test_backward_rejects_a_reference_cache(cell, no_cpp):
    inputs, upstream = inputs_for(cell)
    _, cache = run_forward(reference, cell, inputs)
    no_cpp()
    with pytest.raises(TypeError, match=msg("workspace", f"{cell.op}_forward", f"got {type(cache).__name__}")):
        run_backward(ops, cell, cache, upstream)


@pytest.mark.parametrize("made_by,used_by", [pytest.param(a, b, id=f"{a.op}_ws-to-{b.op}_backward")
                                             for a in OPS for b in OPS if a.op != b.op])
def test_backward_rejects_another_cells_workspace(made_by, used_by, no_cpp):
    inputs, _ = inputs_for(made_by)
    _, ws = forward(made_by, inputs)
    _, upstream = inputs_for(used_by)
    no_cpp()
    with pytest.raises(ValueError, match=msg(f"{used_by.op}_backward", f"{made_by.op}_forward",
                                             f"{used_by.op}_forward")):
        run_backward(ops, used_by, ws, upstream)


def _upstream_args(cell):
    return ["dy", "dh_n"] + (["dc_n"] if cell.has_cell_state else [])


@pytest.mark.parametrize("change", ["extra_axis", "missing_axis", "wrong_size"])
@pytest.mark.parametrize("cell,arg", params_per_op(_upstream_args))
def test_backward_rejects_upstream_of_wrong_shape(cell, arg, change, no_cpp):
    inputs, upstream = inputs_for(cell)
    _, ws = forward(cell, inputs)
    good = upstream[arg]
    bad = {"extra_axis": good[..., None], "missing_axis": good[0],
           "wrong_size": np.zeros(good.shape[:-1] + (good.shape[-1] + 1,), good.dtype)}[change]
    letters, sizes = expected_shape(cell, arg)
    no_cpp()
    with pytest.raises(ValueError, match=msg(arg, letters, shape_text(sizes), f"got shape {shape_text(bad.shape)}")):
        run_backward(ops, cell, ws, dict(upstream, **{arg: bad}))


@pytest.mark.parametrize("first", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,arg", params_per_op(_upstream_args))
def test_backward_rejects_upstream_of_wrong_dtype(cell, arg, first, no_cpp):
    other = np.float64 if first == np.float32 else np.float32
    inputs, upstream = inputs_for(cell, dtype=first)
    _, ws = forward(cell, inputs)
    bad = upstream[arg].astype(other)
    no_cpp()
    with pytest.raises(TypeError, match=msg(arg, np.dtype(other).name, "expected", np.dtype(first).name)):
        run_backward(ops, cell, ws, dict(upstream, **{arg: bad}))


@pytest.mark.parametrize("cell", OPS, ids=OP_IDS)
def test_backward_rejects_list_dy(cell, no_cpp):
    inputs, upstream = inputs_for(cell)
    _, ws = forward(cell, inputs)
    no_cpp()
    with pytest.raises(TypeError, match=msg("dy", "numpy.ndarray", "[T, B, H]", "got list")):
        run_backward(ops, cell, ws, dict(upstream, dy=upstream["dy"].tolist()))


# --- masked softmax ---------------------------------------------------------------------------------------------

E = np.arange(6, dtype=np.float32).reshape(2, 3)

@pytest.mark.parametrize("e,exc,parts", [
    pytest.param(np.float32(1.0), TypeError, ["numpy.ndarray", "float32"], id="numpy_scalar"),
    pytest.param(np.array(1.0), ValueError, ["at least one axis", "0-d"], id="0-d"),
    pytest.param([[1.0, 2.0]], TypeError, ["numpy.ndarray", "got list"], id="list"),
    pytest.param(np.ones((2, 3), np.int64), TypeError, ["float32 or float64", "got int64"], id="int64"),
    pytest.param(np.ones((2, 3), np.float16), TypeError, ["float32 or float64", "got float16"], id="float16"),
])
def test_masked_softmax_rejects_bad_scores(e, exc, parts, no_cpp):
    no_cpp()
    with pytest.raises(exc, match=msg("e", *parts)):
        ops.masked_softmax(e)


@pytest.mark.parametrize("mask,exc,parts", [
    pytest.param(np.ones((2, 3), np.float64), TypeError, ["boolean or integer", "float64"], id="float_mask"),
    pytest.param(np.ones((2, 3), np.float32), TypeError, ["boolean or integer", "float32"], id="float32_mask"),
    pytest.param(np.array(["a", "b", "c"]), TypeError, ["boolean or integer", "<U1"], id="string_mask"),
    pytest.param(np.ones(4, bool), ValueError, ["broadcastable", "(2, 3)", "got shape (4,)"], id="wrong_length"),
    pytest.param(np.ones((3, 1), bool), ValueError, ["broadcastable", "(2, 3)", "got shape (3, 1)"], id="wrong_rows"),
    pytest.param(np.ones((2, 2, 3), bool), ValueError, ["broadcastable", "(2, 3)", "got shape (2, 2, 3)"],
                 id="more_axes"),
])
def test_masked_softmax_rejects_bad_masks(mask, exc, parts, no_cpp):
    no_cpp()
    with pytest.raises(exc, match=msg("mask", *parts)):
        ops.masked_softmax(E, mask)


@pytest.mark.parametrize("alpha,dalpha,exc,name,parts", [
    pytest.param(E, np.ones((2, 4), np.float32), ValueError, "dalpha", ["(2, 3)", "got shape (2, 4)"], id="shape"),
    pytest.param(E, np.ones((3, 2), np.float32), ValueError, "dalpha", ["(2, 3)", "got shape (3, 2)"], id="transposed"),
    pytest.param(E, np.ones(3, np.float32), ValueError, "dalpha", ["(2, 3)", "got shape (3,)"], id="rank"),
    pytest.param(E, np.ones((2, 3), np.float64), TypeError, "dalpha", ["float64", "expected", "float32"], id="dtype"),
    pytest.param(E.astype(np.float64), np.ones((2, 3), np.float32), TypeError, "dalpha",
                 ["float32", "expected", "float64"], id="dtype_other_way"),
    pytest.param(E, [[1.0] * 3] * 2, TypeError, "dalpha", ["numpy.ndarray", "got list"], id="list"),
    pytest.param(np.array(0.5), np.array(1.0), ValueError, "alpha", ["at least one axis", "0-d"], id="0-d"),
    pytest.param(E.astype(np.int32), E.astype(np.int32), TypeError, "alpha", ["float32 or float64", "int32"],
                 id="int"),
])
def test_masked_softmax_backward_rejects_bad_input(alpha, dalpha, exc, name, parts, no_cpp):
    no_cpp()
    with pytest.raises(exc, match=msg(name, *parts)):
        ops.masked_softmax_backward(alpha, dalpha)


# --- threads ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,exc,parts", [
    (0, ValueError, [">= 1", "got 0"]),
    (-2, ValueError, [">= 1", "got -2"]),
    ("2", TypeError, ["int", "got str"]),
    (2.0, TypeError, ["int", "got float"]),
    (True, TypeError, ["int", "got bool"]),
    (None, TypeError, ["int", "got NoneType"]),
])
def test_set_num_threads_rejects_bad_counts(bad, exc, parts, no_cpp):
    no_cpp()
    with pytest.raises(exc, match=msg("n", *parts)):
        rnncore.set_num_threads(bad)


def test_set_num_threads_accepts_numpy_ints_and_failed_calls_change_nothing():
    before = rnncore.get_num_threads()
    try:
        rnncore.set_num_threads(np.int64(1))
        assert rnncore.get_num_threads() == 1
        for bad in (0, "2"):
            with pytest.raises((TypeError, ValueError)):
                rnncore.set_num_threads(bad)
        assert rnncore.get_num_threads() == 1
    finally:
        rnncore.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------------
# Part 2: documented behaviours
# ---------------------------------------------------------------------------------------------------------------

# --- empty T and B ----------------------------------------------------------------------------------------------

def check_empty(cell_name, steps, batch, dtype_name, with_states=True):
    """T = 0 and/or B = 0: outputs of the right empty shapes, h_n = h0 (c_n = c0), and backward gives zero weight
    and bias gradients and dh0 = dh_n (dc0 = dc_n). Raises AssertionError on any difference."""
    cell = {c.name: c for c in CELLS}[cell_name]
    dtype = np.dtype(dtype_name)
    G, sizes = cell.gates, (steps, batch, 3, 4)
    rng = np.random.default_rng(steps * 10 + batch)
    inputs, upstream = make_inputs(rng, cell, *sizes, dtype)
    if not with_states:
        for s in cell.state_names:
            inputs[s] = None
        upstream = {k: None for k in upstream}
    if batch == 0:
        inputs["lengths"] = np.zeros(0, np.int64)
    out, ws = run_forward(ops, cell, inputs)
    assert out["y"].shape == (steps, batch, 4) and out["y"].dtype == dtype
    for state, final in zip(cell.state_names, cell.output_names[1:]):
        assert out[final].shape == (batch, 4) and out[final].dtype == dtype, final
        want = inputs[state] if with_states else np.zeros((batch, 4), dtype)
        np.testing.assert_array_equal(out[final], want, err_msg=f"{final} must equal {state} when T = 0")

    grads = run_backward(ops, cell, ws, upstream)
    want_shapes = {"dx": (steps, batch, 3), "dh0": (batch, 4), "dc0": (batch, 4), "dw_ih": (G * 4, 3),
                   "dw_hh": (G * 4, 4), "db_ih": (G * 4,), "db_hh": (G * 4,)}
    for name in cell.gradient_names:
        assert grads[name].shape == want_shapes[name] and grads[name].dtype == dtype, name
    for name in ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_array_equal(grads[name], np.zeros(want_shapes[name], dtype), err_msg=name)
    for dstate, dfinal in zip(("dh0", "dc0") if cell.has_cell_state else ("dh0",), ("dh_n", "dc_n")):
        want = upstream[dfinal] if with_states else np.zeros((batch, 4), dtype)
        np.testing.assert_array_equal(grads[dstate], want, err_msg=f"{dstate} must equal {dfinal}")
    # The reference agrees (shapes and values).
    ref_out, cache = run_forward(reference, cell, inputs)
    for name in cell.output_names:
        np.testing.assert_array_equal(out[name], ref_out[name], err_msg=f"reference {name}")


@pytest.mark.parametrize("with_states", [True, False], ids=["states", "no_states"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_zero_time_steps(cell, dtype, with_states):
    check_empty(cell.name, 0, 3, np.dtype(dtype).name, with_states)


_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def run_isolated(call):
    """Runs ``call`` (Python source using this module as ``t``) in a fresh interpreter, so that a crash in C++ fails
    one test instead of killing the session. Returns (returncode, output)."""
    code = f"import sys; sys.path.insert(0, {_TESTS_DIR!r}); import test_validation as t; {call}; print('DONE')"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_empty_batch(cell):
    """B = 0 (with T > 0 and T = 0), both dtypes, with and without states. Run in a subprocess: backward with B = 0
    passes nullptr (the data of empty Eigen matrices) to std::memcpy(dst, src, 0), which is undefined behaviour,
    and some builds have crashed on it (SIGSEGV); here that fails this test instead of killing the session."""
    calls = "; ".join(f"t.check_empty({cell.name!r}, {steps}, 0, {dt!r}, {ws})"
                      for steps in (4, 0) for dt in ("float32", "float64") for ws in (True, False))
    returncode, output = run_isolated(calls)
    assert returncode == 0 and output.rstrip().endswith("DONE"), f"exit code {returncode}:\n{output[-3000:]}"


@pytest.mark.parametrize("what", ["I", "H"])
@pytest.mark.parametrize("cell", OPS, ids=OP_IDS)
def test_zero_input_or_hidden_size_rejected(cell, what, no_cpp):
    i, h = (0, H) if what == "I" else (I, 0)
    G = cell.gates
    inputs = dict(x=np.ones((T, B, i), np.float32), w_ih=np.ones((G * h, i), np.float32),
                  w_hh=np.ones((G * h, h), np.float32), b_ih=np.ones(G * h, np.float32),
                  b_hh=np.ones(G * h, np.float32), lengths=None,
                  **{s: np.ones((B, h), np.float32) for s in cell.state_names})
    no_cpp()
    if what == "I":
        match = msg("x", "I >= 1", f"got shape {shape_text((T, B, 0))}")
    else:
        match = msg("w_hh", "H >= 1", f"got shape {shape_text((0, 0))}")
    with pytest.raises(ValueError, match=match):
        forward(cell, inputs)


# --- memory layout ----------------------------------------------------------------------------------------------

def strided_views(arrays):
    """The same values, none of them C-contiguous: a strided slice, Fortran order, transposed views, negative
    strides."""
    def every_other(a, axis):
        return np.repeat(a, 2, axis=axis)[(slice(None),) * axis + (slice(None, None, 2),)]

    def transposed_view(a):
        return np.ascontiguousarray(a.T).T

    def reversed_view(a):
        return a[::-1].copy()[::-1]

    how = {"x": lambda a: every_other(a, 1), "h0": np.asfortranarray, "c0": transposed_view,
           "w_ih": transposed_view, "w_hh": np.asfortranarray, "b_ih": lambda a: every_other(a, 0),
           "b_hh": reversed_view, "lengths": lambda a: every_other(a.astype(np.int32), 0),
           "dy": np.asfortranarray, "dh_n": transposed_view, "dc_n": lambda a: every_other(a, 0)}
    views = {k: (how[k](v) if v is not None else None) for k, v in arrays.items()}
    for k, v in views.items():
        if v is not None:
            assert not v.flags.c_contiguous and np.array_equal(v, arrays[k]), k  # the test really strides
    return views


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_strided_and_fortran_inputs_give_identical_results(cell, dtype):
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=5, lengths=True, sizes=(6, 5, 4, 3))
    inputs["lengths"][0] = 6
    want, ws = run_forward(ops, cell, inputs)
    dwant = run_backward(ops, cell, ws, upstream)
    got, ws_strided = run_forward(ops, cell, strided_views(inputs))
    dgot = run_backward(ops, cell, ws_strided, strided_views(upstream))
    for name in cell.output_names:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for name in cell.gradient_names:
        assert_identical(dgot[name], dwant[name], name)


def test_strided_masked_softmax_inputs_give_identical_results():
    # With a mask the kernel sums each row in a fixed scalar order, so the result cannot depend on addresses.
    rng = np.random.default_rng(9)
    e = rng.standard_normal((4, 6))
    mask = rng.random((4, 6)) < 0.7
    want = ops.masked_softmax(e, mask)
    for e_view, mask_view in [(np.asfortranarray(e), np.asfortranarray(mask)),
                              (np.repeat(e, 2, axis=1)[:, ::2], np.repeat(mask, 2, axis=0)[::2]),
                              (e[::-1].copy()[::-1], mask.T.copy().T)]:
        assert not e_view.flags.c_contiguous and not mask_view.flags.c_contiguous
        np.testing.assert_array_equal(ops.masked_softmax(e_view, mask_view), want)


# --- the exact call, recognised in C++ -----------------------------------------------------------------------------

def core_forward(cell, inputs, training=True):
    """Calls ``rnncore._core.<cell>_forward`` directly, with the arguments exactly as given."""
    args = [inputs["x"], *(inputs[s] for s in cell.state_names), inputs["w_ih"], inputs["w_hh"], inputs["b_ih"],
            inputs["b_hh"], inputs["lengths"], training, *cell.options.values()]
    return getattr(rnncore._core, f"{cell.op}_forward")(*args)


def core_backward(cell, ws, upstream):
    return getattr(rnncore._core, f"{cell.op}_backward")(ws, *upstream.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_exact_call_runs_without_python_checks(cell, dtype, lengths):
    """The common call (exact C-contiguous arrays, int64 lengths, bool flags) is taken by _core as it is."""
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=6, lengths=lengths)
    if lengths:
        inputs["lengths"] = inputs["lengths"].astype(np.int64)
    out = core_forward(cell, inputs)
    assert out is not NotImplemented
    want, ws = run_forward(ops, cell, inputs)
    for got, name in zip(out, cell.output_names):
        np.testing.assert_array_equal(got, want[name], err_msg=name)
    grads = core_backward(cell, out[-1], upstream)
    assert grads is not NotImplemented
    for got, name in zip(grads, cell.gradient_names):
        assert_identical(got, run_backward(ops, cell, ws, upstream)[name], name)


class _Subclass(np.ndarray):
    pass


def inexact_variants(inputs):
    """Valid calls that are not exact: _core must refuse each (NotImplemented), ops must still run them."""
    yield "x as a subclass", dict(inputs, x=inputs["x"].view(_Subclass))
    yield "b_ih strided", dict(inputs, b_ih=np.repeat(inputs["b_ih"], 2)[::2])
    yield "h0 in Fortran order", dict(inputs, h0=np.asfortranarray(inputs["h0"]))
    yield "lengths int32", dict(inputs, lengths=np.full(inputs["x"].shape[1], 2, np.int32))
    yield "lengths a list", dict(inputs, lengths=[1] * inputs["x"].shape[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_inexact_calls_go_through_the_checks(cell, dtype):
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=7, sizes=(3, 4, 2, 5))
    swapped = np.dtype(dtype).newbyteorder()
    for what, bad in [("w_hh byte-swapped", dict(inputs, w_hh=inputs["w_hh"].astype(swapped))),
                      ("w_ih as a list", dict(inputs, w_ih=inputs["w_ih"].tolist()))]:
        assert core_forward(cell, bad) is NotImplemented, what
        with pytest.raises(TypeError):
            run_forward(ops, cell, bad)
    for what, variant in inexact_variants(inputs):
        assert core_forward(cell, variant) is NotImplemented, what
        want_inputs = {k: (np.ascontiguousarray(v, dtype=dtype) if k != "lengths" else
                           (None if v is None else np.asarray(v, np.int64))) if v is not None else None
                       for k, v in variant.items()}
        want, _ = run_forward(ops, cell, want_inputs)
        got, _ = run_forward(ops, cell, variant)
        for name in cell.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{what}: {name}")
    assert core_forward(cell, inputs, training=1) is NotImplemented  # flags must be bools
    got, ws = run_forward(ops, cell, inputs, training=1)
    assert ws is not None
    assert core_backward(cell, ws, {k: v.tolist() for k, v in upstream.items()}) is NotImplemented
    assert core_backward(cell, ws, {k: np.asfortranarray(v) for k, v in upstream.items()}) is NotImplemented
    grads = run_backward(ops, cell, ws, {k: np.asfortranarray(v) for k, v in upstream.items()})
    for name, want in run_backward(ops, cell, ws, upstream).items():
        assert_identical(grads[name], want, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_equivalent_dtype_objects_take_the_exact_path(dtype):
    """Arrays whose dtype equals float32/float64 without being numpy's own object (unpickled arrays, dtypes with
    metadata) are exact too: C++ takes them as they are, ops gives the same results."""
    import pickle
    cell = next(c for c in CELLS if c.name == "lstm")
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=8)
    want, ws = run_forward(ops, cell, inputs)
    dwant = run_backward(ops, cell, ws, upstream)
    with_metadata = np.dtype(dtype, metadata={"units": "none"})
    for what, convert in [("unpickled", lambda a: pickle.loads(pickle.dumps(a))),
                          ("metadata", lambda a: a.astype(with_metadata))]:
        variant = {k: (convert(v) if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
        assert core_forward(cell, variant) is not NotImplemented, what
        got, ws2 = run_forward(ops, cell, variant)
        for name in cell.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{what}: {name}")
        dgot = run_backward(ops, cell, ws2, {k: convert(v) for k, v in upstream.items()})
        for name in cell.gradient_names:
            assert_identical(dgot[name], dwant[name], name, what)


def test_core_refuses_option_spellings_it_does_not_know():
    cell = next(c for c in CELLS if c.name == "rnn_tanh")
    inputs, _ = inputs_for(cell)
    for name in ("TANH", np.str_("tanh"), None):
        assert core_forward(dataclasses.replace(cell, options={"nonlinearity": name}), inputs) is NotImplemented
    # ... and ops still runs a str subclass that names a valid option (the checks hand C++ the plain str)
    got, _ = run_forward(ops, dataclasses.replace(cell, options={"nonlinearity": np.str_("tanh")}), inputs)
    want, _ = run_forward(ops, cell, inputs)
    np.testing.assert_array_equal(got["y"], want["y"])
    gru = next(c for c in CELLS if c.name == "gru_reset_after")
    inputs, _ = inputs_for(gru)
    assert core_forward(dataclasses.replace(gru, options={"reset_after": np.True_}), inputs) is NotImplemented
    lengths = np.full(B, T + 1, np.int64)  # out of range: refused in C++, then named by the checks
    assert core_forward(gru, dict(inputs, lengths=lengths)) is NotImplemented
    with pytest.raises(ValueError, match=msg("lengths", "1..T")):
        run_forward(ops, gru, dict(inputs, lengths=lengths))


# --- the caller's arrays ----------------------------------------------------------------------------------------

def copies(d):
    return {k: (None if v is None else v.copy()) for k, v in d.items()}


def assert_unchanged(before, after):
    for k, v in before.items():
        if v is not None:
            np.testing.assert_array_equal(after[k], v, err_msg=f"{k} was modified")


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_inputs_are_never_modified(cell, training):
    inputs, upstream = inputs_for(cell, dtype=np.float64, seed=7, lengths=True, sizes=(6, 4, 3, 5))
    inputs_before, upstream_before = copies(inputs), copies(upstream)
    _, ws = run_forward(ops, cell, inputs, training=training)
    assert_unchanged(inputs_before, inputs)
    if training:
        run_backward(ops, cell, ws, upstream)
        run_backward(ops, cell, ws, upstream)
        assert_unchanged(inputs_before, inputs)
        assert_unchanged(upstream_before, upstream)


def test_masked_softmax_inputs_are_never_modified():
    rng = np.random.default_rng(4)
    e, dalpha = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    mask = rng.integers(0, 3, (3, 5))
    saved = copies(dict(e=e, dalpha=dalpha, mask=mask))
    alpha = ops.masked_softmax(e, mask)
    alpha_saved = alpha.copy()
    ops.masked_softmax_backward(alpha, dalpha)
    assert_unchanged(saved, dict(e=e, dalpha=dalpha, mask=mask))
    np.testing.assert_array_equal(alpha, alpha_saved)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_mutating_inputs_after_forward_does_not_change_gradients(cell):
    """The workspace keeps private copies of x, the states, the weights and the lengths."""
    inputs, upstream = inputs_for(cell, dtype=np.float64, seed=8, lengths=True, sizes=(6, 4, 3, 5))
    inputs["lengths"][:] = [6, 3, 1, 5]
    clean = copies(inputs)
    _, ws_clean = run_forward(ops, cell, clean)
    want = run_backward(ops, cell, ws_clean, upstream)

    _, ws = run_forward(ops, cell, inputs)
    for k, v in inputs.items():  # in place, on the very arrays the kernel read (C-contiguous, so not copied)
        assert v.flags.c_contiguous
        if k == "lengths":
            v[:] = 6
        else:
            v[...] = np.nan if k == "x" else 3.0
    got = run_backward(ops, cell, ws, upstream)
    for name in cell.gradient_names:
        assert_identical(got[name], want[name], name)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_backward_twice_on_one_workspace(cell):
    inputs, upstream = inputs_for(cell, dtype=np.float32, seed=9, lengths=True, sizes=(5, 3, 4, 6))
    _, ws = run_forward(ops, cell, inputs)
    first = run_backward(ops, cell, ws, upstream)
    saved = copies(first)
    for v in first.values():  # the gradients are fresh arrays: scribbling on them must not reach the workspace
        v[...] = np.nan
    second = run_backward(ops, cell, ws, upstream)
    third = run_backward(ops, cell, ws, upstream)
    for name in cell.gradient_names:
        assert_identical(second[name], saved[name], name)
        assert_identical(third[name], saved[name], name)
        assert not np.shares_memory(second[name], third[name]), name


# --- non-finite values ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_nan_in_x_propagates_to_y(cell):
    inputs, upstream = inputs_for(cell, dtype=np.float64, seed=10, sizes=(4, 3, 3, 5))
    clean, _ = run_forward(ops, cell, inputs)
    x = inputs["x"].copy()
    x[1, 0, 0] = np.nan
    out, ws = run_forward(ops, cell, dict(inputs, x=x))
    assert np.isnan(out["y"][1:, 0]).all(), "every later output of the sample must be NaN"
    assert np.isnan(out["h_n"][0]).all()
    np.testing.assert_array_equal(out["y"][0], clean["y"][0], err_msg="steps before the NaN are unaffected")
    np.testing.assert_array_equal(out["y"][:, 1:], clean["y"][:, 1:], err_msg="other samples are unaffected")
    grads = run_backward(ops, cell, ws, upstream)  # no crash; the NaN reaches the weight gradients
    assert np.isnan(grads["dw_ih"]).any()


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_non_finite_x_matches_reference(cell, value):
    """Whatever a non-finite input turns into (saturated gates, inf, NaN), the kernel gives what the spec gives."""
    inputs, upstream = inputs_for(cell, dtype=np.float64, seed=11, sizes=(4, 3, 3, 5))
    inputs["x"][1, 0, 0] = value
    inputs["x"][2, 2, :] = value
    out, _ = run_forward(ops, cell, inputs)
    with np.errstate(all="ignore"):
        want, _ = run_forward(reference, cell, inputs)
    for name in cell.output_names:
        np.testing.assert_array_equal(np.isnan(out[name]), np.isnan(want[name]), err_msg=f"NaN pattern of {name}")
        assert_close(out[name], want[name], "kernel_vs_reference", np.float64, name)
    np.testing.assert_array_equal(np.isfinite(out["y"][:, 1]), True, err_msg="sample 1 has only finite inputs")


PAD_VALUES = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_non_finite_padding_does_not_leak(cell, dtype, training):
    """x (and dy) at padded steps t >= lengths[b] are never read: NaN/inf there changes nothing, anywhere."""
    steps = 6
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=12, sizes=(steps, 4, 3, 5))
    inputs["lengths"] = np.array([steps, 2, 1, 4])
    padded = np.arange(steps)[:, None] >= inputs["lengths"][None, :]   # [T, B]
    for a in (inputs["x"], upstream["dy"]):
        a[padded] = 0.0
    want, ws_want = run_forward(ops, cell, inputs, training=training)

    x, dy = inputs["x"].copy(), upstream["dy"].copy()
    t_idx, b_idx = np.nonzero(padded)
    for k, (t, b) in enumerate(zip(t_idx, b_idx)):
        x[t, b] = PAD_VALUES[k % 3]
        dy[t, b] = PAD_VALUES[(k + 1) % 3]
    got, ws = run_forward(ops, cell, dict(inputs, x=x), training=training)
    for name in cell.output_names:
        assert np.isfinite(got[name]).all(), f"{name} is not finite"
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    if not training:
        return
    dwant = run_backward(ops, cell, ws_want, upstream)
    dgot = run_backward(ops, cell, ws, dict(upstream, dy=dy))
    for name in cell.gradient_names:
        assert np.isfinite(dgot[name]).all(), f"{name} is not finite"
        assert_identical(dgot[name], dwant[name], name)
    assert not dgot["dx"][padded].any(), "padded steps get no gradient"


# --- missing biases ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["both", "b_ih", "b_hh"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_missing_bias_gives_no_gradient_and_acts_as_zero(cell, missing):
    inputs, upstream = inputs_for(cell, dtype=np.float64, seed=13, lengths=True, sizes=(5, 3, 4, 6))
    names = ("b_ih", "b_hh") if missing == "both" else (missing,)
    zero = dict(inputs, **{n: np.zeros_like(inputs[n]) for n in names})
    none = dict(inputs, **{n: None for n in names})
    want, ws_want = run_forward(ops, cell, zero)
    got, ws = run_forward(ops, cell, none)
    assert ws.has_bias_ih == ("b_ih" not in names) and ws.has_bias_hh == ("b_hh" not in names)
    for name in cell.output_names:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    dwant = run_backward(ops, cell, ws_want, upstream)
    dgot = run_backward(ops, cell, ws, upstream)
    for name in cell.gradient_names:
        if name[1:] in names:
            assert dgot[name] is None, f"{name} must be None when {name[1:]} is None"
        else:
            assert dgot[name] is not None, name
            assert_identical(dgot[name], dwant[name], name)


# --- reproducibility of the bias gradients ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_gradients_do_not_depend_on_the_arrays_addresses(cell, dtype):
    """The same values at other alignments (offset by 1..15 elements) give bit-identical gradients: no summation
    order follows an address (Eigen peels unaligned heads into a different order)."""
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=14, sizes=(6, 7, 4, 8))
    _, ws = run_forward(ops, cell, inputs)
    first = run_backward(ops, cell, ws, upstream)
    for offset in range(1, 16):
        moved_inputs = {k: at_offset(v, offset) if isinstance(v, np.ndarray) and v.dtype == dtype else v
                        for k, v in inputs.items()}
        moved_upstream = {k: at_offset(v, offset) for k, v in upstream.items()}
        _, moved_ws = run_forward(ops, cell, moved_inputs)
        again = run_backward(ops, cell, moved_ws, moved_upstream)
        for name in cell.gradient_names:
            assert_identical(again[name], first[name], name, f"offset {offset}:")
