"""The attention ops (rnncore.ops: additive attention one step at a time over keys projected once, Luong attention
over every decoder step at once) against their NumPy twins in rnncore.reference, float64 central differences and
PyTorch's autograd (tests/fixtures/torch_attention.npz); the workspace's contract (private copies, reuse, inference
keeps nothing), the keyword accumulators, thread-count independence, and every argument rule."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnncore
from rnncore import _core, ops, reference

from support.arrays import DTYPE_IDS, DTYPES, numerical_gradient
from support.fixtures import fixture_case
from support.tolerances import assert_close, assert_identical

SCORES = ["dot", "general", "concat"]


def random_lengths(rng, B, Tx):
    """Lengths in 0..Tx that include Tx and (when B allows) 0."""
    lengths = rng.integers(0, Tx + 1, size=B)
    lengths[0] = Tx
    if B > 1:
        lengths[1] = 0
    return lengths


def twin_check(got, want, dtype, name):
    """An op's array against its twin's: same dtype, equal within the table's kernel_vs_reference tolerance."""
    if want is None:
        assert got is None, name
        return
    assert got.dtype == np.dtype(dtype), name
    assert got.shape == np.shape(want), name
    assert_close(got, want, "kernel_vs_reference", dtype, name)


# ---- additive attention ----

def additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, dtype, bias=True, score_bias=False, normalize=False):
    """Every array of one additive step (in ``dtype``), by the twin's argument names."""
    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    return dict(query=normal(B, Dq), keys=normal(B, Tx, Dk), values=normal(B, Tx, Dv), w_k=normal(A, Dk, scale=0.7),
                w_q=normal(A, Dq, scale=0.7), w_v=normal(A), b_a=normal(A, scale=0.5) if bias else None,
                score_bias=np.asarray(0.3, dtype) if score_bias else None,
                normalize_gain=np.asarray(1.7, dtype) if normalize else None)


def additive_call(impl, p, lengths=None, energy_activation=None, prepared=False, **kw):
    """The keys projection and one step through ``impl`` (ops or reference): (context, alpha, workspace/saved).
    ``prepared``: the ops' step over a prepared source (additive_attention_source) instead of the arrays."""
    kp = impl.additive_attention_keys(p["keys"], p["w_k"])
    options = dict(score_bias=p["score_bias"], energy_activation=energy_activation,
                   normalize_gain=p["normalize_gain"], **kw)
    if prepared:
        source = ops.additive_attention_source(kp, p["values"], lengths)
        return ops.additive_attention_forward(p["query"], None, None, p["w_q"], p["b_a"], p["w_v"], source=source,
                                              **options)
    return impl.additive_attention_forward(p["query"], kp, p["values"], p["w_q"], p["b_a"], p["w_v"], lengths=lengths,
                                           **options)


def additive_gradients(impl, p, saved, dctx, dalpha):
    """Every gradient (keys and w_k through the projection's backward), by the twin's dict names."""
    g = impl.additive_attention_backward(saved, dctx, dalpha)
    g = g._asdict() if impl is ops else dict(g)
    g["dkeys"], g["dw_k"] = impl.additive_attention_keys_backward(p["keys"], p["w_k"], g["dprojected_keys"])
    return g


@given(B=st.integers(1, 4), Tx=st.integers(1, 5), Dq=st.integers(1, 4), Dk=st.integers(1, 4), Dv=st.integers(1, 4),
       A=st.integers(1, 5), bias=st.booleans(), score_bias=st.booleans(), normalize=st.booleans(),
       relu=st.booleans(), use_lengths=st.booleans(), use_dalpha=st.booleans(), prepared=st.booleans(),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_additive_matches_reference(dtype, B, Tx, Dq, Dk, Dv, A, bias, score_bias, normalize, relu, use_lengths,
                                    use_dalpha, prepared, seed):
    rng = np.random.default_rng(seed)
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, dtype, bias, score_bias, normalize)
    lengths = random_lengths(rng, B, Tx) if use_lengths else None
    act = "relu" if relu else None
    ctx, alpha, ws = additive_call(ops, p, lengths, act, prepared=prepared)
    ctx_want, alpha_want, saved = additive_call(reference, p, lengths, act)
    twin_check(ctx, ctx_want, dtype, "context")
    twin_check(alpha, alpha_want, dtype, "alpha")
    dctx = rng.standard_normal((B, Dv)).astype(dtype)
    dalpha = rng.standard_normal((B, Tx)).astype(dtype) if use_dalpha else None
    got = additive_gradients(ops, p, ws, dctx, dalpha)
    want = additive_gradients(reference, p, saved, dctx, dalpha)
    assert set(got) == set(want)
    for name, g in want.items():
        twin_check(got[name], g, dtype, name)


