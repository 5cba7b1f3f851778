"""float64 central-difference gradient checks of the C++ kernels: every gradient backward returns (dx, the initial
states, every weight and bias) against (L(θ+ε) − L(θ−ε)) / 2ε of the kernels' own forward, on tiny sizes, with and
without lengths. (tests/test_reference.py does the same for the NumPy reference.)"""

import numpy as np
import pytest

import rnncore

from support.arrays import numerical_gradient
from support.cells import CELL_IDS, CELLS, loss, make_inputs, run_backward, run_forward
from support.tolerances import assert_close


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T,B,I,H,lengths", [(3, 2, 3, 2, None), (4, 3, 2, 3, [4, 1, 2]), (1, 1, 1, 1, None)])
def test_kernel_gradients_match_central_differences(cell, T, B, I, H, lengths):
    rng = np.random.default_rng(T * 100 + B * 10 + H)
    inputs, upstream = make_inputs(rng, cell, T, B, I, H, np.float64)
    inputs["lengths"] = None if lengths is None else np.array(lengths)
    if cell.options.get("nonlinearity") == "relu":
        inputs["b_ih"] += 0.3  # keep pre-activations away from relu's kink, where the derivative jumps

    outputs, ws = run_forward(rnncore.ops, cell, inputs)
    analytic = run_backward(rnncore.ops, cell, ws, upstream)

    def current_loss():
        return loss(run_forward(rnncore.ops, cell, inputs, training=False)[0], upstream)

    for input_name, grad_name in zip(cell.input_names, cell.gradient_names):
        numeric = numerical_gradient(current_loss, inputs[input_name])
        assert_close(analytic[grad_name], numeric, "gradcheck", np.float64, f"{cell.name}: {grad_name}")
