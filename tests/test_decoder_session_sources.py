"""A decoding session's row -> source map (rnncore.ops.DecoderSession(..., sources=)): B rows attend to N sources,
row b to source sources[b], each source's keys, values and length held once (beam search's beams of a source share
them). Such a session gives, bit for bit, what a session over the gathered sources (np.take(keys, sources, axis=0),
...) gives, step after step, for every cell, both scores, both positions, input feeding and both dtypes, with
lengths that include a 0-length source; it matches its twin rnncore.reference.decoder_session_step(...,
sources=); a bad map is refused naming `sources`; Seq2Seq's decoding state keeps its N sources, never gathered."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from test_decoder_session import CELL_IDS, CELLS, CONFIG_IDS, CONFIGS, DECODER_ARGS, NAMES, assert_step, session_args

import rnncore as rc
from rnncore import ops, reference

from support.arrays import DTYPE_IDS, DTYPES

KEYS, VALUES, LENGTHS = (DECODER_ARGS.index(k) for k in ("keys", "values", "lengths"))


def gathered(args, sources):
    """The decoder arguments with each row's source gathered: keys, values and lengths of B rows."""
    out = list(args)
    for i in (KEYS, VALUES, LENGTHS):
        if out[i] is not None:
            out[i] = np.take(out[i], sources, axis=0)
    return out


def assert_identical_steps(got, want):
    for name, g, w in zip(NAMES, got, want):
        if w is None:
            assert g is None, name
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def run_steps(args, kw, sources, rng, steps, E, Vin, feeding):
    """(mapped session's results, gathered session's, twin's) of `steps` steps passing the state back in."""
    mapped = ops.DecoderSession(*args, **kw, sources=sources)
    plain = ops.DecoderSession(*gathered(args, sources), **kw)
    B = len(sources)
    assert mapped.rows == plain.rows == B
    h = c = fed = None
    for _ in range(steps):
        tokens = rng.integers(0, Vin, B) if E else None
        got = mapped.step(tokens, h, c, fed)
        yield got, plain.step(tokens, h, c, fed), reference.decoder_session_step(tokens, h, c, fed, *args, **kw,
                                                                                 sources=sources)
        _, outputs, _, h, c = got
        fed = outputs if feeding else None


