"""The recurrent kernels' y and dy at any strides (issue 13): a forward's ``out=`` is written in place (a direction's
columns of a [B, T, D*H] or [T, B, D*H] output, reversed in time through a negative stride) and a backward reads a
strided dy where it lies; the results are the contiguous call's, bit for bit, and the C++ fast path takes both
(no copy). The layers run every direction through these views: their outputs and every gradient are those of the
same layers run on the kernels' contiguous path. ``out=``'s argument errors name it."""

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core, ops

from support.cells import CELL_IDS, CELLS, LAYERS, as_tuple, make_inputs, run_backward, run_forward
from support.op_calls import msg

T, B, I, H = 5, 4, 3, 2
LAYOUTS = ["time_major", "batch_major", "reversed", "reversed_batch_major", "feature_strided"]


def step_views(layout, dtype, steps=T, batch=B, hidden=H):
    """(the whole array, a [T, B, H] view of the second of two directions' columns in ``layout``); the array is
    filled with NaN so that writes outside the view show."""
    batch_major = layout in ("batch_major", "reversed_batch_major")
    whole = np.full((batch, steps, 2 * hidden) if batch_major else (steps, batch, 2 * hidden), np.nan, dtype)
    return whole, view_of(whole, layout, hidden)


def view_of(whole, layout, hidden=H):
    if layout in ("batch_major", "reversed_batch_major"):
        view = whole[:, :, hidden:].transpose(1, 0, 2)
    elif layout == "feature_strided":  # every other column, backwards: a feature stride of -2
        view = whole[:, :, ::-2]
    else:
        view = whole[:, :, hidden:]
    if layout.startswith("reversed"):
        view = view[::-1]
    return view


