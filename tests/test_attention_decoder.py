"""The fused attention decoder (rnncore.ops.attention_decoder_forward / _backward) against its NumPy twin, a
hand-written forward written from DECODER_SPEC.md's equations, and float64 central differences: every cell variant,
both scores, both positions, input feeding, optional parameters, lengths including 0 and Tx, both dtypes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnncore as rc
from rnncore import ops
from rnncore._cell_table import VARIANTS
from support.tolerances import assert_close, assert_identical, tol

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
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

def make_args(rng, dtype=np.float64, cell="lstm", options=None, score="additive", position="before",
              input_feeding=False, Ty=3, B=2, Tx=4, E=2, H=3, A=3, Dv=2, O=3, biases=True, b_a=True, score_bias=True,
              relu=False, b_c=True, states=True, lengths="some", o0=True):
    """A dict of attention_decoder_forward's arguments (keyword names; ``cell``'s options under "options")."""
    options = dict(options or {})
    G = GATES[cell]

    def r(*shape, scale=0.6):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    K = A if score == "additive" else H
    fed = Dv if position == "before" else (O if input_feeding else 0)
    a = dict(x=r(Ty, B, E), h0=r(B, H) if states else None, c0=r(B, H) if states and cell == "lstm" else None,
             w_ih=r(G * H, E + fed), w_hh=r(G * H, H), b_ih=r(G * H) if biases else None,
             b_hh=r(G * H) if biases else None, keys=r(B, Tx, K), values=r(B, Tx, Dv), cell=cell, options=options,
             score=score, position=position, input_feeding=input_feeding, w_q=None, b_a=None, w_v=None,
             score_bias=None, energy_activation=None, w_c=None, b_c=None, o0=None)
    if lengths == "some":
        a["lengths"] = rng.integers(0, Tx + 1, size=B)
        a["lengths"][0] = Tx
        if B > 1:
            a["lengths"][1] = 0
    else:
        a["lengths"] = lengths
    if score == "additive":
        a.update(w_q=r(A, H), b_a=r(A) if b_a else None, w_v=r(A, scale=1.0),
                 score_bias=np.asarray(0.3, dtype) if score_bias else None,
                 energy_activation="relu" if relu else None)
    if position == "after":
        a.update(w_c=r(O, Dv + H), b_c=r(O) if b_c else None)
        if input_feeding and o0:
            a["o0"] = r(B, O)
    return a


def call_forward(a, training=True):
    kw = {k: v for k, v in a.items() if k not in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "keys", "values",
                                                  "lengths", "options")}
    return ops.attention_decoder_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                         a["keys"], a["values"], a["lengths"], **a["options"], **kw,
                                         training=training)


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
