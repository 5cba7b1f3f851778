"""Step-by-step use of the recurrent networks: the cells (LSTMCell, GRUCell, RNNCell) against the layers, a layer fed
in chunks, and the streams (``cell.stream()``, the state kept in C++) against the cells."""

import numpy as np
import pytest

import rnncore as rc

from support.cells import as_tuple
from support.tolerances import assert_close

CELLS_AND_LAYERS = [
    pytest.param(rc.LSTMCell, rc.LSTM, {}, id="lstm"),
    pytest.param(rc.GRUCell, rc.GRU, {}, id="gru"),
    pytest.param(rc.GRUCell, rc.GRU, {"reset_after": False}, id="gru_reset_before"),
    pytest.param(rc.RNNCell, rc.RNN, {"nonlinearity": "relu"}, id="rnn_relu"),
]


@pytest.mark.parametrize("cell_cls,layer_cls,options", CELLS_AND_LAYERS)
def test_cell_loop_equals_the_layer_forward_and_backward(cell_cls, layer_cls, options):
    """A user-written loop over a cell, and backward through it step by step (last call first), gives what one
    layer call gives: outputs, final state, dx, the initial state's gradient and every parameter gradient."""
    rng = np.random.default_rng(12)
    T, B, I, H = 5, 2, 3, 4
    cell = cell_cls(I, H, dtype=np.float64, seed=4, **options)
    layer = layer_cls(I, H, dtype=np.float64, seed=5, **options)
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    assert set(cell.parameters()) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    x = rng.standard_normal((T, B, I))
    lstm = cell_cls is rc.LSTMCell
    state = (rng.standard_normal((B, H)), rng.standard_normal((B, H))) if lstm else rng.standard_normal((B, H))
    y_layer, final_layer = layer(x, tuple(s[None] for s in state) if lstm else state[None])
    dy = rng.standard_normal((T, B, H))
    dx_layer, d0_layer = layer.backward(dy)

    s, outputs = state, []
    for t in range(T):
        s = cell(x[t], s)
        outputs.append(s[0] if lstm else s)
    np.testing.assert_allclose(np.stack(outputs), y_layer, rtol=1e-12, atol=1e-14)
    ds = (np.zeros((B, H)), np.zeros((B, H))) if lstm else np.zeros((B, H))
    dxs = []
    for t in reversed(range(T)):
        ds = (ds[0] + dy[t], ds[1]) if lstm else ds + dy[t]
        dx_t, ds = cell.backward(ds)
        dxs.append(dx_t)
    np.testing.assert_allclose(np.stack(dxs[::-1]), dx_layer, rtol=1e-10, atol=1e-12)
    for got, want in zip(as_tuple(ds), as_tuple(d0_layer)):
        np.testing.assert_allclose(got, want[0], rtol=1e-10, atol=1e-12)
    for name, g in cell.gradients().items():
        np.testing.assert_allclose(g, layer.gradients()[f"{name}_l0"], rtol=1e-10, atol=1e-12, err_msg=name)
    with pytest.raises(RuntimeError, match="no recorded step"):
        cell.backward(ds)


def test_streaming_chunks_equal_one_call():
    """Feeding a long sequence chunk by chunk, carrying the state, gives the outputs of one call on all of it."""
    rng = np.random.default_rng(13)
    layer = rc.LSTM(6, 16, num_layers=2, seed=0).eval()
    x = rng.standard_normal((40, 3, 6)).astype(np.float32)
    whole, final = layer(x)
    state, parts = None, []
    for chunk in np.split(x, [7, 8, 25]):
        y, state = layer(chunk, state)
        parts.append(y)
    assert_close(np.concatenate(parts), whole, "kernel_vs_reference", np.float32, "y")
    for a, b in zip(state, final):
        assert_close(a, b, "kernel_vs_reference", np.float32, "state")


# (B, I, H): several rows; one row of 32 units (float32, H a multiple of the SIMD packet: the row product packed by
# units, with each unit's update on its registers, cpp/src/cells/*.hpp).
STREAM_SHAPES = [(3, 4, 5), (1, 4, 32)]


@pytest.mark.parametrize("shape", STREAM_SHAPES, ids=lambda s: "B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cell_cls,layer_cls,options", CELLS_AND_LAYERS)
def test_stream_steps_equal_the_cell(cell_cls, layer_cls, options, dtype, shape):
    """cell.stream(): one step per call with the state kept in C++ gives the cell's states, from zeros and from a
    given state, for a batch of several rows and for one row."""
    rng = np.random.default_rng(21)
    B, I, H = shape
    cell = cell_cls(I, H, dtype=dtype, seed=2, **options).eval()
    lstm = cell_cls is rc.LSTMCell
    for start in (None, "random"):
        state = None if start is None else (
            tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(2)) if lstm
            else rng.standard_normal((B, H)).astype(dtype))
        stream = cell.stream(batch=B, state=state)
        for _ in range(6):
            x = rng.standard_normal((B, I)).astype(dtype)
            h = stream.step(x)
            state = cell(x, state)
            want = state[0] if lstm else state
            assert h.dtype == dtype and h.shape == (B, H)
            assert_close(h, want, "kernel_vs_reference", dtype, "h")
        for got, want in zip(as_tuple(stream.state), as_tuple(state)):
            assert_close(got, want, "kernel_vs_reference", dtype, "state")
        stream.reset()
        assert not any(s.any() for s in as_tuple(stream.state))


