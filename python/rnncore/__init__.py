"""rnncore: fused LSTM / GRU / simple-RNN kernels for training and running recurrent networks on a CPU.

NumPy in, NumPy out. ``rnncore.ops`` runs the C++ kernels; ``rnncore.reference`` is the same API in plain NumPy
(the executable spec). ``python -m rnncore`` prints the build and checks every kernel against the reference.
"""

__version__ = "0.1.0"


def _check_cpu() -> None:
    """Refuse to load kernels compiled for instructions this CPU lacks (a wheel built elsewhere), with an
    ImportError that says how to rebuild, instead of letting the process die on an illegal instruction."""
    try:
        from ._build_config import REQUIRED_CPU_FLAGS
    except ImportError:  # a build without the file: nothing to check
        return
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:  # not Linux: nothing to read
        return
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flags is not None and flag not in flags]
    if missing:
        raise ImportError(
            f"rnncore was compiled for CPU instructions this processor lacks ({', '.join(missing)}); "
            "reinstall from source on this machine: RNNCORE_SIMD=auto pip install --force-reinstall --no-binary "
            "rnncore rnncore (or RNNCORE_SIMD=baseline for a portable build)")


_check_cpu()

from . import _core, interop, losses, ops, optim, reference, utils  # noqa: E402
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: E402
from .module import Module, load, save  # noqa: E402
from .nn import Embedding, Linear  # noqa: E402
from .utils import clip_grad_norm, clip_grad_value  # noqa: E402
from ._validation import positive_int as _positive_int  # noqa: E402


def set_num_threads(n: int) -> None:
    """Threads used inside one kernel call (for its GEMMs). Affects every later call in this process."""
    _core.set_num_threads(_positive_int("n", n))


def get_num_threads() -> int:
    """Threads used inside one kernel call."""
    return _core.get_num_threads()


def memory_stats() -> dict:
    """The block cache that large kernel buffers and outputs come from (freed blocks are kept for reuse, so a
    training loop does not fault in fresh pages every step): ``idle_bytes``, ``idle_blocks``, ``limit_bytes``."""
    return dict(_core.memory_cache_stats())


def empty_cache() -> int:
    """Returns the cache's idle blocks to the system; the number of bytes released."""
    return _core.empty_memory_cache()


def set_cache_limit(nbytes: int) -> None:
    """The most idle memory the cache keeps (default 2 GiB); 0 turns caching off."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"nbytes must be an int >= 0, got {nbytes!r}")
    _core.set_memory_cache_limit(nbytes)


__all__ = [
    "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "Linear", "Embedding", "Module", "save", "load",
    "ops", "reference", "optim", "losses", "interop", "clip_grad_norm", "clip_grad_value",
    "set_num_threads", "get_num_threads", "memory_stats", "empty_cache", "set_cache_limit", "__version__",
]
