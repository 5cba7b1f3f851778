"""Cells are modules with their own parameters (torch's cell names), initialised as a one-layer layer is; a layer's
weights load into a cell (``cell.load_state_dict(layer.state_dict(), layer=k, direction=d)``, ``Cell.from_layer``),
and stepping the cell then reproduces that layer position's outputs."""

import numpy as np
import pytest

import rnncore as rc
from rnncore.module import Parameterized

from support.cells import as_tuple

PAIRS = [
    pytest.param(rc.LSTMCell, rc.LSTM, {}, id="lstm"),
    pytest.param(rc.GRUCell, rc.GRU, {}, id="gru"),
    pytest.param(rc.GRUCell, rc.GRU, {"reset_after": False}, id="gru_reset_before"),
    pytest.param(rc.RNNCell, rc.RNN, {"nonlinearity": "tanh"}, id="rnn_tanh"),
    pytest.param(rc.RNNCell, rc.RNN, {"nonlinearity": "relu"}, id="rnn_relu"),
]


def step_through(cell, x, state):
    """The cell over x [T, B, I] from ``state`` (None: zeros): (the h of every step [T, B, H], the last state)."""
    hs = []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        hs.append(as_tuple(state)[0])
    return np.stack(hs), state


@pytest.mark.parametrize("cell_cls,layer_cls,options", PAIRS)
@pytest.mark.parametrize("init", ["pytorch", "keras"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_a_cell_has_the_weights_of_a_one_layer_layer_with_its_seed(cell_cls, layer_cls, options, init, bias):
    """The init did not change when cells got their own parameters: the same seed (an int or a Generator in the same
    state) gives the one-layer layer's l0 weights, in the cell's dtype."""
    for dtype in (np.float32, np.float64):
        cell = cell_cls(3, 5, bias=bias, dtype=dtype, seed=11, init=init, **options)
        layer = layer_cls(3, 5, bias=bias, dtype=dtype, seed=11, init=init, **options)
        assert isinstance(cell, Parameterized)
        assert list(cell.parameters()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"][:4 if bias else 2]
        for name, p in cell.parameters().items():
            assert p.dtype == dtype
            np.testing.assert_array_equal(p, layer.parameters()[f"{name}_l0"], err_msg=name)
    from_generator = cell_cls(3, 5, seed=np.random.default_rng(2), **options)
    layer = layer_cls(3, 5, seed=np.random.default_rng(2), **options)
    for name, p in from_generator.parameters().items():
        np.testing.assert_array_equal(p, layer.parameters()[f"{name}_l0"], err_msg=name)


def test_cells_follow_the_module_protocol():
    """Parameters, gradients, train/eval and state dicts from the module base; ``strict=False`` loads the entries
    given. (Attribute access and named_parameters come from the base once it has them.)"""
    cell = rc.GRUCell(3, 4, seed=0)
    assert cell.parameters()["weight_hh"] is cell.parameters()["weight_hh"]  # the cell's own arrays
    state = {k: v + 1.0 for k, v in cell.state_dict().items()}
    other = rc.GRUCell(3, 4, seed=1)
    other.load_state_dict(state)
    for k, v in other.parameters().items():
        np.testing.assert_array_equal(v, state[k])
    partial = rc.GRUCell(3, 4, seed=1)
    before = partial.state_dict()
    assert other.load_state_dict(state) == ([], [])
    result = partial.load_state_dict({"weight_hh": state["weight_hh"], "something_else": np.zeros(2)}, strict=False)
    assert result.missing_keys == ["bias_hh", "bias_ih", "weight_ih"] and result.unexpected_keys == ["something_else"]
    np.testing.assert_array_equal(partial.parameters()["weight_hh"], state["weight_hh"])
    np.testing.assert_array_equal(partial.parameters()["weight_ih"], before["weight_ih"])
    assert cell.eval() is cell and not cell.training and cell.train().training
    if hasattr(cell, "named_parameters"):  # the protocol base (h-protocol) gives these to every module
        assert cell.weight_ih is cell.parameters()["weight_ih"]
        assert [name for name, _ in cell.named_parameters()] == list(cell.parameters())
        cell.requires_grad_(False)
        assert cell.trainable_parameters() == {}


@pytest.mark.parametrize("cell_cls,layer_cls,options", PAIRS)
@pytest.mark.parametrize("how", ["load_state_dict", "from_layer"])
def test_stepping_a_cell_with_a_layers_weights_reproduces_the_layer(cell_cls, layer_cls, options, how):
    """Every position of a stacked bidirectional layer: the cell loaded from (layer k, direction 0) stepped over
    layer k's input gives that direction's outputs and final state; from (k, 1) over the input reversed, the reverse
    direction's."""
    rng = np.random.default_rng(1)
    T, B, I, H = 5, 3, 4, 3
    layer = layer_cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=3, **options)
    x = rng.standard_normal((T, B, I))
    lstm = layer_cls is rc.LSTM
    state0 = tuple(rng.standard_normal((4, B, H)) for _ in layer.kind.states)
    y, final = layer(x, state0 if lstm else state0[0])
    # layer 1's input: the outputs of layer 0 alone (a one-layer bidirectional layer with l0's weights)
    bottom = layer_cls(I, H, bidirectional=True, dtype=np.float64, **options)
    bottom.load_state_dict({k: v for k, v in layer.state_dict().items() if "_l0" in k})
    y0 = bottom(x, tuple(s[:2] for s in state0) if lstm else state0[0][:2])[0]
    inputs, outputs = [x, y0], [y0, y]
    for k in range(2):
        for d in range(2):
            if how == "from_layer":
                cell = cell_cls.from_layer(layer, k, d)
                assert cell.dtype == layer.dtype and cell._cell_options == layer._cell_options
            else:
                cell = cell_cls(inputs[k].shape[2], H, dtype=np.float64, seed=0, **options)
                cell.load_state_dict(layer.state_dict(), layer=k, direction=d)
            seq = inputs[k] if d == 0 else inputs[k][::-1]
            init = tuple(s[2 * k + d] for s in state0)
            hs, last = step_through(cell, seq, init if lstm else init[0])
            hs = hs if d == 0 else hs[::-1]
            np.testing.assert_allclose(hs, outputs[k][:, :, d * H:(d + 1) * H], rtol=1e-12, atol=1e-14,
                                       err_msg=f"layer {k} direction {d}")
            for got, want in zip(as_tuple(last), as_tuple(final)):
                np.testing.assert_allclose(got, want[2 * k + d], rtol=1e-12, atol=1e-14)


def test_from_layer_takes_the_layers_options_bias_and_dtype():
    gru = rc.GRU(3, 4, num_layers=2, bias=False, reset_after=False, dtype=np.float64, seed=0)
    cell = rc.GRUCell.from_layer(gru, layer=1)
    assert repr(cell) == "GRUCell(4, 4, bias=False, reset_after=False, dtype=float64)"
    np.testing.assert_array_equal(cell.parameters()["weight_ih"], gru.parameters()["weight_ih_l1"])
    relu = rc.RNNCell.from_layer(rc.RNN(2, 3, nonlinearity="relu", seed=0))
    assert relu._cell_options == {"nonlinearity": "relu"}
    with pytest.raises(TypeError, match="LSTMCell.from_layer needs an rnncore LSTM layer, got GRU"):
        rc.LSTMCell.from_layer(gru)
    with pytest.raises(TypeError, match="needs an rnncore GRU layer, got GRUCell"):
        rc.GRUCell.from_layer(cell)
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, 2\), got 2"):
        rc.GRUCell.from_layer(gru, layer=2)
    with pytest.raises(ValueError, match=r"direction must be an int in \[0, 1\) \(bidirectional=False\), got 1"):
        rc.GRUCell.from_layer(gru, direction=1)


def test_load_state_dict_from_a_layer_checks_its_entries():
    lstm = rc.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    cell = rc.LSTMCell(3, 4, seed=1)
    with pytest.raises(KeyError, match=r"missing \['bias_hh', 'bias_ih', 'weight_hh', 'weight_ih'\] \(a layer's "
                                       r"state dict: pass layer= and direction="):
        cell.load_state_dict(lstm.state_dict())
    with pytest.raises(ValueError, match=r"weight_ih_l1_reverse must have shape \(16, 3\), got \(16, 8\)"):
        cell.load_state_dict(lstm.state_dict(), layer=1, direction=1)
    with pytest.raises(KeyError, match=r"missing \['bias_hh_l2', 'bias_ih_l2', 'weight_hh_l2', 'weight_ih_l2'\]"):
        cell.load_state_dict(lstm.state_dict(), layer=2)
    with pytest.raises(ValueError, match="direction must be 0 .forward. or 1 .reverse., got 2"):
        cell.load_state_dict(lstm.state_dict(), direction=2)
    with pytest.raises(ValueError, match="layer must be an int >= 0 .a layer's index., got -1"):
        cell.load_state_dict(lstm.state_dict(), layer=-1)
    no_bias = rc.LSTMCell(3, 4, bias=False, seed=1)
    with pytest.raises(KeyError, match=r"unexpected \['bias_hh_l0', 'bias_ih_l0'\]"):
        no_bias.load_state_dict(lstm.state_dict(), layer=0)
    result = no_bias.load_state_dict(lstm.state_dict(), strict=False, layer=0)  # the weights; the biases: unexpected
    assert result == ([], ["bias_hh_l0", "bias_ih_l0"])
    with pytest.raises(TypeError, match="strict must be a bool, got str"):
        no_bias.load_state_dict(lstm.state_dict(), strict="no", layer=0)
    np.testing.assert_array_equal(no_bias.parameters()["weight_hh"], lstm.parameters()["weight_hh_l0"])
    bad = lstm.state_dict()
    bad["weight_hh_l0"] = bad["weight_hh_l0"].astype(np.int64)
    before = cell.state_dict()
    with pytest.raises(TypeError, match="weight_hh_l0 must be floating point, got int64"):
        cell.load_state_dict(bad, layer=0)
    for k, v in cell.parameters().items():  # nothing was copied
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError, match="state must be a mapping name -> array, got list"):
        cell.load_state_dict([1, 2])
