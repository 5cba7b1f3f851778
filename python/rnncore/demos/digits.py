"""Handwritten digits read row by row — many-to-one classification, the course's sequence classifier.

Each 8x8 image of scikit-learn's bundled ``load_digits`` (1,797 digits, 16 grey levels; a ``demos`` dependency)
is read as a sequence of its rows, top to bottom: 8 steps of 8 pixels. A bidirectional LSTM reads them; a linear
layer on both directions' last valid states (``rc.LastHidden()``) gives the ten classes. Every row of these digits
has ink, so the sequences' ``lengths`` come from the task: half of each training batch is read only down to a
random row (4 to 7 rows: ``lengths``, the rows below ignored by the kernels, the backward direction starting at
the last row read), and the command reports how well the model names a digit from its top rows alone::

    from rnncore.demos import digits
    result = digits.train(seed=0)                  # progress, loss and held-out accuracy per epoch
    result.accuracy                                # on the 20% of the images never trained on (>= 0.97)
    result.model.eval()(*digits.as_sequences(images))   # logits [N, 10] of images [N, 8, 8] (0..16)
    rc.save(result.model, "digits.npz")            # an rc.Sequential: rc.load rebuilds it

The baseline: the held-out accuracy of always answering the most frequent training class (~10%).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import hyper_non_negative, positive_int, seed_value
from ..layers import LSTM
from ..losses import softmax_cross_entropy
from ..nn import Linear
from ..ops.runtime import threads as thread_limit
from ..optim import Adam
from ..optim.lr import LambdaLR
from ..sequential import LastHidden, Sequential
from ..utils import clip_grad_norm
from ._common import (
    EpochLog,
    Progress,
    Report,
    child_seeds,
    command_main,
    have,
    output_arguments,
    report_saved,
    save_plot,
)

__all__ = ["load", "as_sequences", "split", "make_model", "train", "Trained", "main"]

ROWS = 8
#: (epochs, batch size, peak learning rate, hidden units per direction) for the full run and fast mode.
RECIPES = {"full": (30, 32, 0.01, 64), "fast": (10, 32, 0.01, 64)}
#: Held-out accuracy to reach (issue 14: >= 97%), and fast mode's.
TARGETS = {"full": 0.97, "fast": 0.9}
HELDOUT = 0.2
PLOT = "digits_errors.png"


def load() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: ``(images float [1797, 8, 8] in 0..16, labels int64 [1797])``; ImportError naming the
    extra when scikit-learn is not installed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits demo reads scikit-learn's bundled digits: pip install scikit-learn "
                          "(or \"rnncore[demos]\")") from e
    data = load_digits()
    return np.asarray(data.images, np.float64), np.asarray(data.target, np.int64)


def as_sequences(images: np.ndarray, rows: Any = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``images`` [N, 8, 8] (0..16) -> batch-first sequences of rows ``(x float32 [N, 8, 8] scaled to 0..1, lengths
    int64 [N])``: each image read down to ``rows`` rows (an int or one per image, 1..8; the rows below are zeroed,
    and ignored through ``lengths``)."""
    images = np.asarray(images, np.float64)
    if images.ndim != 3 or images.shape[1:] != (ROWS, ROWS):
        raise ValueError(f"images must be [N, 8, 8], got shape {images.shape}")
    lengths = np.broadcast_to(np.asarray(rows, np.int64), images.shape[:1]).copy()
    if lengths.min(initial=1) < 1 or lengths.max(initial=1) > ROWS:
        raise ValueError(f"rows must be in 1..{ROWS}, got {lengths.min()}..{lengths.max()}")
    x = (images / 16.0).astype(np.float32)
    x[np.arange(ROWS)[None, :] >= lengths[:, None]] = 0.0
    return x, lengths


