"""The fused Adam step (rnncore.ops.adam_update, which rnncore.optim.Adam/AdamW run once per group) against its
twin, the per-parameter NumPy update (``Adam._fused = False``): the same bits in every parameter and state array,
float32 and float64, over several steps and every option; the NumPy update's fallback for arrays the fused op does
not take; the op's argument checks. (tests/test_optim.py checks both against torch's fixtures.)"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rnncore as rc

from support.arrays import DTYPE_IDS, DTYPES
from support.tolerances import assert_identical

SHAPES = [(), (1,), (3,), (4, 5), (2, 3, 4), (37, 128)]


def parameters(rng, dtype, shapes):
    return {f"p{i}": rng.standard_normal(shape).astype(dtype) for i, shape in enumerate(shapes)}


class CountingCore:
    """rnncore._core with its adam_update counted: how often the optimizer called it and how often it refused."""

    def __init__(self, core):
        self.core, self.calls, self.refused = core, 0, 0

    def adam_update(self, *args):
        out = self.core.adam_update(*args)
        self.calls += 1
        self.refused += out is not None
        return out

    def __getattr__(self, name):
        return getattr(self.core, name)


def run(cls, fused, params, grads_per_step, **hyper):
    """The parameters and optimizer state after one step per entry of ``grads_per_step``; with ``fused``, every step
    must have run on the fused op (a refusal would fall back to the NumPy update and compare it with itself)."""
    params = {k: v.copy() for k, v in params.items()}
    opt = cls(params, **hyper)
    opt._fused = fused
    counter = CountingCore(rc.optim._core)
    rc.optim._core = counter
    try:
        for grads in grads_per_step:
            opt.step(grads)
    finally:
        rc.optim._core = counter.core
    assert (counter.calls, counter.refused) == ((len(grads_per_step), 0) if fused else (0, 0))
    return params, opt.state_dict()["state"]


def assert_same_bits(a, b):
    (pa, sa), (pb, sb) = a, b
    for name in pa:
        assert_identical(pa[name], pb[name], name)
        assert list(sa[name]) == list(sb[name]), "state created in the same order"
        for key in sa[name]:
            assert sa[name][key].dtype == sb[name][key].dtype
            assert_identical(sa[name][key], sb[name][key], f"{name}.{key}")


@settings(max_examples=80, deadline=None)
@given(dtype=st.sampled_from(DTYPES), shapes=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4),
       adamw=st.booleans(), amsgrad=st.booleans(), maximize=st.booleans(),
       weight_decay=st.sampled_from([0.0, 0.1, 1e-2]), beta1=st.sampled_from([0.9, 0.3, 0.0, 0.5]),
       beta2=st.sampled_from([0.999, 0.9]), lr=st.sampled_from([1e-3, 0.5, 3]), eps=st.sampled_from([1e-8, 1e-3]),
       steps=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_fused_adam_gives_the_numpy_updates_bits(dtype, shapes, adamw, amsgrad, maximize, weight_decay, beta1, beta2,
                                                 lr, eps, steps, seed):
    rng = np.random.default_rng(seed)
    params = parameters(rng, dtype, shapes)
    grads = [{k: (rng.standard_normal(v.shape) * 10.0 ** rng.integers(-6, 3)).astype(dtype)
              for k, v in params.items()} for _ in range(steps)]
    cls = rc.optim.AdamW if adamw else rc.optim.Adam
    hyper = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                 maximize=maximize)
    assert_same_bits(run(cls, True, params, grads, **hyper), run(cls, False, params, grads, **hyper))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns of the NaN and inf it computes
def test_fused_adam_special_values(dtype):
    """Denormal, zero, inf and NaN gradients and moments: NumPy's results, NaN where NumPy's maximum gives NaN."""
    tiny = np.finfo(dtype).smallest_subnormal
    params = {"w": np.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.0], dtype)}
    grads = [{"w": np.array([tiny, 0.0, np.inf, np.nan, -tiny, 1e-30], dtype)},
             {"w": np.array([1.0, tiny, 0.0, 2.0, np.nan, -1.0], dtype)}]
    for amsgrad in (False, True):
        a = run(rc.optim.Adam, True, params, grads, amsgrad=amsgrad, weight_decay=0.1)
        b = run(rc.optim.Adam, False, params, grads, amsgrad=amsgrad, weight_decay=0.1)
        assert_same_bits(a, b)


def test_arrays_the_fused_op_does_not_take_use_the_numpy_update():
    """A strided parameter (or mixed dtypes in one group) leaves the group to the NumPy update: the same bits."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 6)).astype(np.float32)
    grads = [{"strided": rng.standard_normal((4, 3)).astype(np.float32),
              "other": rng.standard_normal(5).astype(np.float64)} for _ in range(3)]
    out = []
    for fused in (True, False):
        params = {"strided": base.copy()[:, ::2], "other": np.linspace(-1, 1, 5)}
        opt = rc.optim.Adam(params, lr=0.1, amsgrad=True)
        opt._fused = fused
        for g in grads:
            opt.step(g)
        out.append((params, opt.state_dict()["state"]))
    assert_same_bits(*out)


