"""rnncore.demos.gradients (issue 14): the long-lag task, ||dL/dh_t|| against an independent computation, the LSTM's
chrono initialisation, and a fast run in which the LSTM and the GRU learn a lag the simple RNN cannot, the gradient
reaching the marked step showing why."""

import numpy as np
import pytest

from rnncore import __main__ as main_module
from rnncore.demos import _common, gradients
from rnncore.losses import mse


@pytest.fixture(scope="module")
def result():
    lines = []
    return gradients.train(seed=0, fast=True, report=lines.append, bar=False), lines


def test_the_task_marks_the_value_to_remember():
    x, y = gradients.make_task(300, lag=7, seed=2)
    assert x.shape == (300, 7, 2) and y.shape == (300, 1)
    assert np.array_equal(y[:, 0], x[:, 0, 0]) and np.all(np.abs(x[:, :, 0]) <= 1)
    assert np.array_equal(x[:, :, 1], np.broadcast_to(np.arange(7) == 0, (300, 7)))


@pytest.mark.parametrize("cell", list(gradients.CELLS))
def test_gradient_norms_match_the_layers_own_backward(cell):
    """The cell-unrolled ||dL/dh_t|| against the whole layer's backward, run independently: from the state after
    step t, the layer over the remaining steps hands back dL/dh_t as its initial state's gradient."""
    model = gradients.make_model(cell, hidden=5, seed=3)
    x, y = gradients.make_task(4, lag=6, seed=4)
    norms = gradients.gradient_norms(model, x, y)
    assert norms.shape == (6,) and np.all(norms > 0)
    assert all(np.all(g == 0) for g in model.gradients().values())  # left as found
    layer, last, head = model
    for t in (0, 2, 5):
        layer.eval()
        _, state = layer(x[:, :t + 1])  # the state after step t
        layer.train()
        head.train()
        if t + 1 < x.shape[1]:
            outputs = layer(x[:, t + 1:], state)
            _, dpred = mse(head(last(outputs)), y)
            _, dstate = layer.backward(*last.backward(head.backward(dpred)))
            dh = dstate[0] if isinstance(dstate, tuple) else dstate
        else:
            h = (state[0] if isinstance(state, tuple) else state)[-1]
            _, dpred = mse(head(h), y)
            dh = head.backward(dpred)
        want = np.mean(np.linalg.norm(np.reshape(dh, (-1, 4, 5))[-1], axis=1))
        assert norms[t] == pytest.approx(want, rel=1e-4), t
    model.zero_grad()


def gate_bias(lstm, gate):
    """The bias of ``gate``'s units (bias_ih + bias_hh) of an LSTM layer."""
    g, H = lstm.kind.gates.index(gate), lstm.hidden_size
    return (lstm.bias_ih_l0 + lstm.bias_hh_l0)[g * H:(g + 1) * H]


def test_chrono_bias_spreads_the_forget_gates_time_scales_and_closes_the_input_gate():
    lstm = gradients.make_model("lstm", hidden=64, seed=5, lag=80)[0]
    forget = gate_bias(lstm, "f")
    assert np.all(forget >= 0) and np.all(forget <= np.log(79) + 1e-6) and np.ptp(forget) > 3  # log U(1, 79)
    assert np.array_equal(gate_bias(lstm, "i"), -forget)
    assert np.all(gate_bias(lstm, "g") == 0) and np.all(gate_bias(lstm, "o") == 0)  # Keras' zeros
    assert np.max(gate_bias(gradients.make_model("lstm", hidden=64, seed=5, lag=10)[0], "f")) <= np.log(9) + 1e-6
    short = gradients.make_model("lstm", hidden=4, seed=5, lag=2)[0]  # u ~ U(1, 1): no time scale to prepare
    assert np.all(gate_bias(short, "f") == 0) and np.all(gate_bias(short, "i") == 0)
    assert np.all(gate_bias(gradients.make_model("gru", hidden=4, seed=5)[0], "z") == 2)  # KEEP_BIAS
    with pytest.raises(ValueError, match="lag"):
        gradients.make_model("lstm", lag=0)


def test_fast_mode_lstm_and_gru_learn_the_lag_the_simple_rnn_cannot(result):
    """Lag 80, seed 0: the LSTM and the GRU recall the marked value (measured 0.9992 and 0.9998 explained) while
    the simple RNN stays below what a two-state memory explains (0.75; measured 0.46); its gradient at the marked
    step has vanished (2e-20 of the last step's) where the LSTM's and the GRU's have not (1.1, 3.6)."""
    res, lines = result
    assert res.lag == gradients.RECIPES["fast"][0] == 80
    assert gradients.learned(res), lines
    assert min(res.explained["lstm"], res.explained["gru"]) >= 0.9 and res.explained["rnn"] <= 0.75
    ratio = {name: n[0] / n[-1] for name, n in res.norms.items()}
    assert ratio["rnn"] < 1e-10 < 1e-3 < min(ratio["lstm"], ratio["gru"])


def test_the_command_reports_the_verdict_and_saves_the_plot(result, monkeypatch, capsys, tmp_path):
    res, _ = result
    monkeypatch.setattr(gradients, "train", lambda **kwargs: res)
    plot = tmp_path / "g.png"
    assert main_module.main(["gradients", "--fast", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "the LSTM and the GRU learn the lag" in out and "yes" in out and out.count("trained:") == 3
    assert plot.exists() == _common.have("matplotlib")
    for name, value in (("lstm", 0.0), ("gru", 0.0), ("rnn", 0.95)):  # each one's verdict counts
        monkeypatch.setitem(res.explained, name, value)
        assert main_module.main(["gradients", "--fast", "--no-plot"]) == 1
        monkeypatch.undo()
        monkeypatch.setattr(gradients, "train", lambda **kwargs: res)
        assert main_module.main(["gradients", "--fast", "--no-plot"]) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="cell"):
        gradients.make_model("transformer")
    with pytest.raises(ValueError, match="lag"):
        gradients.make_task(3, lag=0)
