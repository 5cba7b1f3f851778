"""The compiled module's process-wide settings and facts: threads, the memory block cache, the build."""

from __future__ import annotations

from .. import _core
from .._validation import non_negative_int, positive_int

__all__ = ["set_num_threads", "get_num_threads", "memory_stats", "empty_cache", "set_cache_limit", "build_info",
           "simd_instruction_sets", "has_openmp"]


def set_num_threads(n: int) -> None:
    """Threads used inside one kernel call (for its GEMMs). Affects every later call in this process."""
    _core.set_num_threads(positive_int("n", n))


def get_num_threads() -> int:
    """Threads used inside one kernel call."""
    return _core.get_num_threads()


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
