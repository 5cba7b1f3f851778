"""Tests of rnncore.reference, the pure-NumPy executable spec.

Every expectation here comes from somewhere other than the reference's own code path: central finite differences
(gradients), a per-sample hand-written recurrence copied from design.md section 2 (forward equations and lengths),
explicit truncation of the sequences (lengths), or softmax written out entry by entry (masked softmax).
"""

import contextlib
import warnings

import numpy as np
import pytest
from conftest import assert_close

from rnncore import reference

EPS = 1e-6  # central-difference step (the "gradcheck" tolerance entry assumes it)

# (cell, forward options) for every recurrent op variant.
CELLS = [
    pytest.param("lstm", {}, id="lstm"),
    pytest.param("gru", {"reset_after": True}, id="gru-reset_after"),
    pytest.param("gru", {"reset_after": False}, id="gru-reset_before"),
    pytest.param("rnn", {"nonlinearity": "tanh"}, id="rnn-tanh"),
    pytest.param("rnn", {"nonlinearity": "relu"}, id="rnn-relu"),
]
N_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


# ---------------------------------------------------------------------------------------------------------------
# Hand-written steps, straight from design.md section 2 (independent of the reference: per-gate weight slices,
# sigmoid via exp, one sample at a time).
# ---------------------------------------------------------------------------------------------------------------

def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def gate_blocks(a, G):
    """The G row blocks of a weight [G*H, K] or bias [G*H]."""
    H = a.shape[0] // G
    return [a[k * H:(k + 1) * H] for k in range(G)]


def hand_lstm_step(x, h, c, p, opts):
    Wi, Wf, Wg, Wo = gate_blocks(p["w_ih"], 4)
    Ui, Uf, Ug, Uo = gate_blocks(p["w_hh"], 4)
    bi, bf, bg, bo = gate_blocks(p["b_ih"], 4)
    ci, cf, cg, co = gate_blocks(p["b_hh"], 4)
    i = sig(x @ Wi.T + bi + h @ Ui.T + ci)
    f = sig(x @ Wf.T + bf + h @ Uf.T + cf)
    g = np.tanh(x @ Wg.T + bg + h @ Ug.T + cg)
    o = sig(x @ Wo.T + bo + h @ Uo.T + co)
    c = f * c + i * g
    return o * np.tanh(c), c


def hand_gru_step(x, h, p, opts):
    Wr, Wz, Wn = gate_blocks(p["w_ih"], 3)
    Ur, Uz, Un = gate_blocks(p["w_hh"], 3)
    br, bz, bn = gate_blocks(p["b_ih"], 3)
    cr, cz, cn = gate_blocks(p["b_hh"], 3)
    r = sig(x @ Wr.T + br + h @ Ur.T + cr)
    z = sig(x @ Wz.T + bz + h @ Uz.T + cz)
    if opts["reset_after"]:
        n = np.tanh(x @ Wn.T + bn + r * (h @ Un.T + cn))
    else:
        n = np.tanh(x @ Wn.T + bn + (r * h) @ Un.T + cn)
    return (1 - z) * n + z * h


def hand_rnn_pre(x, h, p):
    return x @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]


def hand_rnn_step(x, h, p, opts):
    pre = hand_rnn_pre(x, h, p)
    return np.tanh(pre) if opts["nonlinearity"] == "tanh" else np.where(pre > 0, pre, 0.0)


def hand_run(cell, opts, inp, lengths=None):
    """Run each sample b alone over its valid prefix x[:lengths[b], b]; y is zero-padded. Returns (y, h_n, c_n)."""
    x = inp["x"]
    T, B, _ = x.shape
    H = inp["w_hh"].shape[1]
    G = N_GATES[cell]
    p = dict(inp)
    for name in ("b_ih", "b_hh"):
        if p[name] is None:
            p[name] = np.zeros(G * H)
    lengths = [T] * B if lengths is None else lengths
    y = np.zeros((T, B, H))
    h_n, c_n = np.zeros((B, H)), np.zeros((B, H))
    for b in range(B):
        h = np.zeros(H) if inp["h0"] is None else inp["h0"][b]
        c = np.zeros(H) if inp.get("c0") is None else inp["c0"][b]
        for t in range(lengths[b]):
            if cell == "lstm":
                h, c = hand_lstm_step(x[t, b], h, c, p, opts)
            elif cell == "gru":
                h = hand_gru_step(x[t, b], h, p, opts)
            else:
                h = hand_rnn_step(x[t, b], h, p, opts)
            y[t, b] = h
        h_n[b], c_n[b] = h, c
    return y, h_n, c_n


