"""Tests of rnncore.reference's additive (Bahdanau) and Luong attention, the NumPy spec the C++ kernels will follow.

Expectations come from elsewhere than the reference's code path: float64 central differences (every gradient, over
hypothesis shapes and every option), the course's ``one_step_attention`` written out plainly, and PyTorch's autograd
on the same math (tests/fixtures/make_torch_attention_fixtures.py → torch_attention.npz).
"""

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnncore import reference

from support.arrays import numerical_gradient
from support.fixtures import fixture_case
from support.tolerances import assert_close


@contextlib.contextmanager
def strict():
    """Any warning or floating-point divide/overflow/invalid becomes an exception (underflow is fine)."""
    with warnings.catch_warnings(), np.errstate(divide="raise", over="raise", invalid="raise"):
        warnings.simplefilter("error")
        yield


def random_lengths(rng, B, Tx):
    """Lengths in [0, Tx] that include 0 and Tx whenever B allows."""
    lengths = rng.integers(0, Tx + 1, size=B)
    lengths[0] = Tx
    if B > 1:
        lengths[1] = 0
    return lengths


# ---- additive attention ----

def additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, bias=True, score_bias=False, normalize=False):
    """Every array additive attention takes (float64), by name."""
    p = dict(query=rng.standard_normal((B, Dq)), keys=rng.standard_normal((B, Tx, Dk)),
             values=rng.standard_normal((B, Tx, Dv)), w_k=0.7 * rng.standard_normal((A, Dk)),
             w_q=0.7 * rng.standard_normal((A, Dq)), w_v=rng.standard_normal(A))
    p["b_a"] = 0.5 * rng.standard_normal(A) if bias else None
    p["score_bias"] = np.asarray(0.3) if score_bias else None
    p["normalize_gain"] = np.asarray(1.7) if normalize else None
    return p


def additive_run(p, lengths=None, energy_activation=None):
    """Keys projection and one attention step: (context, alpha, saved)."""
    kp = reference.additive_attention_keys(p["keys"], p["w_k"])
    return reference.additive_attention_forward(
        p["query"], kp, p["values"], p["w_q"], p["b_a"], p["w_v"], lengths=lengths, score_bias=p["score_bias"],
        energy_activation=energy_activation, normalize_gain=p["normalize_gain"])


def additive_grads(p, dctx, dalpha, lengths=None, energy_activation=None):
    """Every gradient of the loss Σ context ⊙ dctx + Σ α ⊙ dalpha, by input name."""
    _, _, saved = additive_run(p, lengths, energy_activation)
    g = reference.additive_attention_backward(saved, dctx, dalpha)
    dkeys, dw_k = reference.additive_attention_keys_backward(p["keys"], p["w_k"], g["dprojected_keys"])
    return dict(query=g["dquery"], keys=dkeys, values=g["dvalues"], w_k=dw_k, w_q=g["dw_q"], b_a=g["db_a"],
                w_v=g["dw_v"], score_bias=g["dscore_bias"], normalize_gain=g["dnormalize_gain"])


@given(B=st.integers(1, 3), Tx=st.integers(1, 4), Dq=st.integers(1, 3), Dk=st.integers(1, 3),
       Dv=st.integers(1, 3), A=st.integers(1, 4), bias=st.booleans(), score_bias=st.booleans(),
       normalize=st.booleans(), relu=st.booleans(), use_lengths=st.booleans(), use_dalpha=st.booleans(),
       seed=st.integers(0, 2**16))
def test_additive_gradcheck(B, Tx, Dq, Dk, Dv, A, bias, score_bias, normalize, relu, use_lengths, use_dalpha, seed):
    rng = np.random.default_rng(seed)
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, bias, score_bias, normalize)
    lengths = random_lengths(rng, B, Tx) if use_lengths else None
    act = "relu" if relu else None
    dctx = rng.standard_normal((B, Dv))
    dalpha = rng.standard_normal((B, Tx)) if use_dalpha else None
    if relu:                       # keep scores away from relu's kink, where central differences straddle it
        _, _, saved = additive_run(p, lengths, act)
        s = saved["u"] @ saved["score_vector"] + (0.0 if p["score_bias"] is None else p["score_bias"])
        if np.min(np.abs(s)) < 1e-3:
            return

    def loss():
        ctx, alpha, _ = additive_run(p, lengths, act)
        return np.sum(ctx * dctx) + (0.0 if dalpha is None else np.sum(alpha * dalpha))

    with strict():
        grads = additive_grads(p, dctx, dalpha, lengths, act)
    for name, g in grads.items():
        if p[name] is None:
            assert g is None, name
            continue
        assert g.shape == np.shape(p[name]), name
        arr = np.array(p[name], dtype=np.float64)
        p[name] = arr              # perturbed in place by numerical_gradient
        assert_close(g, numerical_gradient(loss, arr), "gradcheck", np.float64, name)


