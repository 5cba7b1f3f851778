"""Building the fused attention decoder's arguments and calling it (tests/test_attention_decoder.py,
tests/test_row_invariance.py)."""

import numpy as np

from rnncore import ops

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def make_args(rng, dtype=np.float64, cell="lstm", options=None, score="additive", position="before",
              input_feeding=False, Ty=3, B=2, Tx=4, E=2, H=3, A=3, Dv=2, O=3, biases=True, b_a=True, score_bias=True,
              relu=False, b_c=True, states=True, lengths="some", o0=True):
    """A dict of attention_decoder_forward's arguments (keyword names; ``cell``'s options under "options")."""
    options = dict(options or {})
    G = GATES[cell]

    def r(*shape, scale=0.6):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    K = A if score == "additive" else H
    fed = Dv if position == "before" else (O if input_feeding else 0)
    a = dict(x=r(Ty, B, E), h0=r(B, H) if states else None, c0=r(B, H) if states and cell == "lstm" else None,
             w_ih=r(G * H, E + fed), w_hh=r(G * H, H), b_ih=r(G * H) if biases else None,
             b_hh=r(G * H) if biases else None, keys=r(B, Tx, K), values=r(B, Tx, Dv), cell=cell, options=options,
             score=score, position=position, input_feeding=input_feeding, w_q=None, b_a=None, w_v=None,
             score_bias=None, energy_activation=None, w_c=None, b_c=None, o0=None)
    if isinstance(lengths, str) and lengths == "some":
        a["lengths"] = rng.integers(0, Tx + 1, size=B)
        a["lengths"][0] = Tx
        if B > 1:
            a["lengths"][1] = 0
    else:
        a["lengths"] = lengths
    if score == "additive":
        a.update(w_q=r(A, H), b_a=r(A) if b_a else None, w_v=r(A, scale=1.0),
                 score_bias=np.asarray(0.3, dtype) if score_bias else None,
                 energy_activation="relu" if relu else None)
    if position == "after":
        a.update(w_c=r(O, Dv + H), b_c=r(O) if b_c else None)
        if input_feeding and o0:
            a["o0"] = r(B, O)
    return a


def call_forward(a, training=True):
    kw = {k: v for k, v in a.items() if k not in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "keys", "values",
                                                  "lengths", "options")}
    return ops.attention_decoder_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                         a["keys"], a["values"], a["lengths"], **a["options"], **kw,
                                         training=training)