def min_abs_relu_preactivation(inp, lengths=None):
    """Smallest |pre-activation| of a relu RNN over all valid steps (to keep finite differences off the kink)."""
    x, T, B = inp["x"], inp["x"].shape[0], inp["x"].shape[1]
    p = dict(inp, b_ih=inp["b_ih"] if inp["b_ih"] is not None else 0.0,
             b_hh=inp["b_hh"] if inp["b_hh"] is not None else 0.0)
    lengths = [T] * B if lengths is None else lengths
    smallest = np.inf
    for b in range(B):
        h = inp["h0"][b]
        for t in range(lengths[b]):
            pre = hand_rnn_pre(x[t, b], h, p)
            smallest = min(smallest, np.abs(pre).min())
            h = np.maximum(pre, 0.0)
    return smallest


# ---------------------------------------------------------------------------------------------------------------
# Calling the ops uniformly
# ---------------------------------------------------------------------------------------------------------------

def make_inputs(rng, cell, T, B, I, H, bias=True, opts=None, lengths=None):
    """Seeded float64 inputs (a dict keyed by argument name). A relu RNN is resampled until no valid
    pre-activation is within 1e-2 of the kink."""
    G = N_GATES[cell]
    while True:
        inp = dict(
            x=rng.standard_normal((T, B, I)),
            h0=0.5 * rng.standard_normal((B, H)),
        )
        if cell == "lstm":
            inp["c0"] = 0.5 * rng.standard_normal((B, H))
        inp["w_ih"] = rng.uniform(-0.9, 0.9, (G * H, I))
        inp["w_hh"] = rng.uniform(-0.9, 0.9, (G * H, H))
        inp["b_ih"] = rng.uniform(-0.5, 0.5, G * H) if bias else None
        inp["b_hh"] = rng.uniform(-0.5, 0.5, G * H) if bias else None
        if cell != "rnn" or opts["nonlinearity"] != "relu" or min_abs_relu_preactivation(inp, lengths) > 1e-2:
            return inp


def state_names(cell):
    return ("h0", "c0") if cell == "lstm" else ("h0",)


def grad_names(cell):
    """Names of the inputs, in the order the backward returns their gradients."""
    return ("x",) + state_names(cell) + ("w_ih", "w_hh", "b_ih", "b_hh")


def cast(inp, dtype):
    return {k: (None if v is None else v.astype(dtype)) for k, v in inp.items()}


