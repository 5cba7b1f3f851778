"""A character-level LSTM language model that writes like Python's documentation — the course's text generation lab.

The default text: the docstrings of the Python standard library installed on this machine (modules, classes and
functions), collected by parsing the source files with ``ast`` (never importing them); ``text=`` / ``--text FILE``
trains on any other text. Every tenth document (docstring, or blank-line separated paragraph of a file) is held
out and never trained on. An Embedding -> LSTM -> Linear network (``rc.Sequential``) learns to predict each
character from the ones before it (random chunks of ``steps`` characters, truncated backpropagation through
time); the held-out bits per character are compared with a bigram model's (each character from the one before,
add-k smoothed counts of the training text). Samples are drawn with ``rnncore.decode.sample`` (temperature, top-k)
through ``rnncore.decode.LanguageModel`` (the layer's weights in an ``rc.LSTMCell``)::

    from rnncore.demos import charlm
    result = charlm.train(seed=0)                         # progress, loss and held-out bits/char per epoch
    result.bits_per_char, result.bigram_bits_per_char     # target: <= 0.6 x the bigram's
    charlm.generate(result, "Return the ", temperature=0.6, top_k=10, length=200, seed=1)
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import decode
from .._validation import hyper_non_negative, positive_int, seed_value
from ..datasets import CharVocab
from ..layers import LSTM, LSTMCell
from ..losses import softmax_cross_entropy
from ..nn import Embedding, Linear
from ..ops.runtime import threads as thread_limit
from ..optim import Adam
from ..optim.lr import LambdaLR
from ..sequential import Sequential
from ..utils import clip_grad_norm
from ._common import (
    EpochLog,
    Progress,
    Report,
    child_seeds,
    command_main,
    output_arguments,
    report_saved,
    save_plot,
    warmup_cosine,
)

__all__ = ["stdlib_docstrings", "text_documents", "Corpus", "make_corpus", "bigram_bits_per_char", "make_model",
           "train", "Trained", "generate", "main"]

#: Directories of the standard library left out: tests (their docstrings describe test cases), vendored and tool code.
SKIPPED_DIRS = frozenset({"test", "tests", "site-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__",
                          "ensurepip", "venv", "pydoc_data"})
HELDOUT_EVERY = 10  # every tenth document is held out
MIN_COUNT = 3  # characters seen fewer times in the training text read as unknown
#: The recipe for the full run and fast mode: characters of stdlib docstrings read (the default text; None: all),
#: epochs, batches per epoch, batch size, characters per chunk, embedding and hidden sizes, peak learning rate.
RECIPES: dict[str, dict[str, Any]] = {
    "full": dict(max_chars=1_000_000, epochs=8, batches=125, batch_size=32, steps=64, embedding=32, hidden=256,
                 lr=0.01),
    "fast": dict(max_chars=150_000, epochs=4, batches=40, batch_size=32, steps=32, embedding=16, hidden=128,
                 lr=0.02),
}
#: The held-out bits per character to reach, as a fraction of the bigram model's (issue 14: <= 0.6), and fast mode's.
TARGETS = {"full": 0.6, "fast": 0.85}
PLOT = "charlm_loss.png"
BIGRAM_SMOOTHING = 0.1  # add-k: the held-out bits of the bigram model are flat for k in 0.01-1 (measured)


def stdlib_docstrings(max_chars: int | None = None, root: str | None = None) -> list[str]:
    """The docstrings of the standard library's modules, classes and functions (``ast.get_docstring``, cleaned of
    indentation), files in sorted order under ``root`` (default: this Python's stdlib), until ``max_chars``
    characters are collected (None: all). The files are parsed, never imported."""
    root = sysconfig.get_paths()["stdlib"] if root is None else root
    docs: list[str] = []
    total = 0
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue  # a file this Python cannot read or parse: skipped
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        docs.append(doc)
                        total += len(doc) + 2
            if max_chars is not None and total >= max_chars:
                return docs
    return docs


def text_documents(text: str) -> list[str]:
    """A text's documents: its paragraphs (separated by blank lines), empty ones dropped."""
    return [p.strip("\n") for p in text.split("\n\n") if p.strip()]


@dataclass
class Corpus:
    """Documents split into training and held-out text: ``vocab`` (characters seen at least ``MIN_COUNT`` times in
    the training text), ``train`` and ``heldout`` (int64 token ids, documents joined by a blank line)."""
    vocab: CharVocab
    train: np.ndarray
    heldout: np.ndarray


def make_corpus(documents: Sequence[str]) -> Corpus:
    """Every ``HELDOUT_EVERY``-th document held out, the others the training text."""
    if isinstance(documents, str) or len(documents) < HELDOUT_EVERY:
        raise ValueError(f"documents: expected a list of at least {HELDOUT_EVERY} texts, got "
                         f"{type(documents).__name__} of {len(documents)}")
    held = "\n\n".join(d for i, d in enumerate(documents) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1)
    train = "\n\n".join(d for i, d in enumerate(documents) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1)
    chars, counts = np.unique(np.array(list(train)), return_counts=True)
    vocab = CharVocab(str(c) for c in chars[counts >= MIN_COUNT])
    return Corpus(vocab, vocab.encode(train), vocab.encode(held))


def chunks(tokens: np.ndarray, steps: int) -> np.ndarray:
    """``tokens`` cut into consecutive chunks of ``steps + 1`` (the last token of one is the first of the next):
    int64 [N, steps + 1], the remainder dropped."""
    n = (len(tokens) - 1) // steps
    return tokens[np.arange(n)[:, None] * steps + np.arange(steps + 1)]


def bigram_bits_per_char(train: np.ndarray, targets: np.ndarray, size: int, k: float = BIGRAM_SMOOTHING) -> float:
    """Bits per character of the add-``k`` bigram model of ``train`` (token ids below ``size``) on ``targets``
    [N, steps + 1]: each token after the first of a row predicted from the one before it."""
    counts = np.zeros((size, size))
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    log_p = np.log2((counts + k) / (counts.sum(axis=1, keepdims=True) + k * size))
    return float(-np.mean(log_p[targets[:, :-1], targets[:, 1:]]))


def make_model(vocab_size: int, embedding: int, hidden: int, seed: int | None) -> Sequential:
    """Embedding -> LSTM (batch-first) -> Linear to the vocabulary's logits."""
    seeds = child_seeds(seed, 3)
    return Sequential(Embedding(vocab_size, embedding, seed=seeds[0]),
                      LSTM(embedding, hidden, batch_first=True, seed=seeds[1]),
                      Linear(hidden, vocab_size, seed=seeds[2]))


def bits_per_char(model: Sequential, rows: np.ndarray, batch: int = 256) -> float:
    """The model's (eval mode) mean bits per character over ``rows`` [N, steps + 1], each row read from a zero
    state, every token after the first predicted."""
    model.eval()
    total = 0.0
    for start in range(0, len(rows), batch):
        r = rows[start:start + batch]
        loss, _ = softmax_cross_entropy(model(r[:, :-1]), r[:, 1:], reduction="sum")
        total += float(loss)
    return total / (rows.shape[0] * (rows.shape[1] - 1)) / math.log(2)


@dataclass
class Trained:
    """``train``'s result: the ``model`` (an ``rc.Sequential``: Embedding, LSTM, Linear) and its ``vocab``, the
    held-out ``bits_per_char`` and the bigram model's, the per-epoch ``history``, and the corpus sizes."""
    model: Sequential
    vocab: CharVocab
    bits_per_char: float
    bigram_bits_per_char: float
    history: list[EpochLog] = field(default_factory=list)
    train_chars: int = 0
    heldout_chars: int = 0


def train(seed: int | None = 0, fast: bool = False, text: str | None = None, report: Report | None = print,
          bar: bool = True, threads: int | None = None, **overrides: Any) -> Trained:
    """Trains the character LSTM on ``text`` (None: the standard library's docstrings, ``max_chars`` of them) and
    measures it on the held-out documents against the bigram model.

    ``fast``: the short recipe the tests run. ``overrides``: any of the recipe's keys (``RECIPES``). Adam with a
    linear warm-up over the first tenth of the first epoch and a cosine decay to 0, gradient norm clipped at 1.
    ``report`` receives one line per epoch (None: silent); ``bar``: a tqdm bar when installed. ``threads``:
    rnncore's threads (None: all)."""
    seed = seed_value(seed)
    recipe = dict(RECIPES["fast" if fast else "full"])
    unknown = sorted(set(overrides) - set(recipe))
    if unknown:
        raise TypeError(f"train() got unknown options {unknown}; the recipe's are {sorted(recipe)}")
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("epochs", "batches", "batch_size", "steps", "embedding", "hidden"):
        recipe[key] = positive_int(key, recipe[key])
    peak = hyper_non_negative("lr", recipe["lr"])
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if recipe["max_chars"] is not None:
        recipe["max_chars"] = positive_int("max_chars", recipe["max_chars"])
    documents = stdlib_docstrings(recipe["max_chars"]) if text is None else text_documents(text)
    if len(documents) < HELDOUT_EVERY:
        raise ValueError(f"text: expected at least {HELDOUT_EVERY} paragraphs (separated by blank lines: every "
                         f"{HELDOUT_EVERY}th is held out), got {len(documents)}")
    corpus = make_corpus(documents)
    steps, batch = recipe["steps"], recipe["batch_size"]
    if len(corpus.train) <= steps + 1 or len(corpus.heldout) <= steps + 1:
        raise ValueError(f"text: the training and held-out parts need more than steps + 1 = {steps + 1} characters, "
                         f"got {len(corpus.train)} and {len(corpus.heldout)}")
    heldout_rows = chunks(corpus.heldout, steps)
    bigram = bigram_bits_per_char(corpus.train, heldout_rows, len(corpus.vocab))
    model_seed, batch_seed = child_seeds(seed, 2)
    model = make_model(len(corpus.vocab), recipe["embedding"], recipe["hidden"], model_seed)
    per_epoch, epochs = recipe["batches"], recipe["epochs"]
    opt = Adam(model, lr=peak)
    sched = LambdaLR(opt, warmup_cosine(per_epoch, epochs))
    rng = np.random.default_rng(batch_seed)
    offsets = np.arange(steps + 1)
    progress = Progress(epochs, per_epoch, report, bar, desc="charlm")
    with thread_limit(threads):
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for _ in progress.epoch(range(per_epoch), epoch):
                rows = corpus.train[rng.integers(0, len(corpus.train) - steps - 1, batch)[:, None] + offsets]
                loss, dlogits = softmax_cross_entropy(model(rows[:, :-1]), rows[:, 1:])
                opt.zero_grad()
                model.backward(dlogits)
                clip_grad_norm(model, 1.0)
                opt.step()
                sched.step()
                losses.append(loss / math.log(2))
            progress.epoch_done(epoch, {"train_bits_per_char": float(np.mean(losses)),
                                        "heldout_bits_per_char": bits_per_char(model, heldout_rows)})
    return Trained(model, corpus.vocab, progress.history[-1].metrics["heldout_bits_per_char"], bigram,
                   progress.history, len(corpus.train), len(corpus.heldout))


# ---- sampling ------------------------------------------------------------------------------------------------------

class _Prompted(decode.LanguageModel):
    """``LanguageModel`` whose every sequence starts in the state after reading ``prompt`` (all but its last token,
    which the decoder feeds as its first)."""

    def __init__(self, embedding: Any, cell: Any, output: Any, prompt: np.ndarray) -> None:
        super().__init__(embedding, cell, output)
        self.prompt = prompt

    def start(self, batch: Any) -> Any:
        state = super().start(batch)
        n = len(state[0])
        for token in self.prompt[:-1]:
            _, state = self.step(np.full(n, token, np.int64), state)
        return state


def generate(result: Trained, prompt: str, length: int = 200, temperature: float = 1.0, top_k: int | None = None,
             samples: int = 1, seed: int | None = None) -> list[str]:
    """``samples`` continuations of ``prompt`` (a non-empty string), each ``length`` characters at most, drawn by
    ``rnncore.decode.sample`` (``temperature``, ``top_k``; ``seed`` makes them reproducible). Returned without the
    prompt."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r:.40}")
    embedding, lstm, output = list(result.model)
    tokens = result.vocab.encode(prompt)
    lm = _Prompted(embedding, LSTMCell.from_layer(lstm, 0, 0), output, tokens)
    drawn = decode.sample(lm, positive_int("samples", samples), bos=int(tokens[-1]), eos=CharVocab.eos,
                          max_len=positive_int("length", length), temperature=temperature, top_k=top_k, seed=seed)
    return [result.vocab.decode(t) for t in drawn.tokens]


# ---- the command (python -m rnncore charlm) ------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m rnncore charlm``."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, the batches and the samples (0)")
    parser.add_argument("--fast", action="store_true", help="the short recipe of the tests (seconds)")
    parser.add_argument("--text", metavar="FILE", help="train on this UTF-8 text file (default: the standard "
                        "library's docstrings)")
    parser.add_argument("--max-chars", type=int, help="characters of docstrings to read (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    parser.add_argument("--batches", type=int, help="batches per epoch (default: the recipe's)")
    parser.add_argument("--hidden", type=int, help="LSTM units (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--prompt", default="Return the ", help="the samples' beginning ('Return the ')")
    parser.add_argument("--temperature", type=float, action="append",
                        help="sampling temperature; repeat for several (default: 0.5 and 1.0)")
    parser.add_argument("--top-k", type=int, default=10, help="sample among the k likeliest characters (10)")
    parser.add_argument("--length", type=int, default=200, help="characters per sample (200)")
    output_arguments(parser, PLOT, "the learning curve")


def plot_curve(path: str, result: Trained) -> str | None:
    """Saves the held-out and training bits per character per epoch against the bigram's; None without matplotlib."""
    def draw(figure: Any) -> None:
        ax = figure.subplots()
        epochs = [h.epoch for h in result.history]
        ax.plot(epochs, [h.metrics["train_bits_per_char"] for h in result.history], "o-", label="training")
        ax.plot(epochs, [h.metrics["heldout_bits_per_char"] for h in result.history], "o-", label="held out")
        ax.axhline(result.bigram_bits_per_char, color="k", ls=":", label="bigram model (held out)")
        ax.axhline(0.6 * result.bigram_bits_per_char, color="C3", ls="--", label="target: 0.6 x bigram")
        ax.set_xlabel("epoch")
        ax.set_ylabel("bits per character")
        ax.legend()

    return save_plot(path, draw, size=(7.0, 4.0))


def run(args: argparse.Namespace) -> int:
    """``python -m rnncore charlm``: trains, reports, prints samples, saves the plot; 0 when the held-out bits per
    character reach the target fraction of the bigram's (0.6; fast mode 0.85), else 1."""
    import rnncore

    mode = "fast" if args.fast else "full"
    options = {k: getattr(args, k) for k in ("max_chars", "epochs", "batches", "hidden", "lr")}
    recipe = dict(RECIPES[mode], **{k: v for k, v in options.items() if v is not None})
    text = None
    if args.text:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    print(f"rnncore {rnncore.__version__}: a character-level LSTM language model (seed {args.seed})")
    source = args.text or f"the docstrings of this Python's standard library ({recipe['max_chars']:,} characters)"
    print(f"  data: {source}, every {HELDOUT_EVERY}th document held out")
    print(f"  model: Embedding ({recipe['embedding']}) -> LSTM ({recipe['hidden']}) -> Linear; {recipe['epochs']} "
          f"epochs of {recipe['batches']} batches of {recipe['batch_size']} x {recipe['steps']} characters")
    start = time.perf_counter()
    result = train(seed=args.seed, fast=args.fast, text=text, bar=not args.no_bar, threads=args.threads, **options)
    seconds = time.perf_counter() - start
    ratio = result.bits_per_char / result.bigram_bits_per_char
    ok = ratio <= TARGETS[mode]
    print(f"held-out {result.bits_per_char:.3f} bits per character over {result.heldout_chars:,} characters, "
          f"{ratio:.2f} x the bigram model's {result.bigram_bits_per_char:.3f}, in {seconds:.1f} s (trained on "
          f"{result.train_chars:,}; target <= {TARGETS[mode]} x: {'met' if ok else 'MISSED'})")
    print()
    for i, temperature in enumerate(args.temperature or [0.5, 1.0]):
        print(f"samples at temperature {temperature}, top-k {args.top_k}:")
        for s in generate(result, args.prompt, args.length, temperature, args.top_k, 2, args.seed + i):
            print(f"  {args.prompt}{s}".replace("\n", "\n  "))
            print()
    if not args.no_plot:
        saved = plot_curve(args.plot, result)
        report_saved(saved, "the learning curve")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rnncore.demos.charlm [options]``: the same as ``python -m rnncore charlm``."""
    return command_main("charlm", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
