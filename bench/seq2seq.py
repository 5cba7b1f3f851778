"""Seq2seq with attention (issue 13's speed section): a training step, greedy and beam-search decoding, the attention
ops, and a per-phase profile of rnncore's training step, against PyTorch (eager, as its seq2seq tutorial writes it)
and JAX (jit + lax.scan) on the same weights.

    python bench/seq2seq.py                      # every part, 1 and 2 threads
    python bench/seq2seq.py --quick              # the course's size only, 1 thread
    python bench/seq2seq.py --parts train,decode --threads 1 --peers torch

Each row checks every library's result against the others before timing (logits, loss, α and every gradient for
the training step; scores and tokens for decoding; outputs and gradients for the attention ops), then times them
interleaved in one process (common.time_interleaved; one worker process per thread count, a 1-thread worker pinned
to one core: common.run_worker). Writes bench/results/seq2seq-<time>.json. The models are in bench/seq2seq_peers.py;
bench/README.md says what each row runs and holds the measured figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# bench/profile.py shadows the standard library's profile module, which torch.optim imports (through cProfile):
# load the standard one before this directory goes on the path.
if sys.path and Path(sys.path[0]).resolve() == BENCH:
    sys.path.pop(0)
import cProfile  # noqa: E402, F401

sys.path.insert(0, str(BENCH))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
from seq2seq_peers import (  # noqa: E402
    BOS,
    EOS,
    PAD,
    JaxTraining,
    Model,
    TorchDecoding,
    TorchTraining,
    init_weights,
)

from common import AGREEMENT, disagreement, machine_info, run_worker, time_interleaved  # noqa: E402
from peers import Prepared  # noqa: E402

RESULTS = BENCH / "results"
PARTS = ("train", "decode", "attention", "profile")
PEERS = ("torch", "jax")

# ---- what is measured -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """A training-step row: the model, source / target lengths, batch, and the issue's target (× best peer, and
    the per-peer targets where the issue names them)."""
    name: str
    model: Model
    Tx: int
    Ty: int
    B: int
    targets: tuple = ()  # ((peer or "best", minimum speed-up), ...)


#: The course's date model (Tx=30, Ty=10, B=64, bi-LSTM 32 per direction, decoder LSTM 64, A=10, vocab 37 -> 11),
#: and the larger sizes: decoder H, encoder H/2 per direction (so the context Dv = H, as in the course), A = H (the
#: PyTorch tutorial's BahdanauAttention(hidden_size) and TF-Addons' default units), the course's vocabularies.
TRAIN = [
    TrainConfig("course/Tx30-Ty10-B64-H64", Model(37, 11, 32, 64, 10), 30, 10, 64, (("torch", 5.0), ("jax", 2.0))),
    TrainConfig("H256/Tx50-Ty50-B64", Model(37, 11, 128, 256, 256), 50, 50, 64, (("best", 2.0),)),
    TrainConfig("H512/Tx50-Ty50-B64", Model(37, 11, 256, 512, 512), 50, 50, 64, (("best", 1.3),)),
]

#: Decoding: beam 5, B=32 sources of Tx=30 characters (one-hot, 37), Ty = 50 generated tokens (eos is biased away so
#: every hypothesis runs the full 50 steps), target vocabulary 1,000 and 10,000 with an embedding of 128 fed back;
#: the H256 model's recurrent sizes.
DECODE_VOCABS = (1000, 10000)
DECODE = dict(B=32, Tx=30, max_len=50, beam=5, encoder_hidden=128, decoder_hidden=256, attention_units=256,
              target_embedding=128)
#: The attention micro-benchmark's sizes: the course's (Tx=30, B=64, A=10, Dv=64, query 64).
ATTENTION = dict(B=64, Tx=30, A=10, Dv=64, Dq=64)
LR = 1e-3


def train_flops(c: TrainConfig) -> float:
    """GEMM-like FLOPs of one training step (2 per multiply-add; backward = 2 × forward): the bi-LSTM encoder, the
    key projection, per decoder step the query projection, scores, context and the cell, and the output layer."""
    m = c.model
    He, H, A, Dv, E = m.encoder_hidden, m.decoder_hidden, m.attention_units, m.values, m.target_embedding
    encoder = 2 * 2 * 4 * He * (m.source_vocab + He) * c.B * c.Tx
    keys = 2 * c.B * c.Tx * Dv * A
    step = 2 * c.B * (H * A + c.Tx * A + c.Tx * Dv + 4 * H * (E + Dv + H))
    output = 2 * c.B * c.Ty * H * m.target_vocab
    return 3.0 * (encoder + keys + c.Ty * step + output)


def train_necessary_flops(c: TrainConfig) -> float:
    """``train_flops`` without the one-hot source's input product and its backward: a column gather and a
    scatter-add (no multiply-adds) in rnncore, a dense product in the peers. What the ceilings below divide."""
    return train_flops(c) - 3.0 * 2 * 2 * 4 * c.model.encoder_hidden * c.model.source_vocab * c.B * c.Tx


def train_activations(c: TrainConfig) -> float:
    """The transcendental evaluations (exp, tanh, sigmoid) one training step cannot avoid: the forward's, once each
    (a backward takes every derivative from a stored output): per LSTM unit and step 3 sigmoids and 2 tanh (both
    encoder directions, the decoder), the additive score's tanh over Tx·A and its softmax's exp over Tx per decoder
    step, and the output softmax's exp over V."""
    m = c.model
    He, H, A, V = m.encoder_hidden, m.decoder_hidden, m.attention_units, m.target_vocab
    cells = 5 * c.B * (2 * c.Tx * He + c.Ty * H)
    attention = c.B * c.Ty * c.Tx * (A + 1)
    return float(cells + attention + c.B * c.Ty * V)


def activation_ns(seconds: float = 0.3) -> float:
    """Nanoseconds per float32 tanh at NumPy's vectorised rate on this thread (its SIMD tanh; the minimum over
    repeats of a 64K-entry, L2-resident array): what an activation costs at best on this core (a team of n threads:
    this / n, every core at that rate)."""
    x = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
    y = np.empty_like(x)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(20):
            np.tanh(x, out=y)
        best = min(best, (time.perf_counter() - t0) / 20 / x.size)
    return best * 1e9