def test_stream_checks_its_input_and_snapshots_the_weights():
    cell = rc.LSTMCell(4, 3, seed=0)
    stream = cell.stream(batch=2)
    x = np.ones((2, 4), np.float32)
    first = stream.step(x)
    with pytest.raises(ValueError, match=r"x must be a C-contiguous float32 array of shape \[B, I\] = \(2, 4\)"):
        stream.step(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"got dtype float32 and shape \[1, 4\]"):
        stream.step(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        stream.step(np.ones((4, 2), np.float32).T)
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        stream.reset(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="batch"):
        cell.stream(batch=0)
    for p in cell.parameters().values():  # later parameter updates do not reach an existing stream
        p += 1.0
    stream.reset()
    np.testing.assert_array_equal(stream.step(x), first)
    assert not np.array_equal(cell.stream(batch=2).step(x), first)


@pytest.mark.parametrize("make", [lambda: rc.LSTM(3, 4, seed=0), lambda: rc.LSTMCell(3, 4, seed=0)],
                         ids=["LSTM", "LSTMCell"])
def test_state_pickled_before_the_cell_table_still_runs(make):
    """An LSTM pickled before the cell table kept no cell options in its state (it had none): restoring such a state
    (the instance dict without ``_cell_options``) gives a module that runs, with the same outputs."""
    import pickle

    module = make().eval()  # (a training-mode call keeps a workspace, which does not pickle: issue 12)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    x = x[None] if isinstance(module, rc.LSTM) else x
    expected = module(x)[0]
    old_state = dict(vars(module))
    del old_state["_cell_options"]
    restored = type(module).__new__(type(module))
    vars(restored).update(old_state)
    restored = pickle.loads(pickle.dumps(restored))
    np.testing.assert_array_equal(restored(x)[0], expected)


# ---- issue 12: layer streams, one-row steps, copies of streams, the cells' messages --------------------------------

@pytest.mark.parametrize("cell_cls,layer_cls,options", CELLS_AND_LAYERS)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_layer_stream_equals_the_layer(cell_cls, layer_cls, options, num_layers, batch):
    """layer.stream(): one stepper per layer, chained; streaming a sequence gives the layer's y step by step and its
    final state as the stream's state ([L, B, H]), from zeros and from a given state; batch 1 steps take x [I]."""
    rng = np.random.default_rng(30)
    T, I, H = 6, 4, 5
    layer = layer_cls(I, H, num_layers=num_layers, dtype=np.float64, seed=3, **options).eval()
    x = rng.standard_normal((T, batch, I))
    lstm = layer_cls is rc.LSTM
    for state in (None, tuple(rng.standard_normal((num_layers, batch, H)) for _ in layer.kind.states)):
        state_arg = None if state is None else (state if lstm else state[0])
        y, final = layer(x, state_arg)
        stream = layer.stream(batch=batch, state=state_arg)
        hs = [stream.step(x[t, 0]) if batch == 1 else stream.step(x[t]) for t in range(T)]
        assert hs[0].shape == ((H,) if batch == 1 else (batch, H))
        assert_close(np.stack(hs).reshape(y.shape), y, "kernel_vs_reference", np.float64, "y")
        for got, want in zip(as_tuple(stream.state), as_tuple(final)):
            assert got.shape == (num_layers, batch, H)
            assert_close(got, want, "kernel_vs_reference", np.float64, "state")


def test_a_bidirectional_layer_cannot_stream():
    with pytest.raises(ValueError, match="a bidirectional GRU cannot stream: its reverse direction"):
        rc.GRU(3, 4, bidirectional=True).stream()
    with pytest.raises(ValueError, match="batch must be >= 1"):
        rc.GRU(3, 4).stream(batch=0)


@pytest.mark.parametrize("make", [lambda: rc.LSTMCell(4, 3, seed=0), lambda: rc.LSTM(4, 3, num_layers=2, seed=0)],
                         ids=["cell", "layer"])
def test_one_row_steps_and_their_checks(make):
    module = make().eval()
    x = np.random.default_rng(31).standard_normal(4).astype(np.float32)
    one, rows = module.stream(), module.stream()
    h = one.step(x)
    assert h.shape == (3,) and h.dtype == np.float32
    np.testing.assert_array_equal(h, rows.step(x[None])[0])
    with pytest.raises(ValueError, match=r"x must have shape \[I\] = \(4,\) or \[B, I\] = \(1, 4\), got shape \(5,\)"):
        one.step(np.ones(5, np.float32))
    with pytest.raises(TypeError, match=r"x has dtype float64, expected float32 \(the dtype= the module was built"):
        one.step(np.ones(4))
    with pytest.raises(ValueError, match=r"x must have shape \[B, I\] = \(2, 4\) for a stream of batch 2 \(x \[I\] is "
                                         r"for a stream of batch 1\), got shape \(4,\)"):
        module.stream(batch=2).step(x)
    np.testing.assert_array_equal(one.step(x), rows.step(x[None])[0])  # a second step, from the state both reached


@pytest.mark.parametrize("make", [lambda: rc.GRUCell(3, 4, reset_after=False, seed=0),
                                  lambda: rc.LSTM(3, 4, num_layers=2, seed=0)], ids=["GRUCell", "LSTM"])
def test_streams_pickle_and_deepcopy_with_their_state(make):
    """A copy keeps the weights, the options and the current state (its C++ steppers rebuilt), and then runs on
    its own: it continues exactly as the original does, and stepping one does not move the other."""
    import copy
    import pickle

    module = make().eval()
    rng = np.random.default_rng(32)
    xs = rng.standard_normal((6, 2, 3)).astype(np.float32)
    stream = module.stream(batch=2)
    for t in range(3):
        stream.step(xs[t])
    for clone in (copy.deepcopy(stream), pickle.loads(pickle.dumps(stream))):
        assert repr(clone) == repr(stream)
        for a, b in zip(as_tuple(clone.state), as_tuple(stream.state)):
            np.testing.assert_array_equal(a, b)
        theirs = [clone.step(xs[t]) for t in range(3, 6)]
        for a, b in zip(as_tuple(clone.state), as_tuple(stream.state)):  # the original did not move
            assert not np.array_equal(a, b)
        ours = copy.deepcopy(stream)
        np.testing.assert_array_equal(np.stack(theirs), np.stack([ours.step(xs[t]) for t in range(3, 6)]))
    for p in module.parameters().values():  # the copy has the snapshot, not the module's later weights
        p += 1.0
    clone = pickle.loads(pickle.dumps(stream))
    np.testing.assert_array_equal(clone.step(xs[3]), stream.step(xs[3]))


def test_a_cells_state_and_gradient_errors_name_the_cells_dtype():
    cell = rc.LSTMCell(3, 4, seed=0)
    x = np.zeros((2, 3), np.float32)
    h = np.zeros((2, 4), np.float32)
    with pytest.raises(TypeError, match=r"h has dtype float64, expected float32 \(the dtype= the module was built "
                                        r"with\); convert explicitly"):
        cell(x, (np.zeros((2, 4)), h))
    with pytest.raises(TypeError, match=r"c has dtype float64, expected float32 \(the dtype= the module was built"):
        cell(x, (h, np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"c must have shape \[B, H\] = \(2, 4\), got shape \(1, 4\)"):
        cell(x, (h, np.zeros((1, 4), np.float32)))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h, c\) for an LSTM cell, got ndarray"):
        cell(x, h)
    gru = rc.GRUCell(3, 4, seed=0)
    with pytest.raises(TypeError, match=r"h has dtype float64, expected float32 \(the dtype= the module was built"):
        gru(x, np.zeros((2, 4)))
    h1 = gru(x, h)
    with pytest.raises(TypeError, match=r"dh has dtype float64, expected float32 \(the dtype= the module was built"):
        gru.backward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"dh must have shape \[B, H\] = \(2, 4\), got shape \(3, 4\)"):
        gru.backward(np.zeros((3, 4), np.float32))
    gru.backward(np.ones_like(h1))  # the rejected gradients used nothing up
    h_c = cell(x, (h, h))
    with pytest.raises(TypeError, match=r"dstate must be a tuple \(dh, dc\) for an LSTM cell, got ndarray"):
        cell.backward(h_c[0])
    with pytest.raises(TypeError, match=r"dc has dtype float64"):
        cell.backward((None, np.zeros((2, 4))))
    cell.backward((None, np.ones((2, 4), np.float32)))


