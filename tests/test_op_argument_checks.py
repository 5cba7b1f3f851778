"""Argument checks of every public op: every bad input raises TypeError/ValueError before any C++ runs (``_core`` is
replaced by a tripwire while the bad call is made), with a message that names the argument and shows what was expected
and what was received. Next to the refused spellings, the accepted ones (numpy bools, numpy ints).

The behaviours around valid inputs (empty T/B, strided arrays, non-finite values, ...) are in test_op_input_handling.py;
the exact call that C++ takes without the Python checks is in test_op_exact_call.py.
"""

import dataclasses

import numpy as np
import pytest

import rnncore
from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES
from support.cells import CELLS, run_backward, run_forward
from support.op_calls import B, H, I, T, inputs_for, msg

# One variant per op for the argument checks (they do not depend on reset_after / nonlinearity).
OPS = [c for c in CELLS if c.name in ("lstm", "gru_reset_after", "rnn_tanh")]
OP_IDS = [c.op for c in OPS]


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
        tripwire = _Tripwire(rnncore._core)
        for family in (rnncore.ops.rnn, rnncore.ops.attention, rnncore.ops.nn, rnncore.ops.runtime):
            monkeypatch.setattr(family, "_core", tripwire)  # each family module calls _core by its own name
        monkeypatch.setattr(rnncore, "_core", tripwire)
    return arm


def shape_text(shape):
    return str(tuple(shape))


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
# Bad input raises, naming the argument, before any C++ runs
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


# --- I = 0 or H = 0 -------------------------------------------------------------------------------------------------

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
