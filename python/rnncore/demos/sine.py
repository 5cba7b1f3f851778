"""A simple RNN approximates a function — the course's first notebook (``python -m rnncore sine``)::

    from rnncore.demos import sine
    model = sine.train(seed=0)               # progress, train and held-out MSE per epoch
    model.predict(windows)                   # windows [N, 20, 1] -> the next value of each [N, 1]

The data it generates: windows of ``WINDOW`` noisy samples of sines, x_t = sin(ω t + φ) + noise (ω uniform in
0.15 … 0.6 rad per step, φ uniform, noise N(0, 0.05²)); the target is the next clean value sin(ω (t+1) + φ). The
held-out windows are drawn apart from the training ones (their own seed). The model: ``rnncore.Sequential(RNN(1, 32),
LastHidden(), Linear(32, 1))`` — an Elman RNN (tanh) read many-to-one, trained with MSE and Adam. Its held-out
MSE is compared with two baselines: repeating the last value, and the linear extrapolation 2 x_t − x_{t−1}.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from .._validation import hyper_non_negative, positive_int, seed_value
from ..layers import RNN
from ..losses import mse
from ..nn import Linear
from ..ops.runtime import threads as thread_limit
from ..optim import Adam
from ..sequential import LastHidden, Sequential
from ..utils import clip_grad_norm
from ._common import (
    Progress,
    Report,
    child_seeds,
    command_main,
    draw_history,
    output_arguments,
    report_saved,
    save_plot,
)

__all__ = ["make_windows", "baselines", "train", "main"]

WINDOW = 20
NOISE = 0.05
FREQUENCIES = (0.15, 0.6)


def make_windows(n: int, seed: int | None = None, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, window, 1], y [n, 1])`` float32: noisy windows of random sines and the next clean value."""
    rng = np.random.default_rng(seed_value(seed))
    omega = rng.uniform(*FREQUENCIES, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(window + 1)
    clean = np.sin(omega * t + phase)
    x = clean[:, :window] + NOISE * rng.standard_normal((n, window))
    return x[:, :, None].astype(np.float32), clean[:, window:].astype(np.float32)


def baselines(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The MSE of repeating the last value and of extrapolating the last two linearly."""
    last, before = x[:, -1, :], x[:, -2, :]
    return {"last_value_mse": float(np.mean((last - y) ** 2)),
            "linear_extrapolation_mse": float(np.mean((2 * last - before - y) ** 2))}


class SineModel(Sequential):
    """``Sequential(RNN(1, hidden), LastHidden(), Linear(hidden, 1))`` with ``predict`` and the training record."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The next value of each window ``x [N, T, 1]`` (eval mode: nothing recorded)."""
        mode = self.training
        self.eval()
        try:
            return self(x)
        finally:
            self.train(mode)


#: (epochs, training windows, batch size, learning rate) of the full run and of fast mode.
RECIPES = {"full": (20, 8000, 32, 0.005), "fast": (4, 4000, 32, 0.005)}
#: The held-out MSE must be below this fraction of the best baseline's: 4x better (full), 2x (fast; an untrained RNN is
#: worse than the baselines).
TARGETS = {"full": 0.25, "fast": 0.5}


def train(seed: int | None = 0, epochs: int | None = None, fast: bool = False, n_train: int | None = None,
          batch_size: int | None = None, lr: float | None = None, hidden: int = 32, heldout: int = 2000,
          report: Report | None = print, bar: bool = True, threads: int | None = None) -> SineModel:
    """Trains the simple RNN on generated windows; returns it with ``history`` (train and held-out MSE per
    epoch), ``heldout`` (x, y) and ``baselines`` (their MSEs on the held-out windows) set."""
    seed = seed_value(seed)
    default_epochs, default_n, default_batch, default_lr = RECIPES["fast" if fast else "full"]
    epochs = positive_int("epochs", default_epochs if epochs is None else epochs)
    n = positive_int("n_train", default_n if n_train is None else n_train)
    batch = positive_int("batch_size", default_batch if batch_size is None else batch_size)
    rate = hyper_non_negative("lr", default_lr if lr is None else lr)
    data_seed, heldout_seed, model_seed, order_seed = child_seeds(seed, 4)
    x, y = make_windows(n, data_seed)
    x_held, y_held = make_windows(positive_int("heldout", heldout), heldout_seed)
    model = SineModel(RNN(1, positive_int("hidden", hidden), batch_first=True, seed=model_seed), LastHidden(),
                      Linear(hidden, 1, seed=model_seed + 1))
    opt = Adam(model, lr=rate)
    rng = np.random.default_rng(order_seed)
    steps = -(-n // batch)
    progress = Progress(epochs, steps, report, bar, desc="sine")
    with thread_limit(threads):
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n)
            losses = []
            model.train()
            for start in progress.epoch(range(0, n, batch), epoch):
                idx = order[start:start + batch]
                loss, dpred = mse(model(x[idx]), y[idx])
                model.zero_grad()
                model.backward(dpred)
                clip_grad_norm(model, 1.0)
                opt.step()
                losses.append(loss)
            heldout_mse = float(mse(model.predict(x_held), y_held)[0])
            progress.epoch_done(epoch, {"train_mse": float(np.mean(losses)), "heldout_mse": heldout_mse})
    model.history = progress.history
    model.heldout = (x_held, y_held)
    model.baselines = baselines(x_held, y_held)
    return model


# ---- the command (python -m rnncore sine) ----------------------------------------------------------------------------

PLOT = "sine.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m rnncore sine``."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the model and the batches (0)")
    parser.add_argument("--fast", action="store_true", help="the short recipe of the tests (a few seconds)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    output_arguments(parser, PLOT, "the plot")


def plot(path: str, model: SineModel) -> str | None:
    """Four held-out windows with the true next value and the model's, and the learning curves."""
    x, y = model.heldout
    pred = model.predict(x[:4])

    def draw(figure) -> None:  # type: ignore[no-untyped-def]
        axes = figure.subplots(1, 5)
        for i, ax in enumerate(axes[:4]):
            ax.plot(range(WINDOW), x[i, :, 0], ".-", label="window (noisy)")
            ax.plot([WINDOW], y[i], "o", label="true next value")
            ax.plot([WINDOW], pred[i], "x", markersize=10, label="RNN's prediction")
            ax.set_title(f"held-out window {i + 1}", fontsize=9)
        axes[0].legend(fontsize=7)
        draw_history(axes[4], model.history, ["train_mse", "heldout_mse"], "MSE per epoch")
        axes[4].set_yscale("log")

    return save_plot(path, draw, size=(18.0, 3.4))


def run(args: argparse.Namespace) -> int:
    """``python -m rnncore sine``: trains, reports the held-out MSE against the baselines; 0 when it beats them."""
    import rnncore

    mode = "fast" if args.fast else "full"
    epochs = args.epochs or RECIPES[mode][0]
    print(f"rnncore {rnncore.__version__}: a simple RNN (tanh, 32 units) learns the next value of noisy sine windows "
          f"(seed {args.seed})")
    print(f"  data: {RECIPES[mode][1]} generated windows of {WINDOW} samples, frequencies {FREQUENCIES[0]}-"
          f"{FREQUENCIES[1]} rad/step, noise sd {NOISE}; 2000 held-out windows; MSE + Adam, {epochs} epochs")
    start = time.perf_counter()
    model = train(seed=args.seed, epochs=epochs, fast=args.fast, bar=not args.no_bar, threads=args.threads)
    seconds = time.perf_counter() - start
    got = model.history[-1].metrics["heldout_mse"]
    best = min(model.baselines.values())
    ok = got < TARGETS[mode] * best
    print(f"held-out MSE {got:.5f} in {seconds:.1f} s — baselines: repeat the last value "
          f"{model.baselines['last_value_mse']:.5f}, linear extrapolation "
          f"{model.baselines['linear_extrapolation_mse']:.5f}; {best / got:.1f}x better than the best "
          f"(target: at least {1 / TARGETS[mode]:.0f}x: {'met' if ok else 'MISSED'})")
    if not args.no_plot:
        saved = plot(args.plot, model)
        report_saved(saved, "the plot")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rnncore.demos.sine [options]``: the same as ``python -m rnncore sine``."""
    return command_main("sine", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