def forward(cell, opts, inp, lengths=None, training=True, ops=reference):
    """Returns (outputs, cache) with outputs = (y, h_n) or (y, h_n, c_n)."""
    args = [inp["x"]] + [inp[s] for s in state_names(cell)] + [inp[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    result = getattr(ops, f"{cell}_forward")(*args, lengths=lengths, training=training, **opts)
    return result[:-1], result[-1]


def backward(cell, cache, dy, dstate_n, ops=reference):
    return getattr(ops, f"{cell}_backward")(cache, dy, *dstate_n)


def numeric_grad(loss, arrays, name, eps=EPS):
    """Central difference of the scalar ``loss()`` with respect to ``arrays[name]`` (perturbed in place)."""
    a = arrays[name]
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        orig = a[idx]
        a[idx] = orig + eps
        up = loss()
        a[idx] = orig - eps
        down = loss()
        a[idx] = orig
        g[idx] = (up - down) / (2 * eps)
    return g


# ---------------------------------------------------------------------------------------------------------------
# Gradients: every backward output against float64 central differences
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, opts", CELLS)
@pytest.mark.parametrize("T, B, I, H, lengths", [
    pytest.param(3, 2, 3, 2, None, id="T3B2I3H2"),
    pytest.param(3, 2, 3, 2, [3, 1], id="T3B2I3H2-lengths31"),
    pytest.param(4, 3, 2, 3, [2, 4, 1], id="T4B3I2H3-lengths241"),
    pytest.param(1, 1, 1, 1, None, id="T1B1I1H1"),
])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck(cell, opts, T, B, I, H, lengths, bias, rng):
    inp = make_inputs(rng, cell, T, B, I, H, bias=bias, opts=opts, lengths=lengths)
    outputs, cache = forward(cell, opts, inp, lengths)
    cotangents = [rng.standard_normal(o.shape) for o in outputs]   # dy, dh_n (, dc_n)

    def loss():   # sum(y*dy) + sum(h_n*dh_n) (+ sum(c_n*dc_n)), through the inference path
        outs, _ = forward(cell, opts, inp, lengths, training=False)
        return sum(np.sum(o * c) for o, c in zip(outs, cotangents))

    grads = backward(cell, cache, cotangents[0], cotangents[1:])
    assert len(grads) == len(grad_names(cell))
    for name, g in zip(grad_names(cell), grads):
        if inp[name] is None:
            assert g is None, f"{name}: gradient of a missing bias must be None"
            continue
        assert g.shape == inp[name].shape and g.dtype == np.float64, name
        assert_close(g, numeric_grad(loss, inp, name), "gradcheck", np.float64, f"d{name}")


@pytest.mark.parametrize("cell, opts", CELLS)
def test_missing_gradients_are_zeros(cell, opts, rng):
    """dy / dh_n / dc_n = None means zeros; a backward with only dh_n matches its finite difference."""
    inp = make_inputs(rng, cell, 3, 2, 3, 2, opts=opts, lengths=[2, 3])
    outputs, cache = forward(cell, opts, inp, [2, 3])
    zeros = [np.zeros(o.shape) for o in outputs]
    for g in backward(cell, cache, None, [None] * (len(outputs) - 1)):
        np.testing.assert_array_equal(g, 0.0)
    dh_n = rng.standard_normal(outputs[1].shape)
    only_dh = backward(cell, cache, None, [dh_n] + [None] * (len(outputs) - 2))
    explicit = backward(cell, cache, zeros[0], [dh_n] + zeros[2:])
    for name, a, b in zip(grad_names(cell), only_dh, explicit):
        np.testing.assert_array_equal(a, b, err_msg=name)

    def loss():
        return np.sum(forward(cell, opts, inp, [2, 3], training=False)[0][1] * dh_n)
    assert_close(only_dh[0], numeric_grad(loss, inp, "x"), "gradcheck", np.float64, "dx")


# ---------------------------------------------------------------------------------------------------------------
# Forward equations: against the hand-written recurrence
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, opts", CELLS)
@pytest.mark.parametrize("T, B, lengths", [(1, 2, None), (4, 3, None), (4, 3, [4, 1, 3])])
def test_forward_matches_hand_equations(cell, opts, T, B, lengths, rng):
    inp = make_inputs(rng, cell, T, B, 3, 2, opts=opts)
    outputs, cache = forward(cell, opts, inp, lengths)
    y, h_n, c_n = hand_run(cell, opts, inp, lengths)
    assert_close(outputs[0], y, "kernel_vs_reference", np.float64, "y")
    assert_close(outputs[1], h_n, "kernel_vs_reference", np.float64, "h_n")
    if cell == "lstm":
        assert_close(outputs[2], c_n, "kernel_vs_reference", np.float64, "c_n")


@pytest.mark.parametrize("cell, opts", CELLS)
def test_none_states_and_biases_mean_zeros(cell, opts, rng):
    inp = make_inputs(rng, cell, 3, 2, 3, 2, opts=opts)
    G, H = N_GATES[cell], 2
    zeroed = dict(inp, b_ih=np.zeros(G * H), b_hh=np.zeros(G * H), **{s: np.zeros((2, H)) for s in state_names(cell)})
    missing = dict(inp, b_ih=None, b_hh=None, **{s: None for s in state_names(cell)})
    for a, b in zip(forward(cell, opts, missing)[0], forward(cell, opts, zeroed)[0]):
        assert_close(a, b, "kernel_vs_reference", np.float64)
    y, h_n, _ = hand_run(cell, opts, missing)
    assert_close(forward(cell, opts, missing)[0][0], y, "kernel_vs_reference", np.float64, "y")


def test_lstm_one_step_by_hand():
    """T = B = I = H = 1 with round numbers: every gate pre-activation is known in closed form."""
    x = np.array([[[1.0]]])
    h0, c0 = np.array([[0.5]]), np.array([[-1.0]])
    w_ih = np.array([[1.0], [2.0], [3.0], [4.0]])       # i, f, g, o
    w_hh = np.array([[0.0], [-2.0], [2.0], [-4.0]])
    b_ih = np.array([0.0, 0.5, 0.0, 1.0])
    b_hh = np.array([1.0, -0.5, 0.0, 0.0])
    y, h_n, c_n, _ = reference.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    i, f, g, o = sig(2.0), sig(1.0), np.tanh(4.0), sig(3.0)   # 1+0+0+1, 2+.5-1-.5, 3+1, 4+1-2
    c = f * -1.0 + i * g
    assert_close(c_n, [[c]], "kernel_vs_reference", np.float64, "c_n")
    assert_close(h_n, [[o * np.tanh(c)]], "kernel_vs_reference", np.float64, "h_n")
    np.testing.assert_array_equal(y[0], h_n)


def test_gru_reset_after_vs_before_by_hand(rng):
    """The two GRU candidates differ exactly where design.md says: inside or outside the W_hn product."""
    x = rng.standard_normal((1, 2, 3))
    h0 = rng.standard_normal((2, 2))
    w_ih, w_hh = rng.uniform(-1, 1, (6, 3)), rng.uniform(-1, 1, (6, 2))
    b_ih, b_hh = rng.uniform(-1, 1, 6), rng.uniform(-1, 1, 6)
    Wr, Wz, Wn = w_ih[0:2], w_ih[2:4], w_ih[4:6]
    Ur, Uz, Un = w_hh[0:2], w_hh[2:4], w_hh[4:6]
    r = sig(x[0] @ Wr.T + b_ih[0:2] + h0 @ Ur.T + b_hh[0:2])
    z = sig(x[0] @ Wz.T + b_ih[2:4] + h0 @ Uz.T + b_hh[2:4])
    n_after = np.tanh(x[0] @ Wn.T + b_ih[4:6] + r * (h0 @ Un.T + b_hh[4:6]))
    n_before = np.tanh(x[0] @ Wn.T + b_ih[4:6] + (r * h0) @ Un.T + b_hh[4:6])
    _, h_after, _ = reference.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True)
    _, h_before, _ = reference.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=False)
    assert_close(h_after, (1 - z) * n_after + z * h0, "kernel_vs_reference", np.float64, "reset_after=True")
    assert_close(h_before, (1 - z) * n_before + z * h0, "kernel_vs_reference", np.float64, "reset_after=False")
    assert np.abs(h_after - h_before).max() > 1e-3
    # With h0 = 0 the variants differ only by r ⊙ b_hn vs b_hn; without biases they coincide.
    _, a, _ = reference.gru_forward(x, None, w_ih, w_hh, None, None, reset_after=True)
    _, b, _ = reference.gru_forward(x, None, w_ih, w_hh, None, None, reset_after=False)
    assert_close(a, b, "kernel_vs_reference", np.float64)
    _, a, _ = reference.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh, reset_after=True)
    _, b, _ = reference.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh, reset_after=False)
    assert np.abs(a - b).max() > 1e-3


