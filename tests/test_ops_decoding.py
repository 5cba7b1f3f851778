"""rnncore.ops.top_k and log_softmax (decoding's row-wise kernels) against rnncore.reference.decoding: exact
agreement of top_k's choice (ties, NaN, infinities, denormals, offsets) over hypothesis-drawn rows, log_softmax within
the tolerance table, and the argument checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES
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
])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