def test_additive_masked_positions_and_empty_rows(rng):
    B, Tx = 4, 5
    p = additive_inputs(rng, B, Tx, 3, 2, 4, 6, score_bias=True, normalize=True)
    lengths = np.array([5, 0, 2, 1])
    with strict():
        ctx, alpha, saved = additive_run(p, lengths, "relu")
        grads = additive_grads(p, rng.standard_normal((B, 4)), rng.standard_normal((B, Tx)), lengths, "relu")
    keep = np.arange(Tx)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(alpha[~keep], 0.0)                    # masked positions: exactly 0
    np.testing.assert_array_equal(ctx[1], 0.0)                          # lengths 0: zero context ...
    for name in ("query", "keys", "values"):
        np.testing.assert_array_equal(grads[name][1], 0.0, err_msg=name)  # ... and zero gradients
    np.testing.assert_array_equal(grads["keys"][~keep], 0.0)
    np.testing.assert_array_equal(grads["values"][~keep], 0.0)
    assert_close(alpha[[0, 2, 3]].sum(axis=1), np.ones(3), "kernel_vs_reference", np.float64)
    assert all(np.all(np.isfinite(g)) for g in grads.values() if g is not None)


def test_additive_all_rows_masked_gives_zeros_without_warnings(rng):
    p = additive_inputs(rng, 2, 3, 2, 2, 2, 3, score_bias=True, normalize=True)
    with strict():
        ctx, alpha, _ = additive_run(p, np.array([0, 0]))
        grads = additive_grads(p, rng.standard_normal((2, 2)), rng.standard_normal((2, 3)), np.array([0, 0]))
    np.testing.assert_array_equal(ctx, 0.0)
    np.testing.assert_array_equal(alpha, 0.0)
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)


def one_step_attention_plain(s_prev, a, dense1_w, dense1_b, dense2_w, dense2_b):
    """The course's one_step_attention in NumPy: RepeatVector(Tx)(s) ++ a → Dense(10, tanh) → Dense(1, relu) →
    softmax over Tx → dot with a. Keras Dense kernels are [in, out]."""
    Tx = a.shape[1]
    s_rep = np.repeat(s_prev[:, None, :], Tx, axis=1)
    concat = np.concatenate([s_rep, a], axis=-1)
    e = np.tanh(concat @ dense1_w + dense1_b)
    energies = np.maximum(e @ dense2_w + dense2_b, 0.0)[..., 0]
    alphas = np.exp(energies - energies.max(axis=1, keepdims=True))
    alphas /= alphas.sum(axis=1, keepdims=True)
    return np.einsum("bt,btd->bd", alphas, a), alphas


def test_additive_is_the_course_one_step_attention(rng):
    B, Tx, n_s, n_a2 = 3, 6, 4, 5               # s<t-1> [B, n_s]; a [B, Tx, 2 n_a]
    s_prev, a = rng.standard_normal((B, n_s)), rng.standard_normal((B, Tx, n_a2))
    dense1_w, dense1_b = rng.standard_normal((n_s + n_a2, 10)), rng.standard_normal(10)
    dense2_w, dense2_b = rng.standard_normal((10, 1)), rng.standard_normal(1)
    want_ctx, want_alpha = one_step_attention_plain(s_prev, a, dense1_w, dense1_b, dense2_w, dense2_b)
    w_q, w_k = dense1_w[:n_s].T, dense1_w[n_s:].T        # the concatenation's weight split: [s; a] W = s W_s + a W_a
    kp = reference.additive_attention_keys(a, w_k)
    ctx, alpha, _ = reference.additive_attention_forward(s_prev, kp, a, w_q, dense1_b, dense2_w[:, 0],
                                                         score_bias=dense2_b[0], energy_activation="relu")
    assert_close(ctx, want_ctx, "kernel_vs_reference", np.float64, "context")
    assert_close(alpha, want_alpha, "kernel_vs_reference", np.float64, "alpha")


def test_additive_float32_in_float32_out(rng):
    p = additive_inputs(rng, 2, 3, 2, 2, 2, 3)
    p32 = {k: None if v is None else np.asarray(v, np.float32) for k, v in p.items()}
    ctx, alpha, saved = additive_run(p32)
    ctx64, alpha64, _ = additive_run(p)
    assert ctx.dtype == alpha.dtype == np.float32
    assert_close(ctx, ctx64, "kernel_vs_reference", np.float32)
    g = reference.additive_attention_backward(saved, np.ones((2, 2), np.float32))
    assert g["dquery"].dtype == np.float32


