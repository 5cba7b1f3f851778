"""Every module keeps a tape (issue 12, item 2): any number of training-mode calls, then one backward per call in
reverse order, giving the same gradients as separate modules and as the NumPy math; the wrong order says so."""

import copy

import numpy as np
import pytest

import rnncore as rc

from support.tolerances import assert_close


def test_linear_any_number_of_calls_then_reverse_backward_matches_numpy(rng):
    lin = rc.Linear(3, 2, dtype=np.float64, seed=0)
    xs = [rng.standard_normal(shape) for shape in [(4, 3), (2, 5, 3), (3,)]]
    dys = [rng.standard_normal(x.shape[:-1] + (2,)) for x in xs]
    for x in xs:
        lin(x)
    dxs = [lin.backward(dy) for dy in reversed(dys)][::-1]
    w = lin.weight
    for dy, dx in zip(dys, dxs):
        assert_close(dx, dy @ w, "kernel_vs_reference", np.float64, "dx")
    want_dw = sum(dy.reshape(-1, 2).T @ x.reshape(-1, 3) for x, dy in zip(xs, dys))
    want_db = sum(dy.reshape(-1, 2).sum(0) for dy in dys)
    assert_close(lin.gradients()["weight"], want_dw, "kernel_vs_reference", np.float64, "dweight")
    assert_close(lin.gradients()["bias"], want_db, "kernel_vs_reference", np.float64, "dbias")
    with pytest.raises(RuntimeError, match="all 3 recorded training-mode calls already went through backward"):
        lin.backward(dys[0])


def test_a_module_used_twice_equals_two_separate_modules(rng):
    """lin(lin(x)) with one Linear gives the gradients of two copies chained, summed."""
    shared = rc.Linear(4, 4, dtype=np.float64, seed=0)
    first, second = copy.deepcopy(shared), copy.deepcopy(shared)
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    y = shared(shared(x))
    np.testing.assert_array_equal(y, second(first(x)))
    dx = shared.backward(shared.backward(dy))
    assert_close(dx, first.backward(second.backward(dy)), "kernel_vs_reference", np.float64, "dx")
    for name, g in shared.gradients().items():
        assert_close(g, first.gradients()[name] + second.gradients()[name], "kernel_vs_reference", np.float64, name)


def test_embedding_calls_go_back_in_reverse_order(rng):
    emb = rc.Embedding(6, 3, dtype=np.float64, seed=0)
    calls = [np.array([[0, 1, 1]]), np.array([5, 2])]
    dys = [rng.standard_normal(idx.shape + (3,)) for idx in calls]
    for idx in calls:
        emb(idx)
    for dy in reversed(dys):
        assert emb.backward(dy) is None
    want = np.zeros((6, 3))
    for idx, dy in zip(calls, dys):
        np.add.at(want, idx.reshape(-1), dy.reshape(-1, 3))
    assert_close(emb.gradients()["weight"], want, "kernel_vs_reference", np.float64, "dweight")


def test_a_recurrent_layer_called_twice_equals_two_separate_layers(rng):
    layer = rc.GRU(3, 4, bidirectional=True, dtype=np.float64, seed=0)
    twins = [copy.deepcopy(layer), copy.deepcopy(layer)]
    inputs = [(rng.standard_normal((5, 2, 3)), [5, 3]), (rng.standard_normal((4, 3, 3)), None)]
    dys = [rng.standard_normal((5, 2, 8)), rng.standard_normal((4, 3, 8))]
    for x, lengths in inputs:
        layer(x, lengths=lengths)
    dxs = [layer.backward(dy)[0] for dy in reversed(dys)][::-1]
    for twin, (x, lengths), dy, dx in zip(twins, inputs, dys, dxs):
        twin(x, lengths=lengths)
        assert_close(dx, twin.backward(dy)[0], "kernel_vs_reference", np.float64, "dx")
    for name, g in layer.gradients().items():
        want = twins[0].gradients()[name] + twins[1].gradients()[name]
        assert_close(g, want, "kernel_vs_reference", np.float64, name)


@pytest.mark.parametrize("make, first, second, dy_first", [
    (lambda: rc.Linear(3, 2), np.zeros((4, 3), np.float32), np.zeros((5, 3), np.float32),
     np.zeros((4, 2), np.float32)),
    (lambda: rc.Embedding(5, 2), np.array([1, 2]), np.array([[1, 2, 3]]), np.zeros((2, 2), np.float32)),
], ids=["Linear", "Embedding"])
def test_backward_in_the_wrong_order_says_so_and_uses_up_nothing(make, first, second, dy_first):
    """Two calls, then the FIRST call's gradient: the message names the last recorded call and the reverse order;
    the rejected gradient leaves the tape as it was, so the right order still works."""
    module = make()
    y1, y2 = module(first), module(second)
    with pytest.raises(ValueError, match=r"dy must have shape .*\(the output shape of the last recorded call: "
                                         r"\w+\.backward takes calls in reverse order, the last call first\)"):
        module.backward(dy_first)
    module.backward(np.zeros_like(y2))
    module.backward(np.zeros_like(y1))


def test_a_rejected_dtype_does_not_use_up_the_call():
    lin = rc.Linear(3, 2)
    lin(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="dy has dtype float64"):
        lin.backward(np.ones((2, 2)))
    lin.backward(np.ones((2, 2), np.float32))
    assert (lin.gradients()["weight"] == 2).all()


def test_eval_calls_record_nothing():
    lin = rc.Linear(3, 2).eval()
    lin(np.ones((2, 3), np.float32))
    assert lin._tape == []
    lin.train()
    lin(np.ones((2, 3), np.float32))
    lin.eval()  # clears what was recorded
    with pytest.raises(RuntimeError, match="no training-mode call was recorded"):
        lin.backward(np.ones((2, 2), np.float32))