def forward_args(cell, inputs):
    return [inputs["x"], *(inputs[s] for s in cell.state_names), inputs["w_ih"], inputs["w_hh"], inputs["b_ih"],
            inputs["b_hh"]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_strided_out_and_dy_give_the_contiguous_bits(cell, layout, lengths, dtype):
    inputs, upstream = make_inputs(np.random.default_rng(3), cell, T, B, I, H, dtype, lengths=lengths)
    want, ws = run_forward(ops, cell, inputs)
    want_grads = run_backward(ops, cell, ws, upstream)

    whole, view = step_views(layout, dtype)
    assert not view.flags.c_contiguous
    fast = cell.kind.forward.__name__
    got = getattr(_core, fast)(*forward_args(cell, inputs), inputs["lengths"], True, *cell.options.values(),
                               out=view)
    assert got is not NotImplemented, "the fast path refused a strided out="
    assert got[0] is view
    np.testing.assert_array_equal(view, want["y"])
    for name, g in zip(cell.output_names[1:], got[1:]):
        np.testing.assert_array_equal(g, want[name], err_msg=name)
    rest = np.ones(whole.shape, bool)
    view_of(rest, layout)[...] = False
    assert np.isnan(whole[rest]).all(), "out= wrote outside its view"

    dy_whole, dy_view = step_views(layout, dtype)
    dy_view[...] = upstream["dy"]
    grads = getattr(_core, cell.kind.backward.__name__)(got[-1], dy_view, *(upstream[f"d{s}_n"]
                                                                           for s in cell.kind.states), True)
    assert grads is not NotImplemented, "the fast path refused a strided dy"
    for name, g in zip(cell.gradient_names, grads):
        np.testing.assert_array_equal(g, want_grads[name], err_msg=name)
    # the same through rnncore.ops
    y_ops = cell.kind.forward(*forward_args(cell, inputs), lengths=inputs["lengths"], out=view, **cell.options)[0]
    assert y_ops is view
    for name, g in zip(cell.gradient_names, run_backward(ops, cell, ws, {**upstream, "dy": dy_view}).values()):
        np.testing.assert_array_equal(g, want_grads[name], err_msg=name)


def test_a_broadcast_dy_is_read_in_place():
    """A dy with a zero stride (numpy.broadcast_to: read-only, every step the same row) needs no copy either."""
    cell = CELLS[0]
    inputs, upstream = make_inputs(np.random.default_rng(1), cell, T, B, I, H, np.float64)
    _, ws = run_forward(ops, cell, inputs)
    dy = np.broadcast_to(upstream["dy"][0], (T, B, H))
    want = cell.kind.backward(ws, np.ascontiguousarray(dy))
    got = getattr(_core, cell.kind.backward.__name__)(ws, dy, *(None for _ in cell.kind.states), True)
    assert got is not NotImplemented
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# ---- the layers: every direction through views, against the kernels' contiguous path -----------------------------

def contiguous_kernels(monkeypatch):
    """Makes every recurrent kernel call take the contiguous path: out= computed into a new array and copied in,
    dy copied C-contiguous first (what the layers did before they passed views)."""
    for op in ("lstm", "gru", "rnn"):
        forward, backward = getattr(_core, f"{op}_forward"), getattr(_core, f"{op}_backward")

        def contiguous_forward(*args, out=None, _forward=forward):
            result = _forward(*args)
            if out is None or result is NotImplemented:
                return result
            out[...] = result[0]
            return (out, *result[1:])

        def contiguous_backward(workspace, dy, *rest, _backward=backward):
            return _backward(workspace, None if dy is None else np.ascontiguousarray(dy), *rest)

        monkeypatch.setattr(_core, f"{op}_forward", contiguous_forward)
        monkeypatch.setattr(_core, f"{op}_backward", contiguous_backward)
        # a bidirectional layer's pair calls the kernels from C++: refused, the layer makes the two calls above
        for pair in (f"_{op}_forward_pair", f"_{op}_backward_pair"):
            monkeypatch.setattr(_core, pair, lambda first, second: NotImplemented)


def train_step(cls, options, bidirectional, batch_first, num_layers, lengths, one_hot, padding):
    rng = np.random.default_rng(7)
    steps, batch, inputs, hidden = 5, 3, 4, 3
    layer = cls(inputs, hidden, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                seed=2, **options)
    shape = (batch, steps) if batch_first else (steps, batch)
    x = rng.integers(0, inputs, shape) if one_hot else rng.standard_normal((*shape, inputs)).astype(np.float32)
    state = tuple(rng.standard_normal((layer.num_layers * layer.num_directions, batch, hidden)).astype(np.float32)
                  for _ in cls.kind.states)
    state = state if len(state) > 1 else state[0]
    y, final = layer(x, state, lengths, padding=padding)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dstate = tuple(rng.standard_normal(f.shape).astype(np.float32) for f in as_tuple(final))
    dx, dstate0 = layer.backward(dy, dstate if len(dstate) > 1 else dstate[0])
    return [y, *as_tuple(final), *([] if dx is None else [dx]), *as_tuple(dstate0),
            *(g.copy() for g in layer.gradients().values())]


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("lengths", [None, [5, 5, 5], [5, 2, 4]], ids=["none", "all_T", "unequal"])
@pytest.mark.parametrize("cls,options", LAYERS)
def test_layers_give_the_contiguous_paths_bits(monkeypatch, cls, options, lengths, batch_first, bidirectional,
                                               num_layers):
    case = (cls, options, bidirectional, batch_first, num_layers, lengths, False, "right")
    strided = train_step(*case)
    contiguous_kernels(monkeypatch)
    contiguous = train_step(*case)
    assert len(strided) == len(contiguous)
    for k, (got, want) in enumerate(zip(strided, contiguous)):
        np.testing.assert_array_equal(got, want, err_msg=f"output {k}")


@pytest.mark.parametrize("padding,lengths", [("right", [5, 0, 3]), ("left", [5, 2, 4])])
def test_the_encoder_layer_and_padding_plans_give_the_contiguous_paths_bits(monkeypatch, padding, lengths):
    """The course's encoder (one-hot ids, bidirectional, batch_first) and the padding plans that map y back."""
    for one_hot, lens in ((True, None), (True, [5, 5, 5]), (False, lengths)):
        case = (rc.LSTM, {}, True, True, 2, lens, one_hot, padding)
        strided = train_step(*case)
        with monkeypatch.context() as m:
            contiguous_kernels(m)
            contiguous = train_step(*case)
        for k, (got, want) in enumerate(zip(strided, contiguous)):
            np.testing.assert_array_equal(got, want, err_msg=f"output {k}")


# ---- out= argument errors -------------------------------------------------------------------------------------------

def lstm_call(dtype=np.float64):
    cell = CELLS[0]
    assert cell.op == "lstm"
    inputs, _ = make_inputs(np.random.default_rng(0), cell, T, B, I, H, dtype)
    return forward_args(cell, inputs)


def unaligned(shape, dtype):
    buffer = np.zeros(int(np.prod(shape)) * np.dtype(dtype).itemsize + 1, np.uint8)[1:]
    a = buffer.view(dtype).reshape(shape)
    assert not a.flags.aligned
    return a


def read_only(shape, dtype):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("out,error,words", [
    ([[0.0]], TypeError, ["numpy.ndarray", "[T, B, H] = (5, 4, 2)", "list"]),
    (np.zeros((T, B, H), np.float32), TypeError, ["float32", "float64"]),
    (np.zeros((T, B, H + 1)), ValueError, ["[T, B, H] = (5, 4, 2)", "(5, 4, 3)"]),
    (np.zeros((T, B)), ValueError, ["[T, B, H] = (5, 4, 2)", "(5, 4)"]),
    (read_only((T, B, H), np.float64), ValueError, ["writeable"]),
    (unaligned((T, B, H), np.float64), ValueError, ["aligned"]),
    (np.lib.stride_tricks.as_strided(np.zeros((B, H)), (T, B, H), (0, 8 * H, 8), writeable=True), ValueError,
     ["no two elements at one address", "(0, 16, 8)"]),
], ids=["list", "dtype", "size", "rank", "read_only", "unaligned", "overlapping_itself"])
def test_bad_out_is_refused_naming_it(out, error, words):
    call = lstm_call()
    assert _core.lstm_forward(*call, None, True, out) is NotImplemented
    with pytest.raises(error, match=msg("out", *words)):
        ops.lstm_forward(*call, out=out)


@pytest.mark.parametrize("shared", ["x", "h0", "w_hh", "b_hh"])
def test_out_sharing_memory_with_another_argument_is_refused(shared):
    call = lstm_call()
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    k = names.index(shared)
    a = call[k]
    buffer = np.zeros(a.size + T * B * H - 1)
    call[k] = buffer[:a.size].reshape(a.shape)
    call[k][...] = a
    out = buffer[a.size - 1:a.size - 1 + T * B * H].reshape(T, B, H)  # sharing one element: the argument's last
    assert _core.lstm_forward(*call, None, True, out) is NotImplemented
    with pytest.raises(ValueError, match=msg("out", "share no memory", shared)):
        ops.lstm_forward(*call, out=out)
    # not overlapping: taken, written and returned
    apart = np.zeros(a.size + 1 + T * B * H)
    call[k] = apart[:a.size].reshape(a.shape)
    call[k][...] = a
    out = apart[a.size + 1:].reshape(T, B, H)
    assert _core.lstm_forward(*call, None, True, out)[0] is out


@pytest.mark.parametrize("shared", ["x", "w_hh"])
def test_out_sharing_memory_with_an_argument_that_gets_copied_is_refused(shared):
    """An argument the checks copy (here a strided view, made contiguous) still may not overlap out: the caller's
    array would be overwritten whatever its layout (review3)."""
    call = lstm_call()
    k = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"].index(shared)
    a = call[k]
    wide = np.zeros((*a.shape[:-1], a.shape[-1] + T * B * H))
    call[k] = wide[..., :a.shape[-1]]  # not contiguous: the checked call gets a copy
    call[k][...] = a
    out = wide.reshape(-1)[:T * B * H].reshape(T, B, H)  # over the argument's first row
    with pytest.raises(ValueError, match=msg("out", "share no memory", shared)):
        ops.lstm_forward(*call, out=out)


def test_a_subclass_out_is_written_through_a_view_and_returned():
    class Tagged(np.ndarray):
        pass

    call = lstm_call()
    out = np.zeros((T, B, H)).view(Tagged)
    assert _core.lstm_forward(*call, None, True, out) is NotImplemented
    y = ops.lstm_forward(*call, out=out)[0]
    assert y is out
    np.testing.assert_array_equal(np.asarray(out), ops.lstm_forward(*call)[0])


@pytest.mark.parametrize("steps,batch", [(0, B), (T, 0)], ids=["T0", "B0"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_empty_out_is_taken(layout, steps, batch):
    """No step or no sample: the view's strides may be anything (numpy gives an axis after a zero extent stride 0)."""
    call = lstm_call()
    call[0] = np.zeros((steps, batch, I))
    call[1] = call[2] = None
    _, out = step_views(layout, np.float64, steps, batch)
    got = _core.lstm_forward(*call, None, True, out)
    assert got is not NotImplemented and got[0] is out
    assert ops.lstm_forward(*call, out=out)[0] is out
