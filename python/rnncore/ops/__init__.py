"""The compiled kernels: every call into ``rnncore._core`` goes through this package.

Every function validates its arguments (``rnncore._validation``) and then runs one C++ kernel with the GIL released.
``rnncore.reference`` has the same functions in plain NumPy, family by family: the executable spec these are tested
against (tests/test_ops_twins.py and the kernel tests).

Families: ``rnn`` (the LSTM/GRU/RNN sequence kernels and the streaming steppers), ``attention`` (the masked softmax,
additive and Luong attention), ``decoder`` (the fused attention decoder), ``decoding`` (log-softmax, top-k and
cross-entropy rows), ``nn`` (the dense layer's products, the embedding's backward), ``runtime`` (threads, the memory
cache, build facts).
Every public name is also here: ``rnncore.ops.lstm_forward``.
"""

from __future__ import annotations

from .attention import (
    AdditiveAttentionGradients,
    LuongAttentionGradients,
    additive_attention_backward,
    additive_attention_forward,
    additive_attention_keys,
    additive_attention_keys_backward,
    additive_attention_source,
    attention_context,
    attention_context_backward,
    luong_attention_backward,
    luong_attention_forward,
    masked_softmax,
    masked_softmax_backward,
    normalized_score_vector,
    normalized_score_vector_backward,
)
from .decoder import AttentionDecoderGradients, DecoderSession, attention_decoder_backward, attention_decoder_forward
from .decoding import log_softmax, softmax_cross_entropy, top_k
from .nn import embedding_backward, linear_backward, linear_forward
from .optim import adam_update
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
    row_invariant,
    set_cache_limit,
    set_num_threads,
    simd_instruction_sets,
)

__all__ = [
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
    "lstm_stepper", "gru_stepper", "rnn_stepper",
    "masked_softmax", "masked_softmax_backward",
    "attention_context", "attention_context_backward",
    "top_k", "log_softmax", "softmax_cross_entropy",
    "additive_attention_keys", "additive_attention_keys_backward", "additive_attention_source",
    "additive_attention_forward",
    "additive_attention_backward", "AdditiveAttentionGradients", "luong_attention_forward", "luong_attention_backward",
    "LuongAttentionGradients", "normalized_score_vector", "normalized_score_vector_backward",
    "linear_forward", "linear_backward", "embedding_backward",
    "set_num_threads", "get_num_threads", "memory_stats", "empty_cache", "set_cache_limit", "build_info",
    "simd_instruction_sets", "has_openmp",
    "attention_decoder_forward", "attention_decoder_backward", "AttentionDecoderGradients", "DecoderSession",
    "adam_update",
    "row_invariant",
]
