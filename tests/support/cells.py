"""The recurrent cell variants under test and the helpers every kernel test uses to drive them.

The cases are the rows of the package's one cell table (``rnncore._cell_table.VARIANTS``): a case's gates, states,
options and functions are its row's, so a new variant there is a new case here. ``run_forward``/``run_backward`` call
the row's op through either implementation with the op API (``rnncore.ops`` or its twin ``rnncore.reference``), so a
test is written once and run against both, and results come back as named dicts.
"""

from dataclasses import dataclass

import numpy as np
import pytest

import rnncore as rc
from rnncore import ops, reference
from rnncore._cell_table import VARIANTS, CellKind, Variant


@dataclass(frozen=True)
class Cell:
    """A test case: one row of ``VARIANTS``, and the option values passed to its ops (the row's own unless a test
    replaces them, e.g. ``dataclasses.replace(cell, options={"nonlinearity": np.str_("tanh")})``)."""
    variant: Variant
    options: dict | None = None  # reset_after / nonlinearity; None: the variant's

    def __post_init__(self):
        if self.options is None:
            object.__setattr__(self, "options", self.variant.options)

    @property
    def name(self):
        """The test id."""
        return self.variant.name

    @property
    def kind(self) -> CellKind:
        return self.variant.kind

    @property
    def op(self):
        """The ops' prefix (lstm | gru | rnn), for test ids."""
        return self.kind.name

    @property
    def gates(self):
        return self.kind.n_gates

    @property
    def has_cell_state(self):
        return "c" in self.kind.states

    @property
    def state_names(self):
        """The initial states forward takes, in order: ("h0",) or ("h0", "c0")."""
        return tuple(s + "0" for s in self.kind.states)

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
        """What forward returns before the workspace: y and each final state ("h_n", and "c_n" for an LSTM)."""
        return ("y",) + tuple(s + "_n" for s in self.kind.states)

    def functions(self, impl):
        """The row's (forward, backward) in ``impl``: the ops (``rnncore.ops``) or their reference twins."""
        if impl is ops:
            return self.kind.forward, self.kind.backward
        if impl is reference:
            return self.kind.reference_forward, self.kind.reference_backward
        raise ValueError(f"no {self.kind.title} functions in {impl!r}: expected rnncore.ops or rnncore.reference")


CELLS = [Cell(v) for v in VARIANTS]
CELL_IDS = [c.name for c in CELLS]

# The recurrent layers' cases, one per row of VARIANTS: parametrize("cls,options", LAYERS).
_LAYER_OF_KIND = {cls.kind: cls for cls in (rc.LSTM, rc.GRU, rc.RNN)}
LAYERS = [pytest.param(_LAYER_OF_KIND[v.kind], dict(v.options), id=v.name) for v in VARIANTS]


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
    upstream = {"dy": normal(T, B, H), **{"d" + s: normal(B, H) for s in cell.output_names[1:]}}
    return inputs, upstream


def run_forward(impl, cell, inputs, training=True):
    """Runs the cell's forward in ``impl`` (ops or reference); returns (dict of named outputs, workspace)."""
    args = [inputs["x"], *(inputs[s] for s in cell.state_names),
            inputs["w_ih"], inputs["w_hh"], inputs["b_ih"], inputs["b_hh"]]
    forward, _ = cell.functions(impl)
    *outputs, ws = forward(*args, lengths=inputs["lengths"], training=training, **cell.options)
    return dict(zip(cell.output_names, outputs)), ws


def run_backward(impl, cell, ws, upstream):
    """Runs the cell's backward in ``impl`` (ops or reference); returns a dict of named gradients."""
    _, backward = cell.functions(impl)
    grads = backward(ws, **upstream)
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
