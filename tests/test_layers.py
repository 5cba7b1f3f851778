"""rnncore.LSTM / GRU / RNN layers: stacking, bidirectional, lengths, batch_first, dropout, the parameter and gradient
dicts, and bad input. (Parity with torch.nn layers: tests/test_layer_torch_parity.py; the cells and streams, step by
step: tests/test_cells_and_streams.py.)"""

import numpy as np
import pytest

import rnncore as rc

from support.arrays import numerical_gradient
from support.cells import as_tuple
from support.tolerances import assert_close

LAYERS = [
    pytest.param(rc.LSTM, {}, id="lstm"),
    pytest.param(rc.GRU, {}, id="gru"),
    pytest.param(rc.GRU, {"reset_after": False}, id="gru_reset_before"),
    pytest.param(rc.RNN, {"nonlinearity": "tanh"}, id="rnn_tanh"),
    pytest.param(rc.RNN, {"nonlinearity": "relu"}, id="rnn_relu"),
]


def random_state(layer, batch, rng):
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    h = rng.standard_normal(shape).astype(layer.dtype)
    return (h, rng.standard_normal(shape).astype(layer.dtype)) if isinstance(layer, rc.LSTM) else h


def total_loss(layer, x, state, lengths, dy, dstate):
    """Σ y·dy + Σ state_n·dstate_n, from an inference-mode forward."""
    was_training = layer.training
    layer.eval()
    y, final = layer(x, state, lengths)
    layer.train(was_training)
    return float(np.sum(y * dy) + sum(np.sum(f * d) for f, d in zip(as_tuple(final), as_tuple(dstate))))


@pytest.mark.parametrize("cls,options", LAYERS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_every_gradient_matches_central_differences(cls, options, bidirectional, batch_first):
    rng = np.random.default_rng(5)
    T, B, I, H = 4, 3, 2, 3
    layer = cls(I, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, dtype=np.float64,
                seed=3, **options)
    if options.get("nonlinearity") == "relu":  # keep pre-activations off relu's kink
        for name, p in layer.parameters().items():
            if name.startswith("bias_ih"):
                p += 0.5
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    lengths = np.array([4, 1, 3])
    state = random_state(layer, B, rng)
    y, final = layer(x, state, lengths)
    dy = rng.standard_normal(y.shape)
    dstate = tuple(rng.standard_normal(f.shape) for f in as_tuple(final))
    dstate = dstate if isinstance(final, tuple) else dstate[0]
    dx, dstate0 = layer.backward(dy, dstate)

    def f():
        return total_loss(layer, x, state, lengths, dy, dstate)

    assert_close(dx, numerical_gradient(f, x), "gradcheck", np.float64, "dx")
    for got, s, name in zip(as_tuple(dstate0), as_tuple(state), ("dh0", "dc0")):
        assert_close(got, numerical_gradient(f, s), "gradcheck", np.float64, name)
    for name, p in layer.parameters().items():
        assert_close(layer.gradients()[name], numerical_gradient(f, p), "gradcheck", np.float64, name)


@pytest.mark.parametrize("cls,options", LAYERS)
def test_stacked_bidirectional_equals_composed_ops(cls, options):
    """Layer 1 reads [forward | reverse] of layer 0; the reverse direction runs over each valid prefix reversed."""
    rng = np.random.default_rng(8)
    T, B, I, H = 5, 3, 4, 2
    layer = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0, **options)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 3])
    y, _ = layer(x, lengths=lengths)
    op = getattr(rc.ops, f"{layer._op}_forward")
    n_states = 2 if cls is rc.LSTM else 1

    def run(inp, suffix):
        p = layer.parameters()
        args = [p[f"weight_ih{suffix}"], p[f"weight_hh{suffix}"], p[f"bias_ih{suffix}"], p[f"bias_hh{suffix}"]]
        return op(inp, *([None] * n_states), *args, lengths=lengths, training=False, **options)[0]

    def reversed_prefix(a):
        out = np.zeros_like(a)
        for b, n in enumerate(lengths):
            out[:n, b] = a[:n, b][::-1]
        return out

    inp = x
    for k in range(2):
        fwd = run(inp, f"_l{k}")
        bwd = reversed_prefix(run(reversed_prefix(inp), f"_l{k}_reverse"))
        inp = np.concatenate([fwd, bwd], axis=2)
    np.testing.assert_allclose(y, inp, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls,options", LAYERS)
def test_batch_first_is_a_transpose(cls, options):
    rng = np.random.default_rng(2)
    a = cls(3, 4, num_layers=2, bidirectional=True, seed=1, **options)
    b = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=2, **options)
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    ya, sa = a(x, lengths=[6, 3])
    yb, sb = b(x.transpose(1, 0, 2), lengths=[6, 3])
    np.testing.assert_array_equal(ya, yb.transpose(1, 0, 2))
    for u, v in zip(as_tuple(sa), as_tuple(sb)):
        np.testing.assert_array_equal(u, v)
    dy = rng.standard_normal(ya.shape).astype(np.float32)
    dxa, _ = a.backward(dy)
    dxb, _ = b.backward(dy.transpose(1, 0, 2))
    np.testing.assert_array_equal(dxa, dxb.transpose(1, 0, 2))


