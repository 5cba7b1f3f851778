"""rnncore.nn.Linear and rnncore.nn.Embedding: forward, backward (against central differences and, for the
embedding's scatter-add kernel, against np.add.at), padding_idx, repeated indices, bad input, dtypes, state dicts."""

import numpy as np
import pytest

from rnncore import _core
from rnncore.nn import Embedding, Linear

from support.arrays import DTYPES, numerical_gradient
from support.tolerances import assert_close


# ---- Linear ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", [(), (4,), (3, 2)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_matches_numpy(dtype, lead, bias, rng):
    lin = Linear(5, 3, bias=bias, dtype=dtype, seed=1)
    x = rng.standard_normal(lead + (5,)).astype(dtype)
    y = lin(x)
    assert y.shape == lead + (3,) and y.dtype == dtype
    p = {k: v.astype(np.float64) for k, v in lin.parameters().items()}
    want = x.astype(np.float64) @ p["weight"].T + (p["bias"] if bias else 0.0)
    assert_close(y, want, "kernel_vs_reference", dtype, "y")


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_gradcheck(bias, rng):
    lin = Linear(4, 3, bias=bias, dtype=np.float64, seed=2)
    x = rng.standard_normal((2, 3, 4))
    up = rng.standard_normal((2, 3, 3))

    def f():
        return float(np.sum(lin(x) * up))

    lin(x)
    dx = lin.backward(up)
    grads = lin.gradients()
    assert_close(dx, numerical_gradient(f, x), "gradcheck", np.float64, "dx")
    for name, p in lin.parameters().items():
        assert_close(grads[name], numerical_gradient(f, p), "gradcheck", np.float64, f"d{name}")


def test_linear_gradients_accumulate_and_zero(rng):
    lin = Linear(3, 2, dtype=np.float64, seed=0)
    x, up = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    lin(x)
    lin.backward(up)
    once = {k: g.copy() for k, g in lin.gradients().items()}
    lin(x)
    lin.backward(up)
    for k, g in lin.gradients().items():
        assert_close(g, 2 * once[k], "kernel_vs_reference", np.float64, k)
    lin.zero_grad()
    assert all(not g.any() for g in lin.gradients().values())


def test_linear_init_like_torch():
    lin = Linear(100, 300, seed=0)
    p = lin.parameters()
    assert p["weight"].shape == (300, 100) and p["bias"].shape == (300,)
    bound = 1 / np.sqrt(100)
    for a in p.values():
        assert a.dtype == np.float32 and np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    assert np.array_equal(Linear(100, 300, seed=0).parameters()["weight"], p["weight"])  # seeded
    assert "bias" not in Linear(3, 2, bias=False).parameters()


def test_linear_state_dict_round_trip_and_errors():
    a, b = Linear(3, 2, seed=0), Linear(3, 2, seed=1)
    b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(b.parameters()[k], v)
    sd = a.state_dict()
    sd["weight"][...] = 7  # a copy: the module is untouched
    assert not (a.parameters()["weight"] == 7).any()
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"weight": sd["weight"]})
    with pytest.raises(ValueError, match="weight"):
        b.load_state_dict({"weight": np.zeros((2, 4)), "bias": sd["bias"]})
    assert Linear(**a.get_config()).parameters()["weight"].tolist() == a.parameters()["weight"].tolist()


