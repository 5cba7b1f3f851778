"""rnncore.decode: greedy, sampling, beam search and sequence_log_prob over tiny NumPy step models."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import rnncore as rc
from rnncore import decode


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class Markov:
    """A fixed random Markov chain over V tokens, one chain per source: log P(next | prev, source)."""

    def __init__(self, vocab: int, sources: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.table = _log_softmax(rng.standard_normal((sources, vocab, vocab)) * 2.0)

    def start(self, batch: Any) -> Any:
        return np.asarray(batch, np.int64)  # the source ids: state [N]

    def step(self, tokens: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.table[state, tokens], state


class Prefix:
    """Log-probs that depend on the whole prefix (and the source): a table row chosen by a hash of it. The state is
    a tuple (source ids [N], prefix hashes [N]), reordered by the default ``reorder_state``."""

    def __init__(self, vocab: int, rows: int = 97, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.table = _log_softmax(rng.standard_normal((rows, vocab)) * 2.0)
        self.rows = rows

    def start(self, batch: Any) -> Any:
        src = np.asarray(batch, np.int64)
        return src, src * 7 + 3

    def step(self, tokens: np.ndarray, state: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, Any]:
        src, h = state
        h = (h * 31 + tokens + 1) % self.rows
        return self.table[h], (src, h)


def _enumerate(model: Any, source: int, vocab: int, eos: int, bos: int, max_len: int,
               length_penalty: float, gnmt: float | None = None) -> tuple[float, tuple[int, ...]]:
    """The best hypothesis by brute force: every sequence ending in eos (length <= max_len) or of max_len without."""
    best: tuple[float, tuple[int, ...]] = (-np.inf, ())
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(vocab), repeat=length):
            if eos in seq[:-1] or (length < max_len and seq[-1] != eos):
                continue
            lp = decode.sequence_log_prob(model, [source], [list(seq)], bos)[0]
            norm = ((5 + length) / 6) ** gnmt if gnmt is not None else length ** length_penalty
            if lp / norm > best[0]:
                best = (lp / norm, seq[:-1] if seq[-1] == eos else seq)
    return best


MODELS = [("markov", Markov), ("prefix", Prefix)]


@pytest.mark.parametrize("name,cls", MODELS)
@pytest.mark.parametrize("vocab,max_len", [(3, 3), (3, 4), (4, 3)])
@pytest.mark.parametrize("penalty", [0.0, 1.0, 2.0, ("gnmt", 0.6)])
def test_beam_search_finds_the_exhaustive_best(name: str, cls: Any, vocab: int, max_len: int, penalty: Any) -> None:
    model = cls(vocab)
    gnmt = penalty[1] if isinstance(penalty, tuple) else None
    lp = 1.0 if gnmt is not None else penalty
    eos, bos = 0, vocab - 1
    sources = [0, 1, 2, 3]
    res = decode.beam_search(model, sources, bos, eos, max_len, beam_size=vocab ** max_len, length_penalty=lp,
                             n_best=2, gnmt_alpha=gnmt)
    for i, s in enumerate(sources):
        score, seq = _enumerate(model, s, vocab, eos, bos, max_len, lp, gnmt)
        assert res.scores[i, 0] == pytest.approx(score, rel=1e-12, abs=1e-12)
        assert tuple(res.tokens[i][0].tolist()) == seq
        assert res.scores[i, 0] >= res.scores[i, 1]


@pytest.mark.parametrize("name,cls", MODELS)
def test_beam_size_one_equals_greedy(name: str, cls: Any) -> None:
    model = cls(6)
    sources = list(range(8))
    g = decode.greedy(model, sources, 5, 0, 12)
    b = decode.beam_search(model, sources, 5, 0, 12, beam_size=1, length_penalty=0.0)
    for i in range(len(sources)):
        np.testing.assert_array_equal(b.tokens[i][0], g.tokens[i])
        assert b.log_probs[i, 0] == g.scores[i]
        assert b.finished[i, 0] == g.finished[i]


@pytest.mark.parametrize("name,cls", MODELS)
def test_a_source_alone_or_in_a_batch_gives_the_same_bits(name: str, cls: Any) -> None:
    model = cls(7)
    sources = [3, 1, 4, 1, 5, 2]
    batch = decode.beam_search(model, sources, 6, 0, 10, beam_size=4, n_best=3)
    batch_g = decode.greedy(model, sources, 6, 0, 10)
    for i, s in enumerate(sources):
        alone = decode.beam_search(model, [s], 6, 0, 10, beam_size=4, n_best=3)
        assert alone.scores[0].tobytes() == batch.scores[i].tobytes()
        assert alone.log_probs[0].tobytes() == batch.log_probs[i].tobytes()
        for a, b in zip(alone.tokens[0], batch.tokens[i]):
            np.testing.assert_array_equal(a, b)
        g = decode.greedy(model, [s], 6, 0, 10)
        np.testing.assert_array_equal(g.tokens[0], batch_g.tokens[i])
        assert g.scores[0].tobytes() == batch_g.scores[i].tobytes()


def test_sequence_log_prob_is_the_sum_of_the_step_log_probs() -> None:
    model = Prefix(5)
    targets = [[1, 2, 3], [4], []]
    got = decode.sequence_log_prob(model, [0, 1, 2], targets, bos=4, eos=0)
    for i, seq in enumerate(targets):
        state, tok, total = model.start([i]), np.array([4]), 0.0
        for t in seq + [0]:
            lp, state = model.step(tok, state)
            total += lp[0, t]
            tok = np.array([t])
        assert got[i] == pytest.approx(total, rel=1e-14)
    # beam search's plain sum for its best hypothesis is the same number
    res = decode.beam_search(model, [0, 1, 2], 4, 0, 6, beam_size=3)
    again = decode.sequence_log_prob(model, [0, 1, 2], [t[0] for t in res.tokens], bos=4,
                                     eos=None if not res.finished[0, 0] else 0)
    assert again[0] == pytest.approx(res.log_probs[0, 0], rel=1e-12)


def test_sampling_is_reproducible_under_a_seed_and_varies_without() -> None:
    model = Markov(8)
    runs = [decode.sample(model, list(range(8)), 7, 0, 20, seed=s) for s in (3, 3, 4)]
    for a, b in zip(runs[0].tokens, runs[1].tokens):
        np.testing.assert_array_equal(a, b)
    assert runs[0].scores.tobytes() == runs[1].scores.tobytes()
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(runs[0].tokens, runs[2].tokens))


@pytest.mark.parametrize("kwargs", [{"top_k": 1}, {"top_p": 1e-9}, {"temperature": 1e-6},
                                    {"top_k": 3, "top_p": 1e-9}])
def test_sampling_restricted_to_one_token_equals_greedy(kwargs: dict[str, Any]) -> None:
    model = Prefix(9)
    sources = list(range(6))
    g = decode.greedy(model, sources, 8, 0, 15)
    s = decode.sample(model, sources, 8, 0, 15, seed=0, **kwargs)
    for a, b in zip(g.tokens, s.tokens):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g.scores, s.scores)


def test_top_k_and_top_p_follow_hugging_face() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(decode._filter_logits(logits, None, 0.7))
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    kept = np.isfinite(decode._filter_logits(logits, None, 0.75))
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    kept = np.isfinite(decode._filter_logits(logits, 2, None))
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    # only kept tokens are ever drawn
    model = Markov(6)
    res = decode.sample(model, [0] * 50, 5, 0, 5, top_k=2, seed=1)
    for seq in res.tokens:
        prev = 5
        for t in seq:
            assert t in np.argsort(-model.table[0, prev], kind="stable")[:2]
            prev = t


def test_a_language_model_from_rnncore_layers() -> None:
    vocab, bos, eos = 12, 11, 0
    model = decode.LanguageModel(rc.Embedding(vocab, 8, dtype=np.float64, seed=0),
                                 rc.LSTMCell(8, 16, dtype=np.float64, seed=1),
                                 rc.Linear(16, vocab, dtype=np.float64, seed=2))
    assert isinstance(model, decode.StepModel)
    g = decode.greedy(model, 3, bos, eos, 10)
    b = decode.beam_search(model, 3, bos, eos, 10, beam_size=1, length_penalty=0.0)
    for i in range(3):
        np.testing.assert_array_equal(b.tokens[i][0], g.tokens[i])
    wide = decode.beam_search(model, 3, bos, eos, 10, beam_size=4, length_penalty=0.0)
    assert (wide.log_probs[:, 0] >= g.scores - 1e-12).all()
    lp = decode.sequence_log_prob(model, 3, [t[0] for t in wide.tokens], bos, eos)
    np.testing.assert_allclose(lp[wide.finished[:, 0]], wide.log_probs[wide.finished[:, 0], 0], rtol=1e-12)


def test_reorder_state_gathers_nested_states() -> None:
    state = (np.arange(6).reshape(3, 2), [np.arange(3)], {"c": np.arange(3) * 10}, None)
    out = decode.reorder_state(state, np.array([2, 2, 0]))
    np.testing.assert_array_equal(out[0], [[4, 5], [4, 5], [0, 1]])
    np.testing.assert_array_equal(out[1][0], [2, 2, 0])
    np.testing.assert_array_equal(out[2]["c"], [20, 20, 0])
    assert out[3] is None
    with pytest.raises(TypeError, match="state must be a numpy.ndarray, None, or a tuple/list/dict"):
        decode.reorder_state("h", np.array([0]))


@pytest.mark.parametrize("call,error,message", [
    (lambda m: decode.greedy(m, [0], 3, 0, 0), ValueError, "max_len must be >= 1, got 0"),
    (lambda m: decode.greedy(m, [0], 3.0, 0, 2), TypeError, "bos must be an int token id, got float"),
    (lambda m: decode.greedy(m, [0], 3, -1, 2), ValueError, "eos must be a token id >= 0, got -1"),
    (lambda m: decode.greedy(m, [0], 3, 9, 2), ValueError, r"eos must lie in 0..V-1 = 0..3 .*got 9"),
    (lambda m: decode.greedy(m, [], 3, 0, 2), ValueError, "batch must hold at least 1 source, got 0"),
    (lambda m: decode.greedy(m, 2.5, 3, 0, 2), TypeError, "batch must be an int"),
    (lambda m: decode.beam_search(m, [0], 3, 0, 2, beam_size=0), ValueError, "beam_size must be >= 1, got 0"),
    (lambda m: decode.beam_search(m, [0], 3, 0, 2, beam_size=2, n_best=3), ValueError,
     r"n_best must lie in 1..beam_size = 1..2, got 3"),
    (lambda m: decode.beam_search(m, [0], 3, 0, 2, length_penalty=float("nan")), ValueError,
     "length_penalty must be a finite number, got nan"),
    (lambda m: decode.beam_search(m, [0], 3, 0, 2, gnmt_alpha="x"), TypeError,
     "gnmt_alpha must be a real number, got str"),
    (lambda m: decode.sample(m, [0], 3, 0, 2, temperature=0.0), ValueError,
     r"temperature must be a finite number > 0.0, got 0.0"),
    (lambda m: decode.sample(m, [0], 3, 0, 2, top_k=0), ValueError, "top_k must be >= 1, got 0"),
    (lambda m: decode.sample(m, [0], 3, 0, 2, top_p=1.5), ValueError, r"top_p must be a number in \(0, 1\], got 1.5"),
    (lambda m: decode.sample(m, [0], 3, 0, 2, top_p=0.0), ValueError, "top_p must be a finite number > 0.0"),
    (lambda m: decode.sample(m, [0], 3, 0, 2, seed=1.5), TypeError, "seed must be an int or None, got float"),
    (lambda m: decode.sequence_log_prob(m, [0, 1], [[1]], 3), ValueError,
     "targets must be a list of N = 2 token sequences"),
    (lambda m: decode.sequence_log_prob(m, [0], [[1, 7]], 3), ValueError,
     r"targets must hold token ids in 0..V-1 = 0..3, got 7 at step 1"),
    (lambda m: decode.sequence_log_prob(m, [0], [[1.5]], 3), TypeError,
     r"targets\[0\] must be a 1-d sequence of int token ids, got dtype float64"),
    (lambda m: decode.sequence_log_prob(m, [0], [[1, -2]], 3), ValueError,
     r"targets\[0\] must hold token ids >= 0, got \[-2\]"),
    (lambda m: decode.sequence_log_prob(m, [0], 5, 3), ValueError, "targets must be a list of N = 1 token sequences"),
    (lambda m: decode.sequence_log_prob(m, [0], [5], 3), TypeError,
     r"targets\[0\] must be a 1-d sequence .* shape \(\)"),
])
def test_bad_arguments_raise_naming_them(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(Markov(4))


def test_a_bad_step_output_is_named() -> None:
    class Bad:
        def start(self, batch: Any) -> Any:
            return np.zeros(len(batch))

        def step(self, tokens: np.ndarray, state: Any) -> Any:
            return np.zeros((tokens.shape[0] + 1, 4)), state

    with pytest.raises(ValueError, match=r"model.step's log_probs must have shape \[N, V\] = \(2, \?\), got "
                                         r"shape \(3, 4\)"):
        decode.greedy(Bad(), [0, 1], 3, 0, 2)


class Counting(Markov):
    """A Markov model whose state is an object only its own ``reorder`` understands; it records every step call."""

    class State:
        def __init__(self, src: np.ndarray) -> None:
            self.src = src

    def __init__(self, vocab: int) -> None:
        super().__init__(vocab)
        self.rows: list[int] = []
        self.reorders = 0

    def start(self, batch: Any) -> Any:
        return Counting.State(np.asarray(batch, np.int64))

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        self.rows.append(tokens.shape[0])
        return self.table[state.src, tokens].astype(np.float32), state

    def reorder(self, state: Any, indices: np.ndarray) -> Any:
        self.reorders += 1
        return Counting.State(state.src[indices])


def test_beam_search_steps_all_rows_at_once_and_uses_the_models_reorder() -> None:
    model = Counting(5)
    res = decode.beam_search(model, [0, 1, 2], 4, 0, 6, beam_size=3, n_best=3)
    assert set(model.rows) == {9} and 1 <= len(model.rows) <= 6  # one call per step, 3 sources x 3 beams
    assert model.reorders == len(model.rows)  # the expansion to beams, then once between steps
    assert res.scores.shape == (3, 3) and (np.diff(res.scores, axis=1) <= 0).all()
    plain = decode.beam_search(Markov(5), [0, 1, 2], 4, 0, 6, beam_size=3, n_best=3)  # float64 log-probs
    for a, b in zip(res.tokens, plain.tokens):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_best_candidates_equal_a_stable_sort_of_the_whole_candidate_matrix() -> None:
    # The two-pass selection (each beam's best, then the best of those) against the one-pass definition: a stable
    # descending sort of cum[:, :, None] + log_probs over [N, k*V], ties by the lowest beam*V + token, NaN as -inf.
    rng = np.random.default_rng(5)
    for _ in range(60):
        n, k, vocab = int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 12))
        log_probs = rng.integers(-4, 1, size=(n * k, vocab)).astype(rng.choice([np.float32, np.float64]))
        log_probs[rng.random(log_probs.shape) < 0.05] = np.nan
        log_probs[rng.random(log_probs.shape) < 0.05] = -np.inf
        cum = rng.integers(-3, 1, size=(n, k)).astype(np.float64)
        cum[rng.random(cum.shape) < 0.2] = -np.inf
        take = int(rng.integers(1, k * vocab + 1))
        with np.errstate(invalid="ignore"):
            cand = (cum[:, :, None] + log_probs.astype(np.float64).reshape(n, k, vocab)).reshape(n, k * vocab)
        cand = np.where(np.isnan(cand), -np.inf, cand)
        expected = np.argsort(-cand, axis=1, kind="stable")[:, :take]
        order, sums = decode._best_candidates(log_probs, cum, take)
        np.testing.assert_array_equal(order, expected)
        np.testing.assert_array_equal(sums, np.take_along_axis(cand, expected, axis=1))
