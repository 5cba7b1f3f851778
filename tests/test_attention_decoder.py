"""The fused attention decoder (rnncore.ops.attention_decoder_forward / _backward) against its NumPy twin, a
hand-written forward written from DECODER_SPEC.md's equations, and float64 central differences: every cell variant,
both scores, both positions, input feeding, optional parameters, lengths including 0 and Tx, both dtypes."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnncore as rc
from rnncore import ops
from rnncore._cell_table import VARIANTS

from support.decoder_calls import call_forward, make_args
from support.tolerances import assert_close, assert_identical

CELLS = [(v.kind.name, dict(v.options)) for v in VARIANTS]
CELL_IDS = [v.name for v in VARIANTS]
FORWARD_NAMES = ("outputs", "contexts", "alpha", "h_n", "c_n")


# ---- the hand-written forward (DECODER_SPEC.md's equations, float64) -------------------------------------------------

def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _hand_cell(cell, options, xh, h, c, w_ih, w_hh, b_ih, b_hh):
    H = h.shape[1]
    gi = xh @ w_ih.T + (0 if b_ih is None else b_ih)
    bh = np.zeros(w_hh.shape[0]) if b_hh is None else b_hh
    if cell == "lstm":
        g = gi + h @ w_hh.T + bh
        i, f, gg, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), _sigmoid(g[:, 3 * H:])
        c = f * c + i * gg
        return o * np.tanh(c), c
    if cell == "gru":
        r = _sigmoid(gi[:, :H] + h @ w_hh[:H].T + bh[:H])
        z = _sigmoid(gi[:, H:2 * H] + h @ w_hh[H:2 * H].T + bh[H:2 * H])
        if options["reset_after"]:
            n = np.tanh(gi[:, 2 * H:] + r * (h @ w_hh[2 * H:].T + bh[2 * H:]))
        else:
            n = np.tanh(gi[:, 2 * H:] + (r * h) @ w_hh[2 * H:].T + bh[2 * H:])
        return (1 - z) * n + z * h, None
    pre = gi + h @ w_hh.T + bh
    return (np.maximum(pre, 0.0) if options["nonlinearity"] == "relu" else np.tanh(pre)), None


def hand_forward(a):
    """outputs, contexts, alpha, h_n, c_n of the decoder described by the argument dict ``a``, in float64."""
    f = {k: (np.asarray(v, np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
         for k, v in a.items()}
    x, keys, values = f["x"], f["keys"], f["values"]
    Ty, B, _ = x.shape
    H = f["w_hh"].shape[1]
    Tx = keys.shape[1]
    cell = f["cell"]
    h = np.zeros((B, H)) if f["h0"] is None else f["h0"]
    c = np.zeros((B, H)) if f.get("c0") is None else f["c0"]
    lengths = np.full(B, Tx) if f["lengths"] is None else np.asarray(f["lengths"])
    keep = np.arange(Tx)[None, :] < lengths[:, None]

    def attend(q):
        if f["score"] == "additive":
            u = np.tanh(keys + (q @ f["w_q"].T + (0 if f["b_a"] is None else f["b_a"]))[:, None, :])
            e = u @ f["w_v"] + (0.0 if f["score_bias"] is None else float(f["score_bias"]))
            if f["energy_activation"] == "relu":
                e = np.maximum(e, 0.0)
        else:
            e = np.einsum("bh,bth->bt", q, keys)
        e = np.where(keep, e, -np.inf)
        m = np.max(e, axis=1, keepdims=True)
        ex = np.where(keep, np.exp(e - np.where(np.isfinite(m), m, 0.0)), 0.0)
        s = ex.sum(axis=1, keepdims=True)
        alpha = np.divide(ex, s, out=np.zeros_like(ex), where=s > 0)
        return np.einsum("bt,btd->bd", alpha, values), alpha

    outs, ctxs, alphas = [], [], []
    o_prev = None if f.get("o0") is None else f["o0"]
    for t in range(Ty):
        if f["position"] == "before":
            ctx, alpha = attend(h)
            h, c2 = _hand_cell(cell, f["options"], np.concatenate([x[t], ctx], axis=1), h, c, f["w_ih"], f["w_hh"],
                               f["b_ih"], f["b_hh"])
            o = h
        else:
            xh = x[t]
            if f["input_feeding"]:
                O = f["w_c"].shape[0]
                xh = np.concatenate([xh, np.zeros((B, O)) if o_prev is None else o_prev], axis=1)
            h, c2 = _hand_cell(cell, f["options"], xh, h, c, f["w_ih"], f["w_hh"], f["b_ih"], f["b_hh"])
            ctx, alpha = attend(h)
            o = np.tanh(np.concatenate([ctx, h], axis=1) @ f["w_c"].T + (0 if f["b_c"] is None else f["b_c"]))
            o_prev = o
        if c2 is not None:
            c = c2
        outs.append(o)
        ctxs.append(ctx)
        alphas.append(alpha)
    return np.stack(outs), np.stack(ctxs), np.stack(alphas), h, (c if cell == "lstm" else None)


# ---- building a decoder's arguments ------------------------------------------------------------------------------

def upstream(rng, a, out, dalpha=True, dcontexts=True, final=True):
    """Random upstream gradients for a forward's results ``out``."""
    outputs, contexts, alpha, h_n, c_n, _ = out
    dtype = a["x"].dtype
    g = dict(doutputs=rng.standard_normal(outputs.shape).astype(dtype),
             dcontexts=rng.standard_normal(contexts.shape).astype(dtype) if dcontexts else None,
             dalpha=rng.standard_normal(alpha.shape).astype(dtype) if dalpha else None,
             dh_n=rng.standard_normal(h_n.shape).astype(dtype) if final else None,
             dc_n=rng.standard_normal(c_n.shape).astype(dtype) if final and c_n is not None else None)
    return g