def decode_flops(mode: str, V: int) -> float:
    """Multiply-add FLOPs (2 each) one decode of ``DECODE`` needs: the encoder once per source (recurrent products;
    the one-hot input is a gather) and the key projection, then per step and per row (B greedy rows, B·beam beam
    rows) the query projection, scores and context, the cell (embedding + context + state) and the output layer."""
    d = DECODE
    He, H, A, E, B, Tx = d["encoder_hidden"], d["decoder_hidden"], d["attention_units"], d["target_embedding"], \
        d["B"], d["Tx"]
    Dv = 2 * He
    start = 2 * 2 * 4 * He * He * B * Tx + 2 * B * Tx * Dv * A
    rows = B * (d["beam"] if mode == "beam" else 1)
    step = 2 * rows * (H * A + Tx * A + Tx * Dv + 4 * H * (E + Dv + H) + H * V)
    return float(start + d["max_len"] * step)


def gemm_ceiling(row: dict, peer: str) -> float | None:
    """The speed-up over ``peer`` that running the row's FLOPs at the SGEMM rate measured in the same run (the
    higher of its start and end measurements; bench/sgemm.cpp, the same GEMM rnncore's kernels use) would give
    (None: not measured). The FLOPs are the model's as the peers compute it: padded target steps included and
    the first step's zero state multiplied, so an implementation that skipped those could go past it."""
    t = row["libs"].get(peer, {}).get("min_s")
    need = row.get("necessary_flops")
    if t is None or not need or not row.get("sgemm_gflops"):
        return None
    return t / (need / (row["sgemm_gflops"] * 1e9))


def compute_floor_ceiling(row: dict, peer: str) -> float | None:
    """``gemm_ceiling`` with the step's unavoidable activations (``train_activations``) added at the measured
    vectorised tanh rate (``activation_ns``): the speed-up over ``peer`` of a step that did nothing but its GEMM
    FLOPs at the SGEMM rate and its activations at NumPy's SIMD rate — no memory traffic, no Python, no optimizer."""
    t = row["libs"].get(peer, {}).get("min_s")
    need, acts, ns = row.get("necessary_flops"), row.get("activations"), row.get("activation_ns")
    if t is None or not need or not acts or not ns or not row.get("sgemm_gflops"):
        return None
    return t / (need / (row["sgemm_gflops"] * 1e9) + acts * ns * 1e-9)


