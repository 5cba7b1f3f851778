"""The kernels under concurrent Python threads: several threads calling every cell's forward and backward at once
give exactly the serial results, a workspace shared by several threads' backward calls gives every thread the same
gradients, and the GIL is released while a kernel runs (another Python thread keeps running meanwhile)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import rnncore
from rnncore import _core, ops

from support.cells import CELL_IDS, CELLS, make_inputs, run_backward, run_forward
from support.tolerances import assert_identical

N_THREADS = 4
ITERATIONS = 3


@pytest.fixture(autouse=True)
def fixed_thread_count():
    """Every call on the kernel_threads fixture's count: the measured choice between a call's threads and one thread
    (tuning.hpp, adapt_threads) would change the weight gradients' summation order between the serial and the
    concurrent runs (their last bits; test_tuning.py checks both counts against each other and the reference)."""
    _core._tuning_set("adapt_threads", 0)
    yield
    _core._tuning_set("adapt_threads", -1)


def job_inputs(seed):
    """Different inputs (and sizes, dtypes, lengths) for every job."""
    rng = np.random.default_rng(seed)
    dtype = (np.float32, np.float64)[seed % 2]
    T, B, I, H = 30 + seed % 5, 12 + seed % 3, 32, 48 + seed % 4
    return {cell.name: make_inputs(rng, cell, T, B, I, H, dtype, lengths=seed % 3 != 0) for cell in CELLS}


def run_job(seed, barrier=None):
    """Forward + backward of every cell on this job's inputs; returns {cell: (outputs, gradients)}."""
    inputs = job_inputs(seed)
    if barrier is not None:
        barrier.wait(timeout=60)  # start every thread's kernels together
    results = {}
    for cell in CELLS:
        x, upstream = inputs[cell.name]
        outputs, ws = run_forward(ops, cell, x)
        results[cell.name] = (outputs, run_backward(ops, cell, ws, upstream))
    return results


def assert_same_results(got, want, where):
    for cell in CELLS:
        (out, grads), (out_want, grads_want) = got[cell.name], want[cell.name]
        for name in cell.output_names:
            np.testing.assert_array_equal(out[name], out_want[name], err_msg=f"{where} {cell.name} {name}")
        for name in cell.gradient_names:
            assert_identical(grads[name], grads_want[name], name, f"{where} {cell.name}")


def test_concurrent_calls_match_serial(kernel_threads):
    seeds = [[thread * 100 + i for i in range(ITERATIONS)] for thread in range(N_THREADS)]
    serial = {seed: run_job(seed) for row in seeds for seed in row}

    barrier = threading.Barrier(N_THREADS)

    def worker(my_seeds):
        return {seed: run_job(seed, barrier) for seed in my_seeds}

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        concurrent = {}
        for part in pool.map(worker, seeds):
            concurrent.update(part)
    assert concurrent.keys() == serial.keys()
    for seed in serial:
        assert_same_results(concurrent[seed], serial[seed], f"job {seed}:")


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_shared_workspace_concurrent_backward(cell, kernel_threads):
    rng = np.random.default_rng(31)
    inputs, upstream = make_inputs(rng, cell, 14, 7, 10, 20, np.float64, lengths=True)
    _, ws = run_forward(ops, cell, inputs)
    # Every thread its own upstream gradient (thread 0 and 1 share one: they must get equal results too).
    per_thread = [upstream] + [upstream] + [
        {k: rng.standard_normal(v.shape) for k, v in upstream.items()} for _ in range(N_THREADS - 2)]
    serial = [run_backward(ops, cell, ws, up) for up in per_thread]

    barrier = threading.Barrier(N_THREADS)

    def worker(k):
        barrier.wait(timeout=60)
        return [run_backward(ops, cell, ws, per_thread[k]) for _ in range(ITERATIONS)]

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        results = list(pool.map(worker, range(N_THREADS)))
    for k, runs in enumerate(results):
        for grads in runs:
            for name in cell.gradient_names:
                assert_identical(grads[name], serial[k][name], name, f"thread {k}")
    for name in cell.gradient_names:
        assert_identical(results[1][0][name], results[0][0][name], name, "threads 0 and 1")


# Sizes that put every per-step product above the per-thread work threshold (a simple RNN has 1/4 of the work), and
# the time-loop split each size takes, forced through tuning.hpp's row_split knob (the default choice depends on the
# core's L2). "B32-rows": each thread takes its own rows through the whole time loop (parallel.hpp, for_row_blocks).
# "B32": every step splits its product (by weight or batch panels) and its pointwise rows. "B1": a one-row product
# split by panels (no row split: fewer rows than a panel). tests/test_tuning.py forces every other path.
SPLIT_SIZES = {
    "B1": (lambda cell: (10, 1, 64, 2048 if cell.gates == 1 else 1024), -1),
    "B32": (lambda cell: (12, 32, 40, {1: 640, 3: 384, 4: 320}[cell.gates]), 0),
    "B32-rows": (lambda cell: (12, 32, 40, {1: 400, 3: 184, 4: 128}[cell.gates]), 1),
}