def test_rnn_relu_and_tanh_by_hand():
    x = np.array([[[1.0], [-1.0]]])                    # T=1, B=2, I=1
    w_ih, w_hh, b_ih, b_hh = np.array([[2.0]]), np.array([[1.0]]), np.array([0.25]), np.array([-0.5])
    h0 = np.array([[0.5], [0.5]])
    _, h_relu, _ = reference.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="relu")
    _, h_tanh, _ = reference.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh")
    pre = np.array([[2.0 + 0.25 + 0.5 - 0.5], [-2.0 + 0.25 + 0.5 - 0.5]])
    assert_close(h_relu, [[2.25], [0.0]], "kernel_vs_reference", np.float64, "relu")
    assert_close(h_tanh, np.tanh(pre), "kernel_vs_reference", np.float64, "tanh")


def test_relu_derivative_is_zero_at_and_below_the_kink():
    """relu'(0) = 0 as in torch: a pre-activation of exactly 0 passes no gradient."""
    x = np.array([[[1.0], [-1.0], [2.0]]])               # pre = x - 1 = 0, -2, 1
    _, cache = forward("rnn", {"nonlinearity": "relu"},
                       dict(x=x, h0=None, w_ih=np.array([[1.0]]), w_hh=np.array([[1.0]]),
                            b_ih=np.array([-1.0]), b_hh=None))
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = reference.rnn_backward(cache, np.ones((1, 3, 1)))
    np.testing.assert_array_equal(dx[0, :, 0], [0.0, 0.0, 1.0])
    assert db_hh is None and db_ih[0] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# lengths
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, opts", CELLS)
def test_lengths_semantics(cell, opts, rng):
    T, B, I, H = 5, 3, 2, 3
    lengths = np.array([5, 2, 3])
    inp = make_inputs(rng, cell, T, B, I, H, opts=opts, lengths=lengths)
    outputs, cache = forward(cell, opts, inp, lengths)
    y = outputs[0]
    y_unpadded = forward(cell, opts, inp, None)[0][0]
    for b, L in enumerate(lengths):
        np.testing.assert_array_equal(y[L:, b], 0.0)                          # padded outputs are exactly zero
        assert L == T or np.any(y_unpadded[L:, b] != 0.0)                    # ... and would not be without lengths
        # final state of sample b = a run over its truncated sequence alone
        alone = dict(inp, x=inp["x"][:L, b:b + 1].copy(), **{s: inp[s][b:b + 1] for s in state_names(cell)})
        outs_alone, _ = forward(cell, opts, alone)
        assert_close(y[:L, b:b + 1], outs_alone[0], "kernel_vs_reference", np.float64, f"y[:{L}, {b}]")
        for k in range(1, len(outputs)):
            assert_close(outputs[k][b:b + 1], outs_alone[k], "kernel_vs_reference", np.float64, f"state {k}, b={b}")

    cotangents = [rng.standard_normal(o.shape) for o in outputs]
    grads = backward(cell, cache, cotangents[0], cotangents[1:])
    dx = grads[0]
    for b, L in enumerate(lengths):
        np.testing.assert_array_equal(dx[L:, b], 0.0)                         # padded steps get no gradient
        assert np.any(dx[:L, b] != 0.0)
    # dy at padded steps is ignored: changing it changes no gradient at all
    dy_changed = cotangents[0].copy()
    for b, L in enumerate(lengths):
        dy_changed[L:, b] = 1e3 * rng.standard_normal(dy_changed[L:, b].shape)
    for name, a, g in zip(grad_names(cell), backward(cell, cache, dy_changed, cotangents[1:]), grads):
        np.testing.assert_array_equal(a, g, err_msg=name)


