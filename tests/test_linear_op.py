"""The dense layer's ops (rnncore.ops.linear_forward / linear_backward, on rnncore's C++ GEMM) against their NumPy
twins over hypothesis-drawn shapes (N = 0 and 1, I = 1, O = 1 included), both dtypes, with and without bias, with and
without dx, accumulating into non-zero gradients; a float64 central-difference check; the same bits on 1 and 2
threads on each GEMM path; and the argument checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnncore
from rnncore import _core, ops, reference

from support.arrays import DTYPE_IDS, DTYPES
from support.tolerances import assert_identical, tol

TILE = bool(_core._tuning_table()["tile_available"])


def assert_twins(got, want, dtype, name):
    assert got.dtype == want.dtype == np.dtype(dtype), name
    np.testing.assert_allclose(got, want, err_msg=name, **tol("kernel_vs_reference", dtype))


def operands(rng, N, I, O, dtype, bias=True):
    """x [N, I], weight [O, I], bias [O] (or None), dy [N, O]."""
    x, w, b, dy = (rng.standard_normal(shape).astype(dtype) for shape in ((N, I), (O, I), (O,), (N, O)))
    return x, w, (b if bias else None), dy


@given(N=st.sampled_from([0, 1, 2, 7, 16, 33, 50]), I=st.integers(1, 40), O=st.integers(1, 40),
       bias=st.booleans(), need_dx=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_linear_matches_reference(dtype, N, I, O, bias, need_dx, seed):
    rng = np.random.default_rng(seed)
    x, w, b, dy = operands(rng, N, I, O, dtype, bias)
    y = ops.linear_forward(x, w, b)
    assert y.shape == (N, O)
    assert_twins(y, reference.linear_forward(x, w, b), dtype, "y")

    dw0 = rng.standard_normal((O, I)).astype(dtype)  # accumulated into: the old gradient stays
    db0 = rng.standard_normal(O).astype(dtype) if bias else None
    dw, db = dw0.copy(), None if db0 is None else db0.copy()
    dx = ops.linear_backward(x, w, dy, dw, db, need_dx=need_dx)
    dw_want, db_want = dw0.copy(), None if db0 is None else db0.copy()
    dx_want = reference.linear_backward(x, w, dy, dw_want, db_want, need_dx=need_dx)
    assert_twins(dw, dw_want, dtype, "dweight")
    if bias:
        assert_twins(db, db_want, dtype, "dbias")
    if need_dx:
        assert dx.shape == (N, I)
        assert_twins(dx, dx_want, dtype, "dx")
    else:
        assert dx is None and dx_want is None


def test_linear_gradients_match_central_differences(rng):
    N, I, O, eps = 4, 5, 3, 1e-6
    x, w, b, _ = operands(rng, N, I, O, np.float64)
    G = rng.standard_normal((N, O))  # L = Σ G ⊙ y, so dL/dy = G

    def loss(x_, w_, b_):
        return float(np.sum(G * ops.linear_forward(x_, w_, b_)))

    dw, db = np.zeros((O, I)), np.zeros(O)
    dx = ops.linear_backward(x, w, G, dw, db)
    for name, value, analytic in (("x", x, dx), ("weight", w, dw), ("bias", b, db)):
        numeric = np.zeros_like(value)
        for k in np.ndindex(value.shape):
            saved = value[k]
            value[k] = saved + eps
            up = loss(x, w, b)
            value[k] = saved - eps
            down = loss(x, w, b)
            value[k] = saved
            numeric[k] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, err_msg=name, **tol("gradcheck", np.float64))


# Sizes whose products split across 2 threads (>= 2 x 4 MFLOP each): by 48-row strips, by 48-column strips (few
# rows, wide output; with 16-column strips the 20-row case differed in the last bits on an AVX2 build), and a
# one-column output (O = 1: Eigen's matrix-vector product on each strip).
SPLIT_SIZES = [(700, 130, 150), (60, 1000, 200), (20, 2000, 1000), (1700, 2400, 1)]


@pytest.fixture
def knobs_reset():
    _core._tuning_reset()
    yield
    _core._tuning_reset()


@pytest.mark.parametrize("tile", [0, 1], ids=["eigen", "tile"])
@pytest.mark.parametrize("N,I,O", SPLIT_SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_linear_bits_do_not_depend_on_threads(dtype, N, I, O, tile, knobs_reset):
    if tile and not (TILE and dtype == np.float32):
        pytest.skip("the tile GEMM runs float products on AVX-512-class builds only")
    if not _core.has_openmp():
        pytest.skip("built without OpenMP: one thread only")
    x, w, b, dy = operands(np.random.default_rng(7), N, I, O, dtype)
    _core._tuning_set("parallel", 1)  # every call gets set_num_threads's threads, however small
    _core._tuning_set("tile_gemm", tile)
    before = rnncore.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            rnncore.set_num_threads(threads)
            dw, db = np.ones((O, I), dtype), np.ones(O, dtype)
            dx = ops.linear_backward(x, w, dy, dw, db)
            results[threads] = dict(y=ops.linear_forward(x, w, b), dweight=dw, dbias=db, dx=dx)
    finally:
        rnncore.set_num_threads(before)
    counts = _core._tuning_counts()
    assert counts["gemm_tile" if tile else "gemm_eigen"] > 0 and counts["gemm_eigen" if tile else "gemm_tile"] == 0
    for name, value in results[2].items():
        assert_identical(value, results[1][name], name, "2 threads vs 1")
    want = reference.linear_forward(x, w, b)
    np.testing.assert_allclose(results[1]["y"], want, err_msg="y", **tol("long_sums", dtype))


def test_linear_empty_and_degenerate_sizes():
    x = np.zeros((0, 3), np.float32)
    w = np.ones((2, 3), np.float32)
    b = np.array([1.0, 2.0], np.float32)
    assert ops.linear_forward(x, w, b).shape == (0, 2)
    dw, db = np.full((2, 3), 5.0, np.float32), np.full(2, 5.0, np.float32)
    dx = ops.linear_backward(x, w, np.zeros((0, 2), np.float32), dw, db)
    assert dx.shape == (0, 3) and (dw == 5).all() and (db == 5).all()
    # I = 0: y is the bias
    np.testing.assert_array_equal(ops.linear_forward(np.zeros((2, 0)), np.zeros((2, 0)), np.array([1.0, 2.0])),
                                  [[1.0, 2.0], [1.0, 2.0]])


def test_linear_checked_variants_are_the_same_calls():
    x, w, b, dy = operands(np.random.default_rng(3), 5, 4, 3, np.float32)
    np.testing.assert_array_equal(ops.nn.linear_forward_checked(x, w, b), ops.linear_forward(x, w, b))
    dw1, dw2 = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32)
    dx1 = ops.nn.linear_backward_checked(x, w, dy, dw1, None, True)
    dx2 = ops.linear_backward(x, w, dy, dw2)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dw1, dw2)


F64 = np.float64
X, W, B, DY = np.ones((4, 3)), np.ones((2, 3)), np.ones(2), np.ones((4, 2))


def read_only(shape):
    a = np.zeros(shape)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.linear_forward(list(X), W), TypeError, r"x must be a numpy\.ndarray"),
    (lambda: ops.linear_forward(X.astype(int), W), TypeError, r"x must have dtype float32 or float64"),
    (lambda: ops.linear_forward(X[0], W), ValueError, r"x must have shape \[N, I\]"),
    (lambda: ops.linear_forward(X, W.astype(np.float32)), TypeError, r"weight has dtype float32, expected float64"),
    (lambda: ops.linear_forward(X, W[:, :2]), ValueError, r"weight must have shape \[O, I\] = \(\?, 3\)"),
    (lambda: ops.linear_forward(X, W, np.ones(3)), ValueError, r"bias must have shape \[O\] = \(2,\)"),
    (lambda: ops.linear_forward(X, W, B.astype(np.float32)), TypeError, r"bias has dtype float32"),
])
def test_linear_forward_checks_its_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("call,exc,match", [
    (lambda dw, db: ops.linear_backward(X, W, DY[:, :1], dw, db), ValueError, r"dy must have shape \[N, O\]"),
    (lambda dw, db: ops.linear_backward(X, W, DY.astype(np.float32), dw, db), TypeError, r"dy has dtype float32"),
    (lambda dw, db: ops.linear_backward(X, W, DY, list(dw), db), TypeError, r"dweight must be a numpy\.ndarray"),
    (lambda dw, db: ops.linear_backward(X, W, DY, dw.astype(np.float32), db), TypeError,
     r"dweight has dtype float32, expected float64"),
    (lambda dw, db: ops.linear_backward(X, W, DY, np.zeros((3, 2)).T, db), ValueError,
     r"dweight must be C-contiguous, writeable"),
    (lambda dw, db: ops.linear_backward(X, W, DY, read_only((2, 3)), db), ValueError,
     r"dweight must be C-contiguous, writeable"),
    (lambda dw, db: ops.linear_backward(X, W, DY, np.zeros((3, 3)), db), ValueError,
     r"dweight must have shape \[O, I\] = \(2, 3\)"),
    (lambda dw, db: ops.linear_backward(X, W, DY, dw, np.zeros(3)), ValueError, r"dbias must have shape \[O\]"),
    (lambda dw, db: ops.linear_backward(X, W, DY, dw, read_only(2)), ValueError,
     r"dbias must be C-contiguous, writeable"),
    (lambda dw, db: ops.linear_backward(X, W, DY, dw, db.astype(int)), TypeError,
     r"dbias must have dtype float32 or float64"),
    (lambda dw, db: ops.linear_backward(X, W, DY, dw, db, need_dx="yes"), TypeError, r"need_dx must be a bool"),
])
def test_linear_backward_checks_its_arguments(call, exc, match):
    dw, db = np.zeros((2, 3)), np.zeros(2)
    with pytest.raises(exc, match=match):
        call(dw, db)
    assert not dw.any() and not db.any(), "a rejected call adds nothing"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("accumulator,operand", [
    ("dweight", "x"), ("dweight", "weight"), ("dweight", "dy"), ("dbias", "dy"), ("dbias", "x"), ("dbias", "dweight"),
])
def test_linear_backward_rejects_gradients_sharing_memory_with_its_operands(dtype, accumulator, operand):
    """dweight / dbias are written in place while x, weight and dy are read (and dbias before dweight's product):
    an accumulator that shares memory with another argument silently gave wrong gradients (dweight is x: off by
    ~1; dweight is weight: dx from the updated weight), so it is rejected before anything changes."""
    N = I = O = 6
    rng = np.random.default_rng(11)
    args = dict(zip(("x", "weight", "bias", "dy"), operands(rng, N, I, O, dtype)))
    args["dweight"], args["dbias"] = np.zeros((O, I), dtype), np.zeros(O, dtype)
    if accumulator == "dweight":
        args["dweight"] = args[operand]
    else:  # a row of a [6, 6] operand has dbias's shape [O]
        args["dbias"] = args[operand][2]
    before = {name: a.copy() for name, a in args.items() if a is not None}
    with pytest.raises(ValueError, match=rf"{accumulator} must not share memory with {operand} \(it is added into in "
                                         r"place while the others are read\)"):
        ops.linear_backward(args["x"], args["weight"], args["dy"], args["dweight"], args["dbias"])
    for name, a in before.items():
        np.testing.assert_array_equal(args[name], a, err_msg=f"{name} changed by a rejected call")
