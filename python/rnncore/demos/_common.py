"""What every demo shares (one home): seeds, the progress bar, per-epoch metrics, saving a plot, timing.

- ``child_seeds(seed, n)``: ``n`` independent int seeds derived from one (data, model, batches, ...): a demo run is
  reproducible from its ``seed`` alone.
- ``warmup_cosine(steps_per_epoch, epochs)``: the demos' learning-rate schedule, a ``LambdaLR`` factor.
- ``Progress``: the batches of an epoch under a tqdm bar when tqdm is installed (and ``bar=True``), and one plain
  line per epoch either way (``Progress.epoch_done``), with that epoch's metrics. ``report=None`` is silent.
- ``EpochLog``: the per-epoch metrics a demo keeps (``history`` on the trained model).
- ``save_plot(path, draw)``: when matplotlib is installed, ``draw(figure)`` on a ``matplotlib.figure.Figure`` and
  save it to ``path`` (no pyplot: no display, no backend switched); otherwise nothing. Returns the path or None.
- ``draw_history(ax, history, names)``: learning curves (metrics per epoch) on a plot's axes.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validation import seed_value

__all__ = ["child_seeds", "warmup_cosine", "have", "Progress", "EpochLog", "save_plot", "draw_history",
           "output_arguments"]

Report = Callable[[str], None]


def child_seeds(seed: int | None, n: int) -> list[int]:
    """``n`` independent seeds from ``seed`` (``np.random.SeedSequence``; None: fresh entropy)."""
    return [int(s) for s in np.random.SeedSequence(seed_value(seed)).generate_state(n)]


def warmup_cosine(steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The factor of the learning rate at step k (``rnncore.optim.lr.LambdaLR``'s function, torch's too): a linear
    warm-up (k + 1) / w, capped at 1, over the first tenth of the first epoch (w = steps_per_epoch // 10, at least
    1), times a cosine decay from 1 at step 0 to 0 at the last step (epochs * steps_per_epoch) and after it."""
    total, warmup = epochs * steps_per_epoch, max(1, steps_per_epoch // 10)
    return lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + float(np.cos(np.pi * min(k, total) / total)))


def have(module: str) -> bool:
    """Is the optional package ``module`` (tqdm, matplotlib) importable?"""
    return importlib.util.find_spec(module) is not None


@dataclass
class EpochLog:
    """One epoch's numbers: ``epoch`` (1-based), ``seconds`` since training started, and the demo's ``metrics``
    (e.g. ``{"loss": 0.12, "heldout_exact": 0.998}``)."""
    epoch: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    def line(self, epochs: int) -> str:
        shown = ", ".join(f"{k.replace('_', ' ')} {_format(k, v)}" for k, v in self.metrics.items())
        return f"  epoch {self.epoch:{len(str(epochs))}d}/{epochs}: {shown}  ({self.seconds:.1f} s)"


def _format(name: str, value: float) -> str:
    """Accuracies as percentages, everything else to 4 significant digits."""
    return f"{100 * value:.2f}%" if name.endswith(("accuracy", "exact")) else f"{value:.4g}"


class Progress:
    """The progress of a training run of ``epochs`` epochs of ``steps`` batches each.

    ``for item in progress.epoch(items)`` wraps one epoch's batches (a tqdm bar when ``bar`` and tqdm is installed
    and there is a ``report``); ``progress.epoch_done(epoch, metrics)`` records an ``EpochLog`` in ``history`` and
    reports its line (under a bar, in tqdm's external write mode, so the bar stays below the lines)."""

    def __init__(self, epochs: int, steps: int, report: Report | None = print, bar: bool = True,
                 desc: str = "training") -> None:
        self.epochs, self.steps, self.report, self.desc = epochs, steps, report, desc
        self.use_tqdm = bar and report is not None and have("tqdm")
        self.history: list[EpochLog] = []
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def epoch(self, items: Iterable[Any], epoch: int) -> Iterator[Any]:
        if not self.use_tqdm:
            yield from items
            return
        from tqdm import tqdm

        with tqdm(items, total=self.steps, desc=f"{self.desc} {epoch}/{self.epochs}", leave=False,
                  unit="batch", dynamic_ncols=True) as bar:
            yield from bar

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> EpochLog:
        log = EpochLog(epoch, self.elapsed(), dict(metrics))
        self.history.append(log)
        self.write(log.line(self.epochs))
        return log

    def write(self, line: str) -> None:
        if self.report is None:
            return
        if self.use_tqdm:
            from tqdm import tqdm

            with tqdm.external_write_mode():  # the bar steps aside for the line, then redraws below it
                self.report(line)
        else:
            self.report(line)


def save_plot(path: str, draw: Callable[[Any], None], size: tuple[float, float] = (10.0, 6.0)) -> str | None:
    """Draws with ``draw(figure)`` on a new matplotlib figure and saves it to ``path`` (PNG); None, without writing
    anything, when matplotlib is not installed."""
    if not have("matplotlib"):
        return None
    from matplotlib.figure import Figure  # no pyplot: no backend chosen, no global state touched

    figure = Figure(figsize=size)
    draw(figure)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def draw_history(ax: Any, history: list[EpochLog], names: Iterable[str], title: str = "") -> None:
    """The learning curves on the matplotlib axes ``ax``: each metric of ``names`` in ``history`` over the epochs."""
    epochs = [log.epoch for log in history]
    for name in names:
        ax.plot(epochs, [log.metrics[name] for log in history], marker="o", label=name.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def output_arguments(parser: argparse.ArgumentParser, plot: str, what: str = "the plot",
                     needs: str = "needs matplotlib") -> None:
    """The options every demo's command ends with: --threads, --plot (``what`` is saved to ``plot``), --no-plot,
    --no-bar."""
    parser.add_argument("--threads", type=int, help="rnncore's threads (default: all cores)")
    parser.add_argument("--plot", default=plot, help=f"where to save {what} ({plot}; {needs})")
    parser.add_argument("--no-plot", action="store_true", help=f"do not save {what}")
    parser.add_argument("--no-bar", action="store_true", help="no progress bar (one line per epoch)")


def report_saved(saved: str | None, what: str) -> None:
    """The line every demo ends with after its plot: where ``what`` was saved, or why nothing was."""
    print(f"saved {what} to {saved}" if saved else
          "(matplotlib is not installed: no plot; pip install \"rnncore[demos]\" for it and a progress bar)")


def command_main(name: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                 run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None) -> int:
    """``python -m rnncore.demos.NAME [options]``, the same as ``python -m rnncore NAME``: the demo's options
    (``add_arguments``), described by the first paragraph of its module docstring ``doc``, then ``run``."""
    parser = argparse.ArgumentParser(prog=f"python -m rnncore {name}", description=doc.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
