"""Tests of rnncore.reference.masked_softmax and its backward, the pure-NumPy spec of the masked softmax (the C++ kernel
against it: tests/test_masked_softmax.py).

Every expectation here comes from somewhere other than the reference's own code path: softmax written out entry by
entry, central finite differences (gradients), shift invariance, and the backward formula in float64.
"""

import contextlib
import warnings

import numpy as np
import pytest

from rnncore import reference

from support.arrays import numerical_gradient
from support.tolerances import assert_close


def hand_masked_softmax(e, keep):
    """Row by row: softmax of the kept entries, zeros elsewhere."""
    e2, k2 = e.reshape(-1, e.shape[-1]), keep.reshape(-1, e.shape[-1])
    out = np.zeros_like(e2)
    for row in range(e2.shape[0]):
        kept = e2[row, k2[row]]
        if kept.size:
            w = np.exp(kept - kept.max())
            out[row, k2[row]] = w / w.sum()
    return out.reshape(e.shape)


@contextlib.contextmanager
def strict():
    """Any warning, and any floating-point overflow, division by zero or invalid operation, becomes an exception.
    (Underflow is not an error: exp(-2e4) == 0 is the right answer.)"""
    with warnings.catch_warnings(), np.errstate(divide="raise", over="raise", invalid="raise"):
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_masked_softmax_values(shape, rng):
    e = 3.0 * rng.standard_normal(shape)
    keep = rng.random(shape) < 0.6
    keep.reshape(-1, shape[-1])[:, 0] = True           # every row keeps at least one entry
    with strict():
        alpha = reference.masked_softmax(e, keep)
        alpha_all = reference.masked_softmax(e)
    assert alpha.shape == e.shape and alpha.dtype == np.float64
    np.testing.assert_array_equal(alpha[~keep], 0.0)                           # masked entries are exactly 0
    assert_close(alpha.sum(axis=-1), np.ones(shape[:-1]), "kernel_vs_reference", np.float64, "row sums")
    assert_close(alpha, hand_masked_softmax(e, keep), "kernel_vs_reference", np.float64, "masked")
    assert_close(alpha_all, hand_masked_softmax(e, np.ones(shape, bool)), "kernel_vs_reference", np.float64,
                 "unmasked")
    assert np.all(alpha_all > 0)


def test_masked_softmax_fully_masked_row_is_zero_without_warnings(rng):
    e = rng.standard_normal((3, 4))
    keep = np.array([[True, False, True, True], [False] * 4, [False, False, True, False]])
    with strict():
        alpha = reference.masked_softmax(e, keep)
        de = reference.masked_softmax_backward(alpha, rng.standard_normal((3, 4)))
        all_masked = reference.masked_softmax(e, np.zeros((3, 4), bool))
    np.testing.assert_array_equal(alpha[1], 0.0)
    np.testing.assert_array_equal(de[1], 0.0)
    np.testing.assert_array_equal(all_masked, 0.0)
    assert_close(alpha[2], [0.0, 0.0, 1.0, 0.0], "kernel_vs_reference", np.float64)


def test_masked_softmax_large_inputs_do_not_overflow():
    e = np.array([[1e4, 1e4 - 1.0, -1e4], [-1e4, -1e4 - 2.0, 0.0], [1e4, 1.0, 2.0]])
    keep = np.array([[True, True, True], [True, True, False], [False, True, True]])   # a masked 1e4 too
    with strict():
        alpha = reference.masked_softmax(e, keep)
        alpha32 = reference.masked_softmax(e.astype(np.float32), keep)
    s = np.exp(-1.0) + 1.0
    expected = np.array([[1 / s, np.exp(-1.0) / s, 0.0],
                         [1 / (1 + np.exp(-2.0)), np.exp(-2.0) / (1 + np.exp(-2.0)), 0.0],
                         [0.0, np.exp(-1.0) / s, 1 / s]])
    assert_close(alpha, expected, "kernel_vs_reference", np.float64)
    assert alpha32.dtype == np.float32
    assert_close(alpha32, expected, "kernel_vs_reference", np.float32)


def test_masked_softmax_shift_invariance(rng):
    e = rng.standard_normal((4, 6))
    keep = rng.random((4, 6)) < 0.7
    keep[:, 2] = True
    shift = 50.0 * rng.standard_normal((4, 1))
    noise_on_masked = np.where(keep, 0.0, 1e3 * rng.standard_normal((4, 6)))   # masked scores don't matter
    a = reference.masked_softmax(e, keep)
    b = reference.masked_softmax(e + shift + noise_on_masked, keep)
    assert_close(b, a, "kernel_vs_reference", np.float64)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_masked_softmax_backward_gradcheck(masked, rng):
    e = rng.standard_normal((3, 5))
    mask = None
    if masked:
        mask = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])   # int mask: nonzero = keep
    dalpha = rng.standard_normal(e.shape)
    alpha = reference.masked_softmax(e, mask)
    de = reference.masked_softmax_backward(alpha, dalpha)
    numeric = numerical_gradient(lambda: np.sum(reference.masked_softmax(e, mask) * dalpha), e)
    assert_close(de, numeric, "gradcheck", np.float64, "de")
    if masked:
        np.testing.assert_array_equal(de[mask == 0], 0.0)
    with pytest.raises(AssertionError):                # the check can fail: a wrong sign is caught
        assert_close(-de, numeric, "gradcheck", np.float64, "de")


def test_masked_softmax_backward_float32(rng):
    e = rng.standard_normal((2, 4)).astype(np.float32)
    dalpha = rng.standard_normal((2, 4)).astype(np.float32)
    alpha = reference.masked_softmax(e)
    de = reference.masked_softmax_backward(alpha, dalpha)
    assert de.dtype == np.float32
    a64 = alpha.astype(np.float64)
    expected = a64 * (dalpha - (a64 * dalpha).sum(axis=-1, keepdims=True))
    assert_close(de, expected, "kernel_vs_reference", np.float32)


def test_masked_softmax_mask_broadcasting(rng):
    B, Tx = 3, 5
    e = rng.standard_normal((B, Tx))
    mask_bt = rng.random((B, Tx)) < 0.5
    mask_bt[:, 0] = True
    mask_t = np.array([True, False, True, True, False])
    assert_close(reference.masked_softmax(e, mask_bt), hand_masked_softmax(e, mask_bt),
                 "kernel_vs_reference", np.float64, "[B, Tx] mask")
    full_t = np.broadcast_to(mask_t, (B, Tx))
    assert_close(reference.masked_softmax(e, mask_t), hand_masked_softmax(e, full_t),
                 "kernel_vs_reference", np.float64, "[Tx] mask")
    e3 = rng.standard_normal((B, 2, Tx))                # e.g. [B, Ty, Tx] scores with a [B, 1, Tx] source mask
    mask_b1t = mask_bt[:, None, :]
    assert_close(reference.masked_softmax(e3, mask_b1t),
                 hand_masked_softmax(e3, np.broadcast_to(mask_b1t, e3.shape)),
                 "kernel_vs_reference", np.float64, "[B, 1, Tx] mask")
