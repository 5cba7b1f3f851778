"""The compiled kernels: every call into ``rnncore._core`` goes through this package.

Every function validates its arguments (``rnncore._validation``) and then runs one C++ kernel with the GIL released.
``rnncore.reference`` has the same functions in plain NumPy, family by family: the executable spec these are tested
against (tests/test_ops_twins.py and the kernel tests).

Families: ``rnn`` (the LSTM/GRU/RNN sequence kernels and the streaming steppers), ``attention`` (the masked softmax),
``nn`` (the embedding's backward), ``runtime`` (threads, the memory cache, build facts). Every public name is also
here: ``rnncore.ops.lstm_forward``.
"""

from __future__ import annotations

import sys
import types

from .. import _core as _core  # the compiled module every family calls (see _Ops)
from . import attention, nn, rnn, runtime
from .attention import masked_softmax, masked_softmax_backward
from .nn import embedding_backward
from .rnn import (
    gru_backward,
    gru_forward,
    gru_stepper,
    lstm_backward,
    lstm_forward,
    lstm_stepper,
    rnn_backward,
    rnn_forward,
    rnn_stepper,
)
from .runtime import (
    build_info,
    empty_cache,
    get_num_threads,
    has_openmp,
    memory_stats,
    set_cache_limit,
    set_num_threads,
    simd_instruction_sets,
)

__all__ = [
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
    "lstm_stepper", "gru_stepper", "rnn_stepper",
    "masked_softmax", "masked_softmax_backward",
    "embedding_backward",
    "set_num_threads", "get_num_threads", "memory_stats", "empty_cache", "set_cache_limit", "build_info",
    "simd_instruction_sets", "has_openmp",
]

_FAMILIES: tuple[types.ModuleType, ...] = (rnn, attention, nn, runtime)


class _Ops(types.ModuleType):
    """``rnncore.ops._core`` is the compiled module every family calls: replacing it here (as tests do, with a
    stand-in that forbids kernel calls) replaces it in every family module too."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_core":
            for family in _FAMILIES:
                setattr(family, "_core", value)  # noqa: B010 (a ModuleType has no _core to assign, to mypy)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Ops
