"""rnncore.ops.masked_softmax and masked_softmax_backward: against rnncore.reference over hypothesis-drawn shapes and
masks, then the kernel's edge cases (exact zeros, fully masked rows, extreme scores, NaN, mask broadcasting, integer
masks) and a float64 central-difference gradient check.

The kernel has two code paths (no mask / a mask), so every edge case runs through both: "mask" passes an explicit
all-keep mask where the case has no masked entries of its own.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES, at_offset, numerical_gradient
from support.tolerances import assert_close

PATHS = ["no_mask", "mask"]


def softmax(e, path):
    """The kernel, through the code path asked for (an all-keep mask for "mask")."""
    return ops.masked_softmax(e, None if path == "no_mask" else np.ones(e.shape, bool))


def keep_of(e, mask):
    return np.ones(e.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask) != 0, e.shape)


# ---------------------------------------------------------------------------------------------------------------
# Against the reference
# ---------------------------------------------------------------------------------------------------------------

MASK_KINDS = ["none", "full", "last_axis", "whole_rows", "int"]


@st.composite
def softmax_cases(draw):
    rank = draw(st.integers(1, 3))
    leading = draw(st.lists(st.integers(1, 4), min_size=rank - 1, max_size=rank - 1))
    shape = tuple(leading) + (draw(st.integers(1, 9)),)  # the softmax axis, down to 1
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(MASK_KINDS))
    keep_fraction = draw(st.sampled_from([0.3, 0.7, 1.0]))
    scale = draw(st.sampled_from([1.0, 8.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    e = (rng.standard_normal(shape) * scale).astype(dtype)
    if kind == "none":
        mask = None
    elif kind == "full":
        mask = rng.random(shape) < keep_fraction
        if rank > 1 and draw(st.booleans()):  # one fully masked row
            mask.reshape(-1, shape[-1])[rng.integers(mask.size // shape[-1])] = False
    elif kind == "last_axis":   # [N], broadcast over the leading axes
        mask = rng.random(shape[-1]) < keep_fraction
    elif kind == "whole_rows":  # [..., 1]: rows kept or masked whole
        mask = rng.random(shape[:-1] + (1,)) < keep_fraction
    else:                       # integers, nonzero = keep
        mask = rng.integers(-2, 3, shape) * (rng.random(shape) < keep_fraction)
    dalpha = rng.standard_normal(shape).astype(dtype)
    return e, mask, dalpha


@given(case=softmax_cases())
def test_matches_reference(case):
    e, mask, dalpha = case
    dtype = e.dtype
    alpha = ops.masked_softmax(e, mask)
    assert alpha.dtype == dtype and alpha.shape == e.shape
    assert_close(alpha, reference.masked_softmax(e, mask), "kernel_vs_reference", dtype, "alpha")
    keep = keep_of(e, mask)
    assert (alpha[~keep] == 0).all(), "masked entries must be exactly 0"

    de = ops.masked_softmax_backward(alpha, dalpha)
    assert de.dtype == dtype and de.shape == e.shape
    assert_close(de, reference.masked_softmax_backward(alpha, dalpha), "kernel_vs_reference", dtype, "de")
    assert (de[~keep] == 0).all(), "masked entries must get exactly zero gradient"


# ---------------------------------------------------------------------------------------------------------------
# Edge cases of the kernel
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_masked_entries_are_exactly_zero_whatever_their_scores(dtype):
    rng = np.random.default_rng(1)
    e = rng.standard_normal((4, 7)).astype(dtype)
    mask = np.array([[1, 0, 1, 1, 0, 1, 1]] * 4, bool)
    mask[2, :] = [0, 0, 0, 0, 0, 0, 1]
    want = ops.masked_softmax(e, mask)
    wild = e.copy()
    wild[~mask] = np.array([1e30, -1e30, np.inf, -np.inf, np.nan] * 6, dtype)[:(~mask).sum()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ops.masked_softmax(wild, mask)
    assert (got[~mask] == 0).all() and not np.signbit(got[~mask]).any()
    np.testing.assert_array_equal(got, want)  # masked scores are never read
    assert_close(got[2], np.eye(7, dtype=dtype)[6], "kernel_vs_reference", dtype, "one kept entry gets 1")


@pytest.mark.parametrize("scores", ["normal", "huge", "non_finite"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fully_masked_row_is_exactly_zero(dtype, scores):
    rng = np.random.default_rng(2)
    e = rng.standard_normal((3, 5)).astype(dtype)
    e[1] = {"normal": e[1], "huge": np.finfo(dtype).max, "non_finite": [np.nan, np.inf, -np.inf, np.nan, 1.0]}[scores]
    mask = np.ones((3, 5), bool)
    mask[1] = False
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")  # no RuntimeWarning (nor any other)
        alpha = ops.masked_softmax(e, mask)
        de = ops.masked_softmax_backward(alpha, rng.standard_normal((3, 5)).astype(dtype))
    np.testing.assert_array_equal(alpha[1], np.zeros(5, dtype))
    np.testing.assert_array_equal(de[1], np.zeros(5, dtype))
    assert np.isfinite(alpha).all() and np.isfinite(de).all()
    assert_close(alpha[[0, 2]].sum(axis=-1), np.ones(2), "kernel_vs_reference", dtype, "other rows")


def test_everything_masked_in_every_shape():
    for shape in [(1,), (6,), (2, 3), (2, 3, 4), (5, 1)]:
        e = np.random.default_rng(3).standard_normal(shape)
        alpha = ops.masked_softmax(e, np.zeros(shape, np.int64))
        np.testing.assert_array_equal(alpha, np.zeros(shape), err_msg=str(shape))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_rows_sum_to_one(dtype, path):
    rng = np.random.default_rng(4)
    e = (rng.standard_normal((6, 4, 11)) * 5).astype(dtype)
    if path == "mask":
        mask = rng.random(e.shape) < 0.5
        mask[..., 3] = True  # every row keeps something
    else:
        mask = None
    alpha = ops.masked_softmax(e, mask)
    assert (alpha >= 0).all() and (alpha <= 1).all()
    assert_close(alpha.sum(axis=-1, dtype=np.float64), np.ones(e.shape[:-1]), "kernel_vs_reference", dtype, "sums")


def test_last_axis_of_size_one_gives_one():
    for dtype in DTYPES:
        e = np.array([[-3.0], [0.0], [1e4]], dtype)
        np.testing.assert_array_equal(ops.masked_softmax(e), np.ones((3, 1), dtype))
        np.testing.assert_array_equal(ops.masked_softmax(e, np.array([[True], [False], [True]])),
                                      np.array([[1.0], [0.0], [1.0]], dtype))


def _big_cases(dtype):
    big = float(np.finfo(dtype).max)
    s = 1 / (1 + np.exp(-1.0))
    return [  # (scores, the exact softmax in float64)
        ([1e4, 1e4 - 1, -1e4], [s, 1 - s, 0.0]),
        ([-1e4, -1e4, -1e4 - 1], [s / (1 + s), s / (1 + s), (1 - s) / (1 + s)]),
        ([big, big, -big], [0.5, 0.5, 0.0]),
        ([big, -big, 0.0], [1.0, 0.0, 0.0]),
        ([-big, -big, -big], [1 / 3, 1 / 3, 1 / 3]),
        ([0.9 * big, big, 0.0], [0.0, 1.0, 0.0]),
    ]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_extreme_scores_do_not_overflow(dtype, path):
    cases = _big_cases(dtype)
    e = np.array([c[0] for c in cases], dtype)
    want = np.array([c[1] for c in cases])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alpha = softmax(e, path)
    assert np.isfinite(alpha).all(), alpha
    assert_close(alpha, want, "kernel_vs_reference", dtype, "alpha")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_in_a_kept_entry_propagates_to_its_row_only(dtype, path):
    rng = np.random.default_rng(5)
    e = rng.standard_normal((4, 6)).astype(dtype)
    clean = softmax(e, path)
    e[1, 2] = np.nan
    alpha = softmax(e, path)
    assert np.isnan(alpha[1]).all(), "a NaN score makes its whole row NaN (as in PyTorch)"
    others = [0, 2, 3]
    assert_close(alpha[others], clean[others], "kernel_vs_reference", dtype, "other rows are unaffected")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_in_a_kept_entry_leaves_masked_entries_zero(dtype):
    e = np.array([[1.0, np.nan, 2.0, 3.0]], dtype)
    mask = np.array([[True, True, False, True]])
    alpha = ops.masked_softmax(e, mask)
    assert np.isnan(alpha[0, [0, 1, 3]]).all()
    assert alpha[0, 2] == 0, f"masked entry of a NaN row is {alpha[0, 2]}"


def test_mask_broadcasting():
    rng = np.random.default_rng(6)
    e = rng.standard_normal((5, 7))
    for mask in [rng.random(7) < 0.5,            # [Tx] -> [B, Tx]
                 rng.random((5, 1)) < 0.5,       # [B, 1] -> [B, Tx]
                 np.array(True), np.array(0)]:   # scalars
        full = np.broadcast_to(mask, e.shape).copy()
        np.testing.assert_array_equal(ops.masked_softmax(e, mask), ops.masked_softmax(e, full), err_msg=str(mask))
    # [B, Tx] over decoder steps: e [Ty, B, Tx]
    e3 = rng.standard_normal((3, 5, 7))
    mask = rng.random((5, 7)) < 0.6
    np.testing.assert_array_equal(ops.masked_softmax(e3, mask),
                                  ops.masked_softmax(e3, np.broadcast_to(mask, e3.shape).copy()))
    row_mask = np.array([[True], [False], [True], [False], [True]])
    alpha = ops.masked_softmax(e, row_mask)
    np.testing.assert_array_equal(alpha[[1, 3]], 0.0)
    assert_close(alpha[[0, 2, 4]], ops.masked_softmax(e[[0, 2, 4]]), "kernel_vs_reference", np.float64,
                 "kept rows = plain softmax")


@pytest.mark.parametrize("int_dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64])
def test_integer_masks_behave_like_bool(int_dtype):
    rng = np.random.default_rng(7)
    e = rng.standard_normal((4, 6)).astype(np.float32)
    values = np.array([0, 1, 2, 0, 7, 0, 1, 100], int_dtype)
    if np.issubdtype(int_dtype, np.signedinteger):
        values[2] = -1
    if np.iinfo(int_dtype).max > 256:
        values[4] = 256  # nonzero, but 0 in its low byte: a mask must not be cast to bytes
    mask = np.empty(e.shape, int_dtype)
    mask[0] = 0
    mask[1] = values[values != 0][0]
    mask[2:] = rng.permutation(np.resize(values, 12)).reshape(2, 6)  # every value appears
    np.testing.assert_array_equal(ops.masked_softmax(e, mask), ops.masked_softmax(e, mask != 0))
    np.testing.assert_array_equal(ops.masked_softmax(e, mask[0]), np.zeros_like(e))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_backward_matches_reference_and_masked_entries_get_zero(dtype):
    rng = np.random.default_rng(8)
    e = (rng.standard_normal((3, 4, 9)) * 3).astype(dtype)
    mask = rng.random((3, 4, 9)) < 0.6
    mask[1, 2] = False
    alpha = ops.masked_softmax(e, mask)
    dalpha = (rng.standard_normal(e.shape) * 10).astype(dtype)
    dalpha[~mask] = 1e6  # whatever flows into a masked entry must not come out
    de = ops.masked_softmax_backward(alpha, dalpha)
    assert_close(de, reference.masked_softmax_backward(alpha, dalpha), "kernel_vs_reference", dtype, "de")
    assert (de[~mask] == 0).all()
    np.testing.assert_array_equal(de[1, 2], np.zeros(9, dtype))
    # A softmax gradient sums to zero over each kept row.
    assert_close(de.sum(axis=-1, dtype=np.float64), np.zeros(de.shape[:-1]), "kernel_vs_reference", dtype,
                 "row sums of de")


@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "mask"])
def test_gradcheck_float64(with_mask):
    rng = np.random.default_rng(9)
    e = rng.standard_normal((2, 3, 5)) * 2
    mask = None
    if with_mask:
        mask = rng.random(e.shape) < 0.6
        mask[0, 1] = False         # a fully masked row
        mask[1, 2] = [0, 0, 1, 0, 0]
        mask[1, 0] = True
    g = rng.standard_normal(e.shape)

    def loss():
        return float(np.sum(ops.masked_softmax(e, mask) * g))

    numeric = numerical_gradient(loss, e)
    analytic = ops.masked_softmax_backward(ops.masked_softmax(e, mask), g)
    assert np.abs(analytic).max() > 1e-3  # the check is not vacuous
    assert_close(analytic, numeric, "gradcheck", np.float64, "de")


@pytest.mark.parametrize("dtype,shape", [(np.float64, (5, 13)), (np.float32, (3, 37))], ids=DTYPE_IDS[::-1])
def test_results_do_not_depend_on_the_arrays_addresses(dtype, shape):
    """The same scores at other alignments give bit-identical softmax and backward (no address-dependent
    summation order or scalar/vector exp split)."""
    rng = np.random.default_rng(10)
    e = rng.standard_normal(shape).astype(dtype)
    dalpha = rng.standard_normal(shape).astype(dtype)
    first = ops.masked_softmax(e)
    first_de = ops.masked_softmax_backward(first, dalpha)
    for offset in range(1, 16):
        again = ops.masked_softmax(at_offset(e, offset))
        np.testing.assert_array_equal(again, first, err_msg=f"offset {offset}")
        de = ops.masked_softmax_backward(at_offset(first, offset), at_offset(dalpha, offset))
        np.testing.assert_array_equal(de, first_de, err_msg=f"backward, offset {offset}")