@pytest.mark.parametrize("sizes, row_split", SPLIT_SIZES.values(), ids=SPLIT_SIZES.keys())
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_split_kernels_match_one_thread_and_the_reference(cell, sizes, row_split):
    """Sizes large enough that every part of a call is split across 2 threads (the input projection by rows; the
    time loop by batch rows, or each step's product by weight panels and its pointwise rows; a batch-1 product by
    panels) give one thread's results and the reference's (bit-for-bit equality across thread counts is
    test_one_and_two_threads_give_equal_bits's)."""
    from support.tolerances import assert_close
    rng = np.random.default_rng(37)
    sizes = sizes(cell)
    inputs, upstream = make_inputs(rng, cell, *sizes, np.float32, lengths=True)
    before = rnncore.get_num_threads()
    results, inference = {}, {}
    _core._tuning_reset()
    _core._tuning_set("row_split", row_split)
    _core._tuning_set("adapt_threads", 0)  # 2 threads means the team (not the measured choice)
    try:
        for threads in (1, 2):
            rnncore.set_num_threads(threads)
            outputs, ws = run_forward(ops, cell, inputs)
            results[threads] = (outputs, run_backward(ops, cell, ws, upstream))
            inference[threads] = run_forward(ops, cell, inputs, training=False)[0]
        if row_split == 1 and _core.has_openmp():
            assert _core._tuning_counts()["row_split"] > 0
    finally:
        rnncore.set_num_threads(before)
        _core._tuning_reset()
    from rnncore import reference
    want, cache = run_forward(reference, cell, inputs)
    dwant = run_backward(reference, cell, cache, upstream)
    (out2, grads2), (out1, grads1) = results[2], results[1]
    for name in cell.output_names:
        assert_close(out2[name], out1[name], "kernel_vs_reference", np.float32, name)
        assert_close(out2[name], want[name], "kernel_vs_reference", np.float32, name)
        assert_close(inference[2][name], inference[1][name], "kernel_vs_reference", np.float32, f"inference {name}")
        assert_close(inference[2][name], want[name], "kernel_vs_reference", np.float32, f"inference {name}")
    for name in cell.gradient_names:
        assert_close(grads2[name], grads1[name], "kernel_vs_reference", np.float32, name)
        assert_close(grads2[name], dwant[name], "kernel_vs_reference", np.float32, name)


# --- the GIL ----------------------------------------------------------------------------------------------------

def _counter_progress(during, repeats=2):
    """Runs ``during()`` `repeats` times while a Python thread counts as fast as it can; returns (counts made
    while ``during`` ran, counts made in the same wall time while this thread slept, seconds ``during`` took)."""
    count = [0]
    stop = [False]

    def spin():
        while not stop[0]:
            count[0] += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        time.sleep(0.02)  # let the spinner get going
        start_count, start = count[0], time.perf_counter()
        for _ in range(repeats):
            during()
        elapsed = time.perf_counter() - start
        kernel_counts = count[0] - start_count
        start_count = count[0]
        time.sleep(elapsed)   # sleeping releases the GIL: what the spinner manages when nothing holds it
        sleep_counts = count[0] - start_count
    finally:
        stop[0] = True
        spinner.join()
    return kernel_counts, sleep_counts, elapsed


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_gil_released_during_lstm_kernel(direction):
    """A kernel that held the GIL would let the spinner run only in the microseconds of Python around the call
    (at most ~one switch interval, 5 ms, per call, against ~0.2 s of kernel per call): well under 10% of what it
    manages while this thread sleeps. With the GIL released it keeps counting at its normal pace. The threshold
    (25%) leaves room for a noisy machine; a failed attempt is retried, which a GIL-holding kernel cannot pass."""
    rng = np.random.default_rng(41)
    T, B, I, H = 200, 64, 128, 256
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = rng.uniform(-0.06, 0.06, (4 * H, I)).astype(np.float32)
    w_hh = rng.uniform(-0.06, 0.06, (4 * H, H)).astype(np.float32)
    before = rnncore.get_num_threads()
    rnncore.set_num_threads(1)  # leave the other core to the spinner
    try:
        if direction == "forward":
            def kernel():
                ops.lstm_forward(x, None, None, w_ih, w_hh, None, None, training=False)
            repeats = 2
        else:
            y, _, _, ws = ops.lstm_forward(x, None, None, w_ih, w_hh, None, None)
            dy = np.ones_like(y)

            def kernel():
                ops.lstm_backward(ws, dy)
            repeats = 1
        reports = []
        for _attempt in range(3):
            kernel_counts, sleep_counts, elapsed = _counter_progress(kernel, repeats)
            reports.append(f"{kernel_counts} counts in {elapsed:.3f} s of kernel vs {sleep_counts} asleep")
            if sleep_counts > 0 and kernel_counts >= 0.25 * sleep_counts:
                break
        else:
            pytest.fail("the spinner thread barely ran during the kernel (is the GIL held?): " + "; ".join(reports))
    finally:
        rnncore.set_num_threads(before)