def split(n: int, seed: int | None, heldout: float = HELDOUT) -> tuple[np.ndarray, np.ndarray]:
    """``(train_indices, heldout_indices)``: a seeded permutation of ``n`` images, its last ``heldout`` fraction
    held out."""
    order = np.random.default_rng(seed_value(seed)).permutation(n)
    cut = n - int(round(heldout * n))
    return order[:cut], order[cut:]


def make_model(hidden: int = 64, seed: int | None = 0) -> Sequential:
    """Bidirectional LSTM over the rows (batch-first, ``lengths``) -> both directions' last states -> Linear(10)."""
    lstm_seed, head_seed = child_seeds(seed, 2)
    return Sequential(LSTM(ROWS, hidden, bidirectional=True, batch_first=True, seed=lstm_seed), LastHidden(),
                      Linear(2 * hidden, 10, seed=head_seed))


def accuracy(model: Sequential, x: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of ``labels`` the model (in eval mode) gets right."""
    model.eval()
    return float(np.mean(model(x, lengths).argmax(axis=1) == labels))


@dataclass
class Trained:
    """``train``'s result: the classifier (``model``), its held-out ``accuracy`` and the ``baseline``'s (the most
    frequent training class), the per-epoch ``history``, the held-out images, labels and predictions, and the
    held-out accuracy reading only the top k rows (k = 4..8)."""
    model: Sequential
    accuracy: float
    baseline: float
    history: list[EpochLog] = field(default_factory=list)
    heldout_images: np.ndarray = field(default_factory=lambda: np.zeros((0, ROWS, ROWS)))
    heldout_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    accuracy_by_rows: dict[int, float] = field(default_factory=dict)  # held out, reading only the top k rows


def train(seed: int | None = 0, fast: bool = False, epochs: int | None = None, batch_size: int | None = None,
          lr: float | None = None, hidden: int | None = None, report: Report | None = print, bar: bool = True,
          threads: int | None = None) -> Trained:
    """Trains the row-by-row classifier on 80% of the digits and measures it on the rest (never trained on).

    ``fast``: the short recipe the tests run. ``epochs``, ``batch_size``, ``lr``, ``hidden`` override the recipe
    (``RECIPES``); Adam with a cosine decay of the learning rate to 0, gradient norm clipped at 1. ``report``
    receives one line per epoch (None: silent); ``bar``: a tqdm bar when installed. ``threads``: rnncore's threads."""
    seed = seed_value(seed)
    default_epochs, default_batch, default_lr, default_hidden = RECIPES["fast" if fast else "full"]
    epochs = positive_int("epochs", default_epochs if epochs is None else epochs)
    batch = positive_int("batch_size", default_batch if batch_size is None else batch_size)
    peak = hyper_non_negative("lr", default_lr if lr is None else lr)
    hidden = positive_int("hidden", default_hidden if hidden is None else hidden)
    split_seed, model_seed, batch_seed = child_seeds(seed, 3)
    images, labels = load()
    tr, te = split(len(labels), split_seed)
    model = make_model(hidden, model_seed)
    steps = -(-len(tr) // batch)
    total = epochs * steps
    opt = Adam(model, lr=peak)
    sched = LambdaLR(opt, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, total) / total)))
    rng = np.random.default_rng(batch_seed)
    progress = Progress(epochs, steps, report, bar, desc="digits")
    with thread_limit(threads):
        for epoch in range(1, epochs + 1):
            order = rng.permutation(tr)
            model.train()
            losses = []
            for start in progress.epoch(range(0, len(order), batch), epoch):
                idx = order[start:start + batch]
                # half the images read whole, half down to a random row (4..7): lengths, the rows below ignored
                rows = np.where(rng.random(len(idx)) < 0.5, ROWS, rng.integers(4, ROWS, len(idx)))
                loss, dlogits = softmax_cross_entropy(model(*as_sequences(images[idx], rows)), labels[idx])
                opt.zero_grad()
                model.backward(dlogits)
                clip_grad_norm(model, 1.0)
                opt.step()
                sched.step()
                losses.append(loss)
            progress.epoch_done(epoch, {"loss": float(np.mean(losses)),
                                        "heldout_accuracy": accuracy(model, *as_sequences(images[te]), labels[te])})
        predictions = model(*as_sequences(images[te])).argmax(axis=1)
        by_rows = {k: accuracy(model, *as_sequences(images[te], k), labels[te]) for k in range(4, ROWS + 1)}
    majority = np.bincount(labels[tr], minlength=10).argmax()
    return Trained(model, float(np.mean(predictions == labels[te])), float(np.mean(labels[te] == majority)),
                   progress.history, images[te], labels[te], predictions, by_rows)


