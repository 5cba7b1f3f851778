"""The decoding session (rnncore.ops.DecoderSession: embedding gather, one decoder step, output layer and
log-softmax in one call, everything fixed over a decode prepared once) against its NumPy twin
rnncore.reference.decoder_session_step over hypothesis-drawn shapes (B = 1, H = 1, Tx = 1 included), every cell
variant, both scores, both positions, input feeding, both dtypes; several steps through one session (its products
are packed at the first); its copies of the weights; its argument checks."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from test_attention_decoder import make_args

import rnncore as rc
from rnncore import ops, reference
from rnncore._cell_table import VARIANTS

from support.arrays import DTYPE_IDS, DTYPES
from support.tolerances import tol

CELLS = [(v.kind.name, dict(v.options)) for v in VARIANTS]
CELL_IDS = [v.name for v in VARIANTS]
CONFIGS = [dict(score="additive", position="before"), dict(score="dot", position="before"),
           dict(score="additive", position="after"), dict(score="additive", position="after", input_feeding=True),
           dict(score="dot", position="after", input_feeding=True)]
CONFIG_IDS = ["additive-before", "dot-before", "additive-after", "additive-after-feeding", "dot-after-feeding"]
DECODER_ARGS = ("w_ih", "w_hh", "b_ih", "b_hh", "keys", "values", "lengths")


def session_args(rng, dtype, cell, options, config, B, H, Tx, E, A, Dv, O, V, Vin, biases):
    """(positional decoder arguments, keyword arguments) of a DecoderSession and its twin, and the state parts."""
    a = make_args(rng, dtype, cell, options, Ty=1, B=B, Tx=Tx, E=E, H=H, A=A, Dv=Dv, O=O, biases=biases,
                  b_a=biases, score_bias=biases, b_c=biases, relu=biases, **config)
    kw = {k: a[k] for k in ("cell", "score", "position", "input_feeding", "w_q", "b_a", "w_v", "score_bias",
                            "energy_activation", "w_c", "b_c")}
    kw.update(a["options"])
    out = a["w_c"].shape[0] if a["position"] == "after" else H
    kw.update(embedding=(rng.standard_normal((Vin, E)) * 0.6).astype(dtype) if E else None,
              w_out=(rng.standard_normal((V, out)) * 0.6).astype(dtype),
              b_out=(rng.standard_normal(V) * 0.6).astype(dtype) if biases else None)
    return [a[k] for k in DECODER_ARGS], kw, out


def twin_step(args, kw, tokens, h, c, fed):
    return reference.decoder_session_step(tokens, h, c, fed, *args, **kw)


NAMES = ("log_probs", "outputs", "alpha", "h_n", "c_n")


def assert_step(got, want, dtype):
    for name, g, w in zip(NAMES, got, want):
        if w is None:
            assert g is None, name
            continue
        assert g.dtype == np.dtype(dtype) and g.shape == w.shape, name
        np.testing.assert_allclose(g, w, err_msg=name, **tol("kernel_vs_reference", dtype))


@settings(max_examples=12, deadline=None)
@given(B=st.integers(1, 4), H=st.integers(1, 5), Tx=st.integers(1, 5), E=st.integers(0, 3), A=st.integers(1, 4),
       Dv=st.integers(1, 3), O=st.integers(1, 4), V=st.integers(1, 7), biases=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("cell,options", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_session_steps_match_the_reference(dtype, cell, options, config, B, H, Tx, E, A, Dv, O, V, biases, seed):
    if config["position"] == "after" and not config.get("input_feeding") and E == 0:
        E = 1  # the cell needs an input
    rng = np.random.default_rng(seed)
    Vin = 3
    args, kw, out = session_args(rng, dtype, cell, options, config, B, H, Tx, E, A, Dv, O, V, Vin, biases)
    session = ops.DecoderSession(*args, **kw)
    assert session.rows == B
    h = c = fed = None  # the first step from zeros, then three more passing the state back in
    for _ in range(4):
        tokens = rng.integers(0, Vin, B) if E else None
        got = session.step(tokens, h, c, fed)
        want = twin_step(args, kw, tokens, h, c, fed)
        assert_step(got, want, dtype)
        _, outputs, _, h, c = got
        fed = outputs if config.get("input_feeding") else None


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_session_keeps_copies_of_its_arrays(dtype):
    rng = np.random.default_rng(5)
    args, kw, _ = session_args(rng, dtype, "lstm", {}, CONFIGS[0], 3, 4, 5, 2, 3, 2, 4, 6, 4, True)
    session = ops.DecoderSession(*args, **kw)
    tokens = np.array([0, 3, 1])
    before = session.step(tokens)
    for arr in [*args, kw["w_q"], kw["w_v"], kw["embedding"], kw["w_out"], kw["b_out"]]:
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
            arr[...] = 0.0
    after = session.step(tokens)
    for name, b, a in zip(NAMES, before, after):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_session_rows_are_independent():
    """A row's result does not depend on the rows around it (up to rounding: products over different row counts)."""
    rng = np.random.default_rng(8)
    args, kw, _ = session_args(rng, np.float64, "gru", {"reset_after": True}, CONFIGS[2], 4, 3, 4, 2, 3, 2, 3, 5, 4,
                               True)
    tokens = np.array([1, 0, 3, 2])
    whole = ops.DecoderSession(*args, **kw).step(tokens)
    for b in range(4):
        one = [a[b:b + 1] if isinstance(a, np.ndarray) and a.ndim and a.shape[0] == 4 and name in ("keys", "values",
                                                                                                 "lengths")
               else a for name, a in zip(DECODER_ARGS, args)]
        alone = ops.DecoderSession(*one, **kw).step(tokens[b:b + 1])
        for name, w, g in zip(NAMES, whole, alone):
            if w is not None:
                np.testing.assert_allclose(g[0], w[b], err_msg=name, **tol("kernel_vs_reference", np.float64))


