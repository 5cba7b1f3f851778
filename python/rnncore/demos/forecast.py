"""Forecasting a real series with an LSTM or GRU — the course's time-series lab, and rnncore's one home for forecasting.

The series: the yearly mean sunspot numbers 1700-2008 (309 values), shipped with the package as
``rnncore/demos/data/sunspots_yearly.csv``. Source: the National Geophysical Data Center's yearly sunspot numbers
as statsmodels bundles them (``statsmodels.datasets.sunspots``, whose notes say: "This data is public domain").
A model reads the last ``window`` years and forecasts the next ``horizon`` at once (a stacked LSTM or GRU, a linear
head on the last layer's final state). The held-out years are the last ones (the forecasts of the years from
``HELDOUT_FROM`` on), never trained on; the error there is judged against two baselines anyone would try first:
persistence (every coming year repeats the last one seen) and the best linear autoregression (least squares on the
same training windows, plus a constant)::

    from rnncore.demos import forecast
    result = forecast.train(seed=0)          # progress, training and held-out error per epoch
    result.rmse, result.baselines            # held-out RMSE in sunspots; {'persistence': ..., 'linear AR': ...}
    result.model.eval()(windows)             # forecasts [N, horizon] of windows [N, window, 1] (scaled: /SCALE)

The pieces are shared with ``rnncore.demo`` (``python -m rnncore gru-forecast``: generated two-sine series): the
``Forecaster`` model, ``windows``, the two baselines and the training loop ``fit``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import choice, hyper_non_negative, positive_int, seed_value
from ..layers import GRU, LSTM
from ..losses import mse
from ..module import Module
from ..nn import Linear
from ..ops.runtime import threads as thread_limit
from ..optim import Adam
from ..optim.lr import LambdaLR
from ..utils import clip_grad_norm
from ._common import EpochLog, Progress, Report, child_seeds, command_main, output_arguments, report_saved, save_plot

__all__ = ["load_sunspots", "windows", "Forecaster", "persistence_mse", "linear_ar_mse", "fit", "train", "Trained",
           "main"]

DATA = os.path.join(os.path.dirname(__file__), "data", "sunspots_yearly.csv")
SCALE = 100.0  # sunspot numbers / SCALE: values of order 1 for the network
HELDOUT_FROM = 1950  # the forecasts of 1950-2008 (five solar cycles) are held out
#: (window, horizon, cell, hidden, layers, epochs, batch size, peak learning rate) for the full run and fast mode.
RECIPES: dict[str, dict[str, Any]] = {
    "full": dict(window=20, horizon=1, cell="gru", hidden=32, layers=1, epochs=40, batch_size=16, lr=0.01),
    "fast": dict(window=20, horizon=1, cell="gru", hidden=32, layers=1, epochs=15, batch_size=16, lr=0.01),
}
PLOT = "forecast_sunspots.png"


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """``(years int64 [309], sunspots float64 [309])``: the yearly mean sunspot numbers 1700-2008."""
    data = np.loadtxt(DATA, delimiter=",", skiprows=1)
    return data[:, 0].astype(np.int64), data[:, 1]


def windows(series: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``window`` consecutive values of ``series`` [L] and the ``horizon`` after them: ``(x float32
    [L - window - horizon + 1, window, 1], y float32 [..., horizon])``, window i starting at value i."""
    series = np.asarray(series, np.float32)
    n = len(series) - window - horizon + 1
    if n < 1:
        raise ValueError(f"series: expected at least window + horizon = {window + horizon} values, got "
                         f"{len(series)}")
    idx = np.arange(n)[:, None]
    return series[idx + np.arange(window)][:, :, None], series[idx + window + np.arange(horizon)]


class Forecaster(Module):
    """A stacked ``cell`` ("gru" or "lstm") reads a window [N, window, 1] (batch-first); a linear head maps the last
    layer's final state to the forecast [N, horizon]."""

    def __init__(self, hidden: int = 64, layers: int = 2, horizon: int = 10, seed: int | None = 0,
                 cell: str = "gru") -> None:
        super().__init__()
        self.cell = choice("cell", cell, ("gru", "lstm"))
        rnn_seed, head_seed = (seed, seed + 1) if isinstance(seed, int) else child_seeds(seed, 2)
        self.rnn = (GRU if cell == "gru" else LSTM)(1, hidden, num_layers=layers, batch_first=True, seed=rnn_seed)
        self.head = Linear(hidden, horizon, seed=head_seed)

    def get_config(self) -> dict[str, Any]:
        return {"hidden": self.rnn.hidden_size, "layers": self.rnn.num_layers, "horizon": self.head.out_features,
                "cell": self.cell}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        self.save_for_backward((y.shape, h_n.shape, isinstance(state, tuple)))  # the tape: calls go back in reverse
        return self.head(h_n[-1])

    def backward(self, dforecast: np.ndarray) -> None:
        """``dforecast`` [N, horizon] of the last recorded call: through the head into the last layer's final h."""
        y_shape, h_shape, lstm = self.saved_for_backward()
        dh_n = np.zeros(h_shape, self.head.dtype)
        dh_n[-1] = self.head.backward(dforecast)
        self.rnn.backward(np.zeros(y_shape, self.head.dtype), (dh_n, None) if lstm else dh_n)


