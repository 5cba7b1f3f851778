"""The Python cell table: one row (a ``CellKind``) per kind of recurrent cell, holding everything the package knows
about it — gates, states, constructor options, the ops and their reference twins, the Keras layout, the init.

The layers, cells and streams (``rnncore.layers``), the Keras exchange (``rnncore.interop``), ``python -m rnncore``,
the tests and the benchmarks read the row instead of comparing names: a layer holds its row (``LSTM.kind``) and calls
``kind.forward``. A new cell (say a layer-norm LSTM) is a new row here plus its ops and reference functions; the
layer class is one line (``class LNLSTM(_Recurrent): kind = LN_LSTM``).

``VARIANTS`` fixes each option value worth running on its own (GRU reset_after True/False, RNN tanh/relu): what the
self-check, the tests and the benchmarks iterate over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from . import ops, reference
from ._validation import cell_options, nonlinearity_name, reset_after_flag

__all__ = ["Option", "KerasLayout", "CellKind", "Variant", "LSTM", "GRU", "RNN", "KINDS", "VARIANTS", "variant"]


@dataclass(frozen=True)
class Option:
    """A constructor option of a cell kind (and keyword of its ops): name, default, and its check (returns the value
    normalized, raises otherwise)."""
    name: str
    default: Any
    check: Callable[[Any], Any]


@dataclass(frozen=True)
class KerasLayout:
    """How Keras 3 stores this cell's weights (rnncore.interop): its layer name, the Keras gate block each rnncore
    gate block comes from (``gate_order[j]`` = Keras block of rnncore gate j), and the option that, when True, makes
    Keras keep two bias rows ``[2, G*H]`` (input, recurrent) instead of one ``[G*H]``."""
    layer: str
    gate_order: tuple[int, ...]
    two_bias_rows_option: str | None = None


@dataclass(frozen=True)
class CellKind:
    """One kind of recurrent cell.

    name:  the ops' prefix (``ops.<name>_forward``) and the workspace's ``cell``.
    title: as in class names and messages ("LSTM").
    gates: the gate blocks of ``w_ih [G*H, I]`` in order; G = len(gates).
    states: the state names (h, or h and c); forward takes one initial state per name, backward returns one gradient.
    options: constructor options, passed to the ops as keywords.
    forward, backward, stepper: the ``rnncore.ops`` functions; reference_*: their ``rnncore.reference`` twins.
    keras: the Keras weight layout; keras_unit_bias: gates whose bias Keras's init sets to 1 (the LSTM's forget gate).
    torch: the ``torch.nn`` class with the same equations and layouts.
    """
    name: str
    title: str
    gates: tuple[str, ...]
    states: tuple[str, ...]
    options: tuple[Option, ...]
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    stepper: Callable[..., Any]
    reference_forward: Callable[..., Any]
    reference_backward: Callable[..., Any]
    reference_stepper: Callable[..., Any]
    keras: KerasLayout
    keras_unit_bias: tuple[str, ...]
    torch: str

    @property
    def n_gates(self) -> int:
        return len(self.gates)

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def with_article(self) -> str:
        """"an LSTM", "a GRU": the title in a sentence (letter names: L, R, S... sound a vowel)."""
        return ("an " if self.title[0] in "AEFHILMNORSX" else "a ") + self.title

    def pack_states(self, states: Sequence[Any]) -> Any:
        """What layers return for a state: the one array (h), or a tuple (h, c) when the kind has more."""
        return tuple(states) if len(self.states) > 1 else states[0]

    def options_repr(self, options: dict[str, Any]) -> str:
        """``", reset_after=False"``: the options that differ from their defaults, as a repr's keyword arguments."""
        return "".join(f", {o.name}={options[o.name]!r}" for o in self.options if options[o.name] != o.default)

    def check_options(self, given: dict[str, Any], owner: str) -> dict[str, Any]:
        """Every option of this kind, validated, the defaults filled in; an unknown keyword raises TypeError as
        Python would for ``owner`` (e.g. "GRU.__init__")."""
        return cell_options(owner, given, {o.name: (o.default, o.check) for o in self.options})


LSTM = CellKind(
    name="lstm", title="LSTM", gates=("i", "f", "g", "o"), states=("h", "c"), options=(),
    forward=ops.lstm_forward, backward=ops.lstm_backward, stepper=ops.lstm_stepper,
    reference_forward=reference.lstm_forward, reference_backward=reference.lstm_backward,
    reference_stepper=reference.lstm_stepper,
    keras=KerasLayout("LSTM", (0, 1, 2, 3)), keras_unit_bias=("f",), torch="LSTM")

GRU = CellKind(
    name="gru", title="GRU", gates=("r", "z", "n"), states=("h",),
    options=(Option("reset_after", True, reset_after_flag),),
    forward=ops.gru_forward, backward=ops.gru_backward, stepper=ops.gru_stepper,
    reference_forward=reference.gru_forward, reference_backward=reference.gru_backward,
    reference_stepper=reference.gru_stepper,
    keras=KerasLayout("GRU", (1, 0, 2), two_bias_rows_option="reset_after"), keras_unit_bias=(), torch="GRU")

RNN = CellKind(
    name="rnn", title="RNN", gates=("h",),  # one block: h's pre-activation
    states=("h",),
    options=(Option("nonlinearity", "tanh", nonlinearity_name),),
    forward=ops.rnn_forward, backward=ops.rnn_backward, stepper=ops.rnn_stepper,
    reference_forward=reference.rnn_forward, reference_backward=reference.rnn_backward,
    reference_stepper=reference.rnn_stepper,
    keras=KerasLayout("SimpleRNN", (0,)), keras_unit_bias=(), torch="RNN")

KINDS: dict[str, CellKind] = {k.name: k for k in (LSTM, GRU, RNN)}


@dataclass(frozen=True)
class Variant:
    """A cell kind with its options fixed: ``name`` (an id), ``label`` (what ``python -m rnncore`` prints),
    ``in_torch`` (whether torch.nn has it)."""
    name: str
    label: str
    kind: CellKind
    option_values: tuple[tuple[str, Any], ...] = ()
    in_torch: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.option_values)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.kind.forward(*args, **kwargs, **self.options)

    def reference_forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.kind.reference_forward(*args, **kwargs, **self.options)

    def stepper(self, *args: Any, **kwargs: Any) -> Any:
        return self.kind.stepper(*args, **kwargs, **self.options)

    def reference_stepper(self, *args: Any, **kwargs: Any) -> Any:
        return self.kind.reference_stepper(*args, **kwargs, **self.options)


VARIANTS: tuple[Variant, ...] = (
    Variant("lstm", "lstm", LSTM),
    Variant("gru_reset_after", "gru reset_after=True", GRU, (("reset_after", True),)),
    Variant("gru_reset_before", "gru reset_after=False", GRU, (("reset_after", False),), in_torch=False),
    Variant("rnn_tanh", "rnn tanh", RNN, (("nonlinearity", "tanh"),)),
    Variant("rnn_relu", "rnn relu", RNN, (("nonlinearity", "relu"),)),
)


def variant(name: str) -> Variant:
    """The row of ``VARIANTS`` called ``name``."""
    return next(v for v in VARIANTS if v.name == name)