def _session(dtype=np.float64, cell="lstm", config=None):
    rng = np.random.default_rng(2)
    return session_args(rng, dtype, cell, {"reset_after": True} if cell == "gru" else {}, config or CONFIGS[0], 2, 3,
                        4, 2, 3, 2, 3, 5, 4, True)


@pytest.mark.parametrize("change,exc,match", [
    (lambda a, k: k.update(embedding=k["embedding"][:, :1]), ValueError, r"x must have shape|w_ih must have shape"),
    (lambda a, k: k.update(embedding=k["embedding"][:0]), ValueError, r"embedding must have shape \[Vin, E\]"),
    (lambda a, k: k.update(embedding=k["embedding"].astype(np.float32)), TypeError, r"embedding has dtype float32"),
    (lambda a, k: k.update(w_out=k["w_out"][:, :2]), ValueError, r"w_out must have shape"),
    (lambda a, k: k.update(w_out=k["w_out"][:0]), ValueError, r"w_out must have shape \[V, O\] with V >= 1"),
    (lambda a, k: k.update(b_out=k["b_out"][:2]), ValueError, r"b_out must have shape"),
    (lambda a, k: k.update(w_out=None), TypeError, r"w_out must be a numpy"),
    (lambda a, k: a.__setitem__(0, a[0][:, :3]), ValueError, r"w_ih must have shape"),
    (lambda a, k: a.__setitem__(4, list(a[4])), TypeError, r"keys must be a numpy"),
])
def test_session_checks_its_arguments(change, exc, match):
    args, kw, _ = _session()
    change(args, kw)
    with pytest.raises(exc, match=match):
        ops.DecoderSession(*args, **kw)


@pytest.mark.parametrize("cell,step,exc,match", [
    ("lstm", lambda s: s.step(np.array([0, 4])), ValueError, r"tokens must lie in 0\.\.Vin-1 = 0\.\.3, got \[4\]"),
    ("lstm", lambda s: s.step(np.array([0, -1])), ValueError, r"tokens must lie in 0\.\.Vin-1"),
    ("lstm", lambda s: s.step(np.array([0, 1, 2])), ValueError, r"tokens must have shape \(2,\)"),
    ("lstm", lambda s: s.step(np.array([0.0, 1.0])), TypeError, r"tokens must hold integers"),
    ("lstm", lambda s: s.step([0, 1], np.zeros((2, 4))), ValueError, r"h must have shape \[B, H\] = \(2, 3\)"),
    ("lstm", lambda s: s.step([0, 1], np.zeros((2, 3), np.float32)), TypeError, r"h has dtype float32"),
    ("lstm", lambda s: s.step([0, 1], None, np.zeros((3, 3))), ValueError, r"c must have shape"),
    ("gru", lambda s: s.step([0, 1], None, np.zeros((2, 3))), ValueError, r"c must be None with cell='gru'"),
    ("lstm", lambda s: s.step([0, 1], None, None, np.zeros((2, 3))), ValueError, r"fed must be None without"),
])
def test_session_step_checks_its_arguments(cell, step, exc, match):
    args, kw, _ = _session(cell=cell)
    session = ops.DecoderSession(*args, **kw)
    with pytest.raises(exc, match=match):
        step(session)
    assert session.step(np.array([0, 1]))[0].shape == (2, 5), "a rejected step leaves the session usable"


