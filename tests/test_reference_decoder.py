"""Tests of rnncore.reference.attention_decoder_forward/backward, the NumPy spec of the fused attention decoder.

Expectations come from elsewhere than the twin's code path: float64 central differences of every gradient (every
cell × score × position × input feeding × bias combination, then hypothesis shapes), the course's date model
written out by hand, stepping one decoder step at a time, and PyTorch's autograd on decoders written the way torch
users write them (tests/fixtures/make_torch_decoder_fixtures.py → torch_decoder.npz).
"""

import contextlib
import itertools
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnncore import reference

from support.arrays import numerical_gradient
from support.fixtures import FIXTURE_DIR, load_npz
from support.tolerances import assert_close

# (cell, its options): every row of the cell table
CELLS = [("lstm", {}), ("gru", dict(reset_after=True)), ("gru", dict(reset_after=False)),
         ("rnn", dict(nonlinearity="tanh")), ("rnn", dict(nonlinearity="relu"))]
CELL_IDS = ["lstm", "gru_after", "gru_before", "rnn_tanh", "rnn_relu"]
# (position, input_feeding)
POSITIONS = [("before", False), ("after", False), ("after", True)]
POSITION_IDS = ["before", "after", "after_feeding"]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
OUTPUT_NAMES = ("outputs", "contexts", "alpha", "h_n", "c_n")


@contextlib.contextmanager
def strict():
    """Any warning or floating-point divide/overflow/invalid becomes an exception (underflow is fine)."""
    with warnings.catch_warnings(), np.errstate(divide="raise", over="raise", invalid="raise"):
        warnings.simplefilter("error")
        yield


def decoder_inputs(rng, cell, score, position, feeding, bias=True, score_bias=False, relu=False, Ty=2, B=3, Tx=3,
                   E=2, H=2, A=2, Dv=2, O=3, lengths=True):
    """(arrays by argument name, options by name) for one decoder call; float64; lengths hold 0 and Tx."""
    G = GATES[cell]
    O = H if position == "before" else O
    fed = Dv if position == "before" else (O if feeding else 0)
    K = A if score == "additive" else H
    p = dict(x=rng.standard_normal((Ty, B, E)), h0=rng.standard_normal((B, H)),
             c0=rng.standard_normal((B, H)) if cell == "lstm" else None,
             w_ih=0.6 * rng.standard_normal((G * H, E + fed)), w_hh=0.6 * rng.standard_normal((G * H, H)),
             b_ih=0.4 * rng.standard_normal(G * H) if bias else None,
             b_hh=0.4 * rng.standard_normal(G * H) if bias else None,
             keys=rng.standard_normal((B, Tx, K)), values=rng.standard_normal((B, Tx, Dv)))
    options = dict(score=score, position=position, input_feeding=feeding)
    if score == "additive":
        p.update(w_q=0.8 * rng.standard_normal((A, H)), b_a=0.4 * rng.standard_normal(A) if bias else None,
                 w_v=rng.standard_normal(A), score_bias=np.asarray(0.3) if score_bias else None)
        options["energy_activation"] = "relu" if relu else None
    if position == "after":
        p.update(w_c=0.6 * rng.standard_normal((O, Dv + H)), b_c=0.4 * rng.standard_normal(O) if bias else None)
    if feeding:
        p["o0"] = rng.standard_normal((B, O))
    if lengths:
        lengths = rng.integers(0, Tx + 1, size=B)
        lengths[0] = Tx
        if B > 1:
            lengths[1] = 0
        options["lengths"] = lengths
    return p, options


def run(cell, cell_options, p, options, training=True):
    return reference.attention_decoder_forward(**p, cell=cell, **cell_options, **options, training=training)


def upstream(rng, results):
    """Random upstream gradients for (outputs, contexts, alpha, h_n, c_n); None where the result is None."""
    return [None if r is None else rng.standard_normal(r.shape) for r in results[:5]]


def check_every_gradient(rng, cell, cell_options, p, options):
    """Every gradient the backward returns against float64 central differences of Σ result ⊙ upstream."""
    with strict():
        results = run(cell, cell_options, p, options)
        ups = upstream(rng, results)
        grads = reference.attention_decoder_backward(results[5], *ups)

    def loss():
        out = run(cell, cell_options, p, options, training=False)
        return sum(np.sum(r * u) for r, u in zip(out[:5], ups) if r is not None)

    for name, value in p.items():
        g = grads["d" + name]
        if value is None:
            assert g is None, name
            continue
        assert g.shape == np.shape(value) and g.dtype == np.float64, name
        arr = np.array(value, dtype=np.float64)
        p[name] = arr                  # perturbed in place by numerical_gradient
        assert_close(g, numerical_gradient(loss, arr), "gradcheck", np.float64, "d" + name)
    absent = {"dc0", "db_a", "dw_q", "dw_v", "dscore_bias", "dw_c", "db_c", "do0"} - {"d" + n for n in p}
    for name in absent:
        assert grads[name] is None, name
    return grads