def test_additive_gradients_are_a_named_tuple_with_the_twins_keys(rng):
    p = additive_inputs(rng, 2, 3, 2, 2, 2, 3, np.float64, score_bias=True, normalize=True)
    _, _, ws = additive_call(ops, p)
    _, _, saved = additive_call(reference, p)
    g = ops.additive_attention_backward(ws, np.ones((2, 2)))
    assert isinstance(g, ops.AdditiveAttentionGradients)
    assert set(g._fields) == set(reference.additive_attention_backward(saved, np.ones((2, 2))))


@settings(max_examples=12)
@given(B=st.integers(1, 3), Tx=st.integers(1, 4), Dq=st.integers(1, 3), Dk=st.integers(1, 3), Dv=st.integers(1, 3),
       A=st.integers(1, 3), bias=st.booleans(), score_bias=st.booleans(), normalize=st.booleans(),
       relu=st.booleans(), use_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_additive_gradcheck(B, Tx, Dq, Dk, Dv, A, bias, score_bias, normalize, relu, use_lengths, seed):
    """Every gradient of the op (through the keys projection) against float64 central differences of the op."""
    rng = np.random.default_rng(seed)
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, np.float64, bias, score_bias, normalize)
    lengths = random_lengths(rng, B, Tx) if use_lengths else None
    act = "relu" if relu else None
    if relu:  # keep the scores away from relu's kink, where a central difference straddles it
        _, _, saved = additive_call(reference, p, lengths, act)
        s = saved["u"] @ saved["score_vector"] + (0.0 if p["score_bias"] is None else float(p["score_bias"]))
        if np.min(np.abs(s)) < 1e-3:
            return
    dctx, dalpha = rng.standard_normal((B, Dv)), rng.standard_normal((B, Tx))

    def loss():
        ctx, alpha, _ = additive_call(ops, p, lengths, act, training=False)
        return np.sum(ctx * dctx) + np.sum(alpha * dalpha)

    _, _, ws = additive_call(ops, p, lengths, act)
    grads = additive_gradients(ops, p, ws, dctx, dalpha)
    names = dict(query="dquery", keys="dkeys", values="dvalues", w_k="dw_k", w_q="dw_q", b_a="db_a", w_v="dw_v",
                 score_bias="dscore_bias", normalize_gain="dnormalize_gain")
    for name, grad_name in names.items():
        if p[name] is None:
            assert grads[grad_name] is None, grad_name
            continue
        assert_close(grads[grad_name], numerical_gradient(loss, p[name]), "gradcheck", np.float64, grad_name)


# ---- Luong attention ----

def luong_inputs(rng, score, B, Ty, Tx, Dq, Dk, Dv, A, dtype):
    """Every array Luong attention takes for ``score`` (in ``dtype``); dot has Dk = Dq."""
    Dk = Dq if score == "dot" else Dk

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    p = dict(query=normal(B, Ty, Dq), keys=normal(B, Tx, Dk), values=normal(B, Tx, Dv), weight=None, v_a=None)
    if score == "general":
        p["weight"] = normal(Dq, Dk, scale=0.7)
    if score == "concat":
        p["weight"], p["v_a"] = normal(A, Dq + Dk, scale=0.7), normal(A)
    return p


def luong_call(impl, p, score, lengths=None, **kw):
    return impl.luong_attention_forward(p["query"], p["keys"], p["values"], score=score, weight=p["weight"],
                                        v_a=p["v_a"], lengths=lengths, **kw)


