"""rnncore: fused LSTM / GRU / simple-RNN kernels for training and running recurrent networks on a CPU.

NumPy in, NumPy out. ``rnncore.ops`` runs the C++ kernels; ``rnncore.reference`` is the same API in plain NumPy
(the executable spec). ``python -m rnncore`` prints the build and checks every kernel against the reference.
"""

__version__ = "0.1.0"

from . import _core, ops, reference  # noqa: E402
from ._validation import positive_int as _positive_int  # noqa: E402


def set_num_threads(n: int) -> None:
    """Threads used inside one kernel call (for its GEMMs). Affects every later call in this process."""
    _core.set_num_threads(_positive_int("n", n))


def get_num_threads() -> int:
    """Threads used inside one kernel call."""
    return _core.get_num_threads()


__all__ = ["ops", "reference", "set_num_threads", "get_num_threads", "__version__"]
