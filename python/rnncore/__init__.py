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

from . import datasets, decode, interop, losses, ops, optim, reference, utils as utils  # noqa: E402
from .attention import AdditiveAttention, LuongAttention  # noqa: E402
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: E402
from .module import Module, load, save  # noqa: E402
from .nn import Embedding, Linear  # noqa: E402
from .ops.runtime import (  # noqa: E402
    empty_cache,
    get_num_threads,
    memory_stats,
    set_cache_limit,
    set_num_threads,
    threads,
)
from .seq2seq import AttentionDecoder, Seq2Seq  # noqa: E402
from .sequential import LastHidden, Sequential  # noqa: E402
from .serialization import load_training_state  # noqa: E402
from .utils import clip_grad_norm, clip_grad_value  # noqa: E402

__all__ = [
    "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "Linear", "Embedding", "Module", "save", "load",
    "ops", "reference", "optim", "losses", "interop", "clip_grad_norm", "clip_grad_value",
    "set_num_threads", "get_num_threads", "memory_stats", "empty_cache", "set_cache_limit", "__version__",
    "Sequential", "LastHidden",
    "load_training_state",
    "threads",
    "decode",
    "AdditiveAttention", "LuongAttention",
    "AttentionDecoder", "Seq2Seq", "datasets",
]
