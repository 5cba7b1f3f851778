"""Tests of rnncore.reference, the pure-NumPy executable spec, for the recurrent ops (its masked softmax:
tests/test_reference_masked_softmax.py).

Every expectation here comes from somewhere other than the reference's own code path: central finite differences
(gradients), a per-sample hand-written recurrence copied from docs/design.md section 2 (forward equations and lengths),
or explicit truncation of the sequences (lengths).
The cell variants, their inputs and the forward/backward/loss drivers are the shared ones in tests/support/cells.py
(the finite differences: tests/support/arrays.py).
"""

import numpy as np
import pytest

from rnncore import reference
from rnncore._cell_table import GRU, LSTM

from support.arrays import numerical_gradient
from support.cells import CELL_IDS, CELLS, loss, make_inputs, run_backward, run_forward
from support.tolerances import assert_close

GRU_RESET_AFTER = CELLS[CELL_IDS.index("gru_reset_after")]


# ---------------------------------------------------------------------------------------------------------------
# Hand-written steps, straight from docs/design.md section 2 (independent of the reference: per-gate weight slices,
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


def hand_run(cell, inp):
    """Run each sample b alone over its valid prefix x[:lengths[b], b]; y is zero-padded. Returns (y, h_n, c_n)."""
    x = inp["x"]
    T, B, _ = x.shape
    H = inp["w_hh"].shape[1]
    p = dict(inp)
    for name in ("b_ih", "b_hh"):
        if p[name] is None:
            p[name] = np.zeros(cell.gates * H)
    lengths = [T] * B if inp["lengths"] is None else inp["lengths"]
    y = np.zeros((T, B, H))
    h_n, c_n = np.zeros((B, H)), np.zeros((B, H))
    for b in range(B):
        h = np.zeros(H) if inp["h0"] is None else inp["h0"][b]
        c = np.zeros(H) if inp.get("c0") is None else inp["c0"][b]
        for t in range(lengths[b]):
            if cell.kind is LSTM:
                h, c = hand_lstm_step(x[t, b], h, c, p, cell.options)
            elif cell.kind is GRU:
                h = hand_gru_step(x[t, b], h, p, cell.options)
            else:
                h = hand_rnn_step(x[t, b], h, p, cell.options)
            y[t, b] = h
        h_n[b], c_n[b] = h, c
    return y, h_n, c_n


def min_abs_relu_preactivation(inp):
    """Smallest |pre-activation| of a relu RNN over all valid steps (to keep finite differences off the kink)."""
    x, T, B = inp["x"], inp["x"].shape[0], inp["x"].shape[1]
    p = dict(inp, b_ih=inp["b_ih"] if inp["b_ih"] is not None else 0.0,
             b_hh=inp["b_hh"] if inp["b_hh"] is not None else 0.0)
    lengths = [T] * B if inp["lengths"] is None else inp["lengths"]
    smallest = np.inf
    for b in range(B):
        h = inp["h0"][b]
        for t in range(lengths[b]):
            pre = hand_rnn_pre(x[t, b], h, p)
            smallest = min(smallest, np.abs(pre).min())
            h = np.maximum(pre, 0.0)
    return smallest


def inputs_for(rng, cell, T, B, I, H, lengths=None, bias=True, dtype=np.float64):
    """cells.make_inputs with explicit per-sample ``lengths`` (or None). A relu RNN is redrawn until no valid
    pre-activation is within 1e-2 of the kink, where a central difference would straddle the jump."""
    while True:
        inputs, upstream = make_inputs(rng, cell, T, B, I, H, dtype, bias=bias)
        inputs["lengths"] = None if lengths is None else np.array(lengths)
        if cell.options.get("nonlinearity") != "relu" or min_abs_relu_preactivation(inputs) > 1e-2:
            return inputs, upstream


def as_float64(arrays):
    """The same dict with its float arrays in float64 (lengths and None untouched)."""
    return {k: v.astype(np.float64) if v is not None and v.dtype.kind == "f" else v for k, v in arrays.items()}


