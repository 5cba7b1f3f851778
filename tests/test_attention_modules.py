"""rc.AdditiveAttention and rc.LuongAttention: a Python decoder loop of several steps through the module (prepare,
calls, backward last call first, prepare_backward) against the NumPy twins applied step by step; the course's
one_step_attention; the two-level tape; save/load, state_dict names, init, and the errors."""

import copy
import pickle

import numpy as np
import pytest

import rnncore as rc
from rnncore import reference

from support.arrays import DTYPE_IDS, DTYPES
from support.tolerances import assert_close, assert_identical

B, TX, TY, DQ, DK, DV, UNITS = 3, 5, 4, 4, 3, 2, 6
LENGTHS = np.array([5, 0, 2])


def check(got, want, dtype, name):
    assert got.dtype == np.dtype(dtype), name
    assert_close(got, want, "kernel_vs_reference", dtype, name)


# ---- additive ----

ADDITIVE_OPTIONS = [
    dict(),
    dict(bias=False, value_size=DV),
    dict(score_bias=True, energy_activation="relu"),
    dict(normalize=True, value_size=DV),
    dict(bias=False, score_bias=True, normalize=True, energy_activation="relu"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("options", ADDITIVE_OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["all", "lengths"])
def test_additive_decoder_loop_matches_the_twin_step_by_step(options, lengths, dtype, rng):
    att = rc.AdditiveAttention(DQ, DK, UNITS, dtype=dtype, seed=3, **options)
    p = att.parameters()
    for name in ("score_bias", "gain"):  # nonzero, away from relu's kink on average
        if name in p:
            p[name][...] = 0.4
    separate = "value_size" in options
    keys = rng.standard_normal((B, TX, DK)).astype(dtype)
    values = rng.standard_normal((B, TX, DV)).astype(dtype) if separate else None
    queries = rng.standard_normal((TY, B, DQ)).astype(dtype)
    dctx = rng.standard_normal((TY, B, DV if separate else DK)).astype(dtype)
    dalpha = rng.standard_normal((TY, B, TX)).astype(dtype)

    att.prepare(keys, values, lengths)
    outs = [att(queries[t]) for t in range(TY)]
    dquery = [att.backward(dctx[t], dalpha[t]) for t in reversed(range(TY))][::-1]
    dkeys, dvalues = att.prepare_backward()

    kp = reference.additive_attention_keys(keys, p["key_weight"])
    vals = keys if values is None else values
    want_grads = {k: np.zeros(np.shape(v)) for k, v in p.items()}
    dkp, dvals = 0.0, 0.0
    for t in range(TY):
        ctx, alpha, saved = reference.additive_attention_forward(
            queries[t], kp, vals, p["query_weight"], p.get("bias"), p["score_weight"], lengths,
            score_bias=p.get("score_bias"), energy_activation=options.get("energy_activation"),
            normalize_gain=p.get("gain"))
        check(outs[t][0], ctx, dtype, f"context {t}")
        check(outs[t][1], alpha, dtype, f"alpha {t}")
        g = reference.additive_attention_backward(saved, dctx[t], dalpha[t])
        check(dquery[t], g["dquery"], dtype, f"dquery {t}")
        dkp, dvals = dkp + g["dprojected_keys"].astype(np.float64), dvals + g["dvalues"].astype(np.float64)
        for param, grad in (("query_weight", "dw_q"), ("bias", "db_a"), ("score_weight", "dw_v"),
                            ("score_bias", "dscore_bias"), ("gain", "dnormalize_gain")):
            if param in p:
                want_grads[param] += g[grad]
    want_dkeys, want_grads["key_weight"] = reference.additive_attention_keys_backward(keys, p["key_weight"], dkp)
    if values is None:
        assert dvalues is None
        check(dkeys, want_dkeys + dvals, dtype, "dkeys (keys are the values)")
    else:
        check(dkeys, want_dkeys, dtype, "dkeys")
        check(dvalues, dvals, dtype, "dvalues")
    grads = att.gradients()
    assert set(grads) == set(want_grads)
    for name, want in want_grads.items():
        check(grads[name], want, dtype, "gradient " + name)


def one_step_attention_keras(s_prev, a, kernel1, bias1, kernel2, bias2):
    """The course's Keras snippet transcribed: RepeatVector(Tx)(s_prev) → Concatenate(axis=-1)([a, s]) →
    Dense(10, tanh) → Dense(1, relu) → softmax over axis 1 → Dot(axes=1)([alphas, a]). Keras kernels are
    [in, out]; the concatenation puts a first."""
    Tx = a.shape[1]
    s = np.repeat(s_prev[:, None, :], Tx, axis=1)
    concat = np.concatenate([a, s], axis=-1)
    e = np.tanh(concat @ kernel1 + bias1)
    energies = np.maximum(e @ kernel2 + bias2, 0.0)                     # [B, Tx, 1]
    alphas = np.exp(energies - energies.max(axis=1, keepdims=True))
    alphas = alphas / alphas.sum(axis=1, keepdims=True)
    return np.einsum("btx,btd->bxd", alphas, a)[:, 0], alphas[..., 0]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_the_course_one_step_attention(dtype, rng):
    n_s, n_a2, Tx, dense = 6, 8, 7, 10
    kernel1, bias1 = rng.standard_normal((n_a2 + n_s, dense)), rng.standard_normal(dense)
    kernel2, bias2 = rng.standard_normal((dense, 1)), rng.standard_normal(1)
    a, s_prev = rng.standard_normal((B, Tx, n_a2)), rng.standard_normal((B, n_s))
    want_ctx, want_alpha = one_step_attention_keras(s_prev, a, kernel1, bias1, kernel2, bias2)
    att = rc.AdditiveAttention(n_s, n_a2, dense, score_bias=True, energy_activation="relu", dtype=dtype)
    att.load_state_dict({"key_weight": kernel1[:n_a2].T, "query_weight": kernel1[n_a2:].T, "bias": bias1,
                         "score_weight": kernel2[:, 0], "score_bias": np.asarray(bias2[0])})
    att.eval()
    att.prepare(a.astype(dtype))
    ctx, alpha = att(s_prev.astype(dtype))
    check(ctx, want_ctx, dtype, "context")
    check(alpha, want_alpha, dtype, "alpha")


# ---- Luong ----

LUONG_CASES = [("dot", dict(query_size=DK)), ("dot", dict()), ("general", dict(query_size=DQ, key_size=DK)),
               ("concat", dict(query_size=DQ, key_size=DK, units=UNITS))]


def luong_twin(score, p, queries, keys, values, lengths):
    return reference.luong_attention_forward(queries, keys, values, score=score, weight=p.get("weight"),
                                             v_a=p.get("score_weight"), lengths=lengths)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("score,sizes", LUONG_CASES, ids=["dot", "dot_unsized", "general", "concat"])
@pytest.mark.parametrize("all_steps", [False, True], ids=["step_by_step", "all_steps"])
def test_luong_matches_the_twin(score, sizes, all_steps, dtype, rng):
    att = rc.LuongAttention(score, dtype=dtype, seed=5, **sizes)
    p = att.parameters()
    Dq = DK if score == "dot" else DQ
    keys = rng.standard_normal((B, TX, DK)).astype(dtype)
    values = rng.standard_normal((B, TX, DV)).astype(dtype)
    queries = rng.standard_normal((B, TY, Dq)).astype(dtype)
    dctx = rng.standard_normal((B, TY, DV)).astype(dtype)
    dalpha = rng.standard_normal((B, TY, TX)).astype(dtype)
    att.prepare(keys, values, LENGTHS)
    if all_steps:
        ctx, alpha = att(queries)
        dquery = att.backward(dctx, dalpha)
    else:
        outs = [att(queries[:, t]) for t in range(TY)]
        ctx, alpha = np.stack([o[0] for o in outs], axis=1), np.stack([o[1] for o in outs], axis=1)
        dquery = np.stack([att.backward(dctx[:, t], dalpha[:, t]) for t in reversed(range(TY))][::-1], axis=1)
    dkeys, dvalues = att.prepare_backward()
    want_ctx, want_alpha, saved = luong_twin(score, p, queries, keys, values, LENGTHS)
    g = reference.luong_attention_backward(saved, dctx, dalpha)
    check(ctx, want_ctx, dtype, "context")
    check(alpha, want_alpha, dtype, "alpha")
    for name, got in (("dquery", dquery), ("dkeys", dkeys), ("dvalues", dvalues)):
        check(got, g[name], dtype, name)
    grads = att.gradients()
    for param, grad in (("weight", "dweight"), ("score_weight", "dv_a")):
        if param in p:
            check(grads[param], g[grad], dtype, param)


def test_luong_values_default_to_the_keys(rng):
    att = rc.LuongAttention("general", DQ, DK, dtype=np.float64, seed=1)
    keys = rng.standard_normal((B, TX, DK))
    att.prepare(keys)
    ctx, _ = att(rng.standard_normal((B, TY, DQ)))
    assert ctx.shape == (B, TY, DK)
    att.backward(np.ones_like(ctx))
    dkeys, dvalues = att.prepare_backward()
    assert dvalues is None and dkeys.shape == keys.shape


# ---- the tape ----

def test_two_sources_on_the_tape_and_their_order(rng):
    """A new prepare while calls of the previous source are pending: both sources go back in reverse order, each
    with its own dkeys; calling prepare_backward before a source's calls, or backward past them, is an error."""
    att = rc.AdditiveAttention(DQ, DK, UNITS, dtype=np.float64, seed=2)
    keys1, keys2 = rng.standard_normal((B, TX, DK)), rng.standard_normal((2, 3, DK))
    att.prepare(keys1)
    att(rng.standard_normal((B, DQ)))
    att.prepare(keys2)
    att(rng.standard_normal((2, DQ)))
    att(rng.standard_normal((2, DQ)))
    with pytest.raises(RuntimeError, match=r"prepare_backward: 2 calls of the last prepared source still need "):
        att.prepare_backward()
    assert att.backward(np.ones((2, DK))).shape == (2, DQ)
    with pytest.raises(RuntimeError, match=r"prepare_backward: 1 call of the last prepared source still needs"):
        att.prepare_backward()
    att.backward(np.ones((2, DK)))
    with pytest.raises(RuntimeError, match="every call of the last prepared source went through backward"):
        att.backward(np.ones((2, DK)))
    dkeys2, _ = att.prepare_backward()
    assert dkeys2.shape == keys2.shape
    assert att.backward(np.ones((B, DK))).shape == (B, DQ)
    dkeys1, _ = att.prepare_backward()
    assert dkeys1.shape == keys1.shape
    with pytest.raises(RuntimeError, match="needs a training-mode forward first"):
        att.prepare_backward()


def test_a_rejected_gradient_does_not_use_up_the_call(rng):
    att = rc.AdditiveAttention(DQ, DK, UNITS, seed=2)
    att.prepare(rng.standard_normal((B, TX, DK)).astype(np.float32))
    att(rng.standard_normal((B, DQ)).astype(np.float32))
    with pytest.raises(ValueError, match=r"dcontext must have shape \[B, Dv\] = \(3, 3\)"):
        att.backward(np.ones((B, 2), np.float32))
    with pytest.raises(TypeError, match="dcontext has dtype float64"):
        att.backward(np.ones((B, DK)))
    att.backward(np.ones((B, DK), np.float32))
    att.prepare_backward()


def test_eval_records_nothing(rng):
    for att in (rc.AdditiveAttention(DQ, DK, UNITS, seed=2), rc.LuongAttention("dot")):
        q = rng.standard_normal((B, DQ if isinstance(att, rc.AdditiveAttention) else DK)).astype(np.float32)
        att.eval()
        att.prepare(rng.standard_normal((B, TX, DK)).astype(np.float32))
        ctx_eval, _ = att(q)
        assert att._tape == []
        with pytest.raises(RuntimeError, match="needs a training-mode forward first"):
            att.backward(np.ones_like(ctx_eval))
        att.train()
        with pytest.raises(RuntimeError, match="prepared in eval mode"):
            att(q)


def test_calls_need_a_prepared_source_of_their_batch(rng):
    att = rc.AdditiveAttention(DQ, DK, UNITS, seed=2)
    with pytest.raises(RuntimeError, match=r"call prepare\(keys"):
        att(np.ones((B, DQ), np.float32))
    att.prepare(np.ones((B, TX, DK), np.float32))
    with pytest.raises(ValueError, match="query must have B = 3 rows"):
        att(np.ones((2, DQ), np.float32))
    with pytest.raises(ValueError, match=r"query must have shape \[B, query_size\] = \(\?, 4\)"):
        att(np.ones((B, 5), np.float32))
    with pytest.raises(TypeError, match="query has dtype float64, expected float32"):
        att(np.ones((B, DQ)))


# ---- errors, construction, saving ----

@pytest.mark.parametrize("make,exc,match", [
    (lambda: rc.AdditiveAttention(0, 3, 4), ValueError, "query_size must be >= 1"),
    (lambda: rc.AdditiveAttention(2, 3.0, 4), TypeError, "key_size must be an int"),
    (lambda: rc.AdditiveAttention(2, 3, 4, energy_activation="tanh"), ValueError, "energy_activation must be one"),
    (lambda: rc.AdditiveAttention(2, 3, 4, normalize=1), TypeError, "normalize must be a bool"),
    (lambda: rc.AdditiveAttention(2, 3, 4, dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (lambda: rc.LuongAttention("bilinear"), ValueError, "score must be one of"),
    (lambda: rc.LuongAttention("general", query_size=3), ValueError, "needs query_size, key_size: key_size is "),
    (lambda: rc.LuongAttention("concat", 3, 4), ValueError, "units is missing"),
    (lambda: rc.LuongAttention("general", 3, 4, units=2), ValueError, "units is for score='concat' only"),
    (lambda: rc.LuongAttention("dot", 3, 4), ValueError, "needs query_size == key_size"),
])
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_prepare_errors(rng):
    att = rc.AdditiveAttention(DQ, DK, UNITS, value_size=DV, seed=2)
    keys = np.ones((B, TX, DK), np.float32)
    with pytest.raises(ValueError, match="values=None uses the keys as values, but the module was built with "
                                         "value_size=2 != key_size=3"):
        att.prepare(keys)
    with pytest.raises(ValueError, match=r"values must have shape \[B, Tx, value_size\] = \(3, 5, 2\)"):
        att.prepare(keys, np.ones((B, TX, 3), np.float32))
    with pytest.raises(ValueError, match=r"keys must have shape \[B, Tx, key_size\] = \(\?, \?, 3\)"):
        att.prepare(np.ones((B, TX, 4), np.float32))
    with pytest.raises(ValueError, match=r"lengths must lie in 0\.\.Tx = 0\.\.5"):
        att.prepare(keys, np.ones((B, TX, DV), np.float32), [1, 2, 6])
    with pytest.raises(ValueError, match="keys must have every axis >= 1"):
        att.prepare(np.ones((B, 0, DK), np.float32), np.ones((B, 0, DV), np.float32))
    luong = rc.LuongAttention("dot", query_size=DQ)
    with pytest.raises(ValueError, match=r"keys must have shape \[B, Tx, key_size\] = \(\?, \?, 4\)"):
        luong.prepare(keys)
    luong.prepare(np.ones((B, TX, DQ), np.float32))
    with pytest.raises(ValueError, match=r"query must have shape \[B, query_size\] or \[B, Ty, query_size\]"):
        luong(np.ones((B, 1, 1, DQ), np.float32))


def test_private_copies_of_the_source(rng):
    """prepare copies keys and values: overwriting them afterwards changes neither the calls nor the gradients."""
    att = rc.AdditiveAttention(DQ, DK, UNITS, value_size=DV, dtype=np.float64, seed=2)
    keys, values = rng.standard_normal((B, TX, DK)), rng.standard_normal((B, TX, DV))
    q = rng.standard_normal((B, DQ))

    def run(mutate):
        att.zero_grad()
        k, v = keys.copy(), values.copy()
        att.prepare(k, v, LENGTHS)
        if mutate:
            k[...], v[...] = 9.0, 9.0
        ctx, _ = att(q)
        dq = att.backward(np.ones_like(ctx))
        return ctx, dq, *att.prepare_backward(), {n: g.copy() for n, g in att.gradients().items()}

    want, got = run(False), run(True)
    for a, b in zip(want[:4], got[:4]):
        assert_identical(b, a, "output")
    for name in want[4]:
        assert_identical(got[4][name], want[4][name], name)


def test_state_dict_names_and_init():
    att = rc.AdditiveAttention(DQ, DK, UNITS, score_bias=True, normalize=True, seed=1)
    state = att.state_dict()
    assert list(state) == ["query_weight", "key_weight", "bias", "score_weight", "score_bias", "gain"]
    assert state["score_bias"].shape == state["gain"].shape == ()
    assert state["gain"] == np.float32(np.sqrt(1 / UNITS))
    assert np.abs(state["query_weight"]).max() <= 1 / np.sqrt(DQ)
    assert np.abs(state["key_weight"]).max() <= 1 / np.sqrt(DK)
    assert rc.AdditiveAttention(DQ, DK, UNITS, bias=False).bias is None
    assert list(rc.LuongAttention("concat", DQ, DK, UNITS).state_dict()) == ["weight", "score_weight"]
    assert list(rc.LuongAttention("general", DQ, DK).state_dict()) == ["weight"]
    assert rc.LuongAttention("dot").state_dict() == {}
    same = rc.AdditiveAttention(DQ, DK, UNITS, score_bias=True, normalize=True, seed=1).state_dict()
    for name, a in state.items():
        assert_identical(same[name], a, name)


@pytest.mark.parametrize("make", [
    lambda: rc.AdditiveAttention(DQ, DK, UNITS, value_size=DV, bias=False, score_bias=True,
                                 energy_activation="relu", normalize=True, dtype=np.float64, seed=4),
    lambda: rc.LuongAttention("concat", DQ, DK, UNITS, dtype=np.float64, seed=4),
    lambda: rc.LuongAttention("general", DQ, DK, seed=4),
], ids=["additive", "luong_concat", "luong_general"])
def test_save_load_pickle_round_trip(make, tmp_path, rng):
    att = make()
    for p in att.parameters().values():
        p[...] += 0.1  # trained: not the seed's init
    path = tmp_path / "att.npz"
    rc.save(att, path)
    loaded = rc.load(path)
    assert type(loaded) is type(att) and loaded.get_config() == att.get_config()
    for name, a in att.state_dict().items():
        assert_identical(loaded.state_dict()[name], a, name)
    keys = rng.standard_normal((B, TX, DK)).astype(att.dtype)
    values = rng.standard_normal((B, TX, DV)).astype(att.dtype)
    q = rng.standard_normal((B, DQ)).astype(att.dtype)
    att.prepare(keys, values)
    want = att(q)
    for other in (loaded, pickle.loads(pickle.dumps(att)), copy.deepcopy(att)):
        assert other._tape == [] and other._source is None
        other.prepare(keys, values)
        for a, b in zip(other(q), want):
            assert_identical(a, b, "output")


@pytest.mark.parametrize("score,sizes", LUONG_CASES[1:], ids=["dot", "general", "concat"])
def test_luong_mixed_calls_on_one_source(score, sizes, rng):
    """An every-step call then one-step calls on one source, backwarded last first: the source's gradients are the
    sums of the twin's over the calls."""
    att = rc.LuongAttention(score, dtype=np.float64, seed=7, **sizes)
    p = att.parameters()
    Dq = DK if score == "dot" else DQ
    keys, values = rng.standard_normal((B, TX, DK)), rng.standard_normal((B, TX, DV))
    queries = [rng.standard_normal((B, 2, Dq)), rng.standard_normal((B, Dq)), rng.standard_normal((B, Dq))]
    dctx = [rng.standard_normal((B, 2, DV)), rng.standard_normal((B, DV)), rng.standard_normal((B, DV))]
    att.prepare(keys, values, LENGTHS)
    for q in queries:
        att(q)
    dquery = [att.backward(d) for d in reversed(dctx)][::-1]
    dkeys, dvalues = att.prepare_backward()
    want = {"dkeys": 0.0, "dvalues": 0.0, "dweight": 0.0, "dv_a": 0.0}
    for q, d, dq in zip(queries, dctx, dquery):
        steps, dsteps = (q, d) if q.ndim == 3 else (q[:, None], d[:, None])
        _, _, saved = luong_twin(score, p, steps, keys, values, LENGTHS)
        g = reference.luong_attention_backward(saved, dsteps)
        check(dq, g["dquery"] if q.ndim == 3 else g["dquery"][:, 0], np.float64, "dquery")
        for name in want:
            if g[name] is not None:
                want[name] = want[name] + g[name]
    check(dkeys, want["dkeys"], np.float64, "dkeys")
    check(dvalues, want["dvalues"], np.float64, "dvalues")
    for param, grad in (("weight", "dweight"), ("score_weight", "dv_a")):
        if param in p:
            check(att.gradients()[param], want[grad], np.float64, param)