def test_linear_bad_input():
    lin = Linear(3, 2)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., in_features\]"):
        lin(np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match="float64.*float32"):
        lin(np.zeros((4, 3), np.float64))
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        lin([[1.0, 2.0, 3.0]])
    with pytest.raises(RuntimeError, match="training-mode forward"):
        lin.backward(np.zeros((4, 2), np.float32))
    lin(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="dy"):
        lin.backward(np.zeros((4, 3), np.float32))
    lin.backward(np.zeros((4, 2), np.float32))  # the rejected dy did not use up the forward
    lin.eval()
    lin(np.zeros((4, 3), np.float32))
    with pytest.raises(RuntimeError):
        lin.backward(np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        Linear(3, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 2)


def test_linear_strided_input(rng):
    lin = Linear(3, 2, dtype=np.float64, seed=0)
    x = rng.standard_normal((3, 6))[:, ::2]
    assert_close(lin(x), lin(np.ascontiguousarray(x)), "kernel_vs_reference", np.float64, "y")


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_linear_keeps_a_private_copy_of_x(strided, rng):
    """The caller reuses its input buffer before backward (easy with a tape of calls): the gradients are those of
    the x given to the call (Linear used to keep a reference, so the weight gradient silently used the new values)."""
    buffer = rng.standard_normal((4, 6 if strided else 3))
    x = buffer[:, ::2] if strided else buffer
    expected_x = x.copy()
    dy = rng.standard_normal((4, 2))
    lin = Linear(3, 2, dtype=np.float64, seed=0)
    lin(x)
    buffer[...] = 7.0  # the caller's next batch lands in the same buffer
    dx = lin.backward(dy)
    assert_close(lin.gradients()["weight"], dy.T @ expected_x, "kernel_vs_reference", np.float64, "dweight")
    assert_close(lin.gradients()["bias"], dy.sum(0), "kernel_vs_reference", np.float64, "dbias")
    assert_close(dx, dy @ lin.weight, "kernel_vs_reference", np.float64, "dx")


# ---- Embedding -------------------------------------------------------------------------------------------------
def reference_grad(weight_shape, indices, dy, padding_idx):
    """The scatter-add with np.add.at (test only), the padding row zeroed."""
    g = np.zeros(weight_shape, np.float64)
    np.add.at(g, indices.reshape(-1), dy.reshape(-1, weight_shape[1]).astype(np.float64))
    if padding_idx is not None:
        g[padding_idx] = 0
    return g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 5)], ids=["0d", "1d", "2d", "3d"])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_forward_backward(dtype, shape, padding_idx, rng):
    emb = Embedding(6, 4, padding_idx=padding_idx, dtype=dtype, seed=0)
    idx = rng.integers(0, 6, size=shape)
    y = emb(idx)
    assert y.shape == shape + (4,) and y.dtype == dtype
    np.testing.assert_array_equal(y, emb.parameters()["weight"][idx])
    dy = rng.standard_normal(shape + (4,)).astype(dtype)
    assert emb.backward(dy) is None
    want = reference_grad((6, 4), np.asarray(idx), dy, padding_idx)
    assert_close(emb.gradients()["weight"], want, "kernel_vs_reference", dtype, "dweight")


def test_embedding_duplicate_indices_accumulate_and_deterministic(rng):
    emb = Embedding(3, 5, dtype=np.float32, seed=0)
    idx = rng.integers(0, 3, size=(64, 50))  # every row repeated ~1000 times
    dy = rng.standard_normal((64, 50, 5)).astype(np.float32)
    emb(idx)
    emb.backward(dy)
    first = emb.gradients()["weight"].copy()
    assert_close(first, reference_grad((3, 5), idx, dy, None), "kernel_vs_reference", np.float32, "dweight")
    for _ in range(3):  # the same bits every time (fixed summation order)
        emb.zero_grad()
        emb(idx)
        emb.backward(dy)
        np.testing.assert_array_equal(emb.gradients()["weight"], first)
    emb(idx)
    emb.backward(dy)  # accumulates
    assert_close(emb.gradients()["weight"], 2 * first, "kernel_vs_reference", np.float32, "accumulated")


def test_embedding_gradcheck(rng):
    emb = Embedding(5, 3, padding_idx=1, dtype=np.float64, seed=0)
    idx = np.array([[0, 1, 4], [4, 4, 1]])
    up = rng.standard_normal((2, 3, 3))
    w = emb.parameters()["weight"]

    def f():
        return float(np.sum(emb(idx) * up))

    numeric = numerical_gradient(f, w)
    numeric[1] = 0  # torch's rule: the padding row gets no gradient even though it is read
    emb(idx)
    emb.backward(up)
    assert_close(emb.gradients()["weight"], numeric, "gradcheck", np.float64, "dweight")


