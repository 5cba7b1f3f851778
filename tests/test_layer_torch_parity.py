"""Parity with PyTorch for the layer classes: ``rnncore.LSTM / GRU / RNN`` against ``torch.nn.LSTM / GRU / RNN``.

The fixtures ``tests/fixtures/torch_layer_*.npz`` come from ``tests/fixtures/make_torch_layer_fixtures.py`` (see
its docstring for what each file holds and how to regenerate them); torch itself is not needed to run these tests.
Each file is one test case: a layer built with the file's constructor arguments loads torch's ``state_dict``
(the ``param.`` entries), runs forward on the file's input, initial state and ``lengths``, then backward with the
file's upstream gradients; the outputs, final states, input / initial-state gradients and every parameter gradient
are compared with the ``"fixture"`` tolerance of ``support.tolerances.TOLERANCES``.
"""

import itertools

import numpy as np
import pytest

import rnncore as rc

from support.fixtures import FIXTURE_DIR, load_npz
from support.tolerances import assert_close

FIXTURES = sorted(FIXTURE_DIR.glob("torch_layer_*.npz"))

# The set make_torch_layer_fixtures.py writes: every cell x config in float64, and LSTM's first config in float32.
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
CONFIGS = ("2layer_bidir_lengths", "2layer_batchfirst", "1layer_bidir_batchfirst_lengths")
EXPECTED = {f"torch_layer_{c}_{k}_float64.npz" for c, k in itertools.product(CELLS, CONFIGS)}
EXPECTED |= {"torch_layer_lstm_2layer_bidir_lengths_float32.npz"}


def make_layer(fx):
    """The rnncore layer with the fixture's constructor arguments, holding torch's parameters."""
    cell, nonlinearity = str(fx["cell"]), str(fx["nonlinearity"])
    params = {k[len("param."):]: v for k, v in fx.items() if k.startswith("param.")}
    kwargs = dict(
        input_size=params["weight_ih_l0"].shape[1], hidden_size=params["weight_hh_l0"].shape[1],
        num_layers=int(fx["num_layers"]), bias=True, batch_first=bool(fx["batch_first"]), dropout=0.0,
        bidirectional=bool(fx["bidirectional"]), dtype=fx["x"].dtype, seed=0,
    )
    if cell == "lstm":
        layer = rc.LSTM(**kwargs)
    elif cell == "gru":
        layer = rc.GRU(**kwargs, reset_after=True)  # torch.nn.GRU applies the reset gate after the hidden matmul
    elif cell == "rnn":
        layer = rc.RNN(**kwargs, nonlinearity=nonlinearity)
    else:
        raise AssertionError(f"unknown cell {cell!r} in fixture")
    layer.load_state_dict(params)
    layer.train()
    layer.zero_grad()
    return layer


def check(actual, expected, dtype, where):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
    assert_close(actual, expected, "fixture", dtype, where)


def test_fixture_set_is_complete():
    found = {p.name for p in FIXTURES}
    missing = sorted(EXPECTED - found)
    unexpected = sorted(found - EXPECTED)
    assert not missing and not unexpected, (
        f"torch layer fixtures in {FIXTURE_DIR}: missing {missing}, unexpected {unexpected}; regenerate with "
        "`pip install torch==2.13.0 && python tests/fixtures/make_torch_layer_fixtures.py`")


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_layer_matches_torch(path):
    fx = load_npz(path)
    dtype = fx["x"].dtype
    assert dtype in (np.float32, np.float64) and path.stem.endswith(dtype.name)
    lstm = str(fx["cell"]) == "lstm"
    where = f"{path.name} (torch {fx['torch_version']})"
    layer = make_layer(fx)

    state0 = (fx["h0"], fx["c0"]) if lstm else fx["h0"]
    y, state_n = layer(fx["x"], state=state0, lengths=fx.get("lengths"))
    h_n, c_n = state_n if lstm else (state_n, None)
    check(y, fx["y"], dtype, f"{where}: y")
    check(h_n, fx["h_n"], dtype, f"{where}: h_n")
    if lstm:
        check(c_n, fx["c_n"], dtype, f"{where}: c_n")

    dstate = (fx["dh_n"], fx["dc_n"]) if lstm else fx["dh_n"]
    dx, dstate0 = layer.backward(fx["dy"], dstate=dstate)
    dh0, dc0 = dstate0 if lstm else (dstate0, None)
    check(dx, fx["dx"], dtype, f"{where}: dx")
    check(dh0, fx["dh0"], dtype, f"{where}: dh0")
    if lstm:
        check(dc0, fx["dc0"], dtype, f"{where}: dc0")

    grads = layer.gradients()
    expected_grads = sorted(k[len("grad."):] for k in fx if k.startswith("grad."))
    assert sorted(grads) == expected_grads, f"{where}: gradient names {sorted(grads)} != torch's {expected_grads}"
    for name in expected_grads:
        check(grads[name], fx[f"grad.{name}"], dtype, f"{where}: grad.{name}")