# ---- the command (python -m rnncore digits) ------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m rnncore digits``."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the model and the batches (0)")
    parser.add_argument("--fast", action="store_true", help="the short recipe of the tests (a few seconds)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--hidden", type=int, help="LSTM units per direction (default: the recipe's)")
    output_arguments(parser, PLOT, "the misread digits")


def plot_errors(path: str, images: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> str | None:
    """Saves up to 16 misread held-out digits, each titled "true -> predicted"; None without matplotlib."""
    wrong = np.flatnonzero(predictions != labels)[:16]

    def draw(figure: Any) -> None:
        axes = figure.subplots(2, 8, squeeze=False).ravel()
        for ax in axes:
            ax.axis("off")
        for ax, i in zip(axes, wrong):
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=16)
            ax.set_title(f"{labels[i]} -> {predictions[i]}", fontsize=9)
        figure.suptitle(f"held-out digits the model misread ({len(np.flatnonzero(predictions != labels))} of "
                        f"{len(labels)}): true -> predicted")

    return save_plot(path, draw, size=(10.0, 3.2))


def run(args: argparse.Namespace) -> int:
    """``python -m rnncore digits``: trains, reports, saves the plot; 0 when the held-out accuracy reaches the
    target (0.97; fast mode 0.9), else 1."""
    import rnncore

    if not have("sklearn"):
        print("the digits demo reads scikit-learn's bundled digits: pip install scikit-learn (or \"rnncore[demos]\")")
        return 1
    mode = "fast" if args.fast else "full"
    epochs, batch, lr, hidden = RECIPES[mode]
    epochs, hidden = args.epochs or epochs, args.hidden or hidden
    print(f"rnncore {rnncore.__version__}: handwritten digits read row by row (seed {args.seed})")
    print(f"  data: scikit-learn's 1,797 8x8 digits, each a sequence of 8 rows of 8 pixels (half of each training "
          f"batch read down to a random row: lengths), {int(100 * HELDOUT)}% held out")
    print(f"  model: bidirectional LSTM ({hidden} per direction) -> last states of both directions -> Linear(10); "
          f"{epochs} epochs")
    start = time.perf_counter()
    result = train(seed=args.seed, fast=args.fast, epochs=epochs, batch_size=args.batch_size or batch,
                   lr=args.lr or lr, hidden=hidden, bar=not args.no_bar, threads=args.threads)
    seconds = time.perf_counter() - start
    target = TARGETS[mode]
    ok = result.accuracy >= target
    print(f"held-out accuracy {100 * result.accuracy:.2f}% of {len(result.heldout_labels)} digits in {seconds:.1f} s "
          f"(baseline, the most frequent class: {100 * result.baseline:.2f}%; target {100 * target:.0f}%: "
          f"{'met' if ok else 'MISSED'})")
    print("reading only the top rows: " + ", ".join(f"{k} rows {100 * a:.1f}%"
                                                   for k, a in result.accuracy_by_rows.items()))
    if not args.no_plot:
        saved = plot_errors(args.plot, result.heldout_images, result.heldout_labels, result.predictions)
        report_saved(saved, "the misread digits")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rnncore.demos.digits [options]``: the same as ``python -m rnncore digits``."""
    return command_main("digits", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