def test_a_cell_pickled_when_cells_wrapped_a_layer_still_loads():
    """Before issue 12 a cell held a one-layer layer (``_layer``) under its cells' names: such a pickled state loads
    as a cell with that layer's weights, gradients and init, which runs and trains."""
    import pickle

    old_layer = rc.GRU(3, 4, reset_after=False, init="keras", seed=5)
    old_layer.gradients()["weight_hh_l0"][...] = 2.0
    old_state = dict(input_size=3, hidden_size=4, dtype=old_layer.dtype, bias=True, training=True, _tape=[],
                     _cell_options={"reset_after": False}, _layer=old_layer)
    cell = rc.GRUCell.__new__(rc.GRUCell)
    cell.__setstate__(old_state)
    cell = pickle.loads(pickle.dumps(cell))
    assert repr(cell) == "GRUCell(3, 4, reset_after=False, init='keras', dtype=float32)"
    for name, p in cell.parameters().items():
        np.testing.assert_array_equal(p, old_layer.parameters()[f"{name}_l0"])
    assert (cell.gradients()["weight_hh"] == 2.0).all()
    x = np.ones((2, 3), np.float32)
    fresh = rc.GRUCell(3, 4, reset_after=False, seed=0)
    fresh.load_state_dict(cell.state_dict())
    h = cell(x)
    np.testing.assert_array_equal(h, fresh(x))
    cell.backward(np.ones_like(h))
    assert cell.get_config()["seed"] == 5
