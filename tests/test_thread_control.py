"""rnncore.threads: rnncore's thread count and the BLAS / OpenMP pools' limits for a block (or a decorated
function), restored on exit and on an exception, nesting; bad counts rejected with the argument named."""

import numpy as np
import pytest
import threadpoolctl

import rnncore as rc


def blas_limits():
    """{library path: threads} of the BLAS pools threadpoolctl sees in this process (NumPy's own at least)."""
    return {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}


@pytest.fixture
def two_of_everything():
    """rnncore and every BLAS pool at 2 threads for the test (the machine may have 1 core), then as they were."""
    np.ones((2, 2)) @ np.ones((2, 2))  # NumPy's BLAS is loaded
    saved = rc.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        rc.set_num_threads(2)
        try:
            yield
        finally:
            rc.set_num_threads(saved)


def test_block_sets_rnncore_and_caps_blas(two_of_everything):
    assert blas_limits(), "threadpoolctl sees NumPy's BLAS"
    before = blas_limits()
    assert set(before.values()) == {2}
    with rc.threads(1) as block:
        assert rc.get_num_threads() == 1
        assert set(blas_limits().values()) == {1}
        assert isinstance(block, rc.threads)
    assert rc.get_num_threads() == 2
    assert blas_limits() == before


def test_none_keeps_rnncore_threads_and_caps_blas(two_of_everything):
    with rc.threads():
        assert rc.get_num_threads() == 2
        assert set(blas_limits().values()) == {1}
    with rc.threads(None, blas=None):  # leaves both alone
        assert rc.get_num_threads() == 2
        assert set(blas_limits().values()) == {2}
    with rc.threads(1, blas=2):
        assert rc.get_num_threads() == 1
        assert set(blas_limits().values()) == {2}
    assert rc.get_num_threads() == 2


def test_restores_on_exception(two_of_everything):
    before = blas_limits()
    with pytest.raises(KeyError, match="inside"):
        with rc.threads(1):
            raise KeyError("inside")
    assert rc.get_num_threads() == 2
    assert blas_limits() == before


def test_nests(two_of_everything):
    with rc.threads(1):
        with rc.threads(3, blas=2):
            assert rc.get_num_threads() == 3
            assert set(blas_limits().values()) == {2}
        assert rc.get_num_threads() == 1
        assert set(blas_limits().values()) == {1}
    assert rc.get_num_threads() == 2
    assert set(blas_limits().values()) == {2}


def test_one_object_reentered(two_of_everything):
    """One instance used in nested blocks (a recursive decorated function) restores each level's state."""
    block = rc.threads(1)
    with block:
        rc.set_num_threads(3)  # changed inside the outer block
        with block:
            assert rc.get_num_threads() == 1
        assert rc.get_num_threads() == 3
    assert rc.get_num_threads() == 2


def test_decorator(two_of_everything):
    @rc.threads(1)
    def inside():
        return rc.get_num_threads(), set(blas_limits().values())

    assert inside() == (1, {1})
    assert rc.get_num_threads() == 2
    assert set(blas_limits().values()) == {2}


def test_kernels_run_inside(two_of_everything):
    lstm = rc.LSTM(4, 8, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    want = lstm(x)[0]
    with rc.threads(1):
        np.testing.assert_array_equal(lstm(x)[0], want)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n": 0}, ValueError, r"n must be an int >= 1 or None, got 0"),
    ({"n": -2}, ValueError, r"n must be an int >= 1 or None, got -2"),
    ({"n": 1.5}, TypeError, r"n must be an int >= 1 or None, got float"),
    ({"n": True}, TypeError, r"n must be an int >= 1 or None, got bool"),
    ({"n": "2"}, TypeError, r"n must be an int >= 1 or None, got str"),
    ({"n": 1, "blas": 0}, ValueError, r"blas must be an int >= 1 or None, got 0"),
    ({"n": 1, "blas": 2.0}, TypeError, r"blas must be an int >= 1 or None, got float"),
])
def test_bad_counts(kwargs, error, message):
    saved = rc.get_num_threads()
    with pytest.raises(error, match=message):
        rc.threads(**kwargs)
    assert rc.get_num_threads() == saved


def test_numpy_integer_accepted(two_of_everything):
    with rc.threads(np.int64(1), blas=np.int32(1)):
        assert rc.get_num_threads() == 1


def test_repr():
    assert repr(rc.threads(2)) == "threads(2, blas=1)"
    assert repr(rc.threads(blas=None)) == "threads(None, blas=None)"


@pytest.mark.parametrize("shared", [False, True], ids=["two_blocks", "one_decorator_object"])
def test_blocks_of_two_python_threads_exiting_out_of_order_restore_everything(two_of_everything, shared):
    """Thread a enters a block, thread b enters one, a leaves first, then b. rnncore's thread count is process-wide,
    so a block's exit used to restore what it saw on entry: a's exit undid b's block while b still ran, and b's exit
    then restored a's setting, leaving rnncore at 1 thread for good. Now a block leaving out of order hands the
    count it must restore to the block above it: b keeps its setting until it leaves, then all is as before. (The
    BLAS limits are threadpoolctl's: only one Python thread at a time controls OpenBLAS's process-wide pool.)"""
    import threading

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}
    block_a = rc.threads(1)
    block_b = block_a if shared else rc.threads(1, blas=1)

    def thread_a():
        with block_a:
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def thread_b():
        a_in.wait(10)
        with block_b:
            b_in.set()
            a_out.wait(10)
            seen["b after a left"] = rc.get_num_threads()

    workers = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert seen["b after a left"] == 1
    assert rc.get_num_threads() == 2
    assert set(blas_limits().values()) == {2}


def test_default_count_not_taken_from_a_capped_openmp_pool():
    """rnncore's default thread count (all of OpenMP's) was read on first use, from the calling thread's OpenMP
    setting: a process whose first rnncore call ran inside threadpoolctl.threadpool_limits(1) (or rnncore.threads
    reading it after the cap) kept 1 thread for good. It is read when rnncore is imported. Fresh processes."""
    import subprocess
    import sys

    default = subprocess.run([sys.executable, "-c", "import rnncore; print(rnncore.get_num_threads())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    capped_first = subprocess.run([sys.executable, "-c", (
        "import numpy, threadpoolctl, rnncore\n"
        "with threadpoolctl.threadpool_limits(limits=1):\n"
        "    rnncore.get_num_threads()\n"
        "print(rnncore.get_num_threads())\n")], capture_output=True, text=True, check=True).stdout.strip()
    assert capped_first == default