# The inputs whose gradient the backward returns, by gradient name.
GRADIENT_OF = {"dx": "x", "dh0": "h0", "dc0": "c0", "dkeys": "keys", "dvalues": "values", "dw_ih": "w_ih",
               "dw_hh": "w_hh", "db_ih": "b_ih", "db_hh": "b_hh", "dw_q": "w_q", "db_a": "b_a", "dw_v": "w_v",
               "dscore_bias": "score_bias", "dw_c": "w_c", "db_c": "b_c", "do0": "o0"}


# Initial states: None means zeros, and their gradients are returned all the same (as the recurrent ops' dh0).
INITIAL_STATES = ("h0", "c0", "o0")


def loss_of(a, g):
    """Σ upstream ⊙ results of the forward on ``a`` (float64): the scalar whose gradients backward returns."""
    outputs, contexts, alpha, h_n, c_n, _ = call_forward(a, training=False)
    total = np.sum(g["doutputs"] * outputs)
    for name, value in (("dcontexts", contexts), ("dalpha", alpha), ("dh_n", h_n), ("dc_n", c_n)):
        if g[name] is not None:
            total += np.sum(g[name] * value)
    return total


def numeric_gradient(a, g, name, eps=1e-6):
    base = a[name]
    grad = np.zeros(np.shape(base))
    flat = np.array(base, dtype=np.float64).reshape(-1)
    for i in range(flat.size):
        for sign in (1, -1):
            moved = flat.copy()
            moved[i] += sign * eps
            total = loss_of({**a, name: moved.reshape(np.shape(base))}, g)
            grad.reshape(-1)[i] += sign * total / (2 * eps)
    return grad


# ---- forward against the hand-written decoder, gradients against central differences ----------------------------

