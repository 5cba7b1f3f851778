"""Decoding over a step protocol: ``greedy``, ``sample`` (temperature, top-k, top-p), ``beam_search`` and
``sequence_log_prob``.

A model implements ``StepModel``: ``start(batch) -> state`` (the state of every source of a batch, arrays with the
batch on axis 0, or tuples/lists/dicts of them), ``step(tokens [N], state) -> (log_probs [N, V], state)`` and,
optionally, ``reorder(state, indices [N']) -> state`` (without it, ``reorder_state`` gathers every array along axis 0).
The decoders call ``step`` once per time step for all sources (and all beams) together. ``LanguageModel`` adapts a
decoder-only LM built from rnncore layers (Embedding -> cell -> Linear).

Tokens returned exclude ``bos`` and ``eos`` (CTranslate2's default); ``scores`` are float64.

Every decoder runs the model under ``rnncore.ops.row_invariant()``: rnncore's kernels then compute each row from its
own inputs alone, so a source's tokens, scores, log-probs and attention are the same bits decoded alone or in any
batch (for models built from rnncore ops whose rows are independent, as ``StepModel`` asks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import _validation as v, ops

__all__ = ["StepModel", "LanguageModel", "reorder_state", "DecodeResult", "BeamResult", "greedy", "sample",
           "beam_search", "sequence_log_prob"]


@runtime_checkable
class StepModel(Protocol):
    """What the decoders need of a model. ``batch`` is passed to ``start`` unchanged: an int (the number of
    sequences, e.g. for a language model) or a sized batch of sources (``len(batch)`` sources, e.g. encoder inputs).

    - ``start(batch) -> state``: the initial decoder state of every source, batch on axis 0 of every array.
    - ``step(tokens [N], state) -> (log_probs [N, V], state)``: one step for N rows (int64 tokens); the log-probs
      are normalised (log-softmax) and each row must depend only on its own token and state row, so that a source's
      result does not depend on the batch around it.
    - ``reorder(state, indices [N']) -> state`` (optional): the rows ``indices`` of the state (beam search's
      expansion and reordering); ``reorder_state`` is used when the model has none.
    - ``attention(state) -> alpha [N, Tx]`` (optional; needed for ``return_attention=True``): the attention weights
      of the step that produced ``state``, one row per state row.
    """

    def start(self, batch: Any) -> Any: ...

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...


def reorder_state(state: Any, indices: np.ndarray) -> Any:
    """Gathers rows ``indices`` [N'] along axis 0 of every array of ``state`` (an ndarray, None, or a tuple, list or
    dict of such, nested)."""
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        return np.take(state, indices, axis=0)
    if isinstance(state, tuple):
        return tuple(reorder_state(s, indices) for s in state)
    if isinstance(state, list):
        return [reorder_state(s, indices) for s in state]
    if isinstance(state, Mapping):
        return {k: reorder_state(s, indices) for k, s in state.items()}
    raise TypeError(f"state must be a numpy.ndarray, None, or a tuple/list/dict of them to be reordered without "
                    f"model.reorder, got {type(state).__name__}")


def _reorder(model: Any, state: Any, indices: np.ndarray) -> Any:
    reorder = getattr(model, "reorder", None)
    return reorder(state, indices) if reorder is not None else reorder_state(state, indices)


def _step(model: Any, tokens: np.ndarray, state: Any, eos: int | None) -> tuple[np.ndarray, Any]:
    out = model.step(tokens, state)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"model.step must return a pair (log_probs, state), got {type(out).__name__}")
    return v.step_log_probs(out[0], tokens.shape[0], eos), out[1]


class LanguageModel:
    """A decoder-only language model from rnncore modules as a ``StepModel``: ``embedding`` (rc.Embedding),
    ``cell`` (rc.LSTMCell / GRUCell / RNNCell), ``output`` (rc.Linear to V logits). ``start(batch)`` takes the
    number of sequences (or a sized batch) and gives zero states [N, H]; ``step`` runs the cell in eval mode."""

    def __init__(self, embedding: Any, cell: Any, output: Any) -> None:
        self.embedding, self.cell, self.output = embedding, cell, output

    def start(self, batch: Any) -> Any:
        n = v.source_count(batch)
        h = np.zeros((n, self.cell.hidden_size), self.cell.dtype)
        return (h, h.copy()) if self.cell.kind.n_states == 2 else h

    def step(self, tokens: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        self.cell.eval()
        self.output.eval()
        self.embedding.eval()
        state = self.cell(self.embedding(tokens), state)
        logits = self.output(state[0] if isinstance(state, tuple) else state).astype(np.float64)
        return ops.log_softmax(logits), state


@dataclass
class DecodeResult:
    """``greedy`` / ``sample``: per source, ``tokens[i]`` (int64 [L_i], without bos and eos), ``scores`` [N] (the
    sum of the log-probs of the generated tokens, eos included when generated) and ``finished`` [N] (eos reached
    before max_len); with ``return_attention``, ``attention[i]`` [L_i, Tx] the weights of the step that generated
    each token (None otherwise)."""
    tokens: list[np.ndarray]
    scores: np.ndarray
    finished: np.ndarray
    attention: list[np.ndarray] | None = None


@dataclass
class BeamResult:
    """``beam_search``: per source, ``tokens[i][j]`` its j-th best hypothesis (int64, without bos and eos), j <
    n_best; ``scores`` [N, n_best] the length-normalised scores they are ranked by (higher is better),
    ``log_probs`` [N, n_best] their plain sums of log-probs, ``finished`` [N, n_best] (ended by eos); with
    ``return_attention``, ``attention[i][j]`` [L, Tx] the weights of the step that generated each token of
    ``tokens[i][j]`` (None otherwise)."""
    tokens: list[list[np.ndarray]]
    scores: np.ndarray
    log_probs: np.ndarray
    finished: np.ndarray
    attention: list[list[np.ndarray]] | None = None


def _common(batch: Any, bos: Any, eos: Any, max_len: Any) -> tuple[int, int, int, int]:
    return v.source_count(batch), v.token_id("bos", bos), v.token_id("eos", eos), v.positive_int("max_len", max_len)


def _attention_reader(model: Any, return_attention: Any) -> Any:
    """``model.attention`` when ``return_attention`` is True (TypeError if the model has none), else None."""
    if not v.flag("return_attention", return_attention):
        return None
    read = getattr(model, "attention", None)
    if not callable(read):
        raise TypeError(f"return_attention=True needs model.attention(state) -> alpha [N, Tx]; "
                        f"{type(model).__name__} has none")
    return read


def _step_attention(read: Any, state: Any, rows: int) -> np.ndarray:
    return v.step_attention(read(state), rows)


def _loop(model: Any, batch: Any, bos: int, eos: int, max_len: int, n: int, choose: Any,
          read_attention: Any = None) -> DecodeResult:
    """The greedy/sampling loop: ``choose(log_probs [N, V]) -> tokens [N]``; rows that have emitted eos go on
    being fed eos (their log-probs ignored) until every row has, or max_len. ``read_attention``: model.attention,
    to keep every step's weights."""
    state = model.start(batch)
    attention: list[np.ndarray] = []
    tokens = np.full(n, bos, np.int64)
    out = np.zeros((max_len, n), np.int64)
    scores = np.zeros(n, np.float64)
    done = np.zeros(n, bool)
    steps = 0
    for t in range(max_len):
        log_probs, state = _step(model, tokens, state, eos)
        if read_attention is not None:
            attention.append(_step_attention(read_attention, state, n).copy())
        tokens = np.asarray(choose(log_probs), np.int64)
        tokens[done] = eos
        picked = log_probs[np.arange(n), tokens].astype(np.float64)
        scores += np.where(done, 0.0, picked)
        out[t] = tokens
        done |= tokens == eos
        steps = t + 1
        if done.all():
            break
    seqs = []
    for i in range(n):
        row = out[:steps, i]
        end = np.flatnonzero(row == eos)
        seqs.append(row[: end[0]].copy() if end.size else row.copy())
    weights = None
    if read_attention is not None:
        weights = [np.stack([a[i] for a in attention[:len(seqs[i])]]) if len(seqs[i])
                   else np.zeros((0, attention[0].shape[1]), attention[0].dtype) for i in range(n)]
    return DecodeResult(seqs, scores, done, weights)


@ops.row_invariant()
def greedy(model: StepModel, batch: Any, bos: int, eos: int, max_len: int, return_attention: bool = False
           ) -> DecodeResult:
    """The most likely token at every step (argmax; ties: the lowest id, as torch.argmax), until eos or max_len
    generated tokens. ``return_attention``: keep each generated token's attention weights (``model.attention``)."""
    n, bos, eos, max_len = _common(batch, bos, eos, max_len)
    read = _attention_reader(model, return_attention)
    return _loop(model, batch, bos, eos, max_len, n, lambda lp: np.argmax(lp, axis=1), read)


def _filter_logits(logits: np.ndarray, top_k: int | None, top_p: float | None) -> np.ndarray:
    """Hugging Face's TopK then TopP warpers on logits [N, V]: removed tokens become -inf."""
    logits = logits.copy()
    if top_k is not None:
        k = min(top_k, logits.shape[1])
        kth = -np.partition(-logits, k - 1, axis=1)[:, k - 1:k]
        logits[logits < kth] = -np.inf  # ties with the k-th largest are kept, as in HF
    if top_p is not None:
        # ascending order, ties with the lowest id last (so a tiny top_p keeps argmax's token)
        rev = logits[:, ::-1]
        order = logits.shape[1] - 1 - np.argsort(rev, axis=1, kind="stable")
        sorted_logits = np.take_along_axis(logits, order, axis=1)
        probs = np.exp(sorted_logits - sorted_logits[:, -1:])
        cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
        remove = cum <= 1.0 - top_p
        remove[:, -1] = False  # the most likely token always stays
        mask = np.zeros_like(remove)
        np.put_along_axis(mask, order, remove, axis=1)
        logits[mask] = -np.inf
    return logits


@ops.row_invariant()
def sample(model: StepModel, batch: Any, bos: int, eos: int, max_len: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
           return_attention: bool = False) -> DecodeResult:
    """Ancestral sampling from softmax(log_probs / temperature), restricted as Hugging Face's generate does (in
    this order): ``top_k`` keeps the k largest (and ties with the k-th), ``top_p`` the smallest set of most likely
    tokens whose probability reaches top_p. ``seed`` (an int, or None: fresh entropy) makes the run reproducible:
    one uniform draw per row and step from numpy's default_rng(seed). ``scores`` sum the model's own log-probs of
    the drawn tokens (not the tempered ones). ``return_attention`` as in ``greedy``."""
    n, bos, eos, max_len = _common(batch, bos, eos, max_len)
    temperature = v.real_number("temperature", temperature, 0.0, allow_equal=False)
    top_k, top_p = v.top_k_value(top_k), v.top_p_value(top_p)
    rng = np.random.default_rng(v.seed_value(seed))
    read = _attention_reader(model, return_attention)

    def choose(log_probs: np.ndarray) -> np.ndarray:
        logits = _filter_logits(log_probs.astype(np.float64) / temperature, top_k, top_p)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        u = rng.random(n) * cdf[:, -1]
        picks = (cdf <= u[:, None]).sum(axis=1)  # the first index whose cdf exceeds u (inverse-CDF draw)
        return np.minimum(picks, log_probs.shape[1] - 1)

    return _loop(model, batch, bos, eos, max_len, n, choose, read)


def _normaliser(length: int, length_penalty: float, gnmt_alpha: float | None) -> float:
    if gnmt_alpha is not None:
        return float(((5.0 + length) / 6.0) ** gnmt_alpha)
    return float(length ** length_penalty)


def _best_candidates(log_probs: np.ndarray, cum: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
    """Each source's ``take`` best candidates of cum[i, beam] + log_probs[i*k + beam, token] (float64 sums), best
    first, ties by the lowest beam*V + token: exactly a stable descending sort of the [N, k*V] candidate matrix
    (NaN ranks as -inf), without forming it. Two C++ top-k passes: each beam's ``take`` best tokens (a global top-
    ``take`` entry is within its own beam's), then the best of those k*take per source, taken in (beam, rank) order,
    which is (beam, token) order among equal sums. Returns (flat indices [N, take], sums [N, take])."""
    n, k = cum.shape
    vocab = log_probs.shape[1]
    per_beam = min(take, vocab)
    tokens, sums = ops.top_k(log_probs, per_beam, cum.reshape(-1))  # [N*k, per_beam] each
    flat = (np.arange(k)[None, :, None] * vocab + tokens.reshape(n, k, per_beam)).reshape(n, k * per_beam)
    picks, best = ops.top_k(sums.reshape(n, k * per_beam), take)
    return np.take_along_axis(flat, picks, axis=1), best


@ops.row_invariant()
def beam_search(model: StepModel, batch: Any, bos: int, eos: int, max_len: int, beam_size: int = 5,
                length_penalty: float = 1.0, n_best: int = 1, gnmt_alpha: float | None = None,
                return_attention: bool = False) -> BeamResult:
    """Beam search over sources x beams, one ``model.step`` per time step for all N*beam_size rows.

    A hypothesis' score is ``sum(log_probs) / len ** length_penalty`` (fairseq, Hugging Face, CTranslate2): the
    log-probs are <= 0, so length_penalty > 0 favours longer outputs, 0 ranks by the plain sum; ``len`` counts the
    generated tokens, eos included (fairseq's count). ``gnmt_alpha`` replaces the denominator by GNMT's
    ``((5 + len) / 6) ** gnmt_alpha``. At each step the best 2*beam_size candidates are taken (ties: the lowest
    beam, then token id); an eos candidate ranked within the first beam_size ends a hypothesis, kept aside, and the
    best beam_size others go on. A source stops when it has beam_size ended hypotheses (fairseq's rule); at max_len
    the live beams are kept too, unfinished. Returns the n_best best per source, highest score first.
    ``return_attention``: keep the attention weights (``model.attention``) of every kept hypothesis' tokens,
    reordered with the beams."""
    n, bos, eos, max_len = _common(batch, bos, eos, max_len)
    read = _attention_reader(model, return_attention)
    k = v.positive_int("beam_size", beam_size)
    length_penalty = v.finite_number("length_penalty", length_penalty)
    gnmt = None if gnmt_alpha is None else v.finite_number("gnmt_alpha", gnmt_alpha)
    n_best = v.n_best_value(n_best, k)

    state = _reorder(model, model.start(batch), np.repeat(np.arange(n), k))
    tokens = np.full(n * k, bos, np.int64)
    cum = np.full((n, k), -np.inf)
    cum[:, 0] = 0.0  # every beam starts as the same empty prefix: only beam 0 expands at the first step
    history = np.zeros((n, k, 0), np.int64)
    weights: np.ndarray | None = None  # [N, k, t, Tx] the attention rows of each live hypothesis' tokens
    ended: list[list[tuple[float, float, bool, np.ndarray, np.ndarray | None]]] = [[] for _ in range(n)]
    done = np.zeros(n, bool)
    for t in range(max_len):
        log_probs, state = _step(model, tokens, state, eos)
        step_weights = None
        if read is not None:
            step_weights = _step_attention(read, state, n * k).reshape(n, k, -1)
            if weights is None:
                weights = np.zeros((n, k, 0, step_weights.shape[2]), step_weights.dtype)
        vocab = log_probs.shape[1]
        take = min(2 * k, k * vocab)
        order, top = _best_candidates(log_probs, cum, take)  # [N, take], best first
        beam_of, tok_of = np.divmod(order, vocab)
        usable = np.isfinite(top) & ~done[:, None]
        is_eos = tok_of == eos
        ending = usable & is_eos & (np.arange(take) < k)  # eos ranked within the first beam_size ends a hypothesis
        going = usable & ~is_eos
        slot = np.cumsum(going, axis=1) - 1  # the live beam each non-eos candidate would take
        going &= slot < k
        new_cum = np.full((n, k), -np.inf)
        new_beam = np.zeros((n, k), np.int64)
        new_tok = np.full((n, k), eos, np.int64)
        src, col = np.nonzero(going)
        new_cum[src, slot[src, col]] = top[src, col]
        new_beam[src, slot[src, col]] = beam_of[src, col]
        new_tok[src, slot[src, col]] = tok_of[src, col]
        for i, c in zip(*np.nonzero(ending)):  # row-major: each source's in rank order
            norm = top[i, c] / _normaliser(t + 1, length_penalty, gnmt)
            ended[i].append((norm, top[i, c], True, history[i, beam_of[i, c]].copy(),
                             None if weights is None else weights[i, beam_of[i, c]].copy()))
        for i in np.unique(np.nonzero(ending)[0]):
            if len(ended[i]) >= k:
                done[i] = True
                new_cum[i] = -np.inf
        rows = (np.arange(n)[:, None] * k + new_beam).reshape(-1)
        history = np.concatenate([np.take_along_axis(history, new_beam[:, :, None], axis=1), new_tok[:, :, None]],
                                 axis=2)
        if weights is not None and step_weights is not None:
            weights = np.concatenate([np.take_along_axis(weights, new_beam[:, :, None, None], axis=1),
                                      np.take_along_axis(step_weights, new_beam[:, :, None], axis=1)[:, :, None]],
                                     axis=2)
        cum, tokens = new_cum, new_tok.reshape(-1)
        if done.all():
            break
        if t + 1 < max_len:
            state = _reorder(model, state, rows)
    for i in range(n):
        if not done[i]:
            for beam in range(k):
                if np.isfinite(cum[i, beam]):
                    norm = cum[i, beam] / _normaliser(history.shape[2], length_penalty, gnmt)
                    ended[i].append((norm, cum[i, beam], False, history[i, beam].copy(),
                                     None if weights is None else weights[i, beam].copy()))
    out_tokens, scores = [], np.full((n, n_best), -np.inf)
    log_probs_out, finished = np.full((n, n_best), -np.inf), np.zeros((n, n_best), bool)
    out_weights: list[list[np.ndarray]] = []
    for i in range(n):
        best = sorted(range(len(ended[i])), key=lambda j: -ended[i][j][0])[:n_best]  # stable: earlier first
        out_tokens.append([ended[i][j][3] for j in best])
        out_weights.append([ended[i][j][4] for j in best])  # type: ignore[misc]  # arrays when read is set
        for r, j in enumerate(best):
            scores[i, r], log_probs_out[i, r], finished[i, r] = ended[i][j][:3]
    return BeamResult(out_tokens, scores, log_probs_out, finished, out_weights if read is not None else None)


@ops.row_invariant()
def sequence_log_prob(model: StepModel, batch: Any, targets: Any, bos: int, eos: int | None = None) -> np.ndarray:
    """log P(targets[i] | source i) [N] (float64), teacher-forced: the sum of the step log-probs of each target's
    tokens (int sequences without bos), plus that of eos after them when ``eos`` is given — the score beam search
    ranks with length_penalty=0, for the error analysis "is P(y*|x) > P(y_hat|x)?"."""
    n, bos = v.source_count(batch), v.token_id("bos", bos)
    eos = None if eos is None else v.token_id("eos", eos)
    seqs = v.target_sequences(targets, n)
    if eos is not None:
        seqs = [np.concatenate([s, [eos]]).astype(np.int64) for s in seqs]
    steps = max(len(s) for s in seqs)
    total = np.zeros(n, np.float64)
    if steps == 0:
        return total
    padded = np.full((n, steps), bos if eos is None else eos, np.int64)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    valid = np.arange(steps)[None, :] < np.array([len(s) for s in seqs])[:, None]
    state, tokens = model.start(batch), np.full(n, bos, np.int64)
    for t in range(steps):
        log_probs, state = _step(model, tokens, state, eos)
        if int(padded[valid[:, t], t].max(initial=0)) >= log_probs.shape[1]:
            raise ValueError(f"targets must hold token ids in 0..V-1 = 0..{log_probs.shape[1] - 1}, got "
                             f"{int(padded[valid[:, t], t].max())} at step {t}")
        picked = log_probs[np.arange(n), np.minimum(padded[:, t], log_probs.shape[1] - 1)].astype(np.float64)
        total += np.where(valid[:, t], picked, 0.0)
        tokens = padded[:, t]
    return total

