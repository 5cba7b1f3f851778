"""Parity with PyTorch: rnncore's ops against golden outputs and gradients that torch produced.

The fixtures ``tests/fixtures/torch_*.npz`` come from ``tests/fixtures/make_torch_fixtures.py`` (see its docstring
for what each file holds and how to regenerate them); torch itself is not needed to run these tests.
Every fixture file is a test case, for both the C++ kernels (``rnncore.ops``) and the NumPy spec
(``rnncore.reference``): forward outputs and every gradient are compared with the ``"fixture"`` tolerance of
``support.tolerances.TOLERANCES``.
"""

import itertools
import re

import numpy as np
import pytest

import rnncore
from rnncore import reference

from support.fixtures import FIXTURE_DIR, load_npz
from support.tolerances import assert_close

# One layer, one direction, through rnncore.ops (the torch_layer_* files are for the layer classes).
# Only the op files torch_<cell>_<dtype>_<case>.npz: other torch_* files (layers, optim, losses) have their own tests.
FIXTURES = sorted(p for p in FIXTURE_DIR.glob("torch_*.npz")
                  if re.fullmatch(r"torch_(lstm|gru|rnn_tanh|rnn_relu)_float(32|64)_\w+\.npz", p.name))

# The set make_torch_fixtures.py writes: every cell x dtype x case must be present.
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
DTYPES = ("float32", "float64")
CASES = ("nolengths", "lengths", "tiny")

IMPLEMENTATIONS = [pytest.param(rnncore.ops, id="ops"), pytest.param(reference, id="reference")]


def named(names, values):
    values = tuple(values)
    assert len(values) == len(names), f"backward returned {len(values)} arrays, expected {len(names)}: {names}"
    return dict(zip(names, values))


def run_op(impl, fx):
    """Forward (training) and backward through ``impl`` with the fixture's inputs; dict of named results."""
    cell, nonlinearity = str(fx["cell"]), str(fx["nonlinearity"])
    lengths = fx.get("lengths")
    weights = (fx["w_ih"], fx["w_hh"], fx["b_ih"], fx["b_hh"])
    if cell == "lstm":
        y, h_n, c_n, ws = impl.lstm_forward(fx["x"], fx["h0"], fx["c0"], *weights, lengths=lengths, training=True)
        grads = impl.lstm_backward(ws, fx["dy"], dh_n=fx["dh_n"], dc_n=fx["dc_n"])
        return dict(y=y, h_n=h_n, c_n=c_n, **named(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"), grads))
    if cell == "gru":
        # torch.nn.GRU applies the reset gate after the hidden matmul: rnncore's reset_after=True.
        y, h_n, ws = impl.gru_forward(fx["x"], fx["h0"], *weights, lengths=lengths, training=True, reset_after=True)
        grads = impl.gru_backward(ws, fx["dy"], dh_n=fx["dh_n"])
    elif cell == "rnn":
        y, h_n, ws = impl.rnn_forward(fx["x"], fx["h0"], *weights, lengths=lengths, training=True,
                                      nonlinearity=nonlinearity)
        grads = impl.rnn_backward(ws, fx["dy"], dh_n=fx["dh_n"])
    else:
        raise AssertionError(f"unknown cell {cell!r} in fixture")
    return dict(y=y, h_n=h_n, **named(("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), grads))


def test_fixture_set_is_complete():
    found = {p.name for p in FIXTURES}
    expected = {f"torch_{c}_{d}_{k}.npz" for c, d, k in itertools.product(CELLS, DTYPES, CASES)}
    missing = sorted(expected - found)
    assert not missing, (f"missing torch fixtures {missing} in {FIXTURE_DIR}; regenerate with "
                         "`pip install torch==2.13.0 && python tests/fixtures/make_torch_fixtures.py`")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_matches_torch(impl, path):
    fx = load_npz(path)
    dtype = fx["x"].dtype
    assert dtype in (np.float32, np.float64) and path.stem.split("_")[-2] == dtype.name
    expected_names = ["y", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    if str(fx["cell"]) == "lstm":
        expected_names += ["c_n", "dc0"]

    got = run_op(impl, fx)

    assert sorted(got) == sorted(expected_names)
    for name in expected_names:
        actual, expected = np.asarray(got[name]), fx[name]
        where = f"{path.name}: {name} (torch {fx['torch_version']})"
        assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
        assert_close(actual, expected, "fixture", dtype, where)