CONFIGS = [
    dict(score="additive", position="before"),
    dict(score="dot", position="before"),
    dict(score="additive", position="after"),
    dict(score="additive", position="after", input_feeding=True),
    dict(score="dot", position="after", input_feeding=True),
    dict(score="dot", position="after"),
    dict(score="additive", position="before", E=0, relu=True),
    dict(score="additive", position="after", input_feeding=True, E=0, b_a=False, score_bias=False, b_c=False,
         biases=False, o0=False),
    dict(score="dot", position="before", states=False, lengths=None),  # (zero states with no bias: relu's kink)
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("cell,options", CELLS, ids=CELL_IDS)
def test_float64_gradients_match_central_differences(rng, cell, options, config):
    a = make_args(rng, np.float64, cell, options, **config)
    out = call_forward(a)
    for name, got, want in zip(FORWARD_NAMES, out[:5], hand_forward(a)):
        if want is None:
            assert got is None, name
        else:
            assert_close(got, want, "kernel_vs_reference", np.float64, name)
    g = upstream(rng, a, out)
    grads = ops.attention_decoder_backward(out[5], **g)
    for gname, value in grads._asdict().items():
        name = GRADIENT_OF[gname]
        if a.get(name) is None and name in INITIAL_STATES and value is not None:  # None = zeros: the gradient at 0
            a = {**a, name: np.zeros_like(value)}
        source = a.get(name)
        if source is None:
            assert value is None, gname
            continue
        assert value is not None and value.shape == np.shape(source), gname
        assert_close(value, numeric_gradient(a, g, name), "gradcheck", np.float64, gname)


# ---- forward and every gradient against the NumPy twin over hypothesis-drawn shapes and options --------------------

def call_twin(a):
    kw = {k: v for k, v in a.items() if k not in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "keys", "values",
                                                  "lengths", "options")}
    return rc.reference.attention_decoder_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                                  a["keys"], a["values"], a["lengths"], **a["options"], **kw)


def assert_matches_twin(a, g, kind="kernel_vs_reference"):
    """Forward results and every gradient of the kernel against the twin on the same arguments and upstream."""
    dtype = a["x"].dtype
    out = call_forward(a)
    want = call_twin(a)
    for name, got, ref in zip(FORWARD_NAMES, out[:5], want[:5]):
        if ref is None:
            assert got is None, name
        else:
            assert got.dtype == dtype and got.shape == ref.shape, name
            assert_close(got, ref, kind, dtype, name)
    grads = ops.attention_decoder_backward(out[5], **g)
    ref_grads = rc.reference.attention_decoder_backward(want[5], **g)
    assert set(grads._fields) == set(ref_grads), "the twin and the op name the same gradients"
    for name, got in grads._asdict().items():
        ref = ref_grads[name]
        if ref is None:
            assert got is None, name
        else:
            assert got is not None and got.dtype == dtype and got.shape == ref.shape, name
            assert_close(got, ref, kind, dtype, name)
    return out, grads


@st.composite
def decoder_cases(draw):
    """(seed, make_args keywords, upstream flags): every cell, score, position, feeding and optional part, with sizes
    down to 1 (E and lengths down to 0)."""
    cell, options = draw(st.sampled_from(CELLS))
    score = draw(st.sampled_from(["additive", "dot"]))
    position = draw(st.sampled_from(["before", "after"]))
    feeding = position == "after" and draw(st.booleans())
    E = draw(st.integers(0, 3))
    if position == "after" and not feeding:
        E = max(E, 1)
    B, Tx = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, Tx), min_size=B, max_size=B).map(np.array)))
    kw = dict(cell=cell, options=options, score=score, position=position, input_feeding=feeding,
              Ty=draw(st.integers(1, 4)), B=B, Tx=Tx, E=E, H=draw(st.integers(1, 4)), A=draw(st.integers(1, 4)),
              Dv=draw(st.integers(1, 3)), O=draw(st.integers(1, 3)), biases=draw(st.booleans()),
              b_a=draw(st.booleans()), score_bias=draw(st.booleans()), relu=draw(st.booleans()),
              b_c=draw(st.booleans()), states=draw(st.booleans()), lengths=lengths, o0=draw(st.booleans()))
    flags = dict(dalpha=draw(st.booleans()), dcontexts=draw(st.booleans()), final=draw(st.booleans()))
    return draw(st.integers(0, 2**31)), kw, flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(case=decoder_cases())
