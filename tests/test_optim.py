"""``rnncore.optim`` (SGD, RMSprop, Adam, AdamW): parity with ``torch.optim`` and the optimizer contract.

The fixtures ``tests/fixtures/torch_optim_*.npz`` come from ``tests/fixtures/make_torch_optim_fixtures.py`` (see its
docstring for what each file holds and how to regenerate them); torch itself is not needed here. Each file is one
optimizer with one set of hyper-parameters in one dtype: rnncore's optimizer, given the same initial parameters and
the same gradient at each of the 5 steps, must reproduce torch's parameters after every step (``"fixture"``
tolerance of ``support.tolerances.TOLERANCES``). The rest checks the contract: in-place updates, ``state_dict``
round trips, ``lr`` changes between steps, the model form (``Adam(lstm)`` then ``step()``) and clear errors.
"""

import copy
import json

import numpy as np
import pytest

import rnncore as rc
from rnncore import optim

from support.fixtures import FIXTURE_DIR, load_npz
from support.tolerances import assert_close

FIXTURES = sorted(FIXTURE_DIR.glob("torch_optim_*.npz"))
NAMES = ("w", "b")
OPTIMIZERS = {"SGD": optim.SGD, "RMSprop": optim.RMSprop, "Adam": optim.Adam, "AdamW": optim.AdamW}


def load(path):
    fx = load_npz(path)
    fx["optimizer"] = str(fx["optimizer"])
    fx["hyperparameters"] = json.loads(str(fx["hyperparameters"]))
    return fx


def make(fx, params=None):
    """The fixture's optimizer over ``params`` (default: fresh copies of the fixture's initial parameters)."""
    if params is None:
        params = {n: fx[f"init.{n}"].copy() for n in NAMES}
    return OPTIMIZERS[fx["optimizer"]](params, **fx["hyperparameters"]), params


def grads_at(fx, t):
    return {n: fx[f"grads.{n}"][t] for n in NAMES}


def steps(fx):
    return fx["grads.w"].shape[0]


def test_fixture_set_is_complete():
    names = {p.name for p in FIXTURES}
    assert len(names) == 20, sorted(names)
    for opt in ("sgd", "rmsprop", "adam", "adamw"):
        for dtype in ("float32", "float64"):
            assert any(n.startswith(f"torch_optim_{opt}_") and n.endswith(f"_{dtype}.npz") for n in names)
    assert sum(p.stat().st_size for p in FIXTURES) < 100 * 1024


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_matches_torch_every_step(path):
    fx = load(path)
    opt, params = make(fx)
    dtype = fx["init.w"].dtype
    for t in range(steps(fx)):
        opt.step(grads_at(fx, t))
        for n in NAMES:
            assert params[n].dtype == dtype
            assert_close(params[n], fx[f"params.{n}"][t], "fixture", dtype, name=f"{path.stem} step {t + 1} {n}")
    for name, s in opt.state.items():
        for key, a in s.items():
            assert a.dtype == dtype, (name, key)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_updates_in_place(path):
    fx = load(path)
    opt, params = make(fx)
    before = dict(params)
    grads = {n: g.copy() for n, g in grads_at(fx, 0).items()}
    grads_before = {n: g.copy() for n, g in grads.items()}
    opt.step(grads)
    for n in NAMES:
        assert params[n] is before[n]
        assert opt.parameters()[n] is before[n]
        assert np.shares_memory(opt.parameters()[n], before[n])
        assert not np.array_equal(params[n], fx[f"init.{n}"])
        np.testing.assert_array_equal(grads[n], grads_before[n])  # the gradients are only read


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_state_dict_round_trip(path):
    fx = load(path)
    uninterrupted, p_full = make(fx)
    for t in range(steps(fx)):
        uninterrupted.step(grads_at(fx, t))

    first, p_first = make(fx)
    for t in range(2):
        first.step(grads_at(fx, t))
    saved = first.state_dict()
    after_2 = {n: p.copy() for n, p in p_first.items()}
    saved_copy = copy.deepcopy(saved)
    first.step(grads_at(fx, 2))  # the saved state holds copies: later steps do not change it
    for name in saved["state"]:
        for key, a in saved["state"][name].items():
            np.testing.assert_array_equal(a, saved_copy["state"][name][key])

    resumed, p_resumed = make(fx, params=after_2)  # a fresh optimizer (empty state) on the parameters after 2 steps
    resumed.load_state_dict(saved)
    assert resumed.hyperparameters == first.hyperparameters
    for t in range(2, steps(fx)):
        resumed.step(grads_at(fx, t))
    for n in NAMES:  # bit for bit what the uninterrupted run gives
        np.testing.assert_array_equal(p_resumed[n], p_full[n], err_msg=n)


