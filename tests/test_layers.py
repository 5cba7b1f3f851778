"""rnncore.LSTM / GRU / RNN layers: stacking, bidirectional, lengths, batch_first, dropout, the parameter and gradient
dicts, and bad input. (Parity with torch.nn layers: tests/test_layer_torch_parity.py; the cells and streams, step by
step: tests/test_cells_and_streams.py.)"""

import inspect

import numpy as np
import pytest

import rnncore as rc

from support.arrays import numerical_gradient
from support.cells import LAYERS, as_tuple
from support.tolerances import assert_close


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
@pytest.mark.parametrize("lengths", [[4, 1, 3], None], ids=["lengths", "full"])  # full: the reverse is a flip
def test_every_gradient_matches_central_differences(cls, options, bidirectional, batch_first, lengths):
    rng = np.random.default_rng(5)
    T, B, I, H = 4, 3, 2, 3
    layer = cls(I, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, dtype=np.float64,
                seed=3, **options)
    if options.get("nonlinearity") == "relu":  # keep pre-activations off relu's kink
        for name, p in layer.parameters().items():
            if name.startswith("bias_ih"):
                p += 0.5
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    lengths = None if lengths is None else np.array(lengths)
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
@pytest.mark.parametrize("given", [[5, 2, 3], None, [5, 5, 5]], ids=["lengths", "none", "all_T"])  # flips: no gather
def test_stacked_bidirectional_equals_composed_ops(cls, options, given):
    """Layer 1 reads [forward | reverse] of layer 0; the reverse direction runs over each valid prefix reversed."""
    rng = np.random.default_rng(8)
    T, B, I, H = 5, 3, 4, 2
    layer = cls(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0, **options)
    x = rng.standard_normal((T, B, I))
    y, _ = layer(x, lengths=None if given is None else np.array(given))
    lengths = np.array(given or [T] * B)
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


# ---- issue 12: explicit signatures, the tape, messages ------------------------------------------------------------

