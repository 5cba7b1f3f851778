"""One table of the recurrent cell variants and the helpers every kernel test uses to drive them.

``run_forward``/``run_backward`` call the same op through any implementation with the op API (``rnncore.ops`` or
``rnncore.reference``), so a test is written once and run against both, and results come back as named dicts.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Cell:
    name: str          # test id
    op: str            # lstm | gru | rnn  (prefix of the ops' names)
    gates: int
    options: dict = field(default_factory=dict)  # reset_after / nonlinearity

    @property
    def has_cell_state(self):
        return self.op == "lstm"

    @property
    def state_names(self):
        return ("h0", "c0") if self.has_cell_state else ("h0",)

    @property
    def input_names(self):
        """The differentiable inputs, in the order backward returns their gradients."""
        return ("x",) + self.state_names + ("w_ih", "w_hh", "b_ih", "b_hh")

    @property
    def gradient_names(self):
        """The gradient of input ``n`` is named ``"d" + n``."""
        return tuple("d" + n for n in self.input_names)

    @property
    def output_names(self):
        return ("y", "h_n", "c_n") if self.has_cell_state else ("y", "h_n")


CELLS = [
    Cell("lstm", "lstm", 4),
    Cell("gru_reset_after", "gru", 3, {"reset_after": True}),
    Cell("gru_reset_before", "gru", 3, {"reset_after": False}),
    Cell("rnn_tanh", "rnn", 1, {"nonlinearity": "tanh"}),
    Cell("rnn_relu", "rnn", 1, {"nonlinearity": "relu"}),
]
CELL_IDS = [c.name for c in CELLS]


def make_inputs(rng, cell, T, B, I, H, dtype, bias=True, lengths=False):
    """Random inputs for one forward+backward: PyTorch-like weight scale (U(±1/√H)), unit-normal x, states and
    upstream gradients. ``lengths=True`` draws per-sample lengths in 1..T."""
    k = 1.0 / np.sqrt(H)
    GH = cell.gates * H

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    def uniform(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    inputs = dict(x=normal(T, B, I), w_ih=uniform(GH, I), w_hh=uniform(GH, H),
                  b_ih=uniform(GH) if bias else None, b_hh=uniform(GH) if bias else None,
                  lengths=rng.integers(1, T + 1, size=B) if lengths else None)
    for s in cell.state_names:
        inputs[s] = normal(B, H)
    upstream = dict(dy=normal(T, B, H), dh_n=normal(B, H))
    if cell.has_cell_state:
        upstream["dc_n"] = normal(B, H)
    return inputs, upstream


def run_forward(impl, cell, inputs, training=True):
    """Runs ``impl.<cell>_forward``; returns (dict of named outputs, workspace)."""
    args = [inputs["x"], *(inputs[s] for s in cell.state_names),
            inputs["w_ih"], inputs["w_hh"], inputs["b_ih"], inputs["b_hh"]]
    *outputs, ws = getattr(impl, f"{cell.op}_forward")(*args, lengths=inputs["lengths"], training=training,
                                                       **cell.options)
    return dict(zip(cell.output_names, outputs)), ws


def run_backward(impl, cell, ws, upstream):
    """Runs ``impl.<cell>_backward``; returns a dict of named gradients."""
    grads = getattr(impl, f"{cell.op}_backward")(ws, **upstream)
    assert len(grads) == len(cell.gradient_names)
    return dict(zip(cell.gradient_names, grads))


def loss(outputs, upstream):
    """The scalar whose gradient backward computes: Σ y·dy + Σ h_n·dh_n (+ Σ c_n·dc_n)."""
    total = np.sum(outputs["y"].astype(np.float64) * upstream["dy"])
    total += np.sum(outputs["h_n"].astype(np.float64) * upstream["dh_n"])
    if "c_n" in outputs:
        total += np.sum(outputs["c_n"].astype(np.float64) * upstream["dc_n"])
    return total


def as_tuple(state):
    """A layer's or cell's state as a tuple: LSTM's (h, c) as it is, any other cell's h as (h,)."""
    return state if isinstance(state, tuple) else (state,)
