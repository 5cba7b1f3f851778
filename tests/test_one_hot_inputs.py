"""One-hot inputs given by their indices (an integer x [T, B]) and the backward's need_dx=False, in the recurrent
kernels, their reference twins and the layers: the same outputs and weight gradients as the dense one-hot x, no dx,
float64 central differences for every gradient the index form returns, and the checks that name a bad x."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnncore as rc
from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES, numerical_gradient
from support.cells import CELL_IDS, CELLS, LAYERS, loss, make_inputs, run_backward, run_forward
from support.tolerances import assert_close, assert_identical


def one_hot_case(rng, cell, T, B, I, H, dtype, lengths):
    """make_inputs with x replaced by indices [T, B] in 0..I-1; returns (index inputs, dense one-hot inputs,
    upstream)."""
    inputs, upstream = make_inputs(rng, cell, T, B, I, H, dtype, lengths=lengths)
    if cell.options.get("nonlinearity") == "relu":
        inputs["b_ih"] += 0.3  # away from relu's kink (central differences)
    index = rng.integers(0, I, (T, B))
    dense = dict(inputs, x=np.eye(I, dtype=dtype)[index])
    return dict(inputs, x=index), dense, upstream


@settings(max_examples=60, deadline=None)
@given(cell=st.sampled_from(range(len(CELLS))), T=st.integers(1, 5), B=st.integers(1, 4), I=st.integers(1, 6),
       H=st.integers(1, 5), dtype=st.sampled_from(DTYPES), lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_indices_match_the_dense_one_hot_input_and_the_reference(cell, T, B, I, H, dtype, lengths, seed):
    cell = CELLS[cell]
    index_inputs, dense_inputs, upstream = one_hot_case(np.random.default_rng(seed), cell, T, B, I, H, dtype, lengths)
    got, ws = run_forward(ops, cell, index_inputs)
    assert ws.one_hot
    dense, dense_ws = run_forward(ops, cell, dense_inputs)
    twin, twin_cache = run_forward(reference, cell, index_inputs)
    for name in cell.output_names:
        assert got[name].dtype == dtype
        assert_close(got[name], dense[name], "kernel_vs_reference", dtype, f"{name} vs dense one-hot")
        assert_close(got[name], twin[name], "kernel_vs_reference", dtype, f"{name} vs reference")
    grads = run_backward(ops, cell, ws, upstream)
    dense_grads = run_backward(ops, cell, dense_ws, upstream)
    twin_grads = run_backward(reference, cell, twin_cache, upstream)
    assert grads["dx"] is None and twin_grads["dx"] is None
    for name in cell.gradient_names[1:]:
        assert_close(grads[name], dense_grads[name], "kernel_vs_reference", dtype, f"{name} vs dense one-hot")
        assert_close(grads[name], twin_grads[name], "kernel_vs_reference", dtype, f"{name} vs reference")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T,B,I,H,lengths", [(3, 2, 4, 2, None), (4, 3, 3, 3, [4, 1, 2]), (1, 1, 1, 1, None)])
def test_index_gradients_match_central_differences(cell, T, B, I, H, lengths):
    rng = np.random.default_rng(T * 100 + B * 10 + H)
    inputs, _, upstream = one_hot_case(rng, cell, T, B, I, H, np.float64, False)
    inputs["lengths"] = None if lengths is None else np.array(lengths)
    _, ws = run_forward(ops, cell, inputs)
    analytic = run_backward(ops, cell, ws, upstream)

    def current_loss():
        return loss(run_forward(ops, cell, inputs, training=False)[0], upstream)

    for input_name, grad_name in zip(cell.input_names[1:], cell.gradient_names[1:]):
        numeric = numerical_gradient(current_loss, inputs[input_name])
        assert_close(analytic[grad_name], numeric, "gradcheck", np.float64, f"{cell.name}: {grad_name}")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T,B", [(0, 3), (2, 0)])
def test_empty_index_inputs_still_give_no_dx(cell, T, B):
    """T = 0 or B = 0: no index to keep, yet the inputs were indices: dx is None, the weight gradients zero."""
    inputs, upstream = make_inputs(np.random.default_rng(7), cell, T, B, 4, 3, np.float64)
    inputs["x"] = np.zeros((T, B), np.int64)
    for impl in (ops, reference):
        _, ws = run_forward(impl, cell, inputs)
        grads = run_backward(impl, cell, ws, upstream)
        assert grads["dx"] is None
        assert grads["dw_ih"].shape == inputs["w_ih"].shape and not grads["dw_ih"].any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
def test_need_dx_false_skips_dx_only(impl, cell, dtype):
    inputs, upstream = make_inputs(np.random.default_rng(3), cell, 4, 3, 5, 4, dtype, lengths=True)
    _, ws = run_forward(impl, cell, inputs)
    full = run_backward(impl, cell, ws, upstream)
    _, backward = cell.functions(impl)
    without = dict(zip(cell.gradient_names, backward(ws, **upstream, need_dx=False)))
    assert full["dx"] is not None and without["dx"] is None
    for name in cell.gradient_names[1:]:
        assert_identical(without[name], full[name], name)


def test_need_dx_is_a_bool():
    cell = CELLS[0]
    inputs, upstream = make_inputs(np.random.default_rng(4), cell, 2, 2, 3, 2, np.float64)
    _, ws = run_forward(ops, cell, inputs)
    assert cell.kind.backward(ws, **upstream, need_dx=np.False_)[0] is None
    assert cell.kind.backward(ws, **upstream, need_dx=np.True_)[0] is not None
    for wrong in ("no", 1, None):
        with pytest.raises(TypeError, match=f"need_dx must be a bool, got {wrong!r}"):
            cell.kind.backward(ws, **upstream, need_dx=wrong)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_index_inputs_are_checked(cell):
    inputs, _ = make_inputs(np.random.default_rng(5), cell, 3, 2, 4, 2, np.float32)
    forward, _ = cell.functions(ops)
    args = lambda x: (x, *(inputs[s] for s in cell.state_names), inputs["w_ih"], inputs["w_hh"],  # noqa: E731
                      inputs["b_ih"], inputs["b_hh"])
    with pytest.raises(ValueError, match=r"x must lie in 0..I-1 = 0..3, got \[4\]"):
        forward(*args(np.array([[0, 1], [2, 4], [3, 3]])), **cell.options)
    with pytest.raises(ValueError, match=r"x must lie in 0..I-1 = 0..3, got \[-1\]"):
        forward(*args(np.array([[0, 1], [2, -1], [3, 3]], np.int32)), **cell.options)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):  # bool: not indices
        forward(*args(np.zeros((3, 2), bool)), **cell.options)
    with pytest.raises(TypeError, match="w_ih has dtype float64, expected float32"):
        forward(np.zeros((3, 2), np.int64), *(inputs[s] for s in cell.state_names),
                inputs["w_ih"].astype(np.float64), inputs["w_hh"], inputs["b_ih"], inputs["b_hh"], **cell.options)
    # int32 and strided indices are converted: the same results as the exact int64 call
    index = np.random.default_rng(6).integers(0, 4, (3, 2))
    exact = forward(*args(index), training=False, **cell.options)
    for x in (index.astype(np.int32), np.repeat(index, 2, axis=1)[:, ::2]):
        for got, want in zip(forward(*args(x), training=False, **cell.options)[:-1], exact[:-1]):
            assert_identical(got, want, "y / final state")


@pytest.mark.parametrize("cls,options", LAYERS)
@pytest.mark.parametrize("padding", ["right", "left"])
def test_layer_takes_indices_like_the_one_hot_rows(cls, options, padding):
    """A bidirectional, two-layer, batch-first layer on indices [B, T] (lengths with a 0) against the same layer on
    the one-hot rows: outputs, final states and every parameter's gradient; dx None."""
    V, B, T, H = 7, 4, 5, 3
    rng = np.random.default_rng(8)
    index = rng.integers(0, V, (B, T))
    lengths = np.array([5, 0, 3, 1])
    dense_x = np.eye(V)[index]
    results = []
    for x in (index, dense_x):
        layer = cls(V, H, num_layers=2, batch_first=True, bidirectional=True, dtype=np.float64, seed=1, **options)
        y, state = layer(x, lengths=lengths, padding=padding)
        dy = np.random.default_rng(9).standard_normal(y.shape)
        dx, _ = layer.backward(dy)
        results.append((y, state, dx, {k: g.copy() for k, g in layer.gradients().items()}))
    (y, state, dx, grads), (y_d, state_d, dx_d, grads_d) = results
    assert dx is None and dx_d is not None
    assert_close(y, y_d, "kernel_vs_reference", np.float64, "y")
    for s, s_d in zip(state if isinstance(state, tuple) else (state,), state_d if isinstance(state_d, tuple)
                      else (state_d,)):
        assert_close(s, s_d, "kernel_vs_reference", np.float64, "final state")
    for name in grads:
        assert_close(grads[name], grads_d[name], "kernel_vs_reference", np.float64, name)


def test_layer_need_dx_false():
    layer = rc.LSTM(3, 2, num_layers=2, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((4, 2, 3))
    y, _ = layer(x)
    dx, dstate = layer.backward(np.ones_like(y))
    grads = {k: g.copy() for k, g in layer.gradients().items()}
    layer.zero_grad()
    layer(x)
    dx_none, dstate_none = layer.backward(np.ones_like(y), need_dx=False)
    assert dx is not None and dx_none is None
    for name, g in layer.gradients().items():
        assert_identical(g, grads[name], name)
    for a, b in zip(dstate, dstate_none):
        assert_identical(a, b, "dstate0")


def test_layer_index_inputs_are_checked():
    layer = rc.GRU(4, 2, batch_first=True)
    with pytest.raises(ValueError, match=r"x must lie in 0..I-1 = 0..3"):
        layer(np.array([[0, 4]]))
    with pytest.raises(TypeError, match="x must hold integers|x has dtype"):
        layer(np.zeros((1, 2), bool))

