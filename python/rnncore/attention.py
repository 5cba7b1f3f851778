"""Attention modules: ``AdditiveAttention`` (Bahdanau) and ``LuongAttention``, over the attention ops.

Both follow the module protocol (``rnncore.Module``) with a two-level tape: ``prepare(keys, values=None,
lengths=None)`` does the once-per-source work and records the source; every ``att(query)`` records a call against
the last prepared source. Backward goes in reverse: ``att.backward(dcontext, dalpha=None)`` per call (the last call
first) returns dL/dquery and accumulates the parameters' gradients and the source's dkeys/dvalues in place; once
every call of a source went back, ``dkeys, dvalues = att.prepare_backward()`` finishes the keys' gradient and pops
the source. A new ``prepare`` while calls of the previous source are pending is allowed (the tape keeps both).
``eval()`` records nothing (and ``prepare`` then allocates no gradient accumulators).

A decoder loop (teacher forcing, Bahdanau's "attention before the cell")::

    att.prepare(encoder_outputs, lengths=src_lengths)         # K' = keys W_k^T once
    for t in range(Ty):
        context, alpha = att(h)                                # h [B, query_size]
        ...
    for t in reversed(range(Ty)):
        dh = att.backward(dcontext[t]) + ...
    dkeys, dvalues = att.prepare_backward()                    # dvalues None when values were the keys
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._validation import (
    LUONG_SCORES,
    MODULE_DTYPE,
    attention_lengths,
    choice,
    energy_activation_name,
    flag,
    float_array,
    module_parameters,
    positive_int,
)
from .module import Parameterized
from .ops.attention import (
    additive_attention_backward,
    additive_attention_forward,
    additive_attention_keys,
    additive_attention_keys_backward,
    additive_attention_source,
    luong_attention_backward,
    luong_attention_forward,
)

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["AdditiveAttention", "LuongAttention"]


class _Source:
    """One prepared source: private copies of what its calls and its backward read, and the gradients its calls'
    backwards accumulate (dK' or dkeys, dvalues)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray | None, lengths: np.ndarray | None, prepared: Any,
                 dkeys_shape: tuple[int, ...], training: bool) -> None:
        self.keys = keys                # [B, Tx, Dk], padded rows zeroed (training)
        self.values = values            # [B, Tx, Dv], or None: the keys are the values
        self.lengths = lengths          # [B] int64 or None
        self.prepared = prepared        # additive, Luong concat: the ops' source (K', values, lengths); Luong
                                        # general: k W^T [B, Tx, Dq]; Luong dot: None
        self.pending = 0                # calls recorded against it and not yet backwarded
        self.dkeys: np.ndarray | None = None     # dK' (additive, concat), d(k W^T) (general) or dkeys (dot)
        self.dvalues: np.ndarray | None = None   # [B, Tx, Dv]
        if training:
            self.dkeys = np.zeros(dkeys_shape, keys.dtype)
            self.dvalues = np.zeros(self.values_or_keys.shape, keys.dtype)

    @property
    def values_or_keys(self) -> np.ndarray:
        return self.keys if self.values is None else self.values

    @property
    def batch(self) -> int:
        return int(self.keys.shape[0])


class _Call(NamedTuple):
    """A recorded call: its source, the op's workspace and the query's shape."""
    source: _Source
    workspace: Any
    query_shape: tuple[int, ...]