def test_additive_rejects_unknown_activation(rng):
    p = additive_inputs(rng, 1, 2, 2, 2, 2, 2)
    with pytest.raises(ValueError, match="energy_activation: expected None or 'relu', received 'tanh'"):
        additive_run(p, energy_activation="tanh")


# ---- Luong attention ----

def luong_inputs(rng, score, B, Ty, Tx, Dq, Dk, Dv, A):
    """Every array Luong attention takes for ``score`` (float64), by name; dot has Dk = Dq."""
    Dk = Dq if score == "dot" else Dk
    p = dict(query=rng.standard_normal((B, Ty, Dq)), keys=rng.standard_normal((B, Tx, Dk)),
             values=rng.standard_normal((B, Tx, Dv)), weight=None, v_a=None)
    if score == "general":
        p["weight"] = 0.7 * rng.standard_normal((Dq, Dk))
    if score == "concat":
        p["weight"], p["v_a"] = 0.7 * rng.standard_normal((A, Dq + Dk)), rng.standard_normal(A)
    return p


def luong_run(p, score, lengths=None):
    return reference.luong_attention_forward(p["query"], p["keys"], p["values"], score=score, weight=p["weight"],
                                             v_a=p["v_a"], lengths=lengths)


@given(score=st.sampled_from(["dot", "general", "concat"]), B=st.integers(1, 3), Ty=st.integers(1, 3),
       Tx=st.integers(1, 4), Dq=st.integers(1, 3), Dk=st.integers(1, 3), Dv=st.integers(1, 3), A=st.integers(1, 3),
       use_lengths=st.booleans(), use_dalpha=st.booleans(), seed=st.integers(0, 2**16))
def test_luong_gradcheck(score, B, Ty, Tx, Dq, Dk, Dv, A, use_lengths, use_dalpha, seed):
    rng = np.random.default_rng(seed)
    p = luong_inputs(rng, score, B, Ty, Tx, Dq, Dk, Dv, A)
    lengths = random_lengths(rng, B, Tx) if use_lengths else None
    dctx = rng.standard_normal((B, Ty, Dv))
    dalpha = rng.standard_normal((B, Ty, Tx)) if use_dalpha else None

    def loss():
        ctx, alpha, _ = luong_run(p, score, lengths)
        return np.sum(ctx * dctx) + (0.0 if dalpha is None else np.sum(alpha * dalpha))

    with strict():
        _, _, saved = luong_run(p, score, lengths)
        g = reference.luong_attention_backward(saved, dctx, dalpha)
    grads = dict(query=g["dquery"], keys=g["dkeys"], values=g["dvalues"], weight=g["dweight"], v_a=g["dv_a"])
    for name, grad in grads.items():
        if p[name] is None:
            assert grad is None, name
            continue
        assert grad.shape == p[name].shape, name
        assert_close(grad, numerical_gradient(loss, p[name]), "gradcheck", np.float64, name)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_masks_and_empty_rows(score, rng):
    B, Ty, Tx = 3, 2, 4
    p = luong_inputs(rng, score, B, Ty, Tx, 3, 2, 2, 3)
    lengths = np.array([0, 4, 2])
    with strict():
        ctx, alpha, saved = luong_run(p, score, lengths)
        g = reference.luong_attention_backward(saved, rng.standard_normal((B, Ty, 2)), rng.standard_normal(alpha.shape))
    keep = np.arange(Tx)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(alpha[np.broadcast_to(~keep[:, None, :], alpha.shape)], 0.0)
    np.testing.assert_array_equal(ctx[0], 0.0)
    for name in ("dquery", "dkeys", "dvalues"):
        np.testing.assert_array_equal(g[name][0], 0.0, err_msg=name)
    np.testing.assert_array_equal(g["dkeys"][2, 2:], 0.0)
    assert_close(alpha[1:].sum(axis=-1), np.ones((2, Ty)), "kernel_vs_reference", np.float64)


def test_luong_each_step_is_a_single_query(rng):
    """Batched over Ty equals Ty separate single-step calls (the decoder steps are independent)."""
    p = luong_inputs(rng, "general", 2, 3, 4, 3, 2, 2, 3)
    ctx, alpha, _ = luong_run(p, "general", np.array([4, 2]))
    for y in range(3):
        q = dict(p, query=p["query"][:, y:y + 1])
        c1, a1, _ = luong_run(q, "general", np.array([4, 2]))
        assert_close(ctx[:, y], c1[:, 0], "kernel_vs_reference", np.float64)
        assert_close(alpha[:, y], a1[:, 0], "kernel_vs_reference", np.float64)