def relu_kinks_far(cell, cell_options, p, options):
    """False when the energy relu has an argument within 1e-4 of 0, where central differences straddle the kink
    (the RNN's relu: its pre-activations are continuous draws, within 1e-6 of 0 with negligible probability)."""
    if options.get("energy_activation") != "relu":
        return True
    for step in run(cell, cell_options, p, options)[5]["steps"]:
        a = step["attention"]
        s = a["u"] @ a["score_vector"] + (0.0 if a["score_bias"] is None else float(a["score_bias"]))
        if np.min(np.abs(s)) < 1e-4:
            return False
    return True


# ---- central differences: every combination, then hypothesis shapes ----

@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("position,feeding", POSITIONS, ids=POSITION_IDS)
@pytest.mark.parametrize("score", ["additive", "dot"])
@pytest.mark.parametrize("cell,cell_options", CELLS, ids=CELL_IDS)
def test_gradcheck_every_combination(cell, cell_options, score, position, feeding, bias):
    rng = np.random.default_rng(zlib.crc32(repr((cell, cell_options, score, position, feeding, bias)).encode()))
    p, options = decoder_inputs(rng, cell, score, position, feeding, bias=bias, score_bias=bias, relu=bias)
    while not relu_kinks_far(cell, cell_options, p, options):   # draw again (rare)
        p, options = decoder_inputs(rng, cell, score, position, feeding, bias=bias, score_bias=bias, relu=bias)
    check_every_gradient(rng, cell, cell_options, p, options)