def test_gradients_accumulate_until_zero_grad_and_updates_are_seen():
    rng = np.random.default_rng(4)
    layer = rc.LSTM(3, 5, seed=0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    once = {k: g.copy() for k, g in layer.gradients().items()}
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    for k, g in layer.gradients().items():
        assert_close(g, 2 * once[k], "kernel_vs_reference", np.float32, k)
    layer.zero_grad()
    assert all(not g.any() for g in layer.gradients().values())
    before, _ = layer(x)
    for name, p in layer.parameters().items():  # an optimizer's in-place step
        p -= 0.1 * once[name]
    after, _ = layer(x)
    assert not np.allclose(before, after), "the next forward must see in-place parameter updates"


def test_backward_needs_one_training_forward():
    layer = rc.GRU(2, 3, seed=0)
    x = np.ones((3, 1, 2), np.float32)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.ones((3, 1, 3), np.float32))
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.ones_like(y))
    layer.eval()
    y, _ = layer(x)
    with pytest.raises(RuntimeError, match=r"\.train\(\)"):
        layer.backward(np.ones_like(y))


def test_dropout_between_layers_only_in_training_and_reproducible_under_a_seed():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 4, 3)).astype(np.float32)
    a = rc.LSTM(3, 8, num_layers=3, dropout=0.5, seed=11)
    b = rc.LSTM(3, 8, num_layers=3, dropout=0.5, seed=11)
    ya, _ = a(x)
    yb, _ = b(x)
    np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    ya2, _ = a(x)
    assert not np.array_equal(ya, ya2), "each training forward draws new masks"
    a.eval()
    e1, _ = a(x)
    e2, _ = a(x)
    np.testing.assert_array_equal(e1, e2)
    no_dropout = rc.LSTM(3, 8, num_layers=3, seed=0)
    no_dropout.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(e1, no_dropout.eval()(x)[0])  # eval ignores dropout
    # the gradient flows through the mask that was applied: central differences with the same mask redrawn
    c = rc.RNN(2, 3, num_layers=2, dropout=0.4, dtype=np.float64, seed=9)
    x64 = rng.standard_normal((3, 2, 2))
    rng_state = c._rng.bit_generator.state  # the layer's generator right before the forward draws its mask
    y, _ = c(x64)
    dx, _ = c.backward(np.ones_like(y))

    def f():
        c._rng.bit_generator.state = rng_state
        return float(c(x64)[0].sum())

    assert_close(dx, numerical_gradient(f, x64), "gradcheck", np.float64, "dx through dropout")


