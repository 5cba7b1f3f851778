"""rnncore.demos.digits (issue 14): scikit-learn's digits read row by row by a bidirectional LSTM with lengths. The
fast run must learn (an untrained model is near chance); skipped without scikit-learn (the ``demos`` extra)."""

import numpy as np
import pytest

import rnncore as rc
from rnncore import __main__ as main_module
from rnncore.demos import _common, digits

pytest.importorskip("sklearn")


def test_rows_become_sequences_with_lengths():
    images = np.arange(3 * 64, dtype=np.float64).reshape(3, 8, 8) % 17
    x, lengths = digits.as_sequences(images, [3, 8, 1])
    assert lengths.tolist() == [3, 8, 1] and x.shape == (3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :3], images[0, :3] / 16)
    assert not x[0, 3:].any() and not x[2, 1:].any()
    np.testing.assert_allclose(x[1], images[1] / 16)
    assert digits.as_sequences(images)[1].tolist() == [8, 8, 8]
    with pytest.raises(ValueError, match="images"):
        digits.as_sequences(np.zeros((2, 8, 7)))
    with pytest.raises(ValueError, match="rows"):
        digits.as_sequences(images, 0)


def test_split_is_seeded_and_disjoint():
    tr, te = digits.split(1797, seed=3)
    assert len(te) == 359 and len(tr) + len(te) == 1797 and not set(tr) & set(te)
    assert (digits.split(1797, seed=3)[1] == te).all() and not (digits.split(1797, seed=4)[1] == te).all()


@pytest.fixture(scope="module")
def trained():
    lines = []
    return digits.train(seed=0, fast=True, report=lines.append, bar=False), lines


def test_fast_mode_learns(trained):
    """An untrained model is near chance (checked); the fast recipe (10 epochs, a few seconds) must read most
    held-out digits (measured: 96.4% for seed 0)."""
    result, lines = trained
    assert len(lines) == len(result.history) == digits.RECIPES["fast"][0]
    assert all("heldout accuracy" in line for line in lines)
    assert result.accuracy >= digits.TARGETS["fast"] == 0.9
    assert result.baseline < 0.15
    assert result.history[-1].metrics["loss"] < result.history[0].metrics["loss"]
    images, labels = digits.load()
    assert digits.accuracy(digits.make_model(64, seed=1), *digits.as_sequences(images), labels) < 0.3
    np.testing.assert_array_equal(result.predictions, result.model(*digits.as_sequences(result.heldout_images))
                                  .argmax(axis=1))
    # lengths: trained on images read down to random rows, it names most digits from their top 6 rows (measured
    # 95%) and all the better the more rows it reads
    by_rows = result.accuracy_by_rows
    assert list(by_rows) == [4, 5, 6, 7, 8] and by_rows[4] < by_rows[6] and by_rows[6] > 0.85


def test_the_model_round_trips(trained, tmp_path):
    result, _ = trained
    rc.save(result.model, tmp_path / "digits.npz")
    loaded = rc.load(tmp_path / "digits.npz").eval()
    x, lengths = digits.as_sequences(result.heldout_images)
    np.testing.assert_array_equal(loaded(x, lengths), result.model.eval()(x, lengths))


def test_the_command(trained, monkeypatch, capsys, tmp_path):
    result, _ = trained
    monkeypatch.setattr(digits, "train", lambda **kwargs: result)
    plot = tmp_path / "errors.png"
    assert main_module.main(["digits", "--fast", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "target 90%: met" in out and "most frequent class" in out
    assert plot.exists() == _common.have("matplotlib")
    assert main_module.main(["digits", "--no-plot"]) == (0 if result.accuracy >= 0.97 else 1)
    capsys.readouterr()
    monkeypatch.setattr(digits, "have", lambda name: name != "sklearn")
    assert main_module.main(["digits"]) == 1
    assert "pip install scikit-learn" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(ValueError, match="epochs"):
        digits.train(epochs=0, report=None)
    with pytest.raises(ValueError, match="lr"):
        digits.train(lr=-1.0, report=None)
