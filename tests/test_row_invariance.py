"""Row invariance (issue 13): inside ``rnncore.ops.row_invariant()`` every op on Seq2Seq's decode path (the encoder's
recurrent layers, the key projection, the fused decoder step, the output Linear, log_softmax, top_k) gives each row
the same bits alone as inside a batch, and inside a batch padded to another source length, on 1 and 2 threads.
The mode's results equal the default paths' to the float tolerance (the same math, other roundings)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnncore as rc
from rnncore import _core, ops

from support.cells import CELLS, LAYERS, make_inputs, run_backward, run_forward
from support.decoder_calls import call_forward, make_args
from support.threads import team
from support.tolerances import assert_close, assert_identical

DTYPES = [np.float32, np.float64]
LAYER_CASES = [p.values for p in LAYERS]  # (layer class, cell options)
DECODER_CELLS = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {"nonlinearity": "relu"})]


def invariant():
    """The mode under test (the context manager every check below runs the op in)."""
    return ops.row_invariant()


def check_rows(run, batch, alone, dtype, where):
    """run(batch) -> the op's outputs on 1 and 2 threads in the mode; alone(i, outputs) yields (name, row i's part of
    them, the op's result for row i alone), which must be identical. Outside the mode the batch's float outputs equal
    the mode's to `dtype`'s tolerance (the same math)."""
    for threads in (1, 2):
        with team(threads), invariant():
            together = run(batch)
            for i in range(batch):
                for name, got, want in alone(i, together):
                    assert_identical(got, want, name, f"{where}: row {i} of {batch}, {threads} thread(s)")
    with team(1):
        default = run(batch)
    for k, (x, y) in enumerate(zip(default, together)):
        if x is not None and x.dtype.kind == "f":
            assert_close(x, y, "kernel_vs_reference", dtype, f"{where} output {k}: default paths vs the mode")


# ---- the mode itself -------------------------------------------------------------------------------------------------

def test_the_mode_is_scoped_nests_and_checks_its_argument():
    assert not _core._row_invariant_get()
    with ops.row_invariant():
        assert _core._row_invariant_get()
        with ops.row_invariant(False):
            assert not _core._row_invariant_get()
        assert _core._row_invariant_get()
    assert not _core._row_invariant_get()
    with pytest.raises(RuntimeError), ops.row_invariant():
        raise RuntimeError("left by an exception")
    assert not _core._row_invariant_get()
    with pytest.raises(TypeError, match="on must be a bool"), ops.row_invariant("yes"):  # type: ignore[arg-type]
        pass


def test_the_mode_runs_every_product_on_the_tile():
    """One-row products (steps of a single source) and small GEMMs take the tile in the mode, whatever the build."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 5)).astype(np.float64)
    x = rng.standard_normal((3, 1, 5)).astype(np.float64)
    _core._tuning_reset()
    with ops.row_invariant():
        ops.linear_forward(x[0], w)
        h0, c0 = rng.standard_normal((2, 1, 1, 3))  # a non-zero h0: the first step's product runs too
        rc.LSTM(5, 3, dtype=np.float64, seed=0).eval()(x, (h0, c0))
        *_, ws = ops.lstm_forward(x, h0[0], c0[0], rng.standard_normal((12, 5)), rng.standard_normal((12, 3)), None,
                                  None, training=True)
        ops.lstm_backward(ws, np.ones((3, 1, 3)))  # dx, dW (transposed operands), dG · W_hh
    counts = _core._tuning_counts()
    assert counts["gemm_eigen"] == 0 and counts["gemm_tile"] >= 2, counts
    assert counts["step_tile"] >= 1 and counts["step_row_fused"] + counts["step_row_panels"] == 0, counts
    assert counts["step_row_unpacked"] + counts["step_gebp"] == 0, counts
    _core._tuning_reset()


# ---- the encoder: recurrent layers, with lengths, bidirectional, stacked ---------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@given(case=st.tuples(st.sampled_from(range(len(LAYER_CASES))), st.integers(1, 5), st.integers(1, 20),
                      st.integers(1, 6), st.integers(1, 40), st.integers(1, 2), st.booleans(), st.booleans(),
                      st.integers(0, 2**31)))