def train_batch(c: TrainConfig, seed: int = 1) -> dict:
    """Sources (full length: the course pads with a character the model reads), targets in 1..V-1 whose tails are
    padded (pad = 0) to lengths drawn from Ty/2..Ty, and the teacher-forced inputs [bos, targets[:-1]]."""
    rng = np.random.default_rng(seed)
    source = rng.integers(0, c.model.source_vocab, (c.B, c.Tx), dtype=np.int64)
    targets = rng.integers(1, c.model.target_vocab, (c.B, c.Ty), dtype=np.int64)
    lengths = rng.integers(max(1, c.Ty // 2), c.Ty + 1, c.B)
    targets[np.arange(c.Ty)[None, :] >= lengths[:, None]] = PAD
    target_inputs = np.concatenate([np.full((c.B, 1), BOS, np.int64), targets[:, :-1]], axis=1)
    return dict(source=source, source_lengths=np.full(c.B, c.Tx, np.int64), targets=targets,
                target_inputs=target_inputs)


def train_weights(c: TrainConfig, batch: dict) -> dict[str, np.ndarray]:
    """init_weights, with the attention made to discriminate. Under PyTorch's init this model's scores s = u · w_v
    + score_bias have one sign over a whole batch (the encoder's outputs are small, so K' varies little): relu(s) is
    then 0 everywhere (α uniform, every attention gradient exactly 0: a check that cannot fail) or positive
    everywhere (dscore_bias = Σ de, 0 up to rounding). So the key, query and score weights are scaled by 8 and
    score_bias is minus the median of s at the first decoder step (h = 0) over the batch: relu's kink lies inside
    the data and α varies over the source. Timing does not depend on the values."""
    rc = _rnncore()
    w = init_weights(c.model, seed=0)
    for name in ("key.weight", "query.weight", "score.weight"):
        w[name] *= 8
    x = np.ascontiguousarray(np.eye(c.model.source_vocab, dtype=np.float32)[batch["source"].T])   # [Tx, B, Vin]
    directions = []
    for suffix, xs in (("", x), ("_reverse", np.ascontiguousarray(x[::-1]))):
        y = rc.ops.lstm_forward(xs, None, None, *(w[f"encoder.{n}_l0{suffix}"] for n in
                                                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh")), training=False)[0]
        directions.append(y if not suffix else y[::-1])
    a = np.concatenate(directions, axis=2).transpose(1, 0, 2)                                        # [B, Tx, Dv]
    s = np.tanh(a @ w["key.weight"].T + w["query.bias"]) @ w["score.weight"][0]
    w["score.bias"][:] = -np.median(s)
    return w


# ---- rnncore ---------------------------------------------------------------------------------------------------------


def _rnncore():
    import rnncore
    return rnncore


def rnncore_model(m: Model, weights: dict[str, np.ndarray]):
    """rc.Seq2Seq configured as the peers' model, with ``weights`` loaded (``to_rnncore``)."""
    rc = _rnncore()
    model = rc.Seq2Seq(m.source_vocab, m.target_vocab, encoder_hidden=m.encoder_hidden,
                       decoder_hidden=m.decoder_hidden, attention_units=m.attention_units,
                       feed_targets=bool(m.target_embedding), target_embedding_size=m.target_embedding or None,
                       bridge="zeros", energy_activation="relu", score_bias=True, source_one_hot=True, seed=0)
    model.load_state_dict(to_rnncore(weights, model.state_dict()))
    return model


#: rc.Seq2Seq's parameter names for the peers' weight names (seq2seq_peers.weight_shapes), and how a value maps.
RNNCORE_NAMES = {
    **{f"encoder.{w}_l0{s}": f"encoder.{w}_l0{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
       for s in ("", "_reverse")},
    "key.weight": "decoder.key_weight", "query.weight": "decoder.query_weight", "query.bias": "decoder.bias",
    "score.weight": "decoder.score_weight", "score.bias": "decoder.score_bias",
    "cell.weight_ih": "decoder.weight_ih", "cell.weight_hh": "decoder.weight_hh",
    "cell.bias_ih": "decoder.bias_ih", "cell.bias_hh": "decoder.bias_hh",
    "out.weight": "output.weight", "out.bias": "output.bias",
    "target_embedding.weight": "target_embedding.weight",
}


def to_rnncore(weights: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The peers' weights as rc.Seq2Seq's state dict (``state``: the model's own, for the shapes and for the
    parameters the peers do not have, which must then be the one-hot source's identity embedding)."""
    out = dict(state)
    for name, value in weights.items():
        rc_name = RNNCORE_NAMES[name]
        if rc_name not in state:
            raise KeyError(f"rc.Seq2Seq has no parameter {rc_name!r} (for {name!r}); it has {sorted(state)}")
        out[rc_name] = value.reshape(state[rc_name].shape).astype(state[rc_name].dtype)
    extra = set(state) - {RNNCORE_NAMES[n] for n in weights}
    for name in extra:
        raise KeyError(f"rc.Seq2Seq's parameter {name!r} has no counterpart in the peers' model")
    return out


def from_rnncore(grads: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """rc.Seq2Seq's gradients under the peers' names and shapes."""
    return {name: grads[RNNCORE_NAMES[name]].reshape(value.shape) for name, value in weights.items()}


class RnncoreTraining:
    """rc.Seq2Seq + rc.losses.softmax_cross_entropy (mask = targets != pad) + backward + rc.optim.Adam."""

    def __init__(self, m: Model, weights: dict[str, np.ndarray], batch: dict, lr: float):
        rc = _rnncore()
        self.rc, self.weights, self.batch = rc, weights, batch
        self.model = rnncore_model(m, weights)
        self.optimizer = rc.optim.Adam(self.model, lr=lr)
        self.mask = batch["targets"] != PAD

    def loss(self):
        b = self.batch  # with feed_targets=False only the shape of target_inputs is used (Ty)
        logits, alpha = self.model(b["source"], b["source_lengths"], b["target_inputs"])
        loss, dlogits = self.rc.losses.softmax_cross_entropy(logits, b["targets"], mask=self.mask)
        return loss, dlogits, logits, alpha

    def run(self) -> None:
        self.model.zero_grad()
        _, dlogits, _, _ = self.loss()
        self.model.backward(dlogits)
        self.optimizer.step()

    def outputs(self) -> dict:
        self.model.zero_grad()
        loss, dlogits, logits, alpha = self.loss()
        self.model.backward(dlogits)
        grads = from_rnncore({k: g.copy() for k, g in self.model.gradients().items()}, self.weights)
        self.model.zero_grad()
        return dict(logits=logits, alpha=alpha, loss=loss, grads=grads)


def rnncore_missing() -> str | None:
    """Why rnncore's side cannot run on this build (None: it can)."""
    try:
        rc = _rnncore()
    except ImportError as e:
        return f"rnncore not importable ({e})"
    missing = [n for n in ("Seq2Seq",) if not hasattr(rc, n)]
    missing += [f"ops.{n}" for n in ("attention_decoder_forward", "attention_decoder_backward")
                if not hasattr(rc.ops, n)]
    return f"not on this branch: rc.{', rc.'.join(missing)}" if missing else None


# ---- checks ------------------------------------------------------------------------------------------------------


def _flat(outputs: dict) -> dict[str, np.ndarray]:
    """Outputs as name -> array: nested dicts (the gradients) become 'grads:<name>', floats 0-d arrays."""
    flat = {}
    for key, value in outputs.items():
        if isinstance(value, dict):
            flat |= {f"{key}:{k}": np.asarray(v) for k, v in value.items()}
        elif not isinstance(value, (list, str)):
            flat[key] = np.asarray(value)
    return flat


def check(mine: dict, theirs: dict) -> dict:
    """Every output both sides have: common.disagreement (max |a-b| / max |b|), ok when all are <= AGREEMENT."""
    a, b = _flat(mine), _flat(theirs)
    per = {k: disagreement(a[k], b[k]) for k in a.keys() & b.keys()}
    worst = max(per, key=per.get) if per else None
    out = {"ok": bool(per) and per[worst] <= AGREEMENT, "worst": worst, "max": per[worst] if per else None,
           "per_output": per}
    if "tokens" in mine and "tokens" in theirs:  # decoding: how many sources got the very same tokens
        same = sum(np.array_equal(x, y) for x, y in zip(mine["tokens"], theirs["tokens"]))
        out["same_tokens"] = f"{same}/{len(mine['tokens'])}"
    return out


def bench_row(part: str, config: str, builders: dict[str, Callable[[], Prepared]], budget: float,
              unavailable: dict[str, str], steady: bool = False, **extra) -> dict:
    """Builds each library's Prepared (its first outputs() call is the warm-up: JAX compiles there), checks every
    library against the first that ran (rnncore when available), then times the run()s interleaved."""
    row = dict(part=part, config=config, libs={}, checks={}, errors={}, unavailable=dict(unavailable), **extra)
    prepared, outputs = {}, {}
    for name, build in builders.items():
        try:
            t0 = time.perf_counter()
            p = build()
            outputs[name] = p.outputs()
            prepared[name] = p
            row["libs"][name] = {"warmup_s": time.perf_counter() - t0}
        except Exception as e:  # a library failing must not stop the others
            row["errors"][name] = f"{type(e).__name__}: {e}"
    if outputs:
        ref = next(iter(outputs))
        row["checked_against"] = ref
        for name in outputs:
            if name != ref:
                row["checks"][name] = check(outputs[name], outputs[ref])
    if any(not c["ok"] for c in row["checks"].values()):
        row["timed"] = False  # a wrong result is not timed
    elif prepared:
        times = time_interleaved({n: p.run for n, p in prepared.items()}, budget)
        for name, t in times.items():
            row["libs"][name].update(min_s=t.min, median_s=t.median, samples=len(t.samples))
        if steady:  # again, each sample right after an untimed call of the same library
            for name, t in time_interleaved({n: p.run for n, p in prepared.items()}, budget, lead_in=True).items():
                row["libs"][name].update(steady_min_s=t.min, steady_median_s=t.median)
        row["timed"] = True
    return row


def _prepared(obj) -> Prepared:
    return Prepared(obj.run, obj.outputs)


# ---- the parts -------------------------------------------------------------------------------------------------------


def train_row(c: TrainConfig, peers: list[str], budget: float, sgemm: float, tanh_ns: float) -> dict:
    why = rnncore_missing()
    batch = train_batch(c)
    weights = train_weights(c, batch)
    libs = {"rnncore": RnncoreTraining} if why is None else {}
    libs |= {"torch": TorchTraining, "jax": JaxTraining}
    builders = {name: (lambda cls=cls: _prepared(cls(c.model, weights, batch, LR)))
                for name, cls in libs.items() if name == "rnncore" or name in peers}
    row = bench_row("train", c.name, builders, budget, {} if why is None else {"rnncore": why}, steady=True,
                    flops=train_flops(c), necessary_flops=train_necessary_flops(c),
                    targets=[list(t) for t in c.targets], sgemm_gflops=sgemm, activations=train_activations(c),
                    activation_ns=tanh_ns)
    print(format_row(row), flush=True)
    return row


def decode_weights(m: Model) -> dict[str, np.ndarray]:
    """init_weights with eos's output bias at -100: no hypothesis ends early, every one runs max_len steps."""
    w = init_weights(m, seed=0)
    w["out.bias"][EOS] = -100.0
    return w


class TimedSteps:
    """A step model (rc.decode's protocol) whose start / step / reorder calls add their time to ``seconds``: what
    the model's steps cost inside a decode, the rest being the search's own work."""

    def __init__(self, model):
        self.model = model
        self.seconds = dict.fromkeys(("start", "step", "reorder"), 0.0)

    def _timed(self, name, *args):
        t0 = time.perf_counter()
        out = getattr(self.model, name)(*args)
        self.seconds[name] += time.perf_counter() - t0
        return out

    def start(self, batch):
        return self._timed("start", batch)

    def step(self, tokens, state):
        return self._timed("step", tokens, state)

    def reorder(self, state, indices):
        if not hasattr(self.model, "reorder"):
            return _rnncore().decode.reorder_state(state, indices)
        return self._timed("reorder", state, indices)


class RnncoreDecoding:
    def __init__(self, m: Model, weights: dict[str, np.ndarray]):
        self.rc = _rnncore()
        self.model = rnncore_model(m, weights).eval()
        self._greedy, self._beam_search = self.rc.decode.greedy, self.rc.decode.beam_search

    def greedy(self, source, max_len, model=None):
        r = self._greedy(model or self.model, source, BOS, EOS, max_len)
        return r.tokens, r.scores

    def beam_search(self, source, max_len, beam, model=None):
        r = self._beam_search(model or self.model, source, BOS, EOS, max_len, beam_size=beam)
        return [t[0] for t in r.tokens], r.scores[:, 0]

    def split(self, mode: str, source, max_len, beam) -> dict[str, float]:
        """Milliseconds of one decode in the model's start / step / reorder calls and in the search itself (the
        minimum of 3 runs each)."""
        runs = []
        for _ in range(3):
            timed = TimedSteps(self.model)
            t0 = time.perf_counter()
            if mode == "greedy":
                self.greedy(source, max_len, timed)
            else:
                self.beam_search(source, max_len, beam, timed)
            total = time.perf_counter() - t0
            runs.append(dict(timed.seconds, search=total - sum(timed.seconds.values()), total=total))
        return {k: 1e3 * min(r[k] for r in runs) for k in runs[0]}


class RnncoreDefaultPaths(RnncoreDecoding):
    """rnncore's decoders without the row-invariant mode they run the model under (the functions rc.decode's
    decorator wraps): the mode's cost, timed interleaved with rnncore's row."""

    def __init__(self, m: Model, weights: dict[str, np.ndarray]):
        super().__init__(m, weights)
        self._greedy = self.rc.decode.greedy.__wrapped__
        self._beam_search = self.rc.decode.beam_search.__wrapped__


def decode_row(V: int, mode: str, peers: list[str], budget: float, sgemm: float) -> dict:
    """Greedy or beam-5 decoding of B sources, max_len steps, target vocabulary V."""
    why = rnncore_missing()
    d = DECODE
    m = Model(37, V, d["encoder_hidden"], d["decoder_hidden"], d["attention_units"], d["target_embedding"])
    weights = decode_weights(m)
    source = np.random.default_rng(2).integers(3, 37, (d["B"], d["Tx"]), dtype=np.int64)
    libs = {"rnncore": RnncoreDecoding, "rnncore_default_paths": RnncoreDefaultPaths} if why is None else {}
    libs |= {"torch": TorchDecoding} if "torch" in peers else {}

    def builder(cls) -> Prepared:
        decoder = cls(m, weights)
        if mode == "greedy":
            run = lambda: decoder.greedy(source, d["max_len"])  # noqa: E731
        else:
            run = lambda: decoder.beam_search(source, d["max_len"], d["beam"])  # noqa: E731

        def outputs():
            tokens, scores = run()
            return dict(tokens=[np.asarray(t) for t in tokens], scores=np.asarray(scores, np.float64))
        return Prepared(run, outputs)

    builders = {name: (lambda cls=cls: builder(cls)) for name, cls in libs.items()}
    row = bench_row("decode", f"{mode}/V{V}", builders, budget, {} if why is None else {"rnncore": why},
                    mode=mode, vocab=V, sources=d["B"], beam=d["beam"] if mode == "beam" else 1,
                    max_len=d["max_len"], tokens=d["B"] * d["max_len"],  # eos is never chosen: max_len per source
                    necessary_flops=decode_flops(mode, V), sgemm_gflops=sgemm)
    if row.get("timed") and "rnncore" in libs:
        row["rnncore_split_ms"] = RnncoreDecoding(m, weights).split(mode, source, d["max_len"], d["beam"])
    print(format_row(row), flush=True)
    return row


def _attention_inputs(seed: int = 3) -> dict:
    a = ATTENTION
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    k = 1 / math.sqrt(a["A"])
    lengths = rng.integers(1, a["Tx"] + 1, a["B"])
    lengths[0] = a["Tx"]
    return dict(e=f(a["B"], a["Tx"]), values=f(a["B"], a["Tx"], a["Dv"]), dcontext=f(a["B"], a["Dv"]),
                query=f(a["B"], a["Dq"]), projected_keys=f(a["B"], a["Tx"], a["A"]),
                w_q=rng.uniform(-k, k, (a["A"], a["Dq"])).astype(np.float32),
                b_a=rng.uniform(-k, k, a["A"]).astype(np.float32), w_v=rng.uniform(-k, k, a["A"]).astype(np.float32),
                score_bias=np.float32(0.1), lengths=lengths, mask=np.arange(a["Tx"])[None, :] < lengths[:, None])


def _rnncore_softmax_context(inp):
    """rc.ops.attention_context and its backward (the fused masked softmax + context), given torch's boolean mask."""
    ops = _rnncore().ops
    e, mask, values, dctx = inp["e"], inp["mask"], inp["values"], inp["dcontext"]

    def run():
        context, alpha = ops.attention_context(e, values, mask=mask)
        de, dvalues = ops.attention_context_backward(alpha, values, dctx)
        return dict(alpha=alpha, context=context, de=de, dvalues=dvalues)
    return Prepared(run, run)


def _torch_softmax_context(inp):
    import torch
    e = torch.from_numpy(inp["e"]).requires_grad_(True)
    values = torch.from_numpy(inp["values"]).requires_grad_(True)
    keep, dctx = torch.from_numpy(inp["mask"]), torch.from_numpy(inp["dcontext"])

    def run():
        e.grad = values.grad = None
        alpha = torch.softmax(e.masked_fill(~keep, -math.inf), dim=1)
        context = torch.bmm(alpha.unsqueeze(1), values).squeeze(1)
        context.backward(dctx)
        return alpha, context

    def outputs():
        alpha, context = run()
        return dict(alpha=alpha.detach().numpy(), context=context.detach().numpy(), de=e.grad.numpy(),
                    dvalues=values.grad.numpy())
    return Prepared(run, outputs)


ADDITIVE_GRADS = ("dquery", "dprojected_keys", "dvalues", "dw_q", "db_a", "dw_v", "dscore_bias")


def _rnncore_additive(inp):
    """rc.ops.additive_attention_forward / _backward: one decoder step of the course's attention."""
    ops = _rnncore().ops

    def run():
        context, alpha, ws = ops.additive_attention_forward(
            inp["query"], inp["projected_keys"], inp["values"], inp["w_q"], inp["b_a"], inp["w_v"],
            lengths=inp["lengths"], score_bias=inp["score_bias"], energy_activation="relu")
        grads = ops.additive_attention_backward(ws, inp["dcontext"])
        return dict(context=context, alpha=alpha, grads={k: getattr(grads, k) for k in ADDITIVE_GRADS})
    return Prepared(run, run)


def _torch_additive(inp):
    import torch
    leaves = {k: torch.from_numpy(np.asarray(inp[k])).requires_grad_(True)
              for k in ("query", "projected_keys", "values", "w_q", "b_a", "w_v", "score_bias")}
    keep, dctx = torch.from_numpy(inp["mask"]), torch.from_numpy(inp["dcontext"])
    F = torch.nn.functional

    def run():
        for t in leaves.values():
            t.grad = None
        q, kp, v = leaves["query"], leaves["projected_keys"], leaves["values"]
        u = torch.tanh(kp + F.linear(q, leaves["w_q"], leaves["b_a"]).unsqueeze(1))
        energy = F.relu(u @ leaves["w_v"] + leaves["score_bias"])
        alpha = torch.softmax(energy.masked_fill(~keep, -math.inf), dim=1)
        context = torch.bmm(alpha.unsqueeze(1), v).squeeze(1)
        context.backward(dctx)
        return context, alpha

    def outputs():
        context, alpha = run()
        grads = {f"d{k}": leaves[k].grad.numpy() for k in leaves}
        return dict(context=context.detach().numpy(), alpha=alpha.detach().numpy(), grads=grads)
    return Prepared(run, outputs)


def attention_rows(peers: list[str], budget: float) -> list[dict]:
    rows = []
    inp = _attention_inputs()
    try:
        ops = _rnncore().ops
    except ImportError:
        ops = None
    a = ATTENTION
    sizes = f"B{a['B']}-Tx{a['Tx']}-Dv{a['Dv']}"
    cases = [("softmax+context", sizes, _rnncore_softmax_context, _torch_softmax_context, "attention_context"),
             ("additive step", f"{sizes}-A{a['A']}-Dq{a['Dq']}", _rnncore_additive, _torch_additive,
              "additive_attention_forward")]
    for name, shape, mine, torch_fn, needs in cases:
        builders, why = {}, {}
        if ops is not None and hasattr(ops, needs):
            builders["rnncore"] = lambda f=mine: f(inp)
        else:
            why["rnncore"] = f"not on this branch: rc.ops.{needs}"
        if "torch" in peers:
            builders["torch"] = lambda f=torch_fn: f(inp)
        row = bench_row("attention", f"{name}/{shape}", builders, budget, why)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def profile_row(c: TrainConfig, budget: float) -> dict:
    """rnncore's training step by phase: each phase's op timed alone at the step's sizes (forward + backward),
    and the whole step; "other" is the whole step minus the phases that partition it."""
    rc = _rnncore()
    ops = rc.ops
    m, B, Tx, Ty = c.model, c.B, c.Tx, c.Ty
    He, H, A, Dv, E, V = (m.encoder_hidden, m.decoder_hidden, m.attention_units, m.values, m.target_embedding,
                          m.target_vocab)
    batch = train_batch(c)
    w = train_weights(c, batch)
    rng = np.random.default_rng(4)
    f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    x_src = np.ascontiguousarray(batch["source"].T)                        # [Tx, B] ids: one-hot rows
    a, dy_enc = f32(B, Tx, Dv), f32(Tx, B, He)
    kp = np.ascontiguousarray((a.reshape(-1, Dv) @ w["key.weight"].T).reshape(B, Tx, A))
    x_dec, h_dec, dy_dec = f32(Ty, B, E + Dv), f32(B * Ty, H), f32(Ty, B, H)
    logits = f32(B, Ty, V)
    lengths = batch["source_lengths"]
    enc = [tuple(w[f"encoder.{n}_l0{s}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
           for s in ("", "_reverse")]
    dk, dw_k = np.zeros_like(kp), np.zeros_like(w["key.weight"])
    dw_o, db_o = np.zeros_like(w["out.weight"]), np.zeros_like(w["out.bias"])
    decoder_kw = dict(score="additive", w_q=w["query.weight"], b_a=w["query.bias"], w_v=w["score.weight"][0],
                      score_bias=float(w["score.bias"][0]), energy_activation="relu")
    cell_w = (w["cell.weight_ih"], w["cell.weight_hh"], w["cell.bias_ih"], w["cell.bias_hh"])
    x_targets = np.zeros((Ty, B, E), np.float32)  # [Ty, B, 0]: the context is the input

    def encoder_ops():
        for ws_in, rev in ((enc[0], False), (enc[1], True)):
            x = x_src[::-1] if rev else x_src
            *_, ws = ops.lstm_forward(np.ascontiguousarray(x), None, None, *ws_in, lengths=lengths)
            ops.lstm_backward(ws, dy_enc, need_dx=False)

    def keys():
        ops.linear_forward(a.reshape(-1, Dv), w["key.weight"])
        ops.linear_backward(a.reshape(-1, Dv), w["key.weight"], dk.reshape(-1, A), dw_k)

    def decoder():
        out = ops.attention_decoder_forward(x_targets, None, None, *cell_w, kp, a, lengths, **decoder_kw)
        ops.attention_decoder_backward(out[-1], dy_dec)

    def attention():
        dkp, dvals = np.zeros_like(kp), np.zeros_like(a)
        wss = [ops.additive_attention_forward(h_dec[:B], kp, a, w["query.weight"], w["query.bias"],
                                              w["score.weight"][0], lengths=lengths,
                                              score_bias=float(w["score.bias"][0]), energy_activation="relu")[2]
               for _ in range(Ty)]
        for ws in reversed(wss):
            ops.additive_attention_backward(ws, dy_dec[0, :, :Dv], dprojected_keys=dkp, dvalues=dvals)

    def cell():
        *_, ws = ops.lstm_forward(x_dec, None, None, *cell_w)
        ops.lstm_backward(ws, dy_dec)

    def output():
        ops.linear_forward(h_dec, w["out.weight"], w["out.bias"])
        ops.linear_backward(h_dec, w["out.weight"], logits.reshape(-1, V), dw_o, db_o)

    def loss():
        rc.losses.softmax_cross_entropy(logits, batch["targets"], mask=batch["targets"] != PAD)

    phases = {"key projection": keys, "decoder (fused op: attention + cell)": decoder,
              "output projection": output, "softmax + loss": loss,
              "  encoder as two rc.ops.lstm calls, time-major": encoder_ops,
              "  inside the decoder: attention (Ty additive-op steps)": attention,
              "  inside the decoder: cell (LSTM op over Ty)": cell}
    if hasattr(rc, "Seq2Seq"):
        step = RnncoreTraining(m, w, batch, LR)
        dkeys = f32(B, Tx, Dv)

        def encoder():  # as rc.Seq2Seq runs it: the source ids (one-hot rows) through its bidirectional rc.LSTM
            step.model.encoder(batch["source"], lengths=lengths)
            step.model.encoder.backward(dkeys, need_dx=False)

        phases = {"whole step": step.run, "encoder (rc.LSTM bidirectional, one-hot input)": encoder, **phases,
                  "Adam step": step.optimizer.step}
    available, errors = {}, {}
    for name, fn in phases.items():
        try:
            fn()
            available[name] = fn
        except Exception as e:  # an op not on this branch
            errors[name] = f"{type(e).__name__}: {e}"
    phase_ms = {n: t.min * 1e3 for n, t in time_interleaved(available, budget).items()}
    partition = sum(v for n, v in phase_ms.items() if n != "whole step" and not n.startswith("  "))
    if "whole step" in phase_ms:
        phase_ms["other (Python, glue, allocation)"] = phase_ms["whole step"] - partition
    whole = phase_ms.get("whole step", partition)  # without rc.Seq2Seq: shares of the phases' sum
    order = ["whole step", *(n for n in phases if n != "whole step" and not n.startswith("  ")),
             "other (Python, glue, allocation)", *(n for n in phases if n.startswith("  "))]
    phase_ms = {n: phase_ms[n] for n in order if n in phase_ms}
    row = dict(part="profile", config=c.name, phases_ms=phase_ms,
               share={n: v / whole for n, v in phase_ms.items()}, errors=errors)
    print(format_row(row), flush=True)
    return row


# ---- worker, tables, driver ------------------------------------------------------------------------------------------


def versions(peers: list[str], threads: int) -> dict:
    out = {}
    try:
        rc = _rnncore()
        rc.set_num_threads(threads)
        out["rnncore"] = rc.__version__
        out["rnncore_threads"] = rc.get_num_threads()
    except ImportError as e:
        out["rnncore"] = f"n/a ({e})"
    if "torch" in peers:
        import torch
        torch.set_num_threads(threads)
        out["torch"], out["torch_threads"] = torch.__version__, torch.get_num_threads()
    if "jax" in peers:
        import jax
        out["jax"], out["jax_devices"] = jax.__version__, [str(d) for d in jax.devices()]
    return out


def available_peers(names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            __import__(name)
            out.append(name)
        except ImportError:
            print(f"{name} not importable: left out", flush=True)
    return out


def worker(plan_file: str, out_file: str) -> None:
    from native import sgemm_rates
    plan = json.loads(Path(plan_file).read_text())
    threads, budget, parts = plan["threads"], plan["budget"], plan["parts"]
    peers = available_peers(plan["peers"])
    result = {"threads": threads, "affinity": sorted(os.sched_getaffinity(0)), "versions": versions(peers, threads),
              "loadavg_start": list(os.getloadavg()), "sgemm_by_gemm_start": sgemm_rates(threads), "rows": []}
    sgemm = max(result["sgemm_by_gemm_start"].values())
    result["activation_ns"] = tanh_ns = activation_ns()
    print(f"[worker threads={threads} cpus={result['affinity']}] SGEMM {sgemm:.1f} GFLOP/s; NumPy tanh "
          f"{tanh_ns:.3f} ns/float; {result['versions']}", flush=True)
    configs = [c for c in TRAIN if c.name in plan["train_configs"]]
    if "train" in parts:
        # (NumPy's tanh runs on one thread: a team of n would evaluate n at a time)
        result["rows"] += [train_row(c, peers, budget, sgemm, tanh_ns / threads) for c in configs]
    if "decode" in parts:
        result["rows"] += [decode_row(V, mode, peers, budget, sgemm)
                           for V in plan["vocabs"] for mode in ("greedy", "beam")]
    if "attention" in parts:
        result["rows"] += attention_rows(peers, budget)
    if "profile" in parts:
        result["rows"] += [profile_row(c, budget) for c in configs]
    result["sgemm_by_gemm_end"] = sgemm_rates(threads)
    result["sgemm_gflops"] = max(sgemm, *result["sgemm_by_gemm_end"].values())
    for row in result["rows"]:  # the ceilings and % SGEMM against the run's best measurement
        if "sgemm_gflops" in row:
            row["sgemm_gflops"] = result["sgemm_gflops"]
    result["loadavg_end"] = list(os.getloadavg())
    Path(out_file).write_text(json.dumps(result, indent=1, default=float))


def _ms(row: dict, lib: str) -> str:
    v = row["libs"].get(lib, {}).get("min_s")
    if v is not None:
        return f"{v * 1e3:.4g}"
    if lib in row.get("unavailable", {}):
        return "n/a"
    if lib in row.get("errors", {}):
        return "error"
    return "-"


def speedups(row: dict) -> dict:
    """peer time / rnncore time per peer, and against the fastest peer (> 1: rnncore faster)."""
    t = {n: v["min_s"] for n, v in row["libs"].items() if "min_s" in v}
    out = {}
    if "rnncore" in t:
        for peer in PEERS:
            if peer in t:
                out[peer] = t[peer] / t["rnncore"]
        peers = [p for p in PEERS if p in t]
        if peers:
            out["best"] = min(t[p] for p in peers) / t["rnncore"]
    return out


def _check_text(row: dict) -> str:
    if not row["checks"]:
        return "no check (one library)" if row.get("libs") else "nothing ran"
    bad = [f"{n}:{c['worst']} {c['max']:.1e}" for n, c in row["checks"].items() if not c["ok"]]
    tokens = [f"{n} same tokens {c['same_tokens']}" for n, c in row["checks"].items() if "same_tokens" in c]
    text = ("FAIL " + ", ".join(bad)) if bad else f"ok {max(c['max'] for c in row['checks'].values()):.0e}"
    return f"{text} vs {row['checked_against']}" + (f" ({'; '.join(tokens)})" if tokens else "")


def format_row(row: dict) -> str:
    if row["part"] == "profile":
        lines = [f"profile {row['config']}"]
        lines += [f"    {n:<56}{ms:9.3f} ms {100 * row['share'][n]:6.1f}%" for n, ms in row["phases_ms"].items()]
        lines += [f"    {n}: not measured ({e})" for n, e in row["errors"].items()]
        return "\n".join(lines)
    x = speedups(row)
    cols = f"{row['config']:<40}{_ms(row, 'rnncore'):>11}{_ms(row, 'torch'):>11}{_ms(row, 'jax'):>11}"
    cols += "".join(f"{'-' if k not in x else f'{x[k]:.2f}':>9}" for k in ("torch", "jax", "best"))
    if row["part"] == "train" and "min_s" in row["libs"].get("rnncore", {}):
        gf = row["flops"] / row["libs"]["rnncore"]["min_s"] / 1e9
        cols += f"  {gf:.1f} GFLOP/s ({100 * gf / row['sgemm_gflops']:.0f}% SGEMM)"
    if row["part"] == "decode":
        if "min_s" in row["libs"].get("rnncore", {}) and row.get("necessary_flops"):
            gf = row["necessary_flops"] / row["libs"]["rnncore"]["min_s"] / 1e9
            cols += f"  {gf:.1f} GFLOP/s ({100 * gf / row['sgemm_gflops']:.0f}% SGEMM)"
        rates = [f"{n} {row['tokens'] / v['min_s']:.0f}" for n, v in row["libs"].items() if "min_s" in v]
        cols += "  tokens/s: " + ", ".join(rates)
        if "rnncore_split_ms" in row:
            cols += "; rnncore ms in " + ", ".join(f"{k} {v:.1f}" for k, v in row["rnncore_split_ms"].items())
    text = f"{cols}  {_check_text(row)}"
    steady = {n: v["steady_min_s"] for n, v in row["libs"].items() if "steady_min_s" in v}
    if "rnncore" in steady:  # the targets read the row above; this line is each library's steady state
        ratios = ", ".join(f"{steady[p] / steady['rnncore']:.2f}x {p}" for p in PEERS if p in steady)
        text += ("\n    steady (each timed step right after an untimed one of its own): "
                 + ", ".join(f"{n} {v * 1e3:.4g} ms" for n, v in steady.items()) + (f" -> {ratios}" if ratios else ""))
    return text


HEADER = f"{'row':<40}{'rnncore ms':>11}{'torch ms':>11}{'jax ms':>11}{'x torch':>9}{'x jax':>9}{'x best':>9}"


def _ceiling_text(row: dict, peer: str) -> str:
    """ " (ceiling at the SGEMM rate Nx; with the activations ... Mx)": the speed-up over ``peer`` with every FLOP at
    the SGEMM rate (``gemm_ceiling``), and with the activations added at NumPy's tanh rate
    (``compute_floor_ceiling``, training rows); for "best", the lowest over the peers measured."""
    peers = [p for p in PEERS if p in row["libs"] and "min_s" in row["libs"][p]] if peer == "best" else [peer]
    ceilings = [c for c in (gemm_ceiling(row, p) for p in peers) if c is not None]
    floors = [c for c in (compute_floor_ceiling(row, p) for p in peers) if c is not None]
    text = f"ceiling at the SGEMM rate {min(ceilings):.1f}x" if ceilings else ""
    if floors:
        text += f"; with the activations at NumPy's tanh rate {min(floors):.1f}x"
    return f" ({text})" if text else ""


def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets, met or not, from one thread count's rows."""
    lines = []
    for r in rows:
        if r["part"] == "profile":
            continue
        x = speedups(r)
        if r["part"] == "train":
            for peer, want in r["targets"]:
                got = x.get(peer)
                lines.append(f"train {r['config']}: >= {want}x {peer}: " +
                             ("not measured" if got is None else f"{got:.2f}x {'met' if got >= want else 'MISSED'}")
                             + _ceiling_text(r, peer))
        elif r["part"] == "decode":
            got = x.get("torch")
            lines.append(f"decode {r['config']}: >= 5x torch tokens/s: " +
                         ("not measured" if got is None else f"{got:.2f}x {'met' if got >= 5 else 'MISSED'}")
                         + _ceiling_text(r, "torch"))
        elif r["part"] == "attention":
            got = x.get("torch")
            lines.append(f"attention {r['config']}: >= 3x torch: " +
                         ("not measured" if got is None else f"{got:.2f}x {'met' if got >= 3 else 'MISSED'}"))
    for V in sorted({r["vocab"] for r in rows if r["part"] == "decode"}):
        pair = {r["mode"]: r for r in rows if r["part"] == "decode" and r["vocab"] == V}
        for lib in ("rnncore", "torch"):
            try:
                ratio = pair["beam"]["libs"][lib]["min_s"] / pair["greedy"]["libs"][lib]["min_s"]
            except KeyError:
                continue
            goal = f" {'met' if ratio <= 3 else 'MISSED'} (<= 3x)" if lib == "rnncore" else ""
            if lib == "rnncore" and pair["greedy"].get("necessary_flops"):  # at equal GFLOP/s, time goes as FLOPs
                flops = pair["beam"]["necessary_flops"] / pair["greedy"]["necessary_flops"]
                goal += f"; its FLOPs per source {flops:.2f}x greedy's"
            lines.append(f"decode V{V}: {lib} beam-5 / greedy time per source {ratio:.2f}x{goal}")
    return lines


def print_report(report: dict) -> None:
    for threads, w in report["workers"].items():
        rows = w["rows"]
        print(f"\n== {threads} thread(s); SGEMM {w['sgemm_gflops']:.1f} GFLOP/s; times: minimum per call ==")
        for part in PARTS:
            sel = [r for r in rows if r["part"] == part]
            if not sel:
                continue
            print(f"-- {part}")
            if part != "profile":
                print(HEADER)
            for r in sel:
                print(format_row(r))
        print("-- targets")
        for line in target_lines(rows):
            print("  " + line)


def markdown(report: dict) -> str:
    """The report as markdown tables (what bench/README.md shows): per thread count, the timed rows with their
    ratios (bold: rnncore slower), the profile, and the targets."""
    def ms(row, lib):
        v = row["libs"].get(lib, {}).get("min_s")
        return f"{v * 1e3:.3g}" if v is not None else ("n/a" if lib in row.get("unavailable", {}) else "–")

    def ratio(v):
        return "–" if v is None else (f"**{v:.2f}**" if v < 1 else f"{v:.2f}")

    out = []
    for threads, w in report["workers"].items():
        rows = w["rows"]
        out.append(f"{threads} thread(s), SGEMM {w['sgemm_gflops']:.0f} GFLOP/s, minimum time per call:\n")
        out.append("| row | rnncore ms | torch ms | JAX ms | × torch | × JAX | × best peer | note |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in (r for r in rows if r["part"] != "profile"):
            x = speedups(r)
            note = ""
            if r["part"] == "train" and "min_s" in r["libs"].get("rnncore", {}):
                gf = r["flops"] / r["libs"]["rnncore"]["min_s"] / 1e9
                note = f"{gf:.0f} GFLOP/s ({100 * gf / w['sgemm_gflops']:.0f}% SGEMM)"
            elif r["part"] == "decode":
                note = "tokens/s " + ", ".join(f"{n} {r['tokens'] / v['min_s']:.0f}" for n, v in r["libs"].items()
                                               if "min_s" in v)
            if r["checks"] and not all(c["ok"] for c in r["checks"].values()):
                note = _check_text(r)
            out.append(f"| {r['part']} {r['config']} | {ms(r, 'rnncore')} | {ms(r, 'torch')} | {ms(r, 'jax')} | "
                       f"{ratio(x.get('torch'))} | {ratio(x.get('jax'))} | {ratio(x.get('best'))} | {note} |")
        profiles = [r for r in rows if r["part"] == "profile"]
        if profiles:
            names = list(dict.fromkeys(n for r in profiles for n in r["phases_ms"]))
            out.append("\nrnncore's training step by phase, ms (% of the whole step):\n")
            out.append("| phase | " + " | ".join(r["config"] for r in profiles) + " |")
            out.append("|---|" + "---|" * len(profiles))
            for n in names:
                cells = [f"{r['phases_ms'][n]:.3g} ({100 * r['share'][n]:.0f}%)" if n in r["phases_ms"] else "–"
                         for r in profiles]
                out.append(f"| {n.strip()} | " + " | ".join(cells) + " |")
        out.append("\nTargets: " + "; ".join(target_lines(rows)) + "\n")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the course's size and V=1,000 only, 1 thread")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {list(PARTS)}")
    parser.add_argument("--configs", help="training configs by name prefix (course, H256, H512); default all")
    parser.add_argument("--vocabs", help="decoding vocabularies (default 1000,10000)")
    parser.add_argument("--threads", help="comma-separated thread counts (default 1,2; --quick: 1)")
    parser.add_argument("--peers", default=",".join(PEERS), help="which peers (default torch,jax)")
    parser.add_argument("--budget", type=float, help="seconds of timing per row (default 3; --quick 0.5)")
    parser.add_argument("--cpu", type=int, help="the core a 1-thread worker is pinned to (default: the last one)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print a result file as markdown tables")
    parser.add_argument("--worker", nargs=2, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    parts = [p for p in args.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        parser.error(f"--parts: choose from {list(PARTS)}")
    prefixes = args.configs.split(",") if args.configs else (["course"] if args.quick else [c.name for c in TRAIN])
    train_configs = [c.name for c in TRAIN if any(c.name.startswith(p) for p in prefixes)]
    vocabs = [int(v) for v in args.vocabs.split(",")] if args.vocabs else ([1000] if args.quick else
                                                                             list(DECODE_VOCABS))
    threads = [int(t) for t in (args.threads or ("1" if args.quick else "1,2")).split(",")]
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 3.0)
    peers = [p for p in args.peers.split(",") if p]
    report = {"command": sys.argv, "machine": machine_info(), "budget_s": budget, "workers": {}}
    print(f"rnncore {report['machine']['rnncore']['version']}; CPU {report['machine']['cpu'].get('model_name')} "
          f"x{len(os.sched_getaffinity(0))}; load {report['machine']['loadavg']}\n{HEADER}", flush=True)
    started = time.time()
    for n in threads:
        plan = dict(threads=n, peers=peers, parts=parts, budget=budget, train_configs=train_configs, vocabs=vocabs)
        w = run_worker(__file__, plan, n, args.cpu)
        if w is None:
            return 1
        report["workers"][str(n)] = w
    report["elapsed_s"] = time.time() - started
    print_report(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("seq2seq-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {path} ({report['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
