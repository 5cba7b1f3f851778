"""rnncore.interop against Keras 3: golden outputs in tests/fixtures/keras_*.npz (made by
make_keras_fixtures.py; Keras is not needed here), exact weight round trips, and the errors."""

import glob
import os

import numpy as np
import pytest

import rnncore as rc
from rnncore import interop

from support.fixtures import FIXTURE_DIR, load_npz
from support.tolerances import assert_close

FIXTURES = sorted(glob.glob(os.path.join(FIXTURE_DIR, "keras_*.npz")))


def _keras_weights(d):
    return [d[k] for k in ("kernel", "recurrent_kernel", "bias") if k in d]


def _build(d, cls_kind="layer", **extra):
    """The rnncore layer (or cell) matching a fixture's Keras layer."""
    cell, dtype = str(d["cell"]), d["x"].dtype
    I, GH = d["kernel"].shape
    H = d["recurrent_kernel"].shape[0]
    opts = dict(bias=bool(d["use_bias"]), dtype=dtype)
    if cell == "gru":
        opts["reset_after"] = bool(d["reset_after"])
    if cell == "rnn":
        opts["nonlinearity"] = str(d["activation"])
    opts.update(extra)
    if cls_kind == "cell":
        return {"lstm": rc.LSTMCell, "gru": rc.GRUCell, "rnn": rc.RNNCell}[cell](I, H, **opts)
    return {"lstm": rc.LSTM, "gru": rc.GRU, "rnn": rc.RNN}[cell](I, H, batch_first=True, **opts)


def test_fixtures_present():
    names = {os.path.basename(p) for p in FIXTURES}
    for case in ("lstm", "gru_reset_after", "gru_reset_before", "simplernn_tanh"):
        for dtype in ("float32", "float64"):
            assert f"keras_{case}_{dtype}.npz" in names
    assert sum(os.path.getsize(p) for p in FIXTURES) < 80_000


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_forward_matches_keras(path):
    d = load_npz(path)
    layer = _build(d, seed=0).eval()
    assert interop.from_keras(layer, _keras_weights(d)) is layer
    state = d["h0"][None] if "c0" not in d else (d["h0"][None], d["c0"][None])
    y, final = layer(d["x"], state)
    dtype = d["x"].dtype
    assert y.dtype == dtype
    assert_close(y, d["y"], "fixture", dtype, "y")
    if "c_n" in d:
        h_n, c_n = final
        assert_close(c_n[0], d["c_n"], "fixture", dtype, "c_n")
    else:
        h_n = final
    assert_close(h_n[0], d["h_n"], "fixture", dtype, "h_n")


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_cell_steps_match_keras(path):
    """The same weights in a cell, stepped by hand over the Keras sequence."""
    d = load_npz(path)
    cell = _build(d, "cell", seed=0).eval()
    interop.from_keras(cell, _keras_weights(d))
    state = d["h0"] if "c0" not in d else (d["h0"], d["c0"])
    dtype = d["x"].dtype
    for t in range(d["x"].shape[1]):
        state = cell(d["x"][:, t], state)
        h = state[0] if isinstance(state, tuple) else state
        assert_close(h, d["y"][:, t], "fixture", dtype, f"h[{t}]")
    if "c_n" in d:
        assert_close(state[1], d["c_n"], "fixture", dtype, "c_n")


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_to_keras_returns_keras_weights_exactly(path):
    d = load_npz(path)
    for layer in (_build(d, seed=0), _build(d, "cell", seed=0)):
        interop.from_keras(layer, _keras_weights(d))
        out = interop.to_keras(layer)
        expected = _keras_weights(d)
        assert len(out) == len(expected)
        for got, want in zip(out, expected):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell,opts", [("lstm", {}), ("gru", dict(reset_after=True)),
                                       ("gru", dict(reset_after=False)), ("rnn", dict(nonlinearity="tanh")),
                                       ("rnn", dict(nonlinearity="relu"))])
