"""``python -m rnncore check`` (build info, the kernel self-check) and ``python -m rnncore gru-forecast`` (the
forecasting demo of ``rnncore.demo``, which must beat both baselines on held-out series). The main command, date
translation, is tested in test_demos_dates.py."""

import subprocess
import sys

import numpy as np
import pytest

from rnncore import __main__ as main_module, demo


def test_generated_series_and_windows():
    series = demo.make_series(5, 30, seed=3)
    assert series.shape == (5, 30) and series.dtype == np.float32
    np.testing.assert_array_equal(series, demo.make_series(5, 30, seed=3))  # reproducible
    x, y = demo.make_windows(series, window=20, horizon=4)
    assert x.shape == (5, 20, 1) and y.shape == (5, 4)
    np.testing.assert_array_equal(y, series[:, 20:24])


def test_forecaster_learns_and_beats_the_baselines():
    """A shorter run than the demo's (6 of its 8 epochs, ~2 s): the trained GRU must beat repeating the last value
    and the least-squares linear autoregression on series it never saw (measured: 0.104 against 0.131 and 0.80)."""
    lines = []
    r = demo.train_forecaster(epochs=6, report=lines.append)
    assert len(lines) == 6 and all("heldout mse" in line for line in lines)
    assert r["test_mse"] < r["linear_ar_mse"] < r["last_value_mse"]
    assert r["test_mse"] < 0.9 * r["linear_ar_mse"]


def test_module_main_runs_the_self_check():
    out = subprocess.run([sys.executable, "-m", "rnncore", "check"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all kernels agree with the reference" in out.stdout
    assert "demo:" not in out.stdout


def test_module_main_fails_when_the_model_loses_and_rejects_unknown_options(monkeypatch, capsys):
    """gru-forecast's exit status is the demo's verdict: a model that does not beat both baselines makes it 1."""
    losing = {"test_mse": 0.5, "last_value_mse": 0.8, "linear_ar_mse": 0.2, "train_mse": 0.5, "seconds": 0.0,
              "epochs": 1}
    monkeypatch.setattr(main_module.demo, "train_forecaster", lambda report=None: losing)
    monkeypatch.setattr(main_module, "_timings", lambda *args, **kwargs: (1.0, 1.0, 1.0, 1.0))
    assert main_module.main(["gru-forecast"]) == 1
    assert "DID NOT BEAT" in capsys.readouterr().out
    monkeypatch.setattr(main_module.demo, "train_forecaster", lambda report=None: dict(losing, test_mse=0.1))
    assert main_module.main(["gru-forecast"]) == 0
    assert main_module.main(["check"]) == 0
    assert "all kernels agree" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main_module.main(["check", "--nodemo"])