@pytest.mark.parametrize("cls", [optim.SGD, optim.RMSprop, optim.Adam, optim.AdamW])
def test_lr_change_takes_effect(cls, rng):
    p0 = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    grads = [{n: rng.standard_normal(a.shape) for n, a in p0.items()} for _ in range(3)]
    kwargs = dict(lr=0.01) if cls is not optim.AdamW else dict(lr=0.01, weight_decay=0.0)
    a_params = {n: v.copy() for n, v in p0.items()}
    b_params = {n: v.copy() for n, v in p0.items()}
    a, b = cls(a_params, **kwargs), cls(b_params, **kwargs)
    for g in grads[:2]:
        a.step(g)
        b.step(g)
    before = {n: v.copy() for n, v in a_params.items()}
    b.lr = 0.03
    a.step(grads[2])
    b.step(grads[2])
    # without weight decay the state does not depend on lr, so the third update scales with lr
    for n in p0:
        assert_close(b_params[n] - before[n], 3.0 * (a_params[n] - before[n]), "kernel_vs_reference", np.float64,
                     name=n)
    b.lr = 0.0
    frozen = {n: v.copy() for n, v in b_params.items()}
    b.step(grads[0])
    for n in p0:
        np.testing.assert_array_equal(b_params[n], frozen[n])


def test_sgd_lr_change_exact():
    p = {"x": np.array([1.0, 2.0])}
    opt = optim.SGD(p, lr=0.5)
    opt.step({"x": np.array([1.0, 1.0])})
    np.testing.assert_array_equal(p["x"], [0.5, 1.5])
    opt.lr = 0.25
    opt.step({"x": np.array([2.0, -2.0])})
    np.testing.assert_array_equal(p["x"], [0.0, 2.0])