def test_matches_twin_over_shapes_and_options(dtype, case):
    seed, kw, flags = case
    rng = np.random.default_rng(seed)
    a = make_args(rng, dtype, **kw)
    out = call_forward(a)
    assert_matches_twin(a, upstream(rng, a, out, **flags))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS[:6], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_twin_at_course_like_sizes(rng, dtype, config):
    """Sums over more terms (Ty*B = 96 rows in the weight gradients, Tx = 12, H = 16): float32 within long_sums."""
    a = make_args(rng, dtype, "lstm", {}, Ty=6, B=16, Tx=12, E=0 if config["position"] == "before" else 3, H=16, A=5,
                  Dv=8, O=7, **{k: v for k, v in config.items() if k != "E"})
    out = call_forward(a)
    assert_matches_twin(a, upstream(rng, a, out), kind="long_sums")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", [dict(score="additive", position="before", relu=True),
                                    dict(score="additive", position="after", input_feeding=True),
                                    dict(score="dot", position="after")],
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_twin_over_whole_packet_blocks(rng, dtype, config):
    """The attention rows sum a packet's width of rows at once (AVX-512: 16 along Tx for dα and the dot score, 16
    units for the additive backward's sums): Tx = 37, A = 35 give two whole blocks and a part, Dv = H = 21 a whole
    packet and narrower tails; lengths 37, 17, 0, 33 end a block anywhere."""
    a = make_args(rng, dtype, "lstm", {}, Ty=3, B=4, Tx=37, E=2, H=21, A=35, Dv=21, O=5,
                  lengths=np.array([37, 17, 0, 33]), **config)
    out = call_forward(a)
    assert_matches_twin(a, upstream(rng, a, out), kind="long_sums")


def test_fully_masked_rows_attend_to_nothing(rng):
    """lengths 0: alpha and the context are exactly 0, no NaN anywhere, and that sample's keys/values get 0."""
    for score in ("additive", "dot"):
        a = make_args(rng, np.float32, score=score, B=3, lengths=np.array([0, 4, 0]), Tx=4)
        a["keys"][[0, 2]] = np.nan  # never read: those samples attend to nothing
        a["values"][[0, 2]] = np.nan
        out = call_forward(a)
        assert np.all(out[2][:, [0, 2]] == 0) and np.all(out[1][:, [0, 2]] == 0)
        g = ops.attention_decoder_backward(out[5], **upstream(rng, a, out))
        for name, value in g._asdict().items():
            if value is not None and name not in ("dkeys", "dvalues"):
                assert np.all(np.isfinite(value)), name
        assert np.all(g.dkeys[[0, 2]] == 0) and np.all(g.dvalues[[0, 2]] == 0)
        assert np.all(np.isfinite(g.dkeys[1])) and np.all(np.isfinite(g.dvalues[1]))


# ---- threads, workspaces, inference --------------------------------------------------------------------------------

@pytest.fixture
def team_threads():
    """The parallel knob on and the team always used, so that 2 threads really split the work."""
    from rnncore import _core

    _core._tuning_set("parallel", 1)
    _core._tuning_set("adapt_threads", 0)
    yield
    _core._tuning_set("parallel", -1)
    _core._tuning_set("adapt_threads", -1)


