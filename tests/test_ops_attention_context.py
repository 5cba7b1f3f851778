"""rnncore.ops.attention_context and attention_context_backward (the fused masked softmax + context, issue 13):
against their NumPy twins over hypothesis-drawn shapes (B = 1, Ty = 1, Tx = 1, Dv = 1 included, lengths with zeros,
masks, both forms of e), float64 central differences for de and dvalues, then the edge cases (fully masked rows,
NaN-padded values, masked_softmax's bits), row and thread-count invariance, and every argument rule."""

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnncore as rc
from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES, at_offset, numerical_gradient
from support.threads import team
from support.tolerances import assert_close, assert_identical


def twin_check(got, want, dtype, name):
    """An op's array against its twin's: same dtype and shape, equal within the table's tolerance."""
    assert got.dtype == np.dtype(dtype), name
    assert got.shape == want.shape, name
    assert_close(got, want, "kernel_vs_reference", dtype, name)


def make_case(rng, B, Ty, Tx, Dv, dtype, lengths_kind, mask_kind, scale=1.0):
    """Scores (e [B, Tx] when Ty is None, else [B, Ty, Tx]), values, lengths and mask as the case asks."""
    shape = (B, Tx) if Ty is None else (B, Ty, Tx)
    e = (rng.standard_normal(shape) * scale).astype(dtype)
    values = rng.standard_normal((B, Tx, Dv)).astype(dtype)
    lengths = None
    if lengths_kind == "lengths":
        lengths = rng.integers(0, Tx + 1, size=B)
        lengths[0] = Tx
        if B > 1:
            lengths[1] = 0
    mask = None
    if mask_kind == "full":
        mask = rng.random(shape) < 0.7
    elif mask_kind == "last_axis":
        mask = rng.random(Tx) < 0.7
    elif mask_kind == "int":
        mask = rng.integers(-2, 3, shape)
    return e, values, lengths, mask


def kept_of(e, lengths, mask):
    """The entries the op keeps: t < lengths[b] and mask (broadcast), of e's shape."""
    B, Tx = e.shape[0], e.shape[-1]
    keep = np.ones((B, Tx), bool) if lengths is None else np.arange(Tx)[None, :] < np.asarray(lengths)[:, None]
    keep = np.broadcast_to(keep if e.ndim == 2 else keep[:, None, :], e.shape)
    return keep if mask is None else keep & (np.broadcast_to(np.asarray(mask), e.shape) != 0)


# ---- against the twins -----------------------------------------------------------------------------------------------

