"""Time-series forecasting with a stacked GRU on generated series (``python -m rnncore gru-forecast``).

Data the demo makes itself: noisy sums of two sines with random frequencies, amplitudes and phases. The model reads
a window of ``window`` values and predicts the next ``horizon`` values (many-to-many through a linear head on the
last hidden state: a GRU encoder, then ``horizon`` outputs at once). Training: mean squared error, Adam, gradient
clipping, mini-batches, a held-out set. A forecast is judged against two baselines anyone would try first:
repeating the last value, and the best linear autoregression fitted by least squares on the same training windows.
The model, the baselines and the training loop are ``rnncore.demos.forecast``'s (its successor, on a real series:
``python -m rnncore forecast``); this module keeps the generated series and its API.

    from rnncore import demo
    result = demo.train_forecaster(epochs=8)      # {'test_mse': ..., 'last_value_mse': ..., ...}
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .demos._common import Progress
from .demos.forecast import Forecaster, fit, linear_ar_mse, persistence_mse
from .losses import mse


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
    progress = Progress(epochs, -(-n_train // batch), report, bar=False)
    start = time.perf_counter()
    train_mse = fit(model, x_train, y_train, progress, batch, lr, seed + 2,
                    (x_test, y_test) if report is not None else None, decay=False)
    seconds = time.perf_counter() - start
    return {
        "test_mse": float(mse(model(x_test), y_test)[0]),
        "last_value_mse": persistence_mse(x_test, y_test),
        "linear_ar_mse": linear_ar_mse(x_train, y_train, x_test, y_test),
        "train_mse": train_mse,
        "seconds": seconds,
        "epochs": epochs,
    }