def test_state_dict_round_trip_and_errors():
    a = rc.GRU(3, 4, num_layers=2, bidirectional=True, seed=1)
    names = list(a.parameters())
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_hh_l1_reverse" in names and a.parameters()["weight_ih_l1"].shape == (12, 8)
    b = rc.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=2)
    b.load_state_dict(a.state_dict())
    for k in names:
        np.testing.assert_array_equal(b.parameters()[k], a.parameters()[k].astype(np.float64))
    bad = a.state_dict()
    del bad["bias_hh_l1"]
    with pytest.raises(KeyError, match="missing.*bias_hh_l1"):
        b.load_state_dict(bad)
    bad = a.state_dict()
    bad["weight_hh_l0"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="weight_hh_l0.*\\(12, 4\\)"):
        b.load_state_dict(bad)
    assert rc.LSTM(3, 4, bias=False).parameters().keys() == {"weight_ih_l0", "weight_hh_l0"}


def test_keras_init():
    layer = rc.LSTM(5, 4, init="keras", seed=0)
    p = layer.parameters()
    np.testing.assert_array_equal(p["bias_ih_l0"][4:8], 1.0)  # forget gate
    assert not p["bias_hh_l0"].any() and not p["bias_ih_l0"][:4].any()
    block = p["weight_hh_l0"][:4].astype(np.float64)  # each gate's recurrent block is orthogonal
    np.testing.assert_allclose(block @ block.T, np.eye(4), atol=1e-6)
    bound = np.sqrt(6 / (5 + 16))
    assert np.abs(p["weight_ih_l0"]).max() <= bound


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(input_size=0, hidden_size=3), ValueError, "input_size"),
    (dict(input_size=2, hidden_size=3, dropout=1.0), ValueError, "dropout"),
    (dict(input_size=2, hidden_size=3, dtype=np.int32), TypeError, "dtype"),
    (dict(input_size=2, hidden_size=3, init="xavier"), ValueError, "init"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rc.LSTM(**kwargs)


def test_bad_call_arguments():
    layer = rc.LSTM(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"x .*\[T, B, I\].*got shape \(5, 2, 4\)"):
        layer(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(TypeError, match="x has dtype float64, expected float32"):
        layer(x.astype(np.float64))
    with pytest.raises(TypeError, match=r"tuple \(h0, c0\)"):
        layer(x, np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"h0 .*\(2, 2, 4\).*got shape \(1, 2, 4\)"):
        layer(x, (np.zeros((1, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="lengths"):
        layer(x, lengths=[6, 1])
    y, _ = layer(x)
    with pytest.raises(ValueError, match=r"dy .*got shape \(5, 2, 3\)"):
        layer.backward(np.zeros((5, 2, 3), np.float32))


@pytest.mark.parametrize("layer_class", [rc.LSTM, rc.GRU, rc.RNN], ids=["LSTM", "GRU", "RNN"])
def test_backward_takes_none_for_a_zero_gradient(layer_class):
    """``backward(None, dstate)`` and None parts of dstate mean zeros, as in rnncore.ops (e.g. a many-to-one model
    whose loss reads only the final state)."""
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float64)
    layer = layer_class(4, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    y, state = layer(x)
    dh = np.random.default_rng(1).standard_normal(as_tuple(state)[0].shape)
    lstm = layer_class is rc.LSTM
    dx_none, ds_none = layer.backward(None, (dh, None) if lstm else dh)
    grads_none = {k: g.copy() for k, g in layer.gradients().items()}
    layer.zero_grad()
    layer(x)
    dx, ds = layer.backward(np.zeros_like(y), (dh, np.zeros_like(dh)) if lstm else dh)
    np.testing.assert_array_equal(dx_none, dx)
    for got, want in zip(as_tuple(ds_none), as_tuple(ds)):
        np.testing.assert_array_equal(got, want)
    for k, g in layer.gradients().items():
        np.testing.assert_array_equal(grads_none[k], g, err_msg=k)


def test_dropout_with_one_layer_warns_as_torch_does():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rc.GRU(3, 4, dropout=0.2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc.GRU(3, 4, num_layers=2, dropout=0.2)
        rc.GRU(3, 4, dropout=0.0)