def test_recurrent_layers(dtype, case):
    which, T, B, I, H, layers, bidirectional, with_lengths, seed = case
    cls, options = LAYER_CASES[which]
    rng = np.random.default_rng(seed)
    layer = cls(I, H, num_layers=layers, bidirectional=bidirectional, dtype=dtype, seed=seed, **options).eval()
    x = rng.standard_normal((T + 2, B, I)).astype(dtype)  # two more steps: the batch padded to a longer source
    lengths = rng.integers(1, T + 1, B) if with_lengths else np.full(B, T)
    n_states = 2 if cls is rc.LSTM else 1

    def states(s):
        return list(s) if n_states == 2 else [s]

    def run(batch):
        y, s = layer(x[:T], lengths=lengths)
        y_long, s_long = layer(x, lengths=lengths)  # padded to T + 2
        return [y, y_long, *states(s), *states(s_long)]

    def alone(i, together):
        n = lengths[i]
        y, s = layer(x[:n, i:i + 1], lengths=[n])
        y_b, y_long = together[0], together[1]
        yield "y", y_b[:n, i], y[:, 0]
        yield "y (longer batch)", y_long[:n, i], y[:, 0]
        for k, st_alone in enumerate(states(s)):
            yield f"state {k}", together[2 + k][:, i], st_alone[:, 0]
            yield f"state {k} (longer batch)", together[2 + n_states + k][:, i], st_alone[:, 0]

    check_rows(run, B, alone, dtype, "recurrent")


# ---- the key projection --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@given(case=st.tuples(st.integers(1, 20), st.integers(1, 6), st.integers(1, 50), st.integers(1, 40),
                      st.integers(0, 2**31)))
def test_additive_attention_keys(dtype, case):
    B, Tx, Dk, A, seed = case
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((B, Tx + 3, Dk)).astype(dtype)
    w_k = rng.standard_normal((A, Dk)).astype(dtype)
    lengths = rng.integers(1, Tx + 1, B)

    def run(batch):
        return [ops.additive_attention_keys(keys[:, :Tx], w_k), ops.additive_attention_keys(keys, w_k)]

    def alone(i, together):
        n = lengths[i]
        projected = ops.additive_attention_keys(keys[i:i + 1, :n], w_k)[0]
        yield "projected keys", together[0][i, :n], projected
        yield "projected keys (longer batch)", together[1][i, :n], projected

    check_rows(run, B, alone, dtype, "keys")


# ---- the fused decoder step (Ty = 1, as Seq2Seq.step calls it; and Ty = 2) -----------------------------------------

def _row_of(a, i, tx):
    """make_args' arguments of row i alone, its source cut to tx positions."""
    r = dict(a)
    r["x"] = a["x"][:, i:i + 1]
    for name in ("h0", "c0", "o0"):
        if a[name] is not None:
            r[name] = a[name][i:i + 1]
    r["keys"], r["values"] = a["keys"][i:i + 1, :tx], a["values"][i:i + 1, :tx]
    r["lengths"] = None if a["lengths"] is None else a["lengths"][i:i + 1]
    return r


def _padded(a, extra, rng):
    """The same batch with its source padded by `extra` positions of noise (read by no row: past every length)."""
    r = dict(a)
    lengths = np.full(a["keys"].shape[0], a["keys"].shape[1]) if a["lengths"] is None else a["lengths"]
    r["lengths"] = lengths
    for name in ("keys", "values"):
        pad = rng.standard_normal((a[name].shape[0], extra, a[name].shape[2])).astype(a[name].dtype)
        r[name] = np.concatenate([a[name], pad], axis=1)
    return r


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=st.tuples(st.sampled_from(range(len(DECODER_CELLS))), st.sampled_from(["additive", "dot"]),
                      st.sampled_from(["before", "after"]), st.booleans(), st.integers(1, 2), st.integers(1, 20),
                      st.integers(1, 6), st.integers(0, 5), st.integers(1, 40), st.integers(1, 12), st.integers(1, 9),
                      st.integers(1, 30), st.booleans(), st.integers(0, 2**31)))
