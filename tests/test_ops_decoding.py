"""rnncore.ops.top_k, log_softmax and softmax_cross_entropy (the row-wise softmax kernels) against
rnncore.reference.decoding: exact agreement of top_k's choice (ties, NaN, infinities, denormals, offsets) over
hypothesis-drawn rows, log_softmax and the cross-entropy (losses and gradients, float64 central differences) within
the tolerance table, and the argument checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES, numerical_gradient
from support.tolerances import assert_close

# Values chosen to collide: few distinct ones (ties), both infinities, NaN, a denormal and its neighbours.
_SPECIAL = [0.0, -1.0, -2.0, 1.5, -np.inf, np.inf, np.nan, -1e-40, -2e-40, -1e-300]


@st.composite
def top_k_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 70))
    k = draw(st.integers(1, cols))
    kind = draw(st.sampled_from(["normal", "ties", "special"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        scores = rng.standard_normal((rows, cols))
    elif kind == "ties":
        scores = rng.integers(-3, 1, (rows, cols)).astype(np.float64)
    else:
        scores = rng.choice(_SPECIAL, (rows, cols))
    offsets = draw(st.sampled_from([None, "normal", "special"]))
    if offsets == "normal":
        offsets = rng.standard_normal(rows) * 10
    elif offsets == "special":
        offsets = rng.choice([0.0, -np.inf, -5.0, 1e300, np.nan], rows)
    return scores.astype(dtype), k, offsets


@given(top_k_cases())
def test_top_k_makes_the_stable_sorts_choice(case):
    scores, k, offsets = case
    columns, values = ops.top_k(scores, k, offsets)
    want_columns, want_values = reference.top_k(scores, k, offsets)
    assert columns.dtype == np.int64 and values.dtype == np.float64
    np.testing.assert_array_equal(columns, want_columns)
    np.testing.assert_array_equal(values, want_values)


def test_top_k_ties_go_to_the_lowest_column():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0]], np.float32)
    columns, values = ops.top_k(scores, 3)
    np.testing.assert_array_equal(columns, [[1, 2, 4]])
    np.testing.assert_array_equal(values, [[3.0, 3.0, 3.0]])


def test_top_k_offsets_are_added_in_float64():
    # 1 + 2**-30 is not a float32, so the sum must be formed in float64 to keep the two entries apart.
    scores = np.array([[0.0, 2.0**-30]], np.float32)
    columns, values = ops.top_k(scores, 2, np.array([1.0]))
    np.testing.assert_array_equal(columns, [[1, 0]])
    np.testing.assert_array_equal(values, [[1.0 + 2.0**-30, 1.0]])


def test_top_k_ranks_nan_as_minus_infinity():
    scores = np.array([[np.nan, -np.inf, 0.0, np.nan]])
    columns, values = ops.top_k(scores, 4)
    np.testing.assert_array_equal(columns, [[2, 0, 1, 3]])
    np.testing.assert_array_equal(values, [[0.0, -np.inf, -np.inf, -np.inf]])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_top_k_on_long_rows_skips_nothing_it_should_keep(dtype):
    # Long rows go through the block skip: the best entries sit at every position of a block, including the last.
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((40, 1000)).astype(dtype)
    for r in range(40):
        scores[r, (17 * r) % 1000] = 10.0 + r
        scores[r, 999 - r] = 10.0 + r  # a tie with the one above, at a higher column
    offsets = rng.standard_normal(40)
    for added in (None, offsets):
        columns, values = ops.top_k(scores, 7, added)
        want_columns, want_values = reference.top_k(scores, 7, added)
        np.testing.assert_array_equal(columns, want_columns)
        np.testing.assert_array_equal(values, want_values)
        assert set(columns[:, :2].ravel()) >= {(17 * r) % 1000 for r in range(40)}


@st.composite
def log_softmax_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))) + (draw(st.integers(1, 40)),)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 30.0]))
    if draw(st.booleans()):
        x[rng.random(shape) < 0.2] = -np.inf
        x[..., 0] = 0.0  # every row keeps a finite entry
    return x.astype(dtype)


@given(log_softmax_cases())
def test_log_softmax_matches_the_reference(x):
    y = ops.log_softmax(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    want = reference.log_softmax(x)
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(want))
    finite = np.isfinite(want)
    assert_close(y[finite], want[finite], "kernel_vs_reference", x.dtype, "log_softmax")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_softmax_edge_rows(dtype):
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf] * 3, [1e30, 0.0, -1e30]],
                 dtype)
    y = ops.log_softmax(x)
    assert np.isneginf(y[0, 1]) and np.all(np.isfinite(y[0, [0, 2]]))
    assert np.all(np.isnan(y[1])) and np.all(np.isnan(y[2])) and np.all(np.isnan(y[3]))
    np.testing.assert_array_equal(y[4], np.array([0.0, -1e30, -2e30], dtype))  # no overflow
    np.testing.assert_allclose(np.exp(ops.log_softmax(np.zeros((2, 4), dtype))), 0.25)


@st.composite
def cross_entropy_cases(draw):
    """Rows R >= 1 (R = 1 included) of C >= 1 classes (C = 1 included; 16+ crosses a float packet), spread or
    peaked logits, a mask or none (excluded rows hold NaN, inf and out-of-range targets), label smoothing."""
    dtype = draw(st.sampled_from(DTYPES))
    R, C = draw(st.integers(1, 7)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = rng.standard_normal((R, C)) * draw(st.sampled_from([1.0, 20.0]))
    targets = rng.integers(0, C, R)
    mask = None
    if draw(st.booleans()):
        mask = rng.random(R) < 0.6
        logits[~mask, 0] = np.nan
        logits[~mask, -1] = np.inf
        targets[~mask] = C + 5
    eps = draw(st.sampled_from([0.0, 0.1, 1.0]))
    return logits.astype(dtype), targets, mask, eps


@given(cross_entropy_cases())
def test_cross_entropy_matches_the_reference(case):
    logits, targets, mask, eps = case
    losses, grad = ops.softmax_cross_entropy(logits, targets, mask, eps)
    want_losses, want_grad = reference.softmax_cross_entropy(logits, targets, mask, eps)
    assert losses.dtype == grad.dtype == logits.dtype and losses.shape == targets.shape and grad.shape == logits.shape
    assert_close(losses, want_losses, "kernel_vs_reference", logits.dtype, "losses")
    assert_close(grad, want_grad, "kernel_vs_reference", logits.dtype, "dlogits")
    if mask is not None:  # excluded rows: exactly zero, whatever they hold
        assert not losses[~mask].any() and not grad[~mask].any()


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_cross_entropy_gradient_is_the_losses_derivative(eps, rng):
    logits = rng.standard_normal((4, 7))
    targets, mask = rng.integers(0, 7, 4), np.array([True, False, True, True])
    weights = rng.standard_normal(4)  # the gradient of Σ w_r loss_r is w_r dlogits_r
    _, grad = ops.softmax_cross_entropy(logits, targets, mask, eps)

    def f():
        return float(weights @ ops.softmax_cross_entropy(logits, targets, mask, eps)[0])

    assert_close(grad * weights[:, None], numerical_gradient(f, logits), "gradcheck", np.float64, "dlogits")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_edge_rows(dtype):
    x = np.array([[1000.0, 0.0, -1000.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [0.0, -np.inf, 1.0]], dtype)
    losses, grad = ops.softmax_cross_entropy(x, [0, 1, 1, 1])
    assert losses[0] == 0 and np.array_equal(grad[0], np.array([0, 0, 0], dtype))  # no overflow
    assert np.isnan(losses[1]) and np.isnan(losses[2])  # NaN or +inf in a kept row: NaN, as torch
    assert np.isposinf(losses[3]) and grad[3, 1] == -1  # the target's logit is -inf: p = 0
    # another class's logit -inf (a masked vocabulary): finite, and the twin agrees (review3: its 0 · inf was NaN)
    x = np.array([[0.0, -np.inf, 1.0]], dtype)
    for eps in (0.0, 0.2):
        got, want = ops.softmax_cross_entropy(x, [0], None, eps), reference.softmax_cross_entropy(x, [0], None, eps)
        np.testing.assert_array_equal(np.isfinite(got[0]), np.isfinite(want[0]))
        assert np.isfinite(got[0]).all() == (eps == 0.0)
        assert_close(got[1], want[1], "kernel_vs_reference", dtype, "dlogits")
        if eps == 0.0:
            assert_close(got[0], want[0], "kernel_vs_reference", dtype, "losses")


@pytest.mark.parametrize("call, error, words", [
    (lambda: ops.top_k([[1.0, 2.0]], 1), TypeError, "scores must be a numpy.ndarray"),
    (lambda: ops.top_k(np.ones((2, 3), np.int64), 1), TypeError, "scores must have dtype float32 or float64"),
    (lambda: ops.top_k(np.ones(3), 1), ValueError, "scores must have shape [R, C]"),
    (lambda: ops.top_k(np.ones((2, 0)), 1), ValueError, "at least one column"),
    (lambda: ops.top_k(np.ones((2, 3)), 0), ValueError, "k must lie in 1..C = 1..3, got 0"),
    (lambda: ops.top_k(np.ones((2, 3)), 4), ValueError, "k must lie in 1..C = 1..3, got 4"),
    (lambda: ops.top_k(np.ones((2, 3)), 2.0), TypeError, "k must be an int, got float"),
    (lambda: ops.top_k(np.ones((2, 3)), True), TypeError, "k must be an int, got bool"),
    (lambda: ops.top_k(np.ones((2, 3)), 1, np.zeros(3)), ValueError, "offsets must have shape [R] = (2,)"),
    (lambda: ops.top_k(np.ones((2, 3)), 1, np.array(["a", "b"])), TypeError, "offsets must hold real numbers"),
    (lambda: ops.log_softmax(np.float64(1.0)), TypeError, "x must be a numpy.ndarray"),
    (lambda: ops.log_softmax(np.array(1.0)), ValueError, "x must have at least one axis"),
    (lambda: ops.log_softmax(np.ones((2, 0))), ValueError, "at least one class"),
    (lambda: ops.log_softmax(np.ones(3, np.int32)), TypeError, "x must have dtype float32 or float64"),
    (lambda: ops.softmax_cross_entropy(np.ones(3), [0, 0, 0]), ValueError, "logits must have shape [R, C]"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), [0]), ValueError, "targets must have shape (2,)"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), [0, 3]), ValueError, "targets must lie in 0..C-1 = 0..2"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), [0.0, 1.0]), TypeError, "targets must hold integers"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), [0, 1], [1, 0, 1]), ValueError, "mask must be broadcastable"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3)), [0, 1], None, 1.5), ValueError,
     "label_smoothing must lie in [0, 1]"),
    (lambda: ops.softmax_cross_entropy(np.ones((2, 3), np.int64), [0, 1]), TypeError, "logits must have dtype"),
])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