@settings(max_examples=30)
@given(cell=st.sampled_from(range(len(CELLS))), score=st.sampled_from(["additive", "dot"]),
       position=st.sampled_from(range(len(POSITIONS))), bias=st.booleans(), score_bias=st.booleans(),
       relu=st.booleans(), use_lengths=st.booleans(), Ty=st.integers(1, 3), B=st.integers(1, 3),
       Tx=st.integers(1, 3), E=st.integers(0, 2), H=st.integers(1, 3), A=st.integers(1, 3), Dv=st.integers(1, 3),
       O=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_gradcheck_hypothesis_shapes(cell, score, position, bias, score_bias, relu, use_lengths, Ty, B, Tx, E, H, A,
                                     Dv, O, seed):
    (cell, cell_options), (position, feeding) = CELLS[cell], POSITIONS[position]
    if position == "after" and not feeding:
        E = max(E, 1)                  # the cell needs an input
    rng = np.random.default_rng(seed)
    p, options = decoder_inputs(rng, cell, score, position, feeding, bias, score_bias, relu, Ty, B, Tx, E, H, A, Dv,
                                O, use_lengths)
    if relu_kinks_far(cell, cell_options, p, options):
        check_every_gradient(rng, cell, cell_options, p, options)


def test_gradcheck_context_only_inputs(rng):
    """E = 0 (the course's model: the cell reads the context alone), and "after" with feeding only."""
    for position, feeding in (("before", False), ("after", True)):
        p, options = decoder_inputs(rng, "lstm", "additive", position, feeding, E=0, score_bias=True, relu=True)
        grads = check_every_gradient(rng, "lstm", {}, p, options)
        assert grads["dx"].shape == (2, 3, 0)


# ---- properties ----

@pytest.mark.parametrize("position,feeding", POSITIONS, ids=POSITION_IDS)
@pytest.mark.parametrize("score", ["additive", "dot"])
def test_empty_and_masked_sources_give_zero_context_and_gradients(rng, score, position, feeding):
    p, options = decoder_inputs(rng, "gru", score, position, feeding, B=4, Tx=4, score_bias=True, relu=True)
    options["lengths"] = np.array([4, 0, 2, 1])
    with strict():
        outputs, contexts, alpha, _, _, saved = run("gru", {}, p, options)
        ups = upstream(rng, (outputs, contexts, alpha, None, None))
        grads = reference.attention_decoder_backward(saved, *ups)
    keep = np.arange(4)[None, :] < options["lengths"][:, None]
    np.testing.assert_array_equal(alpha[:, ~keep], 0.0)
    np.testing.assert_array_equal(contexts[:, 1], 0.0)
    assert_close(alpha[:, [0, 2, 3]].sum(axis=-1), np.ones((2, 3)), "kernel_vs_reference", np.float64)
    for name in ("dkeys", "dvalues"):
        np.testing.assert_array_equal(grads[name][1], 0.0, err_msg=name)
        np.testing.assert_array_equal(grads[name][~keep], 0.0, err_msg=name)
    assert all(np.all(np.isfinite(g)) for g in grads.values() if g is not None)


@pytest.mark.parametrize("position,feeding", POSITIONS, ids=POSITION_IDS)
@pytest.mark.parametrize("cell,cell_options", CELLS[:2], ids=CELL_IDS[:2])
def test_one_step_per_call_with_the_state_passed_back_equals_the_whole_sequence(rng, cell, cell_options, position,
                                                                                feeding):
    """Decoding's use: Ty calls of one step (h0, c0, o0 = the previous call's h_n, c_n, output) give the same bits."""
    p, options = decoder_inputs(rng, cell, "additive", position, feeding, Ty=4, score_bias=True)
    whole = run(cell, cell_options, p, options, training=False)
    assert whole[5] is None
    h, c, o = p["h0"], p["c0"], p.get("o0")
    for t in range(4):
        one = dict(p, x=p["x"][t:t + 1], h0=h, c0=c, **({"o0": o} if feeding else {}))
        outputs, contexts, alpha, h, c, _ = run(cell, cell_options, one, options, training=False)
        o = outputs[0]
        for name, got, want in zip(OUTPUT_NAMES[:3], (outputs, contexts, alpha), whole[:3]):
            np.testing.assert_array_equal(got[0], want[t], err_msg=f"{name} step {t}")
    np.testing.assert_array_equal(h, whole[3])
    if cell == "lstm":
        np.testing.assert_array_equal(c, whole[4])


def test_none_upstream_means_zeros_and_float32_in_float32_out(rng):
    p, options = decoder_inputs(rng, "lstm", "additive", "after", True, score_bias=True)
    results = run("lstm", {}, p, options)
    zeros = reference.attention_decoder_backward(results[5], None)
    for name, g in zeros.items():
        if g is not None:
            np.testing.assert_array_equal(g, 0.0, err_msg=name)
    p32 = {k: None if v is None else np.asarray(v, dtype=np.float32) for k, v in p.items()}
    r32 = run("lstm", {}, p32, options)
    assert all(r.dtype == np.float32 for r in r32[:5])
    g32 = reference.attention_decoder_backward(r32[5], np.ones(r32[0].shape, np.float32))
    assert all(g.dtype == np.float32 for g in g32.values() if g is not None)
    for got, want in zip(r32[:5], results[:5]):
        assert_close(got, want, "kernel_vs_reference", np.float32)


def test_backward_twice_gives_the_same_result(rng):
    p, options = decoder_inputs(rng, "gru", "dot", "before", False)
    results = run("gru", {}, p, options)
    ups = upstream(rng, results)
    first = reference.attention_decoder_backward(results[5], *ups)
    second = reference.attention_decoder_backward(results[5], *ups)
    for name, g in first.items():
        if g is not None:
            np.testing.assert_array_equal(g, second[name], err_msg=name)


# ---- the course's date model, written out ----

def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def test_course_date_model_by_hand_equals_the_twin(rng):
    """The course's decoder for Ty steps: one_step_attention (RepeatVector(s) ++ a → Dense(10, tanh) → Dense(1, relu)
    → softmax over Tx → dot with a) then the post-attention LSTM on the context alone (Keras gates i, f, c, o =
    PyTorch's i, f, g, o; Keras kernels are [in, out])."""
    B, Tx, Ty, n_a, n_s, A = 3, 6, 3, 4, 5, 10
    a = rng.standard_normal((B, Tx, 2 * n_a))
    s, c = rng.standard_normal((B, n_s)), rng.standard_normal((B, n_s))
    dense1_w, dense1_b = 0.5 * rng.standard_normal((n_s + 2 * n_a, A)), 0.3 * rng.standard_normal(A)
    dense2_w, dense2_b = rng.standard_normal((A, 1)), np.array([0.2])
    kernel, recurrent, lstm_b = (0.4 * rng.standard_normal((2 * n_a, 4 * n_s)),
                                 0.4 * rng.standard_normal((n_s, 4 * n_s)), 0.2 * rng.standard_normal(4 * n_s))
    s0, c0 = s.copy(), c.copy()
    by_hand = []
    for _ in range(Ty):
        concat = np.concatenate([np.repeat(s[:, None, :], Tx, axis=1), a], axis=-1)
        energies = np.maximum(np.tanh(concat @ dense1_w + dense1_b) @ dense2_w + dense2_b, 0.0)[..., 0]
        alphas = np.exp(energies - energies.max(axis=1, keepdims=True))
        alphas /= alphas.sum(axis=1, keepdims=True)
        context = np.einsum("bt,btd->bd", alphas, a)
        z = context @ kernel + s @ recurrent + lstm_b
        i, f, g, o = sigmoid(z[:, :n_s]), sigmoid(z[:, n_s:2 * n_s]), np.tanh(z[:, 2 * n_s:3 * n_s]), sigmoid(
            z[:, 3 * n_s:])
        c = f * c + i * g
        s = o * np.tanh(c)
        by_hand.append((s, context, alphas))

    w1 = dense1_w.T                                      # [A, n_s + 2 n_a]: the query's columns, then the keys'
    outputs, contexts, alpha, h_n, c_n, _ = reference.attention_decoder_forward(
        np.zeros((Ty, B, 0)), s0, c0, kernel.T, recurrent.T, lstm_b, None,
        reference.additive_attention_keys(a, w1[:, n_s:]), a, score="additive", w_q=w1[:, :n_s], b_a=dense1_b,
        w_v=dense2_w[:, 0], score_bias=dense2_b[0], energy_activation="relu", position="before")
    for t, (s_t, ctx_t, alpha_t) in enumerate(by_hand):
        assert_close(outputs[t], s_t, "kernel_vs_reference", np.float64, f"s step {t}")
        assert_close(contexts[t], ctx_t, "kernel_vs_reference", np.float64, f"context step {t}")
        assert_close(alpha[t], alpha_t, "kernel_vs_reference", np.float64, f"alpha step {t}")
    assert_close(h_n, s, "kernel_vs_reference", np.float64, "s")
    assert_close(c_n, c, "kernel_vs_reference", np.float64, "c")


# ---- PyTorch autograd on decoders written the torch way ----

FIXTURE = FIXTURE_DIR / "torch_decoder.npz"


def fixture_case(case):
    data = load_npz(FIXTURE)
    return {k[len(case) + 1:]: v for k, v in data.items() if k.startswith(case + ".")}


def time_major(a):
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def compare_to_fixture(f, results, grads_by_input):
    """Outputs (batch-first in the fixture) and every input's gradient against torch's."""
    for name, got in zip(OUTPUT_NAMES, results):
        if got is not None:
            want = f[name] if name in ("h_n", "c_n") else time_major(f[name])
            assert_close(got, want, "fixture", np.float64, name)
    for name, got in grads_by_input.items():
        assert_close(got, f["d" + name], "fixture", np.float64, "d" + name)


def fixture_upstream(f):
    ups = [time_major(f["doutputs"]), time_major(f["dcontexts"]), time_major(f["dalpha"]), f["dh_n"]]
    return ups + [f.get("dc_n")]


def test_course_model_matches_torch():
    f = fixture_case("course")
    a, w1 = f["a"], f["w1"]
    Dv, Ty = a.shape[2], f["outputs"].shape[1]
    w_k, w_q = w1[:, :Dv], w1[:, Dv:]                    # the concatenation is [a ; s]
    keys = reference.additive_attention_keys(a, w_k)
    results = reference.attention_decoder_forward(
        np.zeros((Ty, a.shape[0], 0)), f["s0"], f["c0"], f["w_ih"], f["w_hh"], f["b_ih"], f["b_hh"], keys, a,
        f["lengths"], score="additive", w_q=w_q, b_a=f["b1"], w_v=f["w2"], score_bias=f["b2"],
        energy_activation="relu")
    g = reference.attention_decoder_backward(results[5], *fixture_upstream(f))
    dkeys_raw, dw_k = reference.additive_attention_keys_backward(a, w_k, g["dkeys"])
    compare_to_fixture(f, results[:5], dict(
        a=dkeys_raw + g["dvalues"], s0=g["dh0"], c0=g["dc0"], w1=np.concatenate([dw_k, g["dw_q"]], axis=1),
        b1=g["db_a"], w2=g["dw_v"], b2=g["dscore_bias"], w_ih=g["dw_ih"], w_hh=g["dw_hh"], b_ih=g["db_ih"],
        b_hh=g["db_hh"]))
    np.testing.assert_array_equal(results[2][:, 1], 0.0)   # the empty source


def test_luong_input_feeding_matches_torch():
    """Luong's "general" score is the dot score against keys projected once outside: k W^T."""
    f = fixture_case("luong_feeding")
    w_general, keys_raw = f["w_general"], f["keys"]
    projected = keys_raw @ w_general.T                   # [B, Tx, H]
    results = reference.attention_decoder_forward(
        time_major(f["x"]), f["h0"], f["c0"], f["w_ih"], f["w_hh"], f["b_ih"], f["b_hh"], projected, f["values"],
        f["lengths"], score="dot", position="after", input_feeding=True, w_c=f["w_c"], b_c=f["b_c"])
    g = reference.attention_decoder_backward(results[5], *fixture_upstream(f))
    compare_to_fixture(f, results[:5], dict(
        x=time_major(g["dx"]), h0=g["dh0"], c0=g["dc0"], keys=g["dkeys"] @ w_general,
        w_general=np.einsum("bth,btk->hk", g["dkeys"], keys_raw), values=g["dvalues"], w_ih=g["dw_ih"],
        w_hh=g["dw_hh"], b_ih=g["db_ih"], b_hh=g["db_hh"], w_c=g["dw_c"], b_c=g["db_c"]))


def test_bahdanau_gru_matches_torch():
    f = fixture_case("bahdanau_gru")
    keys_raw = f["keys"]
    results = reference.attention_decoder_forward(
        time_major(f["x"]), f["h0"], None, f["w_ih"], f["w_hh"], f["b_ih"], f["b_hh"],
        reference.additive_attention_keys(keys_raw, f["w_k"]), keys_raw, cell="gru", score="additive",
        w_q=f["w_q"], b_a=f["b_a"], w_v=f["w_v"], score_bias=f["score_bias"])
    assert results[4] is None
    g = reference.attention_decoder_backward(results[5], *fixture_upstream(f)[:4])
    dkeys_raw, dw_k = reference.additive_attention_keys_backward(keys_raw, f["w_k"], g["dkeys"])
    compare_to_fixture(f, results[:4], dict(
        x=time_major(g["dx"]), h0=g["dh0"], keys=dkeys_raw + g["dvalues"], w_k=dw_k, w_q=g["dw_q"], b_a=g["db_a"],
        w_v=g["dw_v"], score_bias=g["dscore_bias"], w_ih=g["dw_ih"], w_hh=g["dw_hh"], b_ih=g["db_ih"],
        b_hh=g["db_hh"]))


# ---- errors ----

@pytest.mark.parametrize("change,argument", [
    (dict(cell="lstmx"), "cell"), (dict(score="general"), "score"), (dict(position="middle"), "position"),
    (dict(c0=np.zeros((3, 2))), "c0"), (dict(w_q=None), "w_q"), (dict(input_feeding=True), "input_feeding"),
    (dict(w_ih=np.zeros((6, 3))), "w_ih"), (dict(x=np.zeros((2, 3))), "x"),
])
def test_bad_combinations_name_the_argument(rng, change, argument):
    p, options = decoder_inputs(rng, "gru", "additive", "before", False)
    kwargs = dict(p, cell="gru", **options)
    kwargs.update(change)
    with pytest.raises(ValueError, match=argument):
        reference.attention_decoder_forward(**kwargs)


def test_after_needs_an_input_and_w_c(rng):
    p, options = decoder_inputs(rng, "lstm", "dot", "after", False, E=0)
    with pytest.raises(ValueError, match="E >= 1"):
        run("lstm", {}, p, options)
    p, options = decoder_inputs(rng, "lstm", "dot", "after", False)
    with pytest.raises(ValueError, match="w_c"):
        run("lstm", {}, dict(p, w_c=None), options)
    with pytest.raises(ValueError, match="saved"):
        reference.attention_decoder_backward(None, None)


def test_every_combination_is_listed():
    """The grid above covers every cell-table row, both scores, both positions and feeding (a guard for new rows)."""
    from rnncore._cell_table import KINDS

    assert {c for c, _ in CELLS} == set(KINDS)
    assert len(list(itertools.product(CELLS, ["additive", "dot"], POSITIONS, [False, True]))) == 60