def test_attention_decoder_step(dtype, case):
    which, score, position, feeding, Ty, B, Tx, E, H, A, Dv, O, with_lengths, seed = case
    cell, options = DECODER_CELLS[which]
    feeding = feeding and position == "after"
    if position == "after" and not feeding:
        E = max(E, 1)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, Tx + 1, B) if with_lengths else None
    a = make_args(rng, dtype, cell, options, score=score, position=position, input_feeding=feeding, Ty=Ty, B=B,
                  Tx=Tx, E=E, H=H, A=A, Dv=Dv, O=O, lengths=lengths)
    longer = _padded(a, 3, rng)

    def run(batch):
        return [*call_forward(a, training=False)[:5], *call_forward(longer, training=False)[:5]]

    def alone(i, together):
        n = Tx if lengths is None else int(lengths[i])
        out = call_forward(_row_of(a, i, max(n, 1)), training=False)[:5]
        for k, name in enumerate(("outputs", "contexts", "alpha", "h_n", "c_n")):
            if out[k] is None:
                continue
            for shift, suffix in ((0, ""), (5, " (longer batch)")):
                got = together[shift + k]
                if name == "alpha":
                    yield name + suffix, got[:, i, :n], out[k][:, 0, :n]
                    assert not got[:, i, n:].any(), "alpha past the row's length"
                elif name in ("h_n", "c_n"):
                    yield name + suffix, got[i], out[k][0]
                else:
                    yield name + suffix, got[:, i], out[k][:, 0]

    check_rows(run, B, alone, dtype, "decoder")


# ---- the output layer, log_softmax, top_k --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@given(case=st.tuples(st.integers(1, 40), st.integers(1, 60), st.integers(1, 70), st.booleans(),
                      st.integers(0, 2**31)))
def test_linear_log_softmax_top_k(dtype, case):
    N, I, V, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, I)).astype(dtype)
    w = rng.standard_normal((V, I)).astype(dtype)
    b = rng.standard_normal(V).astype(dtype) if bias else None
    offsets = rng.standard_normal(N)
    k = min(V, 3)

    def chain(rows):
        logits = ops.linear_forward(x[rows], w, b)
        log_probs = ops.log_softmax(logits)
        return [logits, log_probs, *ops.top_k(log_probs, k, offsets[rows])]

    def alone(i, together):
        for name, got, want in zip(("logits", "log_probs", "top_k indices", "top_k values"), together,
                                   chain(slice(i, i + 1))):
            yield name, got[i], want[0]

    check_rows(lambda batch: chain(slice(0, batch)), N, alone, dtype, "output")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_over_two_depth_slices_and_many_panels(dtype):
    """K = 800 (the tile GEMM's depth slices of 400) and 300 output columns, 1 row vs 37."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 800)).astype(dtype)
    w = rng.standard_normal((300, 800)).astype(dtype)
    b = rng.standard_normal(300).astype(dtype)

    def alone(i, together):
        yield "y", together[0][i], ops.linear_forward(x[i:i + 1], w, b)[0]

    check_rows(lambda batch: [ops.linear_forward(x[:batch], w, b)], 37, alone, dtype, "linear")


# ---- the tile on every build: training kernels in the mode against their twins -------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@given(case=st.tuples(st.sampled_from(range(len(CELLS))), st.integers(1, 4), st.integers(1, 13), st.integers(1, 30),
                      st.integers(1, 30), st.booleans(), st.integers(0, 2**31)))
def test_training_kernels_in_the_mode_match_the_twins(dtype, case):
    """Forward and every gradient in the mode (the tile's transposed operands: dx, dW; the backward's dG · W) equal
    rnncore.reference's to the float tolerance, with batches that fill no tile exactly; the per-row outputs and
    gradients (y, the final states, dx, the initial states') of the first and last rows are the same bits alone."""
    which, T, B, I, H, lengths, seed = case
    cell = CELLS[which]
    inputs, upstream = make_inputs(np.random.default_rng(seed), cell, T, B, I, H, dtype, lengths=lengths)
    with ops.row_invariant():
        outputs, ws = run_forward(ops, cell, inputs)
        grads = run_backward(ops, cell, ws, upstream)
        for i in sorted({0, B - 1}):
            one = {k: None if inputs[k] is None else inputs[k][i:i + 1] for k in ("lengths", *cell.state_names)}
            one["x"] = inputs["x"][:, i:i + 1]
            row_up = {k: v[:, i:i + 1] if k == "dy" else v[i:i + 1] for k, v in upstream.items()}
            row_out, row_ws = run_forward(ops, cell, {**inputs, **one})
            row_grads = run_backward(ops, cell, row_ws, row_up)
            for name, got in {**row_out, **row_grads}.items():
                if name in ("y", "dx"):
                    assert_identical(got[:, 0], {**outputs, **grads}[name][:, i], name, f"row {i} alone")
                elif name in ("h_n", "c_n", "dh0", "dc0"):
                    assert_identical(got[0], {**outputs, **grads}[name][i], name, f"row {i} alone")
    ref_outputs, ref_ws = run_forward(rc.reference, cell, inputs)
    ref_grads = run_backward(rc.reference, cell, ref_ws, upstream)
    for name, want in {**ref_outputs, **ref_grads}.items():
        if want is not None:
            got = {**outputs, **grads}[name]
            assert_close(got, want, "kernel_vs_reference", dtype, f"{cell.name} {name}")


# ---- objects whose products outlive a call: made under one mode, stepped under the other -----------------------------

def _session_parts(dtype, B):
    from test_decoder_session import session_args
    rng = np.random.default_rng(7)
    args, kw, _ = session_args(rng, dtype, "lstm", {}, dict(score="additive", position="before"), B=B, H=24, Tx=6,
                               E=4, A=8, Dv=5, O=24, V=11, Vin=9, biases=True)
    tokens = rng.integers(0, 9, B)
    h, c = (rng.standard_normal((B, 24)).astype(dtype) for _ in range(2))
    return args, kw, tokens, h, c


def _session_row(args, i):
    return [a[i:i + 1] if k in (4, 5, 6) and a is not None else a for k, a in enumerate(args)]  # keys, values, lengths


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_session_follows_the_mode_of_each_step(dtype):
    """A session's products are made at its first step under that step's mode; a step under the other mode
    remakes them: first stepped outside then inside, row alone == row in batch; and back outside, a fresh session's
    default bits."""
    B = 5
    names = ("log_probs", "outputs", "alpha", "h_n", "c_n")
    args, kw, tokens, h, c = _session_parts(dtype, B)
    rows = [(i, ops.DecoderSession(*_session_row(args, i), **kw)) for i in range(B)] + [
        (None, ops.DecoderSession(*args, **kw))]
    with team(1):
        for i, session in rows:  # the products made outside the mode
            session.step(*((tokens, h, c) if i is None else (tokens[i:i + 1], h[i:i + 1], c[i:i + 1])))
        with invariant():
            together = rows[-1][1].step(tokens, h, c)
            for i, session in rows[:-1]:
                alone = session.step(tokens[i:i + 1], h[i:i + 1], c[i:i + 1])
                for name, got, want in zip(names, together, alone):
                    assert_identical(got[i:i + 1], want, name, f"session row {i} of {B}")
        for i, session in rows[:1] + rows[-1:]:  # back outside: a fresh session's default bits
            part = (tokens, h, c) if i is None else (tokens[i:i + 1], h[i:i + 1], c[i:i + 1])
            fresh = ops.DecoderSession(*(args if i is None else _session_row(args, i)), **kw).step(*part)
            for name, got, want in zip(names, session.step(*part), fresh):
                assert_identical(got, want, name, "a session stepped in the mode, then outside")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["lstm", "gru_reset_before"])
