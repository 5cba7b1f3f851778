"""The streaming steppers' own checks (rnncore.ops and their rnncore.reference twins): reading c from a one-state
cell, a bad reset state and a bad step input raise the named error instead of reading out of bounds; valid calls
still agree with the reference."""

import numpy as np
import pytest

from rnncore import _core
from rnncore._cell_table import VARIANTS, variant

from support.tolerances import assert_close

B, I, H = 2, 3, 4
ONE_STATE = [v for v in VARIANTS if v.kind.n_states == 1]
MAKERS = [pytest.param(lambda v: v.stepper, id="ops"), pytest.param(lambda v: v.reference_stepper, id="reference")]


def weights(v, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    G = v.kind.n_gates
    return [(0.5 * rng.standard_normal(shape)).astype(dtype) for shape in ((G * H, I), (G * H, H), (G * H,), (G * H,))]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("v", ONE_STATE, ids=lambda v: v.name)
def test_c_of_a_one_state_cell_raises(make, v):
    stepper = make(v)(B, *weights(v))
    with pytest.raises(AttributeError, match=rf"c exists only for an LSTM stepper \(cell '{v.kind.name}' has one "
                                             r"state, h\)"):
        _ = stepper.c
    assert not hasattr(stepper, "c")


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("v", ONE_STATE, ids=lambda v: v.name)
def test_c0_of_a_one_state_cell_raises(make, v):
    stepper = make(v)(B, *weights(v))
    with pytest.raises(ValueError, match=rf"c0 must be None for a one-state cell \(cell '{v.kind.name}'"):
        stepper.reset(None, np.zeros((B, H)))


BAD_STATES = [
    pytest.param(lambda: np.zeros(1), ValueError, r"must have shape \[B, H\] = \(2, 4\), got shape \(1,\)", id="1-d"),
    pytest.param(lambda: np.zeros((1, 1)), ValueError, r"must have shape \[B, H\] = \(2, 4\), got shape \(1, 1\)",
                 id="small"),
    pytest.param(lambda: np.zeros((B, H + 1)), ValueError, r"must have shape \[B, H\]", id="wide"),
    pytest.param(lambda: np.zeros((B, H), np.float32), TypeError, r"has dtype float32, expected float64", id="dtype"),
    pytest.param(lambda: np.zeros((B, H)).tolist(), TypeError, r"must be a numpy.ndarray", id="list"),
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("which", ["h0", "c0"])
@pytest.mark.parametrize("bad,exc,match", BAD_STATES)
def test_lstm_reset_checks_its_states(make, which, bad, exc, match):
    v = variant("lstm")
    stepper = make(v)(B, *weights(v))
    with pytest.raises(exc, match=rf"{which} {match}"):
        stepper.reset(**{which: bad()})


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("v", ONE_STATE, ids=lambda v: v.name)
@pytest.mark.parametrize("bad,exc,match", BAD_STATES)
def test_one_state_reset_checks_h0(make, v, bad, exc, match):
    stepper = make(v)(B, *weights(v))
    with pytest.raises(exc, match=rf"h0 {match}"):
        stepper.reset(bad())


BAD_INPUTS = [
    pytest.param(lambda: np.ones((B + 1, I)), id="batch"),
    pytest.param(lambda: np.ones((1, I)), id="broadcastable batch"),
    pytest.param(lambda: np.ones((B, I + 1)), id="features"),
    pytest.param(lambda: np.ones(I), id="1-d"),
    pytest.param(lambda: np.ones((B, I), np.float32), id="dtype"),
    pytest.param(lambda: np.ones((B, I), order="F"), id="Fortran order"),
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("v", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_step_checks_x(make, v, bad):
    stepper = make(v)(B, *weights(v))
    with pytest.raises(ValueError, match=r"x must be a C-contiguous float64 array of shape \[B, I\] = \(2, 3\)"):
        stepper.step(bad())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("v", VARIANTS, ids=lambda v: v.name)
def test_valid_calls_agree_with_the_reference(v, dtype):
    """Resets from given states (strided ones copied), steps, and the state properties match the twin's."""
    rng = np.random.default_rng(1)
    w = weights(v, dtype)
    got, want = v.stepper(B, *w), v.reference_stepper(B, *w)
    states = [np.asfortranarray(rng.standard_normal((B, H)).astype(dtype)) for _ in range(v.kind.n_states)]
    for s in (got, want):
        s.reset(*states)
    for t in range(3):
        x = rng.standard_normal((B, I)).astype(dtype)
        assert_close(got.step(x), want.step(x), "kernel_vs_reference", dtype, f"h at step {t}")
    assert_close(got.h, want.h, "kernel_vs_reference", dtype, "h")
    if v.kind.n_states == 2:
        assert_close(got.c, want.c, "kernel_vs_reference", dtype, "c")
    for s in (got, want):
        s.reset()
        np.testing.assert_array_equal(s.h, np.zeros((B, H), dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("v", VARIANTS, ids=lambda v: v.name)
def test_the_raw_binding_stays_in_bounds(v, dtype):
    """The C++ class behind the ops stepper checks what it reads, whatever Python passes."""
    core = getattr(_core, f"Stepper_{dtype}")
    w_ih, w_hh, b_ih, b_hh = weights(v, np.dtype(dtype))
    options = v.options
    make = lambda *w: core(v.kind.name, options.get("reset_after", True), options.get("nonlinearity", "tanh"),  # noqa: E731
                           B, *w)
    stepper = make(w_ih, w_hh, b_ih, b_hh)
    assert stepper.n_states == v.kind.n_states
    with pytest.raises(ValueError, match=r"h0 must have shape \[B, H\] = \(2, 4\), got shape \[1\]"):
        stepper.reset(np.zeros(1, dtype), None)
    with pytest.raises(ValueError, match=r"h0 must have shape \[B, H\]"):
        stepper.reset(np.zeros((1, 1), dtype), None)
    if v.kind.n_states == 1:
        with pytest.raises(AttributeError, match=r"c exists only for an LSTM stepper"):
            _ = stepper.c
        with pytest.raises(ValueError, match=r"c0 must be None for a one-state cell"):
            stepper.reset(None, np.zeros((B, H), dtype))
    else:
        with pytest.raises(ValueError, match=r"c0 must have shape \[B, H\]"):
            stepper.reset(None, np.zeros((1, 1), dtype))
    with pytest.raises(ValueError, match=r"w_ih must have shape \[G\*H, I\]"):
        make(w_ih[:-1], w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"w_hh must have shape \[G\*H, H\]"):
        make(w_ih, w_hh[:-1], b_ih, b_hh)
    with pytest.raises(ValueError, match=r"b_hh must have shape \[G\*H\]"):
        make(w_ih, w_hh, b_ih, b_hh[:-1])
    with pytest.raises(ValueError, match=r"w_ih \[G\*H, I\] and w_hh \[G\*H, H\] must be 2-D"):
        make(w_ih.ravel(), w_hh, None, None)
    with pytest.raises(ValueError, match=r"batch must be >= 1"):
        core(v.kind.name, True, "tanh", 0, w_ih, w_hh, None, None)


@pytest.mark.parametrize("v", VARIANTS, ids=lambda v: v.name)
def test_ops_stepper_does_not_copy_its_cpp_state(v):
    """The state lives in C++: copying, deep-copying or pickling the stepper raises (a shallow copy would share and
    advance one state), as the raw C++ object does; weak references work."""
    import copy
    import pickle
    import weakref

    stepper = v.stepper(B, *weights(v))
    for duplicate in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot pickle"):
            duplicate(stepper)
    assert weakref.ref(stepper)() is stepper


def test_reset_reports_h0_before_a_one_state_c0():
    """A bad h0 and a c0 given to a one-state cell: both the checks in Python and the binding name h0 first."""
    v = next(v for v in VARIANTS if v.kind.n_states == 1)
    stepper = v.stepper(B, *weights(v))
    for target in (stepper, stepper._core):
        with pytest.raises(ValueError, match="h0 must have shape"):
            target.reset(np.zeros((1, 1)), np.zeros((B, H)))
