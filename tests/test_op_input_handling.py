"""The documented behaviours of the ops around valid inputs: empty T/B, strided and Fortran-ordered inputs, the
caller's arrays left untouched, the workspace's private copies, repeated backward, non-finite values (propagated when
real, ignored when padded), missing biases, and gradients that do not depend on the arrays' addresses.

Bad inputs (and I = H = 0, which is refused) are in test_op_argument_checks.py.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES, at_offset
from support.cells import CELL_IDS, CELLS, make_inputs, run_backward, run_forward
from support.op_calls import inputs_for
from support.tolerances import assert_close, assert_identical

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
    code = f"import sys; sys.path.insert(0, {_TESTS_DIR!r}); import test_op_input_handling as t; {call}; print('DONE')"
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