def test_session_without_embedding_takes_no_tokens():
    rng = np.random.default_rng(4)
    args, kw, _ = session_args(rng, np.float64, "lstm", {}, CONFIGS[0], 2, 3, 4, 0, 3, 2, 3, 5, 4, True)
    session = ops.DecoderSession(*args, **kw)
    assert_step(session.step(None), twin_step(args, kw, None, None, None, None), np.float64)
    with pytest.raises(ValueError, match=r"tokens must be None for a session without an embedding"):
        session.step(np.array([0, 1]))


# ---- Seq2Seq's step through its session -----------------------------------------------------------------------------

SEQ2SEQ_CONFIGS = [dict(), dict(cell="gru", feed_targets=False),
                   dict(attention="dot", input_feeding=True, decoder_hidden=4), dict(attention="general", cell="rnn"),
                   dict(attention="concat", position="after", bridge="zeros")]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", SEQ2SEQ_CONFIGS, ids=["lstm-additive", "gru-no-targets", "dot-feeding",
                                                         "general-rnn", "concat-after"])
def test_seq2seq_steps_match_its_teacher_forced_forward(config, dtype):
    """Three steps through the session (made at the first, carried in the state) give the log-softmax of the
    teacher-forced logits of the same inputs."""
    kw = dict(source_vocab=7, target_vocab=6, embedding_size=3, encoder_hidden=2, decoder_hidden=3, dtype=dtype,
              seed=1)
    kw.update(config)
    if kw.get("attention", "additive") in ("additive", "concat"):
        kw["attention_units"] = 2
    model = rc.Seq2Seq(**kw).eval()
    source = np.array([[4, 5, 6, 0], [3, 3, 0, 0]])
    inputs = np.array([[1, 4, 5], [1, 3, 3]])
    logits, _ = model(source, [3, 2], inputs)
    state = model.start(source)
    got = []
    for t in range(3):
        log_probs, state = model.step(inputs[:, t], state)
        got.append(log_probs)
    assert "session" in state
    want = reference.log_softmax(logits)
    np.testing.assert_allclose(np.stack(got, axis=1), want, **tol("kernel_vs_reference", dtype))


def test_seq2seq_reorder_keeps_the_session_within_a_source_only():
    model = rc.Seq2Seq(7, 6, embedding_size=3, encoder_hidden=2, decoder_hidden=3, attention_units=2, seed=1).eval()
    state = model.start(np.array([[4, 5, 6], [3, 3, 4]]))
    _, state = model.step(np.array([1, 1]), state)
    swapped = model.reorder(state, np.array([1, 0]))
    assert "session" not in swapped  # rows changed source: the next step makes a new session
    expanded = model.reorder(state, np.array([0, 0, 1, 1]))
    _, expanded = model.step(np.array([4, 5, 3, 3]), expanded)
    session = expanded["session"]
    moved = model.reorder(expanded, np.array([1, 0, 3, 3]))
    assert moved["session"] is session  # beams reordered within their source: the same session
    log_probs, _ = model.step(np.array([5, 4, 3, 3]), moved)
    assert log_probs.shape == (4, 6)
    # the kept session reads the gathered h, c and α: the same numbers as a fresh session on the same state
    fresh = {k: v for k, v in moved.items() if k != "session"}
    want, _ = model.step(np.array([5, 4, 3, 3]), fresh)
    np.testing.assert_array_equal(log_probs, want)
    assert not np.array_equal(log_probs[0], log_probs[1])  # the rows' states really differ