@settings(max_examples=10, deadline=None)
@given(N=st.integers(1, 3), k=st.integers(1, 3), shuffle=st.booleans(), H=st.integers(1, 5), Tx=st.integers(1, 5),
       E=st.integers(0, 3), A=st.integers(1, 4), Dv=st.integers(1, 3), O=st.integers(1, 4), V=st.integers(1, 7),
       biases=st.booleans(), lengths=st.sampled_from(["some", "none", "first-empty"]), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("cell,options", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mapped_session_equals_a_session_over_the_gathered_sources(dtype, cell, options, config, N, k, shuffle, H,
                                                                   Tx, E, A, Dv, O, V, biases, lengths, seed):
    """N sources, k rows each (beam search's np.repeat(arange(N), k), or those rows shuffled: any map), with some
    sources of length 0 ("some" makes source 1 empty when N > 1; "first-empty" source 0)."""
    if config["position"] == "after" and not config.get("input_feeding") and E == 0:
        E = 1  # the cell needs an input
    rng = np.random.default_rng(seed)
    Vin = 3
    args, kw, _ = session_args(rng, dtype, cell, options, config, N, H, Tx, E, A, Dv, O, V, Vin, biases)
    if lengths == "none":
        args[LENGTHS] = None
    elif lengths == "first-empty":
        args[LENGTHS] = rng.integers(0, Tx + 1, N)
        args[LENGTHS][0] = 0
    sources = np.repeat(np.arange(N), k)
    if shuffle:
        sources = rng.permutation(sources)
    for got, plain, twin in run_steps(args, kw, sources, rng, 3, E, Vin, config.get("input_feeding")):
        assert_identical_steps(got, plain)
        assert_step(got, twin, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", CONFIGS[:2], ids=CONFIG_IDS[:2])
@pytest.mark.parametrize("sources", [[0], [0, 0, 0, 0, 0], [2, 2, 0, 0, 1, 1], [1, 0, 2, 1]],
                         ids=["one-row", "one-source-k5", "reordered-sources", "unsorted"])
def test_mapped_session_at_fixed_maps(sources, config, dtype):
    """Fixed maps over 3 sources (one of length 0): one row, every row on one source, sources not in order."""
    rng = np.random.default_rng(11)
    args, kw, _ = session_args(rng, dtype, "lstm", {}, config, 3, 4, 5, 2, 3, 2, 4, 6, 4, True)
    args[LENGTHS] = np.array([5, 0, 3])
    sources = np.array(sources)
    for got, plain, twin in run_steps(args, kw, sources, rng, 3, 2, 4, False):
        assert_identical_steps(got, plain)
        assert_step(got, twin, dtype)
        empty = sources == 1  # the 0-length source: zero attention (and context)
        np.testing.assert_array_equal(got[2][empty], 0.0)


def test_mapped_session_rows_of_the_same_source_differ_by_state_only():
    """Two rows on one source with different states give different results; with the same state, the same bits."""
    rng = np.random.default_rng(3)
    args, kw, _ = session_args(rng, np.float64, "gru", {"reset_after": True}, CONFIGS[2], 2, 3, 4, 2, 3, 2, 3, 5, 4,
                               True)
    session = ops.DecoderSession(*args, **kw, sources=[1, 1, 1])
    h = rng.standard_normal((3, 3))
    h[2] = h[0]
    with ops.row_invariant():  # a row's products the same bits wherever the row sits
        log_probs, *_ = session.step(np.array([2, 2, 2]), h)
    np.testing.assert_array_equal(log_probs[2], log_probs[0])
    assert not np.array_equal(log_probs[1], log_probs[0])


def _small(dtype=np.float64):
    rng = np.random.default_rng(2)
    return session_args(rng, dtype, "lstm", {}, CONFIGS[0], 3, 3, 4, 2, 3, 2, 3, 5, 4, True)[:2]


@pytest.mark.parametrize("sources,exc,match", [
    ([0, 3], ValueError, r"sources must lie in 0\.\.N-1 = 0\.\.2, got \[3\]"),
    ([-1, 0], ValueError, r"sources must lie in 0\.\.N-1 = 0\.\.2, got \[-1\]"),
    (np.array([0.0, 1.0]), TypeError, r"sources must hold integers, got dtype float64"),
    (np.array([True, False]), TypeError, r"sources must hold integers, got dtype bool"),
    (np.array([[0, 1]]), ValueError, r"sources must have shape \[B\] .*got shape \(1, 2\)"),
    (np.array(1), ValueError, r"sources must have shape \[B\] .*got shape \(\)"),
    (np.zeros(0, np.int64), ValueError, r"sources must have shape \[B\] .*B >= 1.*got shape \(0,\)"),
])
def test_bad_maps_are_refused(sources, exc, match):
    args, kw = _small()
    with pytest.raises(exc, match=match):
        ops.DecoderSession(*args, **kw, sources=sources)


def test_the_map_sets_the_rows_and_the_sources_their_count():
    """keys, values and lengths are checked against N (the keys' first extent); the steps take B = len(sources)."""
    args, kw = _small()
    bad = list(args)
    bad[LENGTHS] = np.array([1, 2])  # N = 3 sources
    with pytest.raises(ValueError, match=r"lengths must have shape \[N\] = \(3,\)"):
        ops.DecoderSession(*bad, **kw, sources=[0, 1, 2, 2])
    bad = list(args)
    bad[VALUES] = bad[VALUES][:2]  # the values of 2 sources for the keys' 3
    with pytest.raises(ValueError, match=r"values must have shape \[N, Tx, Dv\] = \(3, "):
        ops.DecoderSession(*bad, **kw, sources=[0, 1, 2, 2])
    bad = list(args)
    bad[KEYS], bad[VALUES], bad[LENGTHS] = bad[KEYS][:0], bad[VALUES][:0], None  # no source at all
    with pytest.raises(ValueError, match=r"N must be at least 1 \(keys \[N, Tx, K\]\), got N = 0"):
        ops.DecoderSession(*bad, **kw, sources=[0])
    session = ops.DecoderSession(*args, **kw, sources=[0, 1, 2, 2, 2])
    assert session.rows == 5
    with pytest.raises(ValueError, match=r"tokens must have shape \(5,\)"):
        session.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"h must have shape \[B, H\] = \(5, 3\)"):
        session.step(np.array([0, 1, 2, 3, 0]), np.zeros((3, 3)))


def test_the_session_keeps_a_copy_of_the_map():
    args, kw = _small()
    sources = np.array([2, 0, 1])
    session = ops.DecoderSession(*args, **kw, sources=sources)
    tokens = np.array([0, 3, 1])
    before = session.step(tokens)
    sources[:] = 0
    assert_identical_steps(session.step(tokens), before)


# ---- Seq2Seq: the decoding state's N sources and rows map -----------------------------------------------------------

def test_seq2seq_state_keeps_its_sources_once_and_maps_rows():
    model = rc.Seq2Seq(7, 6, embedding_size=3, encoder_hidden=2, decoder_hidden=3, attention_units=2, seed=1).eval()
    state = model.start([np.array([3, 4, 5]), np.array([6, 2])])
    source = state["source"]
    expanded = model.reorder(state, np.repeat(np.arange(2), 3))
    assert expanded["source"] is source and source.projected.shape[0] == 2  # never gathered
    np.testing.assert_array_equal(expanded["rows"], [0, 0, 0, 1, 1, 1])
    with rc.ops.row_invariant():  # (rc.decode's mode) a row's products the same bits wherever the row sits
        log_probs, stepped = model.step(np.full(6, 1), expanded)
    assert stepped["session"].rows == 6
    for row in range(6):  # every beam starts from its source's state: its source's numbers
        np.testing.assert_array_equal(log_probs[row], log_probs[3 * (row // 3)])
    across = model.reorder(stepped, np.array([3, 0, 1, 2, 4, 5]))
    assert "session" not in across and across["source"] is source  # a new map: a new session at the next step
    np.testing.assert_array_equal(across["rows"], [1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(across["h"], stepped["h"][[3, 0, 1, 2, 4, 5]])
    log_probs, stepped = model.step(np.array([2, 3, 3, 4, 2, 2]), across)
    assert stepped["session"].rows == 6 and np.isfinite(log_probs).all()
    within = model.reorder(stepped, np.array([0, 2, 1, 3, 5, 4]))
    assert within["session"] is stepped["session"]  # beams moved within their sources: the same map


def test_a_reorder_that_gathers_the_sources_row_by_row_still_decodes_right():
    """A user's StepModel wrapping Seq2Seq whose reorder gathers every array of the state along the rows, the
    prepared sources' arrays too (as Seq2Seq.reorder did before it kept each source once), and carries anything
    else along unchanged (the session included): the step sees the sources were gathered and that the session was
    made for other rows, and beam search gives Seq2Seq.reorder's results, bit for bit."""
    from rnncore.seq2seq import PreparedSource

    def gather_arrays(state, indices):
        out = {}
        for key, value in state.items():
            if isinstance(value, PreparedSource):
                out[key] = PreparedSource(*[None if a is None else np.take(a, indices, 0) for a in value])
            elif isinstance(value, np.ndarray):
                out[key] = np.take(value, indices, 0)
            else:
                out[key] = value  # the source count, the (stale) session
        return out

    class Wrapped:
        def __init__(self, model):
            self.model = model

        def start(self, batch):
            return self.model.start(batch)

        def step(self, tokens, state):
            return self.model.step(tokens, state)

        def reorder(self, state, indices):
            return gather_arrays(state, indices)

    model = rc.Seq2Seq(9, 8, embedding_size=4, encoder_hidden=5, decoder_hidden=6, attention_units=3, seed=2).eval()
    sources = [np.array([3, 4, 5, 6, 7]), np.array([8, 3]), np.array([5, 5, 6])]
    want = rc.decode.beam_search(model, sources, 1, 2, 6, beam_size=3, n_best=2)
    got = rc.decode.beam_search(Wrapped(model), sources, 1, 2, 6, beam_size=3, n_best=2)
    np.testing.assert_array_equal(got.scores, want.scores)
    for a, b in zip(got.tokens, want.tokens):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    state = model.start(sources)
    bad = dict(state, source=PreparedSource(*[None if a is None else a[:2] for a in state["source"]]))
    with pytest.raises(ValueError, match="the prepared source has 2 rows for 3 state rows"):
        model.step(np.ones(3, np.int64), bad)


def test_a_session_carried_across_new_rows_is_remade_for_them():
    """A reorder that maps the rows anew but carries the session along (a user's, keeping what it does not know):
    the next step sees the session was made for other rows and makes one for these, as after Seq2Seq.reorder."""
    model = rc.Seq2Seq(9, 8, embedding_size=4, encoder_hidden=5, decoder_hidden=6, attention_units=3, seed=2).eval()
    state = model.start([np.array([3, 4, 5]), np.array([8, 3])])
    _, stepped = model.step(np.ones(2, np.int64), state)
    indices = np.array([1, 1, 0])
    ours = model.reorder(stepped, indices)
    theirs = dict(ours, session=stepped["session"])  # the old rows' session carried along
    tokens = np.array([4, 5, 6])
    want, _ = model.step(tokens, ours)
    got, after = model.step(tokens, theirs)
    np.testing.assert_array_equal(got, want)
    assert after["session"] is not stepped["session"] and after["session"].rows == 3
    np.testing.assert_array_equal(after["session"].sources, [1, 1, 0])