def test_round_trip_rnncore_keras_rnncore_bit_exact(cell, opts, dtype):
    """torch layout -> Keras -> torch layout, per layer and direction of a 2-layer bidirectional layer. Bit-exact
    for weights always; for biases always with GRU(reset_after=True) (two Keras bias rows), and for LSTM/RNN/
    GRU(reset_after=False) when bias_hh = 0 (Keras has one bias = b_ih + b_hh)."""
    cls = {"lstm": rc.LSTM, "gru": rc.GRU, "rnn": rc.RNN}[cell]
    src = cls(4, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=1, **opts)
    one_bias = not (cell == "gru" and opts["reset_after"])
    if one_bias:
        for name, p in src.parameters().items():
            if name.startswith("bias_hh"):
                p[...] = 0.0
    dst = cls(4, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=2, **opts)
    for layer_index in range(2):
        for direction in range(2):
            interop.from_keras(dst, interop.to_keras(src, layer_index, direction), layer_index, direction)
    for name, p in src.parameters().items():
        np.testing.assert_array_equal(dst.parameters()[name], p, err_msg=name)


@pytest.mark.parametrize("cell,opts", [("lstm", {}), ("gru", dict(reset_after=False)), ("rnn", {})])
def test_single_bias_fold_is_same_function(cell, opts, rng):
    """With a non-zero bias_hh, LSTM/RNN/GRU(reset_after=False) -> Keras -> rnncore moves bias_hh into bias_ih:
    weights stay bit-exact and the forward is unchanged (up to rounding of b_ih + b_hh)."""
    cls = {"lstm": rc.LSTM, "gru": rc.GRU, "rnn": rc.RNN}[cell]
    src = cls(4, 3, dtype=np.float64, seed=3, **opts).eval()
    dst = cls(4, 3, dtype=np.float64, seed=4, **opts).eval()
    interop.from_keras(dst, interop.to_keras(src))
    p, q = src.parameters(), dst.parameters()
    for name in ("weight_ih_l0", "weight_hh_l0"):
        np.testing.assert_array_equal(q[name], p[name])
    np.testing.assert_array_equal(q["bias_hh_l0"], 0.0)
    np.testing.assert_array_equal(q["bias_ih_l0"], p["bias_ih_l0"] + p["bias_hh_l0"])
    x = rng.standard_normal((5, 2, 4))
    assert_close(dst(x)[0], src(x)[0], "fixture", np.float64, "y")


def test_reset_after_false_keras_bias_is_b_in_plus_b_hn(rng):
    """Keras's single reset_after=False bias is (b_ih + b_hh) in Keras's block order z, r, h (b_hn sits outside
    r * (.) in this variant, so b_in + b_hn is exactly Keras's h bias); kernels reorder the same way."""
    g = rc.GRU(2, 3, reset_after=False, dtype=np.float64, seed=5)
    p = g.parameters()
    H = 3
    k, rk, b = interop.to_keras(g)
    r_, z_, n_ = (slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H))
    s = p["bias_ih_l0"] + p["bias_hh_l0"]
    np.testing.assert_array_equal(b, np.concatenate([s[z_], s[r_], s[n_]]))
    np.testing.assert_array_equal(k[:, :H], p["weight_ih_l0"][z_].T)
    np.testing.assert_array_equal(rk[:, H:2 * H], p["weight_hh_l0"][r_].T)


def test_from_keras_casts_to_layer_dtype():
    d = load_npz([p for p in FIXTURES if p.endswith("keras_lstm_float64.npz")][0])
    layer = rc.LSTM(4, 3, dtype=np.float32)
    interop.from_keras(layer, _keras_weights(d))
    assert all(p.dtype == np.float32 for p in layer.parameters().values())
    np.testing.assert_array_equal(layer.parameters()["weight_ih_l0"], d["kernel"].T.astype(np.float32))


def test_from_keras_writes_only_the_given_layer_and_direction():
    src = rc.GRU(4, 3, dtype=np.float64, seed=6)
    dst = rc.GRU(4, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=7)
    before = dst.state_dict()
    arrays = dst.parameters()
    interop.from_keras(dst, interop.to_keras(src), layer_index=0, direction=1)
    for name, p in dst.parameters().items():
        assert p is arrays[name]  # in place
        if name.endswith("_l0_reverse"):
            np.testing.assert_array_equal(p, src.parameters()[name.replace("_reverse", "")])
        else:
            np.testing.assert_array_equal(p, before[name])


# -- errors ----------------------------------------------------------------------------------------------------------
def _gru_weights(reset_after, I=4, H=3, seed=0):
    r = np.random.default_rng(seed)
    bias = r.standard_normal((2, 3 * H) if reset_after else (3 * H,))
    return [r.standard_normal((I, 3 * H)), r.standard_normal((H, 3 * H)), bias]