@pytest.mark.parametrize("cls,kwargs", [
    (optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.RMSprop, dict(lr=1e-3)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.AdamW, dict(lr=1e-2)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_form_with_lstm_reduces_loss(cls, kwargs, dtype, rng):
    lstm = rc.LSTM(3, 4, dtype=dtype, seed=0)
    x = rng.standard_normal((6, 2, 3)).astype(dtype)
    arrays = lstm.parameters()
    opt = cls(lstm, **kwargs)

    def loss_and_backward():
        y, _ = lstm(x)
        lstm.zero_grad()
        lstm.backward(y)  # d/dy of 0.5 * sum(y**2): fit y to zeros
        return 0.5 * float(np.sum(y.astype(np.float64) ** 2))

    loss0 = loss_and_backward()
    opt.step()
    loss1 = loss_and_backward()
    assert loss1 < loss0
    for name, p in lstm.parameters().items():
        assert p is arrays[name] and p.dtype == np.dtype(dtype)
    for name, s in opt.state.items():
        for key, a in s.items():
            assert a.dtype == np.dtype(dtype), (name, key)
    # explicit grads override the model's
    opt.step({n: np.zeros_like(p) for n, p in arrays.items()})


# -- errors ---------------------------------------------------------------------------------------------------------
def _p():
    return {"w": np.zeros((2, 3)), "b": np.zeros(3)}


@pytest.mark.parametrize("cls,kwargs,match", [
    (optim.SGD, dict(lr=-0.1), "learning rate|lr"),
    (optim.SGD, dict(lr=0.1, momentum=-1.0), "momentum"),
    (optim.SGD, dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    (optim.SGD, dict(lr=0.1, nesterov=True), "Nesterov"),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (optim.RMSprop, dict(lr=-1.0), "lr"),
    (optim.RMSprop, dict(alpha=-0.5), "alpha"),
    (optim.RMSprop, dict(eps=-1e-8), "eps"),
    (optim.RMSprop, dict(momentum=-0.1), "momentum"),
    (optim.Adam, dict(lr=-1e-3), "lr"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "beta"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "beta"),
    (optim.AdamW, dict(betas=(0.9, 1.5)), "beta"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.Adam, dict(eps=-1.0), "eps"),
    (optim.Adam, dict(lr=float("nan")), "finite"),
])
def test_bad_hyperparameters_raise_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(_p(), **kwargs)


@pytest.mark.parametrize("cls,kwargs", [
    (optim.SGD, dict(lr="0.1")),
    (optim.SGD, dict(lr=0.1, momentum=0.5, nesterov="yes")),
    (optim.Adam, dict(betas=0.9)),
    (optim.Adam, dict(betas=(0.9, 0.99, 0.999))),
    (optim.RMSprop, dict(centered=1)),
    (optim.AdamW, dict(amsgrad=None)),
])
def test_bad_hyperparameter_types_raise_type_error(cls, kwargs):
    with pytest.raises(TypeError):
        cls(_p(), **kwargs)


def test_bad_params_raise():
    with pytest.raises(TypeError, match="parameters\\(\\) and gradients\\(\\)"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD({}, lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        optim.SGD({"w": np.zeros(3, dtype=np.int64)}, lr=0.1)
    with pytest.raises(TypeError, match="ndarray"):
        optim.SGD({"w": [0.0, 1.0]}, lr=0.1)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD({"w": ro}, lr=0.1)


def test_bad_grads_raise_before_any_update():
    params = {"w": np.ones((2, 3)), "b": np.ones(3)}
    opt = optim.Adam(params, lr=0.1)
    good = {"w": np.ones((2, 3)), "b": np.ones(3)}
    with pytest.raises(TypeError, match="needs grads"):
        opt.step()
    with pytest.raises(TypeError, match="dict"):
        opt.step([good["w"], good["b"]])
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        opt.step({"w": good["w"]})
    with pytest.raises(ValueError, match="unexpected \\['c'\\]"):
        opt.step({**good, "c": np.ones(3)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": good["w"], "b": np.ones(4)})
    with pytest.raises(TypeError, match="real"):
        opt.step({"w": good["w"], "b": np.ones(3, dtype=complex)})
    np.testing.assert_array_equal(params["w"], 1.0)
    np.testing.assert_array_equal(params["b"], 1.0)
    assert all(s == {} for s in opt.state.values())


def test_hyperparameter_changed_to_invalid_value_raises_at_step():
    params = _p()
    opt = optim.SGD(params, lr=0.1)
    opt.lr = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step({"w": np.ones((2, 3)), "b": np.ones(3)})
    np.testing.assert_array_equal(params["w"], 0.0)


def test_hyperparameters_changed_after_steps_are_checked_again():
    # a step reuses the last step's checks only while the group holds the very values it checked
    params = _p()
    grads = {"w": np.ones((2, 3)), "b": np.ones(3)}
    opt = optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    opt.step(grads)
    after_one = params["w"].copy()
    opt.param_groups[0]["momentum"] = 0.0
    with pytest.raises(ValueError, match="Nesterov"):
        opt.step(grads)
    opt.param_groups[0]["momentum"] = 0.9
    opt.lr = float("nan")
    with pytest.raises(ValueError, match="lr"):
        opt.step(grads)
    np.testing.assert_array_equal(params["w"], after_one)
    opt.lr = 1
    opt.step(grads)
    assert type(opt.lr) is float  # normalized into the group again


def test_load_state_dict_errors_and_atomicity():
    grads = {"w": np.ones((2, 3)), "b": np.ones(3)}
    src = optim.Adam(_p(), lr=0.1, amsgrad=True)
    src.step(grads)
    dst = optim.Adam(_p(), lr=0.5)
    dst.step(grads)
    before = dst.state_dict()

    with pytest.raises(ValueError, match="'SGD'"):
        dst.load_state_dict({**src.state_dict(), "optimizer": "SGD"})
    bad = src.state_dict()
    bad["state"]["extra"] = {}
    with pytest.raises(KeyError, match="unexpected \\['extra'\\]"):
        dst.load_state_dict(bad)
    bad = src.state_dict()
    del bad["state"]["b"]
    with pytest.raises(KeyError, match="missing \\['b'\\]"):
        dst.load_state_dict(bad)
    bad = src.state_dict()
    bad["state"]["w"]["exp_avg"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match="shape"):
        dst.load_state_dict(bad)
    bad = src.state_dict()
    bad["state"]["w"]["momentum_buffer"] = np.zeros((2, 3))
    with pytest.raises(KeyError, match="unknown"):
        dst.load_state_dict(bad)
    bad = src.state_dict()
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        dst.load_state_dict(bad)
    bad = src.state_dict()
    del bad["state"]
    with pytest.raises(KeyError, match="state"):
        dst.load_state_dict(bad)

    after = dst.state_dict()  # nothing changed by the failed loads
    assert after["param_groups"] == before["param_groups"]
    for name in before["state"]:
        assert before["state"][name].keys() == after["state"][name].keys()
        for key in before["state"][name]:
            np.testing.assert_array_equal(after["state"][name][key], before["state"][name][key])

    dst.load_state_dict(src.state_dict())
    assert dst.lr == 0.1 and dst.amsgrad is True


def test_load_state_dict_casts_to_parameter_dtype():
    src = optim.SGD({"w": np.zeros(3)}, lr=0.1, momentum=0.9)
    src.step({"w": np.array([1.0, 2.0, 3.0])})
    dst = optim.SGD({"w": np.zeros(3, dtype=np.float32)}, lr=0.1, momentum=0.9)
    dst.load_state_dict(src.state_dict())
    assert dst.state["w"]["momentum_buffer"].dtype == np.float32
    np.testing.assert_array_equal(dst.state["w"]["momentum_buffer"], [1.0, 2.0, 3.0])
