"""``rnncore.optim.lr``: learning-rate sequences against torch.optim.lr_scheduler's, state dicts, pickling, errors.

The golden sequences are ``tests/fixtures/torch_lr.npz``, from ``tests/fixtures/make_torch_lr_fixtures.py`` (see its
docstring: each case is one or more schedules over an SGD with one or two parameter groups, possibly cut and
resumed from state dicts, and for ReduceLROnPlateau a fixed metric sequence); torch itself is not needed here.
The rates are plain Python floats computed with torch's formulas in torch's order, so they agree to the last bits
(``rtol=1e-13`` leaves room for another platform's ``math.cos``).
"""

import copy
import json
import pickle
import warnings

import numpy as np
import pytest

import rnncore as rc
from rnncore.optim import lr

from support.fixtures import FIXTURE_DIR, load_npz

FX = load_npz(FIXTURE_DIR / "torch_lr.npz")
CASES = sorted(k[: -len(".spec")] for k in FX if k.endswith(".spec"))

# the functions the generator's LAMBDAS names (they cannot be stored in the fixture)
LAMBDAS = {
    "halving": lambda epoch: 0.5 ** (epoch // 2),
    "inverse": lambda epoch: 1.0 / (1.0 + epoch),
}


def spec_of(case):
    return {"metrics": None, "resume_at": None, **json.loads(str(FX[f"{case}.spec"]))}


def build(spec):
    """The case's rnncore optimizer (SGD, one parameter per group, list form) and schedules."""
    lrs = spec["lrs"]
    groups = [{"params": {"w": np.zeros(2)}} for _ in lrs]
    for group, value in zip(groups[1:], lrs[1:]):
        group["lr"] = value
    opt = rc.optim.SGD(groups, lr=lrs[0])
    schedules = []
    for name, kwargs in spec["schedules"]:
        kwargs = dict(kwargs)
        if name == "LambdaLR":
            kwargs["lr_lambda"] = [LAMBDAS[k] for k in kwargs["lr_lambda"]]
        schedules.append(getattr(lr, name)(opt, **kwargs))
    return opt, schedules


def zero_grads(opt):
    return {name: np.zeros_like(p) for name, p in opt.parameters().items()}


def test_fixture_covers_the_brief():
    names = {name for case in CASES for name, _ in spec_of(case)["schedules"]}
    assert names == {"StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau",
                     "LambdaLR", "LinearLR"}
    assert any(len(spec_of(c)["lrs"]) == 2 and spec_of(c)["lrs"][0] != spec_of(c)["lrs"][1] for c in CASES)
    assert any(spec_of(c)["resume_at"] for c in CASES if spec_of(c)["metrics"])
    metrics = spec_of("plateau_min_rel")["metrics"]
    assert any(b > a for a, b in zip(metrics, metrics[1:])) and any(b < a for a, b in zip(metrics, metrics[1:]))


@pytest.mark.parametrize("case", CASES)
def test_lr_sequence_matches_torch(case):
    spec = spec_of(case)
    opt, schedules = build(spec)
    plateau = spec["metrics"] is not None
    got = [schedules[-1].get_last_lr()]
    bad, cooldown, best = [], [], []
    for t in range(spec["steps"]):
        opt.step(zero_grads(opt))
        for s in schedules:
            s.step(spec["metrics"][t]) if plateau else s.step()
        got.append(schedules[-1].get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == got[-1]
        assert schedules[-1].last_epoch == t + 1
        if plateau:
            bad.append(schedules[-1].num_bad_epochs)
            cooldown.append(schedules[-1].cooldown_counter)
            best.append(schedules[-1].best)
        if spec["resume_at"] == t + 1:
            saved_opt = copy.deepcopy(opt.state_dict())
            saved = [copy.deepcopy(s.state_dict()) for s in schedules]
            opt, schedules = build(spec)  # as in torch: build both, then load both state dicts
            opt.load_state_dict(saved_opt)
            for s, state in zip(schedules, saved):
                s.load_state_dict(state)
    np.testing.assert_allclose(np.array(got), FX[f"{case}.lr"], rtol=1e-13, atol=0, err_msg=case)
    if plateau:
        np.testing.assert_array_equal(bad, FX[f"{case}.num_bad_epochs"])
        np.testing.assert_array_equal(cooldown, FX[f"{case}.cooldown_counter"])
        np.testing.assert_array_equal(best, FX[f"{case}.best"])


def test_schedules_drive_the_optimizer_updates():
    """The lr a schedule sets is the one the next opt.step() uses (SGD: the update is -lr * grad)."""
    p = {"w": np.zeros(1)}
    opt = rc.optim.SGD(p, lr=1.0)
    sched = lr.StepLR(opt, step_size=1, gamma=0.5)
    for expected in (1.0, 0.5, 0.25):
        before = p["w"].copy()
        opt.step({"w": np.ones(1)})
        np.testing.assert_array_equal(before - p["w"], [expected])
        sched.step()
    assert opt.lr == 0.125


def test_a_schedule_follows_a_manual_lr_change():
    """torch's recursive form: StepLR scales the group's current lr, so a hand-set lr carries on."""
    opt = rc.optim.SGD({"w": np.zeros(1)}, lr=1.0)
    sched = lr.StepLR(opt, step_size=2, gamma=0.1)
    opt.step({"w": np.zeros(1)})
    sched.step()
    opt.lr = 0.5
    sched.step()
    assert opt.lr == pytest.approx(0.05)


def test_initial_lr_and_base_lrs():
    opt = rc.optim.Adam([{"params": {"a": np.zeros(1)}, "lr": 0.5}, {"params": {"b": np.zeros(1)}}], lr=0.1)
    warm = lr.LinearLR(opt, start_factor=0.5, total_iters=2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert opt.param_groups[0]["lr"] == 0.25
    cosine = lr.CosineAnnealingLR(opt, T_max=3)  # a second schedule starts from the groups' initial_lr
    assert cosine.base_lrs == warm.base_lrs == [0.5, 0.1]
    state = opt.state_dict()
    assert state["param_groups"][0]["initial_lr"] == 0.5
    fresh = rc.optim.Adam([{"params": {"a": np.zeros(1)}, "lr": 0.5}, {"params": {"b": np.zeros(1)}}], lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.param_groups[1]["initial_lr"] == 0.1


def test_scheduler_step_before_optimizer_step_warns():
    opt = rc.optim.SGD({"w": np.zeros(1)}, lr=1.0)
    sched = lr.ExponentialLR(opt, gamma=0.5)
    with pytest.warns(UserWarning, match="before the optimizer's step"):
        sched.step()
    opt.step({"w": np.zeros(1)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()
        opt2 = rc.optim.SGD({"w": np.zeros(1)}, lr=1.0)
        sched2 = lr.ExponentialLR(opt2, gamma=0.5)
        opt2.step({"w": np.zeros(1)})
        sched2.step()


def test_state_dict_is_plain_data_and_round_trips():
    opt = rc.optim.SGD({"w": np.zeros(1)}, lr=1.0)
    sched = lr.LambdaLR(opt, lambda epoch: 0.9 ** epoch)
    for _ in range(3):
        opt.step({"w": np.zeros(1)})
        sched.step()
    state = sched.state_dict()
    assert state == {"scheduler": "LambdaLR", "base_lrs": [1.0], "last_epoch": 3, "last_lr": [0.9 ** 3],
                     "step_count": 4}
    json.dumps(state)  # numbers and lists only: no functions
    plateau = lr.ReduceLROnPlateau(opt, patience=0)
    plateau.step(1.0)
    plateau.step(2.0)
    state = plateau.state_dict()
    json.dumps(state)
    other = lr.ReduceLROnPlateau(rc.optim.SGD({"w": np.zeros(1)}, lr=1.0))
    other.load_state_dict(state)
    assert (other.best, other.num_bad_epochs, other.patience, other.last_epoch) == (1.0, 0, 0, 2)
    assert other.state_dict() == state


@pytest.mark.parametrize("make", [
    lambda opt: lr.StepLR(opt, 2, gamma=0.5),
    lambda opt: lr.MultiStepLR(opt, [1, 3]),
    lambda opt: lr.ExponentialLR(opt, 0.9),
    lambda opt: lr.CosineAnnealingLR(opt, 4, eta_min=1e-3),
    lambda opt: lr.LinearLR(opt, 0.1, 1.0, 3),
    lambda opt: lr.LambdaLR(opt, np.sqrt),
    lambda opt: lr.ReduceLROnPlateau(opt, patience=0),
], ids=["step", "multistep", "exponential", "cosine", "linear", "lambda", "plateau"])
def test_schedule_with_its_optimizer_and_model_pickles_and_deepcopies(make, rng):
    """A schedule pickles with its optimizer and model (a layer after a training forward); the copy goes on exactly
    like the original."""
    model = rc.LSTM(3, 4, seed=0, dtype=np.float64)
    opt = rc.optim.Adam(model, lr=0.1)
    sched = make(opt)
    x = rng.standard_normal((5, 2, 3))

    def epoch(s, m, o, metric):
        y, _ = m(x)
        o.zero_grad()
        m.backward(y)
        o.step()
        s.step(metric) if isinstance(s, lr.ReduceLROnPlateau) else s.step()

    epoch(sched, model, opt, 1.0)
    model(x)  # a pending training forward
    for copied in (pickle.loads(pickle.dumps(sched)), copy.deepcopy(sched)):
        assert copied.optimizer is not opt and copied.get_last_lr() == sched.get_last_lr()
        copy_model = copied.optimizer._models[0]
        assert copied.optimizer.parameters()["weight_ih_l0"] is copy_model.parameters()["weight_ih_l0"]
        epoch(copied, copy_model, copied.optimizer, 2.0)
    epoch(sched, model, opt, 2.0)
    for name, p in model.parameters().items():
        np.testing.assert_array_equal(copy_model.parameters()[name], p, err_msg=name)
    assert copied.get_last_lr() == sched.get_last_lr()


def test_repr():
    opt = rc.optim.SGD({"w": np.zeros(1)}, lr=1.0)
    assert repr(lr.StepLR(opt, 3, gamma=0.5)) == "StepLR(step_size=3, gamma=0.5, last_epoch=0)"
    assert repr(lr.ReduceLROnPlateau(opt)).startswith("ReduceLROnPlateau(mode='min', factor=0.1, patience=10")


# -- errors ---------------------------------------------------------------------------------------------------------
def _opt(groups=1):
    return rc.optim.SGD([{"params": {"w": np.zeros(1)}} for _ in range(groups)], lr=0.1)


@pytest.mark.parametrize("make,error,match", [
    (lambda o: lr.StepLR(o, 0), ValueError, "step_size must be >= 1"),
    (lambda o: lr.StepLR(o, 2.5), TypeError, "step_size must be an int"),
    (lambda o: lr.StepLR(o, 2, gamma=-0.1), ValueError, "Invalid gamma"),
    (lambda o: lr.StepLR(o, 2, gamma="0.1"), TypeError, "gamma must be a real number"),
    (lambda o: lr.MultiStepLR(o, 3), TypeError, "milestones must be a list"),
    (lambda o: lr.MultiStepLR(o, [2, -1]), ValueError, "each milestone must be an int >= 0"),
    (lambda o: lr.ExponentialLR(o, float("nan")), ValueError, "gamma must be finite"),
    (lambda o: lr.CosineAnnealingLR(o, 0), ValueError, "T_max must be >= 1"),
    (lambda o: lr.CosineAnnealingLR(o, 5, eta_min=-1.0), ValueError, "eta_min"),
    (lambda o: lr.LinearLR(o, start_factor=0.0), ValueError, r"start_factor must be in \(0, 1\]"),
    (lambda o: lr.LinearLR(o, start_factor=1.5), ValueError, "start_factor"),
    (lambda o: lr.LinearLR(o, end_factor=-0.5), ValueError, r"end_factor must be in \[0, 1\]"),
    (lambda o: lr.LinearLR(o, total_iters=0), ValueError, "total_iters must be >= 1"),
    (lambda o: lr.LambdaLR(o, 0.5), TypeError, "lr_lambda must be a function"),
    (lambda o: lr.LambdaLR(o, [np.sqrt, np.sqrt]), ValueError, "lr_lambda must be one function or a list of 1"),
    (lambda o: lr.LambdaLR(o, lambda e: "x"), TypeError, r"lr_lambda\(0\) must be a real number"),
    (lambda o: lr.ReduceLROnPlateau(o, mode="minimum"), ValueError, "mode must be one of 'min', 'max'"),
    (lambda o: lr.ReduceLROnPlateau(o, factor=1.0), ValueError, r"factor must be in \[0, 1\)"),
    (lambda o: lr.ReduceLROnPlateau(o, patience=-1), ValueError, "patience must be an int >= 0"),
    (lambda o: lr.ReduceLROnPlateau(o, threshold_mode="relative"), ValueError, "threshold_mode"),
    (lambda o: lr.ReduceLROnPlateau(o, cooldown=1.5), ValueError, "cooldown"),
    (lambda o: lr.ReduceLROnPlateau(o, min_lr=[0.0, 0.1]), ValueError, r"min_lr must have one value per .* \(1\)"),
    (lambda o: lr.ReduceLROnPlateau(o, min_lr=-1.0), ValueError, "Invalid min_lr"),
    (lambda o: lr.ReduceLROnPlateau(o, eps=-1.0), ValueError, "Invalid eps"),
])
def test_bad_arguments_raise_naming_them(make, error, match):
    opt = _opt()
    with pytest.raises(error, match=match):
        make(opt)
    assert opt.lr == 0.1


@pytest.mark.parametrize("cls", [lr.StepLR, lr.ReduceLROnPlateau, lr.LambdaLR])
def test_optimizer_must_be_rnncore_s(cls):
    with pytest.raises(TypeError, match="optimizer must be an rnncore.optim optimizer"):
        cls({"lr": 0.1}, 1)


def test_plateau_metric_must_be_a_number():
    sched = lr.ReduceLROnPlateau(_opt())
    with pytest.raises(TypeError, match="metrics must be a real number"):
        sched.step("0.5")
    with pytest.raises(TypeError, match="metrics must be a real number"):
        sched.step(np.array([0.5, 0.2]))
    sched.step(np.float32(0.5))
    sched.step(np.array(0.25))
    assert sched.best == 0.25 and sched.last_epoch == 2


def test_load_state_dict_errors():
    sched = lr.StepLR(_opt(2), 2)
    good = sched.state_dict()
    with pytest.raises(ValueError, match="the state is for 'ExponentialLR'"):
        sched.load_state_dict({**good, "scheduler": "ExponentialLR"})
    with pytest.raises(KeyError, match=r"missing \['gamma'\]"):
        sched.load_state_dict({k: v for k, v in good.items() if k != "gamma"})
    with pytest.raises(ValueError, match=r"base_lrs must have one entry per parameter group \(2\)"):
        sched.load_state_dict({**good, "base_lrs": [0.1]})
    with pytest.raises(TypeError, match="last_epoch must be an int"):
        sched.load_state_dict({**good, "last_epoch": 1.5})
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        sched.load_state_dict([good])
    assert sched.state_dict() == good


@pytest.mark.parametrize("make,entry,bad,error,match", [
    (lambda o: lr.StepLR(o, 2), "step_size", 0, ValueError, "step_size must be >= 1"),
    (lambda o: lr.StepLR(o, 2), "step_size", 2.5, TypeError, "step_size must be an int"),
    (lambda o: lr.StepLR(o, 2), "gamma", -0.5, ValueError, "Invalid gamma"),
    (lambda o: lr.StepLR(o, 2), "gamma", float("inf"), ValueError, "gamma must be finite"),
    (lambda o: lr.MultiStepLR(o, [1, 3]), "milestones", [1, -3], ValueError, "each milestone must be an int >= 0"),
    (lambda o: lr.MultiStepLR(o, [1, 3]), "milestones", 3, TypeError, "milestones must be a list"),
    (lambda o: lr.ExponentialLR(o, 0.9), "gamma", "0.9", TypeError, "gamma must be a real number"),
    (lambda o: lr.CosineAnnealingLR(o, 4), "T_max", 0, ValueError, "T_max must be >= 1"),
    (lambda o: lr.CosineAnnealingLR(o, 4), "eta_min", -1.0, ValueError, "Invalid eta_min"),
    (lambda o: lr.LinearLR(o), "start_factor", 0.0, ValueError, r"start_factor must be in \(0, 1\]"),
    (lambda o: lr.LinearLR(o), "end_factor", 1.5, ValueError, r"end_factor must be in \[0, 1\]"),
    (lambda o: lr.LinearLR(o), "total_iters", 0, ValueError, "total_iters must be >= 1"),
    (lambda o: lr.ReduceLROnPlateau(o), "mode", "minimum", ValueError, "mode must be one of 'min', 'max'"),
    (lambda o: lr.ReduceLROnPlateau(o), "factor", 2.0, ValueError, r"factor must be in \[0, 1\)"),
    (lambda o: lr.ReduceLROnPlateau(o), "patience", -1, ValueError, "patience must be an int >= 0"),
    (lambda o: lr.ReduceLROnPlateau(o), "threshold", -1e-4, ValueError, "Invalid threshold"),
    (lambda o: lr.ReduceLROnPlateau(o), "threshold_mode", "relative", ValueError, "threshold_mode must be one of"),
    (lambda o: lr.ReduceLROnPlateau(o), "cooldown", 1.5, ValueError, "cooldown must be an int >= 0"),
    (lambda o: lr.ReduceLROnPlateau(o), "min_lrs", [0.0, -1.0], ValueError, r"Invalid min_lrs\[1\]"),
    (lambda o: lr.ReduceLROnPlateau(o), "min_lrs", [0.0], ValueError, r"min_lrs must have one value per .* \(2\)"),
    (lambda o: lr.ReduceLROnPlateau(o), "eps", float("nan"), ValueError, "eps must be finite"),
    (lambda o: lr.ReduceLROnPlateau(o), "best", float("nan"), ValueError, "best must not be NaN"),
    (lambda o: lr.ReduceLROnPlateau(o), "best", "1.0", TypeError, "best must be a real number"),
    (lambda o: lr.ReduceLROnPlateau(o), "num_bad_epochs", -1, ValueError, "num_bad_epochs must be an int >= 0"),
    (lambda o: lr.ReduceLROnPlateau(o), "cooldown_counter", -2, ValueError, "cooldown_counter must be an int >= 0"),
    (lambda o: lr.StepLR(o, 2), "base_lrs", [0.1, -0.1], ValueError, r"Invalid base_lrs\[1\]"),
    (lambda o: lr.StepLR(o, 2), "base_lrs", [0.1, "x"], TypeError, r"base_lrs\[1\] must be a real number"),
    (lambda o: lr.StepLR(o, 2), "base_lrs", 0.1, TypeError, "base_lrs must be a list"),
    (lambda o: lr.LambdaLR(o, np.sqrt), "last_lr", [float("nan"), 0.1], ValueError, r"last_lr\[0\] must be finite"),
    (lambda o: lr.LambdaLR(o, np.sqrt), "last_lr", [0.1], ValueError, r"last_lr must have one entry per .* \(2\)"),
    (lambda o: lr.LambdaLR(o, np.sqrt), "last_epoch", -1, ValueError, "last_epoch must be >= 0"),
    (lambda o: lr.ExponentialLR(o, 0.9), "step_count", True, TypeError, "step_count must be an int"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_load_state_dict_applies_the_constructors_checks(make, entry, bad, error, match):
    """A crafted state (e.g. from rc.load_training_state of an untrusted file) with an entry the constructor would
    reject raises naming it and leaves the schedule and the optimizer unchanged (step_size=0 or T_max=0 used to be
    accepted and raise ZeroDivisionError at the next step; factor > 1 grew the lr)."""
    opt = _opt(2)
    sched = make(opt)
    good = sched.state_dict()
    lrs = [group["lr"] for group in opt.param_groups]
    with pytest.raises(error, match=f"^load_state_dict: .*{match}"):
        sched.load_state_dict({**good, entry: bad})
    assert sched.state_dict() == good
    assert [group["lr"] for group in opt.param_groups] == lrs
    sched.load_state_dict(good)  # the schedule goes on
    opt.step(zero_grads(opt))
    sched.step(1.0) if isinstance(sched, lr.ReduceLROnPlateau) else sched.step()


def test_a_schedule_checks_the_groups_initial_lr():
    """initial_lr set by hand (or loaded with the optimizer's state) is checked like an lr, before any group
    changes."""
    opt = _opt(2)
    opt.param_groups[1]["initial_lr"] = -0.1
    with pytest.raises(ValueError, match=r"Invalid param_groups\[1\]\['initial_lr'\]"):
        lr.StepLR(opt, 2)
    assert "initial_lr" not in opt.param_groups[0] and [g["lr"] for g in opt.param_groups] == [0.1, 0.1]
    opt.param_groups[1]["initial_lr"] = "0.1"
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['initial_lr'\] must be a real number"):
        lr.CosineAnnealingLR(opt, 2)