@pytest.mark.parametrize("batch_split", [1, 0], ids=["by_batch", "by_weight"])
def test_split_stream_step_matches_one_thread(batch_split):
    """A streaming step large enough for 2 threads, with weight panels that do not divide evenly (LSTM 4H = 896:
    19 panels; B = 32: 4 batch panels), split by batch rows or by weight panels (linalg/step_product.hpp,
    split_by_batch; forced through tuning.hpp's batch_split knob, since the default depends on the core's L2; the
    split exists on tile builds, others split gebp's column blocks either way): the same states as on one thread and
    as the cell."""
    from support.tolerances import assert_close
    rng = np.random.default_rng(41)
    B, I, H = 32, 224, 224
    cell = rnncore.LSTMCell(I, H, seed=3).eval()
    xs = [rng.standard_normal((B, I)).astype(np.float32) for _ in range(4)]
    before = rnncore.get_num_threads()
    states = {}
    _core._tuning_reset()
    _core._tuning_set("batch_split", batch_split)
    _core._tuning_set("adapt_threads", 0)  # 2 threads means the team (not the measured choice)
    try:
        for threads in (1, 2):
            rnncore.set_num_threads(threads)
            stream = cell.stream(batch=B)
            states[threads] = [stream.step(x).copy() for x in xs]
    finally:
        rnncore.set_num_threads(before)
        _core._tuning_reset()
    state = None
    for k, x in enumerate(xs):
        state = cell(x, state)
        assert_close(states[2][k], states[1][k], "kernel_vs_reference", np.float32, f"h, step {k}")
        assert_close(states[2][k], state[0], "kernel_vs_reference", np.float32, f"h, step {k}")


# --- equal bits on any thread count -----------------------------------------------------------------------------
# A call's thread count may change from call to call (timed per call), so a seeded training run is reproducible only
# if every kernel gives the same bits on 1 and 2 threads. Sizes that split every whole-call GEMM across 2 threads
# (linalg/gemm.hpp: the input projection, dx and the weight gradients, with an input depth I = 300 deeper than one of
# Eigen's depth blocks), with the parallel knob on so that no call falls back to one thread:
# "B16": every step splits its product and pointwise rows (row_split off), the GEMMs split by bands of 8-row units;
# "B16-rows": each thread takes its own batch rows through the time loop (row_split on);
# "B64", "B64-rows": the same with gate widths (4H = 800, 3H = 600, H = 200) that Eigen's per-step product (AVX2
# and float64 builds, linalg/step_product.hpp) cuts into column blocks that are not whole micro-kernel panels;
# "B1": one-row steps, and GEMMs of 40 rows that split by 48-column strips.
BITS_SIZES = {
    "B16": ((20, 16, 300, 96), 0),
    "B16-rows": ((20, 16, 300, 96), 1),
    "B64": ((8, 64, 100, 200), 0),
    "B64-rows": ((8, 64, 100, 200), 1),
    "B1": ((40, 1, 600, 192), -1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("sizes, row_split", BITS_SIZES.values(), ids=BITS_SIZES.keys())
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_one_and_two_threads_give_equal_bits(cell, sizes, row_split, dtype):
    """Training forward, inference forward and every gradient are bit-identical on 1 and 2 threads, on every build
    (the tile GEMM of AVX-512 builds and Eigen's GEMM elsewhere, and for float64 everywhere)."""
    rng = np.random.default_rng(43)
    inputs, upstream = make_inputs(rng, cell, *sizes, dtype, lengths=True)
    before = rnncore.get_num_threads()
    results = {}
    _core._tuning_reset()
    _core._tuning_set("parallel", 1)
    _core._tuning_set("row_split", row_split)
    try:
        for threads in (1, 2):
            rnncore.set_num_threads(threads)
            outputs, ws = run_forward(ops, cell, inputs)
            inference = run_forward(ops, cell, inputs, training=False)[0]
            results[threads] = (outputs, inference, run_backward(ops, cell, ws, upstream))
    finally:
        rnncore.set_num_threads(before)
        _core._tuning_reset()
    (out2, inf2, grads2), (out1, inf1, grads1) = results[2], results[1]
    for name in cell.output_names:
        assert_identical(out2[name], out1[name], name, "training forward, 2 vs 1 threads:")
        assert_identical(inf2[name], inf1[name], name, "inference forward, 2 vs 1 threads:")
    for name in cell.gradient_names:
        assert_identical(grads2[name], grads1[name], name, "backward, 2 vs 1 threads:")
