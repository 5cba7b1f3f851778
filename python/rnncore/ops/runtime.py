"""The compiled module's process-wide settings and facts: threads, the memory block cache, the build."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .. import _core
from .._validation import flag, non_negative_int, positive_int, thread_count

__all__ = ["set_num_threads", "get_num_threads", "threads", "memory_stats", "empty_cache", "set_cache_limit",
           "build_info", "simd_instruction_sets", "has_openmp", "row_invariant"]


def set_num_threads(n: int) -> None:
    """Threads used inside one kernel call (for its GEMMs). Affects every later call in this process."""
    _core.set_num_threads(positive_int("n", n))


def get_num_threads() -> int:
    """Threads used inside one kernel call."""
    return _core.get_num_threads()


class threads(contextlib.ContextDecorator):
    """Threads for a block of code: rnncore's kernels get ``n`` (``set_num_threads``; None keeps the current count)
    and the BLAS / OpenMP thread pools of NumPy and the other loaded libraries (found by threadpoolctl) get at most
    ``blas`` (default 1). Both are restored on exit, also when the block raises. Nests; works as a decorator::

        with rnncore.threads(2):          # rnncore on 2 threads, NumPy's `@` on 1
            for x, target in batches:
                ...

    Why BLAS gets 1 by default: OpenBLAS's worker threads keep spinning after a multithreaded `@`, on the cores
    rnncore's threads need; the small products of a training loop (a Linear head, attention scores) run no faster
    threaded, and both libraries slow down when they fight (README, "Threads"). Pass ``blas=None`` to leave BLAS
    as it is."""

    def __init__(self, n: int | None = None, *, blas: int | None = 1) -> None:
        self.n = thread_count("n", n)
        self.blas = thread_count("blas", blas)

    def __enter__(self) -> threads:
        previous = _core.get_num_threads()  # before threadpoolctl caps the OpenMP pools too
        limiter = None
        if self.blas is not None:
            import threadpoolctl  # a dependency, imported on first use: `import rnncore` stays fast

            limiter = threadpoolctl.threadpool_limits(limits=self.blas)
        with _open_blocks_lock:
            block = _OpenBlock(self, threading.get_ident(), previous, limiter)
            if self.n is not None:
                _core.set_num_threads(self.n)
            _open_blocks.append(block)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        thread = threading.get_ident()
        with _open_blocks_lock:  # this thread's last open block of this object (a decorator may be re-entered)
            at = max(i for i, b in enumerate(_open_blocks) if b.owner is self and b.thread == thread)
            block = _open_blocks.pop(at)
            if at < len(_open_blocks):
                # Left before a block another Python thread opened after it (rnncore's count is process-wide): that
                # block restores, when it leaves, the count this one would have.
                _open_blocks[at].previous_threads = block.previous_threads
            else:
                _core.set_num_threads(block.previous_threads)
        if block.limiter is not None:  # threadpoolctl sorts out its own pools across Python threads
            block.limiter.restore_original_limits()

    def __repr__(self) -> str:
        return f"threads({self.n!r}, blas={self.blas!r})"


class _OpenBlock:
    """An open ``threads`` block: its object and Python thread, the rnncore thread count to restore on exit, and its
    threadpoolctl limiter."""

    def __init__(self, owner: threads, thread: int, previous_threads: int, limiter: Any) -> None:
        self.owner, self.thread = owner, thread
        self.previous_threads = previous_threads
        self.limiter = limiter


# Every open ``threads`` block of the process, in the order they were entered (Python threads interleave).
_open_blocks: list[_OpenBlock] = []
_open_blocks_lock = threading.Lock()


def memory_stats() -> dict[str, int]:
    """The block cache that large kernel buffers and outputs come from (freed blocks are kept for reuse, so a
    training loop does not fault in fresh pages every step): ``idle_bytes``, ``idle_blocks``, ``limit_bytes``."""
    return dict(_core.memory_cache_stats())


def empty_cache() -> int:
    """Returns the cache's idle blocks to the system; the number of bytes released."""
    return _core.empty_memory_cache()


def set_cache_limit(nbytes: int) -> None:
    """The most idle memory the cache keeps (default 2 GiB); 0 turns caching off."""
    _core.set_memory_cache_limit(non_negative_int("nbytes", nbytes))


def build_info() -> str:
    """Compiler, Eigen version and flags of the compiled kernels."""
    return _core.build_info()


def simd_instruction_sets() -> str:
    """The SIMD instruction sets the kernels were compiled for."""
    return _core.simd_instruction_sets()


def has_openmp() -> bool:
    """Whether the kernels were built with OpenMP (threads inside one call)."""
    return bool(_core.has_openmp())


@contextlib.contextmanager
def row_invariant(on: bool = True) -> Iterator[None]:
    """Row-invariant kernels for a block of code (the calling Python thread only; restored on exit, nests, works as a
    decorator): every matrix product inside rnncore's kernels computes each output element with one fixed sequence
    of operations that depends only on that row's inputs and the weights, never on how many rows the call has, the
    rows beside it or the thread count, so a row's results are the same bits alone or inside any batch.
    ``rnncore.decode`` decodes under it. The results equal the default paths' to rounding. Batched products cost
    about what they do by default; one-row products about 2x (a decode step of one source ~1.6x: bench/README.md).
    ``on=False`` turns the mode off for the block."""
    previous = _core._row_invariant_set(flag("on", on))
    try:
        yield
    finally:
        _core._row_invariant_set(previous)