# ---------------------------------------------------------------------------------------------------------------
# Gradients: every backward output against float64 central differences
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T, B, I, H, lengths", [
    pytest.param(3, 2, 3, 2, None, id="T3B2I3H2"),
    pytest.param(3, 2, 3, 2, [3, 1], id="T3B2I3H2-lengths31"),
    pytest.param(4, 3, 2, 3, [2, 4, 1], id="T4B3I2H3-lengths241"),
    pytest.param(1, 1, 1, 1, None, id="T1B1I1H1"),
])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck(cell, T, B, I, H, lengths, bias, rng):
    inputs, upstream = inputs_for(rng, cell, T, B, I, H, lengths, bias=bias)
    _, cache = run_forward(reference, cell, inputs)

    def current_loss():   # through the inference path
        return loss(run_forward(reference, cell, inputs, training=False)[0], upstream)

    grads = run_backward(reference, cell, cache, upstream)   # (asserts one gradient per input)
    for name, dname in zip(cell.input_names, cell.gradient_names):
        g = grads[dname]
        if inputs[name] is None:
            assert g is None, f"{dname}: gradient of a missing bias must be None"
            continue
        assert g.shape == inputs[name].shape and g.dtype == np.float64, dname
        assert_close(g, numerical_gradient(current_loss, inputs[name]), "gradcheck", np.float64, dname)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_missing_gradients_are_zeros(cell, rng):
    """dy / dh_n / dc_n = None means zeros; a backward with only dh_n matches its finite difference."""
    inputs, upstream = inputs_for(rng, cell, 3, 2, 3, 2, lengths=[2, 3])
    _, cache = run_forward(reference, cell, inputs)
    missing = {k: None for k in upstream}
    for g in run_backward(reference, cell, cache, missing).values():
        np.testing.assert_array_equal(g, 0.0)
    explicit = {k: np.zeros_like(v) for k, v in upstream.items()}
    explicit["dh_n"] = upstream["dh_n"]
    only_dh = run_backward(reference, cell, cache, dict(missing, dh_n=upstream["dh_n"]))
    explicit_grads = run_backward(reference, cell, cache, explicit)
    for name in cell.gradient_names:
        np.testing.assert_array_equal(only_dh[name], explicit_grads[name], err_msg=name)

    def current_loss():   # = sum(h_n * dh_n)
        return loss(run_forward(reference, cell, inputs, training=False)[0], explicit)
    assert_close(only_dh["dx"], numerical_gradient(current_loss, inputs["x"]), "gradcheck", np.float64, "dx")