def test_fused_op_updates_in_place_like_the_optimizer():
    rng = np.random.default_rng(3)
    p = rng.standard_normal((3, 4)).astype(np.float32)
    g = rng.standard_normal((3, 4)).astype(np.float32)
    params, state = run(rc.optim.Adam, False, {"p": p}, [{"p": g}], lr=0.01)
    q, m, v, step = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros((), np.float32)
    rc.ops.adam_update([q], [g], [m], [v], None, [step], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    assert_identical(q, params["p"], "param")
    assert_identical(m, state["p"]["exp_avg"], "exp_avg")
    assert_identical(v, state["p"]["exp_avg_sq"], "exp_avg_sq")
    assert float(step) == 1.0


def test_fused_op_checks_its_arrays():
    p = np.zeros((2, 3), np.float32)

    def call(**over):
        args = dict(params=[p], grads=[np.ones((2, 3), np.float32)], exp_avgs=[np.zeros((2, 3), np.float32)],
                    exp_avg_sqs=[np.zeros((2, 3), np.float32)], max_exp_avg_sqs=None,
                    steps=[np.zeros((), np.float32)], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        args.update(over)
        rc.ops.adam_update(**args)

    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float64, expected params\[0\]'s float32"):
        call(grads=[np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] must have shape \(2, 3\), got shape \(3, 2\)"):
        call(exp_avgs=[np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match=r"steps\[0\] must have shape \(\), got shape \(1,\)"):
        call(steps=[np.zeros(1, np.float32)])
    with pytest.raises(ValueError, match=r"params\[0\] must be C-contiguous"):
        call(params=[np.zeros((3, 2), np.float32).T])
    with pytest.raises(ValueError, match=r"exp_avg_sqs must have one array per parameter \(1\), got 2"):
        call(exp_avg_sqs=[np.zeros((2, 3), np.float32)] * 2)
    with pytest.raises(TypeError, match=r"params\[0\] must have dtype float32 or float64"):
        call(params=[np.zeros((2, 3), np.int32)])
    with pytest.raises(TypeError, match=r"grads must be a list or tuple of arrays"):
        call(grads=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="max_exp_avg_sqs must be a sequence of arrays with amsgrad=True"):
        call(amsgrad=True)
    readonly = np.zeros((2, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] must be writeable"):
        call(exp_avgs=[readonly])
    assert not p.any()  # nothing changed by a refused call


def test_fused_op_checks_its_hyper_parameters():
    def call(**over):
        p = np.zeros(3, np.float32)
        args = dict(params=[p], grads=[np.ones(3, np.float32)], exp_avgs=[np.zeros(3, np.float32)],
                    exp_avg_sqs=[np.zeros(3, np.float32)], max_exp_avg_sqs=None, steps=[np.zeros((), np.float32)],
                    lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        args.update(over)
        rc.ops.adam_update(**args)
        return p

    for name, value in [("lr", -1.0), ("eps", -1.0), ("weight_decay", -0.5)]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            call(**{name: value})
    with pytest.raises(ValueError, match="lr must be finite, got nan"):
        call(lr=float("nan"))
    with pytest.raises(ValueError, match="beta parameter at index 0"):
        call(betas=(1.5, 0.999))
    for betas in [(0.9,), 0.9]:
        with pytest.raises(TypeError, match=r"betas must be a pair"):
            call(betas=betas)
    for name in ("amsgrad", "maximize", "decoupled"):
        with pytest.raises(TypeError, match=f"{name} must be a bool"):
            call(**{name: "no"})


def test_a_subclass_that_overrides_the_update_gets_its_own_update():
    calls = []

    class Logged(rc.optim.Adam):
        def _update(self, p, grad, state, h):
            calls.append(p.shape)
            super()._update(p, grad, state, h)

    params = {"w": np.ones((2, 2), np.float32)}
    Logged(params, lr=0.1).step({"w": np.ones((2, 2), np.float32)})
    assert calls == [(2, 2)]


def _adam_lists(n=2, size=6, amsgrad=False):
    rng = np.random.default_rng(0)
    arrays = {name: [rng.standard_normal(size) for _ in range(n)] for name in ("params", "grads", "exp_avgs")}
    arrays["exp_avg_sqs"] = [np.abs(rng.standard_normal(size)) for _ in range(n)]
    arrays["max_exp_avg_sqs"] = [np.abs(rng.standard_normal(size)) for _ in range(n)] if amsgrad else None
    arrays["steps"] = [np.zeros(()) for _ in range(n)]
    return arrays


def _overlapping(first, second):
    """first[0] and second[1] overlap by half (neither holds the other)."""
    buffer = np.zeros(first[0].size + first[0].size // 2)
    first[0], second[1] = buffer[:first[0].size], buffer[-first[0].size:]


@pytest.mark.parametrize("alias,message", [
    (lambda a: a["exp_avg_sqs"].__setitem__(0, a["exp_avgs"][0]), r"exp_avg_sqs\[0\] shares memory with exp_avgs\[0\]"),
    (lambda a: a["grads"].__setitem__(1, a["params"][1]), r"grads\[1\] shares memory with params\[1\]"),
    (lambda a: a["params"].__setitem__(1, a["params"][0]),
     r"params\[1\] shares memory with params\[0\]"),
    (lambda a: _overlapping(a["params"], a["exp_avgs"]), r"exp_avgs\[1\] shares memory with params\[0\]"),
    (lambda a: a["steps"].__setitem__(1, a["exp_avgs"][0][3:4].reshape(())), r"steps\[1\] shares memory with "
                                                                              r"exp_avgs\[0\]"),
    (lambda a: a["max_exp_avg_sqs"].__setitem__(0, a["params"][1]),
     r"max_exp_avg_sqs\[0\] shares memory with params\[1\]"),
])
def test_adam_update_refuses_aliased_arrays(alias, message):
    """The fused step writes through restrict pointers: an updated array sharing memory with another updated array
    (of any parameter) or with its own grad is refused, naming both, before any array changes; the C++ entry
    refuses it too (NotImplemented, so rnncore.optim.Adam takes its NumPy update)."""
    a = _adam_lists(size=8, amsgrad=True)
    alias(a)
    before = {name: [x.copy() for x in a[name]] for name in a}
    with pytest.raises(ValueError, match=message):
        rc.ops.adam_update(**a, lr=0.01, betas=(0.9, 0.999), eps=1e-8, amsgrad=True)
    for name in a:
        for x, y in zip(a[name], before[name]):
            np.testing.assert_array_equal(x, y, err_msg=name)
    out = rc._core.adam_update(a["params"], a["grads"], a["exp_avgs"], a["exp_avg_sqs"], a["max_exp_avg_sqs"],
                               a["steps"], 0.01, 0.9, 0.999, 1e-8, 0.0, True, False, False)
    assert out is NotImplemented


def test_adam_update_takes_separate_arrays_side_by_side():
    """Neighbouring slices of one buffer do not overlap: they are taken."""
    buffer = np.zeros(4 * 8)
    a = _adam_lists(size=8)
    a["params"] = [buffer[:8], buffer[8:16]]
    a["exp_avgs"] = [buffer[16:24], buffer[24:32]]
    rc.ops.adam_update(**a, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    assert all(float(s) == 1.0 for s in a["steps"])
    out = rc._core.adam_update(a["params"], a["grads"], a["exp_avgs"], a["exp_avg_sqs"], None, a["steps"], 0.01,
                               0.9, 0.999, 1e-8, 0.0, False, False, False)
    assert out is None
