"""A layer's ``padding="left"`` (Keras' ``pad_sequences`` default: sample b's valid steps are the LAST lengths[b]
steps) and lengths 0..T: against the same data right-padded, against a per-sample reference (rnncore.reference run
on each sample's valid steps alone, no padding at all), and against central differences."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnncore as rc

from support.arrays import numerical_gradient
from support.cells import LAYERS, as_tuple
from support.tolerances import assert_close

KINDS = [(rc.LSTM, {}), (rc.GRU, {}), (rc.GRU, {"reset_after": False}), (rc.RNN, {"nonlinearity": "tanh"}),
         (rc.RNN, {"nonlinearity": "relu"})]


def left_from_right(a, lengths, batch_first=False):
    """A right-padded [T, B, F] array (or [B, T, F]) moved to left padding: sample b's first lengths[b] steps become
    its last; the padding (zeros here) goes first."""
    a = a.transpose(1, 0, 2) if batch_first else a
    out = np.zeros_like(a)
    T = a.shape[0]
    for b, n in enumerate(lengths):
        out[T - n:, b] = a[:n, b]
    return out.transpose(1, 0, 2) if batch_first else out


def valid_mask(lengths, T, left):
    t = np.arange(T)[:, None]
    n = np.asarray(lengths)[None, :]
    return (t >= T - n) if left else (t < n)


def reference_layer(layer, x, state, lengths):
    """The layer run on each sample alone, over its valid steps only (rnncore.reference, one direction at a time,
    the reverse direction over the reversed steps): y [T, B, D*H] right-padded and the final states. A sample with
    no valid step gives no output and keeps its initial state."""
    T, B, _ = x.shape
    D, L, H = layer.num_directions, layer.num_layers, layer.hidden_size
    kind = layer.kind
    y = np.zeros((T, B, D * H))
    finals = [np.zeros((L * D, B, H)) if s is None else s.copy() for s in state]
    p = layer.parameters()
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        inp = x[:n, b:b + 1]
        for k in range(L):
            outs = []
            for d in range(D):
                s = f"_l{k}" + ("_reverse" if d else "")
                init = [None if st0 is None else st0[k * D + d, b:b + 1] for st0 in state]
                seq = inp if d == 0 else inp[::-1]
                out = kind.reference_forward(np.ascontiguousarray(seq), *init, p[f"weight_ih{s}"],
                                             p[f"weight_hh{s}"], p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}"),
                                             training=False, **layer._cell_options)
                y_dir, *final = out[:-1]
                outs.append(y_dir if d == 0 else y_dir[::-1])
                for store, f in zip(finals, final):
                    store[k * D + d, b] = f[0]
            inp = np.concatenate(outs, axis=2)
        y[:n, b] = inp[:, 0]
    return y, finals


@given(data=st.data())
def test_left_padding_equals_the_right_padded_run_and_the_reference(data):
    """Hypothesis over the kind, stacking, direction, layout, T, B and lengths (0 and T included): the left-padded
    call gives the right-padded call's outputs, states and gradients moved to left padding, and the reference's."""
    cls, options = data.draw(st.sampled_from(KINDS), label="kind")
    num_layers = data.draw(st.integers(1, 2), label="num_layers")
    bidirectional = data.draw(st.booleans(), label="bidirectional")
    batch_first = data.draw(st.booleans(), label="batch_first")
    T = data.draw(st.integers(0, 5), label="T")
    B = data.draw(st.integers(1, 4), label="B")
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B), label="lengths"))
    with_state = data.draw(st.booleans(), label="with_state")
    rng = np.random.default_rng(int(lengths.sum()) + T)
    I, H = 3, 2
    layer = cls(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                dtype=np.float64, seed=7, **options)
    tm = rng.standard_normal((T, B, I)) * valid_mask(lengths, T, left=False)[..., None]  # time-major, right-padded
    x_right = tm.transpose(1, 0, 2) if batch_first else tm
    x_left = left_from_right(tm, lengths)
    x_left = x_left.transpose(1, 0, 2) if batch_first else x_left
    shape = (num_layers * layer.num_directions, B, H)
    state = tuple(rng.standard_normal(shape) if with_state else None for _ in range(len(cls.kind.states)))
    state_arg = None if not with_state else (state if cls is rc.LSTM else state[0])

    y_r, final_r = layer(x_right, state_arg, lengths)
    y_l, final_l = layer(x_left, state_arg, lengths, padding="left")
    np.testing.assert_allclose(y_l, left_from_right(y_r, lengths, batch_first), rtol=1e-12, atol=1e-14)
    for a, b in zip(as_tuple(final_l), as_tuple(final_r)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

    y_ref, final_ref = reference_layer(layer, tm, state, lengths)
    assert_close(y_r.transpose(1, 0, 2) if batch_first else y_r, y_ref, "kernel_vs_reference", np.float64, "y")
    for a, b in zip(as_tuple(final_l), final_ref):
        assert_close(a, b, "kernel_vs_reference", np.float64, "state")

    # backward: the left-padded call (taken back first: it was recorded last) against the right-padded one
    dy_tm = rng.standard_normal((T, B, layer.num_directions * H))
    dy_r = dy_tm.transpose(1, 0, 2) if batch_first else dy_tm
    dy_l = left_from_right(dy_tm * valid_mask(lengths, T, False)[..., None], lengths)
    dy_l = dy_l.transpose(1, 0, 2) if batch_first else dy_l
    dstate = tuple(rng.standard_normal(shape) for _ in cls.kind.states)
    dstate_arg = dstate if cls is rc.LSTM else dstate[0]
    dx_l, d0_l = layer.backward(dy_l, dstate_arg)
    grads_l = {k: g.copy() for k, g in layer.gradients().items()}
    layer.zero_grad()
    dx_r, d0_r = layer.backward(dy_r, dstate_arg)
    time_major = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)
    np.testing.assert_allclose(time_major(dx_l), left_from_right(time_major(dx_r), lengths), rtol=1e-10, atol=1e-12)
    for a, b in zip(as_tuple(d0_l), as_tuple(d0_r)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for name, g in layer.gradients().items():
        np.testing.assert_allclose(grads_l[name], g, rtol=1e-10, atol=1e-12, err_msg=name)
    # a sample with no valid step: no output, no dx, its initial state's gradient is the final state's
    for b in np.flatnonzero(lengths == 0):
        assert not y_l.take(b, axis=0 if batch_first else 1).any()
        assert not dx_l.take(b, axis=0 if batch_first else 1).any()
        for a, d in zip(as_tuple(d0_l), dstate):
            np.testing.assert_array_equal(a[:, b], d[:, b])


@pytest.mark.parametrize("cls,options", LAYERS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_left_padding_gradients_match_central_differences(cls, options, bidirectional):
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 4, 2, 3
    layer = cls(I, H, num_layers=2, bidirectional=bidirectional, dtype=np.float64, seed=2, **options)
    if options.get("nonlinearity") == "relu":  # keep pre-activations off relu's kink
        for name, p in layer.parameters().items():
            if name.startswith("bias_ih"):
                p += 0.5
    lengths = np.array([4, 0, 1, 3])
    x = rng.standard_normal((T, B, I))
    shape = (2 * layer.num_directions, B, H)
    state = tuple(rng.standard_normal(shape) for _ in cls.kind.states)
    state_arg = state if cls is rc.LSTM else state[0]
    y, final = layer(x, state_arg, lengths, padding="left")
    assert not y[~valid_mask(lengths, T, left=True)].any(), "padded steps give y = 0"
    dy = rng.standard_normal(y.shape)
    dstate = tuple(rng.standard_normal(shape) for _ in cls.kind.states)
    dx, d0 = layer.backward(dy, dstate if cls is rc.LSTM else dstate[0])

    def f():
        layer.eval()
        y, final = layer(x, state_arg, lengths, padding="left")
        layer.train()
        return float(np.sum(y * dy) + sum(np.sum(a * b) for a, b in zip(as_tuple(final), dstate)))

    assert_close(dx, numerical_gradient(f, x), "gradcheck", np.float64, "dx")
    for got, s, name in zip(as_tuple(d0), state, ("dh0", "dc0")):
        assert_close(got, numerical_gradient(f, s), "gradcheck", np.float64, name)
    for name, p in layer.parameters().items():
        assert_close(layer.gradients()[name], numerical_gradient(f, p), "gradcheck", np.float64, name)


def test_padded_steps_are_never_read():
    """NaN in the padding (before each sample's valid steps) changes nothing, forward or backward."""
    rng = np.random.default_rng(4)
    layer = rc.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    lengths = np.array([5, 2, 0])
    x = rng.standard_normal((5, 3, 3))
    x_nan = np.where(valid_mask(lengths, 5, left=True)[..., None], x, np.nan)
    y, h = layer(x_nan, lengths=lengths, padding="left")
    dx, dh0 = layer.backward(np.ones_like(y), np.ones_like(h))
    assert np.isfinite(y).all() and np.isfinite(h).all() and np.isfinite(dx).all() and np.isfinite(dh0).all()
    assert all(np.isfinite(g).all() for g in layer.gradients().values())
    np.testing.assert_array_equal(y, layer(x, lengths=lengths, padding="left")[0])


def test_padding_is_checked_and_recorded_per_call():
    layer = rc.LSTM(2, 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(5).standard_normal((4, 2, 2))
    for bad in ("Left", "pre", None, 1):
        with pytest.raises(ValueError, match=r"padding must be one of 'right', 'left', got " + repr(bad)):
            layer(x, lengths=[2, 3], padding=bad)
    with pytest.raises(ValueError, match=r"lengths must lie in 0\.\.T = 0\.\.4, got \[5, -1\]"):
        layer(x, lengths=[5, -1])
    # two forwards with each padding, taken back in reverse order: each backward uses its own forward's padding
    y_left, _ = layer(x, lengths=[2, 3], padding="left")
    y_right, _ = layer(x, lengths=[2, 3])
    assert not np.array_equal(y_left, y_right)
    dx_right, _ = layer.backward(np.ones_like(y_right))
    dx_left, _ = layer.backward(np.ones_like(y_left))
    assert not dx_right[3:].any() and not dx_right[2:, 0].any()  # right padding: the steps after each length
    assert not dx_left[:1].any() and not dx_left[:2, 0].any()    # left padding: the steps before
    assert dx_left[1:, 1].all() and dx_right[:3, 1].all()


def test_all_lengths_zero_and_empty_sequences():
    layer = rc.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    rng = np.random.default_rng(6)
    h0, c0 = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    for T in (0, 3):
        for padding in ("right", "left"):
            y, (h, c) = layer(rng.standard_normal((T, 2, 2)), (h0, c0), [0, 0], padding=padding)
            assert y.shape == (T, 2, 6) and not y.any()
            np.testing.assert_array_equal(h, h0)
            np.testing.assert_array_equal(c, c0)
            dh = rng.standard_normal(h.shape)
            dx, (dh0, dc0) = layer.backward(np.ones_like(y), (dh, None))
            assert dx.shape == (T, 2, 2) and not dx.any()
            np.testing.assert_array_equal(dh0, dh)
            assert not dc0.any()