def test_luong_rejects_unknown_score(rng):
    p = luong_inputs(rng, "dot", 1, 1, 2, 2, 2, 2, 2)
    with pytest.raises(ValueError, match=r"score: expected one of \('dot', 'general', 'concat'\), received 'bilinear'"):
        luong_run(p, "bilinear")


# ---- PyTorch autograd on the same math (tests/fixtures/make_torch_attention_fixtures.py) ----

def torch_case(case):
    """The arrays of one case of torch_attention.npz, without the case prefix."""
    return fixture_case("torch_attention.npz", case)


@pytest.mark.parametrize("case, relu", [("additive_plain", False), ("additive_all", True)])
def test_additive_matches_torch_fixture(case, relu):
    f = torch_case(case)
    p = {name: f.get(name) for name in ("query", "keys", "values", "w_k", "w_q", "b_a", "w_v", "score_bias",
                                        "normalize_gain")}
    lengths = f.get("lengths")
    act = "relu" if relu else None
    ctx, alpha, _ = additive_run(p, lengths, act)
    assert_close(ctx, f["context"], "fixture", np.float64, "context")
    assert_close(alpha, f["alpha"], "fixture", np.float64, "alpha")
    grads = additive_grads(p, f["dcontext"], f["dalpha"], lengths, act)
    for name, g in grads.items():
        if p[name] is None:
            assert g is None and "d" + name not in f, name
        else:
            assert_close(g, f["d" + name], "fixture", np.float64, "d" + name)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_matches_torch_fixture(score):
    f = torch_case(f"luong_{score}")
    p = {name: f.get(name) for name in ("query", "keys", "values", "weight", "v_a")}
    ctx, alpha, saved = luong_run(p, score, f["lengths"])
    assert_close(ctx, f["context"], "fixture", np.float64, "context")
    assert_close(alpha, f["alpha"], "fixture", np.float64, "alpha")
    g = reference.luong_attention_backward(saved, f["dcontext"], f["dalpha"])
    for name in ("query", "keys", "values", "weight", "v_a"):
        if p[name] is None:
            assert g["d" + name] is None, name
        else:
            assert_close(g["d" + name], f["d" + name], "fixture", np.float64, "d" + name)


def test_additive_decoder_steps_accumulate_the_projected_keys_gradient(rng):
    """Over Ty decoder steps sharing one K': the per-step dK' summed, then projected back once, is the gradient of the
    whole loss with respect to keys and W_k (the contract the fused decoder follows)."""
    B, Tx, Ty, Dq, Dk, Dv, A = 2, 3, 3, 2, 3, 2, 4
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, score_bias=True, normalize=True)
    queries, dctx = rng.standard_normal((Ty, B, Dq)), rng.standard_normal((Ty, B, Dv))
    lengths = np.array([3, 1])

    def steps():
        kp = reference.additive_attention_keys(p["keys"], p["w_k"])
        return [reference.additive_attention_forward(queries[y], kp, p["values"], p["w_q"], p["b_a"], p["w_v"],
                                                     lengths=lengths, score_bias=p["score_bias"],
                                                     normalize_gain=p["normalize_gain"]) for y in range(Ty)]

    def loss():
        return sum(np.sum(ctx * dctx[y]) for y, (ctx, _, _) in enumerate(steps()))

    dkp = sum(reference.additive_attention_backward(saved, dctx[y])["dprojected_keys"]
              for y, (_, _, saved) in enumerate(steps()))
    dkeys, dw_k = reference.additive_attention_keys_backward(p["keys"], p["w_k"], dkp)
    assert_close(dkeys, numerical_gradient(loss, p["keys"]), "gradcheck", np.float64, "dkeys")
    assert_close(dw_k, numerical_gradient(loss, p["w_k"]), "gradcheck", np.float64, "dw_k")


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_float32_in_float32_out(score, rng):
    p = luong_inputs(rng, score, 2, 2, 3, 2, 2, 2, 3)
    p32 = {k: None if v is None else v.astype(np.float32) for k, v in p.items()}
    ctx, alpha, saved = luong_run(p32, score, np.array([3, 1]))
    ctx64, _, saved64 = luong_run(p, score, np.array([3, 1]))
    assert ctx.dtype == alpha.dtype == np.float32
    assert_close(ctx, ctx64, "kernel_vs_reference", np.float32)
    dctx = rng.standard_normal((2, 2, 2))
    g = reference.luong_attention_backward(saved, dctx.astype(np.float32))
    g64 = reference.luong_attention_backward(saved64, dctx)
    for name, grad in g.items():
        if grad is None:
            assert g64[name] is None
        else:
            assert grad.dtype == np.float32, name
            assert_close(grad, g64[name], "kernel_vs_reference", np.float32, name)
