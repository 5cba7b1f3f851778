"""Attention decoders and encoder-decoder models: ``rnncore.AttentionDecoder`` and ``rnncore.Seq2Seq``.

``AttentionDecoder`` owns a recurrent cell, an attention score and (Luong's "after" position) the attentional
layer, and runs all decoder steps in one call of the fused op ``rnncore.ops.attention_decoder_forward`` (one call
backward): the equations are docs/design.md §2 "Attention decoder". ``Seq2Seq`` composes Embedding → encoder
(``rnncore.LSTM``/``GRU``/``RNN``, stacked, bidirectional, with source lengths) → bridge of the final encoder
states → ``AttentionDecoder`` → ``Linear`` over every step, trains with masked cross-entropy (teacher forcing, or
scheduled sampling), and implements ``rnncore.decode``'s step protocol (greedy, sampling, beam search).

Both follow the module protocol (``rnncore.Module``): PyTorch-style parameter names, nested names for the
sub-modules (``encoder.weight_ih_l0``, ``decoder.query_weight``), a tape of training-mode calls taken back last
first by ``backward``, ``rnncore.save``/``rnncore.load``. Arrays are batch-first.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _cell_table
from ._validation import (
    MODULE_DTYPE,
    choice,
    decoder_attention_options,
    decoder_steps,
    flag,
    float_array,
    forcing_ratio,
    index_array,
    lengths_array,
    non_negative_int,
    positive_int,
    seed_value,
    seq2seq_decoder_options,
    seq2seq_sources,
    seq2seq_sources_for_decoding,
    seq2seq_special_tokens,
    seq2seq_tokens,
    token_index,
)
from .attention import _zero_padding
from .layers import GRU, LSTM, RNN
from .layers.recurrent import init_weights
from .losses import softmax_cross_entropy
from .module import Module, Parameterized
from .nn import Embedding, Linear
from .ops.attention import normalized_score_vector, normalized_score_vector_backward
from .ops.decoder import DecoderSession, attention_decoder_backward, attention_decoder_forward
from .ops.nn import linear_backward, linear_backward_checked, linear_forward

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["AttentionDecoder", "PreparedSource", "Seq2Seq"]

_ATTENTIONS = ("additive", "dot", "general", "concat")
_CELLS = {"lstm": _cell_table.LSTM, "gru": _cell_table.GRU, "rnn": _cell_table.RNN}
_BRIDGES = ("linear", "zeros")


class PreparedSource(NamedTuple):
    """The once-per-source half of attention (``AttentionDecoder.prepare``), batch-first:
    ``keys [B, Tx, Dk]`` as given (kept for the projection's backward), ``projected [B, Tx, K]`` what the fused op
    attends with (K' = keys W_k^T for "additive"/"concat", keys W^T for "general", the keys for "dot"),
    ``values [B, Tx, Dv]`` and ``lengths [B]`` (int64, 0..Tx; None = all Tx)."""
    keys: np.ndarray
    projected: np.ndarray
    values: np.ndarray
    lengths: np.ndarray | None


class AttentionDecoder(Parameterized):
    """A recurrent decoder with attention over a prepared source, all Ty steps in one fused call.

    ``cell`` "lstm" / "gru" (``reset_after``) / "rnn" (``nonlinearity``) with PyTorch's parameters ``weight_ih
    [G*H, E + Dc]``, ``weight_hh [G*H, H]``, ``bias_ih``, ``bias_hh``; the cell reads ``[x_t ; fed]`` with fed = the
    context (``position="before"``, Bahdanau), õ_{t-1} (``"after"`` with ``input_feeding``, Luong) or nothing.
    ``attention``:

    - "additive" (Bahdanau; the course's model with ``energy_activation="relu"`` and ``score_bias=True``):
      ``query_weight [A, H]``, ``key_weight [A, Dk]``, ``bias [A]`` (with ``bias``), ``score_weight [A]``,
      ``score_bias []`` (0-d), ``gain []`` with ``normalize`` (TF-Addons: w̃ = g · w / ‖w‖, g starts at √(1/A));
      the names and meanings of ``rnncore.AdditiveAttention``.
    - "dot" (Luong; needs Dk = H): no parameters. "general": ``weight [H, Dk]`` (e = h W k^T). "concat":
      ``weight [A, H + Dk]`` and ``score_weight [A]`` (e = v · tanh(W [h; k])).

    ``position`` "before" (query h_{t-1}, output h_t; the default for "additive") or "after" (query h_t, output
    õ_t = tanh(W_c [ctx_t ; h_t] + b_c) with ``output_weight [O, Dv + H]``, ``output_bias [O]``; the default for
    the Luong scores). Inits are PyTorch's: the cell U(±1/√H), every other matrix and bias U(±1/√fan_in) as
    ``torch.nn.Linear``.

    Use: ``dec.prepare(keys [B, Tx, Dk], values=None (= keys), lengths=None)`` once per source batch, then
    ``outputs [B, Ty, O], alpha [B, Ty, Tx], state = dec(x [B, Ty, E] or None, state=None, steps=None)`` and, for
    a training-mode call, ``dx, dstate, dkeys, dvalues = dec.backward(doutputs, dalpha=None, dstate=None)``.
    """

    # the prepared source, and whether its arrays are the decoder's own (private copies or a composite's fresh
    # intermediates): set every call, never a sub-module
    _data_attributes = frozenset({"_source", "_source_owned"})
    _source_owned = False

    def __init__(self, input_size: int, hidden_size: int, key_size: int, value_size: int | None = None,
                 cell: str = "lstm", attention: str = "additive", attention_units: int | None = None,
                 energy_activation: str | None = None, score_bias: bool = False, normalize: bool = False,
                 position: str | None = None, input_feeding: bool = False, output_size: int | None = None,
                 bias: bool = True, reset_after: bool = True, nonlinearity: str = "tanh",
                 dtype: npt.DTypeLike = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype, seed)
        self.input_size = non_negative_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.key_size = positive_int("key_size", key_size)
        self.value_size = self.key_size if value_size is None else positive_int("value_size", value_size)
        self.cell = choice("cell", cell, tuple(_CELLS))
        self.kind = _CELLS[self.cell]
        given: dict[str, dict[str, Any]] = {"gru": {"reset_after": reset_after}, "rnn": {"nonlinearity": nonlinearity}}
        self._cell_options = self.kind.check_options(given.get(self.cell, {}), "AttentionDecoder.__init__")
        self.attention = choice("attention", attention, _ATTENTIONS)
        self.has_bias = flag("bias", bias)
        opts = decoder_attention_options(
            self.attention, self.input_size, self.hidden_size, self.key_size, attention_units, energy_activation,
            flag("score_bias", score_bias), flag("normalize", normalize), position,
            flag("input_feeding", input_feeding), output_size)
        self.attention_units: int | None = opts["attention_units"]
        self.energy_activation: str | None = opts["energy_activation"]
        self.score_bias_enabled: bool = opts["score_bias"]
        self.normalize: bool = opts["normalize"]
        self.position: str = opts["position"]
        self.input_feeding: bool = opts["input_feeding"]
        self.output_size: int = opts["output_size"]
        self._source: PreparedSource | None = None

        H, A, Dk, Dv, O = self.hidden_size, self.attention_units, self.key_size, self.value_size, self.output_size
        fed = Dv if self.position == "before" else (O if self.input_feeding else 0)
        gh = self.kind.n_gates * H
        self._add_parameter("weight_ih", (gh, self.input_size + fed))
        self._add_parameter("weight_hh", (gh, H))
        if self.has_bias:
            self._add_parameter("bias_ih", (gh,))
            self._add_parameter("bias_hh", (gh,))
        if self.attention == "additive":
            assert A is not None
            self._add_parameter("query_weight", (A, H))
            self._add_parameter("key_weight", (A, Dk))
            if self.has_bias:
                self._add_parameter("bias", (A,))
            self._add_parameter("score_weight", (A,))
            if self.score_bias_enabled:
                self._add_parameter("score_bias", ())
            if self.normalize:
                self._add_parameter("gain", ())
        elif self.attention == "general":
            self._add_parameter("weight", (H, Dk))
        elif self.attention == "concat":
            assert A is not None
            self._add_parameter("weight", (A, H + Dk))
            self._add_parameter("score_weight", (A,))
        if self.position == "after":
            self._add_parameter("output_weight", (O, Dv + H))
            if self.has_bias:
                self._add_parameter("output_bias", (O,))
        self.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, key_size=self.key_size,
                    value_size=self.value_size, cell=self.cell, attention=self.attention,
                    attention_units=self.attention_units, energy_activation=self.energy_activation,
                    score_bias=self.score_bias_enabled, normalize=self.normalize, position=self.position,
                    input_feeding=self.input_feeding, output_size=self.output_size, bias=self.has_bias,
                    reset_after=self._cell_options.get("reset_after", True),
                    nonlinearity=self._cell_options.get("nonlinearity", "tanh"), dtype=self.dtype.name,
                    seed=self._seed)

    def reset_parameters(self) -> None:
        """PyTorch's inits: the cell's weights and biases U(±1/√H) (``layers.recurrent.init_weights``), every other
        weight and bias U(±1/√fan_in) (``torch.nn.Linear``; a score vector's fan-in is A, a score bias's too), and
        TF-Addons' gain √(1/A)."""
        p = self._params
        init_weights({k: p[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if k in p}, self.kind,
                     self.hidden_size, "pytorch", self._rng)
        fan_in = dict(query_weight=self.hidden_size, key_weight=self.key_size, bias=self.hidden_size,
                      score_weight=self.attention_units, score_bias=self.attention_units,
                      weight=self.key_size if self.attention == "general" else self.hidden_size + self.key_size,
                      output_weight=self.value_size + self.hidden_size,
                      output_bias=self.value_size + self.hidden_size)
        for name, n in fan_in.items():
            if name in p:
                bound = 1.0 / math.sqrt(n or 1)
                p[name][...] = self._rng.uniform(-bound, bound, p[name].shape)
        if "gain" in p:
            p["gain"][...] = math.sqrt(1.0 / (self.attention_units or 1))

    # -- the source -----------------------------------------------------------------------------------------------
    def project(self, keys: np.ndarray, values: np.ndarray | None = None, lengths: npt.ArrayLike | None = None
                ) -> PreparedSource:
        """The once-per-source work without recording it (decoding's use): the keys projected for the score (one
        GEMM over all B·Tx rows), checked values and lengths. ``keys [B, Tx, Dk]``, ``values [B, Tx, Dv]`` or None
        (= keys), ``lengths [B]`` ints in 0..Tx or None. The arrays are kept as given (``prepare`` copies them)."""
        keys = float_array("keys", keys, [("B", None), ("Tx", None), ("Dk", self.key_size)], self.dtype,
                           MODULE_DTYPE)
        B, Tx = keys.shape[:2]
        if B < 1 or Tx < 1:
            raise ValueError(f"keys must have at least one row and one source step (B >= 1, Tx >= 1), got shape "
                             f"{keys.shape}")
        values = keys if values is None else float_array(
            "values", values, [("B", B), ("Tx", Tx), ("Dv", self.value_size)], self.dtype, MODULE_DTYPE)
        if values.shape[2] != self.value_size:
            raise ValueError(f"values must have shape [B, Tx, Dv] = ({B}, {Tx}, {self.value_size}) (values=None "
                             f"uses the keys, so key_size must equal value_size), got shape {values.shape}")
        return self._project_checked(keys, values, lengths_array(lengths, B, Tx, shortest=0))

    def _project_checked(self, keys: np.ndarray, values: np.ndarray, lengths: np.ndarray | None) -> PreparedSource:
        """``project`` on checked arrays (keys and values C-contiguous of the dtype, lengths int64 or None)."""
        B, Tx = keys.shape[:2]
        key_matrix = self._key_matrix()
        if key_matrix is None:
            projected = keys
        else:
            projected = linear_forward(keys.reshape(B * Tx, self.key_size), key_matrix, None).reshape(B, Tx, -1)
        return PreparedSource(keys, projected, values, lengths)

    def prepare(self, keys: np.ndarray, values: np.ndarray | None = None, lengths: npt.ArrayLike | None = None
                ) -> PreparedSource:
        """Sets the source the following calls attend to (``project``'s work) and returns it. In training mode only,
        keys and values are private copies (so the caller may reuse its buffers before backward) with the padded
        rows (t' >= lengths[b]) zeroed: the weight gradients multiply those rows by zero gradients, which must not
        meet a NaN or inf the caller padded with; the training calls' workspaces read them, so do not write into
        the returned source's arrays. In eval mode (nothing recorded) the arrays are kept as given: the padded rows
        are masked out of the scores."""
        source = self.project(keys, values, lengths)
        self._source = self._private(source) if self.training else source
        self._source_owned = self.training
        return self._source

    def _private(self, source: PreparedSource) -> PreparedSource:
        """The source with private copies of its keys and values (shared when they are one array), padded rows
        zeroed: the decoder's own, which a training call's backward reads."""
        keys_copy = source.keys.copy()
        _zero_padding(keys_copy, source.lengths)
        values_copy = keys_copy if source.values is source.keys else source.values.copy()
        _zero_padding(values_copy, source.lengths)
        return source._replace(keys=keys_copy, values=values_copy,
                               projected=keys_copy if self._key_matrix() is None else source.projected)

    def _prepare_owned(self, keys: np.ndarray, lengths: np.ndarray | None) -> None:
        """``prepare(keys, None, lengths)`` for keys the caller made, checked (C-contiguous [B, Tx, Dk] of the
        dtype, B, Tx >= 1; lengths int64 [B] in 0..Tx or None), zero at the padded rows, that nobody else holds
        or mutates (Seq2Seq's encoder outputs): neither checked again nor copied for training."""
        self._source = self._project_checked(keys, keys, lengths)
        self._source_owned = True

    def _key_matrix(self) -> np.ndarray | None:
        """The matrix the keys are projected with (K = keys M^T), or None for "dot"."""
        if self.attention == "additive":
            return self._params["key_weight"]
        if self.attention == "general":
            return self._params["weight"]
        if self.attention == "concat":
            return np.ascontiguousarray(self._params["weight"][:, self.hidden_size:])
        return None

    # -- forward --------------------------------------------------------------------------------------------------
    def _op_weights(self) -> dict[str, Any]:
        """The fused op's weight arguments for this decoder's parameters (the effective score vector for
        ``normalize``; "concat" as the additive score with W = [W_q | W_k] and no bias)."""
        p = self._params
        args: dict[str, Any] = dict(cell=self.cell, **self._cell_options, position=self.position,
                                    input_feeding=self.input_feeding)
        if self.attention in ("dot", "general"):
            args["score"] = "dot"
        else:
            args["score"] = "additive"
            if self.attention == "additive":
                args.update(w_q=p["query_weight"], b_a=p.get("bias"), w_v=self._score_vector(),
                            energy_activation=self.energy_activation,
                            score_bias=p.get("score_bias"))  # 0-d array: the op's exact-call fast path
            else:
                args.update(w_q=np.ascontiguousarray(p["weight"][:, :self.hidden_size]), w_v=p["score_weight"])
        if self.position == "after":
            args.update(w_c=p["output_weight"], b_c=p.get("output_bias"))
        return args

    def _score_vector(self) -> np.ndarray:
        """w̃_v: the score weight, or with ``normalize`` TF-Addons' g · w / ‖w‖ (in float64, then the dtype)."""
        w = self._params["score_weight"]
        if not self.normalize:
            return w
        return normalized_score_vector(w, float(self._params["gain"]))

    def _cell_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

    def _state_parts(self) -> list[tuple[str, int]]:
        """The decoder state's parts and widths: h [B, H], then c [B, H] (LSTM), then õ [B, O] (input feeding: the
        fed output, which a continuing call starts from)."""
        parts = [("h", self.hidden_size)]
        if self.kind.n_states == 2:
            parts.append(("c", self.hidden_size))
        if self.input_feeding:
            parts.append(("o", self.output_size))
        return parts

    def _state_arrays(self, state: Any, batch: int, name: str = "state", prefix: str = "", suffix: str = "0"
                      ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(h, c, o) from a call's ``state`` (or backward's ``dstate``, the parts then named dh_n, dc_n, do_n):
        None (zeros), or ``_state_parts``' form — one [B, H] array h when that is the only part, else a tuple
        (h, c), (h, o) or (h, c, o) whose parts may be None (zeros)."""
        out: dict[str, np.ndarray | None] = dict(h=None, c=None, o=None)
        if state is None:
            return out["h"], out["c"], out["o"]
        parts = self._state_parts()
        names = [f"{prefix}{p}{suffix}" for p, _ in parts]
        if len(parts) == 1:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{name} must be None or one [B, H] array {names[0]} for a {self.kind.title} decoder "
                                f"without input feeding, got a {type(state).__name__}")
            items = [state]
        else:
            if not isinstance(state, (tuple, list)) or len(state) != len(parts):
                got = f"a {len(state)}-{type(state).__name__}" if isinstance(state, (tuple, list)) else \
                    type(state).__name__
                feeding = " with input feeding" if self.input_feeding else ""
                raise TypeError(f"{name} must be None or a tuple ({', '.join(names)}) of arrays (each may be None) "
                                f"for this {self.kind.title} decoder{feeding}, got {got}")
            items = list(state)
        for (part, width), part_name, item in zip(parts, names, items):
            if item is not None:
                out[part] = float_array(f"{name} {part_name}", item, [("B", batch), (part.upper(), width)],
                                        self.dtype, MODULE_DTYPE)
        return out["h"], out["c"], out["o"]

    def _state_of(self, h: Any, c: Any, o: Any) -> Any:
        """The state (or its gradient) in ``_state_parts``' form."""
        values = dict(h=h, c=c, o=o)
        parts = [values[p] for p, _ in self._state_parts()]
        return parts[0] if len(parts) == 1 else tuple(parts)

    def __call__(self, x: np.ndarray | None = None, state: Any = None, steps: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, Any]:
        """All decoder steps over the prepared source: ``x [B, Ty, E]`` the inputs (None when E = 0, then ``steps``
        gives Ty), ``state`` the initial state: None (zeros), else h0 [B, H] (GRU/RNN), (h0, c0) (LSTM), and with
        input feeding õ0 [B, O] last: (h0, o0) or (h0, c0, o0); a part may be None (zeros). Returns
        ``(outputs [B, Ty, O], alpha [B, Ty, Tx], final state)``, the final state in the same form (with input
        feeding õ_n = outputs[:, -1], so a call continuing from it equals one longer call). A training-mode call
        records what its backward needs."""
        source = self._source
        if source is None:
            raise RuntimeError("AttentionDecoder needs a source: call prepare(keys, values, lengths) first")
        B = source.keys.shape[0]
        Ty = decoder_steps(x, steps, self.input_size, B)
        if x is None:
            x_tm = np.zeros((Ty, B, 0), self.dtype)
        else:
            x = float_array("x", x, [("B", B), ("Ty", Ty), ("E", self.input_size)], self.dtype, MODULE_DTYPE)
            x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
        outputs, alpha, final = self._forward_time_major(x_tm, *self._state_arrays(state, B), x is not None)
        return _batch_major(outputs), _alpha_copy(alpha), final

    def _forward_time_major(self, x_tm: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None,
                            o0: np.ndarray | None, had_x: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        """``__call__`` on checked arguments, time-major: ``x_tm [Ty, B, E]`` -> ``(outputs [Ty, B, O],
        alpha [Ty, B, Tx], final state)``; ``had_x``: whether the caller gave x (backward then returns dx). A
        training call's workspace may point at alpha: callers hand out copies of it, never alpha itself."""
        source = self._source
        assert source is not None  # (prepared: the callers check)
        if self.training and not self._source_owned:  # prepared in eval mode (the caller's arrays): copies now
            source = self._source = self._private(source)
            self._source_owned = True
        # training: the workspace points at the decoder's own values and at alpha (outputs nobody else gets)
        outputs, _, alpha, h_n, c_n, workspace = attention_decoder_forward(
            x_tm, h0, c0, *self._cell_weights(), source.projected, source.values, source.lengths,
            training=self.training, o0=o0, borrow=self.training, **self._op_weights())
        self.save_for_backward((workspace, source, had_x, x_tm.shape[0]))
        return outputs, alpha, self._state_of(h_n, c_n, outputs[-1].copy() if self.input_feeding else None)

    def step(self, x: np.ndarray | None, source: PreparedSource, h: np.ndarray, c: np.ndarray | None = None,
             fed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """One inference step for decoding (nothing recorded): ``x [N, E]`` (None when E = 0), the prepared
        ``source`` (N rows), the state ``h [N, H]``, ``c`` (LSTM) and ``fed [N, O]`` (õ_{t-1} with input feeding).
        Returns ``(output [N, O], alpha [N, Tx], h, c)``; with input feeding the output is the next step's
        ``fed``."""
        N = source.keys.shape[0]
        h = float_array("h", h, [("N", N), ("H", self.hidden_size)], self.dtype, MODULE_DTYPE)
        if c is not None:
            c = float_array("c", c, [("N", N), ("H", self.hidden_size)], self.dtype, MODULE_DTYPE)
        if fed is not None:
            fed = float_array("fed", fed, [("N", N), ("O", self.output_size)], self.dtype, MODULE_DTYPE)
        x_tm = np.zeros((1, N, 0), self.dtype) if x is None else x[None]
        outputs, _, alpha, h_n, c_n, _ = attention_decoder_forward(
            x_tm, h, c, *self._cell_weights(), source.projected, source.values, source.lengths, training=False,
            o0=fed if self.input_feeding else None, **self._op_weights())
        return outputs[0], alpha[0], h_n, c_n

    # -- backward -------------------------------------------------------------------------------------------------
    def backward(self, doutputs: np.ndarray | None, dalpha: np.ndarray | None = None, dstate: Any = None
                 ) -> tuple[np.ndarray | None, Any, np.ndarray, np.ndarray]:
        """Backpropagation through the last recorded training-mode call (calls go back last first): accumulates
        every parameter's gradient and returns ``(dx [B, Ty, E] or None (x was None), dstate0 (dh0, or (dh0, dc0)),
        dkeys [B, Tx, Dk], dvalues [B, Tx, Dv])`` — with values=None at prepare (values are the keys) the keys'
        total gradient is ``dkeys + dvalues``. ``doutputs [B, Ty, O]`` (None: zeros), ``dalpha [B, Ty, Tx]``
        (optional), ``dstate`` the final state's gradient (optional), in the state's form (see ``__call__``), as
        dstate0 is: with input feeding they include dõ."""
        recorded = self.saved_for_backward()
        workspace, source, had_x, Ty = recorded
        B, Tx = source.keys.shape[:2]
        try:
            dout = None if doutputs is None else _time_major(float_array(
                "doutputs", doutputs, [("B", B), ("Ty", Ty), ("O", self.output_size)], self.dtype, MODULE_DTYPE))
            dalp = None if dalpha is None else _time_major(float_array(
                "dalpha", dalpha, [("B", B), ("Ty", Ty), ("Tx", Tx)], self.dtype, MODULE_DTYPE))
            dh_n, dc_n, do_n = self._state_arrays(dstate, B, "dstate", "d", "_n")
        except Exception:
            self._restore_saved(recorded)  # a rejected gradient does not use up the call
            raise
        dx, dstate0, dkeys, dvalues = self._backward_time_major(recorded, dout, dalp, dh_n, dc_n, do_n)
        return (None if dx is None else _batch_major(dx)), dstate0, dkeys, dvalues

    def _backward_time_major(self, recorded: Any, dout: np.ndarray | None, dalp: np.ndarray | None,
                             dh_n: np.ndarray | None, dc_n: np.ndarray | None, do_n: np.ndarray | None
                             ) -> tuple[np.ndarray | None, Any, np.ndarray, np.ndarray]:
        """``backward`` on the popped tape entry and checked, time-major gradients (``dout [Ty, B, O]``,
        ``dalp [Ty, B, Tx]``): returns ``(dx [Ty, B, E] or None, dstate0, dkeys, dvalues)``."""
        workspace, source, had_x, Ty = recorded
        B = source.keys.shape[0]
        if do_n is not None:  # õ_n is the last output
            dout = np.zeros((Ty, B, self.output_size), self.dtype) if dout is None else dout.copy()
            dout[-1] += do_n
        g = attention_decoder_backward(workspace, dout, None, dalp, dh_n, dc_n)
        grads = self._grads
        grads["weight_ih"] += g.dw_ih
        grads["weight_hh"] += g.dw_hh
        if self.has_bias:
            grads["bias_ih"] += g.db_ih
            grads["bias_hh"] += g.db_hh
        if self.position == "after":
            grads["output_weight"] += g.dw_c
            if self.has_bias:
                grads["output_bias"] += g.db_c
        dkeys = self._score_backward(g, source)
        return (g.dx if had_x else None), self._state_of(g.dh0, g.dc0, g.do0), dkeys, g.dvalues

    def _score_backward(self, g: Any, source: PreparedSource) -> np.ndarray:
        """Accumulates the score's parameter gradients and returns the keys' gradient [B, Tx, Dk]: the projection's
        backward is one GEMM pair over all B·Tx rows (dK = dK' M, dM += dK'^T keys)."""
        grads, H = self._grads, self.hidden_size
        if self.attention == "dot":
            return g.dkeys
        B, Tx = source.keys.shape[:2]
        keys2d = source.keys.reshape(B * Tx, self.key_size)  # the decoder's own keys, C-contiguous
        dprojected = np.ascontiguousarray(g.dkeys).reshape(B * Tx, -1)

        def projection_backward(weight: np.ndarray, dweight: np.ndarray) -> np.ndarray | None:
            # unchecked when the weight is still one the recorded call can take (it may have been re-registered)
            fits = (weight.shape == (dprojected.shape[1], self.key_size) and weight.dtype == keys2d.dtype
                    and weight.flags.c_contiguous and dweight.shape == weight.shape)
            return (linear_backward_checked if fits else linear_backward)(keys2d, weight, dprojected, dweight, None,
                                                                          True)

        if self.attention == "general":
            dkeys = projection_backward(self._params["weight"], grads["weight"])
        elif self.attention == "concat":
            dw_k = np.zeros((self.attention_units or 0, self.key_size), self.dtype)
            w_k = self._key_matrix()
            assert w_k is not None  # concat projects its keys
            dkeys = projection_backward(w_k, dw_k)
            grads["weight"][:, :H] += g.dw_q
            grads["weight"][:, H:] += dw_k
            grads["score_weight"] += g.dw_v
        else:
            dkeys = projection_backward(self._params["key_weight"], grads["key_weight"])
            grads["query_weight"] += g.dw_q
            if self.has_bias:
                grads["bias"] += g.db_a
            if self.score_bias_enabled:
                grads["score_bias"] += g.dscore_bias
            self._score_vector_backward(g.dw_v)
        assert dkeys is not None  # need_dx=True
        return dkeys.reshape(B, Tx, self.key_size)

    def _score_vector_backward(self, dscore_vector: np.ndarray) -> None:
        """dw̃ onto score_weight (and gain): with normalize (w̃ = g ŵ, ŵ = w/‖w‖) dg = dw̃ · ŵ and
        dw = (g/‖w‖)(dw̃ − (ŵ · dw̃) ŵ), the derivative of w/‖w‖ being (I − ŵŵ^T)/‖w‖."""
        if not self.normalize:
            self._grads["score_weight"] += dscore_vector
            return
        dw_v, dgain = normalized_score_vector_backward(self._params["score_weight"], float(self._params["gain"]),
                                                       dscore_vector)
        self._grads["gain"] += dgain
        self._grads["score_weight"] += dw_v

    def __repr__(self) -> str:
        extra = f", attention={self.attention!r}, position={self.position!r}"
        extra += ", input_feeding=True" if self.input_feeding else ""
        return (f"AttentionDecoder({self.input_size}, {self.hidden_size}, {self.key_size}, cell={self.cell!r}"
                f"{extra}, dtype={self.dtype.name})")


def _time_major(a: np.ndarray) -> np.ndarray:
    """[B, T, F] -> a C-contiguous [T, B, F] (and back: ``_batch_major``)."""
    return np.ascontiguousarray(a.transpose(1, 0, 2))


_batch_major = _time_major


def _alpha_copy(alpha: np.ndarray) -> np.ndarray:
    """A training call's alpha [Ty, B, Tx] handed out as [B, Ty, Tx]: always a copy (the workspace reads alpha
    itself; a transposed view is already contiguous when B or Ty is 1, and ascontiguousarray would not copy it)."""
    return np.array(alpha.transpose(1, 0, 2), order="C")


class Seq2Seq(Parameterized):
    """An encoder-decoder with attention: Embedding → encoder → bridge → ``AttentionDecoder`` → Linear.

    - source: ``source_embedding`` (``Embedding(source_vocab, embedding_size, padding_idx=pad_index)``), or with
      ``source_one_hot=True`` the course's one-hot characters: the encoder reads the ids as one-hot rows (its
      input projection gathers W_ih's columns; no embedding parameters, no input gradient).
    - ``encoder``: ``rnncore.LSTM``/``GRU``/``RNN`` (``cell``), ``encoder_layers`` deep, ``bidirectional``, batch
      first, with the source lengths; its outputs [B, Tx, D·He] are the attention's keys and values.
    - bridge: "linear" — the decoder's h0 = tanh(``bridge_h``(final top-layer encoder h, both directions
      concatenated)), and c0 likewise through ``bridge_c`` for an LSTM; "zeros" — h0 = c0 = 0 (the course's s0 =
      c0 = 0).
    - ``target_embedding`` (``Embedding(target_vocab, target_embedding_size or embedding_size)``) feeding the
      previous target token to the decoder (``feed_targets=True``, teacher forcing), or none: the decoder reads the
      context only (``feed_targets=False``, the course's date model).
    - ``decoder``: ``AttentionDecoder`` with the given attention options; ``output``: Linear to target_vocab.

    ``logits [B, Ty, V], alpha [B, Ty, Tx] = model(source [B, Tx], source_lengths [B], target_inputs [B, Ty])``;
    ``model.backward(dlogits, dalpha=None)``; ``model.loss(...)`` / ``loss_backward()`` for masked mean
    cross-entropy with optional scheduled sampling. Decoding (``rnncore.decode``): ``start``, ``step``,
    ``reorder``, ``attention``.
    """

    def __init__(self, source_vocab: int, target_vocab: int, embedding_size: int = 32, encoder_hidden: int = 32,
                 encoder_layers: int = 1, bidirectional: bool = True, decoder_hidden: int = 64, cell: str = "lstm",
                 attention: str = "additive", attention_units: int | None = None, energy_activation: str | None = None,
                 score_bias: bool = False, normalize: bool = False, position: str | None = None,
                 input_feeding: bool = False, feed_targets: bool = True, target_embedding_size: int | None = None,
                 bridge: str = "linear", source_one_hot: bool = False, pad_index: int = 0, bos_index: int = 1,
                 eos_index: int = 2, dtype: npt.DTypeLike = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype, seed)
        self.source_vocab = positive_int("source_vocab", source_vocab)
        self.target_vocab = positive_int("target_vocab", target_vocab)
        self.embedding_size = positive_int("embedding_size", embedding_size)
        self.encoder_hidden = positive_int("encoder_hidden", encoder_hidden)
        self.encoder_layers = positive_int("encoder_layers", encoder_layers)
        self.bidirectional = flag("bidirectional", bidirectional)
        self.decoder_hidden = positive_int("decoder_hidden", decoder_hidden)
        self.cell = choice("cell", cell, tuple(_CELLS))
        self.feed_targets = flag("feed_targets", feed_targets)
        attention_units = seq2seq_decoder_options(attention, attention_units, position, input_feeding,
                                                  self.feed_targets, target_embedding_size)
        self.target_embedding_size = (self.embedding_size if target_embedding_size is None
                                      else positive_int("target_embedding_size", target_embedding_size))
        self.bridge = choice("bridge", bridge, _BRIDGES)
        self.source_one_hot = flag("source_one_hot", source_one_hot)
        self.pad_index = token_index("pad_index", pad_index, self.target_vocab, self.source_vocab)
        self.bos_index = token_index("bos_index", bos_index, self.target_vocab)
        self.eos_index = token_index("eos_index", eos_index, self.target_vocab)
        seq2seq_special_tokens(self.pad_index, self.bos_index, self.eos_index)
        # every sub-module's seed is drawn from this model's, so one seed fixes them all
        seeds: list[int | None] = ([int(s) for s in np.random.SeedSequence(seed).generate_state(7)]
                                   if seed is not None else [None] * 7)
        kind = _CELLS[self.cell]
        directions = 2 if self.bidirectional else 1
        encoder_class = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[self.cell]
        if not self.source_one_hot:
            self.source_embedding = Embedding(self.source_vocab, self.embedding_size, padding_idx=self.pad_index,
                                              dtype=self.dtype, seed=seeds[0])
        encoder_input = self.source_vocab if self.source_one_hot else self.embedding_size
        self.encoder = encoder_class(encoder_input, self.encoder_hidden, num_layers=self.encoder_layers,
                                     batch_first=True, bidirectional=self.bidirectional, dtype=self.dtype,
                                     seed=seeds[1])
        key_size = directions * self.encoder_hidden
        if self.bridge == "linear":
            self.bridge_h = Linear(key_size, self.decoder_hidden, dtype=self.dtype, seed=seeds[2])
            if kind.n_states == 2:
                self.bridge_c = Linear(key_size, self.decoder_hidden, dtype=self.dtype, seed=seeds[3])
        if self.feed_targets:
            self.target_embedding = Embedding(self.target_vocab, self.target_embedding_size,
                                              padding_idx=self.pad_index, dtype=self.dtype, seed=seeds[4])
        self.decoder = AttentionDecoder(
            self.target_embedding_size if self.feed_targets else 0, self.decoder_hidden, key_size, cell=self.cell,
            attention=attention, attention_units=attention_units, energy_activation=energy_activation,
            score_bias=score_bias, normalize=normalize, position=position, input_feeding=input_feeding,
            dtype=self.dtype, seed=seeds[5])
        self.output = Linear(self.decoder.output_size, self.target_vocab, dtype=self.dtype, seed=seeds[6])
        self._loss_gradients: list[np.ndarray] = []

    def get_config(self) -> dict[str, Any]:
        d = self.decoder
        return dict(source_vocab=self.source_vocab, target_vocab=self.target_vocab,
                    embedding_size=self.embedding_size, encoder_hidden=self.encoder_hidden,
                    encoder_layers=self.encoder_layers, bidirectional=self.bidirectional,
                    decoder_hidden=self.decoder_hidden, cell=self.cell, attention=d.attention,
                    attention_units=d.attention_units, energy_activation=d.energy_activation,
                    score_bias=d.score_bias_enabled, normalize=d.normalize, position=d.position,
                    input_feeding=d.input_feeding, feed_targets=self.feed_targets,
                    target_embedding_size=self.target_embedding_size if self.feed_targets else None, bridge=self.bridge,
                    source_one_hot=self.source_one_hot, pad_index=self.pad_index, bos_index=self.bos_index,
                    eos_index=self.eos_index, dtype=self.dtype.name, seed=self._seed)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_loss_gradients"] = []  # pending loss gradients belong to the tape, which is not copied
        return state

    def train(self, mode: bool = True) -> Seq2Seq:
        """``Module.train``; eval mode also drops the gradients of pending ``loss`` calls (their tape is cleared)."""
        super().train(mode)
        if not self.training:
            self._loss_gradients.clear()
        return self

    @contextlib.contextmanager
    def _untaped(self) -> Iterator[None]:
        """Every module runs as in eval mode (nothing recorded) without clearing the tapes of training calls that
        await their backward (``eval()`` would): scheduled sampling's first pass, and decoding."""
        modes = [(m, m.training) for m in self.modules() if isinstance(m, Module)]
        try:
            for m, _ in modes:
                m.training = False
            yield
        finally:
            for m, mode in modes:
                m.training = mode

    # -- forward ---------------------------------------------------------------------------------------------------
    def _encode(self, source: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """source [B, Tx] ids -> (encoder outputs [B, Tx, D·He], the decoder's initial state)."""
        if self.source_one_hot:  # the ids themselves: the encoder gathers W_ih's columns (no one-hot rows, no dx)
            inputs = np.ascontiguousarray(source.T)
        else:
            inputs = _time_major(self.source_embedding(source))  # the encoder's kernels read [Tx, B, E]
        states0 = (None,) * _CELLS[self.cell].n_states
        keys, final = self.encoder._call_checked(inputs, states0, lengths, "right")
        return keys, self._bridge(final)

    def _top_layer(self, state: np.ndarray) -> np.ndarray:
        """[L*D, B, He] -> the top layer's directions side by side [B, D·He]."""
        D = 2 if self.bidirectional else 1
        top = state[(self.encoder_layers - 1) * D:]
        return np.ascontiguousarray(np.concatenate(list(top), axis=1))

    def _bridge(self, final: Any) -> Any:
        """The decoder's initial state from the encoder's final state(s) (None: zeros)."""
        n_states = _CELLS[self.cell].n_states
        if self.bridge == "zeros":
            return None
        parts = final if n_states == 2 else (final,)
        linears = [self.bridge_h, self.bridge_c] if n_states == 2 else [self.bridge_h]
        states = [np.tanh(lin(self._top_layer(s))) for lin, s in zip(linears, parts)]
        self.save_for_backward(states)
        return tuple(states) if n_states == 2 else states[0]

    def _bridge_backward(self, dstate0: Any, batch: int) -> Any:
        """The encoder's final-state gradient [L*D, B, He] (top layer only) from the decoder's initial-state one."""
        if self.bridge == "zeros":
            return None
        n_states = _CELLS[self.cell].n_states
        states = self.saved_for_backward()
        dparts = dstate0 if n_states == 2 else (dstate0,)
        linears = [self.bridge_h, self.bridge_c] if n_states == 2 else [self.bridge_h]
        D, He = (2 if self.bidirectional else 1), self.encoder_hidden
        out = []
        for lin, s, ds in reversed(list(zip(linears, states, dparts))):
            dtop = lin.backward(ds * (1.0 - s * s))              # tanh' = 1 - y²
            full = np.zeros((self.encoder_layers * D, batch, He), self.dtype)
            for d in range(D):
                full[(self.encoder_layers - 1) * D + d] = dtop[:, d * He:(d + 1) * He]
            out.append(full)
        out.reverse()
        return tuple(out) if n_states == 2 else out[0]

    def __call__(self, source: npt.ArrayLike, source_lengths: npt.ArrayLike | None, target_inputs: npt.ArrayLike
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-forced logits: ``source [B, Tx]`` ids, each in 0..source_vocab-1 (past each length any such id,
        e.g. pad_index: the encoder never reads it),
        ``source_lengths [B]`` (0..Tx; None = all Tx), ``target_inputs [B, Ty]`` ids (bos then the target; with
        ``feed_targets=False`` only their shape is used). Returns ``(logits [B, Ty, V], alpha [B, Ty, Tx])``."""
        src, lengths = seq2seq_sources(source, source_lengths, self.source_vocab)
        targets_in = seq2seq_tokens("target_inputs", target_inputs, self.target_vocab, src.shape[0])
        B, Ty = targets_in.shape
        keys, state0 = self._encode(src, lengths)
        self.decoder._prepare_owned(keys, lengths)  # the encoder's fresh outputs, zero past each length
        # the decoder runs time-major ([Ty, B, ...]): the output layer takes its outputs as they come
        x = (self.target_embedding(np.ascontiguousarray(targets_in.T)) if self.feed_targets
             else np.zeros((Ty, B, 0), self.dtype))
        h0, c0 = (None, None) if state0 is None else state0 if _CELLS[self.cell].n_states == 2 else (state0, None)
        outputs, alpha, _ = self.decoder._forward_time_major(x, h0, c0, None, self.feed_targets)
        logits = self.output._forward_owned(outputs.reshape(Ty * B, -1))
        self.save_for_backward((B, Ty, keys.shape[1]))
        return _batch_major(logits.reshape(Ty, B, -1)), _alpha_copy(alpha)

    def backward(self, dlogits: np.ndarray, dalpha: np.ndarray | None = None) -> None:
        """Backpropagation through the last recorded training-mode call: accumulates every parameter's gradient
        (nested names). ``dlogits [B, Ty, V]``, ``dalpha [B, Ty, Tx]`` (optional, e.g. an attention loss), of the
        model's dtype. A rejected gradient does not use up the call."""
        recorded = self.saved_for_backward()
        batch, Ty, Tx = recorded
        try:
            dlogits = float_array("dlogits", dlogits, [("B", batch), ("Ty", Ty), ("V", self.target_vocab)],
                                  self.dtype, MODULE_DTYPE)
            if dalpha is not None:
                dalpha = float_array("dalpha", dalpha, [("B", batch), ("Ty", Ty), ("Tx", Tx)], self.dtype,
                                     MODULE_DTYPE)
        except Exception:
            self._restore_saved(recorded)
            raise
        doutputs = self.output._backward_owned(_time_major(dlogits).reshape(Ty * batch, -1))
        dx, dstate, dkeys, dvalues = self.decoder._backward_time_major(
            self.decoder.saved_for_backward(), doutputs.reshape(Ty, batch, -1),
            None if dalpha is None else _time_major(dalpha), None, None, None)
        n_states = _CELLS[self.cell].n_states
        parts = dstate if isinstance(dstate, tuple) else (dstate,)
        dstate0 = parts[:2] if n_states == 2 else parts[0]  # the bridge's part (õ0 is the constant zeros)
        if self.feed_targets:
            assert dx is not None  # the decoder read target embeddings ([Ty, B, E], as they were gathered)
            self.target_embedding.backward(dx)
        dfinal = self._bridge_backward(dstate0, batch)
        dkeys += dvalues  # (both fresh: the decoder's backward made them)
        dfinal_states = (None,) * n_states if dfinal is None else dfinal if n_states == 2 else (dfinal,)
        dembedded, _ = self.encoder._backward_checked(self.encoder.saved_for_backward(), dkeys.transpose(1, 0, 2),
                                                      dfinal_states, not self.source_one_hot)
        if not self.source_one_hot:  # (the encoder's outputs are the keys and the values)
            assert dembedded is not None  # need_dx
            self.source_embedding.backward(dembedded)

    # -- the loss --------------------------------------------------------------------------------------------------
    def loss(self, source: npt.ArrayLike, source_lengths: npt.ArrayLike | None, target_inputs: npt.ArrayLike,
             targets: npt.ArrayLike, teacher_forcing_ratio: float = 1.0, seed: int | None = None) -> float:
        """Mean cross-entropy over the non-pad ``targets [B, Ty]`` (``rnncore.losses.softmax_cross_entropy`` with
        mask ``targets != pad_index``) of a training-mode forward; ``loss_backward()`` then backpropagates it.

        ``teacher_forcing_ratio`` < 1 is scheduled sampling, in two passes (parallel scheduled sampling, Duckworth
        et al. 2019): a first, unrecorded teacher-forced pass gives the model's argmax predictions; then each
        decoder input after bos is, independently per (sample, step), the target token with probability
        ``teacher_forcing_ratio`` or the model's prediction of that position (draws from
        ``np.random.default_rng(seed)``), and the training pass runs on that mix. The choice and the predictions are
        constants: no gradient flows through them. 1.0 (the default) is plain teacher forcing, with no first pass."""
        # every argument is checked before any forward records on the sub-modules' tapes
        ratio = forcing_ratio(teacher_forcing_ratio, self.feed_targets)
        seed = seed_value(seed)
        src, lengths = seq2seq_sources(source, source_lengths, self.source_vocab)
        inputs = seq2seq_tokens("target_inputs", target_inputs, self.target_vocab, src.shape[0])
        tgt = seq2seq_tokens("targets", targets, self.target_vocab, *inputs.shape)
        if ratio < 1.0:
            inputs = self.scheduled_inputs(src, lengths, inputs, ratio, seed)
        logits, _ = self(src, lengths, inputs)
        value, dlogits = softmax_cross_entropy(logits, tgt, mask=tgt != self.pad_index)
        if self.training:
            self._loss_gradients.append(dlogits)
        return value

    def loss_backward(self) -> None:
        """Backpropagates the last ``loss`` call (calls go back last first)."""
        if not self._loss_gradients:
            raise RuntimeError("Seq2Seq.loss_backward needs a training-mode loss(...) call first (one backward per "
                               "call, last call first)")
        self.backward(self._loss_gradients.pop())

    def scheduled_inputs(self, source: npt.ArrayLike, source_lengths: npt.ArrayLike | None,
                         target_inputs: npt.ArrayLike, teacher_forcing_ratio: float, seed: int | None = None
                         ) -> np.ndarray:
        """The decoder inputs of scheduled sampling (see ``loss``): ``target_inputs [B, Ty]`` with each entry after
        the first replaced, with probability 1 − ratio, by the model's teacher-forced argmax prediction of that
        position."""
        ratio = forcing_ratio(teacher_forcing_ratio, self.feed_targets)
        seed = seed_value(seed)
        targets_in = seq2seq_tokens("target_inputs", target_inputs, self.target_vocab)
        with self._untaped():
            logits, _ = self(source, source_lengths, targets_in)
        predictions = np.argmax(logits, axis=-1)              # [B, Ty]: step t predicts the input of step t + 1
        teacher = np.random.default_rng(seed).random(targets_in.shape) < ratio
        mixed = targets_in.copy()
        mixed[:, 1:] = np.where(teacher[:, 1:], targets_in[:, 1:], predictions[:, :-1])
        return mixed

    # -- decoding (rnncore.decode's step protocol) ------------------------------------------------------------------
    def start(self, batch: Any) -> dict[str, Any]:
        """The decoding state of every source: ``batch`` is an int array [N, Tx] padded with pad_index after each
        source's tokens, or a list of 1-D int sequences. Runs the encoder and projects the keys once."""
        src, lengths = seq2seq_sources_for_decoding(batch, self.pad_index, self.source_vocab)
        with self._untaped():
            keys, state0 = self._encode(src, lengths)
            source = self.decoder.project(keys, None, lengths)
        N, H = src.shape[0], self.decoder_hidden
        two = _CELLS[self.cell].n_states == 2
        if state0 is None:
            h, c = np.zeros((N, H), self.dtype), (np.zeros((N, H), self.dtype) if two else None)
        else:
            h, c = state0 if two else (state0, None)
        # source: the N prepared sources, never gathered; rows: the source of each row (reorder maps it);
        # source_count: N, so that a step can tell sources another reorder gathered row by row (see step)
        state: dict[str, Any] = dict(h=h, source=source, rows=np.arange(N), source_count=N,
                                     alpha=np.zeros((N, keys.shape[1]), self.dtype))
        if c is not None:
            state["c"] = c
        if self.decoder.input_feeding:
            state["fed"] = np.zeros((N, self.decoder.output_size), self.dtype)
        return state

    def step(self, tokens: np.ndarray, state: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One decoder step for every row: ``tokens [N]`` (the previous output, bos first) -> (log_probs [N, V] in
        the model's dtype, the new state). One C++ call (``rnncore.ops.DecoderSession``: the embedding gather, the
        decoder step, the output layer and the log-softmax); the session is made at the first step of the state's
        rows and carried in the state, so it holds the weights as of that step: a decode sees one set of weights."""
        tokens = index_array("tokens", tokens, self.target_vocab)
        source, rows = state["source"], state["rows"]
        count = state.get("source_count", source.projected.shape[0])
        if source.projected.shape[0] != count:
            # A reorder other than this model's gathered the prepared sources row by row (as this one did before it
            # kept them once): each row then reads its own, whatever ``rows`` still says.
            if source.projected.shape[0] != len(rows):
                raise ValueError(f"state: the prepared source has {source.projected.shape[0]} rows for {len(rows)} "
                                 f"state rows (Seq2Seq.reorder keeps the {count} sources once and maps the rows "
                                 "to them through state['rows'])")
            rows = np.arange(len(rows))
        session = state.get("session")
        if session is not None and not np.array_equal(session.sources, rows):
            session = None  # made for other rows (a reorder that carried it along): a session for these
        if session is None:
            session = self._decoding_session(source, rows)
        log_probs, output, alpha, h, c = session.step(tokens if self.feed_targets else None, state["h"],
                                                      state.get("c"), state.get("fed"))
        new = dict(state, h=h, alpha=alpha, session=session)
        if c is not None:
            new["c"] = c
        if self.decoder.input_feeding:
            new["fed"] = output
        return log_probs, new

    def _decoding_session(self, source: PreparedSource, rows: np.ndarray) -> DecoderSession:
        """The decoding session over ``rows`` (the source of each row) of the prepared sources, with the model's
        current weights: each source's keys and values are held once, whatever number of rows (beams) read them."""
        return DecoderSession(*self.decoder._cell_weights(), source.projected, source.values, source.lengths,
                              embedding=self.target_embedding.weight if self.feed_targets else None,
                              w_out=self.output.weight, b_out=self.output.bias, sources=rows,
                              **self.decoder._op_weights())

    def reorder(self, state: dict[str, Any], indices: np.ndarray) -> dict[str, Any]:
        """The rows ``indices`` of the state. The prepared sources are never gathered: ``rows`` maps each row to its
        source, and the decoding session reads each source's keys and values once through that map. A new map (the
        rows' sources change: beam search's first expansion) only drops the session, which the next step makes with
        it; beams reordered within their source keep it, so only the small recurrent state moves."""
        rows = state["rows"][indices]                      # the source each new row decodes
        new = {k: np.take(v, indices, axis=0) for k, v in state.items() if k in ("h", "c", "fed", "alpha")}
        new["rows"] = rows
        new["source"] = state["source"]
        if "source_count" in state:
            new["source_count"] = state["source_count"]
        session = state.get("session")
        if session is not None and rows.shape == state["rows"].shape and np.array_equal(rows, state["rows"]):
            new["session"] = session
        return new

    def attention(self, state: dict[str, Any]) -> np.ndarray:
        """α [N, Tx] of the last step (``rnncore.decode``'s ``return_attention`` reads it)."""
        return state["alpha"]