# How 2 threads split the time loops (tuning.hpp's row_split knob): "per-step", the calling thread runs every step and
# splits its products and attention rows; "row-split", each thread takes its block of rows (16 and 24 of B=40: blocks
# of unequal size) through every step with its own products (parallel.hpp, for_row_blocks).
SPLITS = {"per-step": 0, "row-split": 1}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("cell,options", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_one_and_two_threads_give_equal_bits(rng, team_threads, split, cell, options, config, dtype):
    """Training forward, inference forward and every gradient: the same bits on 2 threads as on 1."""
    from rnncore import _core

    a = make_args(rng, dtype, cell, options, **{**dict(Ty=3, B=40, Tx=9, E=5, H=24, A=6, Dv=12, O=10), **config})
    g = None
    results = []
    _core._tuning_set("row_split", split)
    try:
        for threads in (1, 2):
            with rc.threads(threads):
                before = _core._tuning_counts()["row_split"]
                out = call_forward(a)
                g = g or upstream(rng, a, out)
                inferred = call_forward(a, training=False)[:5]
                results.append((out[:5], inferred, ops.attention_decoder_backward(out[5], **g)))
                if threads == 2 and _core.has_openmp():  # forward, inference and backward each split by rows
                    assert _core._tuning_counts()["row_split"] - before == (3 if split else 0)
    finally:
        _core._tuning_set("row_split", -1)
    (fwd1, inf1, grads1), (fwd2, inf2, grads2) = results
    for name, x1, x2, y1, y2 in zip(FORWARD_NAMES, fwd1, fwd2, inf1, inf2):
        if x1 is not None:
            assert_identical(x2, x1, name, "training forward, 2 threads vs 1")
            assert_identical(y2, y1, name, "inference forward, 2 threads vs 1")
    for name, x1 in grads1._asdict().items():
        if x1 is not None:
            assert_identical(getattr(grads2, name), x1, name, "backward, 2 threads vs 1")


def test_inference_stores_nothing_and_matches_training(rng):
    a = make_args(rng, np.float32, position="after", input_feeding=True)
    trained = call_forward(a, training=True)
    inferred = call_forward(a, training=False)
    assert inferred[5] is None
    for name, x1, x2 in zip(FORWARD_NAMES, trained[:5], inferred[:5]):
        assert_identical(x2, x1, name, "inference vs training")
    with pytest.raises(TypeError, match="training=False"):
        ops.attention_decoder_backward(inferred[5], trained[0])


def test_workspace_serves_backward_twice_and_ignores_later_mutation(rng):
    a = make_args(rng, np.float64, "gru", {"reset_after": False}, position="after", input_feeding=True)
    out = call_forward(a)
    g = upstream(rng, a, out)
    first = ops.attention_decoder_backward(out[5], **g)
    for name in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "keys", "values", "w_q", "b_a", "w_v", "w_c", "b_c",
                 "o0", "score_bias"):
        a[name][...] = 7.0  # the caller reuses its buffers; the workspace kept its own copies
    a["lengths"][...] = 0
    second = ops.attention_decoder_backward(out[5], **g)
    for name, value in first._asdict().items():
        if value is not None:
            assert_identical(getattr(second, name), value, name, "second backward")
            assert getattr(second, name) is not value


@pytest.mark.parametrize("config", [dict(), dict(score="dot", H=2), dict(position="after", input_feeding=True),
                                    dict(relu=True, lengths=None)])
def test_borrowing_workspace_gives_the_same_bits_and_keeps_its_arrays(rng, config):
    """borrow=True: the workspace points at values and the returned alpha (same gradients, bit for bit, and both
    kept alive by the workspace); changing them before the backward changes the gradients (they are not copied),
    while the copying workspace ignores such a change."""
    import gc

    a = make_args(rng, np.float32, **config)
    copied = call_forward(a)
    g = upstream(rng, a, copied)
    expected = ops.attention_decoder_backward(copied[5], **g)
    values = a.pop("values")
    a["values"] = values.copy()
    borrowed = call_forward({**a, "borrow": True})
    for name, x1, x2 in zip(FORWARD_NAMES, copied[:5], borrowed[:5]):
        assert_identical(x2, x1, name, "borrowing forward")
    workspace = borrowed[5]
    del a["values"], borrowed
    gc.collect()  # the workspace alone holds the borrowed values and alpha now
    for name, value in ops.attention_decoder_backward(workspace, **g)._asdict().items():
        if value is not None:
            assert_identical(value, getattr(expected, name), name, "borrowed backward")
    a["values"] = values.copy()
    borrowed = call_forward({**a, "borrow": True})
    a["values"][...] += 1.0   # breaks the contract: the borrowed workspace sees it
    borrowed[2][...] = 0.0
    changed = ops.attention_decoder_backward(borrowed[5], **g)
    assert not np.array_equal(changed.dvalues, expected.dvalues)
    a["values"] = values.copy()
    kept = call_forward(a)
    a["values"][...] += 1.0   # the copying workspace does not
    assert_identical(ops.attention_decoder_backward(kept[5], **g).dvalues, expected.dvalues, "dvalues", "copy")


