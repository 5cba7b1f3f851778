"""A bidirectional layer's two directions in one call (rnncore.ops.rnn.forward_pair / backward_pair, C++
rnncore::run_pair): each direction gets exactly the bits it gets from its own op call, whether the pair runs at once
on two threads or in turn on one; outputs that overlap the other call's arrays send the pair back to the two checked
calls; and the layers give the same bits on one and two threads with the pair taken."""

import numpy as np
import pytest

from rnncore import _core, ops
from rnncore.ops.rnn import backward_pair, forward_pair

from support.cells import CELL_IDS, CELLS, LAYERS, make_inputs, run_backward, run_forward
from support.threads import team
from support.tolerances import assert_identical


def positional(cell, inputs, out=None, training=True):
    """``_core.<cell>_forward``'s positional arguments for ``inputs`` (support.cells.make_inputs)."""
    return (inputs["x"], *(inputs[s] for s in cell.state_names), inputs["w_ih"], inputs["w_hh"], inputs["b_ih"],
            inputs["b_hh"], inputs["lengths"], training, *cell.options.values(), out)


def backward_positional(cell, ws, upstream, need_dx=True):
    """``_core.<cell>_backward``'s positional arguments."""
    return (ws, upstream["dy"], *(upstream["d" + s] for s in cell.output_names[1:]), need_dx)


OPENMP = _core.has_openmp()  # without OpenMP a pair always runs in turn


def path_counts():
    counts = _core._tuning_counts()
    return counts["pair_together"], counts["pair_in_turn"]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_each_call_of_a_pair_gets_its_own_calls_bits(cell, dtype, threads):
    """Two unrelated calls (different sizes, lengths on one) through the pair equal the two single op calls bit for
    bit, forward and backward; on a forced team of 2 they run together, on 1 thread in turn, and on 3 in turn (each
    call on the whole team: a team other than 2 keeps every direction's rows split across it)."""
    rng = np.random.default_rng(7)
    first = make_inputs(rng, cell, 9, 16, 5, 24, dtype, lengths=True)
    second = make_inputs(rng, cell, 4, 16, 3, 24, dtype)
    alone = []
    for inputs, upstream in (first, second):
        outputs, ws = run_forward(ops, cell, inputs)
        alone.append((outputs, run_backward(ops, cell, ws, upstream)))
    with team(threads):
        before = path_counts()
        results = forward_pair(cell.op, positional(cell, first[0]), positional(cell, second[0]))
        assert results is not None
        workspaces = [r[-1] for r in results]
        grads = backward_pair(cell.op, backward_positional(cell, workspaces[0], first[1]),
                              backward_positional(cell, workspaces[1], second[1]))
        assert grads is not None
        together, in_turn = (a - b for a, b in zip(path_counts(), before))
    assert (together, in_turn) == ((2, 0) if threads == 2 and OPENMP else (0, 2))
    for (outputs, gradients), result, grad in zip(alone, results, grads):
        for name, value in zip(cell.output_names, result[:-1]):
            assert_identical(value, outputs[name], name, "pair vs alone:")
        for name, value in zip(cell.gradient_names, grad):
            assert_identical(value, gradients[name], name, "pair vs alone:")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_a_pair_whose_output_meets_the_other_calls_arrays_is_not_taken(cell):
    """An out= that shares an element with the other call's x or out gives None (the caller then makes the two
    checked calls, in turn). Column blocks of one array (a layer's two directions) share none: taken."""
    rng = np.random.default_rng(3)
    (a, _), (b, _) = (make_inputs(rng, cell, 4, 3, 5, 6, np.float32) for _ in range(2))
    y = np.zeros((4, 3, 12), np.float32)
    left, right = y[:, :, :6], y[:, :, 6:]
    assert forward_pair(cell.op, positional(cell, a, left), positional(cell, b, right[::-1])) is not None
    assert forward_pair(cell.op, positional(cell, a, left), positional(cell, b, left)) is None
    memory = np.zeros((4, 3, 11), np.float32)
    b_reads = dict(b, x=memory.reshape(-1)[:60].reshape(4, 3, 5))  # the second call's x: memory's first 60 floats
    writes_x = memory[:, :, 5:]  # column 5 of step 0 is x's entry [0, 1, 0]
    assert forward_pair(cell.op, positional(cell, a, writes_x), positional(cell, b_reads)) is None
    assert forward_pair(cell.op, positional(cell, b_reads), positional(cell, a, writes_x)) is None


@pytest.mark.parametrize("lengths", [None, [7, 3, 1, 7, 5, 7, 2, 6]], ids=["full", "unequal"])
@pytest.mark.parametrize("cls, options", LAYERS)
def test_layers_give_the_same_bits_on_one_and_two_threads_with_the_pair(cls, options, lengths):
    """A stacked bidirectional layer (every cell; equal lengths, where the reverse direction writes through a flipped
    view, and unequal ones, where it is gathered back) takes the pair on every layer forward and backward, and its
    outputs, input gradient and parameter gradients are those of one thread."""
    rng = np.random.default_rng(11)
    layer = cls(5, 16, num_layers=2, bidirectional=True, batch_first=True, seed=2, **options)
    x = rng.standard_normal((8, 7, 5)).astype(np.float32)
    dy = rng.standard_normal((8, 7, 32)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        with team(threads):
            before = path_counts()
            layer.zero_grad()
            y, state = layer(x, lengths=lengths)
            dx, dstate = layer.backward(dy)
            counts = tuple(a - b for a, b in zip(path_counts(), before))
        assert counts == ((4, 0) if threads == 2 and OPENMP else (0, 4))
        results[threads] = (y, dx, {k: g.copy() for k, g in layer.gradients().items()})
    (y1, dx1, g1), (y2, dx2, g2) = results[1], results[2]
    assert_identical(y2, y1, "y", "2 vs 1 threads:")
    assert_identical(dx2, dx1, "dx", "2 vs 1 threads:")
    for name in g1:
        assert_identical(g2[name], g1[name], name, "2 vs 1 threads:")
