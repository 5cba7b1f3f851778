"""The exact call, recognised in C++: a call whose arguments are exactly what the kernels take (C-contiguous float32 /
float64 ndarrays, int64 lengths, bool flags, known option spellings) runs in ``_core`` without the Python checks;
``_core`` answers any other call with NotImplemented, and ``rnncore.ops`` then runs it through the checks, with the
same results.
"""

import dataclasses

import numpy as np
import pytest

import rnncore
from rnncore import ops

from support.arrays import DTYPE_IDS, DTYPES
from support.cells import CELL_IDS, CELLS, run_backward, run_forward
from support.op_calls import B, T, inputs_for, msg
from support.tolerances import assert_identical


def core_forward(cell, inputs, training=True):
    """Calls the ``rnncore._core`` twin of the cell's forward op directly, with the arguments exactly as given."""
    args = [inputs["x"], *(inputs[s] for s in cell.state_names), inputs["w_ih"], inputs["w_hh"], inputs["b_ih"],
            inputs["b_hh"], inputs["lengths"], training, *cell.options.values()]
    return getattr(rnncore._core, cell.kind.forward.__name__)(*args)


def core_backward(cell, ws, upstream):
    return getattr(rnncore._core, cell.kind.backward.__name__)(ws, *upstream.values(), True)  # need_dx


def checked_twin(inputs):
    """The same call made inexact (w_hh strided, lengths a list), so ``ops`` runs it through the Python checks and
    re-calls the kernel with what they return: an expectation that does not go through the exact path."""
    twin = dict(inputs, w_hh=np.repeat(inputs["w_hh"], 2, axis=-1)[..., ::2])
    if inputs["lengths"] is not None:
        twin["lengths"] = inputs["lengths"].tolist()
    return twin


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_exact_call_runs_without_python_checks(cell, dtype, lengths):
    """The common call (exact C-contiguous arrays, int64 lengths, bool flags) is taken by _core as it is, with the
    results of the same call made inexact (checked_twin), which goes through the Python checks."""
    inputs, upstream = inputs_for(cell, dtype=dtype, seed=6, lengths=lengths)
    if lengths:
        inputs["lengths"] = inputs["lengths"].astype(np.int64)
    out = core_forward(cell, inputs)
    assert out is not NotImplemented
    checked = checked_twin(inputs)
    assert core_forward(cell, checked) is NotImplemented
    want, ws = run_forward(ops, cell, checked)
    for got, name in zip(out, cell.output_names):
        np.testing.assert_array_equal(got, want[name], err_msg=name)
    grads = core_backward(cell, out[-1], upstream)
    assert grads is not NotImplemented
    fortran = {k: np.asfortranarray(v) for k, v in upstream.items()}  # inexact: backward takes the checks too
    assert core_backward(cell, ws, fortran) is NotImplemented
    dwant = run_backward(ops, cell, ws, fortran)
    for got, name in zip(grads, cell.gradient_names):
        assert_identical(got, dwant[name], name)


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
