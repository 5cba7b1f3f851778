"""Exact weight exchange with Keras 3 (``keras.layers.LSTM`` / ``GRU`` / ``SimpleRNN`` and their cells).

``from_keras(layer, keras_layer.get_weights(), layer_index=0, direction=0)`` copies a Keras layer's weights into
one layer and direction of an rnncore layer (``rc.LSTM``/``rc.GRU``/``rc.RNN``) or into a cell
(``rc.LSTMCell``/``rc.GRUCell``/``rc.RNNCell``), in place; ``to_keras(layer, layer_index, direction)`` returns the
list ``keras_layer.set_weights`` takes. For a Keras ``Bidirectional`` wrapper, ``get_weights()`` is the forward
layer's list followed by the backward layer's: pass each half with ``direction=0`` / ``1``. Only the weights move:
the caller builds the rnncore layer with the matching sizes, ``bias`` (= Keras ``use_bias``), ``reset_after``,
activation (``nonlinearity`` = SimpleRNN's ``activation``, tanh or relu) and ``batch_first=True`` if the data is
Keras-shaped. Keras's defaults ``recurrent_activation="sigmoid"``, ``activation="tanh"`` are what rnncore computes.

Layouts (``I`` inputs, ``H`` units; rnncore = PyTorch's layout, docs/design.md section 1)
--------------------------------------------------------------------------------
=============  =====================================  ==================================================
               Keras ``get_weights()``                rnncore ``parameters()``
=============  =====================================  ==================================================
LSTM           kernel ``[I, 4H]``  gates i, f, c, o   weight_ih ``[4H, I]``  gates i, f, g, o  (g = c)
               recurrent_kernel ``[H, 4H]``           weight_hh ``[4H, H]``
               bias ``[4H]``                          bias_ih ``[4H]``, bias_hh ``[4H]``
GRU            kernel ``[I, 3H]``  gates z, r, h      weight_ih ``[3H, I]``  gates r, z, n  (n = h)
               recurrent_kernel ``[H, 3H]``           weight_hh ``[3H, H]``
               reset_after=True:  bias ``[2, 3H]``    bias_ih ``[3H]``, bias_hh ``[3H]``
               (row 0 input bias, row 1 recurrent)
               reset_after=False: bias ``[3H]``
SimpleRNN      kernel ``[I, H]``, recurrent ``[H, H]``,  weight_ih ``[H, I]``, weight_hh ``[H, H]``,
               bias ``[H]``                           bias_ih ``[H]``, bias_hh ``[H]``
=============  =====================================  ==================================================
``use_bias=False`` drops Keras's bias and corresponds to an rnncore layer built with ``bias=False``.

Equations side by side (Keras left, rnncore right; row vectors, ``x W`` in Keras is ``x W^T`` here)
----------------------------------------------------------------------------------------------------
LSTM::

    [i f c o] = x K + h R + b                 [i f g o] = x W_ih^T + b_ih + h W_hh^T + b_hh
    c_t = f c_{t-1} + i tanh(c)               c_t = f c_{t-1} + i g        (g = tanh(.))
    h_t = o tanh(c_t)                         h_t = o tanh(c_t)

    =>  W_ih = K^T, W_hh = R^T (same gate order), b_ih = b, b_hh = 0;  back: b = b_ih + b_hh.

GRU, reset_after=True (Keras's default, PyTorch's and cuDNN's GRU)::

    z = σ(x K_z + b0_z + h R_z + b1_z)        z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)
    r = σ(x K_r + b0_r + h R_r + b1_r)        r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)
    h~ = tanh(x K_h + b0_h + r (h R_h + b1_h))  n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))
    h_t = z h_{t-1} + (1 - z) h~              h_t = (1 - z) n + z h_{t-1}

    =>  blocks reorder (z, r, h) -> (r, z, n); W_ih = K^T, W_hh = R^T, b_ih = bias[0], b_hh = bias[1], both
        ways, exactly (no arithmetic at all).

GRU, reset_after=False (Cho et al. 2014)::

    z = σ(x K_z + h R_z + b_z)                z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)
    r = σ(x K_r + h R_r + b_r)                r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)
    h~ = tanh(x K_h + b_h + (r h) R_h)        n = tanh(x W_in^T + b_in + (r h) W_hn^T + b_hn)

    Keras has one bias. For z and r the two rnncore biases sit in the same sum; for n, ``b_hn`` sits OUTSIDE
    ``r (.)`` in this variant (unlike reset_after=True), so ``b_in + b_hn`` enters exactly where Keras's ``b_h``
    does. Hence  =>  b_ih = b (reordered), b_hh = 0;  back: b = b_ih + b_hh, which is the SAME function for any
    b_hh (never an approximation — only the one float addition rounds). (For reset_after=True that sum would be
    wrong — ``r`` multiplies b_hn — which is why Keras keeps two bias rows there.)

SimpleRNN::

    h_t = act(x K + h R + b)                  h_t = act(x W_ih^T + b_ih + h W_hh^T + b_hh)

    =>  W_ih = K^T, W_hh = R^T, b_ih = b, b_hh = 0;  back: b = b_ih + b_hh.

Exactness
---------
Weights only transpose and permute gate blocks, so they round-trip bit-exactly both ways. Keras -> rnncore ->
Keras is bit-exact for every layer (``b + 0 == b``). rnncore -> Keras -> rnncore is bit-exact for the GRU with
reset_after=True always, and for LSTM / GRU(reset_after=False) / RNN when ``bias_hh`` is zero (otherwise
``bias_ih`` comes back as the rounded ``b_ih + b_hh`` and ``bias_hh`` as 0: the same function, up to that one
rounding in the bias). Values are cast to the rnncore layer's dtype (float32 or float64) on the way in; ``to_keras``
returns arrays in the layer's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar, Union

import numpy as np

from ._cell_table import CellKind
from ._validation import cell_position, index_below, keras_array, keras_bias_rows, keras_weight_count, layer_kind
from .layers import _Cell, _Recurrent

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["from_keras", "to_keras"]

_Layer = TypeVar("_Layer", bound=Union[_Recurrent, _Cell])  # from_keras returns the layer it was given


def _kind(layer: _Recurrent | _Cell) -> CellKind:
    """The cell-table row of an rnncore layer or cell (its weights' Keras layout is ``kind.keras``)."""
    return layer_kind(layer, (_Recurrent, _Cell))


def _target(layer: _Recurrent | _Cell, layer_index: int, direction: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The four parameter arrays (w_ih, w_hh, b_ih, b_hh; biases None without bias) of one layer/direction."""
    if isinstance(layer, _Cell):
        cell_position(layer_index, direction)
        p = layer.parameters()
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")
    assert isinstance(layer, _Recurrent)
    layer_index = index_below("layer_index", layer_index, layer.num_layers)
    direction = index_below("direction", direction, layer.num_directions,
                            f" (bidirectional={layer.bidirectional})")
    p = layer.parameters()
    s = layer._suffix(layer_index, direction)
    return p[f"weight_ih{s}"], p[f"weight_hh{s}"], p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}")


def _two_bias_rows(layer: _Recurrent | _Cell, kind: CellKind) -> bool:
    """Whether Keras keeps this layer's bias as two rows [input; recurrent] (GRU reset_after=True)."""
    option = kind.keras.two_bias_rows_option
    return option is not None and bool(layer._cell_options[option])


def _perm(kind: CellKind, H: int) -> np.ndarray:
    """Row index mapping Keras's gate blocks to rnncore's: rnncore block j = Keras block perm[j]
    (GRU: Keras z, r, h -> rnncore r, z, n; LSTM i, f, c, o == i, f, g, o; RNN one block)."""
    return np.concatenate([np.arange(b * H, (b + 1) * H) for b in kind.keras.gate_order])


def _expected(layer: _Recurrent | _Cell, kind: CellKind, w_ih: np.ndarray
              ) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """Keras weight names and shapes for this layer (from the rnncore target's sizes)."""
    GH, I = w_ih.shape
    H = w_ih.shape[0] // kind.n_gates
    spec: list[tuple[str, tuple[int, ...]]] = [("kernel", (I, GH)), ("recurrent_kernel", (H, GH))]
    if layer.bias:
        spec.append(("bias", (2, GH) if _two_bias_rows(layer, kind) else (GH,)))
    return spec, H


def from_keras(layer: _Layer, keras_weights: Sequence[npt.ArrayLike] | np.ndarray, layer_index: int = 0,
               direction: int = 0) -> _Layer:
    """Copy a Keras LSTM/GRU/SimpleRNN's ``get_weights()`` list (``[kernel, recurrent_kernel(, bias)]``) into
    layer ``layer_index``, direction ``direction`` of the rnncore ``layer`` (or into a cell), in place, cast to the
    layer's dtype. Returns ``layer``. Raises ``ValueError`` on a count/shape mismatch (naming the Keras weight) or a
    GRU whose ``reset_after`` differs from the Keras layer's (told apart by the bias shape), before copying anything.
    """
    kind = _kind(layer)
    w_ih, w_hh, b_ih, b_hh = _target(layer, layer_index, direction)
    spec, H = _expected(layer, kind, w_ih)
    weights = list(keras_weights) if not isinstance(keras_weights, np.ndarray) else [keras_weights]
    option = kind.keras.two_bias_rows_option
    if option is not None and layer.bias and len(weights) == 3:
        keras_bias_rows(kind.title, option, _two_bias_rows(layer, kind), weights[2])
    keras_weight_count(kind.keras.layer, spec, weights, layer.bias)
    arrays = [keras_array(kind.keras.layer, name, a, shape) for (name, shape), a in zip(spec, weights)]
    perm = _perm(kind, H)
    dt = w_ih.dtype
    # Everything validated: copy.
    w_ih[...] = arrays[0].T[perm].astype(dt, copy=False)
    w_hh[...] = arrays[1].T[perm].astype(dt, copy=False)
    if layer.bias:
        assert b_ih is not None and b_hh is not None  # a layer with bias has both
        bias = arrays[2]
        if bias.ndim == 2:  # GRU reset_after=True: row 0 input, row 1 recurrent
            b_ih[...] = bias[0][perm].astype(dt, copy=False)
            b_hh[...] = bias[1][perm].astype(dt, copy=False)
        else:
            b_ih[...] = bias[perm].astype(dt, copy=False)
            b_hh[...] = 0.0
    return layer


def to_keras(layer: _Recurrent | _Cell, layer_index: int = 0, direction: int = 0) -> list[np.ndarray]:
    """The ``[kernel, recurrent_kernel(, bias)]`` list for ``keras_layer.set_weights`` from layer ``layer_index``,
    direction ``direction`` of the rnncore ``layer`` (or a cell), in the layer's dtype (new arrays). LSTM, RNN and
    GRU(reset_after=False) fold the two rnncore biases into Keras's one (``b_ih + b_hh``, an exact reparametrisation
    of the same function — see the module docstring); GRU(reset_after=True) gives ``bias = [b_ih; b_hh]``."""
    kind = _kind(layer)
    w_ih, w_hh, b_ih, b_hh = _target(layer, layer_index, direction)
    _, H = _expected(layer, kind, w_ih)
    perm = _perm(kind, H)
    inv = np.argsort(perm)  # Keras block k = rnncore block inv[k]
    out = [np.ascontiguousarray(w_ih[inv].T), np.ascontiguousarray(w_hh[inv].T)]
    if layer.bias:
        assert b_ih is not None and b_hh is not None  # a layer with bias has both
        if _two_bias_rows(layer, kind):
            out.append(np.stack([b_ih[inv], b_hh[inv]]))
        else:
            out.append((b_ih + b_hh)[inv])
    return out
