"""The C++ cell table (cpp/src/cells/cell_table.hpp) as the bindings see it: names round-trip, and the Stepper
refuses a name it does not know (it used to build a simple RNN for any unknown cell name)."""

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stepper_rejects_an_unknown_cell_name(dtype):
    stepper = getattr(_core, f"Stepper_{dtype}")
    w_ih, w_hh = np.zeros((4, 3), dtype), np.zeros((4, 4), dtype)
    with pytest.raises(ValueError, match=r"cell must be one of 'lstm', 'gru', 'rnn', got 'lstn'"):
        stepper("lstn", True, "tanh", 1, w_ih, w_hh, None, None)
    with pytest.raises(ValueError, match=r"nonlinearity must be one of 'tanh', 'relu', got 'sigmoid'"):
        stepper("rnn", True, "sigmoid", 1, w_ih[:4], w_hh[:4], None, None)


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_workspace_names_its_cell(cell, gates):
    rng = np.random.default_rng(0)
    T, B, I, H = 2, 1, 3, 4
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = rng.standard_normal((gates * H, I)).astype(np.float32)
    w_hh = rng.standard_normal((gates * H, H)).astype(np.float32)
    h0 = np.zeros((B, H), np.float32)
    if cell == "lstm":
        ws = rc.ops.lstm_forward(x, h0, h0, w_ih, w_hh, None, None)[-1]
    else:
        ws = getattr(rc.ops, f"{cell}_forward")(x, h0, w_ih, w_hh, None, None)[-1]
    assert ws.cell == cell