def test_embedding_padding_idx():
    emb = Embedding(5, 3, padding_idx=-1, seed=0)  # negative counts from the end, as in torch
    assert emb.padding_idx == 4
    w = emb.parameters()["weight"]
    assert not w[4].any() and w[:4].all()
    np.testing.assert_array_equal(emb(np.array([4, 4]))[0], 0)
    emb.backward(np.ones((2, 3), np.float32))
    assert not emb.gradients()["weight"].any()
    for bad in (5, -6):
        with pytest.raises(ValueError, match="padding_idx"):
            Embedding(5, 3, padding_idx=bad)
    with pytest.raises(TypeError, match="padding_idx"):
        Embedding(5, 3, padding_idx=1.0)


def test_embedding_init_like_torch():
    w = Embedding(200, 50, seed=0).parameters()["weight"]
    assert w.dtype == np.float32 and w.shape == (200, 50)
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.int64, np.uint64])
def test_embedding_integer_dtypes(dtype):
    emb = Embedding(10, 2, seed=0)
    idx = np.array([[0, 9], [3, 3]], dtype=dtype)
    np.testing.assert_array_equal(emb(idx), emb.parameters()["weight"][idx.astype(np.int64)])
    np.testing.assert_array_equal(emb([0, 9]), emb.parameters()["weight"][[0, 9]])  # a list of ints works too


def test_embedding_bad_indices():
    emb = Embedding(10, 2)
    with pytest.raises(TypeError, match="indices must hold integers, got dtype float"):
        emb(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="indices must hold integers, got dtype bool"):
        emb(np.array([True]))
    with pytest.raises(ValueError, match=r"indices must lie in 0\.\.num_embeddings-1 = 0\.\.9, got \[10\]"):
        emb(np.array([[1, 10]]))
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        emb(np.array([-1, 3]))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        emb.backward(np.zeros((2, 2), np.float32))
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match="dy"):
        emb.backward(np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match="dy has dtype float64"):
        emb.backward(np.zeros((2, 2), np.float64))
    emb.backward(np.zeros((2, 2), np.float32))


def test_embedding_saved_indices_are_private():
    emb = Embedding(4, 2, dtype=np.float64, seed=0)
    idx = np.array([0, 1], dtype=np.int64)
    emb(idx)
    idx[:] = 3  # the caller reuses its buffer before backward
    emb.backward(np.ones((2, 2)))
    np.testing.assert_array_equal(emb.gradients()["weight"][:, 0], [1, 1, 0, 0])


def test_embedding_empty_and_state_dict():
    emb = Embedding(4, 2, padding_idx=0, dtype=np.float64, seed=0)
    y = emb(np.zeros((0, 3), np.int64))
    assert y.shape == (0, 3, 2)
    emb.backward(np.zeros((0, 3, 2)))
    assert not emb.gradients()["weight"].any()
    other = Embedding(**emb.get_config())
    np.testing.assert_array_equal(other.parameters()["weight"], emb.parameters()["weight"])
    other.load_state_dict({"weight": np.ones((4, 2), np.float32)})
    assert other.parameters()["weight"].dtype == np.float64 and (other.parameters()["weight"] == 1).all()


def test_embedding_kernel_direct(rng):
    """The binding as the kernel's contract: indices [N] int64, dy [N, D], dweight [V, D] accumulated in place."""
    idx = np.array([2, 0, 2, 1], np.int64)
    dy = rng.standard_normal((4, 3))
    dw = np.ones((3, 3))
    _core.embedding_backward(idx, dy, 1, dw)
    want = np.ones((3, 3))
    want[2] += dy[0] + dy[2]
    want[0] += dy[1]
    assert_close(dw, want, "kernel_vs_reference", np.float64, "dweight")
    with pytest.raises(TypeError):  # noconvert: no silent cast of the gradient buffer
        _core.embedding_backward(idx, dy.astype(np.float32), -1, dw)


