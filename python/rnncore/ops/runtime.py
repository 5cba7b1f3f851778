"""The compiled module's process-wide settings and facts: threads, the memory block cache, the build."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from .. import _core
from .._validation import non_negative_int, positive_int, thread_count

__all__ = ["set_num_threads", "get_num_threads", "threads", "memory_stats", "empty_cache", "set_cache_limit",
           "build_info", "simd_instruction_sets", "has_openmp"]


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
        self._saved: list[tuple[int, Any]] = []  # one (rnncore threads, threadpoolctl limiter) per open block

    def __enter__(self) -> threads:
        previous = _core.get_num_threads()
        limiter = None
        if self.blas is not None:
            import threadpoolctl  # a dependency, imported on first use: `import rnncore` stays fast

            limiter = threadpoolctl.threadpool_limits(limits=self.blas)
        if self.n is not None:
            _core.set_num_threads(self.n)
        self._saved.append((previous, limiter))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        previous, limiter = self._saved.pop()
        _core.set_num_threads(previous)
        if limiter is not None:
            limiter.restore_original_limits()

    def __repr__(self) -> str:
        return f"threads({self.n!r}, blas={self.blas!r})"


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