def _source_arrays(owner: str, keys: Any, values: Any, lengths: Any, key_size: int | None, value_size: int | None,
                   dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``prepare``'s arguments: keys [B, Tx, key_size] and values [B, Tx, value_size] (None: the keys, which needs
    value_size == key_size) of the module's dtype (a size None: any), lengths [B] in 0..Tx or None; returned as
    private C-contiguous copies."""
    keys = float_array("keys", keys, [("B", None), ("Tx", None), ("key_size", key_size)], dtype, MODULE_DTYPE)
    if 0 in keys.shape:
        raise ValueError(f"keys must have every axis >= 1 ([B, Tx, key_size]), got shape {keys.shape}")
    B, Tx, _ = keys.shape
    if values is None and value_size is not None and value_size != key_size:
        raise ValueError(f"{owner}.prepare: values=None uses the keys as values, but the module was built with "
                         f"value_size={value_size} != key_size={key_size}: pass values [B, Tx, value_size]")
    if values is not None:
        values = np.array(float_array("values", values, [("B", B), ("Tx", Tx), ("value_size", value_size)], dtype,
                                      MODULE_DTYPE), order="C", copy=True)
    return np.array(keys, order="C", copy=True), values, attention_lengths(lengths, B, Tx)


def _zero_padding(a: np.ndarray, lengths: np.ndarray | None) -> None:
    """Zeroes the padded rows (t' >= lengths[b]) of a [B, Tx, ...] copy: the weight gradients' products multiply
    them by zero gradients, which must not meet a NaN or inf the caller padded with."""
    if lengths is not None:
        a[np.arange(a.shape[1])[None, :] >= lengths[:, None]] = 0.0


class _Attention(Parameterized):
    """The two-level tape shared by both modules (prepare entries and call entries)."""

    _source: _Source | None = None  # the last prepared source (the one calls attend over)
    _data_attributes = frozenset({"_source"})  # set at every prepare, never a sub-module

    def __getstate__(self) -> dict[str, Any]:
        """Pickle and deepcopy: as every module, without the tape, and without the prepared source (prepare again)."""
        state = super().__getstate__()
        state.pop("_source", None)
        return state

    def _record_prepare(self, source: _Source) -> None:
        self._source = source
        self.save_for_backward(("prepare", source))  # a no-op in eval mode

    def _current_source(self, batch: int) -> _Source:
        source = self._source
        if source is None:
            raise RuntimeError(f"{type(self).__name__}: call prepare(keys, values=None, lengths=None) before "
                               "attending (it projects the keys once per source)")
        if batch != source.batch:
            raise ValueError(f"query must have B = {source.batch} rows (the prepared keys' batch), got {batch}")
        if self.training and source.dkeys is None:
            raise RuntimeError(f"{type(self).__name__}: the source was prepared in eval mode; prepare it again in "
                               "training mode to record calls for backward")
        return source

    def _pop_call(self) -> _Call:
        entry = self.saved_for_backward()
        if entry[0] != "call":
            self._restore_saved(entry)
            raise RuntimeError(f"{type(self).__name__}.backward: every call of the last prepared source went "
                               "through backward; call prepare_backward() to finish that source first")
        return entry[1]

    def prepare_backward(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Finishes the last prepared source once every call attending over it went through backward: returns
        ``(dkeys [B, Tx, key_size], dvalues [B, Tx, value_size])`` (dvalues None when ``values`` was None: the
        values' gradient is then part of dkeys) and accumulates the key projection's gradients."""
        entry = self.saved_for_backward()
        if entry[0] != "prepare":
            self._restore_saved(entry)
            pending = entry[1].source.pending
            calls = "1 call of the last prepared source still needs" if pending == 1 else \
                f"{pending} calls of the last prepared source still need"
            raise RuntimeError(f"{type(self).__name__}.prepare_backward: {calls} backward (last call first) before "
                               "its keys' gradient is complete")
        source: _Source = entry[1]
        assert source.dkeys is not None and source.dvalues is not None  # training-mode sources have them
        dkeys = self._keys_backward(source)
        if source.values is None:
            return dkeys + source.dvalues, None
        return dkeys, source.dvalues

    def _keys_backward(self, source: _Source) -> np.ndarray:
        raise NotImplementedError


class AdditiveAttention(_Attention):
    """Additive (Bahdanau) attention with keys projected once per source (design.md §2 "Attention")::

        K' = keys W_k^T                                     (prepare: once per source)
        u = tanh(K' + q W_q^T + b_a)    s = u · w̃_v (+ b_e)    e = s, or relu(s) with energy_activation="relu"
        α = softmax over t' < lengths[b]      context = Σ_t' α[t'] values[t']
        w̃_v = w_v, or with normalize=True: g · w_v / ‖w_v‖ (TF-Addons' weight-normalised score vector)

    Parameters (PyTorch-style names): ``query_weight`` W_q [units, query_size], ``key_weight`` W_k [units,
    key_size], ``bias`` b_a [units] (bias=True), ``score_weight`` w_v [units], ``score_bias`` b_e [] (0-d,
    score_bias=True), ``gain`` g [] (0-d, normalize=True). The course's ``one_step_attention`` (Dense(tanh) over
    [s; a], then Dense(1, relu)) is ``energy_activation="relu", score_bias=True`` with the first Dense's kernel split
    into W_q and W_k.

    Init: as the PyTorch seq2seq tutorial's ``BahdanauAttention`` (its ``Wa``, ``Ua``, ``Va`` are ``nn.Linear``),
    each weight U(-1/√fan_in, 1/√fan_in): query_weight and bias by query_size, key_weight by key_size,
    score_weight and score_bias by units; gain √(1/units) (TF-Addons' initial g).
    """

    def __init__(self, query_size: int, key_size: int, units: int, value_size: int | None = None, bias: bool = True,
                 score_bias: bool = False, energy_activation: str | None = None, normalize: bool = False,
                 dtype: npt.DTypeLike = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype, seed)
        self.query_size = positive_int("query_size", query_size)
        self.key_size = positive_int("key_size", key_size)
        self.units = positive_int("units", units)
        self.value_size = self.key_size if value_size is None else positive_int("value_size", value_size)
        self.energy_activation: str | None = "relu" if energy_activation_name(energy_activation) else None
        self._add_parameter("query_weight", (self.units, self.query_size))
        self._add_parameter("key_weight", (self.units, self.key_size))
        for name, wanted, shape in (("bias", bias, (self.units,)), ("score_weight", True, (self.units,)),
                                    ("score_bias", score_bias, ()), ("gain", normalize, ())):
            if flag(name if name != "gain" else "normalize", wanted):
                self._add_parameter(name, shape)
            else:
                self.register_parameter(name, None)
        self.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        return dict(query_size=self.query_size, key_size=self.key_size, units=self.units,
                    value_size=self.value_size, bias="bias" in self._params, score_bias="score_bias" in self._params,
                    energy_activation=self.energy_activation, normalize="gain" in self._params,
                    dtype=self.dtype.name, seed=self._seed)

    def reset_parameters(self) -> None:
        """U(±1/√fan_in) per weight (fan_in: query_size for query_weight and bias, key_size for key_weight, units
        for score_weight and score_bias); gain √(1/units)."""
        fan_in = dict(query_weight=self.query_size, bias=self.query_size, key_weight=self.key_size,
                      score_weight=self.units, score_bias=self.units)
        for name, p in self._params.items():
            if name == "gain":
                p[...] = math.sqrt(1.0 / self.units)
            else:
                bound = 1.0 / math.sqrt(fan_in[name])
                p[...] = self._rng.uniform(-bound, bound, p.shape)

    def _checked_parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray,
                                           np.ndarray | None, np.ndarray | None]:
        """(query_weight, key_weight, bias, score_weight, score_bias, gain), each checked against the module's
        shapes and dtype (register_parameter may have replaced one)."""
        A = self.units
        query_weight, key_weight, bias, score_weight, score_bias, gain = module_parameters(self, {
            "query_weight": ((A, self.query_size), "[units, query_size]"),
            "key_weight": ((A, self.key_size), "[units, key_size]"), "bias": ((A,), "[units]"),
            "score_weight": ((A,), "[units]"), "score_bias": ((), "[] (0-d)"), "gain": ((), "[] (0-d)")})
        assert query_weight is not None and key_weight is not None and score_weight is not None  # always built
        return query_weight, key_weight, bias, score_weight, score_bias, gain

    def prepare(self, keys: np.ndarray, values: np.ndarray | None = None,
                lengths: npt.ArrayLike | None = None) -> None:
        """Projects the keys once for the calls that follow: keys [B, Tx, key_size], values [B, Tx, value_size]
        (None: the keys), lengths [B] in 0..Tx (None: every step). In training mode, records the source."""
        _, key_weight, *_ = self._checked_parameters()
        keys, values, lengths = _source_arrays(type(self).__name__, keys, values, lengths, self.key_size,
                                               self.value_size, self.dtype)
        if self.training:
            _zero_padding(keys, lengths)
        projected = additive_attention_keys(keys, key_weight)
        prepared = additive_attention_source(projected, keys if values is None else values, lengths)
        self._record_prepare(_Source(keys, values, lengths, prepared, projected.shape, self.training))

    def __call__(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One decoder step: query [B, query_size] -> (context [B, value_size], alpha [B, Tx])."""
        query_weight, _, bias, score_weight, score_bias, gain = self._checked_parameters()
        query = float_array("query", query, [("B", None), ("query_size", self.query_size)], self.dtype,
                            MODULE_DTYPE)
        source = self._current_source(query.shape[0])
        context, alpha, ws = additive_attention_forward(
            query, None, None, query_weight, bias, score_weight, score_bias=score_bias,
            energy_activation=self.energy_activation, normalize_gain=gain, training=self.training,
            source=source.prepared)  # the steps share the source's copies
        if self.training:
            source.pending += 1
            self.save_for_backward(("call", _Call(source, ws, query.shape)))
        return context, alpha

    def backward(self, dcontext: np.ndarray | None, dalpha: np.ndarray | None = None) -> np.ndarray:
        """Backward of the last recorded call (calls go back in reverse order): returns dquery [B, query_size];
        accumulates the parameters' gradients and the source's dK' and dvalues. ``dcontext`` [B, value_size] and
        ``dalpha`` [B, Tx] (None = zeros)."""
        call = self._pop_call()
        source = call.source
        try:
            g = additive_attention_backward(call.workspace, dcontext, dalpha, dprojected_keys=source.dkeys,
                                            dvalues=source.dvalues)
        except Exception:
            self._restore_saved(("call", call))  # a rejected gradient does not use up the call
            raise
        source.pending -= 1
        grads = self._grads
        grads["query_weight"] += g.dw_q
        grads["score_weight"] += g.dw_v
        for name, grad in (("bias", g.db_a), ("score_bias", g.dscore_bias), ("gain", g.dnormalize_gain)):
            if grad is not None:
                grads[name] += grad
        return g.dquery

    def _keys_backward(self, source: _Source) -> np.ndarray:
        _, key_weight, *_ = self._checked_parameters()
        assert source.dkeys is not None
        dkeys, dw_k = additive_attention_keys_backward(source.keys, key_weight, source.dkeys)
        self._grads["key_weight"] += dw_k
        return dkeys

    def __repr__(self) -> str:
        c = self.get_config()
        return (f"AdditiveAttention(query_size={c['query_size']}, key_size={c['key_size']}, units={c['units']}, "
                f"value_size={c['value_size']}, bias={c['bias']}, score_bias={c['score_bias']}, "
                f"energy_activation={c['energy_activation']!r}, normalize={c['normalize']}, dtype={c['dtype']})")


class LuongAttention(_Attention):
    """Luong attention (design.md §2 "Attention") over a prepared source::

        dot:     e = q · k                       (query_size = key_size)
        general: e = q W k^T                     weight W [query_size, key_size]
        concat:  e = v_a · tanh(W_a [q; k])      weight W_a [units, query_size + key_size], score_weight v_a [units]
        α = softmax over t' < lengths[b]         context = Σ_t' α[t'] values[t']

    ``att(query)`` takes one step, query [B, query_size] -> (context [B, Dv], alpha [B, Tx]), or every decoder step
    at once (attention after the recurrence), query [B, Ty, query_size] -> (context [B, Ty, Dv], alpha [B, Ty, Tx]),
    ``prepare`` takes general's and concat's key projection once per source; a call is then general's dot score
    against k W^T, or concat's additive attention (W_a = [W_q | W_k], v_a, no bias) step by step.

    Init: U(±1/√fan_in) as torch.nn.Linear: general's W by key_size (a Linear from keys to queries), concat's W_a
    by query_size + key_size and v_a by units. dot has no parameters; query_size/key_size are then optional (checked
    against each other when both are given).
    """

    def __init__(self, score: str = "dot", query_size: int | None = None, key_size: int | None = None,
                 units: int | None = None, dtype: npt.DTypeLike = np.float32, seed: int | None = None) -> None:
        super().__init__(dtype, seed)
        self.score = choice("score", score, LUONG_SCORES)
        needs = {"dot": (), "general": ("query_size", "key_size"), "concat": ("query_size", "key_size", "units")}
        given = dict(query_size=query_size, key_size=key_size, units=units)
        for name, value in given.items():
            if value is None and name in needs[self.score]:
                raise ValueError(f"LuongAttention(score={self.score!r}) needs {', '.join(needs[self.score])}: "
                                 f"{name} is missing")
            if value is not None and name == "units" and self.score != "concat":
                raise ValueError(f"LuongAttention: units is for score='concat' only, got units={value} with "
                                 f"score={self.score!r}")
        self.query_size = None if query_size is None else positive_int("query_size", query_size)
        self.key_size = None if key_size is None else positive_int("key_size", key_size)
        self.units = None if units is None else positive_int("units", units)
        if self.score == "dot" and None not in (self.query_size, self.key_size) and self.query_size != self.key_size:
            raise ValueError(f"LuongAttention(score='dot') needs query_size == key_size, got {self.query_size} and "
                             f"{self.key_size}")
        if self.score == "general":
            assert self.query_size is not None and self.key_size is not None
            self._add_parameter("weight", (self.query_size, self.key_size))
        elif self.score == "concat":
            assert self.query_size is not None and self.key_size is not None and self.units is not None
            self._add_parameter("weight", (self.units, self.query_size + self.key_size))
            self._add_parameter("score_weight", (self.units,))
        self.reset_parameters()

    def get_config(self) -> dict[str, Any]:
        return dict(score=self.score, query_size=self.query_size, key_size=self.key_size, units=self.units,
                    dtype=self.dtype.name, seed=self._seed)

    def reset_parameters(self) -> None:
        """U(±1/√fan_in): general W by key_size; concat W_a by query_size + key_size, v_a by units."""
        for name, p in self._params.items():
            fan_in = p.shape[1] if name == "weight" else p.shape[0]
            bound = 1.0 / math.sqrt(fan_in)
            p[...] = self._rng.uniform(-bound, bound, p.shape)

    def _checked_parameters(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        Dq, Dk, A = self.query_size, self.key_size, self.units
        expected: dict[str, tuple[tuple[int, ...], str]] = {}
        if self.score == "general":
            assert Dq is not None and Dk is not None
            expected["weight"] = ((Dq, Dk), "[query_size, key_size]")
        elif self.score == "concat":
            assert Dq is not None and Dk is not None and A is not None
            expected["weight"] = ((A, Dq + Dk), "[units, query_size + key_size]")
            expected["score_weight"] = ((A,), "[units]")
        params = module_parameters(self, expected)
        return (params[0] if params else None), (params[1] if len(params) > 1 else None)

    def _concat_weights(self, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """W_a [A, Dq + Dk] split into W_q [A, Dq] and W_k [A, Dk] (C-contiguous copies)."""
        Dq = self.query_size
        return np.ascontiguousarray(weight[:, :Dq]), np.ascontiguousarray(weight[:, Dq:])

    def prepare(self, keys: np.ndarray, values: np.ndarray | None = None,
                lengths: npt.ArrayLike | None = None) -> None:
        """The once-per-source work for the calls that follow: keys [B, Tx, key_size], values [B, Tx, Dv] (None:
        the keys), lengths [B] in 0..Tx (None: every step). general projects the keys once (k W^T: its calls are the
        dot score against them); concat projects them once (k W_k^T) into an additive source (its calls are additive
        attention with W_q, v_a and no bias). In training mode, records the source."""
        weight, _ = self._checked_parameters()
        key_size = self.query_size if self.score == "dot" and self.key_size is None else self.key_size
        keys_arg, values_arg, lengths_arg = _source_arrays(type(self).__name__, keys, values, lengths, key_size,
                                                           None, self.dtype)
        if self.training:
            _zero_padding(keys_arg, lengths_arg)
        prepared: Any = None
        dkeys_shape = keys_arg.shape
        if weight is not None:
            w_k = weight if self.score == "general" else self._concat_weights(weight)[1]
            projected = additive_attention_keys(keys_arg, w_k)  # k W^T (general) or k W_k^T (concat), once
            dkeys_shape = projected.shape
            prepared = projected if self.score == "general" else additive_attention_source(
                projected, keys_arg if values_arg is None else values_arg, lengths_arg)
        self._record_prepare(_Source(keys_arg, values_arg, lengths_arg, prepared, dkeys_shape, self.training))

    def __call__(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """query [B, query_size] (one step) or [B, Ty, query_size] (every step) -> (context, alpha)."""
        weight, score_weight = self._checked_parameters()
        query = float_array("query", query, None, self.dtype, MODULE_DTYPE)
        width = self.query_size if self.query_size is not None else (self.key_size if self.score == "dot" else None)
        if query.ndim not in (2, 3) or (width is not None and query.shape[-1] != width):
            raise ValueError(f"query must have shape [B, query_size] or [B, Ty, query_size] with query_size = "
                             f"{'?' if width is None else width}, got shape {query.shape}")
        source = self._current_source(query.shape[0])
        steps = query if query.ndim == 3 else query[:, None, :]
        if self.score == "concat":  # additive attention over the prepared source, step by step
            assert weight is not None and score_weight is not None
            w_q = self._concat_weights(weight)[0]
            outs = [additive_attention_forward(np.ascontiguousarray(steps[:, y]), None, None, w_q, None,
                                               score_weight, training=self.training, source=source.prepared)
                    for y in range(steps.shape[1])]
            context, alpha = np.stack([o[0] for o in outs], axis=1), np.stack([o[1] for o in outs], axis=1)
            workspace: Any = [o[2] for o in outs]
        else:  # dot against the keys, or (general) against k W^T taken once in prepare
            score_keys = source.keys if self.score == "dot" else source.prepared
            context, alpha, workspace = luong_attention_forward(steps, score_keys, source.values_or_keys, "dot",
                                                                lengths=source.lengths, training=self.training)
        if self.training:
            source.pending += 1
            self.save_for_backward(("call", _Call(source, workspace, query.shape)))
        if query.ndim == 2:
            return context[:, 0], alpha[:, 0]
        return context, alpha

    def backward(self, dcontext: np.ndarray | None, dalpha: np.ndarray | None = None) -> np.ndarray:
        """Backward of the last recorded call (calls go back in reverse order): returns dquery of that call's query
        shape; accumulates the parameters' gradients and the source's key and value gradients. ``dcontext`` and
        ``dalpha`` have the call's context and alpha shapes (None = zeros)."""
        call = self._pop_call()
        source = call.source
        one_step = len(call.query_shape) == 2
        assert source.dkeys is not None and source.dvalues is not None
        try:
            if one_step:  # a one-step call is Ty = 1
                dcontext = None if dcontext is None else self._one_step("dcontext", dcontext)
                dalpha = None if dalpha is None else self._one_step("dalpha", dalpha)
            if self.score == "concat":
                dquery = self._concat_backward(call, dcontext, dalpha)
            else:
                g = luong_attention_backward(call.workspace, dcontext, dalpha)
                source.dkeys += g.dkeys  # dot: dkeys; general: d(k W^T), projected back in prepare_backward
                source.dvalues += g.dvalues
                dquery = g.dquery
        except Exception:
            self._restore_saved(("call", call))  # a rejected gradient does not use up the call
            raise
        source.pending -= 1
        return dquery[:, 0] if one_step else dquery

    def _concat_backward(self, call: _Call, dcontext: np.ndarray | None, dalpha: np.ndarray | None) -> np.ndarray:
        """The steps of a concat call, last first: the additive backward of each, dK' and dvalues accumulated into
        the source; W_q's share of weight's gradient and v_a's gradient."""
        source, steps = call.source, len(call.workspace)
        B, Dq = call.query_shape[0], self.query_size
        ctx_shape = (B, steps, source.values_or_keys.shape[2])
        dcontext = None if dcontext is None else float_array("dcontext", dcontext, [(f"d{k}", n) for k, n in
                                                                                      enumerate(ctx_shape)],
                                                             self.dtype, MODULE_DTYPE)
        dalpha = None if dalpha is None else float_array("dalpha", dalpha, [("B", B), ("Ty", steps),
                                                                            ("Tx", source.keys.shape[1])],
                                                         self.dtype, MODULE_DTYPE)
        grads = [additive_attention_backward(ws, None if dcontext is None else dcontext[:, y],
                                             None if dalpha is None else dalpha[:, y],
                                             dprojected_keys=source.dkeys, dvalues=source.dvalues)
                 for y, ws in reversed(list(enumerate(call.workspace)))][::-1]
        for g in grads:
            self._grads["weight"][:, :Dq] += g.dw_q
            self._grads["score_weight"] += g.dw_v
        return np.stack([g.dquery for g in grads], axis=1)

    def _one_step(self, name: str, grad: Any) -> np.ndarray:
        a = float_array(name, grad, None, self.dtype, MODULE_DTYPE)
        if a.ndim != 2:
            raise ValueError(f"{name} must have the one-step call's shape [B, ...] (2-d), got shape {a.shape}")
        return a[:, None, :]

    def _keys_backward(self, source: _Source) -> np.ndarray:
        assert source.dkeys is not None
        weight, _ = self._checked_parameters()
        if weight is None:  # dot: the keys' own gradient
            return source.dkeys
        if self.score == "general":  # back through k W^T
            dkeys, dweight = additive_attention_keys_backward(source.keys, weight, source.dkeys)
            self._grads["weight"] += dweight
            return dkeys
        dkeys, dw_k = additive_attention_keys_backward(source.keys, self._concat_weights(weight)[1], source.dkeys)
        self._grads["weight"][:, self.query_size:] += dw_k  # back through k W_k^T
        return dkeys

    def __repr__(self) -> str:
        return (f"LuongAttention(score={self.score!r}, query_size={self.query_size}, key_size={self.key_size}, "
                f"units={self.units}, dtype={self.dtype.name})")