def persistence_mse(x: np.ndarray, y: np.ndarray) -> float:
    """MSE of repeating each window's last value over the horizon: ``x`` [N, window, 1], ``y`` [N, horizon]."""
    return float(np.mean((np.asarray(x, np.float64)[:, -1, :] - y) ** 2))


def linear_ar_mse(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out MSE of the least-squares linear map from a window (plus a constant) to the horizon, fitted on the
    training windows."""
    def design(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[:, :, 0], np.ones((len(x), 1), x.dtype)], axis=1).astype(np.float64)

    coef, *_ = np.linalg.lstsq(design(x_train), y_train.astype(np.float64), rcond=None)
    return float(np.mean((design(x_test) @ coef - y_test) ** 2))


def fit(model: Forecaster, x: np.ndarray, y: np.ndarray, progress: Progress, batch_size: int, lr: float,
        seed: int | None, heldout: tuple[np.ndarray, np.ndarray] | None = None, decay: bool = True) -> float:
    """Trains ``model`` on windows ``x`` [N, window, 1] -> ``y`` [N, horizon] for ``progress.epochs`` epochs of
    shuffled mini-batches: MSE, Adam (``lr``, cosine-decayed to 0 when ``decay``), gradient norm clipped at 1. Each
    epoch reports the training MSE and, with ``heldout`` (x, y), the held-out MSE. Returns the last epoch's
    training MSE; the model is left in eval mode."""
    opt = Adam(model, lr=lr)
    total = progress.epochs * progress.steps
    sched = LambdaLR(opt, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, total) / total)) if decay else 1.0)
    rng = np.random.default_rng(seed)
    train_mse = float("nan")
    for epoch in range(1, progress.epochs + 1):
        model.train()
        order = rng.permutation(len(x))
        losses = []
        for start in progress.epoch(range(0, len(x), batch_size), epoch):
            idx = order[start:start + batch_size]
            loss, dpred = mse(model(x[idx]), y[idx])
            opt.zero_grad()
            model.backward(dpred)
            clip_grad_norm(model, max_norm=1.0)
            opt.step()
            sched.step()
            losses.append(loss)
        model.eval()
        train_mse = float(np.mean(losses))
        metrics = {"train_mse": train_mse}
        if heldout is not None:
            metrics["heldout_mse"] = float(mse(model(heldout[0]), heldout[1])[0])
        progress.epoch_done(epoch, metrics)
    return train_mse


@dataclass
class Trained:
    """``train``'s result: the ``model``, its held-out ``rmse`` (sunspots) and the ``baselines``' (``persistence``,
    ``linear AR``), per-epoch ``history`` (scaled MSEs), and the held-out ``years``, ``actual`` and ``predicted``
    values (the first step of each forecast, in sunspots)."""
    model: Forecaster
    rmse: float
    baselines: dict[str, float]
    history: list[EpochLog] = field(default_factory=list)
    years: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    actual: np.ndarray = field(default_factory=lambda: np.zeros(0))
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recipe: dict[str, Any] = field(default_factory=dict)


def train(seed: int | None = 0, fast: bool = False, report: Report | None = print, bar: bool = True,
          threads: int | None = None, **overrides: Any) -> Trained:
    """Trains a ``Forecaster`` on the sunspot windows whose forecasts end before ``HELDOUT_FROM`` and measures it on
    the forecasts of the years from ``HELDOUT_FROM`` on (never trained on).

    ``fast``: the short recipe the tests run. ``overrides``: any of the recipe's keys (``RECIPES``: ``window``,
    ``horizon``, ``cell``, ``hidden``, ``layers``, ``epochs``, ``batch_size``, ``lr``). ``report`` receives one line
    per epoch (None: silent); ``bar``: a tqdm bar when installed. ``threads``: rnncore's threads (None: all)."""
    seed = seed_value(seed)
    recipe = dict(RECIPES["fast" if fast else "full"])
    unknown = sorted(set(overrides) - set(recipe))
    if unknown:
        raise TypeError(f"train() got unknown options {unknown}; the recipe's are {sorted(recipe)}")
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("window", "horizon", "hidden", "layers", "epochs", "batch_size"):
        recipe[key] = positive_int(key, recipe[key])
    recipe["lr"] = hyper_non_negative("lr", recipe["lr"])
    recipe["cell"] = choice("cell", recipe["cell"], ("gru", "lstm"))
    window, horizon = recipe["window"], recipe["horizon"]
    model_seed, batch_seed = child_seeds(seed, 2)
    years, sunspots = load_sunspots()
    x, y = windows(sunspots / SCALE, window, horizon)
    first_year = years[window:window + len(x)]  # the year each window's forecast starts at
    held = first_year >= HELDOUT_FROM
    trained_on = first_year + horizon - 1 < HELDOUT_FROM  # forecasts wholly before the held-out years
    x_train, y_train, x_test, y_test = x[trained_on], y[trained_on], x[held], y[held]
    model = Forecaster(recipe["hidden"], recipe["layers"], horizon, model_seed, recipe["cell"])
    progress = Progress(recipe["epochs"], -(-len(x_train) // recipe["batch_size"]), report, bar, desc="forecast")
    with thread_limit(threads):
        fit(model, x_train, y_train, progress, recipe["batch_size"], recipe["lr"], batch_seed, (x_test, y_test))
        predicted = model(x_test)
    rmse = SCALE * float(np.sqrt(np.mean((predicted - y_test) ** 2)))
    baselines = {"persistence": SCALE * float(np.sqrt(persistence_mse(x_test, y_test))),
                 "linear AR": SCALE * float(np.sqrt(linear_ar_mse(x_train, y_train, x_test, y_test)))}
    return Trained(model, rmse, baselines, progress.history, first_year[held], SCALE * y_test[:, 0].astype(float),
                   SCALE * predicted[:, 0].astype(float), recipe)


# ---- the command (python -m rnncore forecast) ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m rnncore forecast``."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the batches (0)")
    parser.add_argument("--fast", action="store_true", help="the short recipe of the tests (a few seconds)")
    parser.add_argument("--cell", choices=("gru", "lstm"), help="the recurrent cell (default: the recipe's, gru)")
    parser.add_argument("--window", type=int, help="years read per forecast (default: the recipe's)")
    parser.add_argument("--horizon", type=int, help="years forecast at once (default: the recipe's)")
    parser.add_argument("--hidden", type=int, help="hidden units (default: the recipe's)")
    parser.add_argument("--layers", type=int, help="stacked layers (default: the recipe's)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    output_arguments(parser, PLOT, "the held-out forecasts", "matplotlib")


def plot_forecasts(path: str, result: Trained) -> str | None:
    """Saves the whole series with the held-out forecasts over it; None without matplotlib."""
    years, sunspots = load_sunspots()

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        ax.plot(years, sunspots, color="0.6", lw=1, label="yearly sunspot number")
        ax.plot(result.years, result.predicted, color="C3", lw=1.5,
                label=f"{result.recipe['cell'].upper()} forecast (held out, RMSE {result.rmse:.1f})")
        ax.axvline(HELDOUT_FROM - 0.5, color="k", ls=":", lw=1)
        ax.set_xlabel("year")
        ax.set_ylabel("sunspot number")
        ax.legend(loc="upper left")
        ax.set_title("held-out one-step forecasts after training on the years before "
                     f"{HELDOUT_FROM}" if result.recipe["horizon"] == 1 else "held-out forecasts (first step)")

    return save_plot(path, draw, size=(10.0, 4.0))


def run(args: argparse.Namespace) -> int:
    """``python -m rnncore forecast``: trains, reports, saves the plot; 0 when the held-out RMSE is below both
    baselines', else 1."""
    import rnncore

    options = {k: getattr(args, k) for k in ("cell", "window", "horizon", "hidden", "layers", "epochs", "batch_size",
                                             "lr")}
    recipe = dict(RECIPES["fast" if args.fast else "full"], **{k: v for k, v in options.items() if v is not None})
    print(f"rnncore {rnncore.__version__}: forecasting the yearly sunspot numbers (seed {args.seed})")
    print(f"  data: yearly mean sunspot numbers 1700-2008 (NGDC, public domain; shipped with rnncore); the forecasts "
          f"of {HELDOUT_FROM}-2008 held out")
    print(f"  model: {recipe['layers']} x {recipe['cell'].upper()} ({recipe['hidden']}) reads {recipe['window']} years,"
          f" a linear head forecasts the next {recipe['horizon']}; {recipe['epochs']} epochs")
    start = time.perf_counter()
    result = train(seed=args.seed, fast=args.fast, bar=not args.no_bar, threads=args.threads, **options)
    seconds = time.perf_counter() - start
    best = min(result.baselines.values())
    ok = result.rmse < best
    shown = ", ".join(f"{name} {value:.1f}" for name, value in result.baselines.items())
    print(f"held-out RMSE {result.rmse:.1f} sunspots over {len(result.years)} forecasts in {seconds:.1f} s "
          f"(baselines: {shown}; {'below both' if ok else 'NOT BELOW BOTH BASELINES'})")
    if not args.no_plot:
        saved = plot_forecasts(args.plot, result)
        report_saved(saved, "the held-out forecasts")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rnncore.demos.forecast [options]``: the same as ``python -m rnncore forecast``."""
    return command_main("forecast", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
