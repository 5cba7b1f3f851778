"""Recurrent layers with PyTorch's constructors, names and layouts: ``LSTM``, ``GRU``, ``RNN`` (multi-layer,
bidirectional; ``recurrent``), the one-step cells ``LSTMCell``, ``GRUCell``, ``RNNCell`` (``cells``) and their
streaming ``Stream`` (``streams``). Each class holds its row of the cell table (``LSTM.kind``).
"""

# _Cell and _Recurrent: the bases, for isinstance checks (rnncore.interop).
from .cells import GRUCell, LSTMCell, RNNCell, _Cell as _Cell
from .recurrent import GRU, LSTM, RNN, _Recurrent as _Recurrent
from .streams import Stream

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "Stream"]

# rnncore.save records a class as "<module>:<name>": the public classes name this package, so saved files keep
# naming "rnncore.layers:LSTM" whichever file the class lives in.
for _cls in (LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell, Stream):
    _cls.__module__ = __name__
del _cls