def test_borrow_must_be_a_bool(rng):
    a = make_args(rng, np.float32)
    with pytest.raises(TypeError, match="borrow must be a bool"):
        call_forward({**a, "borrow": "yes"})


def test_decoder_module_borrows_only_its_own_source(rng):
    """AttentionDecoder's training forward lets the workspace point at the values of its own source only: a source
    prepared in eval mode holds the caller's arrays, so a training call first takes private copies; changing the
    caller's arrays after that call does not change its gradients."""
    keys = rng.standard_normal((2, 5, 4)).astype(np.float32)
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)

    def gradients(reuse_buffer):
        dec = rc.AttentionDecoder(2, 3, 4, attention_units=3, seed=0)
        given = keys.copy()
        dec.eval()
        dec.prepare(given)        # eval: the caller's keys (and values), kept as given
        dec.train()
        assert dec._source_owned is False
        outputs, _, _ = dec(x)
        assert dec._source_owned is True
        if reuse_buffer:
            given[...] = 0.0      # the caller reuses its buffer before backward
        _, _, dkeys, dvalues = dec.backward(np.ones_like(outputs))
        return dkeys, dvalues, dec.gradients()

    first, second = gradients(False), gradients(True)
    for a, b in zip(first[:2], second[:2]):
        np.testing.assert_array_equal(a, b)
    for name in first[2]:
        np.testing.assert_array_equal(first[2][name], second[2][name])


def test_one_step_per_call_equals_the_whole_sequence(rng):
    """Decoding step by step (Ty = 1, training=False, h_n/c_n and the last output passed back in as h0/c0/o0)
    gives the whole sequence's outputs."""
    for position, feeding in (("before", False), ("after", True)):
        a = make_args(rng, np.float64, position=position, input_feeding=feeding, Ty=4, E=2)
        whole = call_forward(a, training=False)
        h, c, o = a["h0"], a["c0"], a["o0"]
        for t in range(4):
            step = call_forward({**a, "x": a["x"][t:t + 1], "h0": h, "c0": c, "o0": o}, training=False)
            for name, got, want in zip(FORWARD_NAMES[:3], step[:3], whole[:3]):
                assert_close(got[0], want[t], "kernel_vs_reference", np.float64, f"{name} step {t}")
            h, c = step[3], step[4]
            o = step[0][0] if feeding else None
        assert_close(h, whole[3], "kernel_vs_reference", np.float64, "h_n")


# ---- argument errors: one test per rule ---------------------------------------------------------------------------

def _call_with(rng, change, **make):
    a = make_args(rng, np.float32, **make)
    a.update(change)
    return call_forward(a)