def test_a_stepper_follows_the_mode_of_each_step(dtype, cell):
    """A stepper's products are made with it; a step under the other mode remakes them: made outside and stepped
    inside, row alone == row in batch; made inside and stepped outside, a fresh stepper's default bits."""
    B, I, H, steps = 5, 7, 24, 3
    rng = np.random.default_rng(3)
    G = 4 if cell == "lstm" else 3
    w_ih, w_hh = (rng.standard_normal((G * H, n)).astype(dtype) * 0.3 for n in (I, H))
    b = rng.standard_normal(G * H).astype(dtype)
    xs = rng.standard_normal((steps, B, I)).astype(dtype)

    def make(batch):
        if cell == "lstm":
            return ops.lstm_stepper(batch, w_ih, w_hh, b, b)
        return ops.gru_stepper(batch, w_ih, w_hh, b, b, reset_after=False)

    def run(stepper, rows):
        return [np.array(stepper.step(x[rows]), copy=True) for x in xs]

    with team(1):
        batch, rows = make(B), [make(1) for _ in range(B)]  # made outside the mode
        with invariant():
            together = run(batch, slice(None))
            for i in range(B):
                alone = run(rows[i], slice(i, i + 1))
                for t in range(steps):
                    assert_identical(together[t][i:i + 1], alone[t], "h", f"stepper row {i} of {B}, step {t}")
        for size in (1, B):
            with invariant():
                inside = make(size)
            got, want = run(inside, slice(0, size)), run(make(size), slice(0, size))
            for t in range(steps):
                assert_identical(got[t], want[t], "h", f"a stepper of {size} made in the mode, stepped outside")
