"""rnncore.demos.sine (issue 14): the generated windows, the baselines, a fast training run that must beat them, and
``python -m rnncore sine``."""

import numpy as np
import pytest

from rnncore import __main__ as main_module
from rnncore.demos import _common, sine


@pytest.fixture(scope="module")
def trained():
    lines = []
    return sine.train(seed=0, fast=True, report=lines.append, bar=False), lines


def test_windows_are_noisy_sines_and_the_target_their_next_clean_value():
    x, y = sine.make_windows(500, seed=1)
    assert x.shape == (500, sine.WINDOW, 1) and y.shape == (500, 1) and x.dtype == y.dtype == np.float32
    assert np.all(np.abs(y) <= 1) and 0.02 < np.std(x[:, 1:, 0] - x[:, :-1, 0]) < 1
    # the noise: a window minus its clean sine (recovered from the same draws) has the stated spread
    rng = np.random.default_rng(1)
    omega, phase = rng.uniform(*sine.FREQUENCIES, (500, 1)), rng.uniform(0, 2 * np.pi, (500, 1))
    clean = np.sin(omega * np.arange(sine.WINDOW + 1) + phase)
    np.testing.assert_allclose(y[:, 0], clean[:, -1], atol=1e-6)
    assert abs(np.std(x[:, :, 0] - clean[:, :-1]) - sine.NOISE) < 0.005
    assert np.array_equal(x, sine.make_windows(500, seed=1)[0])


def test_baselines():
    x = np.array([[[0.0], [1.0], [3.0]]], np.float32)
    got = sine.baselines(x, np.array([[4.0]], np.float32))
    assert got == {"last_value_mse": 1.0, "linear_extrapolation_mse": 1.0}  # 3 and 2*3 - 1 = 5 against 4


def test_fast_mode_beats_both_baselines(trained):
    """An untrained RNN is worse than repeating the last value (checked); the fast recipe must halve the best
    baseline's held-out MSE (measured: 0.0078 against 0.029, seed 0)."""
    model, lines = trained
    assert len(lines) == len(model.history) == sine.RECIPES["fast"][0]
    x, y = model.heldout
    best = min(model.baselines.values())
    assert model.history[-1].metrics["heldout_mse"] < sine.TARGETS["fast"] * best, lines
    untrained = sine.train(seed=1, epochs=1, n_train=1, report=None).predict(x)
    assert np.mean((untrained - y) ** 2) > best
    assert model.predict(x[:3]).shape == (3, 1) and model.training  # predict leaves the mode as it was


def test_the_command_reports_the_verdict_and_a_plot(trained, monkeypatch, capsys, tmp_path):
    model, _ = trained
    monkeypatch.setattr(sine, "train", lambda **kwargs: model)
    plot = tmp_path / "sine.png"
    assert main_module.main(["sine", "--fast", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "held-out MSE" in out and "met" in out and "linear extrapolation" in out
    assert plot.exists() == _common.have("matplotlib")
    monkeypatch.setattr(model.history[-1], "metrics", dict(model.history[-1].metrics, heldout_mse=1.0))
    assert main_module.main(["sine", "--fast", "--no-plot"]) == 1
    assert "MISSED" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(ValueError, match="epochs"):
        sine.train(epochs=0, report=None)
    with pytest.raises(ValueError, match="hidden"):
        sine.train(hidden=0, report=None)