@pytest.mark.parametrize("change,make,error,match", [
    (dict(x=[[[1.0]]]), {}, TypeError, "x must be a numpy.ndarray"),
    (dict(x=np.zeros((3, 2), np.float32)), {}, ValueError, r"x must have shape \[Ty, B, E\]"),
    (dict(x=np.zeros((0, 2, 2), np.float32)), {}, ValueError, "Ty must be at least 1"),
    (dict(w_hh=np.zeros((12, 3), np.float64)), {}, TypeError, "w_hh has dtype float64, expected float32"),
    (dict(w_hh=np.zeros((11, 3), np.float32)), {}, ValueError, r"w_hh must have shape \[4\*H, H\]"),
    (dict(w_ih=np.zeros((12, 3), np.float32)), {}, ValueError, r"w_ih must have shape \[4\*H, E \+ Dc\] = \(12, 4\)"),
    (dict(keys=np.zeros((2, 4, 5), np.float32)), {}, ValueError, "keys must have shape .* score='additive'"),
    (dict(keys=np.zeros((2, 4, 5), np.float32)), dict(score="dot"), ValueError, "keys must have shape .* score='dot'"),
    (dict(values=np.zeros((2, 5, 2), np.float32)), {}, ValueError, r"values must have shape \[B, Tx, Dv\]"),
    (dict(w_q=None), {}, TypeError, "w_q must be a numpy.ndarray"),
    (dict(w_v=np.zeros(4, np.float32)), {}, ValueError, r"w_v must have shape \[A\]"),
    (dict(w_q=np.zeros((3, 3), np.float32)), dict(score="dot"), ValueError, "w_q must be None with score='dot'"),
    (dict(energy_activation="tanh"), {}, ValueError, "energy_activation must be None or 'relu'"),
    (dict(score_bias="0.5"), {}, TypeError, "score_bias must be a real number"),
    (dict(c0=np.zeros((2, 3), np.float32)), dict(cell="gru", options={"reset_after": True}), ValueError,
     "c0 must be None with cell='gru'"),
    (dict(h0=np.zeros((3, 3), np.float32)), {}, ValueError, r"h0 must have shape \[B, H\] = \(2, 3\)"),
    (dict(lengths=np.array([5, 1])), {}, ValueError, r"lengths must lie in 0..Tx = 0..4"),
    (dict(lengths=np.array([1.0, 2.0])), {}, TypeError, "lengths must hold integers"),
    (dict(cell="lstm2"), {}, ValueError, "cell must be one of"),
    (dict(score="general"), {}, ValueError, "score must be one of"),
    (dict(position="middle"), {}, ValueError, "position must be one of"),
    (dict(input_feeding=1), dict(position="after"), TypeError, "input_feeding must be a bool"),
    (dict(input_feeding=True), {}, ValueError, "input_feeding=True needs position='after'"),
    (dict(w_c=np.zeros((3, 5), np.float32)), {}, ValueError, "w_c must be None with position='before'"),
    (dict(w_c=None), dict(position="after"), TypeError, "w_c must be a numpy.ndarray"),
    (dict(w_c=np.zeros((3, 4), np.float32)), dict(position="after"), ValueError,
     r"w_c must have shape \[O, Dv \+ H\] = \(\?, 5\)"),
    (dict(o0=np.zeros((2, 3), np.float32)), dict(position="after"), ValueError,
     "o0 must be None without input_feeding"),
    (dict(o0=np.zeros((2, 4), np.float32)), dict(position="after", input_feeding=True), ValueError,
     r"o0 must have shape \[B, O\] = \(2, 3\)"),
    (dict(x=np.zeros((3, 2, 0), np.float32), w_ih=np.zeros((12, 0), np.float32)), dict(position="after"), ValueError,
     "E >= 1 features with position='after' and input_feeding=False"),
])
def test_argument_errors(rng, change, make, error, match):
    with pytest.raises(error, match=match):
        _call_with(rng, change, **make)


def test_backward_argument_errors(rng):
    a = make_args(rng, np.float32, "gru", {"reset_after": True})
    out = call_forward(a)
    with pytest.raises(TypeError, match="workspace must be the workspace returned by attention_decoder_forward"):
        ops.attention_decoder_backward(object(), out[0])
    with pytest.raises(ValueError, match=r"doutputs must have shape \[Ty, B, O\] = \(3, 2, 3\)"):
        ops.attention_decoder_backward(out[5], out[0][:2])
    with pytest.raises(TypeError, match="dalpha has dtype float64, expected float32"):
        ops.attention_decoder_backward(out[5], out[0], dalpha=out[2].astype(np.float64))
    with pytest.raises(ValueError, match="dc_n must be None for a decoder with cell='gru'"):
        ops.attention_decoder_backward(out[5], out[0], dc_n=out[3])


def test_non_exact_arguments_give_the_exact_calls_results(rng):
    """The kernel's own exact-call check (the one-step decoding path) and the Python checks agree: arguments that
    are not exact (a strided array, numpy strings and bools, int32 lengths, a float score bias) are checked, made
    exact and give the exact call's bits."""
    a = make_args(rng, np.float32, "rnn", {"nonlinearity": "relu"}, position="after", input_feeding=True, relu=True)
    exact = call_forward(a)
    loose = dict(a, options={"nonlinearity": np.str_("relu")}, lengths=a["lengths"].astype(np.int32),
                 keys=np.asfortranarray(a["keys"]), score_bias=float(a["score_bias"]), input_feeding=np.bool_(True),
                 energy_activation=np.str_("relu"), position=np.str_("after"))
    loose["w_ih"] = np.repeat(a["w_ih"], 2, axis=1)[:, ::2]  # a strided view with w_ih's values
    got = call_forward(loose)
    for name, x1, x2 in zip(FORWARD_NAMES, exact[:5], got[:5]):
        if x1 is not None:
            assert_identical(x2, x1, name, "non-exact call")


