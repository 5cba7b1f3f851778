"""The package's end-to-end demo (run by ``python -m rnncore``): time-series forecasting with a stacked GRU.

Data the demo makes itself: noisy sums of two sines with random frequencies, amplitudes and phases. The model reads
a window of ``window`` values and predicts the next ``horizon`` values (many-to-many through a linear head on the
last hidden state: a GRU encoder, then ``horizon`` outputs at once). Training: mean squared error, Adam, gradient
clipping, mini-batches, a held-out set. A forecast is judged against two baselines anyone would try first:
repeating the last value, and the best linear autoregression fitted by least squares on the same training windows.

    from rnncore import demo
    result = demo.train_forecaster(epochs=8)      # {'test_mse': ..., 'last_value_mse': ..., ...}
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .layers import GRU
from .losses import mse
from .module import Module
from .nn import Linear
from .optim import Adam
from .utils import clip_grad_norm


def make_series(n: int, length: int, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """``n`` series of ``length`` values: a1 sin(2π f1 t + p1) + a2 sin(2π f2 t + p2) + noise, as float32
    [n, length]."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    freq = rng.uniform(0.01, 0.08, (n, 2, 1))
    amp = rng.uniform(0.3, 1.0, (n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    clean = (amp * np.sin(2 * np.pi * freq * t + phase)).sum(axis=1)
    return (clean + noise * rng.standard_normal((n, length))).astype(np.float32)


def make_windows(series: np.ndarray, window: int, horizon: int):
    """Inputs [N, window, 1] and targets [N, horizon] from every series' first window + horizon values."""
    x = series[:, :window, None]
    y = series[:, window:window + horizon]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


class Forecaster(Module):
    """A stacked GRU reads the window (batch_first); a linear head maps the last layer's final state to the forecast."""

    def __init__(self, hidden: int = 64, layers: int = 2, horizon: int = 10, seed: int = 0):
        self.gru = GRU(1, hidden, num_layers=layers, batch_first=True, seed=seed)
        self.head = Linear(hidden, horizon, seed=seed + 1)

    def get_config(self) -> dict[str, Any]:
        return {"hidden": self.gru.hidden_size, "layers": self.gru.num_layers, "horizon": self.head.out_features}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._y, h_n = self.gru(x)
        self._h_n = h_n
        return self.head(h_n[-1])

    def backward(self, dforecast: np.ndarray) -> None:
        dh_n = np.zeros_like(self._h_n)
        dh_n[-1] = self.head.backward(dforecast)
        self.gru.backward(np.zeros_like(self._y), dh_n)


def _linear_autoregression_mse(x_train, y_train, x_test, y_test) -> float:
    """Held-out MSE of the least-squares linear map from a window (plus a constant) to the horizon."""
    def design(x):
        return np.concatenate([x[:, :, 0], np.ones((len(x), 1), x.dtype)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design(x_train), y_train.astype(np.float64), rcond=None)
    return float(np.mean((design(x_test) @ coef - y_test) ** 2))


def train_forecaster(epochs: int = 8, n_series: int = 4000, window: int = 40, horizon: int = 10, hidden: int = 64,
                     batch: int = 64, lr: float = 3e-3, seed: int = 0,
                     report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Trains a Forecaster on generated series and returns its held-out MSE next to the baselines'.

    ``report`` (e.g. ``print``) receives one line per epoch. Returns ``{'test_mse', 'last_value_mse',
    'linear_ar_mse', 'train_mse', 'seconds', 'epochs'}``.
    """
    x, y = make_windows(make_series(n_series, window + horizon, seed=seed), window, horizon)
    n_train = int(0.8 * n_series)
    x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    model = Forecaster(hidden=hidden, horizon=horizon, seed=seed + 1)
    opt = Adam(model, lr=lr)
    rng = np.random.default_rng(seed + 2)
    start = time.perf_counter()
    train_mse = float("nan")
    for epoch in range(epochs):
        order = rng.permutation(n_train)
        losses = []
        for s in range(0, n_train, batch):
            idx = order[s:s + batch]
            loss, dpred = mse(model(x_train[idx]), y_train[idx])
            model.zero_grad()
            model.backward(dpred)
            clip_grad_norm(model, max_norm=1.0)
            opt.step()
            losses.append(loss)
        train_mse = float(np.mean(losses))
        if report is not None:
            model.eval()  # inference: nothing is kept for a backward
            test_mse = float(mse(model(x_test), y_test)[0])
            model.train()
            report(f"  epoch {epoch + 1:2d}: train MSE {train_mse:.4f}, held-out MSE {test_mse:.4f}")
    seconds = time.perf_counter() - start
    model.eval()
    return {
        "test_mse": float(mse(model(x_test), y_test)[0]),
        "last_value_mse": float(np.mean((x_test[:, -1, :] - y_test) ** 2)),
        "linear_ar_mse": _linear_autoregression_mse(x_train, y_train, x_test, y_test),
        "train_mse": train_mse,
        "seconds": seconds,
        "epochs": epochs,
    }