@st.composite
def context_cases(draw):
    B, Tx, Dv = draw(st.integers(1, 5)), draw(st.integers(1, 12)), draw(st.integers(1, 20))
    Ty = draw(st.sampled_from([None, 1, 3]))  # None: e [B, Tx]
    dtype = draw(st.sampled_from(DTYPES))
    lengths_kind = draw(st.sampled_from(["none", "lengths"]))
    mask_kind = draw(st.sampled_from(["none", "full", "last_axis", "int"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    case = make_case(rng, B, Ty, Tx, Dv, dtype, lengths_kind, mask_kind, draw(st.sampled_from([1.0, 6.0])))
    rows = (B,) if Ty is None else (B, Ty)
    dcontext = rng.standard_normal(rows + (Dv,)).astype(dtype)
    dalpha = rng.standard_normal(rows + (Tx,)).astype(dtype) if draw(st.booleans()) else None
    return case, dcontext, dalpha


@given(case=context_cases())
def test_matches_reference(case):
    (e, values, lengths, mask), dcontext, dalpha = case
    dtype = e.dtype
    context, alpha = ops.attention_context(e, values, lengths, mask)
    want_context, want_alpha = reference.attention_context(e, values, lengths, mask)
    twin_check(alpha, want_alpha, dtype, "alpha")
    twin_check(context, want_context, dtype, "context")
    keep = kept_of(e, lengths, mask)
    assert (alpha[~keep] == 0).all(), "masked entries must be exactly 0"
    np.testing.assert_array_equal(alpha, ops.masked_softmax(e, keep), err_msg="masked_softmax's bits")

    de, dvalues = ops.attention_context_backward(alpha, values, dcontext, dalpha)
    want_de, want_dvalues = reference.attention_context_backward(alpha, values, dcontext, dalpha)
    twin_check(de, want_de, dtype, "de")
    twin_check(dvalues, want_dvalues, dtype, "dvalues")
    assert (de[~keep] == 0).all(), "masked entries must get exactly zero gradient"


@pytest.mark.parametrize("Ty", [None, 2], ids=["e_BTx", "e_BTyTx"])
@pytest.mark.parametrize("mask_kind", ["none", "full"])
@pytest.mark.parametrize("B,Tx,Dv", [(1, 1, 1), (3, 5, 4), (2, 7, 9)])
def test_gradcheck(B, Tx, Dv, mask_kind, Ty):
    """de and dvalues against float64 central differences of L = Σ w_c ⊙ context + Σ w_a ⊙ α."""
    rng = np.random.default_rng(B * 100 + Tx * 10 + Dv)
    e, values, lengths, mask = make_case(rng, B, Ty, Tx, Dv, np.float64, "lengths", mask_kind)
    if Tx > 1 and lengths is not None:
        lengths[0] = Tx - 1  # a row that ends before Tx, next to the full one the case already has
    context, alpha = ops.attention_context(e, values, lengths, mask)
    w_c, w_a = rng.standard_normal(context.shape), rng.standard_normal(alpha.shape)

    def loss():
        c, a = ops.attention_context(e, values, lengths, mask)
        return float(np.sum(w_c * c) + np.sum(w_a * a))

    de, dvalues = ops.attention_context_backward(alpha, values, w_c, w_a)
    assert_close(de, numerical_gradient(loss, e), "gradcheck", np.float64, "de")
    assert_close(dvalues, numerical_gradient(loss, values), "gradcheck", np.float64, "dvalues")


# ---- edge cases ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fully_masked_rows_give_zeros_never_nan(dtype):
    rng = np.random.default_rng(1)
    e = rng.standard_normal((4, 6)).astype(dtype)
    values = rng.standard_normal((4, 6, 5)).astype(dtype)
    lengths = np.array([6, 0, 3, 2])
    mask = np.ones((4, 6), bool)
    mask[3] = False  # row 3 masked by the mask, row 1 by its length
    e[1] = [np.nan, np.inf, -np.inf, 1e30, 0, 1]
    values[1] = np.nan  # a NaN-padded sample that attends to nothing
    dcontext = rng.standard_normal((4, 5)).astype(dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        context, alpha = ops.attention_context(e, values, lengths, mask)
        de, dvalues = ops.attention_context_backward(alpha, values, dcontext)
    for row in (1, 3):
        np.testing.assert_array_equal(alpha[row], np.zeros(6, dtype))
        np.testing.assert_array_equal(context[row], np.zeros(5, dtype))
        np.testing.assert_array_equal(de[row], np.zeros(6, dtype))
        np.testing.assert_array_equal(dvalues[row], np.zeros((6, 5), dtype))
    assert np.isfinite(context).all() and np.isfinite(de).all() and np.isfinite(dvalues).all()


@pytest.mark.parametrize("Ty", [None, 3], ids=["e_BTx", "e_BTyTx"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_masked_values_are_never_read(dtype, Ty):
    """Values at masked steps (past a length, or masked out) may hold anything: the results do not change."""
    rng = np.random.default_rng(2)
    e, values, lengths, mask = make_case(rng, 4, Ty, 9, 6, dtype, "lengths", "full")
    keep_steps = kept_of(e, lengths, mask).reshape(4, -1, 9).any(axis=1)  # [B, Tx]: steps any row keeps
    dcontext = rng.standard_normal((4, 6) if Ty is None else (4, Ty, 6)).astype(dtype)
    context, alpha = ops.attention_context(e, values, lengths, mask)
    de, dvalues = ops.attention_context_backward(alpha, values, dcontext)
    wild = values.copy()
    junk = np.array([np.nan, np.inf, -np.inf, 1e30], dtype)
    wild[~keep_steps] = junk[rng.integers(0, 4, (~keep_steps).sum())][:, None]
    wild_context, wild_alpha = ops.attention_context(e, wild, lengths, mask)
    wild_de, wild_dvalues = ops.attention_context_backward(wild_alpha, wild, dcontext)
    for name, got, want in [("context", wild_context, context), ("alpha", wild_alpha, alpha), ("de", wild_de, de),
                            ("dvalues", wild_dvalues, dvalues)]:
        assert_identical(got, want, name)
    assert (dvalues[~keep_steps] == 0).all() and not np.signbit(dvalues[~keep_steps]).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_one_kept_step_copies_its_value(dtype):
    rng = np.random.default_rng(3)
    e = rng.standard_normal((3, 5)).astype(dtype)
    values = rng.standard_normal((3, 5, 4)).astype(dtype)
    context, alpha = ops.attention_context(e, values, lengths=[1, 1, 1])
    np.testing.assert_array_equal(alpha, np.eye(5, dtype=dtype)[[0, 0, 0]])
    np.testing.assert_array_equal(context, values[:, 0])
    de, _ = ops.attention_context_backward(alpha, values, rng.standard_normal((3, 4)).astype(dtype))
    np.testing.assert_array_equal(de, np.zeros_like(de))  # α = 1 whatever e: no gradient


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_steps_form_equals_one_row_per_call(dtype):
    """e [B, Ty, Tx]: each row y of sample b is the [B, Tx] form's row over values[b]; dvalues sums over y."""
    rng = np.random.default_rng(4)
    e, values, lengths, mask = make_case(rng, 3, 4, 7, 5, dtype, "lengths", "full")
    dcontext = rng.standard_normal((3, 4, 5)).astype(dtype)
    context, alpha = ops.attention_context(e, values, lengths, mask)
    de, dvalues = ops.attention_context_backward(alpha, values, dcontext)
    assert context.shape == (3, 4, 5) and alpha.shape == (3, 4, 7) and de.shape == (3, 4, 7)
    total = np.zeros((3, 7, 5), np.float64)
    for y in range(4):
        e_y, mask_y = np.ascontiguousarray(e[:, y]), np.ascontiguousarray(mask[:, y])
        c_y, a_y = ops.attention_context(e_y, values, lengths, mask_y)
        assert_identical(a_y, alpha[:, y], "alpha", f"y={y}")
        assert_identical(c_y, context[:, y], "context", f"y={y}")
        de_y, dv_y = ops.attention_context_backward(a_y, values, np.ascontiguousarray(dcontext[:, y]))
        assert_identical(de_y, de[:, y], "de", f"y={y}")
        total += dv_y
    assert_close(dvalues, total, "kernel_vs_reference", dtype, "dvalues = Σ_y")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_score_in_a_kept_entry_propagates_to_its_row_only(dtype):
    rng = np.random.default_rng(5)
    e, values, _, _ = make_case(rng, 3, None, 6, 4, dtype, "none", "none")
    clean_context, clean_alpha = ops.attention_context(e, values)
    e[1, 2] = np.nan
    context, alpha = ops.attention_context(e, values)
    assert np.isnan(alpha[1]).all() and np.isnan(context[1]).all()
    assert_identical(alpha[[0, 2]], clean_alpha[[0, 2]], "alpha")
    assert_identical(context[[0, 2]], clean_context[[0, 2]], "context")


# ---- invariance: rows, addresses, threads ----------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("Ty", [None, 2], ids=["e_BTx", "e_BTyTx"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_a_row_gets_the_same_bits_alone_at_any_address_on_any_thread_count(dtype, Ty, threads):
    rng = np.random.default_rng(6)
    B, Tx, Dv = 16, 37, 70  # Tx, Dv: odd sizes, so every packet width and a scalar tail run
    e, values, lengths, mask = make_case(rng, B, Ty, Tx, Dv, dtype, "lengths", "full")
    dcontext = rng.standard_normal((B, Dv) if Ty is None else (B, Ty, Dv)).astype(dtype)
    with team(threads):
        context, alpha = ops.attention_context(e, values, lengths, mask)
        de, dvalues = ops.attention_context_backward(alpha, values, dcontext)
    with team(1):
        for b in (0, 5, B - 1):
            one = slice(b, b + 1)
            args = [at_offset(np.ascontiguousarray(a[one]), 1 + b % 3) for a in (e, values, mask)]
            c_b, a_b = ops.attention_context(args[0], args[1], lengths[one], args[2])
            de_b, dv_b = ops.attention_context_backward(at_offset(a_b, 3), at_offset(args[1], 2),
                                                        at_offset(np.ascontiguousarray(dcontext[one]), 1))
            for name, got, want in [("alpha", a_b, alpha), ("context", c_b, context), ("de", de_b, de),
                                    ("dvalues", dv_b, dvalues)]:
                assert_identical(got, want[one], name, f"row {b}, {threads} thread(s)")


# ---- argument rules --------------------------------------------------------------------------------------------------

E = np.zeros((2, 3), np.float32)
V = np.zeros((2, 3, 4), np.float32)
C = np.zeros((2, 4), np.float32)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.attention_context([[0.0] * 3] * 2, V), TypeError, r"e must be a numpy\.ndarray"),
    (lambda: ops.attention_context(E.astype(np.int32), V), TypeError, r"e must have dtype float32 or float64"),
    (lambda: ops.attention_context(np.zeros(3, np.float32), V), ValueError,
     r"e must have shape \[B, Tx\] or \[B, Ty, Tx\], got shape \(3,\)"),
    (lambda: ops.attention_context(np.zeros((2, 1, 1, 3), np.float32), V), ValueError, r"e must have shape"),
    (lambda: ops.attention_context(np.zeros((2, 0), np.float32), V), ValueError, r"e must have every axis >= 1"),
    (lambda: ops.attention_context(E, V.astype(np.float64)), TypeError, r"values has dtype float64, expected float32"),
    (lambda: ops.attention_context(E, V[:, :2]), ValueError,
     r"values must have shape \[B, Tx, Dv\] = \(2, 3, \?\), got shape \(2, 2, 4\)"),
    (lambda: ops.attention_context(E, V[:1]), ValueError, r"values must have shape"),
    (lambda: ops.attention_context(E, np.zeros((2, 3, 0), np.float32)), ValueError,
     r"values must have every axis >= 1"),
    (lambda: ops.attention_context(E, V, lengths=[1, 4]), ValueError, r"lengths must lie in 0\.\.Tx = 0\.\.3"),
    (lambda: ops.attention_context(E, V, lengths=[1]), ValueError, r"lengths must have shape \[B\] = \(2,\)"),
    (lambda: ops.attention_context(E, V, lengths=[1.0, 2.0]), TypeError, r"lengths must hold integers"),
    (lambda: ops.attention_context(E, V, mask=np.ones((2, 3), np.float32)), TypeError,
     r"mask must be boolean or integer"),
    (lambda: ops.attention_context(E, V, mask=np.ones(4, bool)), ValueError, r"mask must be broadcastable"),
    (lambda: ops.attention_context_backward(E, V, C.astype(np.float64)), TypeError,
     r"dcontext has dtype float64, expected float32"),
    (lambda: ops.attention_context_backward(E, V, np.zeros((2, 5), np.float32)), ValueError,
     r"dcontext must have shape \[B, Dv\] = \(2, 4\), got shape \(2, 5\)"),
    (lambda: ops.attention_context_backward(E[:, None], V, C), ValueError,
     r"dcontext must have shape \[B, Ty, Dv\] = \(2, 1, 4\), got shape \(2, 4\)"),
    (lambda: ops.attention_context_backward(E, V, C, np.zeros((2, 4), np.float32)), ValueError,
     r"dalpha must have shape \[B, Tx\] = \(2, 3\)"),
    (lambda: ops.attention_context_backward(E, V, C, list(E)), TypeError, r"dalpha must be a numpy\.ndarray"),
    (lambda: ops.attention_context_backward(np.zeros(3, np.float32), V, C), ValueError, r"alpha must have shape"),
    (lambda: ops.attention_context_backward(E, V[:, :, :2], C), ValueError, r"dcontext must have shape"),
    (lambda: ops.attention_context_backward(E, V.astype(np.float64), C), TypeError, r"values has dtype float64"),
])
def test_arguments_are_checked_before_any_kernel_runs(call, exc, match, monkeypatch):
    class Tripwire:
        def __getattr__(self, name):
            raise AssertionError(f"rnncore._core.{name} was reached: validation must reject the input first")
    monkeypatch.setattr(rc.ops.attention, "_core", Tripwire())
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_and_broadcast_inputs_give_the_same_results(dtype):
    rng = np.random.default_rng(7)
    e, values, lengths, mask = make_case(rng, 3, None, 5, 4, dtype, "lengths", "full")
    want = ops.attention_context(e, values, lengths, mask)
    e_t = np.asfortranarray(e)
    values_view = np.ascontiguousarray(np.concatenate([values, values], axis=2))[:, :, :4]
    got = ops.attention_context(e_t, values_view, list(lengths), mask.astype(np.int8))
    for g, w, name in zip(got, want, ("context", "alpha")):
        assert_identical(g, w, name)
    row_mask = np.array([[True], [False], [True]])
    assert_identical(ops.attention_context(e, values, mask=row_mask)[1],
                     ops.attention_context(e, values, mask=np.broadcast_to(row_mask, e.shape).copy())[1], "alpha")


def test_inputs_are_never_modified():
    rng = np.random.default_rng(8)
    e, values, lengths, mask = make_case(rng, 3, 2, 5, 4, np.float32, "lengths", "full")
    dcontext = rng.standard_normal((3, 2, 4)).astype(np.float32)
    copies = [a.copy() for a in (e, values, lengths, mask, dcontext)]
    _, alpha = ops.attention_context(e, values, lengths, mask)
    alpha_copy = alpha.copy()
    ops.attention_context_backward(alpha, values, dcontext)
    for a, c in zip((e, values, lengths, mask, dcontext, alpha), copies + [alpha_copy]):
        np.testing.assert_array_equal(a, c)