@given(score=st.sampled_from(SCORES), B=st.integers(1, 4), Ty=st.integers(1, 4), Tx=st.integers(1, 5),
       Dq=st.integers(1, 4), Dk=st.integers(1, 4), Dv=st.integers(1, 4), A=st.integers(1, 4),
       use_lengths=st.booleans(), use_dcontext=st.booleans(), use_dalpha=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_luong_matches_reference(dtype, score, B, Ty, Tx, Dq, Dk, Dv, A, use_lengths, use_dcontext, use_dalpha,
                                 seed):
    rng = np.random.default_rng(seed)
    p = luong_inputs(rng, score, B, Ty, Tx, Dq, Dk, Dv, A, dtype)
    lengths = random_lengths(rng, B, Tx) if use_lengths else None
    ctx, alpha, ws = luong_call(ops, p, score, lengths)
    ctx_want, alpha_want, saved = luong_call(reference, p, score, lengths)
    twin_check(ctx, ctx_want, dtype, "context")
    twin_check(alpha, alpha_want, dtype, "alpha")
    dctx = rng.standard_normal((B, Ty, Dv)).astype(dtype) if use_dcontext else None
    dalpha = rng.standard_normal((B, Ty, Tx)).astype(dtype) if use_dalpha else None
    got = ops.luong_attention_backward(ws, dctx, dalpha)
    want = reference.luong_attention_backward(saved, np.zeros((B, Ty, Dv), dtype) if dctx is None else dctx, dalpha)
    assert isinstance(got, ops.LuongAttentionGradients) and set(got._fields) == set(want)
    for name, g in want.items():
        twin_check(getattr(got, name), g, dtype, name)


@settings(max_examples=12)
@given(score=st.sampled_from(SCORES), B=st.integers(1, 3), Ty=st.integers(1, 3), Tx=st.integers(1, 4),
       Dq=st.integers(1, 3), Dk=st.integers(1, 3), Dv=st.integers(1, 3), A=st.integers(1, 3),
       use_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_luong_gradcheck(score, B, Ty, Tx, Dq, Dk, Dv, A, use_lengths, seed):
    rng = np.random.default_rng(seed)
    p = luong_inputs(rng, score, B, Ty, Tx, Dq, Dk, Dv, A, np.float64)
    lengths = random_lengths(rng, B, Tx) if use_lengths else None
    dctx, dalpha = rng.standard_normal((B, Ty, Dv)), rng.standard_normal((B, Ty, Tx))

    def loss():
        ctx, alpha, _ = luong_call(ops, p, score, lengths, training=False)
        return np.sum(ctx * dctx) + np.sum(alpha * dalpha)

    _, _, ws = luong_call(ops, p, score, lengths)
    g = ops.luong_attention_backward(ws, dctx, dalpha)
    for name in ("query", "keys", "values", "weight", "v_a"):
        grad = getattr(g, "d" + name)
        if p[name] is None:
            assert grad is None, name
        else:
            assert_close(grad, numerical_gradient(loss, p[name]), "gradcheck", np.float64, "d" + name)


# ---- PyTorch autograd on the same math ----

def torch_case(case):
    return fixture_case("torch_attention.npz", case)


@pytest.mark.parametrize("case, relu", [("additive_plain", False), ("additive_all", True)])
def test_additive_matches_torch_fixture(case, relu):
    f = torch_case(case)
    p = {name: f.get(name) for name in ("query", "keys", "values", "w_k", "w_q", "b_a", "w_v", "score_bias",
                                        "normalize_gain")}
    ctx, alpha, ws = additive_call(ops, p, f.get("lengths"), "relu" if relu else None)
    assert_close(ctx, f["context"], "fixture", np.float64, "context")
    assert_close(alpha, f["alpha"], "fixture", np.float64, "alpha")
    g = additive_gradients(ops, p, ws, f["dcontext"], f["dalpha"])
    for name in p:
        if p[name] is None:
            assert g["d" + name] is None, name
        else:
            assert_close(g["d" + name], f["d" + name], "fixture", np.float64, "d" + name)


@pytest.mark.parametrize("score", SCORES)
def test_luong_matches_torch_fixture(score):
    f = torch_case(f"luong_{score}")
    p = {name: f.get(name) for name in ("query", "keys", "values", "weight", "v_a")}
    ctx, alpha, ws = luong_call(ops, p, score, f["lengths"])
    assert_close(ctx, f["context"], "fixture", np.float64, "context")
    assert_close(alpha, f["alpha"], "fixture", np.float64, "alpha")
    g = ops.luong_attention_backward(ws, f["dcontext"], f["dalpha"])
    for name in p:
        if p[name] is None:
            assert getattr(g, "d" + name) is None, name
        else:
            assert_close(getattr(g, "d" + name), f["d" + name], "fixture", np.float64, "d" + name)


# ---- lengths, padding, the workspace ----

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_masked_positions_are_never_read_and_empty_rows_give_zeros(dtype, rng):
    """Padded source positions may hold NaN: they change nothing; lengths 0 gives zero context and gradients."""
    B, Ty, Tx = 3, 2, 4
    lengths = np.array([4, 0, 2])
    pad = np.arange(Tx)[None, :] >= lengths[:, None]
    p = additive_inputs(rng, B, Tx, 3, 2, 2, 3, dtype, score_bias=True)
    kp = ops.additive_attention_keys(p["keys"], p["w_k"])
    kp[pad], p["values"][pad] = np.nan, np.nan
    with np.errstate(all="raise"):
        ctx, alpha, ws = ops.additive_attention_forward(p["query"], kp, p["values"], p["w_q"], p["b_a"], p["w_v"],
                                                        lengths, score_bias=p["score_bias"])
        g = ops.additive_attention_backward(ws, np.ones((B, 2), dtype), np.ones((B, Tx), dtype))
    assert np.isfinite(ctx).all() and np.isfinite(alpha).all()
    assert_identical(ctx[1], np.zeros(2, dtype), "context of lengths 0")
    assert_identical(alpha[pad], np.zeros(pad.sum(), dtype), "alpha at padding")
    for name in ("dquery", "dprojected_keys", "dvalues"):
        assert_identical(getattr(g, name)[1], np.zeros_like(getattr(g, name)[1]), name)
    assert_identical(g.dprojected_keys[pad], np.zeros((pad.sum(), 3), dtype), "dK' at padding")
    for score in SCORES:
        q = luong_inputs(rng, score, B, Ty, Tx, 3, 2, 2, 3, dtype)
        q["keys"][pad], q["values"][pad] = np.nan, np.nan
        ctx, alpha, ws = luong_call(ops, q, score, lengths)
        g = ops.luong_attention_backward(ws, np.ones((B, Ty, 2), dtype), np.ones((B, Ty, Tx), dtype))
        assert np.isfinite(ctx).all() and np.isfinite(alpha).all(), score
        assert_identical(ctx[1], np.zeros_like(ctx[1]), "context of lengths 0", score)
        for name in ("dquery", "dkeys", "dvalues"):
            assert_identical(getattr(g, name)[1], np.zeros_like(getattr(g, name)[1]), name, score)
        assert_identical(g.dkeys[pad], np.zeros_like(g.dkeys[pad]), "dkeys at padding", score)
        for name in ("dweight", "dv_a"):
            assert getattr(g, name) is None or np.isfinite(getattr(g, name)).all(), (score, name)


def test_inference_keeps_nothing_and_gives_the_same_outputs(rng):
    p = additive_inputs(rng, 2, 3, 2, 2, 2, 3, np.float32, normalize=True)
    ctx, alpha, ws = additive_call(ops, p)
    ctx2, alpha2, ws2 = additive_call(ops, p, training=False)
    assert ws is not None and ws2 is None
    assert_identical(ctx2, ctx, "context")
    assert_identical(alpha2, alpha, "alpha")
    for score in SCORES:
        q = luong_inputs(rng, score, 2, 2, 3, 2, 2, 2, 3, np.float32)
        ctx, alpha, ws = luong_call(ops, q, score)
        ctx2, alpha2, ws2 = luong_call(ops, q, score, training=False)
        assert ws is not None and ws2 is None
        assert_identical(ctx2, ctx, "context", score)
        assert_identical(alpha2, alpha, "alpha", score)


def test_workspace_reuse_and_mutation_after_forward(rng):
    """A workspace serves several backward calls with identical results; overwriting every input after the forward
    (the caller reusing its buffers) does not change them."""
    p = additive_inputs(rng, 3, 4, 2, 3, 2, 5, np.float64, score_bias=True, normalize=True)
    kp = ops.additive_attention_keys(p["keys"], p["w_k"])
    args = dict(query=p["query"], projected_keys=kp, values=p["values"], w_q=p["w_q"], b_a=p["b_a"], w_v=p["w_v"])
    lengths = np.array([4, 1, 3])
    _, _, ws = ops.additive_attention_forward(**args, lengths=lengths, score_bias=p["score_bias"],
                                              normalize_gain=p["normalize_gain"])
    dctx, dalpha = rng.standard_normal((3, 2)), rng.standard_normal((3, 4))
    first = ops.additive_attention_backward(ws, dctx, dalpha)
    for a in (*args.values(), p["score_bias"], p["normalize_gain"]):
        a[...] = 7.0
    lengths[...] = 0
    second = ops.additive_attention_backward(ws, dctx, dalpha)
    for name, g in first._asdict().items():
        assert_identical(getattr(second, name), g, name)
    for score in SCORES:
        q = luong_inputs(rng, score, 2, 3, 4, 2, 3, 2, 3, np.float64)
        lengths = np.array([4, 2])
        _, _, ws = luong_call(ops, q, score, lengths)
        dctx, dalpha = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 4))
        first = ops.luong_attention_backward(ws, dctx, dalpha)
        for a in q.values():
            if a is not None:
                a[...] = 7.0
        lengths[...] = 0
        second = ops.luong_attention_backward(ws, dctx, dalpha)
        for name, g in first._asdict().items():
            assert_identical(getattr(second, name), g, name, score)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_keyword_accumulators_are_added_into_and_returned(dtype, rng):
    """dprojected_keys / dvalues given: each step adds its share in place (a decoder loop's sum over steps)."""
    B, Tx, Dq, Dk, Dv, A = 2, 3, 2, 3, 2, 4
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, dtype, score_bias=True)
    kp = ops.additive_attention_keys(p["keys"], p["w_k"])
    start_kp, start_v = rng.standard_normal((B, Tx, A)).astype(dtype), rng.standard_normal((B, Tx, Dv)).astype(dtype)
    acc_kp, acc_v = start_kp.copy(), start_v.copy()
    want_kp, want_v = start_kp.astype(np.float64), start_v.astype(np.float64)
    for _ in range(3):
        query = rng.standard_normal((B, Dq)).astype(dtype)
        _, _, ws = ops.additive_attention_forward(query, kp, p["values"], p["w_q"], p["b_a"], p["w_v"],
                                                  score_bias=p["score_bias"])
        dctx = rng.standard_normal((B, Dv)).astype(dtype)
        fresh = ops.additive_attention_backward(ws, dctx)
        g = ops.additive_attention_backward(ws, dctx, dprojected_keys=acc_kp, dvalues=acc_v)
        assert g.dprojected_keys is acc_kp and g.dvalues is acc_v
        want_kp += fresh.dprojected_keys
        want_v += fresh.dvalues
        for name in ("dquery", "dw_q", "db_a", "dw_v", "dscore_bias"):
            assert_identical(getattr(g, name), getattr(fresh, name), name)
    assert_close(acc_kp, want_kp, "kernel_vs_reference", dtype, "dprojected_keys")
    assert_close(acc_v, want_v, "kernel_vs_reference", dtype, "dvalues")