@pytest.mark.parametrize("layer_ra,keras_ra", [(True, False), (False, True)])
def test_gru_reset_after_mismatch_raises(layer_ra, keras_ra):
    for layer in (rc.GRU(4, 3, reset_after=layer_ra), rc.GRUCell(4, 3, reset_after=layer_ra)):
        before = layer.state_dict()
        with pytest.raises(ValueError, match="reset_after"):
            interop.from_keras(layer, _gru_weights(keras_ra))
        for name, p in layer.parameters().items():
            np.testing.assert_array_equal(p, before[name])  # nothing copied


@pytest.mark.parametrize("index,shape,name", [(0, (5, 12), "kernel"), (0, (4, 9), "kernel"),
                                              (1, (3, 9), "recurrent_kernel"), (2, (16,), "bias")])
def test_shape_errors_name_the_keras_weight(index, shape, name):
    layer = rc.LSTM(4, 3)
    w = [np.zeros((4, 12)), np.zeros((3, 12)), np.zeros(12)]
    w[index] = np.zeros(shape)
    before = layer.state_dict()
    with pytest.raises(ValueError, match=rf"LSTM {name} must have shape .*got \({shape[0]},"):
        interop.from_keras(layer, w)
    for k, p in layer.parameters().items():
        np.testing.assert_array_equal(p, before[k])


def test_gru_bias_row_shape_error():
    w = _gru_weights(True)
    w[2] = np.zeros((2, 6))
    with pytest.raises(ValueError, match=r"GRU bias must have shape \(2, 9\)"):
        interop.from_keras(rc.GRU(4, 3), w)


def test_bias_count_mismatch():
    with pytest.raises(ValueError, match="use_bias=False"):
        interop.from_keras(rc.RNN(4, 3), [np.zeros((4, 3)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="bias=False"):
        interop.from_keras(rc.RNN(4, 3, bias=False), [np.zeros((4, 3)), np.zeros((3, 3)), np.zeros(3)])
    assert len(interop.to_keras(rc.LSTM(4, 3, bias=False))) == 2


def test_bad_index_and_type():
    with pytest.raises(ValueError, match="direction"):
        interop.to_keras(rc.LSTM(4, 3), direction=1)
    with pytest.raises(ValueError, match="layer_index"):
        interop.to_keras(rc.LSTM(4, 3, num_layers=2), layer_index=2)
    with pytest.raises(ValueError, match="cell"):
        interop.to_keras(rc.LSTMCell(4, 3), layer_index=1)
    with pytest.raises(TypeError, match="rnncore"):
        interop.to_keras(object())
    with pytest.raises(TypeError, match="kernel"):
        interop.from_keras(rc.RNN(4, 3), [np.zeros((4, 3), bool), np.zeros((3, 3)), np.zeros(3)])


@pytest.mark.parametrize("cell,opts", [("lstm", {}), ("gru", dict(reset_after=False)), ("gru", dict(reset_after=True)),
                                       ("rnn", {})])
def test_torch_keras_torch_round_trip_gives_bit_identical_outputs_and_gradients(cell, opts, rng):
    """torch weights (non-zero bias_hh) -> rnncore -> Keras -> rnncore: where Keras keeps one bias, b_ih + b_hh is
    folded — the kernels add the two biases into one before use anyway, so outputs, dx and every weight gradient are
    bit-identical to the original layer's."""
    cls = {"lstm": rc.LSTM, "gru": rc.GRU, "rnn": rc.RNN}[cell]
    src = cls(4, 3, num_layers=2, bidirectional=True, dtype=np.float32, seed=5, **opts)
    for name, p in src.parameters().items():
        if name.startswith("bias_hh"):
            p[...] = rng.standard_normal(p.shape)
    dst = cls(4, 3, num_layers=2, bidirectional=True, dtype=np.float32, seed=6, **opts)
    for layer_index in range(2):
        for direction in range(2):
            interop.from_keras(dst, interop.to_keras(src, layer_index, direction), layer_index, direction)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    lengths = [5, 3]
    y_src, _ = src(x, lengths=lengths)
    y_dst, _ = dst(x, lengths=lengths)
    np.testing.assert_array_equal(y_dst, y_src)
    dy = rng.standard_normal(y_src.shape).astype(np.float32)
    np.testing.assert_array_equal(dst.backward(dy)[0], src.backward(dy)[0])
    for name, g in src.gradients().items():
        np.testing.assert_array_equal(dst.gradients()[name], g, err_msg=name)
