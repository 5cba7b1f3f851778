"""The recurrent cells in plain NumPy: the twins of ``rnncore.ops.rnn``.

Shapes (docs/design.md section 1): one layer, one direction, time-major.
``T`` time steps, ``B`` batch, ``I`` input features, ``H`` hidden units, ``G`` gates (RNN 1, GRU 3, LSTM 4).
``x [T, B, I]``, ``h0, c0 [B, H]``, ``w_ih [G*H, I]``, ``w_hh [G*H, H]``, ``b_ih, b_hh [G*H]``, ``y [T, B, H]``,
``h_n, c_n [B, H]``, ``lengths [B]`` ints with ``1 <= lengths[b] <= T``. Weights use PyTorch's layout; the gate
blocks inside ``G*H`` are in the order LSTM ``i, f, g, o``, GRU ``r, z, n``.

Equations (docs/design.md section 2), PyTorch notation, with Andrew Ng's Sequence Models notation in brackets
(``a`` = h; LSTM ``Γu`` = i, ``Γf`` = f, ``Γo`` = o, ``c̃`` = g;
GRU ``Γu`` = 1 - z, ``Γr`` = r, ``c̃`` = n, and that notation calls the GRU's hidden state ``c`` = ``a`` = h)::

    LSTM   [i f g o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
           i, f, o = σ(.)   g = tanh(.)
           c_t = f ⊙ c_{t-1} + i ⊙ g           [c<t> = Γu * c̃<t> + Γf * c<t-1>]
           h_t = o ⊙ tanh(c_t)                 [a<t> = Γo * tanh(c<t>)]

    GRU    r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)            [Γr]
           z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)            [1 - Γu]
           reset_after=True  (PyTorch, cuDNN, Keras default):
           n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn))
           reset_after=False (Cho et al. 2014, the "full GRU" of that notation):
           n = tanh(x W_in^T + b_in + (r ⊙ h) W_hn^T + b_hn)   [c̃<t> = tanh(w_c [Γr * c<t-1>, x<t>] + b_c)]
           h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}                     [c<t> = Γu * c̃<t> + (1 - Γu) * c<t-1>]

    RNN    h_t = act(x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),  act ∈ {tanh, relu}
                                                               [a<t> = g(w_aa a<t-1> + w_ax x<t> + b_a)]

Variable lengths (right padding, exactly PyTorch's packed sequences): a step ``t >= lengths[b]`` is *inactive* for
sample ``b``: it writes ``y[t, b] = 0``, leaves the state (h and c) of sample ``b`` untouched, so ``h_n[b]`` is the
state after step ``lengths[b] - 1``, and it gets no gradient: ``dy[t, b]`` is ignored and the gradient of the
state passes through it unchanged.

Streaming (``*_stepper``): one time step per call with the state kept, the twin of the C++ stepper; the step is the
same ``_*_step`` function the sequence forward runs.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._validation import no_cell_state, stepper_input, stepper_states
from ._common import (
    _active_steps,
    _cast,
    _dsigmoid,
    _dtanh,
    _f64,
    _linear,
    _linear_backward,
    _or_zeros,
    _result_dtype,
    _sigmoid,
    _split_gates,
)

__all__ = [
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
    "rnn_forward", "rnn_backward",
    "lstm_stepper", "gru_stepper", "rnn_stepper",
]


# ----------------------------------------------------------------------------------------------------------------
# One time step of each cell, forward and backward.
#
# A cell's state is a tuple: (h,) for GRU and RNN, (h, c) for LSTM. ``xw_t [B, G*H]`` is the input projection
# x_t W_ih^T + b_ih of this step (computed for all steps at once). A step forward returns (new_state, saved): what
# its backward needs besides the previous state. A step backward receives the gradient of the loss with respect
# to the new state and returns (dxw_t, dw_hh, db_hh, dstate_prev), where dxw_t [B, G*H] is the gradient with
# respect to xw_t (= the gradient of the gate pre-activations along the input path).
# ----------------------------------------------------------------------------------------------------------------

def _lstm_step(xw_t, state, w_hh, b_hh):
    """c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t), with [i f g o] = xw_t + h_{t-1} W_hh^T + b_hh."""
    h, c = state
    i, f, g, o = _split_gates(xw_t + _linear(h, w_hh, b_hh), 4)
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    return (o * tanh_c, c_new), (i, f, g, o, tanh_c)


def _lstm_step_backward(saved, state_prev, dstate, w_hh):
    """Backward of ``_lstm_step``.

    dc_t (total) = dc_t + dh_t ⊙ o ⊙ (1 - tanh²(c_t))
    do = dh_t ⊙ tanh(c_t)   di = dc_t ⊙ g   df = dc_t ⊙ c_{t-1}   dg = dc_t ⊙ i   dc_{t-1} = dc_t ⊙ f
    pre-activation gradients: σ' = s(1-s) for i, f, o and tanh' = 1 - g² for g; then
    dh_{t-1} = dgates W_hh, dW_hh = dgates^T h_{t-1}, db_hh = Σ_B dgates (and dxw_t = dgates).
    """
    h, c = state_prev
    dh, dc = dstate
    i, f, g, o, tanh_c = saved
    dc = dc + dh * o * _dtanh(tanh_c)
    dgates = np.concatenate([
        dc * g * _dsigmoid(i),
        dc * c * _dsigmoid(f),
        dc * i * _dtanh(g),
        dh * tanh_c * _dsigmoid(o),
    ], axis=-1)
    dh_prev, dw_hh, db_hh = _linear_backward(dgates, h, w_hh)
    return dgates, dw_hh, db_hh, (dh_prev, dc * f)


def _gru_step(xw_t, state, w_hh, b_hh, reset_after):
    """h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}, r, z = σ(.), n = tanh(.) (see the module docstring for both variants)."""
    (h,) = state
    x_r, x_z, x_n = _split_gates(xw_t, 3)
    w_rz, w_n = w_hh[: 2 * h.shape[-1]], w_hh[2 * h.shape[-1]:]
    b_rz, b_n = b_hh[: 2 * h.shape[-1]], b_hh[2 * h.shape[-1]:]
    h_r, h_z = _split_gates(_linear(h, w_rz, b_rz), 2)
    r, z = _sigmoid(x_r + h_r), _sigmoid(x_z + h_z)
    if reset_after:
        h_n = _linear(h, w_n, b_n)            # h W_hn^T + b_hn, reset applied after the product
        n = np.tanh(x_n + r * h_n)
    else:
        h_n = _linear(r * h, w_n, b_n)        # (r ⊙ h) W_hn^T + b_hn, reset applied before the product
        n = np.tanh(x_n + h_n)
    return ((1.0 - z) * n + z * h,), (r, z, n, h_n)


def _gru_step_backward(saved, state_prev, dstate, w_hh, reset_after):
    """Backward of ``_gru_step``.

    dn = dh_t ⊙ (1 - z)   dz = dh_t ⊙ (h_{t-1} - n)   dh_{t-1} (direct) = dh_t ⊙ z
    dn_pre = dn ⊙ (1 - n²)   dz_pre = dz ⊙ z(1 - z)   dr_pre = dr ⊙ r(1 - r)
    reset_after=True:  dr = dn_pre ⊙ (h W_hn^T + b_hn), the hidden n-path gets dn_pre ⊙ r;
                       all three gates then go through one product with W_hh.
    reset_after=False: the n-path goes through W_hn with input r ⊙ h: d(r ⊙ h) = dn_pre W_hn,
                       dr = d(r ⊙ h) ⊙ h_{t-1}, dh_{t-1} += d(r ⊙ h) ⊙ r, dW_hn = dn_pre^T (r ⊙ h).
    """
    (h,) = state_prev
    (dh,) = dstate
    r, z, n, h_n = saved
    hidden = h.shape[-1]
    dn_pre = dh * (1.0 - z) * _dtanh(n)
    dz_pre = dh * (h - n) * _dsigmoid(z)
    dh_prev = dh * z
    if reset_after:
        dr_pre = dn_pre * h_n * _dsigmoid(r)
        dh_lin, dw_hh, db_hh = _linear_backward(np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=-1), h, w_hh)
        dh_prev = dh_prev + dh_lin
    else:
        d_rh, dw_hn, db_hn = _linear_backward(dn_pre, r * h, w_hh[2 * hidden:])
        dr_pre = d_rh * h * _dsigmoid(r)
        dh_lin, dw_rz, db_rz = _linear_backward(np.concatenate([dr_pre, dz_pre], axis=-1), h, w_hh[: 2 * hidden])
        dh_prev = dh_prev + d_rh * r + dh_lin
        dw_hh = np.concatenate([dw_rz, dw_hn], axis=0)
        db_hh = np.concatenate([db_rz, db_hn], axis=0)
    return np.concatenate([dr_pre, dz_pre, dn_pre], axis=-1), dw_hh, db_hh, (dh_prev,)


def _rnn_step(xw_t, state, w_hh, b_hh, nonlinearity):
    """h_t = act(xw_t + h_{t-1} W_hh^T + b_hh), act = tanh or relu."""
    (h,) = state
    pre = xw_t + _linear(h, w_hh, b_hh)
    h_new = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0.0)
    return (h_new,), (h_new,)


def _rnn_step_backward(saved, state_prev, dstate, w_hh, nonlinearity):
    """Backward of ``_rnn_step``: dpre = dh_t ⊙ act'(.), with tanh' = 1 - h_t² and relu' = [h_t > 0] (as torch);
    then dh_{t-1} = dpre W_hh, dW_hh = dpre^T h_{t-1}, db_hh = Σ_B dpre."""
    (h,) = state_prev
    (dh,) = dstate
    (h_new,) = saved
    dpre = dh * (_dtanh(h_new) if nonlinearity == "tanh" else (h_new > 0.0))
    dh_prev, dw_hh, db_hh = _linear_backward(dpre, h, w_hh)
    return dpre, dw_hh, db_hh, (dh_prev,)


# cell -> (its step forward, its step backward)
_STEPS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "lstm": (_lstm_step, _lstm_step_backward),
    "gru": (_gru_step, _gru_step_backward),
    "rnn": (_rnn_step, _rnn_step_backward),
}


# ----------------------------------------------------------------------------------------------------------------
# The time loop, shared by the three cells.
# ----------------------------------------------------------------------------------------------------------------

def _forward_through_time(cell, options, x, state0, w_ih, w_hh, b_ih, b_hh, lengths, training, out=None):
    """Run ``cell`` over the T steps of ``x``; returns (y, final state tuple, cache or None), all in x's dtype; y
    written into ``out`` (an array of its shape, any strides) and returned as it, when given (the ops' out=).

    Inactive steps (t >= lengths[b]) write y = 0 and keep the previous state of sample b. Integer ``x [T, B]``:
    one-hot inputs given by their indices, the rows of the identity (results then in w_ih's dtype).
    """
    one_hot = _is_one_hot(x)
    out_dtype = _result_dtype(w_ih if one_hot else x)
    if one_hot:
        x = np.eye(np.shape(w_ih)[1])[np.asarray(x)]
    x, w_ih, w_hh = _f64(x), _f64(w_ih), _f64(w_hh)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    state = tuple(_or_zeros(s, (B, H)) for s in state0)
    active = _active_steps(lengths, T, B)
    step, _ = _STEPS[cell]

    xw = _linear(x, w_ih, _or_zeros(b_ih, w_ih.shape[0]))          # [T, B, G*H], x W_ih^T + b_ih for all steps
    b_hh64 = _or_zeros(b_hh, w_hh.shape[0])
    y = np.zeros((T, B, H))
    states_prev, saved_steps = [], []
    for t in range(T):
        new_state, saved = step(xw[t], state, w_hh, b_hh64, **options)
        y[t] = np.where(active[t], new_state[0], 0.0)
        states_prev.append(state)
        saved_steps.append(saved)
        state = tuple(np.where(active[t], new, old) for new, old in zip(new_state, state))

    cache = None
    if training:
        cache = dict(
            cell=cell, options=dict(options), dtype=out_dtype, one_hot=one_hot,
            x=x, w_ih=w_ih, w_hh=w_hh, has_b_ih=b_ih is not None, has_b_hh=b_hh is not None,
            active=active, states_prev=states_prev, saved=saved_steps,
        )
    if out is not None:
        out[...] = y
    return y.astype(out_dtype) if out is None else out, tuple(s.astype(out_dtype) for s in state), cache


def _is_one_hot(x):
    """Whether a forward's ``x`` holds one-hot inputs as their indices: an integer (not bool) array [T, B]."""
    a = np.asarray(x)
    return a.ndim == 2 and a.dtype != np.bool_ and np.issubdtype(a.dtype, np.integer)


def _backward_through_time(cell, cache, dy, dstate_n, need_dx=True):
    """BPTT through the forward that produced ``cache``; ``dstate_n`` is a tuple of [B, H] gradients (or Nones).

    Returns (dx, dstate0 tuple, dw_ih, dw_hh, db_ih, db_hh) in the forward input's dtype; dx is None when
    ``need_dx`` is false or the inputs were one-hot indices.
    At an inactive step the incoming gradient of sample b is zeroed before the step's backward (so it contributes
    nothing to any gradient, and dy[t, b] is ignored) and the state gradient of sample b is passed through unchanged.
    """
    if cache["cell"] != cell:
        raise ValueError(f"cache: expected a cache from {cell}_forward, received one from {cache['cell']}_forward")
    x, w_ih, w_hh, active = cache["x"], cache["w_ih"], cache["w_hh"], cache["active"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    _, step_backward = _STEPS[cell]
    dy = _or_zeros(dy, (T, B, H))
    dstate = tuple(_or_zeros(d, (B, H)) for d in dstate_n)

    dxw = np.zeros((T, B, w_ih.shape[0]))
    dw_hh = np.zeros_like(w_hh)
    db_hh: np.ndarray | None = np.zeros(w_hh.shape[0])  # None without b_hh (after the loop)
    for t in reversed(range(T)):
        dstate_t = (dstate[0] + dy[t],) + dstate[1:]              # h_t feeds both y[t] and the next step
        dstate_t = tuple(np.where(active[t], d, 0.0) for d in dstate_t)
        dxw[t], dw_hh_t, db_hh_t, dstate_prev = step_backward(
            cache["saved"][t], cache["states_prev"][t], dstate_t, w_hh, **cache["options"])
        dw_hh += dw_hh_t
        db_hh += db_hh_t
        dstate = tuple(np.where(active[t], d_prev, d) for d_prev, d in zip(dstate_prev, dstate))

    dx = dxw @ w_ih if need_dx and not cache["one_hot"] else None  # [T, B, I]
    dw_ih = np.einsum("tbg,tbi->gi", dxw, x)                       # Σ_t dxw[t]^T x[t]
    db_ih = dxw.sum(axis=(0, 1)) if cache["has_b_ih"] else None
    db_hh = db_hh if cache["has_b_hh"] else None
    out = cache["dtype"]
    return (_cast(dx, out), tuple(d.astype(out) for d in dstate),
            dw_ih.astype(out), dw_hh.astype(out), _cast(db_ih, out), _cast(db_hh, out))


# ----------------------------------------------------------------------------------------------------------------
# Public ops
# ----------------------------------------------------------------------------------------------------------------

def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, training=True, out=None):
    """LSTM forward over T steps, one layer, one direction.

    [i f g o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh;  i, f, o = σ(.), g = tanh(.)
    c_t = f ⊙ c_{t-1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)
    Course notation: Γu = i, Γf = f, Γo = o, c̃ = g, a = h:
    c<t> = Γu * c̃<t> + Γf * c<t-1>,  a<t> = Γo * tanh(c<t>).

    Args:
        x:        [T, B, I] inputs (float32 or float64; outputs have this dtype), or integer [T, B]: one-hot inputs
                  given by their indices in 0..I-1 (outputs in w_ih's dtype; backward gives no dx).
        h0:       [B, H] initial hidden state, or None for zeros.
        c0:       [B, H] initial cell state, or None for zeros.
        w_ih:     [4H, I] input-to-hidden weights (PyTorch weight_ih_l0), gate blocks i, f, g, o.
        w_hh:     [4H, H] hidden-to-hidden weights (PyTorch weight_hh_l0), same gate blocks.
        b_ih:     [4H] input bias (PyTorch bias_ih_l0), or None for no bias.
        b_hh:     [4H] hidden bias (PyTorch bias_hh_l0), or None for no bias.
        lengths:  [B] ints, 1 <= lengths[b] <= T: valid steps per sample (right padding); None = all T steps.
        training: if False, nothing is kept for the backward and the cache returned is None.
        out:      [T, B, H] array (any strides) y is written into and returned as, or None (the ops' out=).

    Returns:
        y:     [T, B, H] h_t at every step (0 at steps t >= lengths[b]).
        h_n:   [B, H] hidden state after the last valid step of each sample.
        c_n:   [B, H] cell state after the last valid step of each sample.
        cache: dict for ``lstm_backward`` (None when training=False): the float64 inputs and weights, which biases
               exist, the ``active [T, B, 1]`` step mask, the state (h, c) entering every step, and per step the
               post-activation gates i, f, g, o and tanh(c_t).
    """
    y, (h_n, c_n), cache = _forward_through_time(
        "lstm", {}, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths, training, out)
    return y, h_n, c_n, cache


def lstm_backward(cache, dy, dh_n=None, dc_n=None, need_dx=True):
    """Backpropagation through time for ``lstm_forward``; the loss is Σ y⊙dy + Σ h_n⊙dh_n + Σ c_n⊙dc_n.

    Identities used, per step from t = T-1 down to 0 (gradients of h_t, c_t are dh, dc):
        dh = dh_{from t+1} + dy[t]
        dc = dc_{from t+1} + dh ⊙ o ⊙ (1 - tanh²(c_t))            tanh' = 1 - y²
        do = dh ⊙ tanh(c_t),  di = dc ⊙ g,  df = dc ⊙ c_{t-1},  dg = dc ⊙ i
        d(pre-activation) = di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)     σ' = s(1-s)
        dc_{t-1} = dc ⊙ f   (d c_t / d c_{t-1} = f)
        dh_{t-1} = dgates W_hh
    then dx = dgates W_ih, dW_ih = Σ_t dgates_t^T x_t, dW_hh = Σ_t dgates_t^T h_{t-1},
    db_ih = db_hh = Σ_{t,B} dgates.
    Steps t >= lengths[b] ignore dy[t, b] and pass dh, dc of sample b through unchanged.

    Args:
        cache: the cache returned by ``lstm_forward(..., training=True)``.
        dy:    [T, B, H] gradient of the loss with respect to y, or None for zeros.
        dh_n:  [B, H] gradient with respect to h_n, or None for zeros.
        dc_n:  [B, H] gradient with respect to c_n, or None for zeros.
        need_dx: False skips dx (returned as None), as does a forward on one-hot indices.

    Returns:
        (dx [T, B, I] or None, dh0 [B, H], dc0 [B, H], dw_ih [4H, I], dw_hh [4H, H], db_ih [4H] or None,
        db_hh [4H] or None), in the dtype of the forward's x; a bias gradient is None when that bias was None.
    """
    dx, (dh0, dc0), dw_ih, dw_hh, db_ih, db_hh = _backward_through_time("lstm", cache, dy, (dh_n, dc_n), need_dx)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, training=True, reset_after=True, out=None):
    """GRU forward over T steps, one layer, one direction.

    r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr),  z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)
    reset_after=True  (PyTorch, cuDNN, Keras default): n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn))
    reset_after=False (Cho et al. 2014, Keras reset_after=False): n = tanh(x W_in^T + b_in + (r ⊙ h) W_hn^T + b_hn)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    Course notation: Γr = r, Γu = 1 - z, c̃ = n, c = a = h:
    c̃<t> = tanh(w_c [Γr * c<t-1>, x<t>] + b_c) (the reset_after=False form),
    c<t> = Γu * c̃<t> + (1 - Γu) * c<t-1>.

    Args:
        x:        [T, B, I] inputs (float32 or float64; outputs have this dtype), or integer [T, B]: one-hot inputs
                  given by their indices in 0..I-1 (outputs in w_ih's dtype; backward gives no dx).
        h0:       [B, H] initial hidden state, or None for zeros.
        w_ih:     [3H, I] input-to-hidden weights (PyTorch weight_ih_l0), gate blocks r, z, n.
        w_hh:     [3H, H] hidden-to-hidden weights (PyTorch weight_hh_l0), same gate blocks.
        b_ih:     [3H] input bias (PyTorch bias_ih_l0), or None for no bias.
        b_hh:     [3H] hidden bias (PyTorch bias_hh_l0), or None for no bias.
        lengths:  [B] ints, 1 <= lengths[b] <= T: valid steps per sample (right padding); None = all T steps.
        training: if False, nothing is kept for the backward and the cache returned is None.
        out:      [T, B, H] array (any strides) y is written into and returned as, or None (the ops' out=).
        reset_after: which candidate equation to use (above).

    Returns:
        y:     [T, B, H] h_t at every step (0 at steps t >= lengths[b]).
        h_n:   [B, H] hidden state after the last valid step of each sample.
        cache: dict for ``gru_backward`` (None when training=False): the float64 inputs and weights, which biases
               exist, the ``active [T, B, 1]`` step mask, the state (h,) entering every step, reset_after, and per
               step r, z, n and the hidden n-path pre-activation (h W_hn^T + b_hn, or (r ⊙ h) W_hn^T + b_hn).
    """
    y, (h_n,), cache = _forward_through_time(
        "gru", dict(reset_after=bool(reset_after)), x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, training, out)
    return y, h_n, cache


def gru_backward(cache, dy, dh_n=None, need_dx=True):
    """Backpropagation through time for ``gru_forward``; the loss is Σ y⊙dy + Σ h_n⊙dh_n.

    Identities used, per step from t = T-1 down to 0 (gradient of h_t is dh = dh_{from t+1} + dy[t]):
        dn = dh ⊙ (1 - z),  dz = dh ⊙ (h_{t-1} - n),  dh_{t-1} ⊇ dh ⊙ z      (d h_t / d h_{t-1} = z directly)
        dn_pre = dn ⊙ (1 - n²)  (tanh' = 1 - y²),  dz_pre = dz ⊙ z(1-z),  dr_pre = dr ⊙ r(1-r)  (σ' = s(1-s))
        reset_after=True:  dr = dn_pre ⊙ (h W_hn^T + b_hn); the hidden product receives [dr_pre, dz_pre, dn_pre ⊙ r]
                           and dh_{t-1} ⊇ that W_hh
        reset_after=False: d(r ⊙ h) = dn_pre W_hn, dr = d(r ⊙ h) ⊙ h_{t-1}, dh_{t-1} ⊇ d(r ⊙ h) ⊙ r,
                           dW_hn = Σ dn_pre^T (r ⊙ h), dh_{t-1} ⊇ [dr_pre, dz_pre] W_h(r,z)
    then dx = dgates W_ih, dW_ih = Σ_t dgates_t^T x_t, db_ih = Σ_{t,B} dgates with dgates = [dr_pre, dz_pre, dn_pre].
    Steps t >= lengths[b] ignore dy[t, b] and pass dh of sample b through unchanged.

    Args:
        cache: the cache returned by ``gru_forward(..., training=True)``.
        dy:    [T, B, H] gradient of the loss with respect to y, or None for zeros.
        dh_n:  [B, H] gradient with respect to h_n, or None for zeros.
        need_dx: False skips dx (returned as None), as does a forward on one-hot indices.

    Returns:
        (dx [T, B, I] or None, dh0 [B, H], dw_ih [3H, I], dw_hh [3H, H], db_ih [3H] or None, db_hh [3H] or None),
        in the dtype of the forward's x; a bias gradient is None when that bias was None.
    """
    dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh = _backward_through_time("gru", cache, dy, (dh_n,), need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, training=True, nonlinearity="tanh", out=None):
    """Simple (Elman) RNN forward over T steps, one layer, one direction.

    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),  act = tanh or relu
    Course notation: a<t> = g(w_aa a<t-1> + w_ax x<t> + b_a).

    Args:
        x:        [T, B, I] inputs (float32 or float64; outputs have this dtype), or integer [T, B]: one-hot inputs
                  given by their indices in 0..I-1 (outputs in w_ih's dtype; backward gives no dx).
        h0:       [B, H] initial hidden state, or None for zeros.
        w_ih:     [H, I] input-to-hidden weights (PyTorch weight_ih_l0).
        w_hh:     [H, H] hidden-to-hidden weights (PyTorch weight_hh_l0).
        b_ih:     [H] input bias (PyTorch bias_ih_l0), or None for no bias.
        b_hh:     [H] hidden bias (PyTorch bias_hh_l0), or None for no bias.
        lengths:  [B] ints, 1 <= lengths[b] <= T: valid steps per sample (right padding); None = all T steps.
        training: if False, nothing is kept for the backward and the cache returned is None.
        out:      [T, B, H] array (any strides) y is written into and returned as, or None (the ops' out=).
        nonlinearity: "tanh" or "relu".

    Returns:
        y:     [T, B, H] h_t at every step (0 at steps t >= lengths[b]).
        h_n:   [B, H] hidden state after the last valid step of each sample.
        cache: dict for ``rnn_backward`` (None when training=False): the float64 inputs and weights, which biases
               exist, the ``active [T, B, 1]`` step mask, the state (h,) entering every step, the nonlinearity,
               and per step the output h_t (the derivative is written from it).
    """
    y, (h_n,), cache = _forward_through_time(
        "rnn", dict(nonlinearity=nonlinearity), x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, training, out)
    return y, h_n, cache


def rnn_backward(cache, dy, dh_n=None, need_dx=True):
    """Backpropagation through time for ``rnn_forward``; the loss is Σ y⊙dy + Σ h_n⊙dh_n.

    Identities used, per step from t = T-1 down to 0 (gradient of h_t is dh = dh_{from t+1} + dy[t]):
        dpre = dh ⊙ (1 - h_t²)  for tanh (tanh' = 1 - y²)
        dpre = dh ⊙ [h_t > 0]   for relu (0 at the kink, as torch)
        dh_{t-1} = dpre W_hh
    then dx = dpre W_ih, dW_ih = Σ_t dpre_t^T x_t, dW_hh = Σ_t dpre_t^T h_{t-1}, db_ih = db_hh = Σ_{t,B} dpre.
    Steps t >= lengths[b] ignore dy[t, b] and pass dh of sample b through unchanged.

    Args:
        cache: the cache returned by ``rnn_forward(..., training=True)``.
        dy:    [T, B, H] gradient of the loss with respect to y, or None for zeros.
        dh_n:  [B, H] gradient with respect to h_n, or None for zeros.
        need_dx: False skips dx (returned as None), as does a forward on one-hot indices.

    Returns:
        (dx [T, B, I] or None, dh0 [B, H], dw_ih [H, I], dw_hh [H, H], db_ih [H] or None, db_hh [H] or None),
        in the dtype of the forward's x; a bias gradient is None when that bias was None.
    """
    dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh = _backward_through_time("rnn", cache, dy, (dh_n,), need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------------------------------------------
# Streaming: one step per call, the state kept
# ----------------------------------------------------------------------------------------------------------------

class Stepper:
    """One forward step per call with the state kept: ``step(x [B, I])`` returns the new h [B, H]; ``reset(h0, c0)``
    sets the state (None = zeros; c0 for the LSTM only); ``h`` and ``c`` (LSTM only) are copies of the state. The
    weights are copied (float64); results have the weights' dtype."""

    def __init__(self, cell, options, batch, w_ih, w_hh, b_ih, b_hh):
        from .._cell_table import KINDS  # here, not at the top: the cell table imports this module

        self._cell, self._n_states = cell, KINDS[cell].n_states
        self._step, _ = _STEPS[cell]
        self._options = dict(options)
        self._dtype = _result_dtype(w_ih)
        self._w_ih, self._w_hh = _f64(w_ih), _f64(w_hh)
        self._b_ih, self._b_hh = _or_zeros(b_ih, self._w_ih.shape[0]), _or_zeros(b_hh, self._w_hh.shape[0])
        self._batch, self._hidden = batch, self._w_hh.shape[1]
        self.reset(None, None)

    def reset(self, h0=None, c0=None):
        """Sets the state: h0, c0 [B, H] of the weights' dtype (c0 for the LSTM only), None for zeros; the checks are
        the C++ stepper's (rnncore._validation.stepper_states)."""
        h0, c0 = stepper_states(self._cell, self._n_states, h0, c0, self._batch, self._hidden, self._dtype)
        shape = (self._batch, self._hidden)
        self._state: tuple[np.ndarray, ...] = (_or_zeros(h0, shape), _or_zeros(c0, shape))[:self._n_states]

    def step(self, x):
        """h_t from x_t [B, I] (the weights' dtype, else ValueError as the C++ stepper) and the kept state: the cell's
        one-step forward."""
        x = stepper_input(x, self._batch, self._w_ih.shape[1], self._dtype)
        xw = _linear(_f64(x), self._w_ih, self._b_ih)
        self._state, _ = self._step(xw, self._state, self._w_hh, self._b_hh, **self._options)
        return self.h

    @property
    def h(self):
        return self._state[0].astype(self._dtype)

    @property
    def c(self):
        if self._n_states < 2:
            raise no_cell_state(self._cell)
        return self._state[1].astype(self._dtype)


def lstm_stepper(batch, w_ih, w_hh, b_ih=None, b_hh=None):
    """A streaming LSTM for ``batch`` sequences (state h, c zeros); w_ih [4H, I], w_hh [4H, H], biases [4H] or None."""
    return Stepper("lstm", {}, batch, w_ih, w_hh, b_ih, b_hh)


def gru_stepper(batch, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True):
    """A streaming GRU for ``batch`` sequences (state h zeros); w_ih [3H, I], w_hh [3H, H], biases [3H] or None."""
    return Stepper("gru", dict(reset_after=bool(reset_after)), batch, w_ih, w_hh, b_ih, b_hh)


def rnn_stepper(batch, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """A streaming simple RNN for ``batch`` sequences (state h zeros); w_ih [H, I], w_hh [H, H], biases [H] or None."""
    return Stepper("rnn", dict(nonlinearity=nonlinearity), batch, w_ih, w_hh, b_ih, b_hh)