@pytest.fixture
def team_forced():
    """Every call on set_num_threads' count, whatever its size (the parallel and adapt_threads knobs)."""
    _core._tuning_set("parallel", 1)
    _core._tuning_set("adapt_threads", 0)
    before = rnncore.get_num_threads()
    yield
    rnncore.set_num_threads(before)
    _core._tuning_set("parallel", -1)
    _core._tuning_set("adapt_threads", -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bit_identical_on_one_and_two_threads(dtype, team_forced):
    rng = np.random.default_rng(11)
    B, Ty, Tx, Dq, Dk, Dv, A = 37, 5, 41, 24, 20, 19, 33   # rows split into chunks; odd sizes: SIMD tails
    lengths = random_lengths(rng, B, Tx)
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, dtype, score_bias=True, normalize=True)
    dctx, dalpha = rng.standard_normal((B, Dv)).astype(dtype), rng.standard_normal((B, Tx)).astype(dtype)
    luong = {s: luong_inputs(rng, s, B, Ty, Tx, Dq, Dk, Dv, A, dtype) for s in SCORES}
    ldctx, ldalpha = rng.standard_normal((B, Ty, Dv)).astype(dtype), rng.standard_normal((B, Ty, Tx)).astype(dtype)

    def run():
        ctx, alpha, ws = additive_call(ops, p, lengths, "relu")
        out = dict(context=ctx, alpha=alpha, **additive_gradients(ops, p, ws, dctx, dalpha))
        for s, q in luong.items():
            ctx, alpha, ws = luong_call(ops, q, s, lengths)
            out.update({f"{s}.context": ctx, f"{s}.alpha": alpha})
            out.update({f"{s}.{k}": v for k, v in ops.luong_attention_backward(ws, ldctx, ldalpha)._asdict().items()})
        return out

    rnncore.set_num_threads(1)
    one = run()
    rnncore.set_num_threads(2)
    two = run()
    for name, a in one.items():
        if a is None:
            assert two[name] is None, name
        else:
            assert_identical(two[name], a, name)


