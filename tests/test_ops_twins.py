"""The ops that joined rnncore.ops in issue 11 against their NumPy twins in rnncore.reference: the embedding's
backward scatter-add and the streaming steppers (one forward cell step per call, state kept), over hypothesis-drawn
shapes (B = 1 and H = 1 included), both dtypes, every cell variant of the cell table; plus their argument checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnncore import ops, reference
from rnncore._cell_table import VARIANTS

from support.arrays import DTYPE_IDS, DTYPES
from support.tolerances import tol

VARIANT_IDS = [v.name for v in VARIANTS]


def assert_twins(got, want, dtype, name):
    assert got.dtype == want.dtype == np.dtype(dtype), name
    np.testing.assert_allclose(got, want, err_msg=name, **tol("kernel_vs_reference", dtype))


# ---- embedding backward ---------------------------------------------------------------------------------------------

@given(vocab=st.integers(1, 9), width=st.integers(1, 6), index_shape=st.lists(st.integers(0, 5), min_size=1,
                                                                                  max_size=3),
       pad=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_embedding_backward_matches_reference(dtype, vocab, width, index_shape, pad, seed):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, vocab, size=index_shape)
    dy = rng.standard_normal((*index_shape, width)).astype(dtype)
    start = rng.standard_normal((vocab, width)).astype(dtype)  # accumulated into: the old gradient stays
    padding_idx = int(rng.integers(0, vocab)) if pad else None
    got = start.copy()
    assert ops.embedding_backward(indices, dy, got, padding_idx) is got
    want = reference.embedding_backward(indices, dy, start.copy(), padding_idx)
    assert_twins(got, want, dtype, "dweight")
    if padding_idx is not None:
        np.testing.assert_array_equal(got[padding_idx], start[padding_idx])


@pytest.mark.parametrize("call,exc,match", [
    (lambda w: ops.embedding_backward([0, 3], np.ones((2, 2)), w), ValueError, r"indices must lie in 0\.\.V-1"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 3)), w), ValueError, r"dy must have shape"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 2), np.float32), w), TypeError, r"dy has dtype float32"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 2)), w.T), ValueError, r"dweight must be C-contiguous"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 2)), w[:, 0]), ValueError, r"dweight must have shape"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 2)), list(w)), TypeError, r"dweight must be a numpy"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 2)), w, 3), ValueError, r"padding_idx must lie in 0\.\.V-1"),
    (lambda w: ops.embedding_backward([0, 1], np.ones((2, 2)), w, True), TypeError, r"padding_idx must be an int"),
    (lambda w: ops.embedding_backward([0.0, 1], np.ones((2, 2)), w), TypeError, r"indices must hold integers"),
])
def test_embedding_backward_checks_its_arguments(call, exc, match):
    w = np.zeros((3, 2))
    with pytest.raises(exc, match=match):
        call(w)
    assert not w.any(), "a rejected call adds nothing"


# ---- streaming steppers ---------------------------------------------------------------------------------------------

def stepper_inputs(rng, variant, B, I, H, dtype, bias):
    k = 1.0 / np.sqrt(H)
    GH = variant.kind.n_gates * H
    weights = [rng.uniform(-k, k, shape).astype(dtype) for shape in [(GH, I), (GH, H), (GH,), (GH,)]]
    if not bias:
        weights[2:] = [None, None]
    state = [rng.standard_normal((B, H)).astype(dtype) for _ in variant.kind.states]
    return weights, state


@given(B=st.integers(1, 4), I=st.integers(1, 5), H=st.integers(1, 6), steps=st.integers(1, 4), bias=st.booleans(),
       from_state=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_stepper_matches_reference(variant, dtype, B, I, H, steps, bias, from_state, seed):
    """Each step's h (and the LSTM's c) equals the reference stepper's, from zeros or from a given state."""
    rng = np.random.default_rng(seed)
    weights, state = stepper_inputs(rng, variant, B, I, H, dtype, bias)
    got, want = variant.stepper(B, *weights), variant.reference_stepper(B, *weights)
    if from_state:
        c = state[1] if len(state) > 1 else None
        got.reset(state[0], c)
        want.reset(state[0], c)
    for t in range(steps):
        x = rng.standard_normal((B, I)).astype(dtype)
        assert_twins(got.step(x), want.step(x), dtype, f"h after step {t}")
        if variant.kind.n_states == 2:
            assert_twins(got.c, want.c, dtype, f"c after step {t}")
    assert_twins(got.h, want.h, dtype, "h")


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_reference_stepper_equals_the_reference_sequence_forward(variant):
    """The reference step is the sequence forward's step: T calls give the forward's y and final state."""
    rng = np.random.default_rng(3)
    T, B, I, H = 5, 2, 3, 4
    weights, state = stepper_inputs(rng, variant, B, I, H, np.float64, True)
    x = rng.standard_normal((T, B, I))
    y, *final, _ = variant.reference_forward(x, *state, *weights, training=False)
    stepper = variant.reference_stepper(B, *weights)
    stepper.reset(*state)
    for t in range(T):
        np.testing.assert_array_equal(stepper.step(x[t]), y[t])
    np.testing.assert_array_equal(stepper.h, final[0])


@pytest.mark.parametrize("make,exc,match", [
    (lambda w: ops.lstm_stepper(0, *w), ValueError, r"batch must be >= 1"),
    (lambda w: ops.lstm_stepper(2.0, *w), TypeError, r"batch must be an int"),
    (lambda w: ops.lstm_stepper(1, w[0][:-1], *w[1:]), ValueError, r"w_ih must have shape \[4\*H, I\] = \(8, 3\)"),
    (lambda w: ops.lstm_stepper(1, w[0], w[1][:, :1], *w[2:]), ValueError,
     r"w_hh must have shape \[4\*H, H\] = \(4, 1\)"),
    (lambda w: ops.lstm_stepper(1, w[0], w[1].astype(np.float32), *w[2:]), TypeError, r"w_hh has dtype float32"),
    (lambda w: ops.lstm_stepper(1, *w[:2], w[2][:-1], w[3]), ValueError, r"b_ih must have shape \[4\*H\]"),
    (lambda w: ops.lstm_stepper(1, w[0].tolist(), *w[1:]), TypeError, r"w_ih must be a numpy.ndarray"),
    (lambda w: ops.gru_stepper(1, *w), ValueError, r"w_hh must have shape \[3\*H, H\] = \(6, 2\)"),
    (lambda w: ops.rnn_stepper(1, w[0][:2], w[1][:2], nonlinearity="sigmoid"), ValueError, r"nonlinearity"),
    (lambda w: ops.gru_stepper(1, w[0][:6], w[1][:6], reset_after=1), TypeError, r"reset_after must be a bool"),
])
def test_stepper_checks_its_arguments(make, exc, match):
    """The C++ Stepper trusts its arguments (an unknown cell name becomes an RNN, a batch < 1 or a wrong bias length
    would read out of bounds): the ops factory checks them first."""
    H, I = 2, 3
    w = [np.ones((4 * H, I)), np.ones((4 * H, H)), np.ones(4 * H), np.ones(4 * H)]
    with pytest.raises(exc, match=match):
        make(w)


def test_strided_stepper_weights_are_copied_to_c_order():
    rng = np.random.default_rng(5)
    H, I = 3, 2
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    x = rng.standard_normal((1, I))
    want = ops.lstm_stepper(1, w_ih, w_hh).step(x)
    got = ops.lstm_stepper(1, np.asfortranarray(w_ih), np.asfortranarray(w_hh)).step(x)
    np.testing.assert_array_equal(got, want)