@pytest.mark.parametrize("pack_row,fuse_units", [(0, 0), (1, 0), (1, 1)])
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3]], ids=["before", "after-feeding"])
@pytest.mark.parametrize("cell,options", CELLS, ids=CELL_IDS)
def test_one_row_products_match_twin(rng, cell, options, config, pack_row, fuse_units):
    """B = 1 runs the one-row products (row_panels.hpp): unpacked, packed into panels, and packed by units with the
    cell's update fused into the product (float), each forced through tuning.hpp's knobs."""
    from rnncore import _core

    _core._tuning_reset()  # (knobs to auto and path counts to 0)
    _core._tuning_set("pack_row", pack_row)
    _core._tuning_set("fuse_units", fuse_units)
    try:
        a = make_args(rng, np.float32, cell, options, Ty=9, B=1, Tx=7, E=3, H=16, A=5, Dv=6, O=4, **config)
        out = call_forward(a)
        # the relu RNN's gradients over 9 steps carry absolute errors of 2-3e-5 (float32), and dw_q has an element
        # that cancels to -0.039: long_sums' case (at this seed its error stood at 0.94 of kernel_vs_reference's
        # bound with one summation order of the attention rows and 1.01 with the next; over seeds 0-59 x the three
        # paths x both configs the two orders fail that bound alike, 157 vs 160 of 366, and long_sums' 57: a
        # relu-RNN property this fixed seed avoids, not a regression of either order)
        kind = "long_sums" if options.get("nonlinearity") == "relu" else "kernel_vs_reference"
        assert_matches_twin(a, upstream(rng, a, out), kind)
        inferred = call_forward(a, training=False)  # (the weights' column blocks read in place, with their stride)
        for name, got, want in zip(FORWARD_NAMES, inferred[:5], out[:5]):
            if want is not None:
                assert_close(got, want, "kernel_vs_reference", np.float32, f"inference {name}")
        paths = {name for name, n in _core._tuning_counts().items() if n > 0}
        assert ("step_row_unpacked" in paths) == (pack_row == 0)
        assert ("step_row_fused" in paths) == (fuse_units == 1)
    finally:
        _core._tuning_set("pack_row", -1)
        _core._tuning_set("fuse_units", -1)


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_padded_source_positions_are_never_read(rng, score):
    """Keys and values past a sample's length (NaN here) change nothing: every result equals the run with zeros
    there, and their gradients are 0."""
    a = make_args(rng, np.float32, score=score, position="after", input_feeding=True, B=3, Tx=21,
                  lengths=np.array([21, 5, 0]))
    clean = call_forward(a)
    g = upstream(rng, a, clean)
    clean_grads = ops.attention_decoder_backward(clean[5], **g)
    dirty = dict(a, keys=a["keys"].copy(), values=a["values"].copy())
    for b, n in enumerate(a["lengths"]):
        dirty["keys"][b, n:] = np.nan
        dirty["values"][b, n:] = np.nan
    out = call_forward(dirty)
    grads = ops.attention_decoder_backward(out[5], **g)
    for name, x1, x2 in zip(FORWARD_NAMES, clean[:5], out[:5]):
        if x1 is not None:
            assert_identical(x2, x1, name, "NaN past the lengths")
    for name, x1 in clean_grads._asdict().items():
        if x1 is not None:
            assert_identical(getattr(grads, name), x1, name, "NaN past the lengths")
    assert np.all(grads.dkeys[1, 5:] == 0) and np.all(grads.dvalues[1, 5:] == 0)