# ---- argument checks ----

def _additive(**over):
    rng = np.random.default_rng(0)
    B, Tx, Dq, Dv, A = 2, 3, 4, 5, 6
    args = dict(query=rng.standard_normal((B, Dq)), projected_keys=rng.standard_normal((B, Tx, A)),
                values=rng.standard_normal((B, Tx, Dv)), w_q=rng.standard_normal((A, Dq)), b_a=np.zeros(A),
                w_v=rng.standard_normal(A))
    args.update(over)
    return lambda: ops.additive_attention_forward(**args)


def _luong(score="dot", **over):
    rng = np.random.default_rng(0)
    B, Ty, Tx, Dq, Dk, Dv, A = 2, 3, 4, 5, 6, 7, 8
    args = dict(query=rng.standard_normal((B, Ty, Dq)), keys=rng.standard_normal((B, Tx, Dq if score == "dot" else Dk)),
                values=rng.standard_normal((B, Tx, Dv)), score=score,
                weight=None if score == "dot" else rng.standard_normal((Dq, Dk) if score == "general"
                                                                       else (A, Dq + Dk)),
                v_a=rng.standard_normal(A) if score == "concat" else None)
    args.update(over)
    return lambda: ops.luong_attention_forward(**args)


F32 = np.float32
FORWARD_RULES = [
    (_additive(query=[[1.0]]), TypeError, r"query must be a numpy.ndarray"),
    (_additive(query=np.ones((2, 4), np.int64)), TypeError, r"query must have dtype float32 or float64"),
    (_additive(query=np.ones(4)), ValueError, r"query must have shape \[B, Dq\]"),
    (_additive(query=np.ones((2, 0))), ValueError, r"query must have every axis >= 1"),
    (_additive(projected_keys=np.ones((3, 3, 6))), ValueError, r"projected_keys must have shape \[B, Tx, A\] = \(2,"),
    (_additive(projected_keys=np.ones((2, 3, 6), F32)), TypeError, r"projected_keys has dtype float32, expected"),
    (_additive(values=np.ones((2, 4, 5))), ValueError, r"values must have shape \[B, Tx, Dv\] = \(2, 3, \?\)"),
    (_additive(values=np.ones((2, 3, 0))), ValueError, r"values must have every axis >= 1"),
    (_additive(projected_keys=np.ones((2, 3, 0))), ValueError, r"projected_keys must have every axis >= 1"),
    (_additive(b_a=np.ones(6, F32)), TypeError, r"b_a has dtype float32"),
    (_additive(w_q=np.ones((6, 3))), ValueError, r"w_q must have shape \[A, Dq\] = \(6, 4\)"),
    (_additive(b_a=np.ones(5)), ValueError, r"b_a must have shape \[A\] = \(6,\)"),
    (_additive(w_v=np.ones((6, 1))), ValueError, r"w_v must have shape \[A\] = \(6,\)"),
    (_additive(w_v=np.ones(6, F32)), TypeError, r"w_v has dtype float32"),
    (_additive(lengths=[1, 4]), ValueError, r"lengths must lie in 0\.\.Tx = 0\.\.3, got \[4\]"),
    (_additive(lengths=[1, -1]), ValueError, r"lengths must lie in 0\.\.Tx"),
    (_additive(lengths=[1.0, 2.0]), TypeError, r"lengths must hold integers"),
    (_additive(lengths=[1, 2, 3]), ValueError, r"lengths must have shape \[B\] = \(2,\)"),
    (_additive(score_bias="0.5"), TypeError, r"score_bias must be a real number or a 0-d array"),
    (_additive(score_bias=np.ones(2)), ValueError, r"score_bias must be a scalar"),
    (_additive(score_bias=np.ones((), F32)), TypeError, r"score_bias has dtype float32"),
    (_additive(normalize_gain=True), TypeError, r"normalize_gain must be a real number"),
    (_additive(energy_activation="tanh"), ValueError, r"energy_activation must be one of 'relu', got 'tanh'"),
    (_luong(score="bilinear"), ValueError, r"score must be one of 'dot', 'general', 'concat', got 'bilinear'"),
    (_luong(query=np.ones((2, 5))), ValueError, r"query must have shape \[B, Ty, Dq\]"),
    (_luong(keys=np.ones((2, 4, 6))), ValueError, r"keys must have shape \[B, Tx, Dq\] = \(2, \?, 5\)"),
    (_luong(keys=np.ones((2, 0, 5))), ValueError, r"keys must have every axis >= 1"),
    (_luong(values=np.ones((2, 3, 7))), ValueError, r"values must have shape \[B, Tx, Dv\] = \(2, 4, \?\)"),
    (_luong(values=np.ones((2, 4, 7), F32)), TypeError, r"values has dtype float32"),
    (_luong(weight=np.ones((5, 5))), ValueError, r"score='dot' takes weight=None and v_a=None: weight must be None"),
    (_luong("general", weight=None), ValueError, r"score='general' takes weight W \[Dq, Dk\] .*: weight is missing"),
    (_luong("general", v_a=np.ones(3)), ValueError, r"v_a must be None"),
    (_luong("general", weight=np.ones((6, 5))), ValueError, r"weight must have shape \[Dq, Dk\] = \(5, 6\)"),
    (_luong("concat", v_a=None), ValueError, r"score='concat' takes weight W_a \[A, Dq \+ Dk\] and v_a \[A\]: v_a is"),
    (_luong("concat", weight=None), ValueError, r"weight is missing"),
    (_luong("concat", weight=np.ones((8, 10))), ValueError, r"weight must have shape \[A, Dq \+ Dk\] = \(\?, 11\)"),
    (_luong("concat", v_a=np.ones(7)), ValueError, r"v_a must have shape \[A\] = \(8,\)"),
    (_luong(lengths=[5, 0]), ValueError, r"lengths must lie in 0\.\.Tx = 0\.\.4"),
    (lambda: ops.additive_attention_keys(np.ones((2, 3)), np.ones((4, 3))), ValueError, r"keys must have shape"),
    (lambda: ops.additive_attention_keys(np.ones((2, 3, 4)), np.ones((4, 3))), ValueError,
     r"w_k must have shape \[A, Dk\] = \(\?, 4\)"),
    (lambda: ops.additive_attention_keys_backward(np.ones((2, 3, 4)), np.ones((5, 4)), np.ones((2, 3, 4))),
     ValueError, r"dprojected_keys must have shape \[B, Tx, A\] = \(2, 3, 5\)"),
]