# ---------------------------------------------------------------------------------------------------------------
# Forward equations: against the hand-written recurrence
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T, B, lengths", [(1, 2, None), (4, 3, None), (4, 3, [4, 1, 3])])
def test_forward_matches_hand_equations(cell, T, B, lengths, rng):
    inputs, _ = inputs_for(rng, cell, T, B, 3, 2, lengths)
    outputs, _ = run_forward(reference, cell, inputs)
    y, h_n, c_n = hand_run(cell, inputs)
    assert_close(outputs["y"], y, "kernel_vs_reference", np.float64, "y")
    assert_close(outputs["h_n"], h_n, "kernel_vs_reference", np.float64, "h_n")
    if cell.has_cell_state:
        assert_close(outputs["c_n"], c_n, "kernel_vs_reference", np.float64, "c_n")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_none_states_and_biases_mean_zeros(cell, rng):
    inputs, _ = inputs_for(rng, cell, 3, 2, 3, 2)
    GH, H = cell.gates * 2, 2
    zeroed = dict(inputs, b_ih=np.zeros(GH), b_hh=np.zeros(GH), **{s: np.zeros((2, H)) for s in cell.state_names})
    missing = dict(inputs, b_ih=None, b_hh=None, **{s: None for s in cell.state_names})
    out_missing = run_forward(reference, cell, missing)[0]
    out_zeroed = run_forward(reference, cell, zeroed)[0]
    for name in cell.output_names:
        assert_close(out_missing[name], out_zeroed[name], "kernel_vs_reference", np.float64, name)
    y, h_n, _ = hand_run(cell, missing)
    assert_close(out_missing["y"], y, "kernel_vs_reference", np.float64, "y")


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
    """The two GRU candidates differ exactly where docs/design.md says: inside or outside the W_hn product."""
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
    *_, cache = reference.rnn_forward(x, None, np.array([[1.0]]), np.array([[1.0]]), np.array([-1.0]), None,
                                      nonlinearity="relu")
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = reference.rnn_backward(cache, np.ones((1, 3, 1)))
    np.testing.assert_array_equal(dx[0, :, 0], [0.0, 0.0, 1.0])
    assert db_hh is None and db_ih[0] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# lengths
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_lengths_semantics(cell, rng):
    T, B, I, H = 5, 3, 2, 3
    inputs, upstream = inputs_for(rng, cell, T, B, I, H, lengths=[5, 2, 3])
    lengths = inputs["lengths"]
    outputs, cache = run_forward(reference, cell, inputs)
    y = outputs["y"]
    y_unpadded = run_forward(reference, cell, dict(inputs, lengths=None))[0]["y"]
    for b, L in enumerate(lengths):
        np.testing.assert_array_equal(y[L:, b], 0.0)                          # padded outputs are exactly zero
        assert L == T or np.any(y_unpadded[L:, b] != 0.0)                    # ... and would not be without lengths
        # final state of sample b = a run over its truncated sequence alone
        alone = dict(inputs, x=inputs["x"][:L, b:b + 1].copy(), lengths=None,
                     **{s: inputs[s][b:b + 1] for s in cell.state_names})
        outs_alone, _ = run_forward(reference, cell, alone)
        assert_close(y[:L, b:b + 1], outs_alone["y"], "kernel_vs_reference", np.float64, f"y[:{L}, {b}]")
        for name in cell.output_names[1:]:
            assert_close(outputs[name][b:b + 1], outs_alone[name], "kernel_vs_reference", np.float64,
                         f"{name}, b={b}")

    grads = run_backward(reference, cell, cache, upstream)
    dx = grads["dx"]
    for b, L in enumerate(lengths):
        np.testing.assert_array_equal(dx[L:, b], 0.0)                         # padded steps get no gradient
        assert np.any(dx[:L, b] != 0.0)
    # dy at padded steps is ignored: changing it changes no gradient at all
    dy_changed = upstream["dy"].copy()
    for b, L in enumerate(lengths):
        dy_changed[L:, b] = 1e3 * rng.standard_normal(dy_changed[L:, b].shape)
    changed = run_backward(reference, cell, cache, dict(upstream, dy=dy_changed))
    for name in cell.gradient_names:
        np.testing.assert_array_equal(changed[name], grads[name], err_msg=name)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_full_lengths_equal_no_lengths(cell, rng):
    inputs, upstream = inputs_for(rng, cell, 3, 2, 3, 2)
    with_lengths, cache_l = run_forward(reference, cell, dict(inputs, lengths=np.array([3, 3])))
    without, cache_n = run_forward(reference, cell, inputs)
    for name in cell.output_names:
        np.testing.assert_array_equal(with_lengths[name], without[name], err_msg=name)
    grads_l = run_backward(reference, cell, cache_l, upstream)
    grads_n = run_backward(reference, cell, cache_n, upstream)
    for name in cell.gradient_names:
        np.testing.assert_array_equal(grads_l[name], grads_n[name], err_msg=name)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_inference_mode_returns_no_cache(cell, rng):
    inputs, _ = inputs_for(rng, cell, 3, 2, 3, 2, lengths=[3, 1])
    train_out, cache = run_forward(reference, cell, inputs, training=True)
    eval_out, no_cache = run_forward(reference, cell, inputs, training=False)
    assert cache is not None and no_cache is None
    for name in cell.output_names:
        np.testing.assert_array_equal(train_out[name], eval_out[name], err_msg=name)


def test_backward_rejects_a_cache_from_another_op(rng):
    inputs, _ = inputs_for(rng, GRU_RESET_AFTER, 2, 1, 2, 2)
    _, cache = run_forward(reference, GRU_RESET_AFTER, inputs)
    with pytest.raises(ValueError, match="cache"):
        reference.lstm_backward(cache, None)


# ---------------------------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_float32_in_float32_out(cell, bias, rng):
    inp32, up32 = inputs_for(rng, cell, 4, 2, 3, 5, lengths=[4, 2], bias=bias, dtype=np.float32)
    inp64, up64 = as_float64(inp32), as_float64(up32)   # the same values, exactly representable in float32
    out32, cache32 = run_forward(reference, cell, inp32)
    out64, cache64 = run_forward(reference, cell, inp64)
    for name in cell.output_names:
        assert out32[name].dtype == np.float32, name
        assert_close(out32[name], out64[name], "kernel_vs_reference", np.float32, name)
    grads32 = run_backward(reference, cell, cache32, up32)
    grads64 = run_backward(reference, cell, cache64, up64)
    for name in cell.gradient_names:
        a, b = grads32[name], grads64[name]
        if b is None:
            assert a is None, name
            continue
        assert a.dtype == np.float32, name
        assert_close(a, b, "kernel_vs_reference", np.float32, name)
