"""Small seeded calls of the recurrent ops and the pattern their error messages are matched with, shared by the
op tests that feed unusual inputs (tests/test_op_argument_checks.py, test_op_input_handling.py, test_op_exact_call.py).
"""

import re

import numpy as np

from support.cells import make_inputs

T, B, I, H = 5, 4, 3, 2  # the sizes of every validation call: all distinct, so a message shows which is which


def msg(name, *parts):
    """A regex: the argument's name as a word, then each part (literal) in order, e.g. expected then received."""
    return r"(?s)(?<![\w.])" + re.escape(name) + r"(?![\w])" + "".join(".*" + re.escape(p) for p in parts)


def inputs_for(cell, dtype=np.float32, seed=0, lengths=False, sizes=(T, B, I, H), bias=True):
    """make_inputs from a generator seeded with ``seed``, at the validation sizes unless ``sizes`` says otherwise."""
    rng = np.random.default_rng(seed)
    return make_inputs(rng, cell, *sizes, dtype, bias=bias, lengths=lengths)