@pytest.mark.parametrize("call,exc,match", FORWARD_RULES)
def test_forward_checks_its_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_backward_checks_its_arguments(rng):
    B, Tx, Dv = 2, 3, 5
    _, _, ws = _additive()()
    _, _, lws = _luong()()
    cases = [
        (lambda: ops.additive_attention_backward(None, np.ones((B, Dv))), TypeError,
         r"workspace must be the workspace returned by additive_attention_forward\(\.\.\., training=True\), got "
         r"NoneType \(was the forward run with training=False\?\)"),
        (lambda: ops.additive_attention_backward(lws, np.ones((B, Dv))), TypeError, r"got LuongAttentionWorkspace"),
        (lambda: ops.luong_attention_backward(ws, None), TypeError, r"luong_attention_backward: workspace must be"),
        (lambda: ops.additive_attention_backward(ws, np.ones((B, 4))), ValueError,
         r"dcontext must have shape \[B, Dv\] = \(2, 5\)"),
        (lambda: ops.additive_attention_backward(ws, np.ones((B, Dv), F32)), TypeError, r"dcontext has dtype float32"),
        (lambda: ops.additive_attention_backward(ws, None, np.ones((B, 4))), ValueError,
         r"dalpha must have shape \[B, Tx\] = \(2, 3\)"),
        (lambda: ops.additive_attention_backward(ws, None, dprojected_keys=np.ones((B, Tx, 5))), ValueError,
         r"dprojected_keys must have shape \[B, Tx, A\] = \(2, 3, 6\)"),
        (lambda: ops.additive_attention_backward(ws, None, dvalues=np.ones((B, Tx, Dv), F32)), TypeError,
         r"dvalues has dtype float32"),
        (lambda: ops.additive_attention_backward(ws, None, dvalues=np.ones((B, Dv, Tx)).transpose(0, 2, 1)),
         ValueError, r"dvalues must be C-contiguous, writeable"),
        (lambda: ops.additive_attention_backward(ws, None, dvalues=[[0.0]]), TypeError, r"dvalues must be a numpy"),
        (lambda: ops.luong_attention_backward(lws, np.ones((2, 3, 6))), ValueError,
         r"dcontext must have shape \[B, Ty, Dv\] = \(2, 3, 7\)"),
        (lambda: ops.luong_attention_backward(lws, None, np.ones((2, 3, 3))), ValueError,
         r"dalpha must have shape \[B, Ty, Tx\] = \(2, 3, 4\)"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()


def test_accumulators_may_not_overlap():
    _, _, ws = _additive()()
    block = np.zeros(2 * 3 * 6)
    with pytest.raises(ValueError, match="must not share memory"):
        ops.additive_attention_backward(ws, None, dprojected_keys=block.reshape(2, 3, 6),
                                        dvalues=block[:30].reshape(2, 3, 5))
    buffer = np.zeros(40)
    with pytest.raises(ValueError, match="dvalues must not share memory with dcontext"):
        ops.additive_attention_backward(ws, buffer[20:30].reshape(2, 5), dvalues=buffer[:30].reshape(2, 3, 5))


# ---- a prepared additive source (additive_attention_source): shared by the steps instead of copied ----

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_a_prepared_source_gives_the_array_calls_bits(dtype, rng):
    """Steps over a prepared source equal steps given the arrays, bit for bit, in training and inference; the source
    keeps private copies (the caller's arrays overwritten after it was made change nothing)."""
    B, Tx, Dq, Dk, Dv, A = 3, 6, 4, 3, 5, 7
    p = additive_inputs(rng, B, Tx, Dq, Dk, Dv, A, dtype, score_bias=True, normalize=True)
    lengths = np.array([6, 0, 3])
    kp = ops.additive_attention_keys(p["keys"], p["w_k"])
    kp_copy, values_copy = kp.copy(), p["values"].copy()
    source = ops.additive_attention_source(kp, p["values"], lengths)
    kp[...], p["values"][...], lengths_copy = np.nan, np.nan, lengths.copy()
    lengths[...] = 1
    rest = dict(score_bias=p["score_bias"], energy_activation="relu", normalize_gain=p["normalize_gain"])
    for step in range(2):
        query = rng.standard_normal((B, Dq)).astype(dtype)
        dctx, dalpha = rng.standard_normal((B, Dv)).astype(dtype), rng.standard_normal((B, Tx)).astype(dtype)
        want = ops.additive_attention_forward(query, kp_copy, values_copy, p["w_q"], p["b_a"], p["w_v"], lengths_copy,
                                              **rest)
        got = ops.additive_attention_forward(query, None, None, p["w_q"], p["b_a"], p["w_v"], source=source, **rest)
        inference = ops.additive_attention_forward(query, None, None, p["w_q"], p["b_a"], p["w_v"], source=source,
                                                   training=False, **rest)
        assert inference[2] is None
        for name, a, b, c in zip(("context", "alpha"), got, want, inference):
            assert_identical(a, b, name, f"step {step}")
            assert_identical(c, b, name, f"inference step {step}")
        g_want = ops.additive_attention_backward(want[2], dctx, dalpha)
        g_got = ops.additive_attention_backward(got[2], dctx, dalpha)
        for name, g in g_want._asdict().items():
            assert_identical(getattr(g_got, name), g, name, f"step {step}")


def test_source_argument_rules(rng):
    kp, values = np.ones((2, 3, 6)), np.ones((2, 3, 5))
    source = ops.additive_attention_source(kp, values, [3, 1])
    assert (source.B, source.Tx, source.A, source.Dv, source.dtype) == (2, 3, 6, 5, "float64")
    query, w_q, w_v = np.ones((2, 4)), np.ones((6, 4)), np.ones(6)
    cases = [
        (lambda: ops.additive_attention_forward(query, kp, None, w_q, None, w_v, source=source), ValueError,
         "with source= the source holds the keys, values and lengths: projected_keys must be None"),
        (lambda: ops.additive_attention_forward(query, None, None, w_q, None, w_v, [1, 1], source=source), ValueError,
         "lengths must be None"),
        (lambda: ops.additive_attention_forward(query, None, None, w_q, None, w_v, source=kp), TypeError,
         r"source must be a source from additive_attention_source\(\.\.\.\) or None, got ndarray"),
        (lambda: ops.additive_attention_forward(query.astype(F32), None, None, w_q.astype(F32), None,
                                                w_v.astype(F32), source=source), TypeError,
         "source has dtype float64, expected float32 like query"),
        (lambda: ops.additive_attention_forward(np.ones((3, 4)), None, None, w_q, None, w_v, source=source),
         ValueError, r"query must have the source's B = 2 rows"),
        (lambda: ops.additive_attention_forward(query, None, None, np.ones((5, 4)), None, w_v, source=source),
         ValueError, r"w_q must have shape \[A, Dq\] = \(6, 4\)"),
        (lambda: ops.additive_attention_source(kp, np.ones((2, 4, 5))), ValueError,
         r"values must have shape \[B, Tx, Dv\] = \(2, 3, \?\)"),
        (lambda: ops.additive_attention_source(kp, values, [4, 0]), ValueError, r"lengths must lie in 0\.\.Tx"),
        (lambda: ops.additive_attention_forward(query, None, values, w_q, None, w_v), TypeError,
         "projected_keys must be a numpy.ndarray"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()


def test_normalize_rejects_an_all_zero_score_vector():
    # w_v / ‖w_v‖ is undefined at 0: a clear error, not NaN attention with a RuntimeWarning.
    zero = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="w_v must not be all zeros with normalize"):
        ops.normalized_score_vector(zero, 1.0)
    with pytest.raises(ValueError, match="w_v must not be all zeros with normalize"):
        ops.normalized_score_vector_backward(zero, 1.0, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="w_v must not be all zeros with normalize"):
        ops.additive_attention_forward(np.ones((2, 3), np.float32), np.ones((2, 5, 4), np.float32),
                                       np.ones((2, 5, 6), np.float32), np.ones((4, 3), np.float32), None, zero,
                                       normalize_gain=1.0)