_EXTRAS = [("dtype", np.float32), ("seed", None), ("init", "pytorch")]
_LAYER_ARGS = [("input_size", inspect.Parameter.empty), ("hidden_size", inspect.Parameter.empty),
               ("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)]


@pytest.mark.parametrize("cls,expected", [
    (rc.LSTM, _LAYER_ARGS + _EXTRAS),
    (rc.GRU, _LAYER_ARGS + [("reset_after", True)] + _EXTRAS),
    (rc.RNN, _LAYER_ARGS[:3] + [("nonlinearity", "tanh")] + _LAYER_ARGS[3:] + _EXTRAS),
    (rc.LSTMCell, _LAYER_ARGS[:2] + [("bias", True)] + _EXTRAS),
    (rc.GRUCell, _LAYER_ARGS[:2] + [("bias", True), ("reset_after", True)] + _EXTRAS),
    (rc.RNNCell, _LAYER_ARGS[:2] + [("bias", True), ("nonlinearity", "tanh")] + _EXTRAS),
], ids=["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_constructors_show_their_real_arguments(cls, expected):
    """help(rc.GRU) and IDEs see the real arguments: torch's, in torch's order, then rnncore's; no **options."""
    params = inspect.signature(cls).parameters
    assert [(p.name, p.default) for p in params.values()] == expected
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params.values())
    foreign = "nonlinearity" if cls in (rc.GRU, rc.GRUCell) else "reset_after"  # another kind's option
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{foreign}'"):
        cls(2, 3, **{foreign: "relu"})


def test_a_layer_called_twice_takes_both_calls_back_in_reverse_order():
    """Two training-mode forwards of one layer (different inputs and lengths), then two backwards (the last call
    first): each call's dx and dstate0, and the sum of the two calls' parameter gradients, as two separate layers with
    the same weights give."""
    rng = np.random.default_rng(9)
    shared = rc.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    first, second = (rc.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=s) for s in (1, 2))
    first.load_state_dict(shared.state_dict())
    second.load_state_dict(shared.state_dict())
    x1, x2 = rng.standard_normal((5, 2, 3)), rng.standard_normal((3, 4, 3))
    y1, _ = shared(x1, lengths=[5, 2])
    y2, _ = shared(x2, lengths=[1, 3, 0, 2], padding="left")
    dy1, dy2 = rng.standard_normal(y1.shape), rng.standard_normal(y2.shape)
    dh = rng.standard_normal((4, 4, 4))
    dx2, (dh2, _) = shared.backward(dy2, (dh, None))
    dx1, _ = shared.backward(dy1)
    first(x1, lengths=[5, 2])
    second(x2, lengths=[1, 3, 0, 2], padding="left")
    np.testing.assert_array_equal(dx1, first.backward(dy1)[0])
    want_dx2, (want_dh2, _) = second.backward(dy2, (dh, None))
    np.testing.assert_array_equal(dx2, want_dx2)
    np.testing.assert_array_equal(dh2, want_dh2)
    for name, g in shared.gradients().items():
        np.testing.assert_allclose(g, first.gradients()[name] + second.gradients()[name], rtol=1e-12, atol=1e-14,
                                   err_msg=name)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        shared.backward(dy1)


def test_a_backward_in_the_wrong_order_says_what_happened():
    layer = rc.GRU(3, 4, seed=0)
    rng = np.random.default_rng(10)
    y1, _ = layer(rng.standard_normal((5, 2, 3)).astype(np.float32))
    y2, _ = layer(rng.standard_normal((7, 2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \[T, B, D\*H\] = \(7, 2, 4\), got shape \(5, 2, 4\) "
                                         r"\(the output shape of the last recorded call: GRU\.backward takes calls in "
                                         r"reverse order, the last call first\)"):
        layer.backward(np.ones_like(y1))
    layer.backward(np.ones_like(y2))  # the rejected dy used nothing up
    layer.backward(np.ones_like(y1))
    with pytest.raises(RuntimeError, match="GRU.backward needs a training-mode forward first"):
        layer.backward(np.ones_like(y1))
    layer(rng.standard_normal((5, 2, 3)).astype(np.float32))
    layer.eval().train()  # eval() clears the tape: what was recorded can no longer be taken back
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(None)


def test_a_copy_starts_with_an_empty_tape():
    import copy
    import pickle

    layer = rc.RNN(2, 3, seed=0)
    x = np.ones((4, 1, 2), np.float32)
    y, _ = layer(x)
    layer(x)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        with pytest.raises(RuntimeError, match="training-mode forward"):
            clone.backward(np.ones_like(y))
    layer.backward(np.ones_like(y))  # the original keeps both of its forwards
    layer.backward(np.ones_like(y))


def test_a_bad_dstate_names_the_final_states_gradient():
    layer = rc.LSTM(3, 4, num_layers=2)
    y, (h, c) = layer(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(TypeError, match=r"dstate must be a tuple \(dh_n, dc_n\) for an LSTM, got ndarray"):
        layer.backward(y, h)
    with pytest.raises(ValueError, match=r"dh_n must have shape \[L\*D, B, H\] = \(2, 2, 4\), got shape \(2, 4\)"):
        layer.backward(y, (h[0], None))
    with pytest.raises(TypeError, match=r"dc_n has dtype float64, expected float32 \(the dtype= the module was "
                                        r"built with\)"):
        layer.backward(y, (None, c.astype(np.float64)))
    layer.backward(y, (h, c))  # the rejected calls used nothing up


@pytest.mark.parametrize("make, name", [
    (lambda v: rc.LSTM(3, 4, bias=v), "bias"),
    (lambda v: rc.GRU(3, 4, batch_first=v), "batch_first"),
    (lambda v: rc.RNN(3, 4, bidirectional=v), "bidirectional"),
    (lambda v: rc.GRUCell(3, 4, bias=v), "bias"),
    (lambda v: rc.Linear(3, 4, bias=v), "bias"),
])
def test_flags_must_be_bools(make, name):
    """A flag read from a crafted config ("no", 2, None) is refused, not taken as truthy."""
    for bad in ("no", 2, None):
        with pytest.raises(TypeError, match=f"{name} must be a bool, got {bad!r}"):
            make(bad)
    make(np.bool_(False))