@pytest.mark.parametrize("cell, opts", CELLS)
def test_full_lengths_equal_no_lengths(cell, opts, rng):
    inp = make_inputs(rng, cell, 3, 2, 3, 2, opts=opts)
    with_lengths, cache_l = forward(cell, opts, inp, np.array([3, 3]))
    without, cache_n = forward(cell, opts, inp, None)
    for a, b in zip(with_lengths, without):
        np.testing.assert_array_equal(a, b)
    cot = [rng.standard_normal(o.shape) for o in without]
    for a, b in zip(backward(cell, cache_l, cot[0], cot[1:]), backward(cell, cache_n, cot[0], cot[1:])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell, opts", CELLS)
def test_inference_mode_returns_no_cache(cell, opts, rng):
    inp = make_inputs(rng, cell, 3, 2, 3, 2, opts=opts)
    train_out, cache = forward(cell, opts, inp, [3, 1], training=True)
    eval_out, no_cache = forward(cell, opts, inp, [3, 1], training=False)
    assert cache is not None and no_cache is None
    for a, b in zip(train_out, eval_out):
        np.testing.assert_array_equal(a, b)


def test_backward_rejects_a_cache_from_another_op(rng):
    inp = make_inputs(rng, "gru", 2, 1, 2, 2, opts={"reset_after": True})
    _, cache = forward("gru", {"reset_after": True}, inp)
    with pytest.raises(ValueError, match="cache"):
        reference.lstm_backward(cache, None)


# ---------------------------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, opts", CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_float32_in_float32_out(cell, opts, bias, rng):
    lengths = [4, 2]
    inp64 = cast(make_inputs(rng, cell, 4, 2, 3, 5, bias=bias, opts=opts, lengths=lengths), np.float32)
    inp64 = cast(inp64, np.float64)                    # the same values, exactly representable in float32
    inp32 = cast(inp64, np.float32)
    out32, cache32 = forward(cell, opts, inp32, lengths)
    out64, cache64 = forward(cell, opts, inp64, lengths)
    for k, (a, b) in enumerate(zip(out32, out64)):
        assert a.dtype == np.float32, f"output {k}"
        assert_close(a, b, "kernel_vs_reference", np.float32, f"output {k}")
    cot64 = [rng.standard_normal(o.shape).astype(np.float32).astype(np.float64) for o in out64]
    cot32 = [c.astype(np.float32) for c in cot64]
    grads32 = backward(cell, cache32, cot32[0], cot32[1:])
    grads64 = backward(cell, cache64, cot64[0], cot64[1:])
    for name, a, b in zip(grad_names(cell), grads32, grads64):
        if b is None:
            assert a is None, name
            continue
        assert a.dtype == np.float32, f"d{name}"
        assert_close(a, b, "kernel_vs_reference", np.float32, f"d{name}")


# ---------------------------------------------------------------------------------------------------------------
# masked_softmax
# ---------------------------------------------------------------------------------------------------------------

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
    numeric = numeric_grad(lambda: np.sum(reference.masked_softmax(e, mask) * dalpha), {"e": e}, "e")
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
