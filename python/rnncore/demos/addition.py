"""Adding numbers with seq2seq — Keras' ``addition_rnn`` example: ``"535+61"`` is read character by character and
the sum ``"596"`` written character by character (``python -m rnncore addition``)::

    from rnncore.demos import addition
    model = addition.train(seed=0)           # progress, loss and held-out exact match per epoch
    model.answer(["535+61", "7+999"])        # ['596', '1006']

The data: questions ``"a+b"`` with a and b drawn uniformly from 0 … 999 (Keras' 3-digit operands), answers their
sum. The held-out set: ``heldout`` different questions (5,000 by default) drawn from ``seed``; training draws fresh
questions every epoch and rejects those, so no held-out sum is ever trained on. The measure is Keras' harder one
turned strict: the whole answer exactly right (Keras reports ~0.977 *per character* after 10 epochs).

The model (``rnncore.Seq2Seq``): character embeddings, a bidirectional LSTM encoder (64 per direction), an LSTM
decoder (128) fed the previous answer character, additive (Bahdanau) attention and a linear bridge. What it reads
and writes (``little_endian``): the two numbers' digits last first, zero-padded and interleaved (``"535+61"`` is
read as ``"513650"``: 5 and 1, 3 and 6, 5 and 0), and the sum written last digit first (``"695"``, shown as
``"596"``) — the order a carry travels, each digit's two operands side by side. Keras' example reverses the question
for the same reason (shorter paths between the characters that interact). Measured (bench/README.md): on the question
as written, or each number merely reversed, the loss stayed on a plateau (~1.05 per character, ~1% exact after
10 epochs): learning the units digit alone, (a0 + b0) mod 10 from digits far apart, did not start in 600 steps.
Attention, because each output digit depends on one aligned pair of source positions: the decoder reads them
where they are instead of through one fixed-size state.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import decode
from .._validation import hyper_non_negative, positive_int, seed_value
from ..datasets import CharVocab, encode_pairs
from ..module import Module
from ..ops.runtime import threads as thread_limit
from ..optim import Adam
from ..optim.lr import LambdaLR
from ..seq2seq import Seq2Seq
from ..utils import clip_grad_norm
from ._common import (
    EpochLog,
    Progress,
    Report,
    child_seeds,
    command_main,
    draw_history,
    output_arguments,
    report_saved,
    save_plot,
    warmup_cosine,
)

__all__ = ["Adder", "make_questions", "heldout_split", "exact_match", "train", "main"]

DIGITS = 3
CHARS = "0123456789"
ANSWER_LENGTH = DIGITS + 1  # 999 + 999 = 1998
QUESTION = re.compile(rf"\d{{1,{DIGITS}}}\+\d{{1,{DIGITS}}}")


class Adder(Module):
    """A ``rnncore.Seq2Seq`` (``seq2seq``) over the digits; ``answer(questions)`` writes the sums. ``history`` and
    ``heldout_pairs`` are filled by ``train()``."""

    def __init__(self, embedding_size: int = 16, encoder_hidden: int = 64, decoder_hidden: int = 128,
                 seed: int | None = None) -> None:
        super().__init__()
        self.vocab = CharVocab(CHARS)
        self.seq2seq = Seq2Seq(len(self.vocab), len(self.vocab), embedding_size=embedding_size,
                               encoder_hidden=encoder_hidden, decoder_hidden=decoder_hidden, attention="additive",
                               attention_units=decoder_hidden // 2, seed=seed)
        self.history: list[EpochLog] = []
        self.heldout_pairs: list[tuple[str, str]] = []

    def get_config(self) -> dict[str, Any]:
        s = self.seq2seq
        return {"embedding_size": s.embedding_size, "encoder_hidden": s.encoder_hidden,
                "decoder_hidden": s.decoder_hidden}

    def loss(self, pairs: Sequence[tuple[str, str]]) -> float:
        """Masked cross-entropy of a training-mode forward over (question, answer) pairs; ``loss_backward()``
        then backpropagates it."""
        return self.seq2seq.loss(*encode_pairs([(little_endian(q), a[::-1]) for q, a in pairs], self.vocab,
                                               self.vocab))

    def loss_backward(self) -> None:
        self.seq2seq.loss_backward()

    def answer(self, questions: Sequence[str]) -> list[str]:
        """The sums the model writes for ``questions`` (``"a+b"`` strings), greedy decoding (the model writes the
        digits last first: see the module's docstring). Nothing recorded."""
        if isinstance(questions, str) or not isinstance(questions, Sequence):
            raise TypeError(f"questions must be a list of strings, got {type(questions).__name__}")
        bad = [q for q in questions if not isinstance(q, str) or not QUESTION.fullmatch(q)]
        if bad:
            raise ValueError(f"questions must be strings like '535+61' (two numbers of 1 to {DIGITS} digits), got "
                             f"{bad[:3]!r}")
        s, out = self.seq2seq, []
        for start in range(0, len(questions), 1024):  # bounded memory for long lists
            sources = [self.vocab.encode(little_endian(q)) for q in questions[start:start + 1024]]
            result = decode.greedy(s, sources, s.bos_index, s.eos_index, ANSWER_LENGTH + 1)
            out += [self.vocab.decode(t)[::-1] for t in result.tokens]
        return out


def little_endian(question: str) -> str:
    """The question as the model reads it: the two numbers' digits last first, zero-padded to DIGITS, interleaved
    (``"535+61"`` -> ``"513650"``: 5 and 1, 3 and 6, 5 and 0)."""
    a, b = (n[::-1].ljust(DIGITS, "0") for n in question.split("+"))
    return "".join(x + y for x, y in zip(a, b))


# ---- data ------------------------------------------------------------------------------------------------------------

def make_questions(n: int, seed: int | None = None, exclude: set[str] | frozenset[str] = frozenset()
                   ) -> list[tuple[str, str]]:
    """``n`` pairs ``("a+b", str(a + b))``, a and b uniform in 0 … 10**DIGITS - 1, none of whose question is in
    ``exclude``."""
    rng = np.random.default_rng(seed_value(seed))
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        a, b = rng.integers(0, 10 ** DIGITS, size=(2, 2 * (n - len(pairs))))
        pairs += [(q, str(x + y)) for x, y in zip(a.tolist(), b.tolist()) if (q := f"{x}+{y}") not in exclude]
    return pairs[:n]


def heldout_split(seed: int | None = 0, heldout: int = 5000) -> list[tuple[str, str]]:
    """``heldout`` different questions drawn from ``seed``: the held-out set (training excludes them)."""
    heldout = positive_int("heldout", heldout)
    n = 2 * heldout
    while len(unique := dict(make_questions(n, seed))) < heldout:  # (1e6 questions: 2x is plenty in practice)
        n *= 2
    return list(unique.items())[:heldout]


def exact_match(model: Adder, pairs: Sequence[tuple[str, str]]) -> float:
    """The fraction of ``pairs`` whose whole answer the model writes exactly."""
    got = model.answer([q for q, _ in pairs])
    return float(np.mean([g == a for g, (_, a) in zip(got, pairs)]))


# ---- training --------------------------------------------------------------------------------------------------------

#: (epochs, questions per epoch, batch size, peak learning rate) of the full run and of fast mode.
RECIPES = {"full": (8, 10000, 64, 0.01), "fast": (3, 8000, 64, 0.01)}
#: The held-out exact match each must reach: the issue's >= 99.5% of 5,000 held-out sums; fast mode 5%, where an
#: untrained model gets none and a guess of the whole sum about 0.1% (measured fast: 48.3% seed 0, 14.6% seed 3 — the
#: run stops as the plateau breaks).
TARGETS = {"full": 0.995, "fast": 0.05}


def train(seed: int | None = 0, epochs: int | None = None, fast: bool = False, questions_per_epoch: int | None = None,
          batch_size: int | None = None, lr: float | None = None, heldout: int = 5000,
          report: Report | None = print, bar: bool = True, threads: int | None = None) -> Adder:
    """Trains an ``Adder`` on generated sums and returns it, ``history`` (loss, held-out exact match per epoch) and
    ``heldout_pairs`` set. ``fast``: the tests' short recipe. ``epochs``, ``questions_per_epoch``, ``batch_size``,
    ``lr`` override the recipe (``RECIPES``); Adam, warm-up over the first epoch's first tenth then cosine decay,
    gradient norm clipped at 1. ``report``: one line per epoch (None: silent); ``bar``: tqdm's bar when installed;
    ``threads``: rnncore's threads (None: all)."""
    seed = seed_value(seed)
    default_epochs, default_n, default_batch, default_lr = RECIPES["fast" if fast else "full"]
    epochs = positive_int("epochs", default_epochs if epochs is None else epochs)
    per_epoch = positive_int("questions_per_epoch", default_n if questions_per_epoch is None else questions_per_epoch)
    batch = positive_int("batch_size", default_batch if batch_size is None else batch_size)
    peak = hyper_non_negative("lr", default_lr if lr is None else lr)
    data_seed, model_seed, *epoch_seeds = child_seeds(seed, 2 + epochs)
    heldout_pairs = heldout_split(data_seed, heldout)
    held = frozenset(q for q, _ in heldout_pairs)
    model = Adder(seed=model_seed)
    steps = -(-per_epoch // batch)
    opt = Adam(model, lr=peak)
    sched = LambdaLR(opt, warmup_cosine(steps, epochs))
    progress = Progress(epochs, steps, report, bar, desc="addition")
    with thread_limit(threads):
        for epoch, epoch_seed in enumerate(epoch_seeds, 1):
            pairs = make_questions(per_epoch, epoch_seed, exclude=held)
            model.train()
            losses = []
            for start in progress.epoch(range(0, per_epoch, batch), epoch):
                opt.zero_grad()
                losses.append(model.loss(pairs[start:start + batch]))
                model.loss_backward()
                clip_grad_norm(model, 1.0)
                opt.step()
                sched.step()
            model.eval()
            progress.epoch_done(epoch, {"loss": float(np.mean(losses)),
                                        "heldout_exact": exact_match(model, heldout_pairs)})
    model.history = progress.history
    model.heldout_pairs = heldout_pairs
    return model


# ---- the command (python -m rnncore addition) ------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m rnncore addition``."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the model and the batches (0)")
    parser.add_argument("--fast", action="store_true", help="the short recipe of the tests (a few seconds)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    parser.add_argument("--questions-per-epoch", type=int, help="training sums per epoch (default: the recipe's)")
    parser.add_argument("--heldout", type=int, default=5000, help="held-out sums, never trained on (5000)")
    output_arguments(parser, PLOT, "the learning curves")


PLOT = "addition.png"


def plot(path: str, model: Adder) -> str | None:
    """The loss and the held-out exact match per epoch."""
    def draw(figure: Any) -> None:
        loss_ax, exact_ax = figure.subplots(1, 2)
        draw_history(loss_ax, model.history, ["loss"], "training loss (cross-entropy per character)")
        loss_ax.set_yscale("log")
        draw_history(exact_ax, model.history, ["heldout_exact"], f"exact answers, {len(model.heldout_pairs)} held-out")

    return save_plot(path, draw, size=(11.0, 4.0))


def run(args: argparse.Namespace) -> int:
    """``python -m rnncore addition``: trains, reports, shows ten held-out sums; 0 when the target is met."""
    import rnncore

    mode = "fast" if args.fast else "full"
    epochs, per_epoch, _, _ = RECIPES[mode]
    epochs, per_epoch = args.epochs or epochs, args.questions_per_epoch or per_epoch
    print(f"rnncore {rnncore.__version__}: adding numbers with seq2seq (Keras' addition_rnn; seed {args.seed})")
    print(f"  model: embeddings, bidirectional LSTM encoder (64 per direction), LSTM decoder (128) with additive "
          f"attention, digits read and written last first; data: 'a+b' with a, b in 0..999; {args.heldout} "
          f"held-out sums never trained on; {per_epoch} fresh sums x {epochs} epochs")
    start = time.perf_counter()
    model = train(seed=args.seed, epochs=epochs, fast=args.fast, questions_per_epoch=per_epoch,
                  heldout=args.heldout, bar=not args.no_bar, threads=args.threads)
    seconds = time.perf_counter() - start
    accuracy = model.history[-1].metrics["heldout_exact"]
    target = TARGETS[mode]
    ok = accuracy >= target
    print(f"held-out exact match {100 * accuracy:.2f}% of {args.heldout} sums after {epochs} epochs in "
          f"{seconds:.1f} s (target {100 * target:.1f}%: {'met' if ok else 'MISSED'}; an untrained model: 0%; "
          "Keras reports 97.7% per character)")
    shown = model.heldout_pairs[:10]
    for (q, a), got in zip(shown, model.answer([q for q, _ in shown])):
        print(f"  {q:>7} = {got:<4} {'ok' if got == a else 'WRONG, expected ' + a}")
    if not args.no_plot:
        saved = plot(args.plot, model)
        report_saved(saved, "the learning curves")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rnncore.demos.addition [options]``: the same as ``python -m rnncore addition``."""
    return command_main("addition", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
