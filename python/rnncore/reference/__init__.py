"""Pure-NumPy reference implementation of every rnncore op: the executable spec.

The C++ kernels in ``rnncore.ops`` have the same signatures and must agree with these functions (see the tolerance
table in ``tests/support/tolerances.py``). It is written to be read, not to be fast: one plain Python loop over
time, one small helper per idea, every arithmetic operation in float64 (inputs are cast up on entry, results are
cast back to the input's dtype on exit). Each family module imports nothing but NumPy and
``_common`` (the small helpers), so a family can also be copied and used alone — except ``decoder``, which joins
``rnn``'s cell steps and ``attention``'s scores rather than copying their math.

Families, as in ``rnncore.ops``: ``rnn`` (LSTM/GRU/RNN over a sequence, their backward, the streaming steppers),
``attention`` (the masked softmax, additive and Luong attention, their backward),
``decoder`` (the attention decoder: a cell and attention over the decoder steps, and its backward),
``decoding`` (log-softmax, top-k and cross-entropy rows), ``nn`` (the dense layer's products, the embedding's backward).
Every public name is also here: ``rnncore.reference.lstm_forward``.

In every family, backward passes are written from the *outputs* of the activations, with the identities
``σ'(v) = s (1 - s)`` for ``s = σ(v)``, ``tanh'(v) = 1 - y²`` for ``y = tanh(v)``, ``relu'(v) = [y > 0]``.
A bias given as ``None`` means "no bias"; its gradient is then returned as ``None``.
"""

from .attention import (
    additive_attention_backward,
    additive_attention_forward,
    additive_attention_keys,
    additive_attention_keys_backward,
    attention_context,
    attention_context_backward,
    luong_attention_backward,
    luong_attention_forward,
    masked_softmax,
    masked_softmax_backward,
)
from .decoder import attention_decoder_backward, attention_decoder_forward, decoder_session_step
from .decoding import log_softmax, softmax_cross_entropy, top_k
from .nn import embedding_backward, linear_backward, linear_forward
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

__all__ = [
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
    "lstm_stepper", "gru_stepper", "rnn_stepper",
    "masked_softmax", "masked_softmax_backward",
    "attention_context", "attention_context_backward",
    "additive_attention_keys", "additive_attention_keys_backward", "additive_attention_forward",
    "additive_attention_backward", "luong_attention_forward", "luong_attention_backward",
    "top_k", "log_softmax", "softmax_cross_entropy",
    "linear_forward", "linear_backward", "embedding_backward",
    "attention_decoder_forward", "attention_decoder_backward", "decoder_session_step",
]