# ---- the module protocol on Linear and Embedding (issue 12) --------------------------------------------------------
def test_parameters_read_as_attributes_and_assign_only_in_place():
    lin, emb = Linear(3, 2, seed=0), Embedding(4, 2, seed=0)
    assert lin.weight is lin.parameters()["weight"] and lin.bias is lin.parameters()["bias"]
    assert emb.weight is emb.parameters()["weight"]
    assert Linear(3, 2, bias=False).bias is None
    with pytest.raises(TypeError, match=r"Embedding.weight is a parameter: assign in place"):
        emb.weight = np.zeros((4, 2), np.float32)
    lin.bias[...] = 3.0
    assert (lin(np.zeros((1, 3), np.float32)) == 3.0).all()


def test_linear_and_embedding_keep_a_tape(rng):
    """Two training-mode calls, then both backwards, last call first (issue 12, item 2: the second backward used to
    raise 'needs a training-mode forward first')."""
    lin = Linear(3, 2, dtype=np.float64, seed=0)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    lin(x1)
    lin(x2)
    g1, g2 = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    lin.backward(g2)
    lin.backward(g1)
    assert_close(lin.gradients()["weight"], g1.T @ x1 + g2.T @ x2, "kernel_vs_reference", np.float64, "dweight")
    emb = Embedding(4, 2, dtype=np.float64, seed=0)
    emb(np.array([0, 1]))
    emb(np.array([3]))
    emb.backward(np.ones((1, 2)))
    emb.backward(np.full((2, 2), 2.0))
    np.testing.assert_array_equal(emb.gradients()["weight"][:, 0], [2, 2, 0, 1])


@pytest.mark.parametrize("replace", ["weight-columns", "weight-rows-and-columns", "bias", "weight-dtype"])
def test_linear_refuses_a_parameter_replaced_by_one_of_another_shape(replace, rng):
    """register_parameter may replace a parameter (as in torch), but rnncore's GEMM trusts Linear's shapes: a weight
    [3, 2] on Linear(4, 3) was read as [3, 4] (a heap over-read: garbage y) and its backward wrote a [3, 4] gradient
    into the [3, 2] buffer (heap overflow). Forward and backward now check the parameters first, as torch's
    F.linear does."""
    lin = Linear(4, 3, seed=0)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    lin(x)  # a recorded call, so backward would run the kernel
    new, expected = {
        "weight-columns": ("weight", np.zeros((3, 2), np.float32)),
        "weight-rows-and-columns": ("weight", np.zeros((2, 2), np.float32)),
        "bias": ("bias", np.zeros(7, np.float32)),
        "weight-dtype": ("weight", np.zeros((3, 4), np.float64)),
    }[replace], {
        "weight-columns": r"Linear\.weight has shape \(3, 2\), expected \(3, 4\) = \[out_features, in_features\]",
        "weight-rows-and-columns": r"Linear\.weight has shape \(2, 2\), expected \(3, 4\)",
        "bias": r"Linear\.bias has shape \(7,\), expected \(3,\) = \[out_features\]",
        "weight-dtype": r"Linear\.weight has dtype float64, expected float32 \(the dtype= the module was built with\)",
    }[replace]
    lin.register_parameter(*new)
    exc = TypeError if replace.endswith("dtype") else ValueError
    with pytest.raises(exc, match=expected):
        lin.backward(np.ones((5, 3), np.float32))
    with pytest.raises(exc, match=expected):
        lin(x)


def test_embedding_refuses_a_weight_replaced_by_one_of_another_shape():
    """Embedding(10, 4) with its weight replaced by a [10, 2] array: backward's scatter-add wrote dy's 4 columns per
    row into the 2-column gradient buffer (row 9 past its end); now checked first, as for Linear."""
    emb = Embedding(10, 4, seed=0)
    emb(np.array([1, 9]))
    emb.register_parameter("weight", np.zeros((10, 2), np.float32))
    match = r"Embedding\.weight has shape \(10, 2\), expected \(10, 4\) = \[num_embeddings, embedding_dim\]"
    with pytest.raises(ValueError, match=match):
        emb.backward(np.ones((2, 4), np.float32))
    assert not emb.gradients()["weight"].any()
    with pytest.raises(ValueError, match=match):
        emb(np.array([1, 9]))
